//! The kernel fast path's books (#18), driven with a fake kernel that records what it is
//! told: an entry appears on a successful ChannelBind of a UDP client and disappears on
//! every way its channel can end; TCP clients, capped allocations and peers that are
//! rturn's own relays never get one; what the kernel counted lands in the allocation's and
//! the shard's counters.

use std::collections::HashMap;

use super::*;
use crate::turn::offload::{ChannelEntry, OffloadCounts, OffloadMaps};
use crate::turn::own_relays::{LiveRelays, OwnRelays};

/// What the fake kernel was told, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Insert(ChannelEntry),
    Remove(ChannelEntry),
}

#[derive(Default)]
struct KernelState {
    entries: Vec<ChannelEntry>,
    log: Vec<Op>,
    counts: HashMap<ChannelEntry, OffloadCounts>,
    full: bool,
}

/// The kernel's maps as a test sees them: one state shared by the handle the harness holds
/// and the test.
#[derive(Clone, Default)]
struct Kernel(Arc<Mutex<KernelState>>);

impl Kernel {
    fn state(&self) -> std::sync::MutexGuard<'_, KernelState> {
        self.0.lock().unwrap()
    }

    fn entries(&self) -> Vec<ChannelEntry> {
        self.state().entries.clone()
    }

    fn log(&self) -> Vec<Op> {
        self.state().log.clone()
    }

    /// The kernel relayed `n` packets of 100 bytes each way for `entry`, in all.
    fn relayed(&self, entry: ChannelEntry, n: u64) {
        let counts = OffloadCounts {
            to_peer_packets: n,
            to_peer_bytes: 100 * n,
            to_client_packets: n,
            to_client_bytes: 100 * n,
        };
        self.state().counts.insert(entry, counts);
    }
}

impl OffloadMaps for Kernel {
    fn insert(&mut self, entry: &ChannelEntry) -> std::io::Result<()> {
        let mut s = self.state();
        if s.full {
            return Err(std::io::Error::other("map full"));
        }
        assert!(!s.entries.contains(entry), "{entry:?} inserted twice");
        s.entries.push(*entry);
        s.log.push(Op::Insert(*entry));
        Ok(())
    }

    fn remove(&mut self, entry: &ChannelEntry) {
        let mut s = self.state();
        assert!(s.entries.contains(entry), "{entry:?} removed, not held");
        s.entries.retain(|e| e != entry);
        s.counts.remove(entry);
        s.log.push(Op::Remove(*entry));
    }

    fn counts(&self, entry: &ChannelEntry) -> Option<OffloadCounts> {
        let s = self.state();
        s.entries
            .contains(entry)
            .then(|| s.counts.get(entry).copied().unwrap_or_default())
    }
}

/// `setup` started with the offload on, and the kernel it writes to.
fn offloaded(setup: Setup) -> (Harness, Kernel) {
    let mut h = setup.start();
    let kernel = Kernel::default();
    h.mgr.kernel = Some(Box::new(kernel.clone()));
    h.mgr.mgr.set_offload(true);
    (h, kernel)
}

/// The kernel's entries once the shard acted on every event.
fn held(h: &mut Harness, kernel: &Kernel) -> Vec<ChannelEntry> {
    h.mgr.settle();
    assert_eq!(
        h.mgr.offload().len(),
        kernel.entries().len(),
        "books and kernel"
    );
    kernel.entries()
}

/// The entry of `client`'s channel `number` to `peer` on its first relay (50000 for the
/// first allocation).
fn entry(client: &Caller, number: u16, relay_port: u16, peer: SocketAddr) -> ChannelEntry {
    ChannelEntry {
        client: client.tuple.client,
        listen: client.tuple.server,
        channel: number,
        relay: relay(relay_port),
        peer,
    }
}

#[test]
fn a_channel_bind_puts_one_entry_in_and_a_rebind_keeps_it() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::create_permission(&[PEER_A]));
    assert!(held(&mut h, &kernel).is_empty(), "a permission alone");
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    let a = entry(&alice, 0x4000, 50000, PEER_A);
    assert_eq!(held(&mut h, &kernel), [a]);
    // Refreshing the channel, the permission and the allocation changes nothing in the kernel.
    h.ok(100, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(150, &alice, Request::create_permission(&[PEER_A]));
    h.ok(200, &alice, Request::refresh(600));
    assert_eq!(held(&mut h, &kernel), [a]);
    assert_eq!(kernel.log(), [Op::Insert(a)], "one insert, no remove");
    // User space still routes it too: a packet that reaches it is relayed the same.
    assert_eq!(h.channel(200, &alice, 0x4000), Some((relay(50000), PEER_A)));
}

