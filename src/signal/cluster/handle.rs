//! The shared handle on the Redis link, [`Cluster`]: the session in force, the link's
//! state and counters, and the calls the cross-node steps make ([`Calls`]: join, leave,
//! relay, each bounded by `COMMAND_TIMEOUT`). The link task (`link.rs`) connects,
//! installs and ends the sessions this handle sends on.
//!
//! Each connect is a new *session* with its own name and its own end: a command that fails
//! ends the session it was sent on, never a later one.
//!
//! A join or leave changes the hub and then Redis; the link's sync and re-registration read
//! the hub and then write Redis. [`Cluster::membership_change`] keeps the two apart, so a
//! snapshot never falls between a change and its Redis call (which would write a peer that
//! just left back into its room).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::api::{Admission, Boxed, Calls, Failure, Gate};
use super::wire::{self, Envelope, Event};
use crate::signal::rooms::{NodeId, RoomKey};

/// How long a Redis command may take before the link counts as broken.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Successful connects to Redis (the first one included).
    pub connects: AtomicU64,
    /// Failed connects and commands, and lost links.
    pub errors: AtomicU64,
    /// Messages relayed to peers on other nodes.
    pub relayed_out: AtomicU64,
    /// Messages from other nodes delivered to local peers.
    pub relayed_in: AtomicU64,
    /// Membership events heard from other nodes.
    pub events: AtomicU64,
    /// Channel messages that were not ours to understand.
    pub malformed: AtomicU64,
}

/// The session in force: what the connection tasks send on.
pub(super) struct Session {
    pub(super) conn: MultiplexedConnection,
    pub(super) name: NodeId,
    /// Which connect this is (see [`Cluster::failed`]).
    pub(super) number: u64,
    /// Cancelled when the session ends, for the link task.
    pub(super) ended: CancellationToken,
}

/// The shared handle on the Redis link.
pub struct Cluster {
    pub(super) client: redis::Client,
    pub(super) url: String,
    pub(super) node_id: String,
    pub(super) ttl: Duration,
    pub(super) session: Mutex<Option<Session>>,
    pub(super) sessions: AtomicU64,
    /// Since when the link is down; `None` while it is up.
    down_since: Mutex<Option<Instant>>,
    pub(super) last_error: Mutex<Option<String>>,
    /// Read: a connection task's membership change; write: the link's snapshot and send.
    pub(super) gate: tokio::sync::RwLock<()>,
    pub(super) join: redis::Script,
    pub(super) members: redis::Script,
    pub(super) alive: redis::Script,
    pub(super) bye: redis::Script,
    /// Counters for `/metrics`.
    pub stats: ClusterStats,
}

/// The link's state for `/healthz`.
#[derive(Debug, Clone)]
pub struct Status {
    /// This node's `node-id`.
    pub node_id: String,
    /// Connected to Redis now.
    pub up: bool,
    /// Seconds since the link went down (`None` while up).
    pub down_for: Option<u64>,
    /// Why the link is down, when it is and a reason is known.
    pub error: Option<String>,
}

