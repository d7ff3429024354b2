//! The abuse limits of the manager: per-allocation caps on permissions and channels (508,
//! RFC 8656 §9.2, §11.2), `max-bps` and `bps-capacity`, and how small unauthenticated
//! answers are.

use super::*;

/// The n-th peer: distinct IPs in TEST-NET-1, which the default rules allow.
fn peer(n: u8) -> SocketAddr {
    v4(192, 0, 2, n, 5000)
}

fn capped(permissions: usize, channels: usize) -> Harness {
    let mut setup = Setup::default();
    setup.config.max_permissions = permissions;
    setup.config.max_channels = channels;
    setup.config.channel_lifetime = Duration::from_secs(60);
    setup.start()
}

#[test]
fn permissions_past_the_cap_get_508_and_install_nothing() {
    let mut h = capped(3, 0);
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::create_permission(&[peer(1), peer(2)]));
    // Two new peers with one place left: all or nothing.
    h.refused(
        0,
        &alice,
        Request::create_permission(&[peer(3), peer(4)]),
        508,
    );
    assert_eq!(h.route(0, relay(50000), peer(3)), None);
    // Refreshing held permissions takes no room, nor does naming one IP twice.
    h.ok(
        1,
        &alice,
        Request::create_permission(&[peer(1), peer(2), peer(3), peer(3)]),
    );
    h.refused(1, &alice, Request::create_permission(&[peer(4)]), 508);
    assert_eq!(h.mgr.metrics().permission_cap, 2);
    assert_eq!(h.mgr.metrics().refused.get(&508), Some(&2));
    // Another allocation has its own room.
    let bob = h.bob(2);
    h.allocate(0, &bob);
    h.ok(
        1,
        &bob,
        Request::create_permission(&[peer(4), peer(5), peer(6)]),
    );
    // Once permissions expire (300 s), their room is free again, timer or not.
    h.ok(
        302,
        &alice,
        Request::create_permission(&[peer(7), peer(8), peer(9)]),
    );
    assert!(h.route(302, relay(50000), peer(9)).is_some());
    assert_eq!(h.route(302, relay(50000), peer(1)), None);
}

#[test]
fn channels_past_the_cap_get_508() {
    let mut h = capped(0, 2);
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, peer(1)));
    h.ok(0, &alice, Request::channel_bind(0x4001, peer(2)));
    h.refused(0, &alice, Request::channel_bind(0x4002, peer(3)), 508);
    assert_eq!(h.channel(0, &alice, 0x4002), None);
    // Refreshing a bound channel is fine.
    h.ok(10, &alice, Request::channel_bind(0x4001, peer(2)));
    assert_eq!(h.mgr.metrics().channel_cap, 1);
    // Once the channels lapse (60 s here), new ones can be bound, timer or not.
    h.ok(75, &alice, Request::channel_bind(0x4005, peer(5)));
    h.ok(75, &alice, Request::channel_bind(0x4006, peer(6)));
    h.refused(75, &alice, Request::channel_bind(0x4007, peer(7)), 508);
}

#[test]
fn a_channel_bind_needing_a_permission_past_the_cap_is_508() {
    let mut h = capped(1, 0);
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::create_permission(&[peer(1)]));
    // A channel to the permitted peer fits; one to a new peer would need a second permission.
    h.ok(0, &alice, Request::channel_bind(0x4000, peer(1)));
    h.refused(0, &alice, Request::channel_bind(0x4001, peer(2)), 508);
    assert_eq!(h.route(0, relay(50000), peer(2)), None);
    assert_eq!(h.mgr.metrics().permission_cap, 1);
}

#[test]
fn no_caps_by_default_in_the_manager() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    let peers: Vec<SocketAddr> = (1..=200).map(peer).collect();
    h.ok(0, &alice, Request::create_permission(&peers));
}

/// A harness with one allocation, a channel 0x4000 to `peer(1)`, and these limits.
fn bandwidth(max_bps: u64, capacity: u64) -> (Harness, Caller) {
    let mut setup = Setup::default();
    setup.config.max_bps = max_bps;
    setup.config.bps_capacity = capacity;
    let mut h = setup.start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, peer(1)));
    (h, alice)
}

/// Packets of 1000 bytes that pass out of 100 at virtual time `ms`, each way.
fn through(h: &mut Harness, client: &Caller, ms: u64) -> (usize, usize) {
    let now = h.t0 + Duration::from_millis(ms);
    let tuple = client.tuple;
    let out = (0..100)
        .filter(|_| h.mgr.channel_route(now, &tuple, 0x4000, 1000).is_some())
        .count();
    let back = (0..100)
        .filter(|_| {
            h.mgr
                .peer_route(now, slot_of(relay(50000)), peer(1), 1000)
                .is_some()
        })
        .count();
    (out, back)
}

#[test]
fn max_bps_drops_and_counts_each_direction_separately() {
    let (mut h, alice) = bandwidth(10_000, 0);
    assert_eq!(through(&mut h, &alice, 0), (10, 10));
    assert_eq!(through(&mut h, &alice, 500), (5, 5));
    let m = h.mgr.metrics();
    assert_eq!(m.dropped_max_bps, (370, 370_000));
    assert_eq!(m.dropped_bps_capacity, (0, 0));
    assert_eq!((m.to_peer.0, m.to_client.0), (15, 15));
    // Send indications count against the same bucket.
    let ind = decode(&build(&Request::send(peer(1), b"hello"), None));
    let at = |ms| h.t0 + Duration::from_millis(ms);
    let (empty, refilled) = (at(500), at(600));
    assert!(h.mgr.handle_send(empty, alice.tuple, &ind).is_none());
    assert!(h.mgr.handle_send(refilled, alice.tuple, &ind).is_some());
    assert_eq!(h.mgr.metrics().dropped_max_bps, (371, 370_005));
}

