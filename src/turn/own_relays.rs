//! rturn's own live relay endpoints as peers (#17): two clients of one server relaying to
//! each other. A peer address is one of ours when its IP is a `relay-ip` or the `external-ip`
//! advertised for it, and its port is bound for an allocation now ([`LiveRelays`], the
//! shared port table). Such a peer is allowed whatever its address class
//! ([`super::peer_rules::PeerRules`]), and the data for it never leaves the process: it is
//! handed to the allocation that holds the port ([`super::ToPeer::Handoff`]), so neither a
//! kernel round trip nor hairpin NAT is needed. Everything here is pure: the live view is a
//! trait the server implements over its port table.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Which ports of the relay addresses rturn holds for an allocation now, across every worker
/// (the shared port table): a peer at one of them is one of rturn's own live relay endpoints.
pub trait LiveRelays: std::fmt::Debug + Send + Sync {
    /// Whether the relay port `port` of the IPv4 (or IPv6) relay address is bound for an
    /// allocation now (a reserved port nobody claimed is not).
    fn holds(&self, port: u16, ipv6: bool) -> bool;

    /// Whether that port is bound for an RFC 6062 TCP allocation now (its TCP listener).
    fn holds_tcp(&self, _port: u16, _ipv6: bool) -> bool {
        false
    }
}

/// rturn's relay addresses, each as it is bound and as it is advertised, and which of their
/// ports are live. `Default` knows no relay address: nothing is one of ours.
#[derive(Debug, Clone, Default)]
pub struct OwnRelays {
    /// `(relay-ip, advertised)` pairs; the advertised address is the `external-ip` of that
    /// relay address, or the relay address itself.
    addrs: Box<[(IpAddr, IpAddr)]>,
    live: Option<Arc<dyn LiveRelays>>,
}

impl OwnRelays {
    /// `addrs`: each `relay-ip` with the address advertised for it (itself without
    /// `external-ip`); `live`: which of their ports are bound now.
    pub fn new(addrs: Vec<(IpAddr, IpAddr)>, live: Arc<dyn LiveRelays>) -> Self {
        Self {
            addrs: addrs.into_boxed_slice(),
            live: Some(live),
        }
    }

    /// The bound relay address `peer` names, when `peer` is one of rturn's own live relay
    /// endpoints: `relay-ip:port` or `external-ip:port` with a port an allocation holds now.
    /// An IPv4-in-IPv6 spelling of a relay address is not one of ours.
    pub fn resolve(&self, peer: SocketAddr) -> Option<SocketAddr> {
        if peer.port() == 0 {
            return None;
        }
        let &(bound, _) = (self.addrs.iter())
            .find(|(bound, shown)| *bound == peer.ip() || *shown == peer.ip())?;
        let live = self.live.as_ref()?.holds(peer.port(), bound.is_ipv6());
        live.then_some(SocketAddr::new(bound, peer.port()))
    }

    /// Whether `peer` is one of rturn's own live RFC 6062 TCP relay listeners, at its bound
    /// relay address (an advertised `external-ip` would go out through the NAT: no).
    pub fn is_tcp_listener(&self, peer: SocketAddr) -> bool {
        let ours = (self.addrs.iter()).any(|(bound, _)| *bound == peer.ip());
        ours && peer.port() != 0
            && (self.live.as_ref()).is_some_and(|l| l.holds_tcp(peer.port(), peer.is_ipv6()))
    }

    /// Whether `ip` is a relay address, bound or advertised, whose live ports are ours.
    pub fn is_relay_ip(&self, ip: IpAddr) -> bool {
        (self.addrs.iter()).any(|(bound, shown)| *bound == ip || *shown == ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relay ports 50000 (IPv4) and 50002 (IPv6) are live.
    #[derive(Debug)]
    struct Live;

    impl LiveRelays for Live {
        fn holds(&self, port: u16, ipv6: bool) -> bool {
            (port, ipv6) == (50_000, false) || (port, ipv6) == (50_002, true)
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn own() -> OwnRelays {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        OwnRelays::new(
            vec![
                (ip("10.0.0.7"), ip("203.0.113.9")),
                (ip("fd00::7"), ip("fd00::7")),
            ],
            Arc::new(Live),
        )
    }

    #[test]
    fn relay_ip_and_external_ip_name_the_bound_relay() {
        let own = own();
        for (peer, bound) in [
            ("10.0.0.7:50000", "10.0.0.7:50000"),
            ("203.0.113.9:50000", "10.0.0.7:50000"),
            ("[fd00::7]:50002", "[fd00::7]:50002"),
        ] {
            assert_eq!(own.resolve(addr(peer)), Some(addr(bound)), "{peer}");
        }
    }

    #[test]
    fn ports_not_held_other_hosts_and_disguises_are_not_ours() {
        let own = own();
        for peer in [
            "10.0.0.7:50001",
            "203.0.113.9:50002",
            "10.0.0.7:0",
            "10.0.0.8:50000",
            "[::ffff:10.0.0.7]:50000",
            "[fd00::7]:50000",
        ] {
            assert_eq!(own.resolve(addr(peer)), None, "{peer}");
        }
        assert!(own.is_relay_ip(addr("203.0.113.9:1").ip()));
        assert!(!own.is_relay_ip(addr("203.0.113.8:1").ip()));
        assert_eq!(OwnRelays::default().resolve(addr("10.0.0.7:50000")), None);
    }
}
