//! `[stun]`: the STUN service beside TURN: whether rturn serves STUN only (no allocations,
//! coturn's `stun-only`), RFC 5780's second address, their defaults and their checks.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::KeyError;
use super::listen::ListenConfig;

/// `[stun]`: what rturn serves besides TURN. A key left out takes its value from
/// [`StunConfig::default`]: STUN and TURN both served, no RFC 5780.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StunConfig {
    /// Serve Binding only: every TURN request (Allocate, Refresh, CreatePermission,
    /// ChannelBind...) gets 403 Forbidden, no credentials or relay address are needed.
    pub only: bool,
    /// RFC 5780's second address, differing in IP and port from the first `listen.udp`
    /// address of its family (the primary): rturn then also listens on the primary IP at
    /// this port, this IP at the primary port and this address.
    pub other_address: Option<SocketAddr>,
}

impl StunConfig {
    /// The primary `listen.udp` address and `other-address`, when RFC 5780 is on
    /// (`validate` has checked them).
    pub fn rfc5780(&self, listen: &ListenConfig) -> Option<(SocketAddr, SocketAddr)> {
        let other = self.other_address?;
        let primary = listen.udp.iter().find(|a| a.is_ipv4() == other.is_ipv4())?;
        Some((*primary, other))
    }

    /// The rules within `[stun]`, against the UDP listen addresses.
    pub(super) fn validate(&self, listen: &ListenConfig) -> Result<(), KeyError> {
        let Some(other) = self.other_address else {
            return Ok(());
        };
        let key = "stun.other-address";
        let family = if other.is_ipv4() { "IPv4" } else { "IPv6" };
        let Some((primary, _)) = self.rfc5780(listen) else {
            return Err(KeyError::new(
                key,
                format!("needs an {family} address in listen.udp to pair with (RFC 5780)"),
            ));
        };
        if primary.ip().is_unspecified() || primary.port() == 0 {
            return Err(KeyError::new(
                key,
                format!(
                    "the first {family} listen.udp address ({primary}) must be a concrete IP \
                     with a fixed port to pair with, e.g. \"192.0.2.1:3478\""
                ),
            ));
        }
        if other.ip().is_unspecified() || other.port() == 0 {
            return Err(KeyError::new(
                key,
                "must be a concrete IP with a fixed port, e.g. \"192.0.2.2:3479\"",
            ));
        }
        if other.ip() == primary.ip() {
            return Err(KeyError::new(
                key,
                format!(
                    "must differ in IP from listen.udp's {primary}: CHANGE-REQUEST's \"change \
                     IP\" needs a second address of this machine (RFC 5780 §4.1)"
                ),
            ));
        }
        if other.port() == primary.port() {
            return Err(KeyError::new(
                key,
                format!(
                    "must differ in port from listen.udp's {primary} (RFC 5780 §4.1), e.g. {}",
                    SocketAddr::new(other.ip(), primary.port().wrapping_add(1).max(1))
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn check(listen: &str, stun: &str) -> Result<Config, String> {
        let text = format!("realm = \"r\"\n[listen]\nudp = {listen}\ntcp = []\n[stun]\n{stun}\n");
        Config::from_toml(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn other_address_pairs_with_the_first_listen_udp_of_its_family() {
        let c = check(
            "[\"[::1]:3478\", \"127.0.0.1:3478\"]",
            "other-address = \"127.0.0.2:3479\"",
        )
        .unwrap();
        let pair = c.stun.rfc5780(&c.listen).unwrap();
        assert_eq!(pair.0, "127.0.0.1:3478".parse().unwrap());
        assert!(
            check("[\"127.0.0.1:3478\"]", "only = true")
                .unwrap()
                .stun
                .only
        );
    }

    #[test]
    fn other_address_must_differ_in_ip_and_port_from_a_concrete_primary() {
        for (listen, other, says) in [
            (
                "[\"127.0.0.1:3478\"]",
                "127.0.0.1:3479",
                "must differ in IP",
            ),
            (
                "[\"127.0.0.1:3478\"]",
                "127.0.0.2:3478",
                "must differ in port",
            ),
            (
                "[\"0.0.0.0:3478\"]",
                "127.0.0.2:3479",
                "must be a concrete IP",
            ),
            ("[\"127.0.0.1:0\"]", "127.0.0.2:3479", "fixed port"),
            ("[\"127.0.0.1:3478\"]", "127.0.0.2:0", "fixed port"),
            (
                "[\"127.0.0.1:3478\"]",
                "[::2]:3479",
                "needs an IPv6 address",
            ),
        ] {
            let e = check(listen, &format!("other-address = \"{other}\"")).unwrap_err();
            assert!(
                e.starts_with("stun.other-address: ") && e.contains(says),
                "{other}: {e}"
            );
        }
        let e = check("[\"127.0.0.1:3478\"]", "other = 1").unwrap_err();
        assert!(e.contains("other"), "{e}");
    }
}
