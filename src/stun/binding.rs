//! The STUN Binding responder (RFC 8489 §6.3): bytes and a source address in, a response out.
//!
//! Pure: no sockets, no clock. One [`Responder`] per worker reuses its message buffers, so
//! answering a request does not allocate once the buffers have grown.

use std::net::SocketAddr;

use stun::attributes::*;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_BINDING,
    Message, Setter,
};
use stun::uattrs::UnknownAttributes;

use super::codec::{Malformed, PacketKind, decode_into, packet_kind, unknown_required};
use super::response;
use super::rfc5780::{self, Addresses, Plan};

/// Comprehension-required attributes a Binding request may carry without a 420: the STUN
/// core set (RFC 8489 §14), which this server reads or deliberately ignores, and the ICE
/// attributes (RFC 8445 §16.1) that browsers' connectivity checks carry. CHANGE-REQUEST
/// (RFC 5780) is absent on purpose: without an alternate address, 420 is the answer
/// RFC 5780 §7.2 asks for; with one, [`Responder::answer_udp`] understands it (and
/// RESPONSE-PORT and PADDING) on the four addresses of [`rfc5780`].
const KNOWN_BINDING_ATTRIBUTES: &[AttrType] = &[
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_USER_HASH,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
];

/// Why a well-formed packet got no answer. Counted, never logged per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// An indication (a Binding indication is a keepalive, RFC 8489 §6.3.2).
    Indication,
    /// A success or error response: this server sends no requests.
    Response,
    /// ChannelData with no channel bound to it.
    ChannelData,
}

/// What to do with one received packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Send these bytes back to the source.
    Reply(&'a [u8]),
    /// Well-formed, but nothing to answer.
    Ignored(Ignored),
    /// Not a usable message: drop it and count it.
    Malformed(Malformed),
}

/// Answers Binding requests; one per worker, buffers reused across packets.
pub struct Responder {
    request: Message,
    response: Message,
    unknown: UnknownAttributes,
}

impl Responder {
    /// A responder with empty buffers.
    pub fn new() -> Self {
        Self {
            request: Message::new(),
            response: Message::new(),
            unknown: UnknownAttributes(Vec::new()),
        }
    }

    /// Handles one packet received from `source`.
    pub fn handle(&mut self, packet: &[u8], source: SocketAddr) -> Outcome<'_> {
        match packet_kind(packet) {
            PacketKind::Stun => {}
            PacketKind::ChannelData => return Outcome::Ignored(Ignored::ChannelData),
            PacketKind::Other => return Outcome::Malformed(Malformed::NotStun),
        }
        if let Err(e) = decode_into(packet, &mut self.request) {
            return Outcome::Malformed(e);
        }
        let typ = self.request.typ;
        if typ.class == CLASS_INDICATION {
            return Outcome::Ignored(Ignored::Indication);
        }
        if typ.class != CLASS_REQUEST {
            return Outcome::Ignored(Ignored::Response);
        }
        if typ.method != METHOD_BINDING {
            // RFC 8489 §6.3.1: a request this server cannot process is a 400.
            response::begin(&mut self.response, &self.request, CLASS_ERROR_RESPONSE);
            response::add_error_code(&mut self.response, 400);
            response::finish(&mut self.response, &self.request);
        } else {
            answer(&mut self.response, &mut self.unknown, &self.request, source);
        }
        Outcome::Reply(&self.response.raw)
    }

    /// Refuses a request the caller has already decoded with error `code` (the TURN methods
    /// under `[stun] only`: 403).
    pub fn refuse(&mut self, request: &Message, code: u16) -> &[u8] {
        response::begin(&mut self.response, request, CLASS_ERROR_RESPONSE);
        response::add_error_code(&mut self.response, code);
        response::finish(&mut self.response, request);
        &self.response.raw
    }

    /// Answers a Binding request the caller has already decoded.
    pub fn answer(&mut self, request: &Message, source: SocketAddr) -> &[u8] {
        answer(&mut self.response, &mut self.unknown, request, source);
        &self.response.raw
    }
}

fn answer(
    response: &mut Message,
    unknown: &mut UnknownAttributes,
    request: &Message,
    source: SocketAddr,
) {
    unknown_required(request, KNOWN_BINDING_ATTRIBUTES, &mut unknown.0);
    if unknown.0.is_empty() {
        response::begin(response, request, CLASS_SUCCESS_RESPONSE);
        response::add_xor_address(response, ATTR_XORMAPPED_ADDRESS, source);
    } else {
        // RFC 8489 §6.3.1.1: 420 listing every attribute that was not understood.
        response::begin(response, request, CLASS_ERROR_RESPONSE);
        response::add_error_code(response, 420);
        // Adding a list of u16s to a message cannot fail.
        let _ = unknown.add_to(response);
    }
    response::finish(response, request);
}

