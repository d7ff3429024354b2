//! Allocate, address families, EVEN-PORT and reservations, Refresh (RFC 8656 §7, §8).

use super::*;

// Allocate (RFC 8656 §7).

#[test]
fn allocate_answers_relay_lifetime_and_mapped_address() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Request::allocate());
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, 50000)]);
    assert_eq!(resp.lifetime, Some(600));
    assert_eq!(resp.mapped, Some(alice.tuple.client));
    assert!(!resp.contains(ATTR_RESERVATION_TOKEN));
    assert_eq!(h.held(), [relay(50000)]);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 1));
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(600)));
}

#[test]
fn allocate_lifetime_is_clamped_between_default_and_max() {
    let mut h = Setup::default().start();
    for (n, asked, granted) in [
        (1, 30, 600),
        (2, 100_000, 3600),
        (3, 1000, 1000),
        (4, 0, 600),
    ] {
        let client = h.alice(n);
        let resp = h.ok(0, &client, Request::allocate().lifetime(asked));
        assert_eq!(resp.lifetime, Some(granted), "asked {asked}");
    }
}

#[test]
fn retransmitted_allocate_is_answered_again_and_a_new_one_is_437() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let raw = alice.signed(&Request::allocate());
    let first = h.send(0, alice.tuple, &raw);
    assert_success(&first, alice.key());
    let again = h.send(1, alice.tuple, &raw);
    assert_success(&again, alice.key());
    assert_eq!(again.relayed, first.relayed);
    assert_eq!(again.mapped, first.mapped);
    assert_eq!(again.lifetime, Some(599));
    h.refused(1, &alice, Request::allocate(), 437);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 1));
    assert_eq!(h.held(), [relay(50000)]);
}

#[test]
fn retransmitted_allocate_repeats_the_reservation_token() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let raw = alice.signed(&Request::allocate().even_port(true));
    let first = h.send(0, alice.tuple, &raw);
    let again = h.send(1, alice.tuple, &raw);
    assert_success(&again, alice.key());
    let token = first.reservation_token.clone().unwrap();
    assert_eq!(again.reservation_token, Some(token));
}

#[test]
fn requested_transport_must_be_udp() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Request::new(METHOD_ALLOCATE), 400);
    h.refused(0, &alice, Request::new(METHOD_ALLOCATE).transport(132), 442);
    // RFC 6062 §5.1: TCP, but over UDP (TCP allocations: `tcp_relay.rs`).
    h.refused(0, &alice, Request::new(METHOD_ALLOCATE).transport(6), 400);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
    assert!(h.held().is_empty());
}

#[test]
fn unknown_comprehension_required_attribute_is_420() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let req = Request::allocate()
        .attr(AttrType(0x7777), &[1; 4])
        .attr(AttrType(0x8777), &[1; 4]);
    let resp = h.request(0, &alice, req);
    assert_error(&resp, 420);
    let mut unknown = UnknownAttributes(Vec::new());
    unknown.get_from(&resp.msg).unwrap();
    assert_eq!(unknown.0, [AttrType(0x7777)]);
    assert_eq!(h.mgr.allocation_count(), 0);
}

#[test]
fn another_user_on_the_same_tuple_is_441() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    let bob = h.bob(1);
    h.refused(10, &bob, Request::refresh(0), 441);
    h.refused(10, &bob, Request::allocate(), 441);
    assert_eq!(h.mgr.allocation_count(), 1);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(600)));
}

// Address families (RFC 8656 §7.2, §18.11, §18.12).

#[test]
fn ipv6_or_unknown_family_without_a_relay_is_440() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Request::allocate().family(2), 440);
    h.refused(0, &alice, Request::allocate().family(3), 440);
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Request::allocate().family(3), 440);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
}

#[test]
fn ipv6_family_gets_the_ipv6_relay() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Request::allocate().family(2));
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V6, 50000)]);
    assert_eq!(h.held(), [SocketAddr::new(RELAY_V6, 50000)]);
}

#[test]
fn additional_family_gives_a_dual_allocation() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Request::allocate().additional_family(2));
    let (ipv4, ipv6) = (ADVERTISED_V4, ADVERTISED_V6);
    let both = [SocketAddr::new(ipv4, 50000), SocketAddr::new(ipv6, 50000)];
    assert_eq!(resp.relayed, both);
    assert!(!resp.contains(ATTR_ADDRESS_ERROR_CODE));

    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Request::allocate().additional_family(2));
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, 50000)]);
    // Family IPv6, class 4, number 40: 440 Address Family not Supported.
    assert_eq!(
        resp.msg.get(ATTR_ADDRESS_ERROR_CODE).unwrap(),
        [2, 0, 4, 40]
    );
}

