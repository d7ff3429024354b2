//! The WebSocket signaling relay: peers join rooms, learn who is there, and pass offers,
//! answers and candidates to each other.
//!
//! - [`protocol`]: the JSON messages (pure).
//! - [`rooms`]: the room registry (pure): every event in, messages to deliver out.
//! - [`skyrtc`]: the SkyRTC dialect (`/skyrtc`), translated to and from `protocol`'s
//!   messages at the edges of a session (pure).
//! - [`token`]: the optional `?token=` check (pure).
//! - [`limits`]: the message and join rate limits (pure).
//! - [`refusals`]: counters of what was refused, for `/metrics`.
//! - [`hub`]: the registry of this node's sessions and rooms, routing deliveries into
//!   their outboxes.
//! - [`session`]: one task per WebSocket, moving messages between the socket and the hub.
//! - `join`: the steps that may need the other nodes (join, leave, relay across nodes),
//!   each in a task of its own that answers its session.
//! - [`cluster`]: rooms across nodes over Redis (off unless configured).
//!
//! Who uses whom, with no way back: `session` → `join` → `hub` → `cluster::link`'s
//! handle; the link reports to the hub through `cluster::api::LocalNode` and is called
//! through `cluster::api::Calls`, so it names neither.

pub mod cluster;
#[cfg(test)]
mod fake;
pub mod hub;
pub(crate) mod join;
pub mod limits;
pub mod protocol;
pub mod refusals;
mod report;
pub mod rooms;
pub mod session;
pub mod skyrtc;
pub mod token;
