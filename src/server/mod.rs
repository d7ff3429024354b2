//! Tokio glue: binding the listen sockets, serving them until shutdown, stopping cleanly.
//!
//! Binding ([`Listeners::bind`]) is separate from serving ([`run`]) so every address is known
//! to be bound (and its port known, for port 0) before anything is served, and so a bind
//! failure is reported with the config key it came from.

mod admin;
mod datapath;
mod limiter;
mod metrics;
mod mmsg;
mod ports;
mod relay;
mod shard;
mod stats;
mod systemd;
mod tcp;
mod throttle;
pub mod tls;
mod udp;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, AuthSettings};
use crate::config::Config;
use crate::http::{ClientAddr, HttpState, IceServers};
use crate::signal::cluster::link::Cluster;
use crate::signal::ws::Hub;
use crate::turn::peer_rules::PeerRules;
use crate::turn::quota::Quotas;
use crate::turn::{Manager, RelayAddress, TurnConfig};
use relay::SocketBinder;
use shard::{Shard, Shared};
pub use stats::{Snapshot, Stats};

/// How long shutdown waits for open connections to finish their current message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {proto} {addr} ({key}): {error}{hint}", hint = bind_hint(error))]
pub struct BindError {
    /// "udp" or "tcp".
    pub proto: &'static str,
    /// The configured address.
    pub addr: SocketAddr,
    /// The config key it came from.
    pub key: &'static str,
    /// What the OS said (in the message, not a chained source: printed once).
    pub error: io::Error,
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => "; is another STUN/TURN server (coturn?) running on it?",
        io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need CAP_NET_BIND_SERVICE (see systemd/rturn.service)"
        }
        io::ErrorKind::AddrNotAvailable => "; the address does not belong to this machine",
        _ => "",
    }
}

/// A non-blocking socket for `addr`. IPv6 sockets are IPv6-only, so "[::]:3478" and
/// "0.0.0.0:3478" can be listed side by side.
fn new_socket(
    addr: SocketAddr,
    ty: socket2::Type,
    protocol: socket2::Protocol,
) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Every socket from `[listen]`, bound and not yet served.
#[derive(Debug)]
pub struct Listeners {
    /// Per UDP listen address, one socket per worker, all on the same port.
    pub udp: Vec<Vec<std::net::UdpSocket>>,
    /// TCP listening sockets.
    pub tcp: Vec<std::net::TcpListener>,
    /// STUN/TURN over TLS listening sockets.
    pub tls: Vec<std::net::TcpListener>,
    /// The HTTP listener (signaling, pages, API), if configured.
    pub http: Option<std::net::TcpListener>,
    /// The same routes over HTTPS, if configured.
    pub https: Option<std::net::TcpListener>,
    /// The certificate for both, read from `[tls]`.
    pub cert: Option<Arc<rustls::sign::CertifiedKey>>,
    /// The admin API's own listener, if `[admin] listen` is set.
    pub admin: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds every `[listen]` address, UDP with one SO_REUSEPORT socket per worker.
    pub fn bind(config: &Config) -> Result<Self, ListenError> {
        let workers = config.workers().get();
        let udp = config
            .listen
            .udp
            .iter()
            .map(|&addr| {
                udp::bind_group(addr, workers).map_err(|source| BindError {
                    proto: "udp",
                    addr,
                    key: "listen.udp",
                    error: source,
                })
            })
            .collect::<Result<_, _>>()?;
        let tcp = config
            .listen
            .tcp
            .iter()
            .map(|&addr| {
                tcp::bind(addr).map_err(|source| BindError {
                    proto: "tcp",
                    addr,
                    key: "listen.tcp",
                    error: source,
                })
            })
            .collect::<Result<_, _>>()?;
        let stream = |proto, key, addr| {
            tcp::bind(addr).map_err(|source| BindError {
                proto,
                addr,
                key,
                error: source,
            })
        };
        let tls = (config.listen.tls.iter())
            .map(|&addr| stream("tls", "listen.tls", addr))
            .collect::<Result<_, _>>()?;
        let http = (config.listen.http)
            .map(|addr| stream("http", "listen.http", addr))
            .transpose()?;
        let https = (config.listen.https)
            .map(|addr| stream("https", "listen.https", addr))
            .transpose()?;
        let cert = config.tls.as_ref().map(tls::load).transpose()?;
        let admin = (config.admin.listen)
            .map(|addr| stream("admin", "admin.listen", addr))
            .transpose()?;
        Ok(Self {
            admin,
            udp,
            tcp,
            tls,
            http,
            https,
            cert,
        })
    }
}

