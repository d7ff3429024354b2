//! [`Response`]: what a client acts on in a success or error response, copied out of the
//! message so the receive buffer can be reused.

use std::net::SocketAddr;

use stun::addr::AlternateServer;
use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_ALTERNATE_SERVER, ATTR_LIFETIME, ATTR_NONCE, ATTR_REALM, ATTR_RESERVATION_TOKEN,
    ATTR_XOR_RELAYED_ADDRESS, ATTR_XORMAPPED_ADDRESS, AttrType,
};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, Getter, Message, Method};
use stun::textattrs::TextAttribute;

use super::error::ClientError;
use crate::stun::codec::decode_into;
use crate::turn::attrs::decode_xor_address;

/// A success or error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The method it answers.
    pub method: Method,
    /// The transaction ID, the request's.
    pub transaction_id: TransactionId,
    /// ERROR-CODE of an error response: the code and the reason phrase; `None` for a success.
    pub error: Option<(u16, String)>,
    /// REALM, if present (401 and 438 carry it).
    pub realm: Option<String>,
    /// NONCE, if present (401 and 438 carry it).
    pub nonce: Option<String>,
    /// Every XOR-RELAYED-ADDRESS in order: an Allocate with ADDITIONAL-ADDRESS-FAMILY gets
    /// two (RFC 8656 §7.3).
    pub relayed: Vec<SocketAddr>,
    /// XOR-MAPPED-ADDRESS, the client's address as the server saw it.
    pub mapped: Option<SocketAddr>,
    /// LIFETIME in seconds.
    pub lifetime: Option<u32>,
    /// RESERVATION-TOKEN (an Allocate with EVEN-PORT R=1).
    pub reservation_token: Option<Vec<u8>>,
    /// ALTERNATE-SERVER of a 300 Try Alternate: where to send the request instead (RFC 8489
    /// §10).
    pub alternate_server: Option<SocketAddr>,
}

impl Response {
    /// Decodes `packet` through the server's own decoder ([`decode_into`]: exact length,
    /// FINGERPRINT checked) and reads it.
    pub fn parse(packet: &[u8]) -> Result<Response, ClientError> {
        let mut msg = Message::new();
        decode_into(packet, &mut msg)?;
        Response::from_message(&msg)
    }

    /// Reads a decoded message; an error unless it is a response.
    pub fn from_message(msg: &Message) -> Result<Response, ClientError> {
        let error = if msg.typ.class == CLASS_SUCCESS_RESPONSE {
            None
        } else if msg.typ.class == CLASS_ERROR_RESPONSE {
            let mut e = ErrorCodeAttribute::default();
            e.get_from(msg)
                .map_err(|_| ClientError::NotResponse("error response without ERROR-CODE"))?;
            Some((e.code.0, String::from_utf8_lossy(&e.reason).into_owned()))
        } else {
            return Err(ClientError::NotResponse("not a response"));
        };
        let text = |typ| TextAttribute::get_from_as(msg, typ).ok().map(|a| a.text);
        let id = &msg.transaction_id.0;
        let xor = |typ: AttrType| values(msg, typ).filter_map(|v| decode_xor_address(v, id));
        let lifetime = values(msg, ATTR_LIFETIME)
            .next()
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes);
        Ok(Response {
            method: msg.typ.method,
            transaction_id: msg.transaction_id,
            error,
            realm: text(ATTR_REALM),
            nonce: text(ATTR_NONCE),
            relayed: xor(ATTR_XOR_RELAYED_ADDRESS).collect(),
            mapped: xor(ATTR_XORMAPPED_ADDRESS).next(),
            lifetime,
            reservation_token: values(msg, ATTR_RESERVATION_TOKEN)
                .next()
                .map(<[u8]>::to_vec),
            alternate_server: alternate_server(msg),
        })
    }

    /// Whether it is a success response.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    /// The error code, `None` for a success.
    pub fn error_code(&self) -> Option<u16> {
        self.error.as_ref().map(|(code, _)| *code)
    }

    /// 0 for a success, else the error code: one number to assert on.
    pub fn code(&self) -> u16 {
        self.error_code().unwrap_or(0)
    }

    /// The first XOR-RELAYED-ADDRESS.
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.relayed.first().copied()
    }
}

/// ALTERNATE-SERVER, a plain (not XOR'd) address; `None` if absent or malformed.
fn alternate_server(msg: &Message) -> Option<SocketAddr> {
    let mut addr = AlternateServer::default();
    addr.get_from_as(msg, ATTR_ALTERNATE_SERVER).ok()?;
    Some(SocketAddr::new(addr.ip, addr.port))
}

/// The values of every attribute of type `typ`, in order.
fn values(msg: &Message, typ: AttrType) -> impl Iterator<Item = &[u8]> {
    (msg.attributes.0.iter())
        .filter(move |a| a.typ == typ)
        .map(|a| a.value.as_slice())
}
