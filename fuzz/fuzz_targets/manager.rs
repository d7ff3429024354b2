//! The sans-IO allocation manager driven by a fuzzed script: a few clients (two static users,
//! a TURN REST user, one with a wrong password, two users on one 5-tuple; UDP and TCP) send
//! Allocate, Refresh, CreatePermission, ChannelBind, Send indications and ChannelData, signed
//! with the nonce of their last 401/438 so the deep paths run, with fuzzed attributes,
//! corrupted bytes and raw datagrams through the real decoder; peers send datagrams back;
//! virtual time advances and timers fire in any order the script says.
//!
//! Asserted after every step: no panic; every response decodes, answers the request's method
//! and transaction, and a success verifies with the client's key; the fake binder never
//! releases what it does not hold (a double release), every bound port belongs to exactly
//! one live allocation and every allocation's relays are bound; the quota count equals the
//! allocation count; after handle_timeout(now) nothing is due at or before now. At the end,
//! past every lifetime: no allocation, no bound or reserved port, no quota, no timer.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rturn::auth::verify_integrity;
use rturn::auth::{Auth, AuthSettings, Integrity, Key, long_term_key};
use rturn::client::{Request, Response, Session};
use rturn::stun::channel_data;
use rturn::stun::codec::decode_into;
use rturn::turn::peer_rules::PeerRules;
use rturn::turn::quota::{Limits, Quotas};
use rturn::turn::{
    Answer, Bound, Event, FiveTuple, Manager, PortChoice, RelayAddress, ToPeer, Transport,
    TurnConfig,
};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_XOR_RELAYED_ADDRESS, AttrType};
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message, Method,
};

const REALM: &str = "example.org";
const UNIX_START: u64 = 1_700_000_000;
const SERVER: SocketAddr = v4(203, 0, 113, 1, 3478);
const RELAY_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ADVERTISED_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const RELAY_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
/// A small range, so that it runs out (508) and ports are reused.
const PORTS: std::ops::RangeInclusive<u16> = 50000..=50005;
const MAX_STEPS: usize = 96;

const fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

/// Peers the script picks from: allowed ones of both families, and ones the rules refuse.
const PEERS: [SocketAddr; 8] = [
    v4(192, 0, 2, 10, 5000),
    v4(198, 51, 100, 7, 6000),
    v4(192, 0, 2, 10, 5001),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        5000,
    ),
    v4(127, 0, 0, 1, 9),
    v4(10, 0, 0, 1, 1),
    SERVER,
    v4(192, 0, 2, 11, 0),
];
const CHANNELS: [u16; 6] = [0x4000, 0x4001, 0x4fff, 0x5000, 0x7fff, 0x3fff];

/// Binds from [`PORTS`] per IP and remembers what it holds; a release of anything not held
/// is a manager bug (the port could then be handed out twice).
#[derive(Default)]
struct FakeBinder {
    bound: BTreeSet<SocketAddr>,
    reserved: BTreeSet<SocketAddr>,
}

impl FakeBinder {
    fn is_free(&self, addr: SocketAddr) -> bool {
        PORTS.contains(&addr.port())
            && !self.bound.contains(&addr)
            && !self.reserved.contains(&addr)
    }
}

/// The slot of a bound address in the fake socket table: its port, IPv6 ones after.
fn slot_of(addr: SocketAddr) -> usize {
    usize::from(addr.port()) + if addr.is_ipv6() { 1 << 16 } else { 0 }
}

/// The bound address of a slot ([`slot_of`] backwards).
fn addr_of(slot: usize) -> SocketAddr {
    let ip = if slot >> 16 == 1 { RELAY_V6 } else { RELAY_V4 };
    SocketAddr::new(ip, (slot & 0xffff) as u16)
}

