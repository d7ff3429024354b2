//! The steps of a session that may need the other nodes: a join (admitted room-wide by the
//! cluster, or on this node alone when the link is down), a leave, and a relay to a peer
//! on another node.
//!
//! Without a cluster each step is done at once, on the hub alone. With one, the step runs
//! in a task of its own: it holds the cluster's membership gate across its change to the
//! hub and its Redis call, then sends its answer to the session, which waits for it as one
//! more event of its loop ([`Pending`]) while its heartbeat and outbox keep going. The
//! cluster is reached through [`Calls`] (the link's `Cluster`, a fake in the tests below);
//! this file owns the rules of what each answer means for the peer.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::oneshot;

use super::cluster::api::{Admission, Calls, Failure};
use super::cluster::wire::Envelope;
use super::hub::Hub;
use super::protocol::{self, ErrorCode, SignalError};
use super::rooms::RoomKey;

/// What became of a step: its result now, or later.
pub(crate) enum Outcome {
    /// Done: an error to send back, if any.
    Done(Result<(), SignalError>),
    /// Waiting for the other nodes.
    Pending(Pending),
}

/// The answer of a step that waits for the other nodes, on its way to the session.
pub(crate) struct Pending(oneshot::Receiver<Result<(), SignalError>>);

impl Pending {
    /// The step's result once its task is done (a task that died answers nothing to send).
    pub(crate) async fn answer(&mut self) -> Result<(), SignalError> {
        (&mut self.0).await.unwrap_or(Ok(()))
    }
}

/// Runs `step` in a task of its own; its answer comes through the returned [`Pending`].
fn spawn(step: impl Future<Output = Result<(), SignalError>> + Send + 'static) -> Outcome {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(step.await);
    });
    Outcome::Pending(Pending(rx))
}

/// Peer `id` of `namespace` joins `room`: room-wide through the cluster when there is
/// one, on this node alone otherwise.
pub(crate) fn join(hub: &Arc<Hub>, id: &str, namespace: &str, room: &str) -> Outcome {
    let Some(cluster) = hub.calls() else {
        let ice = hub.ice_servers(id);
        return Outcome::Done(settle(hub, id, room, &ice, Err(Failure::Down)));
    };
    let (hub, id, namespace, room) = (
        Arc::clone(hub),
        id.to_owned(),
        namespace.to_owned(),
        room.to_owned(),
    );
    spawn(async move { join_across(&hub, &*cluster, &id, &namespace, &room).await })
}

/// A join with a cluster: room-wide when the link is up, on this node alone when it is
/// down; a link that breaks during the join is `unavailable` (the join may or may not
/// have reached Redis; the membership sync settles which).
pub(crate) async fn join_across(
    hub: &Hub,
    cluster: &dyn Calls,
    id: &str,
    namespace: &str,
    room: &str,
) -> Result<(), SignalError> {
    let _gate = cluster.membership_change().await;
    let ice = hub.ice_servers(id);
    let key = (namespace.to_owned(), room.to_owned());
    let old = hub.lock().rooms.membership(id);
    let admission = if old.as_ref() == Some(&key) {
        // Joining the room it is in: nothing for the other nodes to know.
        Err(Failure::Down)
    } else {
        let max = hub.config().max_peers_per_room;
        hub.lock().rooms.begin_join(id, &key);
        cluster.join(&key, old.as_ref(), id, max).await
    };
    settle(hub, id, room, &ice, admission)
}

/// Applies what the cluster said to a join (`Down`: this node decides alone). Whatever came
/// of it, messages held for the joiner follow its `peers` reply.
fn settle(
    hub: &Hub,
    id: &str,
    room: &str,
    ice: &Value,
    admission: Result<Admission, Failure>,
) -> Result<(), SignalError> {
    let mut registry = hub.lock();
    let joined = match admission {
        Ok(Admission::Admitted(remote)) => registry.rooms.join_admitted(id, room, ice, &remote),
        Ok(Admission::Full(members)) => Err(SignalError::new(
            ErrorCode::RoomFull,
            format!("room {room:?} has {members} peers, the most it holds"),
        )),
        Err(Failure::Down) => registry.rooms.join(id, room, ice),
        Err(Failure::Broken) => Err(SignalError::new(
            ErrorCode::Unavailable,
            "the link to the other nodes broke during the join; try again",
        )),
    };
    let held = registry.rooms.end_join(id);
    let mut out = joined?;
    out.extend(held);
    registry.deliver(out);
    Ok(())
}

