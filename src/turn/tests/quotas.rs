//! Quotas an anonymous client cannot take from everybody: `user-quota` counted on the user
//! part of REST usernames, `max-allocations-per-ip`, and EVEN-PORT reservations, which count
//! like allocations and are found by whichever shard the claiming Allocate reaches.

use super::*;

/// The n-th client on another address (each its own `max-allocations-per-ip` key).
fn tuple_from(ip: &str, n: u16) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: SocketAddr::new(ip.parse().unwrap(), 40000 + n),
        server: SERVER,
    }
}

impl Harness {
    /// A client with REST credentials for `user`, minted `at_unix` seconds into the test.
    fn rest(&mut self, secs: u64, tuple: FiveTuple, user: &str, minted_at: u64) -> Caller {
        let (name, pass) = (self.auth)
            .mint_rest(Some(user), UNIX_START + minted_at, 3600)
            .unwrap();
        self.login(secs, tuple, &name, &pass)
    }

    /// Allocates with EVEN-PORT R=1; returns the relay port and the token.
    fn reserve_pair(&mut self, secs: u64, client: &Caller) -> (u16, Vec<u8>) {
        let resp = self.ok(secs, client, Request::allocate().even_port(true));
        let token = resp.reservation_token.clone().unwrap();
        (resp.relayed[0].port(), token)
    }

    fn quota_refusals(&self, quota: &str) -> u64 {
        let metrics = self.mgr.metrics().clone();
        let mut all = self.other_shard.metrics().clone();
        all.add(&metrics);
        all.quota_refused.get(quota).copied().unwrap_or(0)
    }
}

#[test]
fn a_reservation_made_on_one_shard_is_claimed_on_another() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let (rtp, token) = h.reserve_pair(0, &alice);
    assert_eq!(h.held(), [relay(rtp), relay(rtp + 1)]);
    // The RTCP socket is new, so the server may hash it to another worker.
    h.switch_shard();
    let rtcp = h.alice(2);
    let resp = h.ok(1, &rtcp, Request::allocate().reservation_token(&token));
    assert_eq!(resp.relayed, [SocketAddr::new(ADVERTISED_V4, rtp + 1)]);
    // Once only, from either shard.
    let bob = h.bob(3);
    h.refused(1, &bob, Request::allocate().reservation_token(&token), 508);
    h.switch_shard();
    h.refused(1, &bob, Request::allocate().reservation_token(&token), 508);
    assert_eq!(h.quotas.total(), 2);
    // The reserving shard's timer finds the reservation claimed and releases nothing (the
    // test loop panics on a double release); the claimed port lives on.
    h.expire_all(30);
    assert_eq!(h.held(), [relay(rtp), relay(rtp + 1)]);
    assert_eq!((h.quotas.total(), h.quotas.reservations()), (2, 0));
    // Deleting the claimed allocation on its shard frees its port and its quota.
    h.switch_shard();
    h.ok(31, &rtcp, Request::refresh(0));
    assert_eq!(h.held(), [relay(rtp)]);
    assert_eq!(h.quotas.total(), 1);
}

#[test]
fn an_unclaimed_reservation_expires_on_its_shard_whichever_shard_is_asked() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let (rtp, token) = h.reserve_pair(0, &alice);
    h.switch_shard();
    h.expire_all(30);
    assert_eq!(h.held(), [relay(rtp)]);
    assert_eq!(h.quotas.total(), 1);
    let bob = h.bob(2);
    h.refused(31, &bob, Request::allocate().reservation_token(&token), 508);
}

#[test]
fn user_quota_counts_the_user_part_of_rest_usernames() {
    let mut h = Setup {
        quotas: Quotas::new(limits(1, 0, 0)),
        ..Setup::default()
    }
    .start();
    // Credentials fetched twice carry two expiries: still one user.
    let first = h.rest(0, tuple(1), "carol", 0);
    let again = h.rest(0, tuple(2), "carol", 1);
    assert_ne!(first.session.username(), again.session.username());
    h.allocate(0, &first);
    h.refused(0, &again, Request::allocate(), 486);
    assert_eq!(h.quota_refusals("user"), 1);
    // Another user part is another user; a static user is counted by name.
    let dave = h.rest(0, tuple(3), "dave", 1);
    h.allocate(0, &dave);
    let alice = h.alice(4);
    h.allocate(0, &alice);
    h.ok(1, &first, Request::refresh(0));
    h.allocate(1, &again);
}

