//! The allocation manager driven as a client would drive it: requests built and signed with
//! the `stun` crate, virtual time, and a fake relay binder that shows which ports are held.
//! Every refusal asserts its exact code (RFC 8656 §7–§12).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_EVEN_PORT, ATTR_FINGERPRINT, ATTR_LIFETIME,
    ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_REQUESTED_TRANSPORT, ATTR_RESERVATION_TOKEN, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
    ATTR_XOR_RELAYED_ADDRESS, ATTR_XORMAPPED_ADDRESS, AttrType,
};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter,
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
    Message, MessageClass, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;

use super::attrs::{ATTR_ADDITIONAL_ADDRESS_FAMILY, ATTR_ADDRESS_ERROR_CODE, decode_xor_address};
use super::manager::PeerRoute;
use super::peer_rules::PeerRules;
use super::quota::Quotas;
use super::{FiveTuple, Manager, PortChoice, RelayAddress, RelayBinder, Transport, TurnConfig};
use crate::auth::{Auth, AuthSettings, Integrity, Key, NonceCheck};
use crate::auth::{add_integrity, long_term_key, verify_integrity};
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

/// Binds from a small port range per IP and remembers what it holds.
struct FakeBinder {
    ports: RangeInclusive<u16>,
    bound: BTreeSet<SocketAddr>,
    reserved: BTreeSet<SocketAddr>,
}

impl FakeBinder {
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

impl RelayBinder for FakeBinder {
    fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<SocketAddr> {
        let at = |port| SocketAddr::new(ip, port);
        let free = |p: u16| self.is_free(at(p));
        let port = match choice {
            PortChoice::Any => self.ports.clone().find(|&p| free(p))?,
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

/// A request (or indication) under construction.
struct Req(Message);

impl Req {
    fn new(method: Method) -> Self {
        Self::of_class(method, CLASS_REQUEST)
    }

    fn of_class(method: Method, class: MessageClass) -> Self {
        let mut m = Message::new();
        m.typ = MessageType::new(method, class);
        m.new_transaction_id().unwrap();
        m.write_header();
        Req(m)
    }

    /// Allocate with REQUESTED-TRANSPORT UDP.
    fn allocate() -> Self {
        Self::new(METHOD_ALLOCATE).transport(17)
    }

    fn refresh(lifetime: u32) -> Self {
        Self::new(METHOD_REFRESH).lifetime(lifetime)
    }

    fn permission(peers: &[SocketAddr]) -> Self {
        let req = Self::new(METHOD_CREATE_PERMISSION);
        peers.iter().fold(req, |req, &peer| req.peer(peer))
    }

    fn bind(number: u16, peer: SocketAddr) -> Self {
        let [hi, lo] = number.to_be_bytes();
        (Self::new(METHOD_CHANNEL_BIND).attr(ATTR_CHANNEL_NUMBER, &[hi, lo, 0, 0])).peer(peer)
    }

    fn attr(mut self, typ: AttrType, value: &[u8]) -> Self {
        self.0.add(typ, value);
        self
    }

    fn text(mut self, typ: AttrType, text: &str) -> Self {
        let attr = TextAttribute::new(typ, text.to_owned());
        attr.add_to(&mut self.0).unwrap();
        self
    }

    fn transport(self, protocol: u8) -> Self {
        self.attr(ATTR_REQUESTED_TRANSPORT, &[protocol, 0, 0, 0])
    }

    fn family(self, family: u8) -> Self {
        self.attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[family, 0, 0, 0])
    }

    fn additional_family(self, family: u8) -> Self {
        self.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[family, 0, 0, 0])
    }

    fn lifetime(self, secs: u32) -> Self {
        self.attr(ATTR_LIFETIME, &secs.to_be_bytes())
    }

    fn even_port(self, reserve_next: bool) -> Self {
        self.attr(ATTR_EVEN_PORT, &[if reserve_next { 0x80 } else { 0 }])
    }

    fn token(self, token: &[u8]) -> Self {
        self.attr(ATTR_RESERVATION_TOKEN, token)
    }

    fn peer(mut self, addr: SocketAddr) -> Self {
        let xor = XorMappedAddress {
            ip: addr.ip(),
            port: addr.port(),
        };
        xor.add_to_as(&mut self.0, ATTR_XOR_PEER_ADDRESS).unwrap();
        self
    }

    /// The wire bytes, with FINGERPRINT.
    fn build(mut self) -> Vec<u8> {
        FINGERPRINT.add_to(&mut self.0).unwrap();
        self.0.raw
    }
}

/// A client that got a nonce from a 401 and signs with its long-term key.
#[derive(Clone)]
struct Client {
    tuple: FiveTuple,
    user: String,
    realm: String,
    nonce: String,
    key: Key,
}

impl Client {
    fn sign(&self, req: Req) -> Req {
        let mut req = (req.text(ATTR_USERNAME, &self.user))
            .text(ATTR_REALM, &self.realm)
            .text(ATTR_NONCE, &self.nonce);
        add_integrity(&mut req.0, &self.key, Integrity::Sha1);
        req
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
            quotas: Quotas::new(0, 0),
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
        let binder = FakeBinder {
            ports: self.ports,
            bound: BTreeSet::new(),
            reserved: BTreeSet::new(),
        };
        let t0 = Instant::now();
        let rules = Arc::new(self.rules);
        let mgr = Manager::new(
            self.config,
            auth.clone(),
            rules,
            quotas.clone(),
            binder,
            t0,
            UNIX_START,
        );
        Harness {
            t0,
            auth,
            quotas,
            mgr,
        }
    }
}

struct Harness {
    t0: Instant,
    auth: Arc<Auth>,
    quotas: Arc<Quotas>,
    mgr: Manager<FakeBinder>,
}

impl Harness {
    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// Decodes `raw` as the server would, answers it, and decodes the answer.
    fn send(&mut self, secs: u64, tuple: FiveTuple, raw: &[u8]) -> Message {
        let req = decode(raw);
        let now = self.at(secs);
        let resp = decode(self.mgr.handle_request(now, tuple, &req));
        assert_eq!(resp.transaction_id, req.transaction_id);
        assert_eq!(resp.typ.method, req.typ.method);
        assert!(
            resp.contains(ATTR_FINGERPRINT),
            "the request had FINGERPRINT"
        );
        resp
    }

