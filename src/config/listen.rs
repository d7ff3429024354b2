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
    /// The HTTP listener's routes over HTTPS (`wss://` signaling); needs `[tls]`. The same
    /// address (not port 0) as one of `tls`: one listener serves `turns:` and HTTPS there
    /// ([`ListenConfig::shared_tls`]).
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
        if let Some(https) = self.https
            && https.port() != 0
            && self.tcp.contains(&https)
        {
            return Err(KeyError::new(
                "listen.https",
                format!("{https} is in listen.tcp too (it may share an address with listen.tls)"),
            ));
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

    /// The address `listen.https` shares with `listen.tls`, if it names one of them (with a
    /// port other than 0, which means "any free port", a new one for each): one TLS
    /// listener serves STUN/TURN and HTTPS there, told apart per connection.
    pub fn shared_tls(&self) -> Option<SocketAddr> {
        self.https
            .filter(|https| https.port() != 0 && self.tls.contains(https))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(text: &str) -> ListenConfig {
        toml::from_str(text).expect("a [listen] section")
    }

    #[test]
    fn tls_and_https_need_a_certificate() {
        let tls = listen("tls = [\"127.0.0.1:5349\"]");
        assert_eq!(tls.validate(false).unwrap_err().key, "listen.tls");
        tls.validate(true).unwrap();
        let https = listen("https = \"127.0.0.1:8443\"");
        assert_eq!(https.validate(false).unwrap_err().key, "listen.https");
        https.validate(true).unwrap();
    }

    /// Port 0 (the tests' "any free port") may repeat: each bind gets its own port.
    #[test]
    fn a_tls_address_may_not_repeat_a_tcp_one_unless_its_port_is_0() {
        let taken = listen("tcp = [\"127.0.0.1:1\"]\ntls = [\"127.0.0.1:1\"]");
        assert_eq!(taken.validate(true).unwrap_err().key, "listen.tls");
        listen("tcp = [\"127.0.0.1:0\"]\ntls = [\"127.0.0.1:0\", \"127.0.0.1:0\"]")
            .validate(true)
            .unwrap();
    }

    /// One TLS port for `turns:` and HTTPS: the same address in both is shared, not a
    /// clash; port 0 stays two listeners; HTTPS on a plain TCP port is refused.
    #[test]
    fn https_may_share_a_tls_address() {
        let shared = listen("tls = [\"127.0.0.1:443\"]\nhttps = \"127.0.0.1:443\"");
        shared.validate(true).unwrap();
        assert_eq!(shared.shared_tls(), Some("127.0.0.1:443".parse().unwrap()));
        let apart = listen("tls = [\"127.0.0.1:5349\"]\nhttps = \"127.0.0.1:443\"");
        assert_eq!(apart.shared_tls(), None);
        let any = listen("tls = [\"127.0.0.1:0\"]\nhttps = \"127.0.0.1:0\"");
        assert_eq!(any.shared_tls(), None);
        let plain = listen("tcp = [\"127.0.0.1:443\"]\nhttps = \"127.0.0.1:443\"");
        assert_eq!(plain.validate(true).unwrap_err().key, "listen.https");
    }

    #[test]
    fn public_address_is_the_first_not_on_loopback() {
        assert_eq!(
            listen("").public_address(),
            Some(SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))
        );
        let local = listen("udp = [\"127.0.0.1:3478\"]\ntcp = [\"[::1]:3478\"]");
        assert_eq!(local.public_address(), None);
        let http = listen("udp = [\"127.0.0.1:3478\"]\ntcp = []\nhttp = \"192.0.2.1:80\"");
        assert_eq!(http.public_address(), Some("192.0.2.1:80".parse().unwrap()));
    }
}
