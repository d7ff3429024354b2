//! Which browser origins may open `/ws` and call `/api/ice-servers`: those listed in
//! `[signal] allowed-origins`, and this server's own pages, named from the configuration
//! only. The request's `Host` header is never trusted: with DNS rebinding, a page on
//! `http://evil.example:8080` whose name now resolves to this server sends
//! `Host: evil.example:8080`, and it must not count as "our own origin".

use std::net::{IpAddr, SocketAddr};

use crate::config::Config;

/// The origins of this server's own pages: for the HTTP listener `http://HOST[:PORT]` and
/// for the HTTPS listener `https://HOST[:PORT]` (the port left out when it is the scheme's
/// default, as browsers send it), where HOST is each of `[ice] public-host`, the public
/// `relay.external-ip` addresses, the listener's own address, and for a loopback or
/// wildcard listener `localhost` and the loopback address. A page served any other way (a
/// reverse proxy, another name) goes in `allowed-origins`.
pub fn own_origins(
    config: &Config,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    if let Some(name) = &config.ice.public_host {
        add(&mut hosts, name.clone());
    }
    for (_, public) in config.external_ips().unwrap_or_default() {
        add(&mut hosts, host_of(public));
    }
    let mut origins = Vec::new();
    for (scheme, default_port, listener) in [("http", 80, http), ("https", 443, https)] {
        let Some(listener) = listener else { continue };
        let mut names = hosts.clone();
        let ip = listener.ip();
        if !ip.is_unspecified() {
            add(&mut names, host_of(ip));
        }
        if ip.is_loopback() || ip.is_unspecified() {
            add(&mut names, "localhost".to_owned());
            let loopback = match ip {
                IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            };
            add(&mut names, host_of(loopback));
        }
        if ip.is_unspecified() {
            // A wildcard listener also serves on the relay addresses, which are this
            // machine's own (they are bound at start).
            for relay in &config.relay.relay_ip {
                if relay.is_ipv4() == ip.is_ipv4() {
                    add(&mut names, host_of(*relay));
                }
            }
        }
        let port = listener.port();
        for name in names {
            if port == default_port {
                origins.push(format!("{scheme}://{name}"));
            } else {
                origins.push(format!("{scheme}://{name}:{port}"));
            }
        }
    }
    origins
}

/// Adds `host` (lowercased) unless it is there already.
fn add(hosts: &mut Vec<String>, host: String) {
    let host = host.to_ascii_lowercase();
    if !hosts.contains(&host) {
        hosts.push(host);
    }
}

fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Allowed when no list is configured (any origin, as documented), when the client sent no
/// Origin (not a browser, which cannot be made to omit it), or when the Origin is listed or
/// is one of `own` (scheme, host and port all compared; host case-insensitively).
pub fn allowed(allowed: &[String], own: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = origin else {
        return true;
    };
    allowed
        .iter()
        .chain(own)
        .any(|a| a.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!(
            "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.5\"\n{extra}"
        ))
        .expect("config")
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().expect("addr"))
    }

    #[test]
    fn own_origins_come_from_the_configuration() {
        let c =
            config("external-ip = \"203.0.113.5\"\n[ice]\npublic-host = \"Turn.Example.org\"\n");
        let own = own_origins(&c, addr("0.0.0.0:8080"), addr("[::]:443"));
        for expected in [
            "http://turn.example.org:8080",
            "http://203.0.113.5:8080",
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://10.0.0.5:8080",
            "https://turn.example.org",
            "https://203.0.113.5",
            "https://localhost",
            "https://[::1]",
        ] {
            assert!(
                own.iter().any(|o| o == expected),
                "{expected} not in {own:?}"
            );
        }
        // The IPv4 relay address is not reachable on an IPv6 listener.
        assert!(!own.iter().any(|o| o == "https://10.0.0.5"), "{own:?}");

        let own = own_origins(&config(""), addr("192.0.2.7:80"), None);
        assert_eq!(own, ["http://192.0.2.7"]);
    }

    #[test]
    fn the_host_header_is_not_an_origin() {
        let own = own_origins(&config(""), addr("127.0.0.1:8080"), None);
        let list = ["https://app.example.org".to_owned()];
        let ok = |origin: &str| allowed(&list, &own, Some(origin));
        assert!(ok("https://app.example.org"));
        assert!(ok("HTTPS://APP.example.org"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://localhost:8080"));
        assert!(!ok("http://evil.example:8080"), "DNS rebinding");
        assert!(!ok("https://127.0.0.1:8080"), "scheme compared");
        assert!(!ok("http://app.example.org"), "scheme compared");
        assert!(!ok("http://127.0.0.1:8081"), "port compared");
        assert!(!ok("https://app.example.org.evil.example"));
        assert!(allowed(&list, &own, None), "no Origin: not a browser");
        assert!(
            allowed(&[], &own, Some("http://evil.example")),
            "no list: any"
        );
    }
}