    /// Sends an unauthenticated Allocate and keeps the nonce of the 401.
    fn login(&mut self, secs: u64, tuple: FiveTuple, user: &str, pass: &str) -> Client {
        let nonce = assert_challenge(&self.send(secs, tuple, &Req::allocate().build()), 401);
        let (user, realm, key) = (user.into(), REALM.into(), long_term_key(user, REALM, pass));
        Client {
            tuple,
            user,
            realm,
            nonce,
            key,
        }
    }

    fn alice(&mut self, n: u16) -> Client {
        self.login(0, tuple(n), "alice", "wonderland")
    }

    fn bob(&mut self, n: u16) -> Client {
        self.login(0, tuple(n), "bob", "builder")
    }

    fn request(&mut self, secs: u64, client: &Client, req: Req) -> Message {
        let raw = client.sign(req).build();
        self.send(secs, client.tuple, &raw)
    }

    /// A request that must succeed.
    fn ok(&mut self, secs: u64, client: &Client, req: Req) -> Message {
        let resp = self.request(secs, client, req);
        assert_success(&resp, &client.key);
        resp
    }

    /// A request that must fail after authentication with `code`.
    #[track_caller]
    fn refused(&mut self, secs: u64, client: &Client, req: Req, code: u16) {
        let resp = self.request(secs, client, req);
        assert_error(&resp, code);
        assert_eq!(verify_integrity(&resp, &client.key), Ok(Integrity::Sha1));
    }

    /// A plain UDP Allocate that must succeed; returns the advertised relay address.
    fn allocate(&mut self, secs: u64, client: &Client) -> SocketAddr {
        relayed(&self.ok(secs, client, Req::allocate()))[0]
    }

    fn held(&mut self) -> Vec<SocketAddr> {
        self.mgr.binder_mut().held()
    }

