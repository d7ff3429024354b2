//! [`Target`]: what `rturn probe` checks, from a URL (`stun:`, `turn:`, `turns:`, `http:`,
//! `https:`) or derived from a config file's `[listen]` section. Pure: parsing and choosing,
//! no name resolution and no sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::ListenConfig;

/// How a STUN/TURN target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams.
    Udp,
    /// A TCP stream.
    Tcp,
    /// TLS over TCP (`turns:`).
    Tls,
}

impl Transport {
    /// The name in the report: "UDP", "TCP" or "TLS".
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// One thing to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A STUN/TURN server at `host:port` over `transport`.
    Turn {
        /// The host as written (a name or an address).
        host: String,
        /// The port.
        port: u16,
        /// UDP, TCP or TLS.
        transport: Transport,
        /// A `turn:`/`turns:` URL (or a `[listen]` address): Allocate too, not only Binding.
        turn: bool,
    },
    /// An HTTP(S) listener: `/healthz` and `/api/ice-servers` are fetched from it.
    Http {
        /// The host as written.
        host: String,
        /// The port.
        port: u16,
        /// HTTPS rather than plain HTTP.
        tls: bool,
    },
}

/// Why a URL is not one `rturn probe` understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {why}")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parses `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, `turns:host[:port]`,
/// `http://host:port[/…]` or `https://host:port[/…]`. A `stun:` or `turn:` URL without
/// `?transport` means UDP (RFC 7065 §3); `turns:` is always TLS over TCP.
pub fn parse_url(url: &str) -> Result<Target, UrlError> {
    let err = |why: &str| UrlError {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| err("no scheme: expected stun:, turn:, turns:, http:// or https://"))?;
    let scheme = scheme.to_ascii_lowercase();
    if let Some(tls) = match scheme.as_str() {
        "http" => Some(false),
        "https" => Some(true),
        _ => None,
    } {
        let rest = rest
            .strip_prefix("//")
            .ok_or_else(|| err("expected // after the scheme"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let (host, port) = host_port(authority, if tls { 443 } else { 80 }).map_err(err)?;
        return Ok(Target::Http { host, port, tls });
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let transport = match query {
        None => None,
        Some(q) => match q.to_ascii_lowercase().strip_prefix("transport=") {
            Some("udp") => Some(Transport::Udp),
            Some("tcp") => Some(Transport::Tcp),
            _ => return Err(err("the only query understood is ?transport=udp or tcp")),
        },
    };
    let (transport, default_port) = match (scheme.as_str(), transport) {
        ("stun" | "turn", t) => (t.unwrap_or(Transport::Udp), 3478),
        ("turns", None | Some(Transport::Tcp)) => (Transport::Tls, 5349),
        ("turns", _) => return Err(err("turns: runs over TCP (DTLS is not probed)")),
        _ => {
            return Err(err(
                "unknown scheme: expected stun, turn, turns, http or https",
            ));
        }
    };
    let (host, port) = host_port(authority, default_port).map_err(err)?;
    Ok(Target::Turn {
        host,
        port,
        transport,
        turn: scheme != "stun",
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        (host, after.strip_prefix(':'))
    } else if authority.matches(':').count() > 1 {
        return Err("an IPv6 address goes in brackets: [::1]:3478");
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| "the port is not a number")?,
    };
    Ok((host.to_owned(), port))
}

/// The targets a config's `[listen]` names: its first UDP, TCP and TLS addresses and its
/// HTTP and HTTPS listeners. A wildcard address (0.0.0.0, ::) is probed on loopback.
pub fn from_listen(listen: &ListenConfig) -> Vec<Target> {
    let turn = |addrs: &[SocketAddr], transport| {
        addrs.first().map(|&a| {
            let a = reachable(a);
            Target::Turn {
                host: a.ip().to_string(),
                port: a.port(),
                transport,
                turn: true,
            }
        })
    };
    let http = |addr: Option<SocketAddr>, tls| {
        addr.map(|a| {
            let a = reachable(a);
            Target::Http {
                host: a.ip().to_string(),
                port: a.port(),
                tls,
            }
        })
    };
    [
        turn(&listen.udp, Transport::Udp),
        turn(&listen.tcp, Transport::Tcp),
        turn(&listen.tls, Transport::Tls),
        http(listen.http, false),
        http(listen.https, true),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `addr`, or loopback of its family if it is the wildcard address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(host: &str, port: u16, transport: Transport) -> Target {
        Target::Turn {
            host: host.to_owned(),
            port,
            transport,
            turn: true,
        }
    }

    fn stun(host: &str, port: u16) -> Target {
        Target::Turn {
            host: host.to_owned(),
            port,
            transport: Transport::Udp,
            turn: false,
        }
    }

    #[test]
    fn stun_and_turn_urls() {
        let parse = |u| parse_url(u).unwrap();
        assert_eq!(parse("stun:example.org"), stun("example.org", 3478));
        assert_eq!(
            parse("turn:1.2.3.4:3479"),
            turn("1.2.3.4", 3479, Transport::Udp)
        );
        assert_eq!(
            parse("turn:h:1?transport=tcp"),
            turn("h", 1, Transport::Tcp)
        );
        assert_eq!(
            parse("TURN:h?transport=UDP"),
            turn("h", 3478, Transport::Udp)
        );
        assert_eq!(parse("turns:h"), turn("h", 5349, Transport::Tls));
        assert_eq!(
            parse("turns:h:443?transport=tcp"),
            turn("h", 443, Transport::Tls)
        );
        assert_eq!(parse("turn:[::1]:9"), turn("::1", 9, Transport::Udp));
        assert_eq!(parse("stun:[::1]"), stun("::1", 3478));
    }

    #[test]
    fn http_urls() {
        let http = |host: &str, port, tls| Target::Http {
            host: host.to_owned(),
            port,
            tls,
        };
        assert_eq!(
            parse_url("http://127.0.0.1:8080").unwrap(),
            http("127.0.0.1", 8080, false)
        );
        assert_eq!(
            parse_url("https://t.example/x").unwrap(),
            http("t.example", 443, true)
        );
        assert_eq!(
            parse_url("http://[::1]:80/healthz").unwrap(),
            http("::1", 80, false)
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("example.org", "no scheme"),
            ("turn:", "no host"),
            ("turn:h:x", "not a number"),
            ("turn:h?transport=sctp", "?transport"),
            ("turns:h?transport=udp", "DTLS"),
            ("turn:::1", "brackets"),
            ("turn:[::1", "unclosed"),
            ("ftp://h", "unknown scheme"),
            ("http:h", "//"),
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.to_string().contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn listen_addresses_become_targets_wildcards_on_loopback() {
        let listen: ListenConfig = toml::from_str(
            "udp = [\"0.0.0.0:3478\"]\ntcp = [\"[::]:3479\"]\ntls = [\"192.0.2.1:5349\"]\n\
             http = \"127.0.0.1:8080\"",
        )
        .unwrap();
        assert_eq!(
            from_listen(&listen),
            vec![
                turn("127.0.0.1", 3478, Transport::Udp),
                turn("::1", 3479, Transport::Tcp),
                turn("192.0.2.1", 5349, Transport::Tls),
                Target::Http {
                    host: "127.0.0.1".to_owned(),
                    port: 8080,
                    tls: false
                },
            ]
        );
    }
}
