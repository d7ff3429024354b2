//! WebSocket glue: the [`Hub`] every connection shares (the registry plus a queue per peer),
//! and [`serve`], the task of one connection: it reads frames, enforces size, message rate
//! and the join rate of its address ([`super::limits`]), asks the registry what each
//! message means, and writes what the registry says to write.
//! It also pings, drops a client that stays silent past the heartbeat timeout, and closes
//! one that stops reading (its queue, bounded in bytes by `max-queued-bytes`, overflows:
//! close code 1008).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::cluster::link::{Admission, Cluster, Failure};
use super::cluster::wire::{Envelope, Event};
use super::limits::{Bucket, JoinLimiter};
use super::protocol::{self, ClientMessage, ErrorCode, PeerId, SignalError};
use super::refusals::Refusals;
use super::rooms::{Deliveries, LocalRoom, NodeId, RoomKey, Rooms};
use crate::client_key::client_key;
use crate::config::SignalConfig;
use crate::outbox;

/// How long one write may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the `iceServers` list for a `peers` reply (fresh credentials each time) for the
/// REST user part given: the peer ID, so each peer's allocations count as its own.
pub type IceServersFn = Box<dyn Fn(&str) -> Value + Send + Sync>;

struct Registry {
    rooms: Rooms,
    queues: HashMap<PeerId, outbox::Sender<String>>,
}

/// What every signaling connection shares.
pub struct Hub {
    registry: Mutex<Registry>,
    connections: Mutex<(usize, HashMap<IpAddr, usize>)>,
    config: std::sync::RwLock<Arc<SignalConfig>>,
    ice_servers: IceServersFn,
    joins: Mutex<JoinLimiter>,
    relayed: std::sync::atomic::AtomicU64,
    heartbeat_drops: std::sync::atomic::AtomicU64,
    rate_limited: std::sync::atomic::AtomicU64,
    joins_refused: std::sync::atomic::AtomicU64,
    /// Upgrades refused (HTTP 503) for `max-connections` or `max-connections-per-ip`.
    connections_refused: std::sync::atomic::AtomicU64,
    slow_consumers: std::sync::atomic::AtomicU64,
    relays_too_large: std::sync::atomic::AtomicU64,
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    /// Origin and token refusals, and error frames sent, for `/metrics`.
    pub refusals: Refusals,
}

