//! A sans-IO TURN client (RFC 8656 over RFC 8489): requests built as bytes, responses and
//! relayed data parsed from bytes. No sockets, no clock: whoever owns the socket sends what
//! this module builds and hands back what arrives.
//!
//! - [`request`]: [`Request`], a Binding, Allocate, Refresh, CreatePermission, ChannelBind
//!   or Send indication with its attributes, built into a [`stun::message::Message`] with
//!   or without long-term credentials, and always with FINGERPRINT unless told otherwise.
//! - [`session`]: [`Session`], what requests are signed with: username, realm, nonce, key.
//! - [`credentials`]: [`Client`], the long-term credentials and the session the server's
//!   last 401 or 438 gave them: it signs requests and decides whether a challenge is worth
//!   one more try (RFC 8489 §9.2).
//! - [`response`]: [`Response`], the parts of a success or error response a client acts on
//!   (ERROR-CODE, REALM, NONCE, XOR-RELAYED-ADDRESS, XOR-MAPPED-ADDRESS, LIFETIME,
//!   RESERVATION-TOKEN, ALTERNATE-SERVER).
//! - [`error`]: [`ClientError`], why a request could not be built or a packet not read.
//! - [`data`]: ChannelData framing and [`Inbound`], what a client socket receives: a
//!   response, a Data indication or ChannelData.
//!
//! The tests, benches, fuzz targets and `rturn-bench` all build their requests here, so there
//! is one client to keep right.

pub mod credentials;
pub mod data;
pub mod error;
pub mod request;
pub mod response;
pub mod session;

#[cfg(test)]
mod tests;

pub use credentials::Client;
pub use data::{Inbound, channel_data, parse_inbound};
pub use error::ClientError;
pub use request::Request;
pub use response::Response;
pub use session::Session;
