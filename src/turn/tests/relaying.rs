//! Permissions, channels, the data path, expiry, quotas and close (RFC 8656 §9–§12).

use super::*;

// CreatePermission (RFC 8656 §9).

#[test]
fn create_permission_for_one_and_several_peers() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    let to_alice = Some(PeerRoute {
        client: alice.tuple,
        channel: None,
    });
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    assert_eq!(h.route(0, relay(50000), PEER_A), to_alice);
    // Permissions are per IP: any port of the peer gets through.
    assert_eq!(h.route(0, relay(50000), sa("192.0.2.10:1")), to_alice);
    assert_eq!(h.route(0, relay(50000), PEER_B), None);
    h.ok(0, &alice, Request::create_permission(&[PEER_B, PEER_C]));
    assert_eq!(h.route(0, relay(50000), PEER_B), to_alice);
    assert_eq!(h.route(0, relay(50000), PEER_C), to_alice);
    assert_eq!(h.route(0, relay(50001), PEER_C), None, "not a relay");
}

#[test]
fn create_permission_errors() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Request::create_permission(&[PEER_A]), 437);
    h.allocate(0, &alice);
    h.refused(0, &alice, Request::create_permission(&[]), 400);
    // An IPv6 peer on an IPv4-only allocation, alone or after a good peer.
    h.refused(0, &alice, Request::create_permission(&[PEER_V6]), 443);
    h.refused(
        0,
        &alice,
        Request::create_permission(&[PEER_A, PEER_V6]),
        443,
    );
    // A disguised IPv4 loopback is an IPv6 peer here: refused too.
    h.refused(
        0,
        &alice,
        Request::create_permission(&[sa("[::ffff:127.0.0.1]:5000")]),
        443,
    );
    assert_eq!(h.route(0, relay(50000), PEER_A), None);
}

#[test]
fn create_permission_to_a_forbidden_peer_is_403_and_installs_nothing() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    h.ok(0, &alice, Request::allocate().additional_family(2));
    let relay_v6 = SocketAddr::new(RELAY_V6, 50000);
    for forbidden in [
        "10.0.0.1:5000",
        "169.254.169.254:80",
        "[::ffff:127.0.0.1]:5000",
    ] {
        let req = Request::create_permission(&[PEER_A, PEER_V6, sa(forbidden)]);
        h.refused(0, &alice, req, 403);
        assert_eq!(h.route(0, relay(50000), PEER_A), None, "{forbidden}");
        assert_eq!(h.route(0, relay_v6, PEER_V6), None, "{forbidden}");
    }
    h.ok(0, &alice, Request::create_permission(&[PEER_A, PEER_V6]));
    assert!(h.route(0, relay(50000), PEER_A).is_some());
    assert!(h.route(0, relay_v6, PEER_V6).is_some());

    // With allow-loopback-peers a loopback peer is admitted.
    let rules = PeerRules::new(true, vec![], vec![], vec![]);
    let mut h = Setup {
        rules,
        ..Setup::default()
    }
    .start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::create_permission(&[sa("127.0.0.1:9")]));
    assert!(h.route(0, relay(50000), sa("127.0.0.1:9")).is_some());
}

// ChannelBind (RFC 8656 §11).

#[test]
fn channel_numbers_must_be_in_range() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    // 0x5000-0x7FFF are accepted on purpose, for RFC 5766 clients (see `methods::CHANNELS`).
    let fourth = sa("192.0.2.11:5000");
    for (number, peer) in [
        (0x4000, PEER_A),
        (0x4FFF, PEER_B),
        (0x5000, PEER_C),
        (0x7FFF, fourth),
    ] {
        h.ok(0, &alice, Request::channel_bind(number, peer));
        assert_eq!(h.channel(0, &alice, number), Some((relay(50000), peer)));
    }
    let fifth = sa("192.0.2.12:5000");
    for number in [0x3FFF, 0x8000, 0xFFFF, 0] {
        h.refused(0, &alice, Request::channel_bind(number, fifth), 400);
    }
    let no_peer = Request::new(METHOD_CHANNEL_BIND).channel(0x4001);
    h.refused(0, &alice, no_peer, 400);
    assert_eq!(h.route(0, relay(50000), fifth), None);
}

