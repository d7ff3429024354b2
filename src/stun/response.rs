//! Building responses, and the Data indications relayed to clients, into a reused [`Message`].
//!
//! No reason phrases and no SOFTWARE: unauthenticated answers stay as small as they can be
//! (an attacker gains nothing from reflecting them).

use std::net::SocketAddr;

use stun::attributes::{ATTR_DATA, ATTR_FINGERPRINT, ATTR_XOR_PEER_ADDRESS, AttrType};
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::message::{CLASS_INDICATION, METHOD_DATA, Message, MessageClass, MessageType, Setter};
use stun::xoraddr::XorMappedAddress;

/// Starts `response` as an answer of `class` to `request`: same method, same transaction ID.
pub fn begin(response: &mut Message, request: &Message, class: MessageClass) {
    response.reset();
    response.typ = MessageType::new(request.typ.method, class);
    response.transaction_id = request.transaction_id;
    response.write_header();
}

/// Adds ERROR-CODE with `code` and an empty reason phrase.
pub fn add_error_code(response: &mut Message, code: u16) {
    let attr = ErrorCodeAttribute {
        code: ErrorCode(code),
        reason: Vec::new(),
    };
    // An empty reason is always within the attribute's size limit.
    let _ = attr.add_to(response);
}

/// Adds an XOR-encoded address attribute (XOR-MAPPED-ADDRESS, XOR-RELAYED-ADDRESS, ...).
pub fn add_xor_address(response: &mut Message, typ: AttrType, addr: SocketAddr) {
    let attr = XorMappedAddress {
        ip: addr.ip(),
        port: addr.port(),
    };
    // Encoding an address cannot fail.
    let _ = attr.add_to_as(response, typ);
}

/// RFC 8489 §7.3: FINGERPRINT goes last, and only when the request carried one.
pub fn finish(response: &mut Message, request: &Message) {
    if request.contains(ATTR_FINGERPRINT) {
        super::codec::add_fingerprint(response);
    }
}

/// A Data indication (RFC 8656 §11.4) carrying `payload` from `peer`.
pub fn data_indication(msg: &mut Message, peer: SocketAddr, payload: &[u8]) {
    msg.reset();
    msg.typ = MessageType::new(METHOD_DATA, CLASS_INDICATION);
    // Not a secret, and per packet: the thread-local CSPRNG, no system call.
    msg.transaction_id.0 = rand::random();
    msg.write_header();
    add_xor_address(msg, ATTR_XOR_PEER_ADDRESS, peer);
    msg.add(ATTR_DATA, payload);
}