#[test]
fn bps_capacity_is_shared_by_every_allocation_of_the_shard() {
    let (mut h, alice) = bandwidth(0, 20_000);
    let bob = h.bob(2);
    h.allocate(0, &bob);
    h.ok(0, &bob, Request::channel_bind(0x4000, peer(2)));
    assert_eq!(through(&mut h, &alice, 0), (20, 20));
    let now = h.at(0);
    assert_eq!(h.mgr.channel_route(now, &bob.tuple, 0x4000, 1000), None);
    assert_eq!(h.mgr.metrics().dropped_bps_capacity.0, 161);
    assert_eq!(h.mgr.metrics().dropped_max_bps.0, 0);
    // A second later there is room again, for anyone.
    let later = h.at(1);
    assert!(
        h.mgr
            .channel_route(later, &bob.tuple, 0x4000, 1000)
            .is_some()
    );
}

#[test]
fn unauthenticated_answers_carry_nothing_but_what_the_client_needs() {
    let mut h = Setup::default().start();
    // 401: header, ERROR-CODE without a reason phrase, REALM, NONCE, FINGERPRINT.
    let req = build(&Request::allocate(), None);
    let raw = h.mgr.answer(h.t0, tuple(1), &decode(&req)).to_vec();
    let answer = read(&raw);
    let nonce = assert_challenge(&answer, 401);
    let padded = |n: usize| 4 + n.next_multiple_of(4);
    let bound = 20 + padded(4) + padded(REALM.len()) + padded(nonce.len()) + 8;
    assert_eq!(raw.len(), bound, "{:?}", answer.msg.attributes);
    assert!(!h.mgr.answered_authenticated());
    assert_eq!(answer.msg.get(stun::attributes::ATTR_SOFTWARE).ok(), None);
    // 400 before authentication (integrity without a username): ERROR-CODE and FINGERPRINT.
    let anonymous = Session::new("x", "y", REALM, &nonce).leaving_out(ATTR_USERNAME);
    let req = build(&Request::allocate(), Some(&anonymous));
    let raw = h.mgr.answer(h.t0, tuple(1), &decode(&req)).to_vec();
    assert_error(&read(&raw), 400);
    assert_eq!(raw.len(), 20 + padded(4) + 8);
    assert!(!h.mgr.answered_authenticated());
    // An authenticated answer is marked so (the server does not rate-limit it).
    let alice = h.alice(1);
    h.allocate(0, &alice);
    assert!(h.mgr.answered_authenticated());
    // Whatever the request's size, no unauthenticated answer grows past these.
    let big = build(
        &Request::allocate().attr(AttrType(0x8099), &[7; 1000]),
        None,
    );
    let raw = h.mgr.answer(h.t0, tuple(2), &decode(&big));
    assert!(raw.len() <= bound, "{} bytes", raw.len());
}

const ALTERNATE: SocketAddr = v4(203, 0, 113, 8, 3478);

#[test]
fn at_capacity_new_allocations_try_the_alternate() {
    // One relay port and room for two allocations in total.
    let mut setup = Setup {
        ports: 50000..=50000,
        quotas: Quotas::new(limits(0, 2, 0)),
        ..Setup::default()
    };
    setup.config.alternate_server = Some(ALTERNATE);
    let mut h = setup.start();
    let (alice, bob) = (h.alice(1), h.bob(2));
    h.allocate(0, &alice);
    // No relay port left: 300 naming the alternate, integrity-protected, instead of 508.
    let resp = h.request(0, &bob, Request::allocate());
    assert_eq!(resp.error_code(), Some(300));
    assert_eq!(resp.alternate_server, Some(ALTERNATE));
    assert_eq!(verify_integrity(&resp.msg, bob.key()), Ok(Integrity::Sha1));
    // The failed attempt took no quota, so a freed port serves bob here again.
    h.ok(1, &alice, Request::refresh(0));
    h.allocate(1, &bob);
}

#[test]
fn the_total_quota_redirects_but_a_users_own_quota_does_not() {
    let with_quotas = |user, total| {
        let mut setup = Setup {
            quotas: Quotas::new(limits(user, total, 0)),
            ..Setup::default()
        };
        setup.config.alternate_server = Some(ALTERNATE);
        setup.start()
    };
    // The server is full: the next client is sent on.
    let mut h = with_quotas(0, 1);
    let (alice, bob) = (h.alice(1), h.bob(2));
    h.allocate(0, &alice);
    let resp = h.request(0, &bob, Request::allocate());
    assert_eq!(
        (resp.error_code(), resp.alternate_server),
        (Some(300), Some(ALTERNATE))
    );

    // A user over her own quota is over it on every node: 486, no alternate.
    let mut h = with_quotas(1, 2);
    let (alice, alice2) = (h.alice(1), h.alice(2));
    h.allocate(0, &alice);
    let resp = h.request(0, &alice2, Request::allocate());
    assert_eq!(
        (resp.error_code(), resp.alternate_server),
        (Some(486), None)
    );
}

#[test]
fn without_an_alternate_capacity_is_508() {
    let mut h = Setup {
        ports: 50000..=50000,
        ..Setup::default()
    }
    .start();
    let (alice, bob) = (h.alice(1), h.bob(2));
    h.allocate(0, &alice);
    let resp = h.request(0, &bob, Request::allocate());
    assert_eq!(
        (resp.error_code(), resp.alternate_server),
        (Some(508), None)
    );
}
