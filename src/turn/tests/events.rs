//! The manager's side of the socket table, without the test loop in between: an Allocate
//! asks for its sockets ([`Answer::Bind`]), routes name the slot the loop chose, and what
//! goes away comes out as [`Event`]s.

use super::*;

#[test]
fn an_allocate_asks_for_sockets_routes_name_their_slot_and_a_delete_closes_it() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let now = h.at(0);
    let req = decode(&alice.signed(&Request::allocate()));
    let wanted = match h.mgr.mgr.handle_request(now, alice.tuple, &req) {
        Answer::Bind(wanted) => wanted,
        Answer::Reply(answer) => panic!("answered at once: {:?}", decode(answer)),
        Answer::Later => panic!("answered later"),
    };
    assert_eq!(wanted, [(RELAY_V4, PortChoice::Any)]);
    // Any slot the loop likes: the manager only hands it back.
    let bound = Bound {
        addr: relay(50005),
        slot: 7,
    };
    let resp = read(h.mgr.mgr.allocate_bound(now, alice.tuple, &req, &[bound]));
    assert_success(&resp, alice.key());
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, 50005)]);
    assert_eq!(h.mgr.poll_event(), None, "nothing to close");

    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    let route = h.mgr.channel_route(now, &alice.tuple, 0x4000, 10);
    assert_eq!(
        route,
        Some(ToPeer::Out {
            slot: 7,
            peer: PEER_A
        })
    );
    let back = h.mgr.peer_route(now, 7, PEER_A, 10);
    assert_eq!(
        back.map(|r| (r.client, r.channel)),
        Some((alice.tuple, Some(0x4000)))
    );
    assert_eq!(h.mgr.peer_route(now, 8, PEER_A, 10), None, "another slot");

    let refresh = decode(&alice.signed(&Request::refresh(0)));
    assert!(matches!(
        h.mgr.mgr.handle_request(now, alice.tuple, &refresh),
        Answer::Reply(_)
    ));
    assert_eq!(h.mgr.poll_event(), Some(Event::Close(bound)));
    assert_eq!(h.mgr.poll_event(), None);
    assert_eq!(h.mgr.peer_route(now, 7, PEER_A, 10), None);
}

#[test]
fn sockets_nobody_asked_for_are_given_back_unanswered() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let req = decode(&alice.signed(&Request::allocate()));
    let stray = Bound {
        addr: relay(50003),
        slot: 3,
    };
    let answer = h
        .mgr
        .mgr
        .allocate_bound(h.at(0), alice.tuple, &req, &[stray]);
    assert!(answer.is_empty());
    assert_eq!(h.mgr.poll_event(), Some(Event::Close(stray)));
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
}