#[test]
fn a_channel_has_one_peer_and_a_peer_one_channel() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Request::channel_bind(0x4000, PEER_A), 437);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.refused(0, &alice, Request::channel_bind(0x4000, PEER_B), 400);
    h.refused(0, &alice, Request::channel_bind(0x4001, PEER_A), 400);
    h.ok(1, &alice, Request::channel_bind(0x4000, PEER_A)); // a refresh
    assert_eq!(h.channel(1, &alice, 0x4000), Some((relay(50000), PEER_A)));
    assert_eq!(h.channel(1, &alice, 0x4001), None);
    assert_eq!(h.route(1, relay(50000), PEER_B), None);
}

#[test]
fn channel_bind_installs_a_permission_and_refuses_forbidden_peers() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    assert_eq!(h.route(0, relay(50000), PEER_A), None);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    let channel = Some(PeerRoute {
        client: alice.tuple,
        channel: Some(0x4000),
    });
    assert_eq!(h.route(0, relay(50000), PEER_A), channel);
    // Same IP, other port: permitted, but not on the channel.
    let other_port = h.route(0, relay(50000), sa("192.0.2.10:5001")).unwrap();
    assert_eq!(other_port.channel, None);
    for forbidden in [sa("10.0.0.1:5000"), sa("127.0.0.1:5000"), SERVER] {
        h.refused(0, &alice, Request::channel_bind(0x4001, forbidden), 403);
    }
    assert_eq!(h.channel(0, &alice, 0x4001), None);
    assert_eq!(h.route(0, relay(50000), sa("10.0.0.1:5000")), None);
}

// The data path and expiry.

#[test]
fn send_indication_needs_a_permission_and_an_allowed_peer() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    assert_eq!(h.send_to(0, alice.tuple, PEER_A), None);
    h.allocate(0, &alice);
    assert_eq!(h.send_to(0, alice.tuple, PEER_A), None);
    h.ok(0, &alice, Request::create_permission(&[PEER_A, SERVER]));
    assert_eq!(h.send_to(0, alice.tuple, PEER_A), Some(relay(50000)));
    assert_eq!(h.send_to(0, tuple(2), PEER_A), None, "not an allocation");
    assert_eq!(h.send_to(0, alice.tuple, PEER_B), None);
    // The server's IP is a permitted peer, but not its listening port.
    assert_eq!(h.send_to(0, alice.tuple, SERVER), None);
    let beside = SocketAddr::new(SERVER.ip(), 3479);
    assert_eq!(h.send_to(0, alice.tuple, beside), Some(relay(50000)));
}

#[test]
fn each_relay_routes_to_its_own_client() {
    let mut h = Setup::default().start();
    let (alice, bob) = (h.alice(1), h.bob(2));
    h.allocate(0, &alice);
    h.allocate(0, &bob);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    assert_eq!(
        h.route(0, relay(50001), PEER_A),
        None,
        "bob has no permission"
    );
    h.ok(0, &bob, Request::channel_bind(0x4000, PEER_A));
    let to_alice = h.route(0, relay(50000), PEER_A).unwrap();
    let to_bob = h.route(0, relay(50001), PEER_A).unwrap();
    assert_eq!((to_alice.client, to_alice.channel), (alice.tuple, None));
    assert_eq!((to_bob.client, to_bob.channel), (bob.tuple, Some(0x4000)));
    assert_eq!(h.channel(0, &alice, 0x4000), None);
    assert_eq!(h.channel(0, &bob, 0x4000), Some((relay(50001), PEER_A)));
    assert_eq!(h.send_to(0, bob.tuple, PEER_A), Some(relay(50001)));
}