impl FakeBinder {
    fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<SocketAddr> {
        let at = |port| SocketAddr::new(ip, port);
        let free = |p: u16| self.is_free(at(p));
        let port = match choice {
            PortChoice::Any | PortChoice::Tcp => PORTS.clone().find(|&p| free(p))?,
            PortChoice::Even => PORTS.clone().find(|&p| p % 2 == 0 && free(p))?,
            PortChoice::EvenReserveNext => {
                let p = PORTS
                    .clone()
                    .find(|&p| p % 2 == 0 && free(p) && free(p + 1))?;
                assert!(self.reserved.insert(at(p + 1)));
                p
            }
            PortChoice::Reserved(p) => self.reserved.remove(&at(p)).then_some(p)?,
        };
        assert!(self.bound.insert(at(port)), "{} bound twice", at(port));
        Some(at(port))
    }

    fn release(&mut self, addr: SocketAddr) {
        let held = self.bound.remove(&addr) || self.reserved.remove(&addr);
        assert!(held, "released {addr}, which is not held");
    }
}

struct Client {
    tuple: FiveTuple,
    user: String,
    key: Key,
    nonce: Option<String>,
}

struct World {
    t0: Instant,
    secs: Duration,
    mgr: Manager,
    /// The ports the event loop holds for it.
    ports: FakeBinder,
    quotas: Arc<Quotas>,
    clients: Vec<Client>,
    tokens: Vec<Vec<u8>>,
    max_lifetime: Duration,
}

impl World {
    fn now(&self) -> Instant {
        self.t0 + self.secs
    }

    fn peer(&self, u: &mut Unstructured<'_>) -> Result<SocketAddr> {
        Ok(if u.ratio(1, 8)? {
            let ip: [u8; 4] = u.arbitrary()?;
            SocketAddr::new(IpAddr::from(ip), u.arbitrary()?)
        } else {
            *u.choose(&PEERS)?
        })
    }

    fn channel(&self, u: &mut Unstructured<'_>) -> Result<u16> {
        if u.ratio(1, 8)? {
            u.arbitrary()
        } else {
            u.choose(&CHANNELS).copied()
        }
    }

    /// A request of `method` with fuzzed attributes for it, and its transaction ID.
    fn request(
        &self,
        u: &mut Unstructured<'_>,
        method: Method,
    ) -> Result<(Request, TransactionId)> {
        let mut m = Request::new(method);
        // Few distinct IDs, so retransmissions (same ID again) happen.
        let id = TransactionId([u.int_in_range(0..=3)?; 12]);
        match method {
            METHOD_ALLOCATE => {
                let proto = if u.ratio(7, 8)? { 17 } else { u.arbitrary()? };
                if u.ratio(15, 16)? {
                    m = m.transport(proto);
                }
                if u.ratio(1, 4)? {
                    m = m.even_port(u.arbitrary()?);
                }
                if u.ratio(1, 4)? {
                    let family = u.int_in_range(0..=3)?;
                    m = if u.arbitrary()? {
                        m.family(family)
                    } else {
                        m.additional_family(family)
                    };
                }
                if u.ratio(1, 4)? && !self.tokens.is_empty() {
                    m = m.reservation_token(u.choose(&self.tokens)?);
                }
                if u.ratio(1, 8)? {
                    m = m.dont_fragment();
                }
                m = self.lifetime(u, m)?;
            }
            METHOD_REFRESH => m = self.lifetime(u, m)?,
            METHOD_CREATE_PERMISSION => {
                for _ in 0..u.int_in_range(0..=3)? {
                    m = m.peer(self.peer(u)?);
                }
            }
            METHOD_CHANNEL_BIND => {
                if u.ratio(15, 16)? {
                    m = m.channel(self.channel(u)?);
                }
                if u.ratio(15, 16)? {
                    m = m.peer(self.peer(u)?);
                }
            }
            _ => {}
        }
        // Now and then an attribute of any type and value: unknown, duplicate, malformed.
        if u.ratio(1, 8)? {
            let typ = AttrType(u.arbitrary()?);
            let len = u.int_in_range(0..=9)?;
            m = m.attr(typ, u.bytes(len)?);
        }
        Ok((m, id))
    }

