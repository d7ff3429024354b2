//! The worker's glue with a fake kernel: a real shard (manager, relay sockets on loopback,
//! the dispatcher the listen sockets use) puts a channel into the kernel's maps on a
//! ChannelBind, counts what the kernel relayed into the manager's and the worker's counters,
//! and takes it out on Refresh 0.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::*;
use crate::auth::{Auth, AuthSettings};
use crate::client::{Client, Request, Response};
use crate::server::datapath::Poller;
use crate::server::handoff::{Handoffs, Inbox};
use crate::server::limiter::SourceLimiter;
use crate::server::ports::PortPool;
use crate::server::relay::RelayTable;
use crate::server::shard::{Dispatcher, Handled, Shard};
use crate::server::stats::Stats;
use crate::turn::offload::ChannelEntry;
use crate::turn::peer_rules::PeerRules;
use crate::turn::quota::{Limits, Quotas};
use crate::turn::{FiveTuple, RelayAddress, Transport, TurnConfig};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The kernel's maps: entries and the counts each reports.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<BTreeMap<String, (ChannelEntry, OffloadCounts)>>>);

impl Fake {
    fn entries(&self) -> Vec<ChannelEntry> {
        self.0.lock().unwrap().values().map(|(e, _)| *e).collect()
    }

    fn set_counts(&self, counts: OffloadCounts) {
        for (_, c) in self.0.lock().unwrap().values_mut() {
            *c = counts;
        }
    }
}

impl OffloadMaps for Fake {
    fn insert(&mut self, entry: &ChannelEntry) -> std::io::Result<()> {
        let value = (*entry, OffloadCounts::default());
        self.0.lock().unwrap().insert(format!("{entry:?}"), value);
        Ok(())
    }

    fn remove(&mut self, entry: &ChannelEntry) {
        self.0.lock().unwrap().remove(&format!("{entry:?}"));
    }

    fn counts(&self, entry: &ChannelEntry) -> Option<OffloadCounts> {
        self.0
            .lock()
            .unwrap()
            .get(&format!("{entry:?}"))
            .map(|(_, c)| *c)
    }
}

/// A shard as the workers build it, with `maps` as its kernel, and the stats it counts into.
fn shard(maps: Fake, now: Instant) -> (Poller, Shard, Stats) {
    let poller = Poller::new().unwrap();
    let config = TurnConfig {
        relay_v4: Some(RelayAddress {
            bind: LOOPBACK,
            advertise: LOOPBACK,
        }),
        ..TurnConfig::default()
    };
    let auth = Arc::new(Auth::new(AuthSettings {
        realm: "example.org".into(),
        users: BTreeMap::from([("alice".to_owned(), "wonderland".to_owned())]),
        ..AuthSettings::default()
    }));
    let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let rules = Arc::new(PeerRules::new(true, vec![], vec![], vec![server]));
    let quotas = Arc::new(Quotas::new(Limits::default()));
    let mut manager = Manager::new(config, auth, rules, quotas, now, 1_700_000_000);
    manager.set_offload(true);
    // A range of its own: tests run in parallel.
    let pools = [
        Arc::new(PortPool::new(47_230, 47_237)),
        Arc::new(PortPool::new(47_230, 47_237)),
    ];
    let stats = Stats::default();
    let counters = stats.register();
    let inboxes: Arc<[Inbox]> = Arc::from(vec![Inbox::new(poller.waker())]);
    let shard = Shard {
        manager,
        relays: RelayTable::new(pools.clone(), poller.registry().unwrap(), 0),
        tcp: crate::server::tcp_relay::TcpRelays::new(
            pools.clone(),
            poller.registry().unwrap(),
            0,
            Arc::default(),
        ),
        limiter: SourceLimiter::new(1000, 1000, now),
        handoffs: Handoffs::new(0, inboxes, pools, Arc::clone(&counters)),
        offload: Some(WorkerOffload::new(Box::new(maps), counters, now)),
        stun_only: false,
        rfc5780: None,
        moves: crate::server::mobility::Moves::single(poller.waker()),
    };
    (poller, shard, stats)
}

/// Sends `req` from `client` through the dispatcher; the response.
fn call(
    shard: &mut Shard,
    d: &mut Dispatcher,
    tuple: FiveTuple,
    client: &Client,
    req: &Request,
) -> Response {
    let msg = client.request(req).unwrap();
    let handled = d.handle(shard, Instant::now(), tuple, &msg.raw);
    assert_eq!(handled, Handled::Reply);
    Response::parse(&d.reply).unwrap()
}

