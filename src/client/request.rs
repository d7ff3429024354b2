//! [`Request`]: one STUN/TURN request or Send indication and its attributes, kept as values so
//! that the same request can be built again (a retry after a 401 or 438 gets a new transaction
//! ID and the new nonce), then built into wire bytes by [`Request::build`].
//!
//! Attribute order on the wire: the request's own attributes in the order they were added,
//! then USERNAME, REALM, NONCE and MESSAGE-INTEGRITY(-SHA256) when signed, then FINGERPRINT
//! (RFC 8489 §14.5–§14.7). [`Request::after_integrity`] puts attributes between the last two,
//! to test that a server ignores what the integrity does not cover.

use std::net::SocketAddr;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_DATA, ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_RESERVATION_TOKEN, AttrType,
};
use stun::fingerprint::FINGERPRINT;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message, MessageClass, MessageType,
    Method, Setter,
};
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::error::ClientError;
use super::session::Session;
use crate::turn::attrs::{ATTR_ADDITIONAL_ADDRESS_FAMILY, PROTO_UDP};

/// One attribute of a request, as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attr {
    /// REQUESTED-TRANSPORT (RFC 8656 §18.6).
    Transport(u8),
    /// LIFETIME in seconds (RFC 8656 §18.2).
    Lifetime(u32),
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3), the address as given: an IPv4-mapped IPv6
    /// address stays IPv6 on the wire.
    Peer(SocketAddr),
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    Channel(u16),
    /// DATA (RFC 8656 §18.4).
    Data(Vec<u8>),
    /// Any attribute with any value: unknown, duplicate or malformed ones included.
    Raw(AttrType, Vec<u8>),
}

/// A request (or Send indication) to build; see the module docs for the attribute order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    class: MessageClass,
    attrs: Vec<Attr>,
    /// Attributes after MESSAGE-INTEGRITY, which it does not cover.
    after_integrity: Vec<Attr>,
    fingerprint: bool,
}

impl Request {
    /// A request of `method` with no attributes.
    pub fn new(method: Method) -> Request {
        Request {
            method,
            class: CLASS_REQUEST,
            attrs: Vec::new(),
            after_integrity: Vec::new(),
            fingerprint: true,
        }
    }

    /// An indication of `method` with no attributes (a Send indication with DATA or
    /// XOR-PEER-ADDRESS left out, say); never signed.
    pub fn indication(method: Method) -> Request {
        Request {
            class: CLASS_INDICATION,
            ..Request::new(method)
        }
    }

    /// A STUN Binding request (RFC 8489 §3); never signed.
    pub fn binding() -> Request {
        Request::new(METHOD_BINDING)
    }

    /// Allocate of a UDP relay (RFC 8656 §7.1).
    pub fn allocate() -> Request {
        Request::new(METHOD_ALLOCATE).transport(PROTO_UDP)
    }

    /// Refresh for `lifetime` seconds; 0 deletes the allocation (RFC 8656 §8).
    pub fn refresh(lifetime: u32) -> Request {
        Request::new(METHOD_REFRESH).lifetime(lifetime)
    }

    /// CreatePermission for the IP of every peer (RFC 8656 §9).
    pub fn create_permission(peers: &[SocketAddr]) -> Request {
        let req = Request::new(METHOD_CREATE_PERMISSION);
        peers.iter().fold(req, |req, &peer| req.peer(peer))
    }

    /// ChannelBind of `channel` to `peer` (RFC 8656 §11).
    pub fn channel_bind(channel: u16, peer: SocketAddr) -> Request {
        Request::new(METHOD_CHANNEL_BIND)
            .channel(channel)
            .peer(peer)
    }

    /// A Send indication of `data` to `peer` (RFC 8656 §10); indications are never signed.
    pub fn send(peer: SocketAddr, data: &[u8]) -> Request {
        Request::indication(METHOD_SEND).peer(peer).data(data)
    }

    /// The method of the request.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Whether this is an indication (no response, never signed).
    pub fn is_indication(&self) -> bool {
        self.class == CLASS_INDICATION
    }

    /// Whether [`crate::client::Client`] signs it: requests other than Binding.
    pub fn wants_credentials(&self) -> bool {
        self.class == CLASS_REQUEST && self.method != METHOD_BINDING
    }

    /// Adds REQUESTED-TRANSPORT with this protocol number.
    pub fn transport(self, protocol: u8) -> Request {
        self.with(Attr::Transport(protocol))
    }

    /// Adds LIFETIME in seconds.
    pub fn lifetime(self, secs: u32) -> Request {
        self.with(Attr::Lifetime(secs))
    }

    /// Adds an XOR-PEER-ADDRESS.
    pub fn peer(self, peer: SocketAddr) -> Request {
        self.with(Attr::Peer(peer))
    }