    fn lifetime(&self, u: &mut Unstructured<'_>, m: Request) -> Result<Request> {
        if u.ratio(1, 2)? {
            let secs: u32 = match u.int_in_range(0..=3)? {
                0 => 0,
                1 => u.int_in_range(1..=700)?,
                2 => u.int_in_range(700..=5000)?,
                _ => u.arbitrary()?,
            };
            return Ok(m.lifetime(secs));
        }
        Ok(m)
    }

    /// Builds `req` signed as client `c` with its nonce (or unsigned, to get a 401), with
    /// FINGERPRINT most of the time.
    fn sign(
        &self,
        u: &mut Unstructured<'_>,
        c: usize,
        req: Request,
        id: TransactionId,
    ) -> Result<Message> {
        let client = &self.clients[c];
        let mut session = None;
        if let Some(nonce) = &client.nonce
            && u.ratio(15, 16)?
        {
            let integrity = if u.ratio(1, 4)? {
                Integrity::Sha256
            } else {
                Integrity::Sha1
            };
            let signer = Session::with_key(&client.user, client.key, REALM, nonce);
            session = Some(signer.signing_with(integrity));
        }
        let req = if u.ratio(3, 4)? {
            req
        } else {
            req.without_fingerprint()
        };
        Ok(req
            .build(id, session.as_ref())
            .expect("the request encodes"))
    }

    /// The bytes on the wire, now and then corrupted: a flipped byte, or cut short.
    fn wire(&self, u: &mut Unstructured<'_>, m: Message) -> Result<Vec<u8>> {
        let mut raw = m.raw;
        if u.ratio(1, 16)? && !raw.is_empty() {
            let at = u.choose_index(raw.len())?;
            raw[at] ^= u.int_in_range(1..=255)?;
        }
        if u.ratio(1, 32)? {
            let keep = u.choose_index(raw.len() + 1)?;
            raw.truncate(keep);
        }
        Ok(raw)
    }

    /// What the server does with a datagram from client `c`, then the invariants.
    fn deliver(&mut self, c: usize, raw: &[u8]) {
        let mut req = Message::new();
        if decode_into(raw, &mut req).is_err() {
            return; // counted and dropped by the server
        }
        let now = self.now();
        let tuple = self.clients[c].tuple;
        match (req.typ.class, req.typ.method) {
            (CLASS_REQUEST, METHOD_BINDING) => {} // answered by the Responder, not the manager
            (CLASS_REQUEST, _) => {
                // As the event loop does: bind what an Allocate asks for.
                let answer = match self.mgr.handle_request(now, tuple, &req) {
                    Answer::Reply(answer) => answer.to_vec(),
                    // RFC 6062 Connect and ConnectionBind: nothing to connect to here.
                    Answer::Later => {
                        while self.mgr.poll_tcp_order().is_some() {}
                        Vec::new()
                    }
                    Answer::Bind(wanted) => {
                        let mut bound = Vec::new();
                        for (ip, choice) in wanted {
                            let Some(addr) = self.ports.bind(ip, choice) else {
                                break;
                            };
                            bound.push(Bound {
                                addr,
                                slot: slot_of(addr),
                            });
                        }
                        (self.mgr.allocate_bound(now, tuple, &req, &bound)).to_vec()
                    }
                };
                self.settle();
                self.check_response(c, &req, &answer);
            }
            (CLASS_INDICATION, METHOD_SEND) => {
                if let Some((ToPeer::Out { slot, peer }, data)) =
                    self.mgr.handle_send(now, tuple, &req)
                {
                    let relay = addr_of(slot);
                    assert!(self.ports.bound.contains(&relay), "{relay} not bound");
                    assert_eq!(relay.is_ipv4(), peer.is_ipv4());
                    assert!(data.len() <= raw.len());
                }
            }
            _ => {}
        }
    }