/// The pieces of the TURN relay every shard shares, built from the config.
struct TurnParts {
    config: TurnConfig,
    auth: Arc<Auth>,
    rules: Arc<PeerRules>,
    quotas: Arc<Quotas>,
}

fn turn_parts(config: &Config, own: Vec<SocketAddr>, nonce_secret: &[u8]) -> TurnParts {
    let relay = &config.relay;
    // validate() already checked external-ip; an error here cannot happen.
    let external = config.external_ips().unwrap_or_default();
    let relay_address = |v4: bool| {
        relay
            .relay_ip
            .iter()
            .find(|ip| ip.is_ipv4() == v4)
            .map(|&bind| RelayAddress {
                bind,
                advertise: external
                    .iter()
                    .find(|(b, _)| *b == bind)
                    .map_or(bind, |(_, public)| *public),
            })
    };
    let turn = TurnConfig {
        relay_v4: relay_address(true),
        relay_v6: relay_address(false),
        default_lifetime: relay.allocation_lifetime,
        max_lifetime: relay.max_allocation_lifetime,
        permission_lifetime: relay.permission_lifetime,
        channel_lifetime: relay.channel_lifetime,
        max_permissions: relay.max_permissions_per_allocation,
        max_channels: relay.max_channels_per_allocation,
        max_bps: relay.max_bps,
        // Each shard enforces its share, so no counter is shared across cores per packet.
        bps_capacity: relay.bps_capacity.div_ceil(config.workers().get() as u64),
        alternate_server: relay.alternate_server,
        ..TurnConfig::default()
    };
    let auth = Auth::new(AuthSettings {
        realm: config.realm.clone(),
        users: config.auth.users.clone(),
        secrets: config.auth.static_auth_secret.clone(),
        rest_separator: config.auth.rest_separator,
        nonce_secret: Some(nonce_secret.to_vec()),
        nonce_lifetime: config.auth.nonce_lifetime,
    });
    // A wildcard listener means "this port on each of our addresses": spell those out, so
    // the rule refuses our own port and not that port on every host of the internet.
    let ours: Vec<IpAddr> = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ]
    .into_iter()
    .chain(relay.relay_ip.iter().copied())
    .chain(external.iter().map(|(_, public)| *public))
    .collect();
    let own = own
        .into_iter()
        .flat_map(|listener| {
            let expanded: Vec<SocketAddr> = if listener.ip().is_unspecified() {
                ours.iter()
                    .filter(|ip| ip.is_ipv4() == listener.is_ipv4())
                    .map(|ip| SocketAddr::new(*ip, listener.port()))
                    .collect()
            } else {
                vec![listener]
            };
            expanded
        })
        .collect();
    let rules = PeerRules::new(
        relay.allow_loopback_peers,
        relay.allowed_peer_ip.clone(),
        relay.denied_peer_ip.clone(),
        own,
    );
    TurnParts {
        config: turn,
        auth: Arc::new(auth),
        rules: Arc::new(rules),
        quotas: Arc::new(Quotas::new(relay.user_quota, relay.total_quota)),
    }
}