#[test]
fn permissions_expire_after_300s() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_B));
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(300)));
    h.expire(299);
    assert!(h.route(299, relay(50000), PEER_A).is_some());
    assert!(h.send_to(299, alice.tuple, PEER_A).is_some());
    assert!(h.channel(299, &alice, 0x4000).is_some());
    h.expire(300);
    assert_eq!(h.route(300, relay(50000), PEER_A), None);
    assert_eq!(h.send_to(300, alice.tuple, PEER_A), None);
    // The channel is bound until 600, but relays nothing without a permission.
    assert_eq!(h.channel(300, &alice, 0x4000), None);
    assert_eq!(h.route(300, relay(50000), PEER_B), None);
    assert!(h.mgr.allocations[&alice.tuple].permissions.is_empty());
    assert_eq!(h.mgr.allocation_count(), 1);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(600)));
}

#[test]
fn channels_expire_after_600s() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.ok(0, &alice, Request::allocate().lifetime(3600));
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    // Keep the permission alive on its own, past the channel's expiry.
    h.ok(250, &alice, Request::create_permission(&[PEER_A]));
    h.ok(500, &alice, Request::create_permission(&[PEER_A]));
    h.expire(599);
    assert_eq!(h.channel(599, &alice, 0x4000), Some((relay(50000), PEER_A)));
    h.expire(600);
    assert_eq!(h.channel(600, &alice, 0x4000), None);
    let route = h.route(600, relay(50000), PEER_A).unwrap();
    assert_eq!(route.channel, None, "data indications from now on");
    let state = &h.mgr.allocations[&alice.tuple];
    assert!(state.channels.is_empty() && state.channel_by_peer.is_empty());
    // Both the number and the peer are free again.
    h.ok(600, &alice, Request::channel_bind(0x4000, PEER_B));
    h.ok(600, &alice, Request::channel_bind(0x4001, PEER_A));
}

#[test]
fn allocation_expires_after_600s_and_frees_everything() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    assert_eq!(h.mgr.poll_timeout(), None);
    h.allocate(0, &alice);
    h.ok(10, &alice, Request::create_permission(&[PEER_B]));
    h.ok(20, &alice, Request::channel_bind(0x4000, PEER_A));
    // Due: permission B 310, permission A 320, allocation 600, channel 620.
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(310)));
    h.expire(310);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(320)));
    h.ok(315, &alice, Request::create_permission(&[PEER_A]));
    h.expire(320);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(600)));
    h.expire(599);
    assert_eq!(h.mgr.allocation_count(), 1);
    assert_eq!(h.channel(599, &alice, 0x4000), Some((relay(50000), PEER_A)));
    assert!(h.send_to(599, alice.tuple, PEER_A).is_some());
    h.expire(600);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
    assert!(h.held().is_empty());
    assert_eq!(h.route(600, relay(50000), PEER_A), None);
    assert_eq!(h.channel(600, &alice, 0x4000), None);
    assert_eq!(h.send_to(600, alice.tuple, PEER_A), None);
}

#[test]
fn repeated_refreshes_do_not_grow_the_timer_heap() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    for _ in 0..1000 {
        h.ok(1, &alice, Request::create_permission(&[PEER_A]));
    }
    assert!(
        h.mgr.timers.len() <= 4,
        "{} timer entries",
        h.mgr.timers.len()
    );
}

#[test]
fn deleted_allocations_leave_no_timers_behind() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    for round in 0..200 {
        h.allocate(round, &alice);
        h.ok(round, &alice, Request::create_permission(&[PEER_A]));
        h.ok(round, &alice, Request::refresh(0));
    }
    assert_eq!(h.mgr.allocation_count(), 0);
    assert!(
        h.mgr.timers.is_empty(),
        "{} timer entries left",
        h.mgr.timers.len()
    );
}

// Quotas, port exhaustion and close.

