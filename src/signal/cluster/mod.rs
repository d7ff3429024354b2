//! Signaling rooms across nodes, through one Redis (`[cluster] redis`): pub/sub delivers
//! events and relayed messages, keys with a TTL hold presence and room membership.
//!
//! - [`wire`]: key names, messages and Lua scripts (pure).
//! - [`api`]: what crosses between the link and the rest of signaling (a leaf).
//! - [`handle`]: [`handle::Cluster`], the shared handle the cross-node steps call.
//! - [`link`]: the Redis connection task.

pub mod api;
pub mod handle;
pub mod link;
pub mod wire;