/// Serves `listeners` until `shutdown` is cancelled, then waits (briefly) for connections to
/// finish and returns what was counted. Must run inside a tokio runtime.
pub async fn run(
    config: &Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    mut control: mpsc::Receiver<Control>,
) -> Snapshot {
    let stats = Arc::new(Stats::default());
    let tasks = TaskTracker::new();

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
    let tls_addrs: Vec<SocketAddr> = (tcp_listeners.iter())
        .filter(|(_, tls)| *tls)
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let own: Vec<SocketAddr> = (udp_addrs.iter().chain(&tcp_addrs).chain(&tls_addrs))
        .copied()
        .collect();
    // One nonce key for the process, unless configured: a reload must not stale every nonce.
    let nonce_secret = match &config.auth.nonce_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => crate::random::os_random::<[u8; 32]>().to_vec(),
    };
    let parts = turn_parts(config, own.clone(), &nonce_secret);
    let now = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let pollers = match (0..workers)
        .map(|_| datapath::Poller::new())
        .collect::<io::Result<Vec<_>>>()
    {
        Ok(pollers) => pollers,
        Err(e) => {
            tracing::error!("cannot set up the udp event loops: {e}");
            return stats.snapshot();
        }
    };
    let pool = || {
        Arc::new(ports::PortPool::new(
            config.relay.min_port,
            config.relay.max_port,
        ))
    };
    let pools = [pool(), pool()];
    let mut shards = Vec::with_capacity(workers);
    for poller in &pollers {
        let registry = match poller.registry() {
            Ok(registry) => registry,
            Err(e) => {
                tracing::error!("cannot set up the udp event loops: {e}");
                return stats.snapshot();
            }
        };
        shards.push(Shard {
            manager: Manager::new(
                parts.config.clone(),
                Arc::clone(&parts.auth),
                Arc::clone(&parts.rules),
                Arc::clone(&parts.quotas),
                SocketBinder::new(pools.clone(), registry),
                now,
                unix_now,
            ),
            tcp_sinks: HashMap::new(),
            limiter: limiter::SourceLimiter::new(
                config.server.unauthenticated_rate,
                config.server.unauthenticated_burst,
                now,
            ),
        });
    }
    let shared = Arc::new(Shared::new(shards));
    let datapath = match datapath::DataPath::start(pollers, udp_by_shard, &shared, &stats) {
        Ok(datapath) => datapath,
        Err(e) => {
            tracing::error!("cannot start the udp event loops: {e}");
            return stats.snapshot();
        }
    };
    let permits = Arc::new(Semaphore::new(config.server.max_tcp_connections));
    let per_ip = Arc::new(tcp::PerIp::new(config.server.max_tcp_connections_per_ip));
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
        let ctx = tcp::TcpContext {
            permits: Arc::clone(&permits),
            idle_timeout: config.server.tcp_idle_timeout,
            allocation_timeout: config.server.tcp_allocation_timeout,
            max_queued_bytes: config.server.max_tcp_queued_bytes,
            handshake_timeout: config.server.tls_handshake_timeout,
            per_ip: Arc::clone(&per_ip),
            shared: Arc::clone(&shared),
            counters: stats.register(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            tls: acceptor,
        };
        tasks.spawn(tcp::serve(listener, ctx));
    }
    for shard in 0..shared.shard_count() {
        tasks.spawn(expiry(Arc::clone(&shared), shard, shutdown.clone()));
    }
    let (admin_tx, mut admin_rx) = mpsc::channel(4);
    let admin_router = (config.admin.token.as_deref())
        .map(|token| admin::router(token, Arc::clone(&shared), admin_tx));
    if let (Some(listener), Some(router)) = (listeners.admin, &admin_router) {
        serve_http("admin", listener, None, router.clone(), &tasks, &shutdown);
    }
    let mut http_handles = None;
    if listeners.http.is_some() || listeners.https.is_some() {
        let bound = BoundAddrs {
            udp: &udp_addrs,
            tcp: &tcp_addrs,
            tls: &tls_addrs,
        };
        let scrape = (Arc::clone(&shared), Arc::clone(&stats));
        let (app, hub, ice) = http_app(config, &bound, &parts.auth, scrape, &shutdown);
        if let Some(cluster) = hub.cluster() {
            let link = crate::signal::cluster::link::run(
                Arc::clone(cluster),
                Arc::clone(&hub),
                shutdown.clone(),
            );
            tasks.spawn(link);
        }
        http_handles = Some((hub, ice));
        let app = match (admin_router, config.admin.listen) {
            (Some(admin), None) => app.merge(admin),
            _ => app,
        };
        if let Some(listener) = listeners.http {
            serve_http("http", listener, None, app.clone(), &tasks, &shutdown);
        }
        if let (Some(listener), Some(store)) = (listeners.https, &store) {
            let handshake = config.server.tls_handshake_timeout;
            let tls = Some((store, handshake));
            serve_http("https", listener, tls, app, &tasks, &shutdown);
        }
    }
    tracing::info!(
        realm = %config.realm,
        workers,
        "rturn {} ready",
        env!("CARGO_PKG_VERSION")
    );

    systemd::ready();
    tasks.spawn(systemd::watchdog(shutdown.clone()));
    let mut current = config.clone();
    let mut drain_deadline: Option<Instant> = None;
    let mut drain_check = tokio::time::interval(Duration::from_millis(500));
    loop {
        let command = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(command) = control.recv() => command,
            Some(command) = admin_rx.recv() => command,
            _ = drain_check.tick(), if drain_deadline.is_some() => {
                let held = allocation_total(&shared);
                if held == 0 || drain_deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::info!(allocations = held, "drained");
                    shutdown.cancel();
                }
                continue;
            }
        };
        match command {
            Control::Reload(new) => {
                let live = Live {
                    shared: &shared,
                    quotas: &parts.quotas,
                    http: http_handles.as_ref(),
                    certs: store.as_ref(),
                };
                reload(
                    &current,
                    &new,
                    &live,
                    &own,
                    &nonce_secret,
                    drain_deadline.is_some(),
                );
                current = *new;
            }
            Control::Drain => {
                for shard in 0..shared.shard_count() {
                    shared
                        .lock(shard)
                        .manager
                        .drain(current.relay.alternate_server);
                }
                drain_deadline.get_or_insert(Instant::now() + current.server.drain_timeout);
                tracing::info!(
                    timeout = ?current.server.drain_timeout,
                    "draining: new allocations refused, existing ones live on"
                );
            }
        }
    }
    systemd::stopping();
    tracing::info!("shutting down");
    // Relay sockets stop with their allocations.
    let mut allocations = 0;
    for shard in 0..shared.shard_count() {
        let mut guard = shared.lock(shard);
        allocations += guard.manager.allocation_count();
        guard.manager.clear();
    }
    if tokio::task::spawn_blocking(move || datapath.stop())
        .await
        .is_err()
    {
        tracing::error!("the udp event loops did not stop cleanly");
    }
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {SHUTDOWN_GRACE:?}");
    }
    let s = stats.snapshot();
    tracing::info!(
        received = s.received,
        replied = s.replied,
        relayed = s.relayed,
        malformed = s.malformed,
        ignored = s.ignored,
        io_errors = s.io_errors,
        tcp_accepted = s.tcp_accepted,
        tcp_broken = s.tcp_broken,
        rate_limited = s.rate_limited,
        allocations,
        "stopped"
    );
    s
}

