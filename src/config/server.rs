//! `[server]`: process-wide settings (workers, TCP/TLS/HTTP connection limits and timeouts,
//! the unauthenticated-request limit, drain), their defaults and their checks.

use std::time::Duration;

use serde::Deserialize;

use super::de::human_duration;
use super::error::KeyError;

/// How long a TCP connection may stay silent before it is closed.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many client TCP connections are served at once; more wait in the kernel backlog.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 10_000;
/// Client TCP/TLS connections one IP address may hold at once. Networks that block UDP put
/// every user of an office or campus on TURN over TCP/TLS from one address.
pub const DEFAULT_MAX_TCP_CONNECTIONS_PER_IP: usize = 1000;
/// Unauthenticated requests (Binding, and TURN requests answered without valid credentials)
/// answered per second per source address and worker. A browser starting a call sends about
/// 10 to 20 (a Binding and an unauthenticated Allocate per local interface and server URL,
/// with retransmissions), so this sustains 10 to 20 call setups a second from one address.
pub const DEFAULT_UNAUTHENTICATED_RATE: u32 = 200;
/// How many unauthenticated requests one source address may send at once: about 50 to 100
/// browsers behind one NAT starting calls at the same moment.
pub const DEFAULT_UNAUTHENTICATED_BURST: u32 = 1000;
/// How long a TCP/TLS connection may live without holding an allocation.
pub const DEFAULT_TCP_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes waiting to be written to one connection (`server.max-tcp-queued-bytes`,
/// `signal.max-queued-bytes`): 16 full-size signaling messages, or a second of 8 Mbit/s
/// relayed to a TCP client; a client that lets more pile up is not reading, and is closed.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// The smallest `server.max-tcp-queued-bytes`: one largest TURN frame and a little more.
pub const MIN_TCP_QUEUED_BYTES: usize = 65_536;
/// How long a client may take to finish the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head on the HTTP listeners: the first one
/// counted from accept (after the TLS handshake), later ones from their first byte.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an HTTP connection may wait for its next request (keep-alive) before it is closed.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the HTTP and HTTPS listeners hold at once, WebSockets included: above the
/// default `[signal] max-connections`, so a full signaling server still serves its pages.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 20_000;
/// HTTP and HTTPS connections (WebSockets included) one IP address may hold at once: above
/// the default `[signal] max-connections-per-ip` plus a browser's parallel page loads.
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP: usize = 500;
/// After SIGUSR1 (drain), how long rturn waits for the last allocation to end.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// `[server]`: process-wide settings. A key left out takes its value from
/// [`ServerConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Data-path worker threads, each with its own SO_REUSEPORT socket per UDP address.
    /// Absent means one per core.
    pub workers: Option<usize>,
    /// A TCP client connection that sends nothing for this long is closed.
    #[serde(deserialize_with = "human_duration")]
    pub tcp_idle_timeout: Duration,
    /// Client TCP connections served at once.
    pub max_tcp_connections: usize,
    /// Client TCP/TLS connections one IP address may hold at once; more are closed at
    /// accept. 0 means no limit.
    pub max_tcp_connections_per_ip: usize,
    /// A TCP/TLS connection that holds no allocation this long after it was accepted (or
    /// after its allocation ended) is closed, however chatty it is.
    #[serde(deserialize_with = "human_duration")]
    pub tcp_allocation_timeout: Duration,
    /// Bytes (answers and relayed data) waiting to be written to one TCP/TLS client; a
    /// client that stops reading and lets more pile up is closed.
    pub max_tcp_queued_bytes: usize,
    /// A TLS client that has not finished its handshake this long after connecting is closed.
    #[serde(deserialize_with = "human_duration")]
    pub tls_handshake_timeout: Duration,
    /// A request head on the HTTP listeners that is not complete this long after it started
    /// (the first: after accept) closes the connection.
    #[serde(deserialize_with = "human_duration")]
    pub http_header_timeout: Duration,
    /// An HTTP connection that waits this long for its next request is closed.
    #[serde(deserialize_with = "human_duration")]
    pub http_idle_timeout: Duration,
    /// Connections the HTTP and HTTPS listeners hold at once, WebSockets included; more are
    /// closed at accept.
    pub max_http_connections: usize,
    /// HTTP and HTTPS connections one IP address may hold at once, WebSockets included; more
    /// are closed at accept. 0 means no limit.
    pub max_http_connections_per_ip: usize,
    /// Unauthenticated requests answered per second per source address (IPv6: per /64) and
    /// worker; past the bucket nothing is answered. 0 turns the limit off.
    pub unauthenticated_rate: u32,
    /// The token bucket's size: how many unauthenticated requests one source may send at once.
    pub unauthenticated_burst: u32,
    /// After SIGUSR1 (drain), rturn exits when the last allocation ends or this much time
    /// has passed.
    #[serde(deserialize_with = "human_duration")]
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: None,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_tcp_connections_per_ip: DEFAULT_MAX_TCP_CONNECTIONS_PER_IP,
            tcp_allocation_timeout: DEFAULT_TCP_ALLOCATION_TIMEOUT,
            max_tcp_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            http_header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
            unauthenticated_rate: DEFAULT_UNAUTHENTICATED_RATE,
            unauthenticated_burst: DEFAULT_UNAUTHENTICATED_BURST,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl ServerConfig {
    /// The rules within `[server]`.
    pub(super) fn validate(&self) -> Result<(), KeyError> {
        match self.workers {
            Some(0) => {
                return Err(KeyError::new(
                    "server.workers",
                    "must be at least 1; leave it out to use one worker per core",
                ));
            }
            Some(n) if n > 1024 => {
                return Err(KeyError::new("server.workers", "must be at most 1024"));
            }
            _ => {}
        }
        if self.max_tcp_connections == 0 {
            return Err(KeyError::new(
                "server.max-tcp-connections",
                "must be at least 1",
            ));
        }
        if self.tcp_idle_timeout < Duration::from_secs(1) {
            return Err(KeyError::new(
                "server.tcp-idle-timeout",
                "must be at least \"1s\"",
            ));
        }
        if self.tcp_allocation_timeout < Duration::from_secs(1) {
            return Err(KeyError::new(
                "server.tcp-allocation-timeout",
                "must be at least \"1s\" (a client needs a few round trips to allocate)",
            ));
        }
        if self.max_tcp_queued_bytes < MIN_TCP_QUEUED_BYTES {
            return Err(KeyError::new(
                "server.max-tcp-queued-bytes",
                format!("must be at least {MIN_TCP_QUEUED_BYTES} (one largest TURN frame)"),
            ));
        }
        if self.tls_handshake_timeout < Duration::from_millis(100) {
            return Err(KeyError::new(
                "server.tls-handshake-timeout",
                "must be at least \"100ms\"",
            ));
        }
        for (key, timeout) in [
            ("server.http-header-timeout", self.http_header_timeout),
            ("server.http-idle-timeout", self.http_idle_timeout),
        ] {
            if timeout < Duration::from_millis(100) {
                return Err(KeyError::new(key, "must be at least \"100ms\""));
            }
        }
        if self.max_http_connections == 0 {
            return Err(KeyError::new(
                "server.max-http-connections",
                "must be at least 1",
            ));
        }
        if self.unauthenticated_rate > 0 && self.unauthenticated_burst == 0 {
            return Err(KeyError::new(
                "server.unauthenticated-burst",
                "must be at least 1 while server.unauthenticated-rate is on (0 turns the limit off)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