#[test]
fn the_channel_expiring_takes_its_entry_out() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(0, &alice, Request::channel_bind(0x4001, PEER_B));
    // The allocation and the permissions live on; the channels are not refreshed.
    h.ok(290, &alice, Request::create_permission(&[PEER_A, PEER_B]));
    h.ok(295, &alice, Request::refresh(600));
    h.ok(580, &alice, Request::create_permission(&[PEER_A, PEER_B]));
    h.ok(590, &alice, Request::channel_bind(0x4001, PEER_B));
    h.expire(600);
    let b = entry(&alice, 0x4001, 50000, PEER_B);
    assert_eq!(held(&mut h, &kernel), [b], "the refreshed channel is left");
    assert_eq!(h.channel(600, &alice, 0x4000), None);
    assert!(
        h.mgr.has_allocation(&alice.tuple),
        "the allocation lives on"
    );
}

#[test]
fn the_permission_expiring_takes_it_out_and_a_new_permission_puts_it_back() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(200, &alice, Request::refresh(600));
    // The permission (5 min) lapses before the channel (10 min).
    h.expire(300);
    assert!(
        held(&mut h, &kernel).is_empty(),
        "no permission, no kernel relay"
    );
    assert_eq!(
        h.route(300, relay(50000), PEER_A),
        None,
        "user space agrees"
    );
    h.ok(310, &alice, Request::create_permission(&[PEER_A]));
    let a = entry(&alice, 0x4000, 50000, PEER_A);
    assert_eq!(held(&mut h, &kernel), [a]);
    assert_eq!(kernel.log(), [Op::Insert(a), Op::Remove(a), Op::Insert(a)]);
}

#[test]
fn deleting_the_allocation_takes_every_entry_out_before_its_relay_closes() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(0, &alice, Request::channel_bind(0x4001, PEER_B));
    assert_eq!(held(&mut h, &kernel).len(), 2);
    // Refresh 0, with the events read as the worker reads them.
    let refresh = decode(&alice.signed(&Request::refresh(0)));
    let now = h.at(1);
    let _ = h.mgr.mgr.handle_request(now, alice.tuple, &refresh);
    let events: Vec<Event> = std::iter::from_fn(|| h.mgr.poll_event()).collect();
    let kinds: Vec<&str> = (events.iter())
        .map(|e| match e {
            Event::OffloadRemove(_) => "remove",
            Event::Close(_) => "close",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["remove", "remove", "close"],
        "out of the kernel first"
    );
    let mut maps = kernel.clone();
    for event in &events {
        h.mgr.mgr.offload_apply(&mut maps, event).unwrap();
    }
    assert!(held(&mut h, &kernel).is_empty());
    assert!(h.mgr.offload().is_empty());
}

#[test]
fn the_allocation_expiring_takes_its_entries_out() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(250, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(500, &alice, Request::channel_bind(0x4000, PEER_A));
    h.expire(600);
    assert!(held(&mut h, &kernel).is_empty());
    assert!(!h.mgr.has_allocation(&alice.tuple));
}

#[test]
fn an_operator_kick_and_the_shutdown_after_a_drain_take_entries_out() {
    let (mut h, kernel) = offloaded(Setup::default());
    let (alice, bob) = (h.alice(1), h.bob(2));
    h.allocate(0, &alice);
    h.allocate(0, &bob);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(0, &bob, Request::channel_bind(0x4000, PEER_A));
    assert_eq!(held(&mut h, &kernel).len(), 2);
    assert_eq!(h.mgr.kick(None, Some("alice")), 1);
    assert_eq!(held(&mut h, &kernel), [entry(&bob, 0x4000, 50001, PEER_A)]);
    // Draining refuses new allocations; live ones keep relaying, in the kernel too.
    h.mgr.drain(None);
    assert_eq!(held(&mut h, &kernel).len(), 1);
    h.mgr.clear();
    assert!(
        held(&mut h, &kernel).is_empty(),
        "cleared at the end of the drain"
    );
}

#[test]
fn a_reload_that_refuses_the_peer_takes_its_entry_out_at_once() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    h.ok(0, &alice, Request::channel_bind(0x4001, PEER_B));
    let denied = vec!["192.0.2.0/24".parse().unwrap()];
    let rules = Arc::new(PeerRules::new(false, vec![], denied, vec![SERVER]));
    let (config, auth) = (h.mgr.config.clone(), h.auth.clone());
    h.mgr.reload(config, auth, rules);
    assert_eq!(
        held(&mut h, &kernel),
        [entry(&alice, 0x4001, 50000, PEER_B)]
    );
}

