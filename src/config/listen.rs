//! `[listen]`: the addresses clients reach rturn on (STUN/TURN over UDP, TCP and TLS; HTTP and
//! HTTPS), the load balancers trusted to put a PROXY protocol header before a connection,
//! their defaults and their checks.

use std::net::SocketAddr;

use ipnet::IpNet;
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
    /// Load balancers (addresses or CIDR ranges) whose connections must start with a PROXY
    /// protocol header (v1 or v2) naming the real client; empty: PROXY protocol off.
    #[serde(deserialize_with = "super::de::ip_nets")]
    pub proxy_protocol_from: Vec<IpNet>,
    /// The listeners `proxy-protocol-from` applies to (default: all four).
    pub proxy_protocol_listeners: Vec<ProxyListener>,
}

/// A kind of listener that can sit behind a load balancer speaking the PROXY protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyListener {
    /// `listen.tcp`: STUN/TURN over TCP.
    Tcp,
    /// `listen.tls`: STUN/TURN over TLS (the header comes before the TLS handshake).
    Tls,
    /// `listen.http`.
    Http,
    /// `listen.https` (the header comes before the TLS handshake).
    Https,
}

impl ListenConfig {
    /// The trusted load balancers of listener kind `kind`: `None` when PROXY protocol is
    /// off for it.
    pub fn proxy_protocol_for(&self, kind: ProxyListener) -> Option<&[IpNet]> {
        let on =
            !self.proxy_protocol_from.is_empty() && self.proxy_protocol_listeners.contains(&kind);
        on.then_some(&self.proxy_protocol_from[..])
    }
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
            proxy_protocol_from: Vec::new(),
            proxy_protocol_listeners: vec![
                ProxyListener::Tcp,
                ProxyListener::Tls,
                ProxyListener::Http,
                ProxyListener::Https,
            ],
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
        if !self.proxy_protocol_from.is_empty() && self.proxy_protocol_listeners.is_empty() {
            return Err(KeyError::new(
                "listen.proxy-protocol-listeners",
                "names no listener, so proxy-protocol-from is unused: name some of \
                 \"tcp\", \"tls\", \"http\", \"https\", or remove proxy-protocol-from",
            ));
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
    fn proxy_protocol_is_off_unless_networks_are_trusted() {
        let off = listen("");
        off.validate(false).unwrap();
        assert_eq!(off.proxy_protocol_for(ProxyListener::Tcp), None);
        let on = listen("proxy-protocol-from = [\"10.0.0.0/8\", \"192.0.2.7\"]");
        on.validate(false).unwrap();
        let nets = on.proxy_protocol_for(ProxyListener::Https).unwrap();
        assert_eq!(
            nets,
            [
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        let some = listen(
            "proxy-protocol-from = [\"10.0.0.0/8\"]\nproxy-protocol-listeners = [\"http\", \"tls\"]",
        );
        assert!(some.proxy_protocol_for(ProxyListener::Tls).is_some());
        assert!(some.proxy_protocol_for(ProxyListener::Http).is_some());
        assert!(some.proxy_protocol_for(ProxyListener::Tcp).is_none());
        let none = listen("proxy-protocol-from = [\"10.0.0.0/8\"]\nproxy-protocol-listeners = []");
        assert_eq!(
            none.validate(false).unwrap_err().key,
            "listen.proxy-protocol-listeners"
        );
    }

    #[test]
    fn proxy_protocol_keys_name_their_errors() {
        let error = |text: &str| crate::config::Config::from_toml(text).unwrap_err();
        let bad_net = error("realm = \"x\"\n[listen]\nproxy-protocol-from = [\"10.0.0.0/33\"]");
        assert_eq!(bad_net.key, "listen.proxy-protocol-from");
        assert!(
            bad_net.message.contains("10.0.0.0/33"),
            "{}",
            bad_net.message
        );
        let bad_kind = error("realm = \"x\"\n[listen]\nproxy-protocol-listeners = [\"udp\"]");
        assert!(
            bad_kind.key.starts_with("listen.proxy-protocol-listeners"),
            "{}",
            bad_kind.key
        );
        assert!(bad_kind.message.contains("udp"), "{}", bad_kind.message);
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