    fn check_response(&mut self, c: usize, req: &Message, answer: &[u8]) {
        let mut resp = Message::new();
        assert_eq!(
            decode_into(answer, &mut resp),
            Ok(()),
            "response does not decode"
        );
        assert_eq!(resp.transaction_id, req.transaction_id);
        assert_eq!(resp.typ.method, req.typ.method);
        let r = Response::from_message(&resp)
            .unwrap_or_else(|e| panic!("a request answered with {e}: {resp}"));
        match r.error_code() {
            None => {
                let key = self.clients[c].key;
                assert!(
                    verify_integrity(&resp, &key).is_ok(),
                    "success not signed with the key"
                );
                if resp.typ.method == METHOD_ALLOCATE {
                    let carried = (resp.attributes.0.iter())
                        .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
                        .count();
                    assert_eq!(r.relayed.len(), carried, "XOR-RELAYED-ADDRESS decodes");
                    for advertised in &r.relayed {
                        let addr = match advertised.ip() {
                            ADVERTISED_V4 => SocketAddr::new(RELAY_V4, advertised.port()),
                            _ => *advertised,
                        };
                        assert!(
                            self.ports.bound.contains(&addr),
                            "relayed {addr} is not bound"
                        );
                    }
                    assert!(
                        !r.relayed.is_empty(),
                        "Allocate success without a relayed address"
                    );
                    if let Some(token) = r.reservation_token {
                        assert_eq!(token.len(), 8);
                        self.tokens.push(token);
                    }
                }
            }
            Some(code) => {
                assert!((300..700).contains(&code), "code {code}");
                if code == 401 || code == 438 {
                    let nonce = r.nonce.expect("a challenge has NONCE");
                    assert_eq!(r.realm.as_deref(), Some(REALM));
                    self.clients[c].nonce = Some(nonce);
                }
            }
        }
    }

    /// Acts on the manager's events, as the event loop does: releases what it let go.
    fn settle(&mut self) {
        while let Some(event) = self.mgr.poll_event() {
            match event {
                Event::Close(bound) => {
                    assert_eq!(bound.slot, slot_of(bound.addr));
                    self.ports.release(bound.addr);
                }
                Event::Unreserve(addr) => {
                    assert!(self.ports.reserved.contains(&addr), "{addr} not reserved");
                    self.ports.release(addr);
                }
            }
        }
    }

    /// Ports, allocations and quotas agree (once the events are acted on).
    fn check(&mut self) {
        self.settle();
        let now = self.now();
        let sessions = self.mgr.sessions(now);
        assert_eq!(sessions.len(), self.mgr.allocation_count());
        // A reservation counts like an allocation until it is claimed or lapses.
        assert_eq!(
            self.quotas.total(),
            self.mgr.allocation_count() + self.quotas.reservations(),
            "quota count"
        );
        assert_eq!(
            self.quotas.reservations(),
            self.ports.reserved.len(),
            "reservations and reserved ports differ"
        );
        let mut relays = BTreeSet::new();
        for s in &sessions {
            assert!(!s.relays.is_empty(), "an allocation without a relay");
            for r in &s.relays {
                assert!(relays.insert(*r), "{r} relays for two allocations");
            }
        }
        let bound = &self.ports.bound;
        assert_eq!(&relays, bound, "bound ports and allocations' relays differ");
        assert!(bound.is_disjoint(&self.ports.reserved));
    }
}

