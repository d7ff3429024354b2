//! rturn's own live relay endpoints as peers: allowed whatever their class, nothing else of
//! their host (unit tests of [`PeerRules::with_own_relays`]).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::Denied::*;
use super::PeerRules;
use crate::turn::own_relays::{LiveRelays, OwnRelays};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Relay ports 50000 and 50002 are live on both families.
#[derive(Debug)]
struct Live;

impl LiveRelays for Live {
    fn holds(&self, port: u16, _ipv6: bool) -> bool {
        port == 50_000 || port == 50_002
    }
}

fn with_own(denied: Vec<IpNet>) -> PeerRules {
    let relays = vec![
        (ip("127.0.0.1"), ip("127.0.0.1")),
        (ip("10.0.0.7"), ip("198.18.0.7")),
    ];
    let own = OwnRelays::new(relays, std::sync::Arc::new(Live));
    PeerRules::new(false, vec![], denied, vec![]).with_own_relays(own)
}

#[test]
fn own_live_relay_endpoints_are_allowed_whatever_their_class() {
    let rules = with_own(vec![]);
    // The relay address, or the external-ip advertised for it (here in a refused class too).
    for (peer, bound) in [
        ("127.0.0.1:50000", "127.0.0.1:50000"),
        ("10.0.0.7:50002", "10.0.0.7:50002"),
        ("198.18.0.7:50002", "10.0.0.7:50002"),
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(rules.allows_permission(peer), Ok(()), "{peer}");
        assert_eq!(rules.allows_addr(peer), Ok(()), "{peer}");
        assert_eq!(
            rules.own_relay(peer),
            Some(bound.parse().unwrap()),
            "{peer}"
        );
    }
    // Another port of a relay address, a relay port of another loopback address, or a
    // disguise of a relay address: refused as before.
    for (peer, why) in [
        ("127.0.0.1:50001", Loopback),
        ("127.0.0.2:50000", Loopback),
        ("10.0.0.8:50000", Private),
        ("[::ffff:127.0.0.1]:50000", Loopback),
        ("198.18.0.7:50001", Benchmarking),
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(rules.allows_permission(peer), Err(why), "{peer}");
        assert_eq!(rules.allows_addr(peer), Err(why), "{peer}");
        assert_eq!(rules.own_relay(peer), None, "{peer}");
    }
    // Without the live view (the strict default), nothing changes.
    let strict = PeerRules::new(false, vec![], vec![], vec![]);
    assert_eq!(
        strict.allows_addr("127.0.0.1:50000".parse().unwrap()),
        Err(Loopback)
    );
}

#[test]
fn an_operator_denial_wins_over_own_relays() {
    let rules = with_own(vec!["127.0.0.0/8".parse().unwrap()]);
    let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    assert_eq!(rules.allows_permission(peer), Err(Configured));
    assert_eq!(rules.allows_addr(peer), Err(Configured));
    assert_eq!(rules.own_relay(peer), None, "denied: never handed over");
}
