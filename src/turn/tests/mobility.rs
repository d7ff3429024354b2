//! RFC 8016 mobility: MOBILITY-TICKET on Allocate and Refresh, and an allocation moving to
//! its client's new 5-tuple with everything it holds.

use super::*;
use crate::turn::Moved;
use crate::turn::ticket::{ATTR_MOBILITY_TICKET, TicketKey};

fn mobile() -> Harness {
    let mut setup = Setup::default();
    setup.config.mobility = true;
    setup.start()
}

/// The ticket of a response.
#[track_caller]
fn ticket(resp: &Reply) -> Vec<u8> {
    crate::turn::attrs::value(&resp.msg, ATTR_MOBILITY_TICKET)
        .expect("a MOBILITY-TICKET")
        .to_vec()
}

fn allocate_mobile(h: &mut Harness, alice: &Caller) -> Vec<u8> {
    let resp = h.ok(
        0,
        alice,
        Request::allocate().attr(ATTR_MOBILITY_TICKET, &[]),
    );
    ticket(&resp)
}

fn refresh_with(ticket: &[u8]) -> Request {
    Request::refresh(600).attr(ATTR_MOBILITY_TICKET, ticket)
}

#[test]
fn allocate_asks_for_a_ticket_and_gets_one_only_when_mobility_is_on() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    // Off: 405 (Mobility Forbidden), and no allocation.
    let ask = Request::allocate().attr(ATTR_MOBILITY_TICKET, &[]);
    h.refused(0, &alice, ask.clone(), 405);
    assert!(!h.mgr.has_allocation(&alice.tuple));
    // A plain Allocate gets none.
    let plain = h.ok(0, &alice, Request::allocate());
    assert!(!plain.contains(ATTR_MOBILITY_TICKET));

    let mut h = mobile();
    let alice = h.alice(1);
    // Not empty: 400.
    let wrong = Request::allocate().attr(ATTR_MOBILITY_TICKET, b"x");
    h.refused(0, &alice, wrong, 400);
    let first = h.ok(0, &alice, ask.clone());
    let t = ticket(&first);
    assert_eq!(t.len(), 32);
    assert!(t.iter().all(|b| b.is_ascii_graphic()));
    assert_eq!(h.mgr.mobile_count(), 1);
    // Without asking, another client gets none.
    let bob = h.bob(2);
    let plain = h.ok(0, &bob, Request::allocate());
    assert!(!plain.contains(ATTR_MOBILITY_TICKET));
    assert_eq!(h.mgr.mobile_count(), 1);
}

#[test]
fn a_retransmitted_allocate_repeats_the_ticket() {
    let mut h = mobile();
    let alice = h.alice(1);
    let raw = alice.signed(&Request::allocate().attr(ATTR_MOBILITY_TICKET, &[]));
    let first = h.send(0, alice.tuple, &raw);
    let again = h.send(1, alice.tuple, &raw);
    assert_success(&again, alice.key());
    assert_eq!(ticket(&first), ticket(&again));
}