    fn route(&self, secs: u64, relay: SocketAddr, peer: SocketAddr) -> Option<PeerRoute> {
        self.mgr.peer_route(self.at(secs), relay, peer)
    }

    fn channel(&self, secs: u64, client: &Client, number: u16) -> Option<(SocketAddr, SocketAddr)> {
        self.mgr.channel_route(self.at(secs), &client.tuple, number)
    }

    /// Where a Send indication to `peer` goes: the relay to send from.
    fn send_to(&self, secs: u64, tuple: FiveTuple, peer: SocketAddr) -> Option<SocketAddr> {
        let ind = Req::of_class(METHOD_SEND, CLASS_INDICATION).peer(peer);
        let ind = decode(&ind.attr(ATTR_DATA, b"hello").build());
        let (relay, to, data) = self.mgr.handle_send(self.at(secs), tuple, &ind)?;
        assert_eq!((to, data), (peer, &b"hello"[..]));
        Some(relay)
    }

    fn expire(&mut self, secs: u64) {
        let now = self.at(secs);
        self.mgr.handle_timeout(now);
    }
}

fn decode(raw: &[u8]) -> Message {
    let mut m = Message::new();
    decode_into(raw, &mut m).unwrap();
    m
}

fn error_code(resp: &Message) -> Option<u16> {
    let mut attr = ErrorCodeAttribute::default();
    attr.get_from(resp).ok()?;
    Some(attr.code.0)
}

#[track_caller]
fn assert_error(resp: &Message, code: u16) {
    assert_eq!(resp.typ.class, CLASS_ERROR_RESPONSE);
    assert_eq!(error_code(resp), Some(code));
}

/// A 401 or 438: REALM and a NONCE, no MESSAGE-INTEGRITY. Returns the nonce.
#[track_caller]
fn assert_challenge(resp: &Message, code: u16) -> String {
    assert_error(resp, code);
    assert_eq!(resp.get(ATTR_REALM).unwrap(), REALM.as_bytes());
    assert!(!resp.contains(ATTR_MESSAGE_INTEGRITY));
    let nonce = String::from_utf8(resp.get(ATTR_NONCE).unwrap()).unwrap();
    assert!(!nonce.is_empty());
    nonce
}

#[track_caller]
fn assert_success(resp: &Message, key: &Key) {
    assert_eq!(
        resp.typ.class,
        CLASS_SUCCESS_RESPONSE,
        "error {:?}",
        error_code(resp)
    );
    assert_eq!(verify_integrity(resp, key), Ok(Integrity::Sha1));
}

fn xor_addrs(resp: &Message, typ: AttrType) -> Vec<SocketAddr> {
    let attrs = resp.attributes.0.iter().filter(|a| a.typ == typ);
    attrs
        .map(|a| decode_xor_address(&a.value, &resp.transaction_id.0).unwrap())
        .collect()
}

fn relayed(resp: &Message) -> Vec<SocketAddr> {
    xor_addrs(resp, ATTR_XOR_RELAYED_ADDRESS)
}

fn lifetime(resp: &Message) -> u32 {
    u32::from_be_bytes(resp.get(ATTR_LIFETIME).unwrap().try_into().unwrap())
}

// Authentication (RFC 8489 §9.2.4).

#[test]
fn unauthenticated_allocate_is_challenged() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let check = h
        .auth
        .check_nonce(alice.nonce.as_bytes(), UNIX_START, tuple(1).client);
    assert_eq!(check, NonceCheck::Valid);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert!(h.held().is_empty());
}

#[test]
fn integrity_without_username_realm_or_nonce_is_400() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let fields = [
        (ATTR_USERNAME, "alice"),
        (ATTR_REALM, REALM),
        (ATTR_NONCE, alice.nonce.as_str()),
    ];
    for missing in 0..fields.len() {
        let mut req = Req::allocate();
        for (_, &(typ, text)) in fields.iter().enumerate().filter(|(i, _)| *i != missing) {
            req = req.text(typ, text);
        }
        add_integrity(&mut req.0, &alice.key, Integrity::Sha1);
        assert_error(&h.send(0, alice.tuple, &req.build()), 400);
    }
    assert_eq!(h.mgr.allocation_count(), 0);
}

