//! Assembling the server: the shards and their event loops, the TURN TCP/TLS listeners, the
//! HTTP app (signaling hub, ICE-servers list, admin and metrics routes) and the cluster link,
//! then handing over to [`super::control`] until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth_store::AuthStore;
use super::control::{Control, Running};
use super::listeners::{Listeners, log_bound};
use super::ports::Pools;
use super::proxy::{Policy, ProxyStats};
use super::reload::{AdminToken, HttpLive, IceHolder};
use super::scrape;
use super::stats::{Snapshot, Stats};
use super::turn_parts::turn_parts;
use super::workers::{self, Workers};
use super::{
    descriptors, http_listener, http_stats, offload, redis_auth, shared_tls, stream, tcp, tls,
};
use crate::auth::Auth;
use crate::config::{Config, ProxyListener};
use crate::http::admin;
use crate::http::{HttpState, IceServers, Site};
use crate::signal::cluster::link::Cluster;
use crate::signal::hub::Hub;
use crate::turn::own_relays::LiveRelays;

/// Serves `listeners` until `shutdown` is cancelled, then waits (briefly) for connections to
/// finish and returns what was counted. Must run inside a tokio runtime.
pub async fn run(
    config: &Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    control: mpsc::Receiver<Control>,
) -> Snapshot {
    let stats = Arc::new(Stats::default());
    let tasks = TaskTracker::new();
    let descriptor_limit = descriptors::raise_limit();

    let workers = config.workers().get();
    // Listen socket i of every UDP address belongs to shard i.
    let mut udp_by_shard: Vec<Vec<std::net::UdpSocket>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut udp_addrs: Vec<SocketAddr> = Vec::new();
    for group in listeners.udp {
        let count = group.len();
        for (i, socket) in group.into_iter().enumerate() {
            if i == 0 {
                let addr = socket.local_addr();
                if let Ok(addr) = addr {
                    udp_addrs.push(addr);
                }
                log_bound("udp", addr, count);
            }
            udp_by_shard[i % workers].push(socket);
        }
    }
    let store = listeners.cert.map(tls::CertStore::new);
    let mut tcp_listeners = Vec::new();
    let tls_listeners = listeners.tls.into_iter().map(|l| (l, true));
    for (listener, tls) in listeners
        .tcp
        .into_iter()
        .map(|l| (l, false))
        .chain(tls_listeners)
    {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                log_bound(if tls { "tls" } else { "tcp" }, listener.local_addr(), 1);
                tcp_listeners.push((listener, tls));
            }
            Err(e) => tracing::error!("cannot register a tcp listener with tokio: {e}"),
        }
    }
    let tcp_addrs: Vec<SocketAddr> = (tcp_listeners.iter())
        .filter(|(_, tls)| !tls)
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let shared_listener = listeners.shared_tls;
    let shared_addr = shared_listener.as_ref().and_then(|l| l.local_addr().ok());
    let tls_addrs: Vec<SocketAddr> = (tcp_listeners.iter())
        .filter(|(_, tls)| *tls)
        .filter_map(|(l, _)| l.local_addr().ok())
        .chain(shared_addr)
        .collect();
    let own: Vec<SocketAddr> = (udp_addrs.iter().chain(&tcp_addrs).chain(&tls_addrs))
        .copied()
        .collect();
    // One nonce key for the process, unless configured: a reload must not stale every nonce.
    let nonce_secret = match &config.auth.nonce_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => crate::random::os_random::<[u8; 32]>().to_vec(),
    };
    // Shared by every worker; the peer rules ask them which relay ports are live.
    let pools = Arc::new(Pools::new(config.relay.min_port, config.relay.max_port));
    let live_relays: Arc<dyn LiveRelays> = Arc::clone(&pools) as Arc<dyn LiveRelays>;
    let parts = turn_parts(config, own.clone(), &nonce_secret, live_relays);
    // Every UDP listen address, RFC 5780's included: the program goes where clients arrive.
    let kernel = offload::start(config.relay.offload, &udp_addrs, &config.relay.relay_ip);
    let setup = workers::Setup {
        config: &parts.config,
        auth: &parts.auth,
        rules: &parts.rules,
        quotas: &parts.quotas,
        ports: &pools,
        rate: (
            config.server.unauthenticated_rate,
            config.server.unauthenticated_burst,
        ),
        listen: udp_by_shard,
        stream_limits: stream::Limits::from_config(&config.server),
        stats: &stats,
        kernel: &kernel,
        stun_only: config.stun.only,
        rfc5780: (config.stun.rfc5780(&config.listen))
            .and_then(|(primary, other)| crate::stun::rfc5780::Addresses::new(primary, other)),
    };
    let workers = match Workers::start(setup) {
        Ok(workers) => Arc::new(workers),
        Err(e) => {
            tracing::error!("cannot start the workers: {e}");
            return stats.snapshot();
        }
    };
    // The file's credentials, with Redis's merged in as the polling reads them.
    let auth_store = Arc::new(AuthStore::new(parts.auth_settings.clone()));
    let redis_auth = redis_auth::spawn(config, &auth_store, &workers, &tasks, &shutdown);
    let budget = descriptors::Budget::for_config(config, descriptor_limit);
    workers.share_budget(&budget);
    let permits = Arc::new(Semaphore::new(config.server.max_tcp_connections));
    let per_ip = Arc::new(tcp::PerIp::new(config.server.max_tcp_connections_per_ip));
    let proxy_stats = Arc::new(ProxyStats::default());
    // What every TURN TCP/TLS listener shares, with its own counters; no TLS, no PROXY.
    let turn_context = |counters| tcp::TcpContext {
        permits: Arc::clone(&permits),
        per_ip: Arc::clone(&per_ip),
        budget: Arc::clone(&budget),
        workers: Arc::clone(&workers),
        counters,
        shutdown: shutdown.clone(),
        tls: None,
        proxy: None,
    };
    for (listener, tls) in tcp_listeners {
        let acceptor = match (tls, &store) {
            (false, _) => None,
            (true, Some(store)) => match tls::acceptor(store, false) {
                Ok(acceptor) => Some(acceptor),
                Err(e) => {
                    tracing::error!("cannot set up TLS: {e}");
                    continue;
                }
            },
            (true, None) => continue, // validate() requires [tls] for listen.tls
        };
        let kind = if tls {
            ProxyListener::Tls
        } else {
            ProxyListener::Tcp
        };
        let timeout = config.server.tls_handshake_timeout;
        let ctx = tcp::TcpContext {
            tls: acceptor.map(|acceptor| Arc::clone(acceptor.config())),
            proxy: Policy::for_listener(&config.listen, kind, timeout, &proxy_stats),
            ..turn_context(stats.register())
        };
        tasks.spawn(tcp::serve(listener, ctx));
    }
    let (admin_tx, admin_rx) = mpsc::channel(4);
    // Always routed, answering 404 without a token, so a reload can set or remove one.
    let admin_token = Arc::new(AdminToken::new(config.admin.token.as_deref()));
    let admin_router = admin::router(Arc::clone(&admin_token), Arc::clone(&workers), admin_tx);
    let http_stats = Arc::new(http_stats::HttpStats::default());
    let serving = http_listener::Serving {
        config,
        budget: &budget,
        stats: &http_stats,
        tasks: &tasks,
        shutdown: &shutdown,
        proxy: &proxy_stats,
    };
    if let Some(listener) = listeners.admin {
        serving.spawn(
            "admin",
            listener,
            None,
            admin_router.clone(),
            serving.caps(),
        );
    }
    let mut http_handles = None;
    if listeners.http.is_some() || listeners.https.is_some() || shared_listener.is_some() {
        let https = listeners.https.as_ref().and_then(|l| l.local_addr().ok());
        let bound = BoundAddrs {
            udp: &udp_addrs,
            tcp: &tcp_addrs,
            tls: &tls_addrs,
            http: listeners.http.as_ref().and_then(|l| l.local_addr().ok()),
            https: https.or(shared_addr),
        };
        let shared_stats = shared_listener.as_ref().map(|_| Arc::default());
        let scrape = scrape::Sources {
            workers: Arc::clone(&workers),
            stats: Arc::clone(&stats),
            hub: None,
            port_range: usize::from(config.relay.max_port - config.relay.min_port) + 1,
            budget: Arc::clone(&budget),
            http: Arc::clone(&http_stats),
            proxy: Arc::clone(&proxy_stats),
            shared_tls: shared_stats.clone(),
            offload: kernel.status().clone(),
            redis_auth,
        };
        let (app, live) = http_app(config, &bound, &parts.auth, scrape, &shutdown);
        let hub = Arc::clone(&live.hub);
        if let Some(cluster) = hub.cluster() {
            let link = crate::signal::cluster::link::run(
                Arc::clone(cluster),
                Arc::clone(&hub),
                shutdown.clone(),
            );
            tasks.spawn(link);
        }
        http_handles = Some(live);
        let app = match config.admin.listen {
            None => app.merge(admin_router),
            Some(_) => app,
        };
        // HTTP and HTTPS share one set of caps.
        let caps = serving.caps();
        if let Some(listener) = listeners.http {
            serving.spawn("http", listener, None, app.clone(), Arc::clone(&caps));
        }
        if let (Some(listener), Some(store)) = (listeners.https, &store) {
            serving.spawn(
                "https",
                listener,
                Some(store),
                app.clone(),
                Arc::clone(&caps),
            );
        }
        // One port for turns: and HTTPS: the HTTP caps above, the TURN ones of listen.tls.
        if let (Some(listener), Some(store), Some(counts)) = (shared_listener, &store, shared_stats)
        {
            // Its TLS is done on the tokio side, and it reads PROXY headers itself, before it
            // knows the protocol: neither is the TURN context's.
            let turn = turn_context(stats.register());
            shared_tls::spawn(&serving, listener, store, (app, caps), turn, counts);
        }
    }
    tracing::info!(
        realm = %config.realm,
        workers = workers.count(),
        "rturn {} ready",
        env!("CARGO_PKG_VERSION")
    );

    let running = Running {
        config,
        shutdown,
        control,
        admin_rx,
        workers,
        quotas: parts.quotas,
        auth: auth_store,
        pools,
        http: http_handles,
        certs: store,
        admin_token,
        own,
        nonce_secret,
        tasks,
        stats,
    };
    running.serve().await
}

