//! Binding the `[listen]` sockets before anything is served, so every address is known to be
//! bound (and its port known, for port 0) first, and a bind failure names the config key it
//! came from.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{tcp, tls, udp};
use crate::config::Config;

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

/// Every socket from `[listen]`, bound and not yet served.
#[derive(Debug)]
pub struct Listeners {
    /// Per UDP listen address (those of `listen.udp`, then RFC 5780's others), one socket
    /// per worker, all on the same port.
    pub udp: Vec<Vec<std::net::UdpSocket>>,
    /// TCP listening sockets.
    pub tcp: Vec<std::net::TcpListener>,
    /// STUN/TURN over TLS listening sockets.
    pub tls: Vec<std::net::TcpListener>,
    /// The HTTP listener (signaling, pages, API), if configured.
    pub http: Option<std::net::TcpListener>,
    /// The same routes over HTTPS, if configured (and not shared with `listen.tls`).
    pub https: Option<std::net::TcpListener>,
    /// The one listener for `turns:` and HTTPS when `listen.https` names a `listen.tls`
    /// address ([`crate::config::ListenConfig::shared_tls`]); that address is then in
    /// neither `tls` nor `https`.
    pub shared_tls: Option<std::net::TcpListener>,
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
            .collect::<Result<Vec<_>, _>>()?;
        let udp = bind_rfc5780(config, udp, workers)?;
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
        let shared = config.listen.shared_tls();
        let shared_tls = shared
            .map(|addr| stream("tls/https", "listen.tls and listen.https", addr))
            .transpose()?;
        let tls = (config.listen.tls.iter())
            .filter(|&&addr| Some(addr) != shared)
            .map(|&addr| stream("tls", "listen.tls", addr))
            .collect::<Result<_, _>>()?;
        let http = (config.listen.http)
            .map(|addr| stream("http", "listen.http", addr))
            .transpose()?;
        let https = (config.listen.https)
            .filter(|&addr| Some(addr) != shared)
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
            shared_tls,
            cert,
        })
    }
}

/// With `[stun] other-address`, adds a socket group for each of RFC 5780's four addresses
/// that `listen.udp` does not already have, after those of `listen.udp`.
fn bind_rfc5780(
    config: &Config,
    mut udp: Vec<Vec<std::net::UdpSocket>>,
    workers: usize,
) -> Result<Vec<Vec<std::net::UdpSocket>>, BindError> {
    let pair = (config.stun.rfc5780(&config.listen))
        .and_then(|(primary, other)| crate::stun::rfc5780::Addresses::new(primary, other));
    for addr in pair.iter().flat_map(|a| a.all()) {
        if config.listen.udp.contains(&addr) {
            continue;
        }
        let group = udp::bind_group(addr, workers).map_err(|error| BindError {
            proto: "udp",
            addr,
            key: "stun.other-address",
            error,
        })?;
        udp.push(group);
    }
    Ok(udp)
}

/// The line black-box tests and operators look for: "listening on udp 127.0.0.1:3478".
pub(super) fn log_bound(proto: &str, addr: io::Result<SocketAddr>, sockets: usize) {
    match addr {
        Ok(addr) if sockets > 1 => {
            tracing::info!("listening on {proto} {addr} ({sockets} sockets)");
        }
        Ok(addr) => tracing::info!("listening on {proto} {addr}"),
        Err(e) => tracing::warn!("listening on {proto}, address unknown: {e}"),
    }
}