    /// Adds CHANNEL-NUMBER.
    pub fn channel(self, channel: u16) -> Request {
        self.with(Attr::Channel(channel))
    }

    /// Adds DATA.
    pub fn data(self, data: &[u8]) -> Request {
        self.with(Attr::Data(data.to_vec()))
    }

    /// Adds REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.10): 0x01 IPv4, 0x02 IPv6.
    pub fn family(self, family: u8) -> Request {
        self.attr(ATTR_REQUESTED_ADDRESS_FAMILY, &[family, 0, 0, 0])
    }

    /// Adds ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): a second relay of this family.
    pub fn additional_family(self, family: u8) -> Request {
        self.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[family, 0, 0, 0])
    }

    /// Adds EVEN-PORT (RFC 8656 §18.8), with the R bit if `reserve_next`.
    pub fn even_port(self, reserve_next: bool) -> Request {
        self.attr(ATTR_EVEN_PORT, &[if reserve_next { 0x80 } else { 0 }])
    }

    /// Adds RESERVATION-TOKEN (RFC 8656 §18.9).
    pub fn reservation_token(self, token: &[u8]) -> Request {
        self.attr(ATTR_RESERVATION_TOKEN, token)
    }

    /// Adds DONT-FRAGMENT (RFC 8656 §18.7).
    pub fn dont_fragment(self) -> Request {
        self.attr(ATTR_DONT_FRAGMENT, &[])
    }

    /// Adds any attribute with any value, as given.
    pub fn attr(self, typ: AttrType, value: &[u8]) -> Request {
        self.with(Attr::Raw(typ, value.to_vec()))
    }

    /// Adds a text attribute (SOFTWARE, or USERNAME, REALM and NONCE set by hand to test a
    /// server's checks), as given.
    pub fn text(self, typ: AttrType, text: &str) -> Request {
        self.attr(typ, text.as_bytes())
    }

    /// Leaves FINGERPRINT out.
    pub fn without_fingerprint(mut self) -> Request {
        self.fingerprint = false;
        self
    }

    /// Adds the attributes `f` adds to an empty request after MESSAGE-INTEGRITY (and before
    /// FINGERPRINT), where the integrity does not cover them: what an on-path attacker could
    /// append to a signed request. A server must ignore them (RFC 8489 §14.5); unsigned, they
    /// simply follow the request's own attributes.
    pub fn after_integrity(mut self, f: impl FnOnce(Request) -> Request) -> Request {
        let extra = f(Request::new(self.method));
        self.after_integrity.extend(extra.attrs);
        self
    }

    fn with(mut self, attr: Attr) -> Request {
        self.attrs.push(attr);
        self
    }

    /// The message with transaction ID `id`, signed with `session`'s credentials if given.
    pub fn build(
        &self,
        id: TransactionId,
        session: Option<&Session>,
    ) -> Result<Message, ClientError> {
        let mut m = Message::new();
        m.typ = MessageType::new(self.method, self.class);
        m.transaction_id = id;
        m.write_header();
        for attr in &self.attrs {
            add(&mut m, attr)?;
        }
        if let Some(s) = session {
            s.sign(&mut m)?;
        }
        for attr in &self.after_integrity {
            add(&mut m, attr)?;
        }
        if self.fingerprint {
            FINGERPRINT
                .add_to(&mut m)
                .map_err(|_| ClientError::Encode("FINGERPRINT"))?;
        }
        Ok(m)
    }
}

fn add(m: &mut Message, attr: &Attr) -> Result<(), ClientError> {
    let done = match attr {
        Attr::Transport(protocol) => RequestedTransport {
            protocol: turn::proto::Protocol(*protocol),
        }
        .add_to(m),
        Attr::Lifetime(secs) => Lifetime(Duration::from_secs(u64::from(*secs))).add_to(m),
        Attr::Peer(peer) => PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to(m),
        Attr::Channel(channel) => ChannelNumber(*channel).add_to(m),
        Attr::Data(data) => {
            m.add(ATTR_DATA, data);
            Ok(())
        }
        Attr::Raw(typ, value) => {
            m.add(*typ, value);
            Ok(())
        }
    };
    done.map_err(|_| ClientError::Encode(name(attr)))
}

fn name(attr: &Attr) -> &'static str {
    match attr {
        Attr::Transport(_) => "REQUESTED-TRANSPORT",
        Attr::Lifetime(_) => "LIFETIME",
        Attr::Peer(_) => "XOR-PEER-ADDRESS",
        Attr::Channel(_) => "CHANNEL-NUMBER",
        Attr::Data(_) => "DATA",
        Attr::Raw(..) => "an attribute",
    }
}