#[test]
fn allocations_per_client_address_are_capped_whatever_the_user() {
    let mut h = Setup {
        quotas: Quotas::new(limits(0, 0, 2)),
        ..Setup::default()
    }
    .start();
    let office = "192.0.2.50";
    let a = h.login(0, tuple_from(office, 1), "alice", "wonderland");
    let b = h.login(0, tuple_from(office, 2), "bob", "builder");
    let c = h.rest(0, tuple_from(office, 3), "carol", 0);
    h.allocate(0, &a);
    h.allocate(0, &b);
    h.refused(0, &c, Request::allocate(), 486);
    // Also on another shard (the count is shared).
    h.switch_shard();
    h.refused(0, &c, Request::allocate(), 486);
    assert_eq!(h.quota_refusals("per_ip"), 2);
    // Another address is not affected; an IPv6 client counts by its /64.
    let elsewhere = h.rest(0, tuple_from("198.51.100.77", 4), "carol", 0);
    h.allocate(0, &elsewhere);
    let v6 = |n| tuple_from(&format!("2001:db8:1:2::{n}"), n);
    let (x, y, z) = (
        h.rest(0, v6(5), "x", 0),
        h.rest(0, v6(6), "y", 0),
        h.rest(0, v6(7), "z", 0),
    );
    for client in [&x, &y] {
        h.ok(0, client, Request::allocate());
    }
    h.refused(0, &z, Request::allocate(), 486);
    // A freed allocation makes room again.
    h.switch_shard();
    h.ok(1, &a, Request::refresh(0));
    h.switch_shard();
    h.allocate(1, &c);
}

#[test]
fn reservations_count_against_the_quotas_of_their_maker() {
    // The attack: Allocate(EVEN-PORT R=1) then Refresh(0), again and again, kept half the
    // port range reserved while holding no allocation at all.
    let mut h = Setup {
        quotas: Quotas::new(limits(0, 0, 4)),
        ports: 50000..=50019,
        ..Setup::default()
    }
    .start();
    let attacker = "192.0.2.66";
    let mut reserved = 0;
    for n in 0..10 {
        let client = h.rest(0, tuple_from(attacker, n), "mallory", 0);
        let resp = h.request(0, &client, Request::allocate().even_port(true));
        if !resp.is_success() {
            assert_eq!(resp.error_code(), Some(486));
            continue;
        }
        reserved += 1;
        h.ok(0, &client, Request::refresh(0));
    }
    // Each reservation holds a unit until it lapses, and an Allocate with R=1 needs two:
    // with room for four, three reservations.
    assert_eq!(reserved, 3);
    assert_eq!((h.quotas.total(), h.quotas.reservations()), (3, 3));
    assert_eq!(h.held().len(), 3);
    assert_eq!(h.quota_refusals("per_ip"), 7);
    // An allocation with R=1 needs room for both.
    let mut h2 = Setup {
        quotas: Quotas::new(limits(1, 0, 0)),
        ..Setup::default()
    }
    .start();
    let alice = h2.alice(1);
    h2.refused(0, &alice, Request::allocate().even_port(true), 486);
    assert!(h2.held().is_empty());
    h2.allocate(0, &alice);
    // Everyone else still gets ports, and the reservations lapse with their units.
    let bob = h.login(1, tuple(20), "bob", "builder");
    h.allocate(1, &bob);
    h.expire_all(30);
    assert_eq!((h.quotas.total(), h.quotas.reservations()), (1, 0));
    let again = h.rest(31, tuple_from(attacker, 11), "mallory", 0);
    h.reserve_pair(31, &again);
}

#[test]
fn a_total_quota_counts_reservations_too() {
    let mut h = Setup {
        quotas: Quotas::new(limits(0, 3, 0)),
        ..Setup::default()
    }
    .start();
    let (alice, bob, carol) = (h.alice(1), h.bob(2), h.alice(3));
    h.reserve_pair(0, &alice);
    h.allocate(0, &bob);
    h.refused(0, &carol, Request::allocate(), 508);
    assert_eq!(h.quota_refusals("total"), 1);
}

#[test]
fn a_failed_dual_allocation_leaves_no_reservation_behind() {
    // Two ports per relay address, and both IPv6 ones taken.
    let mut h = Setup {
        ports: 50000..=50001,
        ..Setup::dual()
    }
    .start();
    let (bob, bob2, alice) = (h.bob(1), h.bob(2), h.alice(3));
    h.ok(0, &bob, Request::allocate().family(2));
    h.ok(0, &bob2, Request::allocate().family(2));
    // The IPv4 pair binds, the IPv6 relay cannot: 508, and the pair goes back too.
    let dual = Request::allocate().even_port(true).additional_family(2);
    h.refused(0, &alice, dual, 508);
    let v6 = |port| SocketAddr::new(RELAY_V6, port);
    assert_eq!(h.held(), [v6(50000), v6(50001)]);
    assert_eq!((h.quotas.total(), h.quotas.reservations()), (2, 0));
    assert_eq!(
        h.mgr.poll_timeout(),
        Some(h.at(600)),
        "no reservation timer"
    );
    h.reserve_pair(0, &alice);
}