#[test]
fn a_refresh_with_the_ticket_moves_the_allocation_with_its_permissions_and_channels() {
    let mut h = mobile();
    let alice = h.alice(1);
    let t1 = allocate_mobile(&mut h, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(0, &alice, Request::create_permission(&[PEER_B]));
    while h.mgr.poll_moved().is_some() {}

    // The client's address changed: tuple 2, a fresh nonce for it.
    let moved = h.alice(2);
    let resp = h.ok(10, &moved, refresh_with(&t1));
    assert_eq!(ticket(&resp), t1, "one ticket for the allocation's life");
    assert_eq!(
        h.mgr.poll_moved(),
        Some(Moved::To {
            from: alice.tuple,
            to: moved.tuple
        })
    );
    assert!(!h.mgr.has_allocation(&alice.tuple));
    assert!(h.mgr.has_allocation(&moved.tuple));
    // Relaying goes on from and to the new 5-tuple only.
    assert_eq!(h.channel(10, &moved, 0x4000), Some((relay(50000), PEER_A)));
    assert_eq!(h.channel(10, &alice, 0x4000), None);
    assert_eq!(h.send_to(10, moved.tuple, PEER_B), Some(relay(50000)));
    assert_eq!(h.send_to(10, alice.tuple, PEER_B), None);
    let to_moved = Some(PeerRoute {
        client: moved.tuple,
        channel: Some(0x4000),
    });
    assert_eq!(h.route(10, relay(50000), PEER_A), to_moved);
    // The old 5-tuple has nothing any more.
    let old = h.alice(1);
    h.refused(10, &old, Request::refresh(600), 437);
    // Timers moved too: the channel and the permissions expire, then the allocation. A
    // plain Refresh of a mobile allocation carries its ticket too (as coturn's does).
    assert_eq!(ticket(&h.ok(200, &moved, Request::refresh(600))), t1);
    h.expire(700);
    assert_eq!(h.channel(700, &moved, 0x4000), None);
    assert!(h.mgr.has_allocation(&moved.tuple));
    h.expire(900);
    assert!(!h.mgr.has_allocation(&moved.tuple));
    assert_eq!(h.mgr.mobile_count(), 0);
    assert_eq!(h.mgr.poll_moved(), Some(Moved::Gone(moved.tuple)));
    assert_eq!(h.mgr.metrics().allocations_moved, 1);
    assert!(h.held().is_empty(), "its relay port went back");
}

#[test]
fn a_retransmitted_move_is_answered_again_and_the_ticket_stays_the_same() {
    let mut h = mobile();
    let alice = h.alice(1);
    let t1 = allocate_mobile(&mut h, &alice);
    let moved = h.alice(2);
    // coturn's uclient sends its moving Refresh twice, the second from the new 5-tuple
    // that already holds the allocation.
    let raw = moved.signed(&refresh_with(&t1));
    let first = h.send(1, moved.tuple, &raw);
    assert_success(&first, moved.key());
    let again = h.send(1, moved.tuple, &raw);
    assert_success(&again, moved.key());
    assert_eq!((ticket(&first), ticket(&again)), (t1.clone(), t1.clone()));
    // And in a new transaction: the same ticket again.
    assert_eq!(ticket(&h.ok(3, &moved, refresh_with(&t1))), t1);
    assert!(h.mgr.has_allocation(&moved.tuple));
    assert_eq!(h.mgr.metrics().allocations_moved, 1);
    // LIFETIME 0 with the ticket deletes: no ticket back.
    let gone = h.ok(
        5,
        &moved,
        Request::refresh(0).attr(ATTR_MOBILITY_TICKET, &t1),
    );
    assert!(!gone.contains(ATTR_MOBILITY_TICKET));
    assert!(!h.mgr.has_allocation(&moved.tuple));
    assert_eq!(h.mgr.mobile_count(), 0);
}

#[test]
fn a_refresh_whose_response_was_lost_leaves_the_ticket_working_for_a_move() {
    let mut h = mobile();
    let alice = h.alice(1);
    let t1 = allocate_mobile(&mut h, &alice);
    // Periodic Refreshes with the ticket from its own address; their answers are lost.
    h.ok(100, &alice, refresh_with(&t1));
    h.ok(200, &alice, refresh_with(&t1));
    // The client changes network and shows the only ticket it holds. A move needs a nonce
    // issued within 30 s for the new address: one from 210 s ago gets 438 and nothing moves.
    let stale = h.alice(2);
    assert_error(&h.request(210, &stale, refresh_with(&t1)), 438);
    assert!(h.mgr.has_allocation(&alice.tuple));
    let moved = h.login(210, stale.tuple, "alice", "wonderland");
    assert_eq!(ticket(&h.ok(210, &moved, refresh_with(&t1))), t1);
    assert!(h.mgr.has_allocation(&moved.tuple));
    assert!(!h.mgr.has_allocation(&alice.tuple));
}

#[test]
fn a_moving_refresh_that_fails_moves_nothing() {
    use stun::attributes::ATTR_LIFETIME;
    let mut h = mobile();
    let alice = h.alice(1);
    let t1 = allocate_mobile(&mut h, &alice);
    while h.mgr.poll_moved().is_some() {}
    let moved = h.alice(2);
    // A LIFETIME of the wrong length: 400, and the allocation stays where it was.
    let bad = Request::new(METHOD_REFRESH)
        .attr(ATTR_LIFETIME, &[0, 1])
        .attr(ATTR_MOBILITY_TICKET, &t1);
    h.refused(1, &moved, bad, 400);
    // A family the allocation has no relay of: 443.
    h.refused(1, &moved, refresh_with(&t1).family(0x02), 443);
    assert!(h.mgr.has_allocation(&alice.tuple));
    assert!(!h.mgr.has_allocation(&moved.tuple));
    assert_eq!(h.mgr.poll_moved(), None);
    assert_eq!(h.mgr.metrics().allocations_moved, 0);
    // It still moves, later.
    let t = ticket(&h.ok(2, &moved, refresh_with(&t1)));
    assert!(h.mgr.has_allocation(&moved.tuple));
    // LIFETIME 0 from yet another address deletes it where it is: no ticket, no move.
    while h.mgr.poll_moved().is_some() {}
    let third = h.alice(3);
    let gone = h.ok(
        3,
        &third,
        Request::refresh(0).attr(ATTR_MOBILITY_TICKET, &t),
    );
    assert!(!gone.contains(ATTR_MOBILITY_TICKET));
    assert!(!h.mgr.has_allocation(&moved.tuple) && !h.mgr.has_allocation(&third.tuple));
    assert_eq!(h.mgr.poll_moved(), Some(Moved::Gone(moved.tuple)));
    assert_eq!(h.mgr.poll_moved(), None);
    assert!(h.held().is_empty(), "its relay port went back");
}

#[test]
fn moves_need_the_allocations_user_and_a_genuine_live_ticket() {
    let mut h = mobile();
    let alice = h.alice(1);
    let t1 = allocate_mobile(&mut h, &alice);
    // bob with alice's ticket: 441, nothing moved.
    let bob = h.bob(2);
    h.refused(1, &bob, refresh_with(&t1), 441);
    assert!(h.mgr.has_allocation(&alice.tuple));
    // Garbled, forged, wrong length: 400.
    let elsewhere = h.alice(3);
    let mut garbled = t1.clone();
    garbled[5] ^= 1;
    h.refused(1, &elsewhere, refresh_with(&garbled), 400);
    let forged = TicketKey::from_bytes([1; 32]).seal(0, &[0; 14]);
    h.refused(1, &elsewhere, refresh_with(&forged), 400);
    h.refused(1, &elsewhere, refresh_with(&t1[..31]), 400);
    h.refused(1, &elsewhere, refresh_with(&[]), 400);
    // A ticket for the allocation's own 5-tuple that is not its own: 400.
    h.refused(1, &alice, refresh_with(&garbled), 400);
    assert!(h.mgr.has_allocation(&alice.tuple));
    // A plain allocation has no ticket to show.
    let carol = h.bob(4);
    h.allocate(1, &carol);
    h.refused(1, &carol, refresh_with(&t1), 400);
    // The allocation gone: 437.
    h.ok(2, &alice, Request::refresh(0));
    h.refused(3, &elsewhere, refresh_with(&t1), 437);
}

#[test]
fn another_workers_ticket_is_refused_here_and_mobility_off_refuses_refreshes() {
    let mut h = mobile();
    let key = TicketKey::from_bytes([9; 32]);
    h.mgr.set_mobility(0, key.clone());
    h.other_shard.set_mobility(1, key);
    let alice = h.alice(1);
    let t1 = allocate_mobile(&mut h, &alice);
    // The glue passes it to the owner; one that reaches another worker anyway gets 437.
    h.switch_shard();
    let moved = h.alice(2);
    h.refused(1, &moved, refresh_with(&t1), 437);
    h.switch_shard();
    assert!(h.mgr.has_allocation(&alice.tuple));
    // Mobility turned off by a reload: tickets get 405, plain refreshes go on.
    let mut config = h.mgr.config.clone();
    config.mobility = false;
    let (auth, rules) = (Arc::clone(&h.auth), Arc::clone(&h.mgr.rules));
    h.mgr.reload(config, auth, rules);
    h.refused(2, &moved, refresh_with(&t1), 405);
    h.refused(2, &alice, refresh_with(&t1), 405);
    let plain = h.ok(2, &alice, Request::refresh(600));
    assert!(
        !plain.contains(ATTR_MOBILITY_TICKET),
        "no ticket while it is off"
    );
}

#[test]
fn a_mobile_allocation_outlives_its_tcp_connection_detached_until_it_moves_or_a_short_grace_ends() {
    let mut h = mobile();
    let over_tcp = |port| FiveTuple {
        transport: Transport::Tcp,
        ..tuple(port)
    };
    let alice = h.login(0, over_tcp(1), "alice", "wonderland");
    let t1 = allocate_mobile(&mut h, &alice);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    // A plain one goes with its connection.
    let bob = h.login(0, over_tcp(2), "bob", "builder");
    h.allocate(0, &bob);
    h.close(0, bob.tuple);
    assert!(!h.mgr.has_allocation(&bob.tuple));
    h.close(0, alice.tuple);
    // Detached: kept, but not under the closed connection's 5-tuple, so a new connection
    // from the same address and port (a reused NAT port) reaches nothing of it, neither
    // its requests nor the peer's data.
    assert!(!h.mgr.has_allocation(&alice.tuple));
    assert_eq!(h.mgr.mobile_count(), 1);
    let reused = h.login(1, over_tcp(1), "alice", "wonderland");
    h.refused(1, &reused, Request::refresh(600), 437);
    h.refused(1, &reused, Request::create_permission(&[PEER_B]), 437);
    assert_eq!(
        h.route(1, relay(50000), PEER_A),
        None,
        "nobody to deliver to"
    );
    // A new connection with the ticket takes it, for its full lifetime again, with the
    // permission it kept.
    let again = h.login(2, over_tcp(3), "alice", "wonderland");
    assert_eq!(ticket(&h.ok(2, &again, refresh_with(&t1))), t1);
    assert!(h.mgr.has_allocation(&again.tuple));
    let to_again = h
        .route(2, relay(50000), PEER_A)
        .expect("the permission is kept");
    assert_eq!(to_again.client, again.tuple);
    h.expire(100);
    assert!(h.mgr.has_allocation(&again.tuple));
    // Closed and never taken: it ends after the grace (60 s), not its lifetime (600 s).
    h.close(100, again.tuple);
    h.expire(159);
    assert_eq!(h.mgr.mobile_count(), 1);
    h.expire(161);
    assert_eq!(h.mgr.mobile_count(), 0);
    assert!(h.held().is_empty(), "its relay port went back");
}

#[test]
fn a_tcp_allocation_is_never_mobile() {
    use crate::turn::tcp_link::PROTO_TCP;
    let mut setup = Setup::default();
    setup.config.mobility = true;
    let mut h = setup.start();
    let over_tcp = FiveTuple {
        transport: Transport::Tcp,
        ..tuple(1)
    };
    let alice = h.login(0, over_tcp, "alice", "wonderland");
    let ask = Request::new(METHOD_ALLOCATE)
        .transport(PROTO_TCP)
        .attr(ATTR_MOBILITY_TICKET, &[]);
    // Allocated, without a ticket (RFC 8016 §3.1: the client learns it is not mobile).
    let resp = h.ok(0, &alice, ask);
    assert!(!resp.contains(ATTR_MOBILITY_TICKET));
    assert_eq!(h.mgr.mobile_count(), 0);
    // It ends with its control connection (RFC 6062).
    h.close(1, alice.tuple);
    assert_eq!(h.mgr.metrics().allocations_deleted, 1);
    assert!(h.held().is_empty());
}

#[test]
fn a_client_moving_onto_an_address_a_stale_allocation_holds_takes_it() {
    let mut h = mobile();
    // alice's client left tuple 1 without a word (its socket closed; UDP says nothing), and
    // bob's client, moving, got the same address and port.
    let alice = h.alice(1);
    let alice_ticket = allocate_mobile(&mut h, &alice);
    let bob = h.bob(2);
    let bob_ticket = allocate_mobile(&mut h, &bob);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    let bob_there = h.login(10, alice.tuple, "bob", "builder");
    // Not with a forged ticket, nor with alice's own, nor with a nonce of another address:
    // the allocation there is alice's, and bob is not alice (441) or not let in (438).
    let mut forged = bob_ticket.clone();
    forged[5] ^= 1;
    h.refused(10, &bob_there, refresh_with(&forged), 441);
    h.refused(10, &bob_there, refresh_with(&alice_ticket), 441);
    let elsewhere = h.login(10, tuple(3), "bob", "builder");
    let raw = elsewhere.signed(&refresh_with(&bob_ticket));
    assert_eq!(h.send(10, alice.tuple, &raw).code(), 438);
    assert_eq!(h.channel(10, &alice, 0x4000), Some((relay(50000), PEER_A)));
    // A move that fails (a family bob's allocation has no relay of: 443) evicts nobody.
    h.refused(10, &bob_there, refresh_with(&bob_ticket).family(0x02), 443);
    assert_eq!(h.channel(10, &alice, 0x4000), Some((relay(50000), PEER_A)));
    // The genuine move: alice's allocation makes way (detached), bob's moves in.
    let resp = h.ok(10, &bob_there, refresh_with(&bob_ticket));
    assert_eq!(ticket(&resp), bob_ticket);
    assert!(h.mgr.has_allocation(&alice.tuple) && !h.mgr.has_allocation(&bob.tuple));
    assert_eq!(
        h.channel(10, &bob_there, 0x4000),
        None,
        "none of alice's channels"
    );
    assert_eq!(h.mgr.mobile_count(), 2);
    // Detached, alice's allocation keeps its permissions, but its peers reach nobody.
    assert_eq!(h.route(10, relay(50000), PEER_A), None);
    // alice's client, wherever it is now, still takes its own allocation with its ticket.
    let alice_now = h.alice(4);
    let back = h.ok(20, &alice_now, refresh_with(&alice_ticket));
    assert_eq!(ticket(&back), alice_ticket);
    assert_eq!(
        h.channel(20, &alice_now, 0x4000),
        Some((relay(50000), PEER_A))
    );
    let route = h.route(20, relay(50000), PEER_A).expect("alice's again");
    assert_eq!(
        (route.client, route.channel),
        (alice_now.tuple, Some(0x4000))
    );
    // A ticket whose allocation is gone takes nothing over.
    h.ok(30, &alice_now, Request::refresh(0));
    let bob_back = h.login(30, alice_now.tuple, "bob", "builder");
    h.ok(30, &bob_back, Request::allocate());
    let carol_there = h.login(31, alice_now.tuple, "alice", "wonderland");
    h.refused(31, &carol_there, refresh_with(&alice_ticket), 441);
    assert!(h.mgr.has_allocation(&alice_now.tuple));
}

#[test]
fn a_moved_allocation_counts_against_its_new_client_address() {
    let mut setup = Setup {
        quotas: Quotas::new(limits(0, 0, 1)),
        ..Setup::default()
    };
    setup.config.mobility = true;
    let mut h = setup.start();
    let at = |ip: &str, n: u16| FiveTuple {
        client: SocketAddr::new(ip.parse().unwrap(), 40000 + n),
        ..tuple(n)
    };
    let (home, away) = ("192.0.2.50", "198.51.100.77");
    let alice = h.login(0, at(home, 1), "alice", "wonderland");
    let ticket = allocate_mobile(&mut h, &alice);
    // Moved away (`max-allocations-per-ip = 1`): home has room again, away is full.
    let moved = h.login(1, at(away, 2), "alice", "wonderland");
    h.ok(1, &moved, refresh_with(&ticket));
    let bob_home = h.login(2, at(home, 3), "bob", "builder");
    h.allocate(2, &bob_home);
    let bob_away = h.login(2, at(away, 4), "bob", "builder");
    h.refused(2, &bob_away, Request::allocate(), 486);
    // Its end gives the unit back where it is counted now.
    h.ok(3, &moved, Request::refresh(0));
    h.allocate(3, &bob_away);
    // A move onto a full address goes ahead, but its unit stays at the old one: moving
    // allocations away never makes room for more than the limit at either address.
    h.ok(4, &bob_home, Request::refresh(0));
    let again = h.login(5, at(home, 6), "bob", "builder");
    let bob_ticket = allocate_mobile(&mut h, &again);
    let bob_moving = h.login(6, at(away, 7), "bob", "builder");
    h.ok(6, &bob_moving, refresh_with(&bob_ticket));
    h.ok(6, &bob_moving, Request::refresh(600));
    let alice_home = h.login(7, at(home, 8), "alice", "wonderland");
    h.refused(7, &alice_home, Request::allocate(), 486);
    // Its end gives the unit back where it stayed.
    h.ok(8, &bob_moving, Request::refresh(0));
    h.allocate(8, &alice_home);
}
