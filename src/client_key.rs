//! Who a client is, for every per-address limit (unauthenticated requests, TCP/TLS
//! connections per IP, signaling connections and joins per IP): its IPv4 address, also when
//! written IPv4-mapped, or its IPv6 /64 — the smallest network an ISP hands out, inside which
//! a host picks addresses freely, so counting single IPv6 addresses would limit nothing.

use std::net::{IpAddr, Ipv6Addr};

/// The key `ip` is counted under.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The same key as one integer (IPv4 as IPv4-mapped IPv6), for compact hash tables.
pub fn client_key_bits(ip: IpAddr) -> u128 {
    match client_key(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn ipv4_as_itself_ipv6_by_64() {
        assert_eq!(client_key(ip("192.0.2.9")), ip("192.0.2.9"));
        assert_eq!(client_key(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
        assert_eq!(client_key(ip("2001:db8:a:b:c:d:e:f")), ip("2001:db8:a:b::"));
        assert_eq!(client_key(ip("::1")), ip("::"));
    }

    #[test]
    fn bits_keep_families_and_prefixes_apart() {
        let bits = |s| client_key_bits(ip(s));
        assert_eq!(bits("192.0.2.9"), bits("::ffff:192.0.2.9"));
        assert_ne!(bits("::1"), bits("127.0.0.1"));
        assert_ne!(bits("0.0.0.0"), bits("::"));
        assert_eq!(bits("2001:db8:1:2::1"), bits("2001:db8:1:2:ffff::9"));
        assert_ne!(bits("2001:db8:1:2::1"), bits("2001:db8:1:3::1"));
    }
}
