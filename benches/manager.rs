//! Micro-benchmarks of the sans-IO allocation manager: an authenticated allocation's whole
//! life in requests, the data-path route lookups with 1 and 10 000 allocations held, and the
//! MESSAGE-INTEGRITY and nonce checks every authenticated request pays.
//!
//! Virtual time and a stand-in for the event loop that binds nothing (slot = port): no
//! sockets, no clock reads in the measured code. `cargo bench --bench manager`;
//! `cargo test --benches` runs each once.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use rturn::auth::{Auth, Integrity, NonceCheck, verify_integrity};
use rturn::client::{Request, Session};
use rturn::stun::codec::decode_into;
use rturn::turn::manager::PeerRoute;
use rturn::turn::peer_rules::PeerRules;
use rturn::turn::quota::Quotas;
use rturn::turn::{Answer, Bound, Event, FiveTuple, Manager, RelayAddress, Transport, TurnConfig};
use stun::message::{CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, Message, MessageClass};

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 3478);
const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 5000);
const CHANNEL: u16 = 0x4000;

/// Hands out ports from 1024 up, reusing released ones first; binds no socket. EVEN-PORT
/// is ignored: no benchmark asks for it.
struct Binder {
    next: u16,
    free: Vec<u16>,
}

impl Binder {
    fn bind(&mut self, ip: IpAddr) -> Option<Bound> {
        let port = self.free.pop().or_else(|| {
            let port = self.next;
            self.next = port.checked_add(1)?;
            Some(port)
        })?;
        let addr = SocketAddr::new(ip, port);
        Some(Bound {
            addr,
            slot: usize::from(port),
        })
    }
}

/// One shard's manager, the ports it holds, and the moment its virtual clock started.
struct Shard {
    mgr: Manager,
    binder: Binder,
    auth: Arc<Auth>,
    t0: Instant,
}

impl Shard {
    fn new() -> Self {
        let auth = Arc::new(common::auth());
        let relay = RelayAddress {
            bind: RELAY,
            advertise: RELAY,
        };
        let config = TurnConfig {
            relay_v4: Some(relay),
            ..TurnConfig::default()
        };
        let rules = Arc::new(PeerRules::new(false, vec![], vec![], vec![SERVER]));
        let binder = Binder {
            next: 1024,
            free: Vec::new(),
        };
        let quotas = Arc::new(Quotas::new(Default::default()));
        let t0 = Instant::now();
        let mgr = Manager::new(config, auth.clone(), rules, quotas, t0, common::UNIX_START);
        Shard {
            mgr,
            binder,
            auth,
            t0,
        }
    }

    /// Answers `req` at the start of the virtual clock as the event loop does (binds what an
    /// Allocate asks for, releases what the manager let go); returns what `read` makes of
    /// the answer.
    fn answer<T>(&mut self, tuple: FiveTuple, req: &Message, read: impl FnOnce(&[u8]) -> T) -> T {
        while let Some(event) = self.mgr.poll_event() {
            if let Event::Close(bound) = event {
                self.binder.free.push(bound.addr.port());
            }
        }
        match self.mgr.handle_request(self.t0, tuple, req) {
            Answer::Reply(answer) => read(answer),
            Answer::Later => read(&[]),
            Answer::Bind(wanted) => {
                let bound: Vec<Bound> = (wanted.iter())
                    .map_while(|(ip, _)| self.binder.bind(*ip))
                    .collect();
                read(self.mgr.allocate_bound(self.t0, tuple, req, &bound))
            }
        }
    }

    /// Answers `req`; returns the class of the answer.
    fn class_of(&mut self, tuple: FiveTuple, req: &Message) -> MessageClass {
        self.answer(tuple, req, |answer| decode(answer).typ.class)
    }
}

/// The n-th client; each has its own address and so its own nonce.
fn tuple(n: u32) -> FiveTuple {
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 40000);
    FiveTuple {
        transport: Transport::Udp,
        client,
        server: SERVER,
    }
}

fn decode(raw: &[u8]) -> Message {
    let mut msg = Message::new();
    decode_into(raw, &mut msg).expect("the message is well-formed");
    msg
}

fn allocate(id: u32, signer: Option<&Session>) -> Message {
    decode(&common::request(&Request::allocate(), id, signer))
}

fn channel_bind(id: u32, signer: &Session) -> Message {
    decode(&common::request(
        &Request::channel_bind(CHANNEL, PEER),
        id,
        Some(signer),
    ))
}

