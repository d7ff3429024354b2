//! The allocation manager driven as a client would drive it: requests built and signed, and
//! answers read, by [`crate::client`] (the crate's one client; a [`Caller`] is a 5-tuple and
//! its [`Session`], a [`Reply`] the [`Response`] and the message it came in), virtual time,
//! and a small event loop per shard ([`Shard`]) that binds what the manager asks from fake
//! ports, acts on its events, and shows which ports are held. Every refusal asserts its exact
//! code (RFC 8656 §7–§12).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Deref, DerefMut, RangeInclusive};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_RESERVATION_TOKEN,
    ATTR_USERNAME, ATTR_XOR_RELAYED_ADDRESS, ATTR_XORMAPPED_ADDRESS, AttrType,
};
use stun::message::{
    Getter, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message,
};
use stun::uattrs::UnknownAttributes;

use super::attrs::ATTR_ADDRESS_ERROR_CODE;
use super::manager::PeerRoute;
use super::peer_rules::PeerRules;
use super::quota::{Limits, Quotas};
use super::{
    Answer, Bound, Event, FiveTuple, Manager, PortChoice, RelayAddress, ToPeer, Transport,
    TurnConfig,
};
use crate::auth::{Auth, AuthSettings, Integrity, Key, NonceCheck, verify_integrity};
use crate::client::{Request, Response, Session};
use crate::stun::codec::decode_into;

const REALM: &str = "example.org";
const UNIX_START: u64 = 1_700_000_000;
const SERVER: SocketAddr = v4(203, 0, 113, 1, 3478);
const RELAY_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ADVERTISED_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const RELAY_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const ADVERTISED_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
const PEER_A: SocketAddr = v4(192, 0, 2, 10, 5000);
const PEER_B: SocketAddr = v4(198, 51, 100, 7, 6000);
const PEER_C: SocketAddr = v4(203, 0, 113, 9, 7000);
const PEER_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    5000,
);

const fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Bound relay address on the IPv4 relay.
fn relay(port: u16) -> SocketAddr {
    SocketAddr::new(RELAY_V4, port)
}

/// The n-th client, all talking to the same UDP listener.
fn tuple(n: u16) -> FiveTuple {
    let client = v4(198, 51, 100, 1, 40000 + n);
    FiveTuple {
        transport: Transport::Udp,
        client,
        server: SERVER,
    }
}

/// The relay slot of a bound address in the fake socket table: its port, IPv6 ones after.
fn slot_of(addr: SocketAddr) -> usize {
    usize::from(addr.port()) + if addr.is_ipv6() { 1 << 16 } else { 0 }
}

/// The bound address of a slot ([`slot_of`] backwards).
fn addr_of(slot: usize) -> SocketAddr {
    let ip = if slot >> 16 == 1 { RELAY_V6 } else { RELAY_V4 };
    SocketAddr::new(ip, (slot & 0xffff) as u16)
}

/// Ports from a small range per IP, and what is held. Shared by the shards of a harness, as
/// the port pool is by the workers of a server.
type FakePool = Arc<Mutex<FakePorts>>;

struct FakePorts {
    ports: RangeInclusive<u16>,
    bound: BTreeSet<SocketAddr>,
    reserved: BTreeSet<SocketAddr>,
}

impl FakePorts {
    fn is_free(&self, addr: SocketAddr) -> bool {
        self.ports.contains(&addr.port())
            && !self.bound.contains(&addr)
            && !self.reserved.contains(&addr)
    }

    /// Every address out of the pool, bound or reserved, in order.
    fn held(&self) -> Vec<SocketAddr> {
        self.bound.union(&self.reserved).copied().collect()
    }
}

/// One shard's event loop, as `server/` runs it but with fake ports: answers requests,
/// binding the relays an Allocate asks for, and acts on the manager's events.
struct Shard {
    mgr: Manager,
    ports: FakePool,
    /// The kernel's channel maps, when a test turns the offload on ([`offload`]).
    kernel: Option<Box<dyn super::offload::OffloadMaps>>,
}

impl Deref for Shard {
    type Target = Manager;
    fn deref(&self) -> &Manager {
        &self.mgr
    }
}

impl DerefMut for Shard {
    fn deref_mut(&mut self) -> &mut Manager {
        &mut self.mgr
    }
}