impl Cluster {
    /// A handle for `url` (checked by config validation); the link starts with [`super::link::run`].
    pub fn new(url: &str, node_id: String, ttl: Duration) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            url: wire::redact(url),
            node_id,
            ttl,
            session: Mutex::new(None),
            sessions: AtomicU64::new(0),
            down_since: Mutex::new(Some(Instant::now())),
            last_error: Mutex::new(None),
            gate: tokio::sync::RwLock::new(()),
            join: redis::Script::new(wire::JOIN),
            members: redis::Script::new(wire::MEMBERS),
            alive: redis::Script::new(wire::ALIVE),
            bye: redis::Script::new(wire::BYE),
            stats: ClusterStats::default(),
        })
    }

    /// Up or down, for `/healthz` and `/metrics`.
    pub fn status(&self) -> Status {
        let down_since = *lock(&self.down_since);
        let up = down_since.is_none();
        Status {
            node_id: self.node_id.clone(),
            up,
            down_for: down_since.map(|t| t.elapsed().as_secs()),
            error: if up {
                None
            } else {
                lock(&self.last_error).clone()
            },
        }
    }

    /// Held by a connection task from a join's or leave's change to the hub until its Redis
    /// call is done; many at once, but never during the link's sync or re-registration.
    pub async fn membership_change(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Whether `node` is a session of this node (now or before a reconnect).
    pub fn is_mine(&self, node: &str) -> bool {
        node.strip_prefix(self.node_id.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The session in force: its connection, name and number.
    fn current(&self) -> Result<(MultiplexedConnection, NodeId, u64), Failure> {
        let session = lock(&self.session);
        session
            .as_ref()
            .map(|s| (s.conn.clone(), s.name.clone(), s.number))
            .ok_or(Failure::Down)
    }

    /// A command sent on session `number` failed: that session is over (the link task
    /// reconnects); a later session is left alone.
    pub(super) fn failed(&self, number: u64, what: &str, error: &dyn std::fmt::Display) -> Failure {
        self.stats.errors.fetch_add(1, Relaxed);
        tracing::warn!(redis = %self.url, "cluster: {what} failed: {error}");
        *lock(&self.last_error) = Some(format!("{what} failed: {error}"));
        self.end(number);
        Failure::Broken
    }

    /// Session `number` is serving, unless it already ended (a connection task's command
    /// failed while it was registering): then `false`, and the link stays down.
    pub(super) fn mark_up(&self, number: u64) -> bool {
        let session = lock(&self.session);
        if session.as_ref().is_none_or(|s| s.number != number) {
            return false;
        }
        *lock(&self.down_since) = None;
        *lock(&self.last_error) = None;
        true
    }

    /// Ends session `number` if it is still the one in force.
    pub(super) fn end(&self, number: u64) {
        let mut session = lock(&self.session);
        if session.as_ref().is_some_and(|s| s.number == number) {
            if let Some(s) = session.take() {
                s.ended.cancel();
            }
            lock(&self.down_since).get_or_insert_with(Instant::now);
        }
    }

    pub(super) fn room_ttl_ms(&self) -> u128 {
        (self.ttl * 4).as_millis()
    }

    /// Joins `key` room-wide: refused when the room holds `max` peers on all nodes together.
    /// `old`: the room the peer leaves for it.
    pub async fn join(
        &self,
        key: &RoomKey,
        old: Option<&RoomKey>,
        peer: &str,
        max: usize,
    ) -> Result<Admission, Failure> {
        let (mut conn, node, number) = self.current()?;
        let joined = Event::Joined {
            node: node.clone(),
            ns: key.0.clone(),
            room: key.1.clone(),
            peer: peer.to_owned(),
        };
        let left = old.map(|_| Event::Left {
            node: node.clone(),
            peer: peer.to_owned(),
        });
        let mut call = self.join.key(wire::room_key(key));
        call.key(old.map(wire::room_key).unwrap_or_default())
            .arg(peer)
            .arg(&node)
            .arg(max)
            .arg(wire::PRESENCE_PREFIX)
            .arg(wire::EVENTS)
            .arg(joined.to_json())
            .arg(left.map(|e| e.to_json()).unwrap_or_default())
            .arg(self.room_ttl_ms().to_string());
        let reply: Vec<String> = match timed(call.invoke_async(&mut conn)).await {
            Ok(reply) => reply,
            Err(e) => return Err(self.failed(number, "join", &e)),
        };
        match reply.split_first() {
            Some((status, rest)) if status == "ok" => Ok(Admission::Admitted(
                wire::pairs(rest)
                    .into_iter()
                    .filter(|(_, n)| !self.is_mine(n))
                    .collect(),
            )),
            Some((status, [count])) if status == "full" => {
                Ok(Admission::Full(count.parse().unwrap_or(max)))
            }
            _ => Err(self.failed(number, "join", &"unexpected reply from the join script")),
        }
    }

    /// `peer` left `key`: out of the room's hash, and a `Left` event for the other nodes.
    /// (Had this failed, the next membership sync removes the entry.)
    pub async fn leave(&self, key: &RoomKey, peer: &str) -> Result<(), Failure> {
        let (mut conn, node, number) = self.current()?;
        let left = Event::Left {
            node,
            peer: peer.to_owned(),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(wire::room_key(key))
            .arg(peer)
            .ignore()
            .cmd("PUBLISH")
            .arg(wire::EVENTS)
            .arg(left.to_json())
            .ignore();
        match timed(pipe.query_async::<()>(&mut conn)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(number, "leave", &e)),
        }
    }

    /// Sends a relayed message to `node`; `false` when no node is listening there (it died).
    pub async fn relay(&self, node: &str, envelope: &Envelope) -> Result<bool, Failure> {
        let (mut conn, _, number) = self.current()?;
        let publish = redis::cmd("PUBLISH")
            .arg(wire::inbox(node))
            .arg(envelope.to_json())
            .to_owned();
        match timed(publish.query_async::<i64>(&mut conn)).await {
            Ok(receivers) => {
                if receivers > 0 {
                    self.stats.relayed_out.fetch_add(1, Relaxed);
                }
                Ok(receivers > 0)
            }
            Err(e) => Err(self.failed(number, "relay", &e)),
        }
    }
}

impl Calls for Cluster {
    fn membership_change(&self) -> Boxed<'_, Gate<'_>> {
        Box::pin(Cluster::membership_change(self))
    }

    fn join<'a>(
        &'a self,
        key: &'a RoomKey,
        old: Option<&'a RoomKey>,
        peer: &'a str,
        max: usize,
    ) -> Boxed<'a, Result<Admission, Failure>> {
        Box::pin(Cluster::join(self, key, old, peer, max))
    }

    fn leave<'a>(&'a self, key: &'a RoomKey, peer: &'a str) -> Boxed<'a, Result<(), Failure>> {
        Box::pin(Cluster::leave(self, key, peer))
    }

    fn relay<'a>(
        &'a self,
        node: &'a str,
        envelope: &'a Envelope,
    ) -> Boxed<'a, Result<bool, Failure>> {
        Box::pin(Cluster::relay(self, node, envelope))
    }
}

/// A mutex's guard, poisoned or not (every value behind these locks is valid at all times).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Redis call with [`COMMAND_TIMEOUT`].
pub(super) async fn timed<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {COMMAND_TIMEOUT:?}")),
    }
}
