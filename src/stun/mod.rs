//! STUN on the wire (RFC 8489), on top of the `stun` crate. No tokio, no sockets, no clock:
//! every function here takes bytes and returns bytes or a reason.
//!
//! - [`codec`]: checking and decoding untrusted datagrams, first-byte demultiplexing.
//! - [`channel_data`]: the ChannelData header (RFC 8656 §12.4), parsed and built.
//! - [`framing`]: splitting a TCP byte stream into STUN and ChannelData frames.
//! - [`binding`]: the Binding responder.
//! - [`response`]: the steps every response shares (no reason phrases, no SOFTWARE).
//! - [`rfc5780`]: NAT behaviour discovery: the four addresses, CHANGE-REQUEST, RESPONSE-PORT.

pub mod binding;
pub mod channel_data;
pub mod codec;
pub mod framing;
pub mod response;
pub mod rfc5780;

#[cfg(test)]
mod rfc5769;

pub use binding::{Ignored, Outcome, Responder};
pub use codec::{Malformed, PacketKind};
pub use framing::{Frame, next_frame};
