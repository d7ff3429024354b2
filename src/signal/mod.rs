//! The WebSocket signaling relay: peers join rooms, learn who is there, and pass offers,
//! answers and candidates to each other.
//!
//! - [`protocol`]: the JSON messages (pure).
//! - [`rooms`]: the room registry (pure): every event in, messages to deliver out.
//! - [`token`]: the optional `?token=` check (pure).
//! - [`cluster`]: rooms across nodes over Redis (off unless configured).
//! - [`limits`]: the message and join rate limits (pure).
//! - [`refusals`]: counters of what was refused, for `/metrics`.
//! - [`ws`]: one task per WebSocket, moving messages between the socket and the registry.

pub mod cluster;
pub mod limits;
pub mod protocol;
pub mod refusals;
pub mod rooms;
pub mod token;
pub mod ws;
