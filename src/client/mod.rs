//! A sans-IO TURN client (RFC 8656 over RFC 8489): requests built as bytes, responses and
//! relayed data parsed from bytes. No sockets, no clock: whoever owns the socket sends what
//! this module builds and hands back what arrives.
//!
//! - [`request`]: [`Request`], a Binding, Allocate, Refresh, CreatePermission, ChannelBind
//!   or Send indication with its attributes, built into a [`stun::message::Message`] with
//!   or without long-term credentials, and always with FINGERPRINT unless told otherwise.
//! - [`session`]: [`Client`], the long-term credentials and what the server's last 401 or
//!   438 taught (realm, nonce, key): it signs requests and decides whether a challenge is
//!   worth one more try (RFC 8489 §9.2).
//! - [`response`]: [`Response`], the parts of a success or error response a client acts on
//!   (ERROR-CODE, REALM, NONCE, XOR-RELAYED-ADDRESS, XOR-MAPPED-ADDRESS, LIFETIME).
//! - [`data`]: ChannelData framing and [`Inbound`], what a client socket receives: a
//!   response, a Data indication or ChannelData.
//!
//! The tests, benches, fuzz targets and `rturn-bench` all build their requests here, so there
//! is one client to keep right.

pub mod data;
pub mod request;
pub mod response;
pub mod session;

#[cfg(test)]
mod tests;

pub use data::{Inbound, channel_data, parse_inbound};
pub use request::Request;
pub use response::Response;
pub use session::{Client, Session};

/// Why a request could not be built or a packet not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// An attribute could not be encoded (a text attribute over its RFC 8489 limit, say).
    #[error("cannot encode {0}")]
    Encode(&'static str),
    /// ChannelData carries at most 65535 bytes.
    #[error("ChannelData payload over 65535 bytes")]
    TooLong,
    /// The bytes are not a well-formed STUN message or ChannelData.
    #[error("malformed packet: {0}")]
    Malformed(#[from] crate::stun::Malformed),
    /// A STUN message, but not a response (a request or an indication where a response was
    /// expected), or an error response without ERROR-CODE.
    #[error("{0}")]
    NotResponse(&'static str),
}