impl Shard {
    fn ports(&self) -> std::sync::MutexGuard<'_, FakePorts> {
        self.ports.lock().unwrap()
    }

    /// The answer to `req`, with the relays it needed bound (stopping at the first that
    /// fails, as the server does).
    fn answer(&mut self, now: Instant, tuple: FiveTuple, req: &Message) -> Vec<u8> {
        let answer = match self.mgr.handle_request(now, tuple, req) {
            Answer::Reply(answer) => answer.to_vec(),
            // RFC 6062: the test carries the order out (`tcp_relay/tests.rs`).
            Answer::Later => Vec::new(),
            Answer::Bind(wanted) => {
                let mut bound = Vec::new();
                for (ip, choice) in wanted {
                    let Some(addr) = self.ports().bind(ip, choice) else {
                        break;
                    };
                    bound.push(Bound {
                        addr,
                        slot: slot_of(addr),
                    });
                }
                self.mgr.allocate_bound(now, tuple, req, &bound).to_vec()
            }
        };
        self.settle();
        answer
    }

    /// Acts on every event: closes what the manager released.
    fn settle(&mut self) {
        while let Some(event) = self.mgr.poll_event() {
            match event {
                Event::Close(bound) => {
                    assert_eq!(bound.slot, slot_of(bound.addr));
                    self.ports().release(bound.addr);
                }
                Event::Unreserve(addr) => {
                    assert!(self.ports().reserved.contains(&addr), "{addr} not reserved");
                    self.ports().release(addr);
                }
                Event::OffloadInsert(_) | Event::OffloadRemove(_) => {
                    let kernel = self.kernel.as_mut().expect("offload events with it off");
                    let _ = self.mgr.offload_apply(kernel.as_mut(), &event);
                }
            }
        }
    }
}

impl FakePorts {
    fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<SocketAddr> {
        let at = |port| SocketAddr::new(ip, port);
        let free = |p: u16| self.is_free(at(p));
        let port = match choice {
            PortChoice::Any | PortChoice::Tcp => self.ports.clone().find(|&p| free(p))?,
            PortChoice::Even => self
                .ports
                .clone()
                .find(|&p| p.is_multiple_of(2) && free(p))?,
            PortChoice::EvenReserveNext => {
                let pair =
                    |p: u16| p.is_multiple_of(2) && free(p) && p.checked_add(1).is_some_and(&free);
                let p = self.ports.clone().find(|&p| pair(p))?;
                self.reserved.insert(at(p + 1));
                p
            }
            PortChoice::Reserved(p) => self.reserved.remove(&at(p)).then_some(p)?,
        };
        self.bound.insert(at(port));
        Some(at(port))
    }

    fn release(&mut self, addr: SocketAddr) {
        // Releasing what is not held would be a manager bug (a double release).
        let held = self.bound.remove(&addr) || self.reserved.remove(&addr);
        assert!(held, "released {addr}, which is not held");
    }
}

/// A client of the harness: its 5-tuple and the session its 401 gave it, which
/// [`crate::client`] signs its requests with.
#[derive(Clone)]
struct Caller {
    tuple: FiveTuple,
    session: Session,
}

impl Caller {
    fn key(&self) -> &Key {
        self.session.key()
    }

    fn nonce(&self) -> &str {
        self.session.nonce()
    }

    /// The same client signing with `session` instead.
    fn with(&self, session: Session) -> Caller {
        Caller {
            tuple: self.tuple,
            session,
        }
    }

    /// The same client signing with the same key but `nonce`.
    fn with_nonce(&self, nonce: &str) -> Caller {
        let s = &self.session;
        self.with(Session::with_key(s.username(), *s.key(), s.realm(), nonce))
    }

    /// `req` signed with the session, as wire bytes.
    fn signed(&self, req: &Request) -> Vec<u8> {
        build(req, Some(&self.session))
    }
}

/// `req` with a fresh transaction ID, signed with `session` if given, as wire bytes.
fn build(req: &Request, session: Option<&Session>) -> Vec<u8> {
    req.build(TransactionId::new(), session).unwrap().raw
}

/// A response as a client reads it ([`Response`]), and the message for what is checked on
/// the wire itself (integrity, FINGERPRINT, attributes a client does not act on).
struct Reply {
    msg: Message,
    resp: Response,
}

impl Deref for Reply {
    type Target = Response;
    fn deref(&self) -> &Response {
        &self.resp
    }
}

impl Reply {
    fn contains(&self, typ: AttrType) -> bool {
        self.msg.contains(typ)
    }
}

struct Setup {
    config: TurnConfig,
    rules: PeerRules,
    quotas: Quotas,
    ports: RangeInclusive<u16>,
}