/// Holds one connection slot; gives it back when dropped.
pub struct Slot {
    hub: Arc<Hub>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.hub.lock_connections();
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Hub {
    /// A hub with no connections.
    pub fn new(config: SignalConfig, ice_servers: IceServersFn) -> Self {
        Self {
            registry: Mutex::new(Registry {
                rooms: Rooms::new(config.max_peers_per_room),
                queues: HashMap::new(),
            }),
            connections: Mutex::default(),
            joins: Mutex::new(JoinLimiter::new(
                config.joins_per_minute_per_ip,
                Instant::now(),
            )),
            config: std::sync::RwLock::new(Arc::new(config)),
            ice_servers,
            relayed: Default::default(),
            heartbeat_drops: Default::default(),
            rate_limited: Default::default(),
            joins_refused: Default::default(),
            connections_refused: Default::default(),
            slow_consumers: Default::default(),
            relays_too_large: Default::default(),
            cluster: std::sync::OnceLock::new(),
            refusals: Refusals::default(),
        }
    }

    /// Shares rooms with other nodes through `cluster` from now on (set once, at start).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The Redis link, when `[cluster]` is configured.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// With a cluster, held across a join or leave: the local change and its Redis call
    /// (see [`Cluster::membership_change`]).
    async fn membership_change(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        match self.cluster() {
            Some(cluster) => Some(cluster.membership_change().await),
            None => None,
        }
    }

    /// Every room with a local peer or a pending join, with those peers.
    pub fn local_rooms(&self) -> Vec<LocalRoom> {
        self.lock().rooms.local_rooms()
    }

    /// Applies the cluster's list of a room's members on other nodes.
    pub fn cluster_sync(&self, key: &RoomKey, remote: &[(PeerId, NodeId)], removals: bool) {
        let mut registry = self.lock();
        let out = registry.rooms.sync_room(key, remote, removals);
        deliver(&registry, out);
    }

    /// Applies another node's membership event.
    pub fn cluster_event(&self, event: &Event) {
        let mut registry = self.lock();
        let out = match event {
            Event::Joined {
                node,
                ns,
                room,
                peer,
            } => registry
                .rooms
                .remote_joined(node, &(ns.clone(), room.clone()), peer),
            Event::Left { peer, .. } => registry.rooms.remote_left(peer),
        };
        deliver(&registry, out);
    }

    /// Delivers a message another node relayed to a local peer; `false` when the peer is
    /// gone or not in that room any more.
    pub fn cluster_deliver(&self, envelope: Envelope) -> bool {
        let mut registry = self.lock();
        let key = (envelope.ns, envelope.room);
        match registry
            .rooms
            .deliver_remote(&key, &envelope.to, envelope.text)
        {
            Some(out) => {
                deliver(&registry, out);
                true
            }
            None => false,
        }
    }

    /// The signaling settings in force (a connection keeps the ones it started with).
    pub fn config(&self) -> Arc<SignalConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// New settings from a reload, for new connections and new joins. The room limit of
    /// the registry changes at once; rooms already fuller than it keep their peers.
    pub fn set_config(&self, config: SignalConfig) {
        self.lock().rooms.set_max_peers(config.max_peers_per_room);
        self.lock_joins()
            .set_rate(config.joins_per_minute_per_ip, Instant::now());
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// A fresh `iceServers` list for REST user part `user`.
    pub fn ice_servers(&self, user: &str) -> Value {
        (self.ice_servers)(user)
    }

    /// Takes a connection slot for `ip`, or `None` when the total or per-IP cap is reached
    /// (an IPv6 client counts by its /64, see [`client_key`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = client_key(ip);
        let mut guard = self.lock_connections();
        let (total, per_ip) = &mut *guard;
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        let config = self.config();
        if *total >= config.max_connections || mine >= config.max_connections_per_ip {
            self.connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        *total += 1;
        per_ip.insert(ip, mine + 1);
        Some(Slot {
            hub: Arc::clone(self),
            ip,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_joins(&self) -> MutexGuard<'_, JoinLimiter> {
        self.joins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spends one join of `ip` (`joins-per-minute-per-ip`), which a join and an
    /// `/api/ice-servers` answer both cost (each mints TURN credentials); `false` past the rate.
    pub fn take_join(&self, ip: IpAddr) -> bool {
        let taken = self.lock_joins().take(ip, Instant::now());
        if !taken {
            self.joins_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        taken
    }

    /// Messages refused for `messages-per-second`, and joins for `joins-per-minute-per-ip`.
    pub fn refusals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.rate_limited.load(Relaxed),
            self.joins_refused.load(Relaxed),
        )
    }

    /// Upgrades refused for `max-connections` or `max-connections-per-ip` (HTTP 503).
    pub fn connections_refused(&self) -> u64 {
        (self.connections_refused).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock_connections(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open, messages relayed between peers, clients dropped by the heartbeat.
    pub fn traffic(&self) -> (usize, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let open = self.lock_connections().0;
        (
            open,
            self.relayed.load(Relaxed),
            self.heartbeat_drops.load(Relaxed),
        )
    }

    /// Connections closed for not reading (`max-queued-bytes`, or a write stuck for
    /// [`WRITE_TIMEOUT`]), and relays refused because
    /// the message with `from` added would pass `max-message-size`.
    pub fn overflows(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.slow_consumers.load(Relaxed),
            self.relays_too_large.load(Relaxed),
        )
    }

    /// Connected peers and non-empty rooms, for logs and health.
    pub fn counts(&self) -> (usize, usize) {
        let registry = self.lock();
        (registry.rooms.peer_count(), registry.rooms.room_count())
    }
}

/// Queues each delivery for its recipient. A message that would take a queue past
/// `max-queued-bytes` is dropped and overflows it: that client is not reading, and its
/// connection closes it.
fn deliver(registry: &Registry, out: Deliveries) {
    for (to, text) in out {
        if let Some(queue) = registry.queues.get(&to) {
            let _ = queue.push(text);
        }
    }
}

/// Serves one WebSocket in `namespace` until it closes, fails the heartbeat or shutdown.
/// `only_room`: the one room a room-bound token allows.
pub async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    namespace: String,
    only_room: Option<String>,
    slot: Slot,
    shutdown: CancellationToken,
) {
    let id = protocol::new_peer_id();
    let config = hub.config();
    let (queue, mut outbox) = outbox::channel::<String>(config.max_queued_bytes);
    let overflow = outbox.overflow();
    {
        let mut registry = hub.lock();
        registry.rooms.connect(id.clone(), &namespace);
        registry.queues.insert(id.clone(), queue.clone());
    }
    let (mut sink, mut stream) = socket.split();
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut bucket = Bucket::new(
        config.messages_per_second,
        Duration::from_secs(1),
        Instant::now(),
    );
    let ip = slot.ip;
    // A write that did not finish within WRITE_TIMEOUT: the client is not reading.
    let mut stuck = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = overflow.cancelled() => break,
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.heartbeat_timeout {
                    tracing::debug!(peer = %id, "heartbeat timeout");
                    hub.heartbeat_drops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                let ping = sink.send(Message::Ping(Default::default()));
                match write(&overflow, ping).await {
                    Write::Sent => {}
                    Write::TimedOut => { stuck = true; break }
                    Write::Failed | Write::Overflowed => break,
                }
            }
            Some(text) = outbox.recv() => {
                let sent = sink.send(Message::Text(text.into()));
                match write(&overflow, sent).await {
                    Write::Sent => {}
                    Write::TimedOut => { stuck = true; break }
                    Write::Failed | Write::Overflowed => break,
                }
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break };
                last_heard = Instant::now();
                let reply = match frame {
                    Message::Text(text) => {
                        let me = Me { id: &id, namespace: &namespace, ip, only_room: only_room.as_deref() };
                        handle_text(&hub, &me, &mut bucket, &config, text.as_str()).await
                    }
                    // Counted against the message rate too, or binary frames would be a
                    // way around it.
                    Message::Binary(_) => over_rate(&hub, &mut bucket, &config).or_else(|| {
                        Some(SignalError::new(
                            ErrorCode::BadMessage,
                            "send JSON text frames, not binary",
                        ))
                    }),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(error) = reply {
                    let _ = queue.push(error.to_json());
                }
            }
        }
    }
    leave_room(&hub, &id, true).await;
    if stuck || overflow.is_cancelled() {
        hub.slow_consumers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(peer = %id, "closing a client that does not read");
    }
    if stuck || overflow.is_cancelled() {
        // What was queued goes now, not when the close frame is out.
        drop((queue, outbox));
        let reason = if overflow.is_cancelled() {
            format!(
                "more than {} bytes queued: the client is not reading",
                config.max_queued_bytes
            )
        } else {
            format!(
                "a write waited {} s: the client is not reading",
                WRITE_TIMEOUT.as_secs()
            )
        };
        // Behind what the client has not read yet; it finds the reason once it reads again,
        // unless that takes longer than one more WRITE_TIMEOUT.
        let close = sink.send(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: reason.into(),
        })));
        let _ = tokio::time::timeout(WRITE_TIMEOUT, close).await;
    }
    drop(slot);
}

