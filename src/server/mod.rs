//! Tokio glue: binding the listen sockets, serving them until shutdown, stopping cleanly.
//!
//! Binding ([`Listeners::bind`]) is separate from serving ([`run`]) so every address is known
//! to be bound (and its port known, for port 0) before anything is served, and so a bind
//! failure is reported with the config key it came from.

mod stats;
mod tcp;
mod throttle;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
pub use stats::{Snapshot, Stats};

/// How long shutdown waits for open connections to finish their current message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {proto} {addr} ({key}): {source}{hint}", hint = bind_hint(source))]
pub struct BindError {
    /// "udp" or "tcp".
    pub proto: &'static str,
    /// The configured address.
    pub addr: SocketAddr,
    /// The config key it came from.
    pub key: &'static str,
    /// What the OS said.
    pub source: io::Error,
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
}

impl Listeners {
    /// Binds every `[listen]` address, UDP with one SO_REUSEPORT socket per worker.
    pub fn bind(config: &Config) -> Result<Self, BindError> {
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
                    source,
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
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { udp, tcp })
    }
}

/// Serves `listeners` until `shutdown` is cancelled, then waits (briefly) for connections to
/// finish and returns what was counted. Must run inside a tokio runtime.
pub async fn run(config: &Config, listeners: Listeners, shutdown: CancellationToken) -> Snapshot {
    let stats = Stats::default();
    let tasks = TaskTracker::new();

    for group in listeners.udp {
        let count = group.len();
        for (i, socket) in group.into_iter().enumerate() {
            match tokio::net::UdpSocket::from_std(socket) {
                Ok(socket) => {
                    if i == 0 {
                        log_bound("udp", socket.local_addr(), count);
                    }
                    tasks.spawn(udp::serve(socket, stats.register(), shutdown.clone()));
                }
                Err(e) => tracing::error!("cannot register a udp socket with tokio: {e}"),
            }
        }
    }

    let permits = Arc::new(Semaphore::new(config.server.max_tcp_connections));
    for listener in listeners.tcp {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                log_bound("tcp", listener.local_addr(), 1);
                let ctx = tcp::TcpContext {
                    permits: Arc::clone(&permits),
                    idle_timeout: config.server.tcp_idle_timeout,
                    counters: stats.register(),
                    shutdown: shutdown.clone(),
                    tasks: tasks.clone(),
                };
                tasks.spawn(tcp::serve(listener, ctx));
            }
            Err(e) => tracing::error!("cannot register a tcp listener with tokio: {e}"),
        }
    }
    tracing::info!(
        realm = %config.realm,
        workers = config.workers().get(),
        "rturn {} ready",
        env!("CARGO_PKG_VERSION")
    );

    shutdown.cancelled().await;
    tracing::info!("shutting down");
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
        malformed = s.malformed,
        ignored = s.ignored,
        io_errors = s.io_errors,
        tcp_accepted = s.tcp_accepted,
        tcp_broken = s.tcp_broken,
        "stopped"
    );
    s
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

/// Cancels `shutdown` on SIGTERM or SIGINT (Ctrl-C).
pub fn shutdown_on_signals(shutdown: CancellationToken) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        shutdown.cancel();
    });
    Ok(())
}
