//! `[listen]`: the addresses clients reach rturn on (STUN/TURN over UDP, TCP and TLS; HTTP and
//! HTTPS), their defaults and their checks.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::KeyError;

/// The STUN/TURN port of RFC 8489 §9, used by the default listen addresses.
pub const DEFAULT_PORT: u16 = 3478;

/// `[listen]`: where clients reach rturn. A key left out takes its value from
/// [`ListenConfig::default`]: UDP and TCP on `0.0.0.0:3478`, nothing else.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenConfig {
    /// STUN/TURN over UDP.
    pub udp: Vec<SocketAddr>,
    /// STUN/TURN over TCP.
    pub tcp: Vec<SocketAddr>,
    /// STUN/TURN over TLS (`turns:`); needs `[tls]`.
    pub tls: Vec<SocketAddr>,
    /// The HTTP listener's routes over HTTPS (`wss://` signaling); needs `[tls]`.
    pub https: Option<SocketAddr>,
    /// Signaling, pages and the ICE-servers API over HTTP; unset: no HTTP listener.
    pub http: Option<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        let every_address = vec![SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))];
        Self {
            udp: every_address.clone(),
            tcp: every_address,
            tls: Vec::new(),
            https: None,
            http: None,
        }
    }
}

impl ListenConfig {
    /// The rules within `[listen]`; `has_certificate`: whether `[tls]` is there, which
    /// `listen.tls` and `listen.https` need.
    pub(super) fn validate(&self, has_certificate: bool) -> Result<(), KeyError> {
        if self.udp.is_empty() && self.tcp.is_empty() {
            return Err(KeyError::new(
                "listen",
                "nothing to listen on: give at least one address in listen.udp or listen.tcp",
            ));
        }
        for (key, addrs) in [("listen.udp", &self.udp), ("listen.tcp", &self.tcp)] {
            for (i, addr) in addrs.iter().enumerate() {
                if addrs[..i].contains(addr) {
                    return Err(KeyError::new(key, format!("{addr} is listed twice")));
                }
            }
        }
        if !has_certificate {
            if !self.tls.is_empty() {
                return Err(KeyError::new(
                    "listen.tls",
                    "needs a certificate: add [tls] with cert and key",
                ));
            }
            if self.https.is_some() {
                return Err(KeyError::new(
                    "listen.https",
                    "needs a certificate: add [tls] with cert and key",
                ));
            }
        }
        for (i, addr) in self.tls.iter().enumerate() {
            let taken = self.tls[..i].contains(addr) || self.tcp.contains(addr);
            if taken && addr.port() != 0 {
                return Err(KeyError::new(
                    "listen.tls",
                    format!("{addr} is listed twice (in listen.tcp or listen.tls)"),
                ));
            }
        }
        Ok(())
    }

    /// The first listen address reachable from other machines, if any.
    pub(super) fn public_address(&self) -> Option<SocketAddr> {
        self.udp
            .iter()
            .chain(&self.tcp)
            .chain(&self.tls)
            .chain(&self.http)
            .chain(&self.https)
            .copied()
            .find(|a| !a.ip().is_loopback())
    }
}