#[test]
fn forged_or_foreign_nonce_is_438_and_the_fresh_one_works() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let mut forged = alice.clone();
    let last = if forged.nonce.ends_with('0') {
        "1"
    } else {
        "0"
    };
    forged.nonce.replace_range(forged.nonce.len() - 1.., last);
    let fresh = assert_challenge(&h.request(0, &forged, Req::allocate()), 438);
    // A nonce issued to another client address.
    let foreign = Client {
        nonce: h.alice(2).nonce,
        ..alice.clone()
    };
    assert_challenge(&h.request(0, &foreign, Req::allocate()), 438);
    assert_eq!(h.mgr.allocation_count(), 0);
    let retry = Client {
        nonce: fresh,
        ..alice
    };
    h.allocate(0, &retry);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn nonce_older_than_its_lifetime_is_438() {
    let mut h = Setup::default().start();
    let mut alice = h.alice(1);
    alice.nonce = assert_challenge(&h.request(601, &alice, Req::allocate()), 438);
    assert_eq!(h.mgr.allocation_count(), 0);
    h.allocate(601, &alice);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn bad_credentials_are_401() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let wrong_password = long_term_key("alice", REALM, "looking-glass");
    let wrong_password = Client {
        key: wrong_password,
        ..alice.clone()
    };
    let mallory = long_term_key("mallory", REALM, "wonderland");
    let unknown_user = Client {
        user: "mallory".into(),
        key: mallory,
        ..alice.clone()
    };
    let evil = long_term_key("alice", "evil.org", "wonderland");
    let wrong_realm = Client {
        realm: "evil.org".into(),
        key: evil,
        ..alice.clone()
    };
    for client in [wrong_password, unknown_user, wrong_realm] {
        assert_challenge(&h.request(0, &client, Req::allocate()), 401);
    }
    let mut corrupted = alice.sign(Req::allocate());
    *corrupted.0.raw.last_mut().unwrap() ^= 1; // the last byte of MESSAGE-INTEGRITY
    assert_challenge(&h.send(0, alice.tuple, &corrupted.build()), 401);
    assert_eq!(h.mgr.allocation_count(), 0);
    assert_eq!(h.quotas.total(), 0);
}

#[test]
fn rest_credentials_allocate_until_they_expire() {
    let mut h = Setup::default().start();
    let (user, pass) = h.auth.mint_rest(Some("carol"), UNIX_START, 60).unwrap();
    let carol = h.login(0, tuple(1), &user, &pass);
    h.allocate(0, &carol);
    // Past the expiry in the username the allocation can no longer be refreshed.
    assert_challenge(&h.request(120, &carol, Req::refresh(600)), 401);
    assert_eq!(h.mgr.allocation_count(), 1);

    let (user, pass) = h
        .auth
        .mint_rest(Some("dave"), UNIX_START - 7200, 3600)
        .unwrap();
    let dave = h.login(0, tuple(2), &user, &pass);
    assert_challenge(&h.request(0, &dave, Req::allocate()), 401);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn sha256_integrity_is_answered_in_kind() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let mut req = (Req::allocate().text(ATTR_USERNAME, "alice"))
        .text(ATTR_REALM, REALM)
        .text(ATTR_NONCE, &alice.nonce);
    add_integrity(&mut req.0, &alice.key, Integrity::Sha256);
    let resp = h.send(0, alice.tuple, &req.build());
    assert_eq!(resp.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(verify_integrity(&resp, &alice.key), Ok(Integrity::Sha256));
}

// Allocate (RFC 8656 §7).

#[test]
fn allocate_answers_relay_lifetime_and_mapped_address() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Req::allocate());
    assert_eq!(relayed(&resp), [SocketAddr::new(ADVERTISED_V4, 50000)]);
    assert_eq!(lifetime(&resp), 600);
    assert_eq!(
        xor_addrs(&resp, ATTR_XORMAPPED_ADDRESS),
        [alice.tuple.client]
    );
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
        let resp = h.ok(0, &client, Req::allocate().lifetime(asked));
        assert_eq!(lifetime(&resp), granted, "asked {asked}");
    }
}

