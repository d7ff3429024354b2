//! What crosses between the Redis link and the rest of signaling, so that neither side
//! names the other's file: the link's handle (`cluster/handle.rs`) implements [`Calls`]
//! for the cross-node joins, leaves and relays (`join.rs`), and the link task
//! (`cluster/link.rs`) reports what it hears to a [`LocalNode`], which the hub (`hub.rs`)
//! implements.
//!
//! A leaf: it uses only the pure types of `rooms`, `protocol` and `cluster/wire.rs`. Unit
//! tests put a fake in place of the link by implementing [`Calls`].

use std::future::Future;
use std::pin::Pin;

use super::wire::{Envelope, Event};
use crate::signal::protocol::PeerId;
use crate::signal::rooms::{LocalRoom, NodeId, RoomKey};

/// A boxed future, so [`Calls`] works behind `dyn`.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Held across a join's or leave's change to the hub and its Redis call
/// ([`Calls::membership_change`]).
pub type Gate<'a> = tokio::sync::RwLockReadGuard<'a, ()>;

/// What a join asked of the cluster came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// In; the room's live members on other nodes.
    Admitted(Vec<(PeerId, NodeId)>),
    /// The room holds this many peers across all nodes already.
    Full(usize),
}

/// Why a call to the cluster did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The link is down: nothing was sent; the caller serves locally.
    Down,
    /// The link broke during the call: it may or may not have reached Redis.
    Broken,
}

/// What this node's joins, leaves and relays ask of the other nodes. Every call is bounded
/// in time by the link (a command that takes too long is [`Failure::Broken`]).
pub trait Calls: Send + Sync {
    /// Held from a join's or leave's change to the hub until its Redis call is done; many at
    /// once, but never while the link snapshots the hub and writes that snapshot to Redis
    /// (which would write a peer that just left back into its room).
    fn membership_change(&self) -> Boxed<'_, Gate<'_>>;

    /// Joins `key` room-wide: refused when the room holds `max` peers on all nodes together.
    /// `old`: the room the peer leaves for it.
    fn join<'a>(
        &'a self,
        key: &'a RoomKey,
        old: Option<&'a RoomKey>,
        peer: &'a str,
        max: usize,
    ) -> Boxed<'a, Result<Admission, Failure>>;

    /// `peer` left `key`: the other nodes are told.
    fn leave<'a>(&'a self, key: &'a RoomKey, peer: &'a str) -> Boxed<'a, Result<(), Failure>>;

    /// Sends a relayed message to `node`; `false` when no node is listening there (it died).
    fn relay<'a>(
        &'a self,
        node: &'a str,
        envelope: &'a Envelope,
    ) -> Boxed<'a, Result<bool, Failure>>;
}

/// This node's rooms, as the link sees them: what it reads to register and sync them, and
/// where it puts what the other nodes say. Each call is quick and never awaits.
pub trait LocalNode: Send + Sync {
    /// Every room with a local peer or a pending join, with those peers.
    fn local_rooms(&self) -> Vec<LocalRoom>;

    /// Applies the cluster's list of a room's members on other nodes.
    fn cluster_sync(&self, key: &RoomKey, remote: &[(PeerId, NodeId)], removals: bool);

    /// Applies another node's membership event.
    fn cluster_event(&self, event: &Event);

    /// Delivers a message another node relayed to a local peer; `false` when the peer is
    /// gone or not in that room any more.
    fn cluster_deliver(&self, envelope: Envelope) -> bool;
}