/// Asks a running server to change course.
#[derive(Debug)]
pub enum Control {
    /// Apply this (already validated) configuration: credentials, peer rules, quotas,
    /// lifetimes, signaling limits and the certificate, without dropping anything.
    Reload(Box<Config>),
    /// Refuse new allocations and exit when the last one ends (or `drain-timeout`).
    Drain,
}

/// What a reload reaches into.
struct Live<'a> {
    shared: &'a Arc<Shared>,
    quotas: &'a Arc<Quotas>,
    http: Option<&'a (Arc<Hub>, Arc<IceServers>)>,
    certs: Option<&'a Arc<tls::CertStore>>,
}

fn allocation_total(shared: &Shared) -> usize {
    (0..shared.shard_count())
        .map(|shard| shared.lock(shard).manager.allocation_count())
        .sum()
}

/// Applies `new` to the running server. Everything that can change in place does; what
/// needs a restart (listen and relay addresses, workers, `[cluster]`) is reported.
fn reload(
    old: &Config,
    new: &Config,
    live: &Live<'_>,
    own: &[SocketAddr],
    nonce_secret: &[u8],
    draining: bool,
) {
    systemd::reloading();
    let restart = [
        (
            "listen",
            format!("{:?}", old.listen) != format!("{:?}", new.listen),
        ),
        (
            "relay.relay-ip / relay.external-ip / ports",
            (
                &old.relay.relay_ip,
                &old.relay.external_ip,
                old.relay.min_port,
                old.relay.max_port,
            ) != (
                &new.relay.relay_ip,
                &new.relay.external_ip,
                new.relay.min_port,
                new.relay.max_port,
            ),
        ),
        ("server.workers", old.server.workers != new.server.workers),
        (
            "server.max-tcp-queued-bytes",
            old.server.max_tcp_queued_bytes != new.server.max_tcp_queued_bytes,
        ),
        (
            "cluster",
            format!("{:?}", old.cluster) != format!("{:?}", new.cluster),
        ),
        (
            "tls (added or removed)",
            old.tls.is_some() != new.tls.is_some(),
        ),
    ];
    for (what, changed) in restart {
        if changed {
            tracing::warn!("{what} changed: takes effect after a restart");
        }
    }
    let nonce_secret = match &new.auth.nonce_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => nonce_secret.to_vec(),
    };
    let mut parts = turn_parts(new, own.to_vec(), &nonce_secret);
    // Split among the shards that run, which a changed server.workers does not change.
    let shards = live.shared.shard_count() as u64;
    parts.config.bps_capacity = new.relay.bps_capacity.div_ceil(shards);
    for shard in 0..live.shared.shard_count() {
        let mut guard = live.shared.lock(shard);
        guard.manager.reload(
            parts.config.clone(),
            Arc::clone(&parts.auth),
            Arc::clone(&parts.rules),
        );
        if draining {
            guard.manager.drain(new.relay.alternate_server);
        }
        (guard.limiter).set(
            new.server.unauthenticated_rate,
            new.server.unauthenticated_burst,
        );
    }
    live.quotas
        .set_limits(new.relay.user_quota, new.relay.total_quota);
    if let Some((hub, ice)) = live.http {
        hub.set_config(new.signal.clone());
        ice.set_auth(Arc::clone(&parts.auth));
    }
    if let (Some(store), Some(tls_config)) = (live.certs, &new.tls) {
        match tls::load(tls_config) {
            Ok(cert) => store.replace(cert),
            Err(e) => tracing::error!("certificate not reloaded, the old one stays: {e}"),
        }
    }
    tracing::info!("configuration reloaded");
    systemd::ready();
}