/// What became of one write to the client.
enum Write {
    Sent,
    /// The connection failed.
    Failed,
    /// It took longer than [`WRITE_TIMEOUT`]: the client is not reading.
    TimedOut,
    /// The outbox overflowed meanwhile: the client is not reading.
    Overflowed,
}

/// Awaits one write, unless the outbox overflows first.
async fn write<E>(
    overflow: &CancellationToken,
    write: impl Future<Output = Result<(), E>>,
) -> Write {
    tokio::select! {
        biased;
        _ = overflow.cancelled() => Write::Overflowed,
        sent = tokio::time::timeout(WRITE_TIMEOUT, write) => match sent {
            Ok(Ok(())) => Write::Sent,
            Ok(Err(_)) => Write::Failed,
            Err(_) => Write::TimedOut,
        },
    }
}

/// `id` leaves its room (`closing`: and its connection is gone): the local members are told
/// at once, the other nodes through the cluster, within one membership change.
async fn leave_room(hub: &Hub, id: &str, closing: bool) {
    let _gate = hub.membership_change().await;
    let left = {
        let mut registry = hub.lock();
        let left = registry.rooms.membership(id);
        let out = if closing {
            registry.queues.remove(id);
            registry.rooms.disconnect(id)
        } else {
            registry.rooms.leave(id)
        };
        deliver(&registry, out);
        left
    };
    if let (Some(cluster), Some(key)) = (hub.cluster(), left) {
        let _ = cluster.leave(&key, id).await;
    }
}

/// Who sent a frame.
struct Me<'a> {
    id: &'a str,
    namespace: &'a str,
    ip: IpAddr,
    /// The one room a room-bound token allows.
    only_room: Option<&'a str>,
}

/// Spends one message of the connection's `messages-per-second`; the error past it.
fn over_rate(hub: &Hub, bucket: &mut Bucket, config: &SignalConfig) -> Option<SignalError> {
    if bucket.take(Instant::now()) {
        return None;
    }
    hub.rate_limited
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(SignalError::new(
        ErrorCode::RateLimited,
        format!(
            "more than {} messages per second",
            config.messages_per_second
        ),
    ))
}

/// One text frame, with the error sent back (if any) counted by code.
async fn handle_text(
    hub: &Hub,
    me: &Me<'_>,
    bucket: &mut Bucket,
    config: &SignalConfig,
    text: &str,
) -> Option<SignalError> {
    let error = answer_text(hub, me, bucket, config, text).await;
    if let Some(error) = &error {
        hub.refusals.error(error.code);
    }
    error
}