impl Default for Setup {
    fn default() -> Self {
        let relay_v4 = Some(RelayAddress {
            bind: RELAY_V4,
            advertise: ADVERTISED_V4,
        });
        Self {
            config: TurnConfig {
                relay_v4,
                ..TurnConfig::default()
            },
            rules: PeerRules::new(false, vec![], vec![], vec![SERVER]),
            quotas: Quotas::new(Limits::default()),
            ports: 50000..=50009,
        }
    }
}

impl Setup {
    /// IPv4 and IPv6 relays.
    fn dual() -> Self {
        let mut setup = Self::default();
        setup.config.relay_v6 = Some(RelayAddress {
            bind: RELAY_V6,
            advertise: ADVERTISED_V6,
        });
        setup
    }

    fn start(self) -> Harness {
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
        let quotas = Arc::new(self.quotas);
        let ports: FakePool = Arc::new(Mutex::new(FakePorts {
            ports: self.ports,
            bound: BTreeSet::new(),
            reserved: BTreeSet::new(),
        }));
        let t0 = Instant::now();
        let rules = Arc::new(self.rules);
        let shard = || {
            let (auth, rules, quotas) = (auth.clone(), rules.clone(), quotas.clone());
            let config = self.config.clone();
            let mgr = Manager::new(config, auth, rules, quotas, t0, UNIX_START);
            let ports = Arc::clone(&ports);
            Shard {
                mgr,
                ports,
                kernel: None,
            }
        };
        let (mgr, other_shard) = (shard(), shard());
        Harness {
            t0,
            auth,
            quotas,
            mgr,
            other_shard,
        }
    }
}

struct Harness {
    t0: Instant,
    auth: Arc<Auth>,
    quotas: Arc<Quotas>,
    /// The shard requests go to.
    mgr: Shard,
    /// A second shard of the same server: same credentials, quotas, reservations and ports.
    other_shard: Shard,
}

impl Harness {
    /// From now on requests go to the other shard, as a client's new socket may be hashed
    /// to another worker.
    fn switch_shard(&mut self) {
        std::mem::swap(&mut self.mgr, &mut self.other_shard);
    }

