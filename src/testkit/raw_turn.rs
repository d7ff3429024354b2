//! [`RawTurn`]: a deliberately naive TURN client over a blocking UDP socket, for tests that
//! must send what a careful client never would: CreatePermission and ChannelBind to forbidden
//! peers, Send indications and ChannelData without a permission. Long-term credentials
//! (RFC 8489 §9.2) through [`crate::client::Client`], one request at a time; anything else
//! that arrives meanwhile (Data indications, ChannelData) is kept, so no relayed packet goes
//! unseen.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use stun::message::Message;

use crate::client::{Client, Inbound, Request, Response, channel_data, parse_inbound};
use crate::stun::codec::decode_into;
use crate::turn::attrs::FAMILY_IPV6;
use crate::turn::ticket::ATTR_MOBILITY_TICKET;

/// How long one request waits for its response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Something relayed to the client: who sent it (or on which channel) and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// A Data indication from `peer`.
    Data {
        /// XOR-PEER-ADDRESS of the indication.
        peer: SocketAddr,
        /// Its DATA.
        data: Vec<u8>,
    },
    /// ChannelData on `channel`.
    Channel {
        /// The channel number.
        channel: u16,
        /// The payload.
        data: Vec<u8>,
    },
}

/// One client with one allocation.
pub struct RawTurn {
    socket: UdpSocket,
    client: Client,
    /// Relayed packets that arrived while a response was awaited.
    relayed: VecDeque<Relayed>,
    /// The relay addresses the Allocate returned: IPv4 first, then IPv6 if asked and given.
    pub relays: Vec<SocketAddr>,
    /// The MOBILITY-TICKET (RFC 8016) of the last success that carried one.
    pub ticket: Option<Vec<u8>>,
}

impl RawTurn {
    /// Allocates on `server` from a fresh socket on 127.0.0.1; with `dual`, asks for an IPv6
    /// relay too. Panics unless the Allocate succeeds.
    pub fn allocate(server: SocketAddr, user: &str, pass: &str, dual: bool) -> RawTurn {
        Self::try_allocate(server, user, pass, dual)
            .unwrap_or_else(|r| panic!("authenticated Allocate: {r:?}"))
    }

    /// As [`Self::allocate`], but a refused authenticated Allocate returns its error response,
    /// whole (to check its MESSAGE-INTEGRITY, say).
    pub fn try_allocate(
        server: SocketAddr,
        user: &str,
        pass: &str,
        dual: bool,
    ) -> Result<RawTurn, Message> {
        let mut allocate = Request::allocate();
        if dual {
            allocate = allocate.additional_family(FAMILY_IPV6);
        }
        Self::try_allocate_with(server, user, pass, &allocate)
    }

    /// As [`Self::try_allocate`], with the Allocate request given (EVEN-PORT, say).
    pub fn try_allocate_with(
        server: SocketAddr,
        user: &str,
        pass: &str,
        allocate: &Request,
    ) -> Result<RawTurn, Message> {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::try_allocate_from(local, server, user, pass, allocate)
    }

    /// As [`Self::try_allocate_with`], from a socket bound to `local` (in the network
    /// namespace of the calling thread, where the socket stays).
    pub fn try_allocate_from(
        local: SocketAddr,
        server: SocketAddr,
        user: &str,
        pass: &str,
        allocate: &Request,
    ) -> Result<RawTurn, Message> {
        let mut turn = Self::login_from(local, server, user, pass, allocate);
        let mut m = turn.exchange_message(allocate);
        if read(&m).code() == 438 {
            assert!(
                turn.client.handle_challenge(&read(&m)),
                "438 with a new NONCE"
            );
            m = turn.exchange_message(allocate);
        }
        let response = read(&m);
        if !response.is_success() {
            return Err(m);
        }
        turn.relays = response.relayed;
        turn.keep_ticket(&m);
        Ok(turn)
    }

    /// A client of `user` on a fresh socket on 127.0.0.1 with the server's REALM and NONCE
    /// (its unauthenticated Allocate got 401), and no allocation.
    pub fn login(server: SocketAddr, user: &str, pass: &str) -> RawTurn {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::login_from(local, server, user, pass, &Request::allocate())
    }