/// One text frame: limits first, then what it asks for. Returns an error to send back.
async fn answer_text(
    hub: &Hub,
    me: &Me<'_>,
    bucket: &mut Bucket,
    config: &SignalConfig,
    text: &str,
) -> Option<SignalError> {
    if let Some(refused) = over_rate(hub, bucket, config) {
        return Some(refused);
    }
    if text.len() > config.max_message_size {
        return Some(SignalError::new(
            ErrorCode::TooLarge,
            format!(
                "{} bytes; the limit is {}",
                text.len(),
                config.max_message_size
            ),
        ));
    }
    let message = match protocol::parse(text) {
        Ok(m) => m,
        Err(e) => return Some(e),
    };
    let id = me.id;
    let result = match message {
        ClientMessage::Join { room } => {
            // Every join costs (a `peers` reply mints TURN credentials), refused ones too.
            if !hub.take_join(me.ip) {
                return Some(SignalError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} joins per minute from this address; try again later",
                        hub.lock_joins().rate()
                    ),
                ));
            }
            if me.only_room.is_some_and(|allowed| allowed != room) {
                return Some(SignalError::new(
                    ErrorCode::Unauthorized,
                    "this token is for another room",
                ));
            }
            join(hub, me, &room).await
        }
        ClientMessage::Leave => {
            leave_room(hub, id, false).await;
            Ok(())
        }
        ClientMessage::Ping => {
            let registry = hub.lock();
            deliver(&registry, vec![(id.to_owned(), protocol::pong())]);
            Ok(())
        }
        ClientMessage::Relay { to } => relay(hub, me, &to, text, config.max_message_size).await,
    };
    result.err()
}

/// A join: room-wide through the cluster when it is up, on this node alone when the link
/// is down; a link that breaks during the join is `unavailable` (the join may or may not
/// have reached Redis; the membership sync settles which).
async fn join(hub: &Hub, me: &Me<'_>, room: &str) -> Result<(), SignalError> {
    let _gate = hub.membership_change().await;
    let ice = hub.ice_servers(me.id);
    let key = (me.namespace.to_owned(), room.to_owned());
    let old = hub.lock().rooms.membership(me.id);
    let cluster = hub.cluster().filter(|_| old.as_ref() != Some(&key));
    let admission = match cluster {
        Some(cluster) => {
            let max = hub.config().max_peers_per_room;
            hub.lock().rooms.begin_join(me.id, &key);
            cluster.join(&key, old.as_ref(), me.id, max).await
        }
        None => Err(Failure::Down),
    };
    let mut registry = hub.lock();
    let joined = match admission {
        Ok(Admission::Admitted(remote)) => registry.rooms.join_admitted(me.id, room, &ice, &remote),
        Ok(Admission::Full(members)) => Err(SignalError::new(
            ErrorCode::RoomFull,
            format!("room {room:?} has {members} peers, the most it holds"),
        )),
        Err(Failure::Down) => registry.rooms.join(me.id, room, &ice),
        Err(Failure::Broken) => Err(SignalError::new(
            ErrorCode::Unavailable,
            "the link to the other nodes broke during the join; try again",
        )),
    };
    // Whatever came of it: messages held for the joiner follow its `peers` reply.
    let held = registry.rooms.end_join(me.id);
    let mut out = joined?;
    out.extend(held);
    deliver(&registry, out);
    Ok(())
}

/// An offer, answer or candidate (`text`, as sent): to a local peer directly, to a remote
/// one via its node, as the sender's bytes with `from` added, never more than `max_size`.
async fn relay(
    hub: &Hub,
    me: &Me<'_>,
    to: &str,
    text: &str,
    max_size: usize,
) -> Result<(), SignalError> {
    let (relayed, key) = {
        let registry = hub.lock();
        let relayed = registry.rooms.relay(me.id, to, text)?;
        if relayed.text.len() > max_size {
            hub.relays_too_large
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(SignalError::new(
                ErrorCode::TooLarge,
                format!(
                    "{} bytes with \"from\" added; the limit is {max_size}",
                    relayed.text.len()
                ),
            ));
        }
        if relayed.node.is_none() {
            hub.relayed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            deliver(&registry, vec![(relayed.to, relayed.text)]);
            return Ok(());
        }
        (relayed, registry.rooms.membership(me.id))
    };
    let (Some(node), Some((ns, room)), Some(cluster)) = (relayed.node, key, hub.cluster()) else {
        return Err(SignalError::new(
            ErrorCode::UnknownPeer,
            format!("no peer {}", protocol::shown(to)),
        ));
    };
    let envelope = Envelope {
        ns,
        room: room.clone(),
        to: relayed.to,
        text: relayed.text,
    };
    match cluster.relay(&node, &envelope).await {
        Ok(true) => {
            hub.relayed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Ok(false) => Err(SignalError::new(
            ErrorCode::UnknownPeer,
            format!(
                "no peer {} in room {room:?}: its node is gone",
                protocol::shown(to)
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
