//! Data for one of rturn's own live relay endpoints is routed as a hand-off, from the
//! sending relay's advertised address, at either spelling of the receiving relay (#17).

use std::sync::Mutex;

use super::*;
use crate::turn::own_relays::{LiveRelays, OwnRelays};

/// The IPv4 relay ports live now, as the shared port table would say.
#[derive(Debug, Default)]
struct Live(Mutex<BTreeSet<u16>>);

impl LiveRelays for Live {
    fn holds(&self, port: u16, ipv6: bool) -> bool {
        !ipv6 && self.0.lock().unwrap().contains(&port)
    }
}

fn with_own_relays(live: &Arc<Live>) -> Harness {
    let mut setup = Setup::default();
    let own = OwnRelays::new(vec![(RELAY_V4, ADVERTISED_V4)], live.clone());
    setup.rules = PeerRules::new(false, vec![], vec![], vec![SERVER]).with_own_relays(own);
    setup.start()
}

#[test]
fn data_for_an_own_live_relay_is_handed_over_from_the_advertised_address() {
    let live = Arc::new(Live::default());
    let mut h = with_own_relays(&live);
    let (alice, bob) = (h.alice(1), h.bob(2));
    let (ra, rb) = (h.allocate(0, &alice), h.allocate(0, &bob));
    assert_eq!((ra.ip(), rb.ip()), (ADVERTISED_V4, ADVERTISED_V4));
    live.0.lock().unwrap().extend([ra.port(), rb.port()]);
    let bob_bound = relay(rb.port());
    let handed = Some(ToPeer::Handoff {
        to: bob_bound,
        from: ra,
    });

    // To bob's relay as advertised (external-ip) and as bound (relay-ip, loopback here).
    h.ok(0, &alice, Request::create_permission(&[rb, bob_bound]));
    h.ok(0, &alice, Request::channel_bind(0x4000, rb));
    h.ok(0, &alice, Request::channel_bind(0x4001, bob_bound));
    let now = h.at(0);
    assert_eq!(h.mgr.channel_route(now, &alice.tuple, 0x4000, 10), handed);
    assert_eq!(h.mgr.channel_route(now, &alice.tuple, 0x4001, 10), handed);
    let ind = decode(&build(&Request::send(bob_bound, b"hi"), None));
    let sent = h.mgr.handle_send(now, alice.tuple, &ind);
    assert_eq!(sent, handed.map(|to| (to, &b"hi"[..])));

    // Bob's allocation sees it as from alice's advertised relay: his own permission decides.
    assert_eq!(h.route(0, bob_bound, ra), None, "bob has no permission yet");
    h.ok(0, &bob, Request::create_permission(&[ra]));
    let to_bob = PeerRoute {
        client: bob.tuple,
        channel: None,
    };
    assert_eq!(h.route(0, bob_bound, ra), Some(to_bob));

    // Released: the loopback spelling is a loopback address again, refused per packet; the
    // advertised one is the public address it always was, sent out as before.
    live.0.lock().unwrap().remove(&rb.port());
    assert_eq!(h.mgr.channel_route(now, &alice.tuple, 0x4001, 10), None);
    let out = h.mgr.channel_route(now, &alice.tuple, 0x4000, 10);
    assert!(
        matches!(out, Some(ToPeer::Out { peer, .. }) if peer == rb),
        "{out:?}"
    );
}
