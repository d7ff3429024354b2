//! Tokio glue: binding the listen sockets, serving them until shutdown, stopping cleanly.
//!
//! Binding ([`Listeners::bind`]) is separate from serving ([`run`]) so every address is known
//! to be bound (and its port known, for port 0) before anything is served, and so a bind
//! failure is reported with the config key it came from.

mod admin;
mod command;
mod conns;
mod datapath;
mod descriptors;
mod http_conn;
mod http_listener;
mod limiter;
mod metrics;
mod mmsg;
mod ports;
mod relay;
mod reload;
mod shard;
mod stats;
mod stream;
mod systemd;
mod tcp;
mod throttle;
pub mod tls;
mod udp;
mod workers;

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, AuthSettings};
use crate::config::Config;
use crate::http::{HttpState, IceServers, Site};
use crate::signal::cluster::link::Cluster;
use crate::signal::ws::Hub;
use crate::turn::peer_rules::PeerRules;
use crate::turn::quota::Quotas;
use crate::turn::{RelayAddress, TurnConfig};
use reload::{HttpLive, IceHolder, Live};
pub use stats::{Snapshot, Stats};
use workers::Workers;

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

/// `user-quota`, `total-quota` and `max-allocations-per-ip`.
fn quota_limits(relay: &crate::config::RelayConfig) -> crate::turn::quota::Limits {
    crate::turn::quota::Limits {
        user: relay.user_quota,
        total: relay.total_quota,
        per_client: relay.max_allocations_per_ip,
    }
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
        quotas: Arc::new(Quotas::new(quota_limits(relay))),
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
    let setup = workers::Setup {
        config: &parts.config,
        auth: &parts.auth,
        rules: &parts.rules,
        quotas: &parts.quotas,
        ports: (config.relay.min_port, config.relay.max_port),
        rate: (
            config.server.unauthenticated_rate,
            config.server.unauthenticated_burst,
        ),
        listen: udp_by_shard,
        stream_limits: stream::Limits::from_config(&config.server),
        stats: &stats,
    };
    let workers = match Workers::start(setup) {
        Ok(workers) => Arc::new(workers),
        Err(e) => {
            tracing::error!("cannot start the workers: {e}");
            return stats.snapshot();
        }
    };
    let budget = descriptors::Budget::for_config(config, descriptor_limit);
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
            per_ip: Arc::clone(&per_ip),
            budget: Arc::clone(&budget),
            workers: Arc::clone(&workers),
            counters: stats.register(),
            shutdown: shutdown.clone(),
            tls: acceptor.map(|acceptor| Arc::clone(acceptor.config())),
        };
        tasks.spawn(tcp::serve(listener, ctx));
    }
    let (admin_tx, mut admin_rx) = mpsc::channel(4);
    // Always routed, answering 404 without a token, so a reload can set or remove one.
    let admin_token = Arc::new(admin::AdminToken::new(config.admin.token.as_deref()));
    let admin_router = admin::router(Arc::clone(&admin_token), Arc::clone(&workers), admin_tx);
    let http_stats = Arc::new(http_listener::HttpStats::default());
    let serving = http_listener::Serving {
        config,
        budget: &budget,
        stats: &http_stats,
        tasks: &tasks,
        shutdown: &shutdown,
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
    if listeners.http.is_some() || listeners.https.is_some() {
        let bound = BoundAddrs {
            udp: &udp_addrs,
            tcp: &tcp_addrs,
            tls: &tls_addrs,
            http: listeners.http.as_ref().and_then(|l| l.local_addr().ok()),
            https: listeners.https.as_ref().and_then(|l| l.local_addr().ok()),
        };
        let scrape = metrics::Sources {
            workers: Arc::clone(&workers),
            stats: Arc::clone(&stats),
            hub: None,
            port_range: usize::from(config.relay.max_port - config.relay.min_port) + 1,
            budget: Arc::clone(&budget),
            http: Arc::clone(&http_stats),
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
            serving.spawn("https", listener, Some(store), app, caps);
        }
    }
    tracing::info!(
        realm = %config.realm,
        workers = workers.count(),
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
                let held = workers.snapshot().await.allocations();
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
                    workers: &workers,
                    quotas: &parts.quotas,
                    http: http_handles.as_ref(),
                    certs: store.as_ref(),
                    admin: &admin_token,
                    started: config,
                };
                let draining = drain_deadline.is_some();
                reload::reload(&new, &live, &own, &nonce_secret, draining).await;
                current = *new;
            }
            Control::Drain => {
                workers.drain(current.relay.alternate_server).await;
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
    let allocations = workers.clear().await;
    let stopping = Arc::clone(&workers);
    if tokio::task::spawn_blocking(move || stopping.stop())
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
    /// lifetimes, signaling limits, origins, the admin token, `[ice]` and the certificate,
    /// without dropping anything; what only a restart applies is named (see `reload.rs`).
    Reload(Box<Config>),
    /// Refuse new allocations and exit when the last one ends (or `drain-timeout`).
    Drain,
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
    mut sources: metrics::Sources,
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
    site.set_own_origins(crate::http::origin::own_origins(
        config,
        bound.http,
        bound.https,
    ));
    let router = crate::http::router(HttpState {
        hub: Arc::clone(&hub),
        shutdown: shutdown.clone(),
        ice: Arc::new(move |ip| api.load().response(ip)),
        metrics: metrics::handler(sources),
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
