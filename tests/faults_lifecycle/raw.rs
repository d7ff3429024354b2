//! A bare TURN client that does only what a test tells it: Allocate (with the 401 round
//! trip of long-term credentials) and Refresh, over UDP or TCP, and nothing on its own — no
//! refresh timer, no Refresh 0 on drop. That is what a client that vanishes looks like; the
//! `turn` crate's client, which refreshes by itself, cannot play it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use stun::agent::TransactionId;
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_REQUEST, Getter, METHOD_ALLOCATE, METHOD_REFRESH, Message, MessageType, Setter,
};
use stun::textattrs::{Nonce, Realm, TextAttribute, Username};
use turn::proto::PROTO_UDP;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::common::*;

/// How the client reaches the server.
pub(crate) enum Link {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// One client 5-tuple with long-term credentials.
pub(crate) struct RawClient {
    pub(crate) link: Link,
    user: String,
    pass: String,
    realm: String,
    nonce: Vec<u8>,
}

/// What the server answered: success, or the error code.
pub(crate) type Answer = Result<Message, u16>;

impl RawClient {
    /// A client on a fresh UDP socket.
    pub(crate) fn udp(server: SocketAddr, user: &str, pass: &str) -> Self {
        Self::new(Link::Udp(udp_client(server)), user, pass)
    }

    /// A client on a fresh TCP connection.
    pub(crate) fn tcp(server: SocketAddr, user: &str, pass: &str) -> Self {
        Self::new(Link::Tcp(tcp_client(server)), user, pass)
    }

    fn new(link: Link, user: &str, pass: &str) -> Self {
        Self {
            link,
            user: user.to_owned(),
            pass: pass.to_owned(),
            realm: String::new(),
            nonce: Vec::new(),
        }
    }

    /// Allocates a UDP relay; `lifetime` is asked for when given. Returns the relayed
    /// address and the lifetime granted, or the error code.
    pub(crate) fn allocate(
        &mut self,
        lifetime: Option<Duration>,
    ) -> Result<(SocketAddr, Duration), u16> {
        let mut extra: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })];
        if let Some(l) = lifetime {
            extra.push(Box::new(Lifetime(l)));
        }
        let response = self.request(METHOD_ALLOCATE, extra)?;
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&response).expect("XOR-RELAYED-ADDRESS");
        let granted = Self::lifetime_of(&response);
        Ok((SocketAddr::new(relayed.ip, relayed.port), granted))
    }

    /// Refreshes the allocation for `lifetime` (0 deletes it); returns the lifetime granted.
    pub(crate) fn refresh(&mut self, lifetime: Duration) -> Result<Duration, u16> {
        let response = self.request(METHOD_REFRESH, vec![Box::new(Lifetime(lifetime))])?;
        Ok(Self::lifetime_of(&response))
    }

    /// The LIFETIME of a success response.
    fn lifetime_of(response: &Message) -> Duration {
        let mut granted = Lifetime::default();
        granted.get_from(response).expect("LIFETIME");
        granted.0
    }

    /// Sends `bytes` as they are (half a message, say).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(s) => {
                s.send(bytes).expect("send");
            }
            Link::Tcp(s) => s.write_all(bytes).expect("write"),
        }
    }

    /// A request of `method` with `extra` attributes, authenticated once the server has
    /// named its realm and nonce (a 401 or 438 is answered once with fresh ones).
    fn request(&mut self, method: stun::message::Method, extra: Vec<Box<dyn Setter>>) -> Answer {
        let mut extra = Some(extra);
        for _ in 0..3 {
            let attrs = extra.take().unwrap_or_default();
            let request = self.build(method, attrs);
            let response = self.exchange(&request);
            let Some(code) = error_code(&response) else {
                return Ok(response);
            };
            if !(code == 401 || code == 438) || self.retried(&response) {
                return Err(code);
            }
            // The attributes were consumed by the first try: rebuild them.
            extra = Some(rebuild(method, &request));
        }
        panic!("no answer after three rounds of credentials");
    }

    /// Takes realm and nonce from a challenge; `true` if they did not change (so the
    /// credentials themselves were refused).
    fn retried(&mut self, challenge: &Message) -> bool {
        let nonce = TextAttribute::get_from_as(challenge, stun::attributes::ATTR_NONCE);
        let realm = TextAttribute::get_from_as(challenge, stun::attributes::ATTR_REALM);
        let (Ok(nonce), Ok(realm)) = (nonce, realm) else {
            return true;
        };
        let same = nonce.text.as_bytes() == self.nonce && realm.text == self.realm;
        self.nonce = nonce.text.into_bytes();
        self.realm = realm.text;
        same
    }

    fn build(&self, method: stun::message::Method, extra: Vec<Box<dyn Setter>>) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(extra);
        if !self.nonce.is_empty() {
            setters.push(Box::new(Username::new(
                stun::attributes::ATTR_USERNAME,
                self.user.clone(),
            )));
            setters.push(Box::new(Realm::new(
                stun::attributes::ATTR_REALM,
                self.realm.clone(),
            )));
            setters.push(Box::new(Nonce::new(
                stun::attributes::ATTR_NONCE,
                String::from_utf8(self.nonce.clone()).expect("nonce is text"),
            )));
            setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
                self.user.clone(),
                self.realm.clone(),
                self.pass.clone(),
            )));
        }
        let mut m = Message::new();
        m.build(&setters).expect("request builds");
        m
    }

    fn exchange(&mut self, request: &Message) -> Message {
        match &mut self.link {
            Link::Udp(s) => udp_exchange(s, request),
            Link::Tcp(s) => tcp_exchange(s, request),
        }
    }
}

/// The attributes a request of `method` carried besides credentials, for a second try.
fn rebuild(method: stun::message::Method, request: &Message) -> Vec<Box<dyn Setter>> {
    let mut out: Vec<Box<dyn Setter>> = Vec::new();
    if method == METHOD_ALLOCATE {
        out.push(Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        }));
    }
    let mut lifetime = Lifetime::default();
    if lifetime.get_from(request).is_ok() {
        out.push(Box::new(lifetime));
    }
    out
}

/// The ERROR-CODE of an error response, `None` for a success.
fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|()| e.code.0)
}