/// The addresses actually bound, for the URLs handed to browsers.
struct BoundAddrs<'a> {
    udp: &'a [SocketAddr],
    tcp: &'a [SocketAddr],
    tls: &'a [SocketAddr],
}

/// `cluster.node-id` unset: the host name (or "rturn" without one).
fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| crate::config::valid_node_id(name))
        .unwrap_or_else(|| "rturn".to_owned())
}

/// The HTTP routes with their shared state: signaling hub and ICE-servers list.
fn http_app(
    config: &Config,
    bound: &BoundAddrs<'_>,
    auth: &Arc<Auth>,
    (shared, stats): (Arc<Shared>, Arc<Stats>),
    shutdown: &CancellationToken,
) -> (axum::Router, Arc<Hub>, Arc<IceServers>) {
    let ice = Arc::new(IceServers::new(
        config,
        bound.udp,
        bound.tcp,
        bound.tls,
        Arc::clone(auth),
    ));
    let list = Arc::clone(&ice);
    let hub = Arc::new(Hub::new(
        config.signal.clone(),
        Box::new(move || list.list()),
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
    let sources = metrics::Sources {
        shared,
        stats,
        hub: Some(Arc::clone(&hub)),
        port_range: usize::from(config.relay.max_port - config.relay.min_port) + 1,
    };
    let router = crate::http::router(HttpState {
        hub: Arc::clone(&hub),
        shutdown: shutdown.clone(),
        ice: Arc::new(move || api.response()),
        metrics: Arc::new(move || metrics::render(&sources)),
    });
    (router, hub, ice)
}

/// Serves the HTTP routes on one listener, plain or (with a certificate store) HTTPS.
fn serve_http(
    name: &'static str,
    listener: std::net::TcpListener,
    tls: Option<(&Arc<tls::CertStore>, Duration)>,
    app: axum::Router,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot register the http listener with tokio: {e}");
            return;
        }
    };
    let stop = shutdown.clone();
    let Some((store, handshake_timeout)) = tls else {
        log_bound(name, listener.local_addr(), 1);
        let app = app.into_make_service_with_connect_info::<ClientAddr>();
        tasks.spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = served.await {
                tracing::error!("http listener failed: {e}");
            }
        });
        return;
    };
    log_bound(name, listener.local_addr(), 1);
    let listener = tls::acceptor(store, true)
        .map_err(|e| e.to_string())
        .and_then(|acceptor| {
            tls::TlsListener::new(listener, acceptor, shutdown.clone(), handshake_timeout)
                .map_err(|e| e.to_string())
        });
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot set up the https listener: {e}");
            return;
        }
    };
    let app = app.into_make_service_with_connect_info::<ClientAddr>();
    tasks.spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = served.await {
            tracing::error!("https listener failed: {e}");
        }
    });
}

/// The longest the expiry task sleeps, so new earlier deadlines are never missed by more.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// One timer per shard drives every expiry in it (allocations, permissions, channels,
/// reservations): no task per allocation.
async fn expiry(shared: Arc<Shared>, shard: usize, shutdown: CancellationToken) {
    loop {
        let next = {
            let mut guard = shared.lock(shard);
            let now = Instant::now();
            guard.manager.handle_timeout(now);
            guard.limiter.purge(now);
            guard.manager.poll_timeout()
        };
        let tick = Instant::now() + EXPIRY_TICK;
        let wake = next.map_or(tick, |t| t.min(tick));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// The line black-box tests and operators look for: "listening on udp 127.0.0.1:3478".
fn log_bound(proto: &str, addr: io::Result<SocketAddr>, sockets: usize) {
    match addr {
        Ok(addr) if sockets > 1 => {
            tracing::info!("listening on {proto} {addr} ({sockets} sockets)");
        }
        Ok(addr) => tracing::info!("listening on {proto} {addr}"),
        Err(e) => tracing::warn!("listening on {proto}, address unknown: {e}"),
    }
}

/// Sends one datagram now, without waiting: a full socket buffer drops it (UDP semantics,
/// counted by the caller).
pub(super) fn send_now(socket: &std::net::UdpSocket, data: &[u8], to: SocketAddr) -> bool {
    socket2::SockRef::from(socket)
        .send_to(data, &to.into())
        .is_ok()
}