#[test]
fn a_reload_that_revokes_the_user_or_the_secret_takes_its_entries_out() {
    let (mut h, kernel) = offloaded(Setup::default());
    let (alice, bob) = (h.alice(1), h.bob(2));
    let (name, pass) = h.auth.mint_rest(Some("carol"), UNIX_START, 3600).unwrap();
    let carol = h.login(0, tuple(3), &name, &pass);
    for (client, port) in [(&alice, 50000), (&bob, 50001), (&carol, 50002)] {
        assert_eq!(h.allocate(0, client).port(), port);
        h.ok(0, client, Request::channel_bind(0x4000, PEER_A));
    }
    assert_eq!(held(&mut h, &kernel).len(), 3);
    let reload = |h: &mut Harness, users: &[(&str, &str)], secret: &str| {
        let users = (users.iter())
            .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
            .collect();
        let auth = Arc::new(Auth::new(AuthSettings {
            realm: REALM.into(),
            users,
            secrets: vec![secret.into()],
            nonce_secret: Some(b"fixed nonce secret".to_vec()),
            ..AuthSettings::default()
        }));
        let (config, rules) = (h.mgr.config.clone(), h.mgr.rules.clone());
        h.mgr.reload(config, auth, rules);
    };
    // alice is removed, bob's password changes, the REST secret rotates.
    reload(&mut h, &[("bob", "new")], "another-secret");
    assert!(held(&mut h, &kernel).is_empty());
    // bob's old password again, and the old secret: back in the kernel (alice is still out).
    reload(&mut h, &[("bob", "builder")], "rest-secret");
    let back = held(&mut h, &kernel);
    assert_eq!(
        back,
        [
            entry(&bob, 0x4000, 50001, PEER_A),
            entry(&carol, 0x4000, 50002, PEER_A)
        ]
    );
}

#[test]
fn tcp_clients_capped_allocations_and_other_families_stay_in_user_space() {
    let (mut h, kernel) = offloaded(Setup::dual());
    let tcp = FiveTuple {
        transport: Transport::Tcp,
        ..tuple(1)
    };
    let over_tcp = h.login(0, tcp, "alice", "wonderland");
    h.allocate(0, &over_tcp);
    h.ok(0, &over_tcp, Request::channel_bind(0x4000, PEER_A));
    let alice = h.alice(2);
    let v6 = h.ok(
        0,
        &alice,
        Request::allocate().family(crate::turn::attrs::FAMILY_IPV6),
    );
    assert!(v6.relayed[0].is_ipv6());
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_V6));
    assert!(held(&mut h, &kernel).is_empty(), "{:?}", kernel.log());
    // RFC 5766's channel numbers past 0x4FFF (coturn's uclient draws from them) are the
    // kernel's like any other.
    let bob = h.bob(3);
    h.allocate(0, &bob);
    h.ok(0, &bob, Request::channel_bind(0x7FFF, PEER_A));
    let channels = held(&mut h, &kernel);
    assert_eq!(
        channels.iter().map(|e| e.channel).collect::<Vec<_>>(),
        [0x7FFF],
        "{:?}",
        kernel.log()
    );
    assert_eq!(
        h.channel(0, &over_tcp, 0x4000),
        Some((relay(50000), PEER_A))
    );

    // Bandwidth limits are policed in user space: a reload setting one takes entries out,
    // one lifting it puts them back.
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    assert_eq!(held(&mut h, &kernel).len(), 1);
    for (max_bps, capacity, entries) in [(10_000, 0, 0), (0, 0, 1), (0, 50_000, 0), (0, 0, 1)] {
        let mut config = h.mgr.config.clone();
        (config.max_bps, config.bps_capacity) = (max_bps, capacity);
        let (auth, rules) = (h.auth.clone(), h.mgr.rules.clone());
        h.mgr.reload(config, auth, rules);
        assert_eq!(held(&mut h, &kernel).len(), entries, "{max_bps} {capacity}");
    }
    let mut capped = Setup::default();
    capped.config.max_bps = 10_000;
    let (mut h, kernel) = offloaded(capped);
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    assert!(held(&mut h, &kernel).is_empty());
}

/// Every IPv4 relay port is live.
#[derive(Debug)]
struct AllLive;

impl LiveRelays for AllLive {
    fn holds(&self, _port: u16, ipv6: bool) -> bool {
        !ipv6
    }
}

#[test]
fn a_peer_at_one_of_our_own_relays_is_handed_over_in_process_not_offloaded() {
    let mut setup = Setup::default();
    let own = OwnRelays::new(vec![(RELAY_V4, ADVERTISED_V4)], Arc::new(AllLive));
    setup.rules = PeerRules::new(false, vec![], vec![], vec![SERVER]).with_own_relays(own);
    let (mut h, kernel) = offloaded(setup);
    let (alice, bob) = (h.alice(1), h.bob(2));
    h.allocate(0, &alice);
    let rb = h.allocate(0, &bob);
    h.ok(0, &alice, Request::channel_bind(0x4000, rb));
    h.ok(0, &alice, Request::channel_bind(0x4001, PEER_A));
    assert_eq!(
        held(&mut h, &kernel),
        [entry(&alice, 0x4001, 50000, PEER_A)]
    );
}