    /// Runs the timers of both shards.
    fn expire_all(&mut self, secs: u64) {
        let now = self.at(secs);
        self.mgr.handle_timeout(now);
        self.other_shard.handle_timeout(now);
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// Decodes `raw` as the server would, answers it, and reads the answer as a client.
    fn send(&mut self, secs: u64, tuple: FiveTuple, raw: &[u8]) -> Reply {
        let req = decode(raw);
        let now = self.at(secs);
        self.other_shard.settle();
        self.mgr.settle();
        let resp = read(&self.mgr.answer(now, tuple, &req));
        assert_eq!(resp.transaction_id, req.transaction_id);
        assert_eq!(resp.method, req.typ.method);
        assert!(
            resp.contains(ATTR_FINGERPRINT),
            "the request had FINGERPRINT"
        );
        resp
    }

    /// Sends an unauthenticated Allocate and takes the session its 401 gives, as
    /// [`crate::client::Client`] does.
    fn login(&mut self, secs: u64, tuple: FiveTuple, user: &str, pass: &str) -> Caller {
        let challenge = self.send(secs, tuple, &build(&Request::allocate(), None));
        assert_challenge(&challenge, 401);
        let mut client = crate::client::Client::new(user, pass);
        assert!(client.handle_challenge(&challenge.resp));
        let session = client.session().unwrap().clone();
        Caller { tuple, session }
    }

    fn alice(&mut self, n: u16) -> Caller {
        self.login(0, tuple(n), "alice", "wonderland")
    }

    fn bob(&mut self, n: u16) -> Caller {
        self.login(0, tuple(n), "bob", "builder")
    }

    fn request(&mut self, secs: u64, client: &Caller, req: Request) -> Reply {
        let raw = client.signed(&req);
        self.send(secs, client.tuple, &raw)
    }

    /// A request that must succeed.
    fn ok(&mut self, secs: u64, client: &Caller, req: Request) -> Reply {
        let resp = self.request(secs, client, req);
        assert_success(&resp, client.key());
        resp
    }

    /// A request that must fail after authentication with `code`.
    #[track_caller]
    fn refused(&mut self, secs: u64, client: &Caller, req: Request, code: u16) {
        let resp = self.request(secs, client, req);
        assert_error(&resp, code);
        assert_eq!(
            verify_integrity(&resp.msg, client.key()),
            Ok(Integrity::Sha1)
        );
    }

    /// A plain UDP Allocate that must succeed; returns the advertised relay address.
    fn allocate(&mut self, secs: u64, client: &Caller) -> SocketAddr {
        self.ok(secs, client, Request::allocate()).relayed[0]
    }

    /// Every port held, bound or reserved, once both shards acted on their events.
    fn held(&mut self) -> Vec<SocketAddr> {
        self.other_shard.settle();
        self.mgr.settle();
        self.mgr.ports().held()
    }

    fn route(&mut self, secs: u64, relay: SocketAddr, peer: SocketAddr) -> Option<PeerRoute> {
        let now = self.at(secs);
        self.mgr.peer_route(now, slot_of(relay), peer, 0)
    }

    fn channel(
        &mut self,
        secs: u64,
        client: &Caller,
        number: u16,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let now = self.at(secs);
        match self.mgr.channel_route(now, &client.tuple, number, 0)? {
            ToPeer::Out { slot, peer } => Some((addr_of(slot), peer)),
            ToPeer::Handoff { to, from } => panic!("handed from {from} to {to}"),
        }
    }

    /// Where a Send indication to `peer` goes: the relay to send from.
    fn send_to(&mut self, secs: u64, tuple: FiveTuple, peer: SocketAddr) -> Option<SocketAddr> {
        let ind = decode(&build(&Request::send(peer, b"hello"), None));
        let now = self.at(secs);
        let (to, data) = self.mgr.handle_send(now, tuple, &ind)?;
        let ToPeer::Out { slot, peer: to } = to else {
            panic!("handed over: {to:?}");
        };
        assert_eq!((to, data), (peer, &b"hello"[..]));
        Some(addr_of(slot))
    }

    /// The client's TCP connection of `tuple` closed at `secs`.
    fn close(&mut self, secs: u64, tuple: FiveTuple) {
        let now = self.at(secs);
        self.mgr.close(now, tuple);
    }

    fn expire(&mut self, secs: u64) {
        let now = self.at(secs);
        self.mgr.handle_timeout(now);
    }
}

/// `user-quota`, `total-quota`, `max-allocations-per-ip`.
fn limits(user: usize, total: usize, per_client: usize) -> Limits {
    Limits {
        user,
        total,
        per_client,
    }
}

fn decode(raw: &[u8]) -> Message {
    let mut m = Message::new();
    decode_into(raw, &mut m).unwrap();
    m
}

/// Reads an answer as a client does, keeping the message for the checks on the wire.
#[track_caller]
fn read(answer: &[u8]) -> Reply {
    let resp = Response::parse(answer).unwrap();
    let msg = decode(answer);
    // Every address the client read is every one on the wire: none failed to decode.
    let relayed = count(&msg, ATTR_XOR_RELAYED_ADDRESS);
    assert_eq!(relayed, resp.relayed.len(), "XOR-RELAYED-ADDRESS");
    let mapped = count(&msg, ATTR_XORMAPPED_ADDRESS);
    assert_eq!(
        mapped,
        usize::from(resp.mapped.is_some()),
        "XOR-MAPPED-ADDRESS"
    );
    Reply { msg, resp }
}

/// How many attributes of type `typ` the message has.
fn count(msg: &Message, typ: AttrType) -> usize {
    msg.attributes.0.iter().filter(|a| a.typ == typ).count()
}

#[track_caller]
fn assert_error(resp: &Reply, code: u16) {
    assert_eq!(resp.error_code(), Some(code), "{:?}", resp.error);
}

/// A 401 or 438: REALM and a NONCE, no MESSAGE-INTEGRITY. Returns the nonce.
#[track_caller]
fn assert_challenge(resp: &Reply, code: u16) -> String {
    assert_error(resp, code);
    assert_eq!(resp.realm.as_deref(), Some(REALM));
    assert!(!resp.contains(ATTR_MESSAGE_INTEGRITY));
    let nonce = resp.nonce.clone().unwrap();
    assert!(!nonce.is_empty());
    nonce
}

#[track_caller]
fn assert_success(resp: &Reply, key: &Key) {
    assert!(resp.is_success(), "error {:?}", resp.error);
    assert_eq!(verify_integrity(&resp.msg, key), Ok(Integrity::Sha1));
}

mod allocate;
mod authentication;
mod events;
mod limits;
mod mobility;
mod offload;
mod own_relays;
mod quotas;
mod relaying;
mod tcp_relay;
