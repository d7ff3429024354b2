//! Signaling rooms across nodes, through one Redis (`[cluster] redis`): pub/sub delivers
//! events and relayed messages, keys with a TTL hold presence and room membership.
//!
//! - [`wire`]: key names, messages and Lua scripts (pure).
//! - [`link`]: the Redis connection task and the handle the hub calls.

pub mod link;
pub mod wire;