fn steps(w: &mut World, u: &mut Unstructured<'_>) -> Result<()> {
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let c = u.choose_index(w.clients.len())?;
        match u.int_in_range(0..=13)? {
            op @ 0..=4 => {
                let method = [
                    METHOD_ALLOCATE,
                    METHOD_REFRESH,
                    METHOD_CREATE_PERMISSION,
                    METHOD_CHANNEL_BIND,
                    METHOD_ALLOCATE,
                ][op as usize];
                let (req, id) = w.request(u, method)?;
                let m = w.sign(u, c, req, id)?;
                let raw = w.wire(u, m)?;
                w.deliver(c, &raw);
            }
            5 => {
                // A Send indication (no integrity: indications are not authenticated).
                let mut req = Request::indication(METHOD_SEND).without_fingerprint();
                let id = TransactionId(u.arbitrary()?);
                if u.ratio(15, 16)? {
                    req = req.peer(w.peer(u)?);
                }
                if u.ratio(15, 16)? {
                    let len = u.int_in_range(0..=32)?;
                    req = req.data(u.bytes(len)?);
                }
                let m = req.build(id, None).expect("the indication encodes");
                let raw = w.wire(u, m)?;
                w.deliver(c, &raw);
            }
            6 => {
                // ChannelData from the client, through the parser the data path uses.
                let channel = w.channel(u)?;
                let len = u.int_in_range(0..=16)?;
                let mut packet = channel_data::header(channel, len).to_vec();
                let sent = u.int_in_range(0..=len + 4)?;
                let payload = u.bytes(sent)?;
                packet.extend_from_slice(payload);
                if let Ok(cd) = channel_data::parse(&packet) {
                    let tuple = w.clients[c].tuple;
                    let now = w.now();
                    if let Some(ToPeer::Out { slot, peer }) =
                        w.mgr
                            .channel_route(now, &tuple, cd.channel, cd.payload.len())
                    {
                        let relay = addr_of(slot);
                        assert!(w.ports.bound.contains(&relay), "{relay} not bound");
                        assert_eq!(relay.is_ipv4(), peer.is_ipv4());
                    }
                }
            }
            7 => {
                // A datagram from a peer on a relay address (held, or any).
                let bound: Vec<SocketAddr> = w.ports.bound.iter().copied().collect();
                let relay = match u.choose(&bound) {
                    Ok(r) if u.ratio(7, 8)? => *r,
                    _ => SocketAddr::new(RELAY_V4, u.int_in_range(49999..=50006)?),
                };
                let peer = w.peer(u)?;
                let now = w.now();
                if let Some(route) = w.mgr.peer_route(now, slot_of(relay), peer, 10) {
                    assert!(
                        w.mgr.has_allocation(&route.client),
                        "route to no allocation"
                    );
                    if let Some(channel) = route.channel {
                        assert!((0x4000..=0x7fff).contains(&channel), "channel {channel:#x}");
                    }
                }
            }
            8 => {
                let step = match u.int_in_range(0..=3)? {
                    0 => Duration::from_millis(u.int_in_range(1..=1000)?),
                    1 => Duration::from_secs(u.int_in_range(1..=60)?),
                    2 => Duration::from_secs(u.int_in_range(60..=700)?),
                    _ => Duration::from_secs(u.int_in_range(700..=4000)?),
                };
                w.secs += step;
            }
            9 | 10 => {
                let now = w.now();
                w.mgr.handle_timeout(now);
                if let Some(next) = w.mgr.poll_timeout() {
                    assert!(
                        next > now,
                        "a timer due at {next:?} survived handle_timeout({now:?})"
                    );
                }
            }
            11 => {
                // Raw bytes from the fuzzer, through the real decoder.
                let len = u.int_in_range(0..=96)?;
                let raw = u.bytes(len)?.to_vec();
                w.deliver(c, &raw);
            }
            12 => {
                // The client's TCP connection closes (its allocation goes), or a UDP
                // client is kicked by an operator.
                let tuple = w.clients[c].tuple;
                if tuple.transport == Transport::Tcp {
                    w.mgr.close(tuple);
                } else {
                    let user = w.clients[c].user.clone();
                    w.mgr.kick(None, Some(&user));
                }
            }
            _ => {
                if u.ratio(1, 4)? {
                    // Draining: new Allocates get 300 with ALTERNATE-SERVER, or 508.
                    let alternate = u.arbitrary::<bool>()?.then_some(v4(203, 0, 113, 2, 3478));
                    w.mgr.drain(alternate);
                }
            }
        }
        w.check();
    }
    Ok(())
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let users = BTreeMap::from([
        ("alice".to_owned(), "wonderland".to_owned()),
        ("bob".to_owned(), "builder".to_owned()),
    ]);
    let auth = Arc::new(Auth::new(AuthSettings {
        realm: REALM.into(),
        users,
        secrets: vec!["rest-secret".into()],
        nonce_secret: Some(b"fixed nonce secret".to_vec()),
        ..AuthSettings::default()
    }));
    let config = TurnConfig {
        relay_v4: Some(RelayAddress {
            bind: RELAY_V4,
            advertise: ADVERTISED_V4,
        }),
        relay_v6: u.arbitrary::<bool>()?.then_some(RelayAddress {
            bind: RELAY_V6,
            advertise: RELAY_V6,
        }),
        ..TurnConfig::default()
    };
    let max_lifetime = config.max_lifetime.max(config.reservation_lifetime);
    let quotas = Arc::new(Quotas::new(Limits {
        user: u.int_in_range(0..=2)?,
        total: u.int_in_range(0..=4)?,
        per_client: u.int_in_range(0..=5)?,
    }));
    let rules = Arc::new(PeerRules::new(false, vec![], vec![], vec![SERVER]));
    let t0 = Instant::now();
    let mgr = Manager::new(config, auth.clone(), rules, quotas.clone(), t0, UNIX_START);
    let (carol, carol_pass) = auth
        .mint_rest(Some("carol"), UNIX_START, u.int_in_range(0..=900)?)
        .expect("a secret is configured");
    let client = |n: u16, transport, user: &str, pass: &str| Client {
        tuple: FiveTuple {
            transport,
            client: v4(198, 51, 100, 1, 40000 + n),
            server: SERVER,
        },
        user: user.to_owned(),
        key: long_term_key(user, REALM, pass),
        nonce: None,
    };
    let clients = vec![
        client(1, Transport::Udp, "alice", "wonderland"),
        client(2, Transport::Udp, "bob", "builder"),
        client(3, Transport::Tcp, &carol, &carol_pass),
        client(4, Transport::Udp, "alice", "wrong password"),
        client(1, Transport::Tcp, "bob", "builder"),
        // Another user on alice's 5-tuple: 441 once alice holds the allocation.
        client(1, Transport::Udp, "bob", "builder"),
    ];
    let mut w = World {
        t0,
        secs: Duration::ZERO,
        mgr,
        ports: FakeBinder::default(),
        quotas,
        clients,
        tokens: Vec::new(),
        max_lifetime,
    };
    // Every client starts with a challenge, so it has a nonce to sign with.
    for c in 0..w.clients.len() {
        let m = Request::new(METHOD_ALLOCATE)
            .without_fingerprint()
            .build(TransactionId([9; 12]), None)
            .expect("an empty Allocate encodes");
        w.deliver(c, &m.raw);
        assert!(
            w.clients[c].nonce.is_some(),
            "no 401 to an unsigned Allocate"
        );
    }
    w.check();

    // The script ends where the fuzz bytes do, mid-step or not; the end checks always run.
    let _ = steps(&mut w, u);

    // With RTURN_FUZZ_STATS set, say how deep this input went (to check the script reaches
    // past authentication: `RTURN_FUZZ_STATS=1 manager -runs=0 corpus/manager`).
    if std::env::var_os("RTURN_FUZZ_STATS").is_some() {
        let m = w.mgr.metrics();
        eprintln!(
            "stats created={} challenges={} auth_failures={:?} refused={:?} to_peer={} to_client={}",
            m.allocations_created,
            m.challenges,
            m.auth_failures,
            m.refused,
            m.to_peer.0,
            m.to_client.0
        );
    }

    // Past every lifetime, everything is gone and every port is back.
    w.secs += w.max_lifetime + Duration::from_secs(1);
    let now = w.now();
    w.mgr.handle_timeout(now);
    w.check();
    assert_eq!(
        w.mgr.allocation_count(),
        0,
        "allocations outlived max lifetime"
    );
    assert!(w.ports.bound.is_empty(), "ports still bound");
    assert!(w.ports.reserved.is_empty(), "ports still reserved");
    assert_eq!(w.quotas.total(), 0);
    assert_eq!(
        w.mgr.poll_timeout(),
        None,
        "timers left with nothing to expire"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