#[test]
fn retransmitted_allocate_is_answered_again_and_a_new_one_is_437() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let raw = alice.sign(Req::allocate()).build();
    let first = h.send(0, alice.tuple, &raw);
    assert_success(&first, &alice.key);
    let again = h.send(1, alice.tuple, &raw);
    assert_success(&again, &alice.key);
    assert_eq!(relayed(&again), relayed(&first));
    let mapped = ATTR_XORMAPPED_ADDRESS;
    assert_eq!(xor_addrs(&again, mapped), xor_addrs(&first, mapped));
    assert_eq!(lifetime(&again), 599);
    h.refused(1, &alice, Req::allocate(), 437);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 1));
    assert_eq!(h.held(), [relay(50000)]);
}

#[test]
fn retransmitted_allocate_repeats_the_reservation_token() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let raw = alice.sign(Req::allocate().even_port(true)).build();
    let first = h.send(0, alice.tuple, &raw);
    let again = h.send(1, alice.tuple, &raw);
    assert_success(&again, &alice.key);
    let token = first.get(ATTR_RESERVATION_TOKEN).unwrap();
    assert_eq!(again.get(ATTR_RESERVATION_TOKEN).ok(), Some(token));
}

#[test]
fn requested_transport_must_be_udp() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Req::new(METHOD_ALLOCATE), 400);
    h.refused(0, &alice, Req::new(METHOD_ALLOCATE).transport(6), 442);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
    assert!(h.held().is_empty());
}

#[test]
fn unknown_comprehension_required_attribute_is_420() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let req = Req::allocate()
        .attr(AttrType(0x7777), &[1; 4])
        .attr(AttrType(0x8777), &[1; 4]);
    let resp = h.request(0, &alice, req);
    assert_error(&resp, 420);
    let mut unknown = UnknownAttributes(Vec::new());
    unknown.get_from(&resp).unwrap();
    assert_eq!(unknown.0, [AttrType(0x7777)]);
    assert_eq!(h.mgr.allocation_count(), 0);
}

#[test]
fn another_user_on_the_same_tuple_is_441() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    let bob = h.bob(1);
    h.refused(10, &bob, Req::refresh(0), 441);
    h.refused(10, &bob, Req::allocate(), 441);
    assert_eq!(h.mgr.allocation_count(), 1);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(600)));
}

// Address families (RFC 8656 §7.2, §18.11, §18.12).

#[test]
fn ipv6_or_unknown_family_without_a_relay_is_440() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Req::allocate().family(2), 440);
    h.refused(0, &alice, Req::allocate().family(3), 440);
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Req::allocate().family(3), 440);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
}

#[test]
fn ipv6_family_gets_the_ipv6_relay() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Req::allocate().family(2));
    assert_eq!(relayed(&resp), [SocketAddr::new(ADVERTISED_V6, 50000)]);
    assert_eq!(h.held(), [SocketAddr::new(RELAY_V6, 50000)]);
}

#[test]
fn additional_family_gives_a_dual_allocation() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Req::allocate().additional_family(2));
    let (ipv4, ipv6) = (ADVERTISED_V4, ADVERTISED_V6);
    let both = [SocketAddr::new(ipv4, 50000), SocketAddr::new(ipv6, 50000)];
    assert_eq!(relayed(&resp), both);
    assert!(!resp.contains(ATTR_ADDRESS_ERROR_CODE));

    let mut h = Setup::default().start();
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Req::allocate().additional_family(2));
    assert_eq!(relayed(&resp), [SocketAddr::new(ADVERTISED_V4, 50000)]);
    // Family IPv6, class 4, number 40: 440 Address Family not Supported.
    assert_eq!(resp.get(ATTR_ADDRESS_ERROR_CODE).unwrap(), [2, 0, 4, 40]);
}