#[test]
fn conflicting_family_attributes_are_400() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    h.refused(
        0,
        &alice,
        Request::allocate().family(1).additional_family(2),
        400,
    );
    h.refused(0, &alice, Request::allocate().additional_family(1), 400);
    assert_eq!(h.mgr.allocation_count(), 0);
}

// EVEN-PORT and RESERVATION-TOKEN (RFC 8656 §7.2).

/// A port range that starts odd, so that "even" is visible.
fn odd_first() -> Setup {
    Setup {
        ports: 50001..=50010,
        ..Setup::default()
    }
}

#[test]
fn even_port_is_even() {
    let mut h = odd_first().start();
    let (alice, other) = (h.alice(1), h.alice(2));
    assert_eq!(h.allocate(0, &alice).port(), 50001, "plain takes the first");
    let resp = h.ok(0, &other, Request::allocate().even_port(false));
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, 50002)]);
    assert!(!resp.contains(ATTR_RESERVATION_TOKEN));
    assert_eq!(h.held(), [relay(50001), relay(50002)]);
}

/// Alice allocates with EVEN-PORT R: returns the token.
fn reserve(h: &mut Harness) -> Vec<u8> {
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Request::allocate().even_port(true));
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, 50002)]);
    let token = resp.reservation_token.clone().unwrap();
    assert_eq!(token.len(), 8);
    assert_eq!(h.held(), [relay(50002), relay(50003)]);
    token
}

#[test]
fn reservation_token_claims_the_next_port_once() {
    let mut h = odd_first().start();
    let token = reserve(&mut h);
    let bob = h.bob(2);
    let resp = h.ok(5, &bob, Request::allocate().reservation_token(&token));
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, 50003)]);
    let carol = h.alice(3);
    h.refused(
        5,
        &carol,
        Request::allocate().reservation_token(&token),
        508,
    );
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (2, 2));
    // The claimed port outlives the reservation timer.
    h.expire(30);
    assert_eq!(h.held(), [relay(50002), relay(50003)]);
}

#[test]
fn even_port_with_token_is_400_and_unknown_token_is_508() {
    let mut h = odd_first().start();
    let token = reserve(&mut h);
    let bob = h.bob(2);
    h.refused(
        0,
        &bob,
        Request::allocate()
            .even_port(false)
            .reservation_token(&token),
        400,
    );
    h.refused(0, &bob, Request::allocate().reservation_token(&[7; 8]), 508);
    // The reservation counts as much as the allocation.
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 2));
    assert_eq!(h.held(), [relay(50002), relay(50003)]);
}

#[test]
fn reservation_expires_after_30s_and_its_port_returns() {
    let mut h = odd_first().start();
    let token = reserve(&mut h);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(30)));
    h.expire(29);
    assert_eq!(h.held(), [relay(50002), relay(50003)]);
    h.expire(30);
    assert_eq!(h.held(), [relay(50002)]);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(600)));
    let bob = h.login(31, tuple(2), "bob", "builder");
    h.refused(31, &bob, Request::allocate().reservation_token(&token), 508);
    assert_eq!(h.allocate(31, &bob).port(), 50001);
}

// Refresh (RFC 8656 §8).

#[test]
fn refresh_extends_the_lifetime() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    assert_eq!(
        h.ok(500, &alice, Request::refresh(1200)).lifetime,
        Some(1200)
    );
    h.expire(600);
    assert_eq!(h.mgr.allocation_count(), 1, "refreshed until 1700");
    let resp = h.ok(590, &alice, Request::new(METHOD_REFRESH));
    assert_eq!(resp.lifetime, Some(600));
    h.refused(590, &alice, Request::refresh(600).family(2), 443);
    h.expire(1189);
    assert_eq!(h.mgr.allocation_count(), 1);
    h.expire(1190);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert!(h.held().is_empty());
}

#[test]
fn refresh_lifetime_has_the_default_as_floor() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    assert_eq!(h.ok(10, &alice, Request::refresh(30)).lifetime, Some(600));
    h.expire(41);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn refresh_to_zero_deletes_and_frees_the_port() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    assert_eq!(h.ok(10, &alice, Request::refresh(0)).lifetime, Some(0));
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
    assert!(h.held().is_empty());
    assert_eq!(h.route(10, relay(50000), PEER_A), None);
    h.refused(10, &alice, Request::new(METHOD_REFRESH), 437);
    // The stale timers find nothing to do (and release nothing twice).
    h.expire(10_000);
    assert!(h.held().is_empty());
}

#[test]
fn refresh_without_allocation_is_437() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Request::refresh(600), 437);
    assert_eq!(h.mgr.allocation_count(), 0);
}