impl Responder {
    /// Answers a Binding request that arrived over UDP on `local` from `source`: with RFC
    /// 5780 on (`addresses`) and `local` one of its four addresses, the answer carries
    /// RESPONSE-ORIGIN and OTHER-ADDRESS and honours CHANGE-REQUEST, RESPONSE-PORT and
    /// PADDING. Returns the bytes, the local address to send them from and the destination.
    pub fn answer_udp(
        &mut self,
        request: &Message,
        source: SocketAddr,
        local: SocketAddr,
        addresses: Option<&Addresses>,
    ) -> (&[u8], SocketAddr, SocketAddr) {
        let plan = addresses.and_then(|a| rfc5780::plan(request, source, local, a));
        let Some(plan) = plan else {
            answer(&mut self.response, &mut self.unknown, request, source);
            return (&self.response.raw, local, source);
        };
        unknown_required(request, KNOWN_BINDING_ATTRIBUTES, &mut self.unknown.0);
        (self.unknown.0).retain(|t| !rfc5780::REQUEST_ATTRIBUTES.contains(t));
        let response = &mut self.response;
        match plan {
            _ if !self.unknown.0.is_empty() => {
                response::begin(response, request, CLASS_ERROR_RESPONSE);
                response::add_error_code(response, 420);
                let _ = self.unknown.add_to(response);
            }
            Plan::Error(code) => {
                response::begin(response, request, CLASS_ERROR_RESPONSE);
                response::add_error_code(response, code);
            }
            Plan::Answer {
                from,
                to,
                other,
                padding,
            } => {
                response::begin(response, request, CLASS_SUCCESS_RESPONSE);
                response::add_xor_address(response, ATTR_XORMAPPED_ADDRESS, source);
                add_address(response, ATTR_RESPONSE_ORIGIN, from);
                add_address(response, ATTR_OTHER_ADDRESS, other);
                add_padding(response, request, padding);
                response::finish(response, request);
                return (&self.response.raw, from, to);
            }
        }
        response::finish(response, request);
        (&self.response.raw, local, source)
    }
}

/// Adds a plain (not XOR-ed) address attribute: RESPONSE-ORIGIN, OTHER-ADDRESS.
fn add_address(response: &mut Message, typ: AttrType, addr: SocketAddr) {
    let attr = stun::addr::MappedAddress {
        ip: addr.ip(),
        port: addr.port(),
    };
    // Encoding an address cannot fail.
    let _ = attr.add_to_as(response, typ);
}

/// PADDING (RFC 5780 §7.6) of up to `wanted` bytes, but never so much that the answer grows
/// past the request: a spoofed request must not buy a larger reflection.
fn add_padding(response: &mut Message, request: &Message, wanted: usize) {
    let fingerprint = if request.contains(ATTR_FINGERPRINT) {
        8
    } else {
        0
    };
    let room = (request.raw.len()).saturating_sub(response.raw.len() + 4 + fingerprint);
    let len = wanted.min(room) & !3;
    if len > 0 {
        response.add(ATTR_PADDING, &vec![0; len]);
    }
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use stun::message::{BINDING_REQUEST, Getter};

    use super::*;

    pub(in crate::stun) fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A decoded Binding request carrying `attrs` (the RFC 5780 tests use it too).
    pub(in crate::stun) fn request(attrs: &[(AttrType, &[u8])]) -> Message {
        let mut m = Message::new();
        m.typ = BINDING_REQUEST;
        m.new_transaction_id().unwrap();
        m.write_header();
        for (typ, v) in attrs {
            m.add(*typ, v);
        }
        let mut decoded = Message::new();
        decoded.unmarshal_binary(&m.raw).unwrap();
        decoded
    }

    fn decode(raw: &[u8]) -> Message {
        let mut m = Message::new();
        m.unmarshal_binary(raw).unwrap();
        m
    }

    #[test]
    fn rfc5780_answers_carry_origin_and_other_address_and_route_elsewhere() {
        let (local, source) = (addr("127.0.0.1:3478"), addr("198.51.100.7:5000"));
        let pair = Addresses::new(local, addr("127.0.0.2:3479")).unwrap();
        let mut r = Responder::new();
        let req = request(&[(ATTR_CHANGE_REQUEST, &[0, 0, 0, 4])]);
        let (raw, from, to) = r.answer_udp(&req, source, local, Some(&pair));
        assert_eq!((from, to), (addr("127.0.0.2:3478"), source));
        let m = decode(raw);
        assert_eq!(m.typ.class, CLASS_SUCCESS_RESPONSE);
        let mut origin = stun::addr::MappedAddress::default();
        origin.get_from_as(&m, ATTR_RESPONSE_ORIGIN).unwrap();
        assert_eq!(SocketAddr::new(origin.ip, origin.port), from);
        assert!(m.contains(ATTR_OTHER_ADDRESS));

        // Without RFC 5780 (or on a socket not among the four) CHANGE-REQUEST is a 420, and
        // the answer goes back the way it came.
        for (local, pair) in [(local, None), (addr("127.0.0.1:9"), Some(&pair))] {
            let (raw, from, to) = r.answer_udp(&req, source, local, pair);
            assert_eq!((from, to), (local, source));
            assert_eq!(decode(raw).typ.class, CLASS_ERROR_RESPONSE);
        }
        // Another unknown comprehension-required attribute is still a 420.
        let req = request(&[(AttrType(0x0031), &[1, 2, 3, 4])]);
        let (raw, _, _) = r.answer_udp(&req, source, local, Some(&pair));
        let mut err = stun::error_code::ErrorCodeAttribute::default();
        err.get_from(&decode(raw)).unwrap();
        assert_eq!(err.code.0, 420);
    }

    #[test]
    fn padding_never_makes_the_answer_larger_than_the_request() {
        let local = addr("127.0.0.1:3478");
        let pair = Addresses::new(local, addr("127.0.0.2:3479")).unwrap();
        let mut r = Responder::new();
        for len in [4, 40, 400, 1200] {
            let req = request(&[(ATTR_PADDING, &vec![0; len])]);
            let (raw, _, _) = r.answer_udp(&req, addr("198.51.100.7:5000"), local, Some(&pair));
            // A tiny request's answer is larger anyway (three addresses): then no PADDING.
            let padded = decode(raw).contains(ATTR_PADDING);
            assert_eq!(padded, len >= 40, "{len}");
            if padded {
                assert!(raw.len() <= req.raw.len(), "{len}: {}", raw.len());
                assert!(
                    raw.len() + 4 > req.raw.len() - 4,
                    "{len}: padded up to the request"
                );
            }
        }
    }
}