#[test]
fn conflicting_family_attributes_are_400() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    h.refused(
        0,
        &alice,
        Req::allocate().family(1).additional_family(2),
        400,
    );
    h.refused(0, &alice, Req::allocate().additional_family(1), 400);
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
    let resp = h.ok(0, &other, Req::allocate().even_port(false));
    assert_eq!(relayed(&resp), [SocketAddr::new(ADVERTISED_V4, 50002)]);
    assert!(!resp.contains(ATTR_RESERVATION_TOKEN));
    assert_eq!(h.held(), [relay(50001), relay(50002)]);
}

/// Alice allocates with EVEN-PORT R: returns the token.
fn reserve(h: &mut Harness) -> Vec<u8> {
    let alice = h.alice(1);
    let resp = h.ok(0, &alice, Req::allocate().even_port(true));
    assert_eq!(relayed(&resp), [SocketAddr::new(ADVERTISED_V4, 50002)]);
    let token = resp.get(ATTR_RESERVATION_TOKEN).unwrap();
    assert_eq!(token.len(), 8);
    assert_eq!(h.held(), [relay(50002), relay(50003)]);
    token
}

#[test]
fn reservation_token_claims_the_next_port_once() {
    let mut h = odd_first().start();
    let token = reserve(&mut h);
    let bob = h.bob(2);
    let resp = h.ok(5, &bob, Req::allocate().token(&token));
    assert_eq!(relayed(&resp), [SocketAddr::new(ADVERTISED_V4, 50003)]);
    let carol = h.alice(3);
    h.refused(5, &carol, Req::allocate().token(&token), 508);
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
    h.refused(0, &bob, Req::allocate().even_port(false).token(&token), 400);
    h.refused(0, &bob, Req::allocate().token(&[7; 8]), 508);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 1));
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
    h.refused(31, &bob, Req::allocate().token(&token), 508);
    assert_eq!(h.allocate(31, &bob).port(), 50001);
}

// Refresh (RFC 8656 §8).

#[test]
fn refresh_extends_the_lifetime() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    assert_eq!(lifetime(&h.ok(500, &alice, Req::refresh(1200))), 1200);
    h.expire(600);
    assert_eq!(h.mgr.allocation_count(), 1, "refreshed until 1700");
    let resp = h.ok(590, &alice, Req::new(METHOD_REFRESH));
    assert_eq!(lifetime(&resp), 600);
    h.refused(590, &alice, Req::refresh(600).family(2), 443);
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
    assert_eq!(lifetime(&h.ok(10, &alice, Req::refresh(30))), 600);
    h.expire(41);
    assert_eq!(h.mgr.allocation_count(), 1);
}

#[test]
fn refresh_to_zero_deletes_and_frees_the_port() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.allocate(0, &alice);
    h.ok(0, &alice, Req::permission(&[PEER_A]));
    assert_eq!(lifetime(&h.ok(10, &alice, Req::refresh(0))), 0);
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (0, 0));
    assert!(h.held().is_empty());
    assert_eq!(h.route(10, relay(50000), PEER_A), None);
    h.refused(10, &alice, Req::new(METHOD_REFRESH), 437);
    // The stale timers find nothing to do (and release nothing twice).
    h.expire(10_000);
    assert!(h.held().is_empty());
}

#[test]
fn refresh_without_allocation_is_437() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Req::refresh(600), 437);
    assert_eq!(h.mgr.allocation_count(), 0);
}

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
    h.ok(0, &alice, Req::permission(&[PEER_A]));
    assert_eq!(h.route(0, relay(50000), PEER_A), to_alice);
    // Permissions are per IP: any port of the peer gets through.
    assert_eq!(h.route(0, relay(50000), sa("192.0.2.10:1")), to_alice);
    assert_eq!(h.route(0, relay(50000), PEER_B), None);
    h.ok(0, &alice, Req::permission(&[PEER_B, PEER_C]));
    assert_eq!(h.route(0, relay(50000), PEER_B), to_alice);
    assert_eq!(h.route(0, relay(50000), PEER_C), to_alice);
    assert_eq!(h.route(0, relay(50001), PEER_C), None, "not a relay");
}