/// Peer `id` leaves its room (it stays connected).
pub(crate) fn leave(hub: &Arc<Hub>, id: &str) -> Outcome {
    let Some(cluster) = hub.calls() else {
        leave_here(hub, id, false);
        return Outcome::Done(Ok(()));
    };
    let (hub, id) = (Arc::clone(hub), id.to_owned());
    spawn(async move {
        leave_across(&hub, Some(&*cluster), &id, false).await;
        Ok(())
    })
}

/// Peer `id`'s connection is gone: out of its room and of the hub.
pub(crate) async fn disconnect(hub: &Hub, id: &str) {
    let cluster = hub.calls();
    leave_across(hub, cluster.as_deref(), id, true).await;
}

/// `id` leaves its room (`closing`: and its connection is gone): the local members are told
/// at once, the other nodes through the cluster, within one membership change.
async fn leave_across(hub: &Hub, cluster: Option<&dyn Calls>, id: &str, closing: bool) {
    let Some(cluster) = cluster else {
        leave_here(hub, id, closing);
        return;
    };
    let _gate = cluster.membership_change().await;
    if let Some(key) = leave_here(hub, id, closing) {
        let _ = cluster.leave(&key, id).await;
    }
}

/// The hub's part of a leave: the room `id` left, if it was in one.
fn leave_here(hub: &Hub, id: &str, closing: bool) -> Option<RoomKey> {
    let mut registry = hub.lock();
    let left = registry.rooms.membership(id);
    let out = if closing {
        registry.disconnect(id)
    } else {
        registry.rooms.leave(id)
    };
    registry.deliver(out);
    left
}

/// An offer, answer or candidate (`text`, as sent) from `id`: to a local peer directly, to
/// a remote one via its node, as the sender's bytes with `from` added, never more than
/// `max_size`.
pub(crate) fn relay(hub: &Arc<Hub>, id: &str, to: &str, text: &str, max_size: usize) -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let (relayed, key) = {
        let registry = hub.lock();
        let relayed = match registry.rooms.relay(id, to, text) {
            Ok(relayed) => relayed,
            Err(e) => return Outcome::Done(Err(e)),
        };
        if relayed.text.len() > max_size {
            hub.counters.relays_too_large.fetch_add(1, Relaxed);
            return Outcome::Done(Err(SignalError::new(
                ErrorCode::TooLarge,
                format!(
                    "{} bytes with \"from\" added; the limit is {max_size}",
                    relayed.text.len()
                ),
            )));
        }
        if relayed.node.is_none() {
            hub.counters.relayed.fetch_add(1, Relaxed);
            registry.deliver(vec![(relayed.to, relayed.text)]);
            return Outcome::Done(Ok(()));
        }
        (relayed, registry.rooms.membership(id))
    };
    let (Some(node), Some((ns, room)), Some(cluster)) = (relayed.node, key, hub.calls()) else {
        return Outcome::Done(Err(SignalError::new(
            ErrorCode::UnknownPeer,
            format!("no peer {}", protocol::shown(to)),
        )));
    };
    let envelope = Envelope {
        ns,
        room,
        to: relayed.to,
        text: relayed.text,
    };
    let (hub, to) = (Arc::clone(hub), to.to_owned());
    spawn(async move { relay_across(&hub, &*cluster, &node, &envelope, &to).await })
}

/// Sends a relayed message to the node of its recipient `to`.
async fn relay_across(
    hub: &Hub,
    cluster: &dyn Calls,
    node: &str,
    envelope: &Envelope,
    to: &str,
) -> Result<(), SignalError> {
    match cluster.relay(node, envelope).await {
        Ok(true) => {
            (hub.counters.relayed).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Ok(false) => Err(SignalError::new(
            ErrorCode::UnknownPeer,
            format!(
                "no peer {} in room {:?}: its node is gone",
                protocol::shown(to),
                envelope.room
            ),
        )),
        Err(_) => Err(SignalError::new(
            ErrorCode::Unavailable,
            format!(
                "peer {} is on another node and the link to it is down; try again",
                protocol::shown(to)
            ),
        )),
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