#[test]
fn user_quota_is_486() {
    let mut h = Setup {
        quotas: Quotas::new(limits(1, 0, 0)),
        ..Setup::default()
    }
    .start();
    let (first, second, bob) = (h.alice(1), h.alice(2), h.bob(3));
    h.allocate(0, &first);
    h.refused(0, &second, Request::allocate(), 486);
    h.allocate(0, &bob);
    assert_eq!(h.held(), [relay(50000), relay(50001)]);
    h.ok(1, &first, Request::refresh(0));
    h.allocate(1, &second);
    assert_eq!(h.quotas.total(), 2);
}

#[test]
fn total_quota_is_508() {
    let mut h = Setup {
        quotas: Quotas::new(limits(0, 2, 0)),
        ..Setup::default()
    }
    .start();
    let clients = [h.alice(1), h.alice(2), h.bob(3)];
    h.allocate(0, &clients[0]);
    h.allocate(0, &clients[1]);
    h.refused(0, &clients[2], Request::allocate(), 508);
    assert_eq!(h.held().len(), 2);
    assert_eq!(h.quotas.total(), 2);
}

#[test]
fn port_exhaustion_is_508_until_a_port_is_freed() {
    let mut h = Setup {
        ports: 50000..=50001,
        ..Setup::default()
    }
    .start();
    let clients = [h.alice(1), h.alice(2), h.alice(3)];
    h.allocate(0, &clients[0]);
    h.allocate(0, &clients[1]);
    h.refused(0, &clients[2], Request::allocate(), 508);
    assert_eq!(
        h.quotas.total(),
        2,
        "the refused allocation gave its quota back"
    );
    h.ok(1, &clients[0], Request::refresh(0));
    assert_eq!(h.allocate(1, &clients[2]).port(), 50000);
    assert_eq!(h.mgr.allocation_count(), 2);
}

#[test]
fn close_deletes_the_allocation_and_releases_its_port() {
    let mut h = Setup::default().start();
    let (alice, other) = (h.alice(1), h.alice(2));
    h.allocate(0, &alice);
    h.allocate(0, &other);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    h.close(0, alice.tuple);
    h.close(0, tuple(9)); // no allocation: nothing happens
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 1));
    assert_eq!(h.held(), [relay(50001)]);
    assert_eq!(h.route(0, relay(50000), PEER_A), None);
    h.close(0, alice.tuple); // twice: nothing released twice
    h.expire(10_000);
    assert!(h.held().is_empty(), "the other one expired");
}

#[test]
fn a_reload_that_refuses_a_peer_ends_its_permission_and_channel_at_once() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(0, &alice, Request::channel_bind(0x4001, PEER_B));
    assert_eq!(h.channel(1, &alice, 0x4000), Some((relay(50000), PEER_A)));
    let timers = h.mgr.timers.len();

    // The operator denies PEER_A's network and reloads.
    let denied = vec!["192.0.2.0/24".parse().unwrap()];
    let rules = Arc::new(PeerRules::new(false, vec![], denied, vec![SERVER]));
    let (config, auth) = (h.mgr.config.clone(), h.auth.clone());
    h.mgr.reload(config, auth, rules);

    // Every path to PEER_A ends now, long before the channel (10 min) would lapse.
    assert_eq!(h.channel(2, &alice, 0x4000), None, "ChannelData");
    assert_eq!(h.send_to(2, alice.tuple, PEER_A), None, "Send");
    assert_eq!(h.route(2, relay(50000), PEER_A), None, "from the peer");
    assert_eq!(h.mgr.timers.len(), timers - 2, "its two timers are gone");
    // PEER_B is untouched, and rebinding PEER_A is refused under the new rules.
    assert_eq!(h.channel(2, &alice, 0x4001), Some((relay(50000), PEER_B)));
    assert!(h.route(2, relay(50000), PEER_B).is_some());
    h.refused(3, &alice, Request::channel_bind(0x4000, PEER_A), 403);
    // The channel number is free again for another peer.
    h.ok(3, &alice, Request::channel_bind(0x4000, PEER_C));
}