#[test]
fn create_permission_errors() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Req::permission(&[PEER_A]), 437);
    h.allocate(0, &alice);
    h.refused(0, &alice, Req::permission(&[]), 400);
    // An IPv6 peer on an IPv4-only allocation, alone or after a good peer.
    h.refused(0, &alice, Req::permission(&[PEER_V6]), 443);
    h.refused(0, &alice, Req::permission(&[PEER_A, PEER_V6]), 443);
    // A disguised IPv4 loopback is an IPv6 peer here: refused too.
    h.refused(
        0,
        &alice,
        Req::permission(&[sa("[::ffff:127.0.0.1]:5000")]),
        443,
    );
    assert_eq!(h.route(0, relay(50000), PEER_A), None);
}

#[test]
fn create_permission_to_a_forbidden_peer_is_403_and_installs_nothing() {
    let mut h = Setup::dual().start();
    let alice = h.alice(1);
    h.ok(0, &alice, Req::allocate().additional_family(2));
    let relay_v6 = SocketAddr::new(RELAY_V6, 50000);
    for forbidden in [
        "10.0.0.1:5000",
        "169.254.169.254:80",
        "[::ffff:127.0.0.1]:5000",
    ] {
        let req = Req::permission(&[PEER_A, PEER_V6, sa(forbidden)]);
        h.refused(0, &alice, req, 403);
        assert_eq!(h.route(0, relay(50000), PEER_A), None, "{forbidden}");
        assert_eq!(h.route(0, relay_v6, PEER_V6), None, "{forbidden}");
    }
    h.ok(0, &alice, Req::permission(&[PEER_A, PEER_V6]));
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
    h.ok(0, &alice, Req::permission(&[sa("127.0.0.1:9")]));
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
        h.ok(0, &alice, Req::bind(number, peer));
        assert_eq!(h.channel(0, &alice, number), Some((relay(50000), peer)));
    }
    let fifth = sa("192.0.2.12:5000");
    for number in [0x3FFF, 0x8000, 0xFFFF, 0] {
        h.refused(0, &alice, Req::bind(number, fifth), 400);
    }
    let no_peer = Req::new(METHOD_CHANNEL_BIND).attr(ATTR_CHANNEL_NUMBER, &[0x40, 1, 0, 0]);
    h.refused(0, &alice, no_peer, 400);
    assert_eq!(h.route(0, relay(50000), fifth), None);
}

#[test]
fn a_channel_has_one_peer_and_a_peer_one_channel() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    h.refused(0, &alice, Req::bind(0x4000, PEER_A), 437);
    h.allocate(0, &alice);
    h.ok(0, &alice, Req::bind(0x4000, PEER_A));
    h.refused(0, &alice, Req::bind(0x4000, PEER_B), 400);
    h.refused(0, &alice, Req::bind(0x4001, PEER_A), 400);
    h.ok(1, &alice, Req::bind(0x4000, PEER_A)); // a refresh
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
    h.ok(0, &alice, Req::bind(0x4000, PEER_A));
    let channel = Some(PeerRoute {
        client: alice.tuple,
        channel: Some(0x4000),
    });
    assert_eq!(h.route(0, relay(50000), PEER_A), channel);
    // Same IP, other port: permitted, but not on the channel.
    let other_port = h.route(0, relay(50000), sa("192.0.2.10:5001")).unwrap();
    assert_eq!(other_port.channel, None);
    for forbidden in [sa("10.0.0.1:5000"), sa("127.0.0.1:5000"), SERVER] {
        h.refused(0, &alice, Req::bind(0x4001, forbidden), 403);
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
    h.ok(0, &alice, Req::permission(&[PEER_A, SERVER]));
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
    h.ok(0, &alice, Req::permission(&[PEER_A]));
    assert_eq!(
        h.route(0, relay(50001), PEER_A),
        None,
        "bob has no permission"
    );
    h.ok(0, &bob, Req::bind(0x4000, PEER_A));
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
    h.ok(0, &alice, Req::permission(&[PEER_A]));
    h.ok(0, &alice, Req::bind(0x4000, PEER_B));
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
    h.ok(0, &alice, Req::allocate().lifetime(3600));
    h.ok(0, &alice, Req::bind(0x4000, PEER_A));
    // Keep the permission alive on its own, past the channel's expiry.
    h.ok(250, &alice, Req::permission(&[PEER_A]));
    h.ok(500, &alice, Req::permission(&[PEER_A]));
    h.expire(599);
    assert_eq!(h.channel(599, &alice, 0x4000), Some((relay(50000), PEER_A)));
    h.expire(600);
    assert_eq!(h.channel(600, &alice, 0x4000), None);
    let route = h.route(600, relay(50000), PEER_A).unwrap();
    assert_eq!(route.channel, None, "data indications from now on");
    let state = &h.mgr.allocations[&alice.tuple];
    assert!(state.channels.is_empty() && state.channel_by_peer.is_empty());
    // Both the number and the peer are free again.
    h.ok(600, &alice, Req::bind(0x4000, PEER_B));
    h.ok(600, &alice, Req::bind(0x4001, PEER_A));
}