    fn login_from(
        local: SocketAddr,
        server: SocketAddr,
        user: &str,
        pass: &str,
        probe: &Request,
    ) -> RawTurn {
        let socket = UdpSocket::bind(local).expect("bind client");
        socket.connect(server).expect("connect");
        let mut turn = RawTurn {
            socket,
            client: Client::new(user, pass),
            relayed: VecDeque::new(),
            relays: Vec::new(),
            ticket: None,
        };
        // The first request has no credentials: its 401 brings REALM and NONCE.
        let challenge = turn.exchange(probe);
        assert_eq!(challenge.code(), 401, "unauthenticated {}", probe.method());
        assert!(
            turn.client.handle_challenge(&challenge),
            "401 with REALM and NONCE"
        );
        turn
    }

    /// The client's address changes (RFC 8016): from now on it talks from a fresh socket on
    /// 127.0.0.1 (a new source port). Returns the old socket, still open.
    pub fn new_socket(&mut self) -> UdpSocket {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).expect("bind client");
        socket.connect(self.server()).expect("connect");
        std::mem::replace(&mut self.socket, socket)
    }

    /// Sends from `socket` from now on (connected here to the server); returns the old one.
    pub fn use_socket(&mut self, socket: UdpSocket) -> UdpSocket {
        socket.connect(self.server()).expect("connect");
        std::mem::replace(&mut self.socket, socket)
    }

    /// A Refresh carrying `ticket` as MOBILITY-TICKET (RFC 8016 §3.2): 0 on success (the
    /// new ticket is kept in [`Self::ticket`]), else the error code.
    pub fn refresh_with_ticket(&mut self, ticket: &[u8]) -> u16 {
        let refresh = Request::refresh(600).attr(ATTR_MOBILITY_TICKET, ticket);
        let mut m = self.exchange_message(&refresh);
        if read(&m).code() == 438 && self.client.handle_challenge(&read(&m)) {
            m = self.exchange_message(&refresh);
        }
        self.keep_ticket(&m);
        read(&m).code()
    }

    /// Keeps the MOBILITY-TICKET of a success response.
    fn keep_ticket(&mut self, m: &Message) {
        if let Some(ticket) = crate::turn::attrs::value(m, ATTR_MOBILITY_TICKET)
            && read(m).is_success()
        {
            self.ticket = Some(ticket.to_vec());
        }
    }

    /// The server address this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.socket.peer_addr().expect("connected")
    }

    /// CreatePermission for `peer`'s IP: 0 on success, else the error code.
    pub fn create_permission(&mut self, peer: SocketAddr) -> u16 {
        self.request(&Request::create_permission(&[peer])).code()
    }

    /// ChannelBind of `channel` to `peer`: 0 on success, else the error code.
    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> u16 {
        self.request(&Request::channel_bind(channel, peer)).code()
    }

    /// A Send indication of `data` to `peer` (indications get no answer).
    pub fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let m = (self.client.request(&Request::send(peer, data))).expect("indication builds");
        self.socket.send(&m.raw).expect("send indication");
    }

    /// A ChannelData message of `data` on `channel`.
    pub fn channel_data(&self, channel: u16, data: &[u8]) {
        let frame = channel_data(channel, data).expect("short");
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
    pub fn request(&mut self, request: &Request) -> Response {
        for _ in 0..2 {
            let r = self.exchange(request);
            if r.code() != 438 || !self.client.handle_challenge(&r) {
                return r;
            }
        }
        panic!("{} kept getting 438 Stale Nonce", request.method());
    }

    /// Sends `request` as the client builds it now and reads the response.
    fn exchange(&mut self, request: &Request) -> Response {
        read(&self.exchange_message(request))
    }

    /// Sends `request` as the client builds it now, returns the response with its
    /// transaction ID; relayed packets that arrive first are kept for [`Self::next_relayed`].
    fn exchange_message(&mut self, request: &Request) -> Message {
        let m = self.client.request(request).expect("request builds");
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
            if decode_into(&buf[..n], &mut response).is_ok()
                && response.transaction_id == m.transaction_id
                && Response::from_message(&response).is_ok()
            {
                return response;
            }
        }
    }
}

/// The response in `m`, which [`RawTurn::exchange_message`] checked is one.
fn read(m: &Message) -> Response {
    Response::from_message(m).expect("a response")
}

/// A Data indication or ChannelData message, decoded.
fn relayed(bytes: &[u8]) -> Option<Relayed> {
    match parse_inbound(bytes).ok()? {
        Inbound::Data { peer, data } => Some(Relayed::Data { peer, data }),
        Inbound::ChannelData { channel, data } => Some(Relayed::Channel { channel, data }),
        Inbound::Response(_) => None,
    }
}