#[test]
fn a_channel_bind_reaches_the_kernel_its_counts_come_back_and_refresh_zero_takes_it_out() {
    let now = Instant::now();
    let kernel = Fake::default();
    let (_poller, mut shard, stats) = shard(kernel.clone(), now);
    let mut d = Dispatcher::new();
    let tuple = FiveTuple {
        transport: Transport::Udp,
        client: "127.0.0.1:40001".parse().unwrap(),
        server: "127.0.0.1:3478".parse().unwrap(),
    };
    let mut alice = Client::new("alice", "wonderland");
    let challenge = call(&mut shard, &mut d, tuple, &alice, &Request::allocate());
    assert!(alice.handle_challenge(&challenge));
    let allocated = call(&mut shard, &mut d, tuple, &alice, &Request::allocate());
    let Some(&relay) = allocated.relayed.first() else {
        panic!("no relay (a port of 47230..=47237 taken?): {allocated:?}");
    };
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let bound = call(
        &mut shard,
        &mut d,
        tuple,
        &alice,
        &Request::channel_bind(0x4000, peer),
    );
    assert!(bound.is_success(), "{bound:?}");
    let entry = ChannelEntry {
        client: tuple.client,
        listen: tuple.server,
        channel: 0x4000,
        relay,
        peer,
    };
    assert_eq!(kernel.entries(), [entry]);

    kernel.set_counts(OffloadCounts {
        to_peer_packets: 4,
        to_peer_bytes: 400,
        to_client_packets: 2,
        to_client_bytes: 200,
    });
    shard.read_offload(now, false);
    assert_eq!(
        shard.manager.metrics().offloaded_to_peer,
        (0, 0),
        "not due yet"
    );
    shard.read_offload(now, true);
    let m = shard.manager.metrics();
    assert_eq!((m.to_peer, m.to_client), ((4, 400), (2, 200)));
    let before = stats.snapshot();
    assert_eq!(before.relayed, 6);

    kernel.set_counts(OffloadCounts {
        to_peer_packets: 5,
        to_peer_bytes: 500,
        to_client_packets: 2,
        to_client_bytes: 200,
    });
    let gone = call(&mut shard, &mut d, tuple, &alice, &Request::refresh(0));
    assert!(gone.is_success(), "{gone:?}");
    assert!(kernel.entries().is_empty());
    assert_eq!(shard.manager.metrics().offloaded_to_peer, (5, 500));
    assert_eq!(
        stats.snapshot().relayed,
        7,
        "the last packet counted on the way out"
    );
    assert_eq!(shard.relays.in_use(), 0);
}

#[test]
fn off_or_unable_the_offload_says_why() {
    let udp: [SocketAddr; 1] = ["0.0.0.0:3478".parse().unwrap()];
    let relay: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
    let off = start(OffloadMode::Off, &udp, &relay);
    assert!(!off.status().active);
    assert_eq!(
        off.status().reason.as_deref(),
        Some("relay.offload is \"off\"")
    );
    assert!(off.maps(0).is_none());
    // auto, but no interface holds the listen address: nothing to attach to.
    let absent: [SocketAddr; 1] = ["192.0.2.1:3478".parse().unwrap()];
    let nowhere = start(OffloadMode::Auto, &absent, &relay);
    assert!(!nowhere.status().active);
    let reason = nowhere.status().reason.clone().unwrap();
    assert!(reason.contains("no interface holds 192.0.2.1"), "{reason}");
    assert!(nowhere.maps(0).is_none());
    let text = crate::metrics::render(&[off.status()]);
    assert!(text.contains("rturn_offload_active 0\n"), "{text}");
}

#[test]
fn a_wildcard_listen_address_attaches_to_every_interface_of_its_family() {
    let any: [IpAddr; 1] = ["0.0.0.0".parse().unwrap()];
    let all = super::interfaces_of(&any).unwrap();
    let with_v4: Vec<String> = (nix::ifaddrs::getifaddrs().unwrap())
        .filter(|a| {
            a.address
                .as_ref()
                .is_some_and(|s| s.as_sockaddr_in().is_some())
        })
        .map(|a| a.interface_name)
        .collect();
    assert!(all.contains(&"lo".to_owned()), "{all:?}");
    for name in &with_v4 {
        assert!(all.contains(name), "{name} missing from {all:?}");
    }
    assert!(
        all.iter().all(|n| with_v4.contains(n)),
        "{all:?} vs {with_v4:?}"
    );
    // A concrete address: only its interface.
    let lo: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
    assert_eq!(super::interfaces_of(&lo).unwrap(), ["lo"]);
}