#[test]
fn allocation_expires_after_600s_and_frees_everything() {
    let mut h = Setup::default().start();
    let alice = h.alice(1);
    assert_eq!(h.mgr.poll_timeout(), None);
    h.allocate(0, &alice);
    h.ok(10, &alice, Req::permission(&[PEER_B]));
    h.ok(20, &alice, Req::bind(0x4000, PEER_A));
    // Due: permission B 310, permission A 320, allocation 600, channel 620.
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(310)));
    h.expire(310);
    assert_eq!(h.mgr.poll_timeout(), Some(h.at(320)));
    h.ok(315, &alice, Req::permission(&[PEER_A]));
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
        h.ok(1, &alice, Req::permission(&[PEER_A]));
    }
    assert!(
        h.mgr.timers.len() <= 4,
        "{} timer entries",
        h.mgr.timers.len()
    );
}

// Quotas, port exhaustion and close.

#[test]
fn user_quota_is_486() {
    let mut h = Setup {
        quotas: Quotas::new(1, 0),
        ..Setup::default()
    }
    .start();
    let (first, second, bob) = (h.alice(1), h.alice(2), h.bob(3));
    h.allocate(0, &first);
    h.refused(0, &second, Req::allocate(), 486);
    h.allocate(0, &bob);
    assert_eq!(h.held(), [relay(50000), relay(50001)]);
    h.ok(1, &first, Req::refresh(0));
    h.allocate(1, &second);
    assert_eq!(h.quotas.total(), 2);
}

#[test]
fn total_quota_is_508() {
    let mut h = Setup {
        quotas: Quotas::new(0, 2),
        ..Setup::default()
    }
    .start();
    let clients = [h.alice(1), h.alice(2), h.bob(3)];
    h.allocate(0, &clients[0]);
    h.allocate(0, &clients[1]);
    h.refused(0, &clients[2], Req::allocate(), 508);
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
    h.refused(0, &clients[2], Req::allocate(), 508);
    assert_eq!(
        h.quotas.total(),
        2,
        "the refused allocation gave its quota back"
    );
    h.ok(1, &clients[0], Req::refresh(0));
    assert_eq!(h.allocate(1, &clients[2]).port(), 50000);
    assert_eq!(h.mgr.allocation_count(), 2);
}

#[test]
fn close_deletes_the_allocation_and_releases_its_port() {
    let mut h = Setup::default().start();
    let (alice, other) = (h.alice(1), h.alice(2));
    h.allocate(0, &alice);
    h.allocate(0, &other);
    h.ok(0, &alice, Req::permission(&[PEER_A]));
    h.mgr.close(alice.tuple);
    h.mgr.close(tuple(9)); // no allocation: nothing happens
    assert_eq!((h.mgr.allocation_count(), h.quotas.total()), (1, 1));
    assert_eq!(h.held(), [relay(50001)]);
    assert_eq!(h.route(0, relay(50000), PEER_A), None);
    h.mgr.close(alice.tuple); // twice: nothing released twice
    h.expire(10_000);
    assert!(h.held().is_empty(), "the other one expired");
}