#[test]
fn what_the_kernel_counted_lands_in_the_allocation_and_the_metrics_once() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    let a = entry(&alice, 0x4000, 50000, PEER_A);
    held(&mut h, &kernel);
    // One packet through user space (before the entry reached the kernel, say).
    let now = h.at(1);
    assert!(h.mgr.channel_route(now, &alice.tuple, 0x4000, 50).is_some());
    kernel.relayed(a, 3);
    let new = h.mgr.mgr.handle_offload_counts(&kernel);
    assert_eq!((new.to_peer_packets, new.to_client_bytes), (3, 300));
    kernel.relayed(a, 5);
    h.mgr.mgr.handle_offload_counts(&kernel);
    h.mgr.mgr.handle_offload_counts(&kernel); // nothing new: nothing added
    let now = h.at(2);
    let session = h.mgr.sessions(now).remove(0);
    assert_eq!(
        session.to_peer,
        (6, 550),
        "1 in user space, 5 in the kernel"
    );
    assert_eq!(session.to_client, (5, 500));
    let m = h.mgr.metrics().clone();
    assert_eq!((m.to_peer, m.to_client), ((6, 550), (5, 500)));
    assert_eq!(
        (m.offloaded_to_peer, m.offloaded_to_client),
        ((5, 500), (5, 500))
    );
    // What it counted after the last reading is added when the entry leaves.
    kernel.relayed(a, 7);
    h.ok(3, &alice, Request::refresh(0));
    let m = h.mgr.metrics().clone();
    assert_eq!((m.to_peer, m.offloaded_to_client), ((8, 750), (7, 700)));
}

#[test]
fn an_entry_the_kernel_refuses_stays_in_user_space_and_is_asked_again() {
    let (mut h, kernel) = offloaded(Setup::default());
    let alice = h.alice(1);
    h.allocate(0, &alice);
    kernel.state().full = true;
    h.ok(0, &alice, Request::channel_bind(0x4000, PEER_A));
    assert!(held(&mut h, &kernel).is_empty());
    assert_eq!(h.channel(0, &alice, 0x4000), Some((relay(50000), PEER_A)));
    kernel.state().full = false;
    h.ok(60, &alice, Request::channel_bind(0x4000, PEER_A));
    assert_eq!(
        held(&mut h, &kernel),
        [entry(&alice, 0x4000, 50000, PEER_A)]
    );
    // Turning the offload off takes everything out.
    h.mgr.mgr.set_offload(false);
    assert!(held(&mut h, &kernel).is_empty());
}

#[test]
fn an_allocation_kept_out_by_a_reload_stays_out_when_it_moves() {
    use crate::turn::ticket::ATTR_MOBILITY_TICKET;
    let mut setup = Setup::default();
    setup.config.mobility = true;
    let (mut h, kernel) = offloaded(setup);
    let bob = h.bob(1);
    let ask = Request::allocate().attr(ATTR_MOBILITY_TICKET, &[]);
    let ticket = (h.ok(0, &bob, ask).msg)
        .get(ATTR_MOBILITY_TICKET)
        .expect("a ticket");
    h.ok(0, &bob, Request::channel_bind(0x4000, PEER_A));
    assert_eq!(held(&mut h, &kernel).len(), 1);
    // bob's password changes: his allocation's key no longer verifies, out of the kernel.
    let auth = Arc::new(Auth::new(AuthSettings {
        realm: REALM.into(),
        users: [("bob".to_owned(), "new".to_owned())].into_iter().collect(),
        nonce_secret: Some(b"fixed nonce secret".to_vec()),
        ..AuthSettings::default()
    }));
    let (config, rules) = (h.mgr.config.clone(), h.mgr.rules.clone());
    h.mgr.reload(config, auth, rules);
    assert!(held(&mut h, &kernel).is_empty());
    // bob, with his new password, takes it to a new address: still out.
    let moved = h.login(1, tuple(2), "bob", "new");
    h.ok(
        1,
        &moved,
        Request::refresh(600).attr(ATTR_MOBILITY_TICKET, &ticket),
    );
    assert!(h.mgr.has_allocation(&moved.tuple));
    assert_eq!(h.channel(1, &moved, 0x4000), Some((relay(50000), PEER_A)));
    assert!(held(&mut h, &kernel).is_empty());
}