/// The addresses actually bound, for the URLs handed to browsers.
struct BoundAddrs<'a> {
    udp: &'a [SocketAddr],
    tcp: &'a [SocketAddr],
    tls: &'a [SocketAddr],
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
}

/// `cluster.node-id` unset: the host name (or "rturn" without one).
fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| crate::config::valid_node_id(name))
        .unwrap_or_else(|| "rturn".to_owned())
}

/// The HTTP routes with their shared state: signaling hub, ICE-servers list, own origins.
fn http_app(
    config: &Config,
    bound: &BoundAddrs<'_>,
    auth: &Arc<Auth>,
    mut sources: scrape::Sources,
    shutdown: &CancellationToken,
) -> (axum::Router, HttpLive) {
    let ice = Arc::new(IceHolder::new(IceServers::new(
        config,
        bound.udp,
        bound.tcp,
        bound.tls,
        Arc::clone(auth),
    )));
    let list = Arc::clone(&ice);
    let hub = Arc::new(Hub::new(
        config.signal.clone(),
        Box::new(move |user: &str| list.load().list(user)),
    ));
    if let Some(url) = &config.cluster.redis {
        let node_id = config
            .cluster
            .node_id
            .clone()
            .unwrap_or_else(default_node_id);
        match Cluster::new(url, node_id, config.cluster.presence_ttl) {
            Ok(cluster) => hub.set_cluster(Arc::new(cluster)),
            Err(e) => tracing::error!("cluster.redis: {e}; rooms stay on this node"),
        }
    }
    let api = Arc::clone(&ice);
    sources.hub = Some(Arc::clone(&hub));
    let site = Arc::new(Site::default());
    let offload = &sources.offload;
    site.set_offload(offload.active, offload.reason.clone());
    site.set_own_origins(crate::http::origin::own_origins(
        config,
        bound.http,
        bound.https,
    ));
    let router = crate::http::router(HttpState {
        hub: Arc::clone(&hub),
        shutdown: shutdown.clone(),
        ice: Arc::new(move |ip| api.load().response(ip)),
        metrics: scrape::handler(sources),
        site: Arc::clone(&site),
    });
    let live = HttpLive {
        hub,
        ice,
        site,
        http: bound.http,
        https: bound.https,
    };
    (router, live)
}
