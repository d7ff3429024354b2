//! What the fault tests (bypass_matrix, dual_relay, flood) share besides `common`.
//!
//! [`RawTurn`]: a deliberately naive TURN client over a blocking UDP socket, for tests that
//! must send what a careful client never would: CreatePermission and ChannelBind to forbidden
//! peers, Send indications and ChannelData without a permission. Long-term credentials
//! (RFC 8489 §9.2), one request at a time; anything else that arrives meanwhile (Data
//! indications, ChannelData) is kept, so no relayed packet goes unseen.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use stun::attributes::{
    ATTR_DATA, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
    ATTR_XOR_RELAYED_ADDRESS, AttrType,
};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter,
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_SEND,
    Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

/// How long one request waits for its response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): ask for an IPv6 relay next to the IPv4 one.
const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);

/// Something relayed to the client: who sent it (or on which channel) and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// A Data indication from `peer`.
    Data { peer: SocketAddr, data: Vec<u8> },
    /// ChannelData on `channel`.
    Channel { channel: u16, data: Vec<u8> },
}

/// One client with one allocation.
pub struct RawTurn {
    socket: UdpSocket,
    username: String,
    realm: String,
    nonce: String,
    integrity: MessageIntegrity,
    /// Relayed packets that arrived while a response was awaited.
    relayed: VecDeque<Relayed>,
    /// The relay addresses the Allocate returned: IPv4 first, then IPv6 if asked and given.
    pub relays: Vec<SocketAddr>,
}

impl RawTurn {
    /// Allocates on `server` from a fresh socket on 127.0.0.1; with `dual`, asks for an IPv6
    /// relay too. Panics unless the Allocate succeeds.
    pub fn allocate(server: SocketAddr, user: &str, pass: &str, dual: bool) -> RawTurn {
        Self::try_allocate(server, user, pass, dual)
            .unwrap_or_else(|r| panic!("authenticated Allocate: {r}"))
    }

    /// As [`Self::allocate`], but a refused authenticated Allocate returns its error response.
    pub fn try_allocate(
        server: SocketAddr,
        user: &str,
        pass: &str,
        dual: bool,
    ) -> Result<RawTurn, Message> {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        socket.connect(server).expect("connect");
        let mut client = RawTurn {
            socket,
            username: user.to_owned(),
            realm: String::new(),
            nonce: String::new(),
            integrity: MessageIntegrity(Vec::new()),
            relayed: VecDeque::new(),
            relays: Vec::new(),
        };
        // The first Allocate has no credentials: its 401 brings REALM and NONCE.
        let challenge = client.exchange(&client.message(METHOD_ALLOCATE, |m| {
            allocate_attrs(m, dual);
        }));
        assert_eq!(code(&challenge), 401, "unauthenticated Allocate");
        client.realm = text(&challenge, ATTR_REALM);
        client.nonce = text(&challenge, ATTR_NONCE);
        client.integrity = MessageIntegrity::new_long_term_integrity(
            user.to_owned(),
            client.realm.clone(),
            pass.to_owned(),
        );
        let response = client.request(METHOD_ALLOCATE, |m| allocate_attrs(m, dual));
        if code(&response) != 0 {
            return Err(response);
        }
        client.relays = (response.attributes.0.iter())
            .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
            .filter_map(|a| xor_address(&a.value, &response.transaction_id.0))
            .collect();
        Ok(client)
    }