/// 401 → Allocate → CreatePermission → ChannelBind → Refresh(0), each request decoded
/// beforehand, so only the manager is measured. Ends with no allocation, so it repeats.
fn lifecycle(c: &mut Criterion) {
    let mut shard = Shard::new();
    let tuple = tuple(0);
    let signer = common::signer(&shard.auth, tuple.client, Integrity::Sha1);
    let steps = [
        (allocate(1, None), CLASS_ERROR_RESPONSE),
        (allocate(2, Some(&signer)), CLASS_SUCCESS_RESPONSE),
        (
            decode(&common::request(
                &Request::create_permission(&[PEER]),
                3,
                Some(&signer),
            )),
            CLASS_SUCCESS_RESPONSE,
        ),
        (channel_bind(4, &signer), CLASS_SUCCESS_RESPONSE),
        (
            decode(&common::request(&Request::refresh(0), 5, Some(&signer))),
            CLASS_SUCCESS_RESPONSE,
        ),
    ];
    for (req, class) in &steps {
        assert_eq!(shard.class_of(tuple, req), *class, "{}", req.typ);
    }
    assert_eq!(shard.mgr.allocation_count(), 0, "Refresh(0) deleted it");

    let mut group = c.benchmark_group("manager");
    group.throughput(Throughput::Elements(steps.len() as u64));
    group.bench_function(
        "lifecycle/401+allocate+permission+channel_bind+refresh0",
        |b| {
            b.iter(|| {
                for (req, _) in &steps {
                    black_box(shard.answer(tuple, black_box(req), <[u8]>::len));
                }
            })
        },
    );
    group.finish();
}

/// A shard holding `n` allocations, each with a channel bound to [`PEER`]; returns it with
/// the client probed and its relay slot.
fn populated(n: u32) -> (Shard, FiveTuple, usize) {
    let mut shard = Shard::new();
    for i in 0..n {
        let tuple = tuple(i);
        let signer = common::signer(&shard.auth, tuple.client, Integrity::Sha1);
        for req in [
            allocate(2 * i, Some(&signer)),
            channel_bind(2 * i + 1, &signer),
        ] {
            assert_eq!(shard.class_of(tuple, &req), CLASS_SUCCESS_RESPONSE);
        }
    }
    assert_eq!(shard.mgr.allocation_count(), n as usize);
    let probe = tuple(n / 2);
    let sessions = shard.mgr.sessions(shard.t0);
    let session = sessions.iter().find(|s| s.client == probe.client);
    let relay = session.expect("the probed client has an allocation").relays[0];
    (shard, probe, usize::from(relay.port()))
}

/// The data path's per-packet lookups: ChannelData from a client (which relay, which peer)
/// and a datagram from a peer (which client, which channel).
fn routes(c: &mut Criterion) {
    let mut shards: Vec<_> = [1, 10_000].into_iter().map(|n| (n, populated(n))).collect();

    let mut group = c.benchmark_group("channel_route");
    for (n, (shard, probe, relay)) in &mut shards {
        let now = shard.t0 + Duration::from_secs(1);
        let route = shard.mgr.channel_route(now, probe, CHANNEL, 160);
        assert_eq!(
            route,
            Some(rturn::turn::ToPeer::Out {
                slot: *relay,
                peer: PEER
            })
        );
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| (shard.mgr).channel_route(now, black_box(probe), black_box(CHANNEL), 160))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("peer_route");
    for (n, (shard, probe, relay)) in &mut shards {
        let now = shard.t0 + Duration::from_secs(1);
        let expected = PeerRoute {
            client: *probe,
            channel: Some(CHANNEL),
        };
        assert_eq!(shard.mgr.peer_route(now, *relay, PEER, 160), Some(expected));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                shard
                    .mgr
                    .peer_route(now, black_box(*relay), black_box(PEER), 160)
            })
        });
    }
    group.finish();
}

/// What authenticating a request costs beyond the lookups: the HMAC over the request and
/// the nonce's own HMAC.
fn authentication(c: &mut Criterion) {
    let auth = common::auth();
    let client = tuple(0).client;
    let mut group = c.benchmark_group("auth");
    for (name, integrity) in [
        ("verify_integrity/sha1", Integrity::Sha1),
        ("verify_integrity/sha256", Integrity::Sha256),
    ] {
        let signer = common::signer(&auth, client, integrity);
        let req = allocate(1, Some(&signer));
        assert_eq!(verify_integrity(&req, signer.key()), Ok(integrity));
        group.bench_function(name, |b| {
            b.iter(|| verify_integrity(black_box(&req), signer.key()))
        });
    }
    let signer = common::signer(&auth, client, Integrity::Sha1);
    let nonce = signer.nonce();
    let now = common::UNIX_START;
    assert_eq!(
        auth.check_nonce(nonce.as_bytes(), now, client),
        NonceCheck::Valid
    );
    group.bench_function("check_nonce", |b| {
        b.iter(|| auth.check_nonce(black_box(nonce.as_bytes()), now, client))
    });
    group.finish();
}

/// Every benchmark of this file, with the short measurement times of [`common::criterion`].
fn benches() {
    let mut c = common::criterion();
    lifecycle(&mut c);
    routes(&mut c);
    authentication(&mut c);
}

criterion_main!(benches);