    /// The server address this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.socket.peer_addr().expect("connected")
    }

    /// CreatePermission for `peer`'s IP: 0 on success, else the error code.
    pub fn create_permission(&mut self, peer: SocketAddr) -> u16 {
        let r = self.request(METHOD_CREATE_PERMISSION, |m| add_peer(m, peer));
        code(&r)
    }

    /// ChannelBind of `channel` to `peer`: 0 on success, else the error code.
    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> u16 {
        let r = self.request(METHOD_CHANNEL_BIND, |m| {
            ChannelNumber(channel).add_to(m).expect("channel");
            add_peer(m, peer);
        });
        code(&r)
    }

    /// A Send indication of `data` to `peer` (indications get no answer).
    pub fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let mut m = Message::new();
        m.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
        m.new_transaction_id().expect("transaction id");
        m.write_header();
        add_peer(&mut m, peer);
        Data(data.to_vec()).add_to(&mut m).expect("data");
        FINGERPRINT.add_to(&mut m).expect("fingerprint");
        self.socket.send(&m.raw).expect("send indication");
    }

    /// A ChannelData message of `data` on `channel`.
    pub fn channel_data(&self, channel: u16, data: &[u8]) {
        let mut frame = channel.to_be_bytes().to_vec();
        frame.extend_from_slice(&u16::try_from(data.len()).expect("short").to_be_bytes());
        frame.extend_from_slice(data);
        self.socket.send(&frame).expect("send channel data");
    }

    /// The next relayed packet, waiting up to `wait`.
    pub fn next_relayed(&mut self, wait: Duration) -> Option<Relayed> {
        if let Some(r) = self.relayed.pop_front() {
            return Some(r);
        }
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            let Ok(n) = self.socket.recv(&mut buf) else {
                return None;
            };
            if let Some(r) = relayed(&buf[..n]) {
                return Some(r);
            }
        }
    }

    /// Sends `request` (with credentials, integrity and fingerprint) and returns its response;
    /// a 438 (stale nonce) is retried once with the new nonce.
    pub fn request(&mut self, method: Method, attrs: impl Fn(&mut Message)) -> Message {
        for _ in 0..2 {
            let m = self.signed(method, &attrs);
            let r = self.exchange(&m);
            if code(&r) != 438 {
                return r;
            }
            self.nonce = text(&r, ATTR_NONCE);
        }
        panic!("{method} kept getting 438 Stale Nonce");
    }

    /// A request with `attrs` and nothing else.
    fn message(&self, method: Method, attrs: impl Fn(&mut Message)) -> Message {
        let mut m = Message::new();
        m.typ = MessageType::new(method, CLASS_REQUEST);
        m.new_transaction_id().expect("transaction id");
        m.write_header();
        attrs(&mut m);
        m
    }

    fn signed(&self, method: Method, attrs: &impl Fn(&mut Message)) -> Message {
        let mut m = self.message(method, attrs);
        for (typ, value) in [
            (ATTR_USERNAME, &self.username),
            (ATTR_REALM, &self.realm),
            (ATTR_NONCE, &self.nonce),
        ] {
            TextAttribute::new(typ, value.clone())
                .add_to(&mut m)
                .expect("text attribute");
        }
        self.integrity.add_to(&mut m).expect("integrity");
        FINGERPRINT.add_to(&mut m).expect("fingerprint");
        m
    }

    /// Sends `m`, returns the response with its transaction ID; relayed packets that arrive
    /// first are kept for [`Self::next_relayed`].
    fn exchange(&mut self, m: &Message) -> Message {
        self.socket.send(&m.raw).expect("send request");
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no response to {}", m.typ);
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            if let Some(r) = relayed(&buf[..n]) {
                self.relayed.push_back(r);
                continue;
            }
            let mut response = Message::new();
            if response.unmarshal_binary(&buf[..n]).is_ok()
                && response.transaction_id == m.transaction_id
                && matches!(
                    response.typ.class,
                    CLASS_SUCCESS_RESPONSE | CLASS_ERROR_RESPONSE
                )
            {
                return response;
            }
        }
    }
}

fn allocate_attrs(m: &mut Message, dual: bool) {
    RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    }
    .add_to(m)
    .expect("transport");
    if dual {
        m.add(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[0x02, 0, 0, 0]);
    }
}

/// XOR-PEER-ADDRESS with `peer` as given: an IPv4-mapped IPv6 address stays IPv6 on the wire.
fn add_peer(m: &mut Message, peer: SocketAddr) {
    PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
    .add_to(m)
    .expect("peer address");
}

/// 0 for a success response, else its ERROR-CODE.
pub fn code(m: &Message) -> u16 {
    if m.typ.class == CLASS_SUCCESS_RESPONSE {
        return 0;
    }
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).expect("ERROR-CODE in an error response");
    e.code.0
}

fn text(m: &Message, typ: AttrType) -> String {
    TextAttribute::get_from_as(m, typ)
        .unwrap_or_else(|_| panic!("{typ} in {m}"))
        .text
}

/// A Data indication or ChannelData message, decoded.
fn relayed(bytes: &[u8]) -> Option<Relayed> {
    if (0x40..0x80).contains(bytes.first()?) {
        let channel = u16::from_be_bytes([bytes[0], *bytes.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
        let data = bytes.get(4..4 + len)?.to_vec();
        return Some(Relayed::Channel { channel, data });
    }
    let mut m = Message::new();
    m.unmarshal_binary(bytes).ok()?;
    if m.typ != MessageType::new(METHOD_DATA, CLASS_INDICATION) {
        return None;
    }
    let peer = xor_address(&m.get(ATTR_XOR_PEER_ADDRESS).ok()?, &m.transaction_id.0)?;
    let data = m.get(ATTR_DATA).ok()?;
    Some(Relayed::Data { peer, data })
}

/// An XOR-*-ADDRESS value (RFC 8489 §14.2).
fn xor_address(v: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&stun::message::MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(transaction_id);
    let port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]) ^ 0x2112;
    let raw: Vec<u8> = v.get(4..)?.iter().zip(key).map(|(b, k)| b ^ k).collect();
    let ip = match (v.get(1)?, raw.len()) {
        (1, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(raw).ok()?)),
        (2, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}
