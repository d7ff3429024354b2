//! The [`Hub`]: what every signaling connection on this node shares. It owns the room
//! registry ([`Rooms`]) with one outbox per connected peer, and routes the registry's
//! deliveries into those outboxes; it counts connections (per address too), joins and
//! refusals, and holds the settings in force and the cluster handle.
//!
//! It never awaits and never talks to Redis: a session (`session.rs`) changes the registry
//! through it, the cross-node steps (`join.rs`) call the cluster and then change it, and
//! the Redis link (`cluster/link.rs`) reads and updates it through [`LocalNode`]. It names
//! none of them (the cluster only as the [`Cluster`] handle it holds for them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use serde_json::Value;

use super::cluster::api::{Calls, LocalNode};
use super::cluster::handle::Cluster;
use super::cluster::wire::{Envelope, Event};
use super::limits::JoinLimiter;
use super::protocol::PeerId;
use super::refusals::Refusals;
use super::rooms::{Deliveries, LocalRoom, NodeId, RoomKey, Rooms};
use crate::client_key::client_key;
use crate::config::SignalConfig;
use crate::outbox;

/// Makes the `iceServers` list for a `peers` reply (fresh credentials each time) for the
/// REST user part given: the peer ID, so each peer's allocations count as its own.
pub type IceServersFn = Box<dyn Fn(&str) -> Value + Send + Sync>;

/// The room registry and the outbox of every connected peer, behind one lock.
pub(crate) struct Registry {
    pub(crate) rooms: Rooms,
    queues: HashMap<PeerId, outbox::Sender<String>>,
}

impl Registry {
    /// Queues each delivery for its recipient. A message that would take a queue past
    /// `max-queued-bytes` is dropped and overflows it: that client is not reading, and its
    /// connection closes it.
    pub(crate) fn deliver(&self, out: Deliveries) {
        for (to, text) in out {
            if let Some(queue) = self.queues.get(&to) {
                let _ = queue.push(text);
            }
        }
    }

    /// `id` enters the registry in `namespace`, with `queue` as its outbox.
    pub(crate) fn connect(&mut self, id: &str, namespace: &str, queue: outbox::Sender<String>) {
        self.rooms.connect(id.to_owned(), namespace);
        self.queues.insert(id.to_owned(), queue);
    }

    /// `id` leaves the registry (and its room): what to tell the others.
    pub(crate) fn disconnect(&mut self, id: &str) -> Deliveries {
        self.queues.remove(id);
        self.rooms.disconnect(id)
    }
}

/// What the signaling connections count, for `/metrics`.
#[derive(Default)]
pub(crate) struct Counters {
    /// Messages relayed between peers (local and across nodes).
    pub(crate) relayed: AtomicU64,
    /// Clients dropped by the heartbeat.
    pub(crate) heartbeat_drops: AtomicU64,
    /// Messages refused for `messages-per-second`.
    pub(crate) rate_limited: AtomicU64,
    /// Joins refused for `joins-per-minute-per-ip`.
    joins_refused: AtomicU64,
    /// Upgrades refused (HTTP 503) for `max-connections` or `max-connections-per-ip`.
    connections_refused: AtomicU64,
    /// Connections closed for not reading.
    pub(crate) slow_consumers: AtomicU64,
    /// Relays refused because the message with `from` added passed `max-message-size`.
    pub(crate) relays_too_large: AtomicU64,
}

/// What every signaling connection shares.
pub struct Hub {
    registry: Mutex<Registry>,
    connections: Mutex<(usize, HashMap<IpAddr, usize>)>,
    config: RwLock<Arc<SignalConfig>>,
    ice_servers: IceServersFn,
    joins: Mutex<JoinLimiter>,
    pub(crate) counters: Counters,
    cluster: OnceLock<Arc<Cluster>>,
    /// What the cross-node steps call: the cluster, or a fake in unit tests.
    calls: OnceLock<Arc<dyn Calls>>,
    /// Origin and token refusals, and error frames sent, for `/metrics`.
    pub refusals: Refusals,
}

/// Holds one connection slot; gives it back when dropped.
pub struct Slot {
    hub: Arc<Hub>,
    ip: IpAddr,
}

impl Slot {
    /// The address the slot counts against (an IPv6 client by its /64).
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
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
            config: RwLock::new(Arc::new(config)),
            ice_servers,
            counters: Counters::default(),
            cluster: OnceLock::new(),
            calls: OnceLock::new(),
            refusals: Refusals::default(),
        }
    }

    /// Shares rooms with other nodes through `cluster` from now on (set once, at start).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        self.set_calls(Arc::clone(&cluster) as Arc<dyn Calls>);
        let _ = self.cluster.set(cluster);
    }

    /// What the cross-node steps call from now on (set once): [`Hub::set_cluster`] sets it
    /// to the cluster; unit tests set a fake.
    pub(crate) fn set_calls(&self, calls: Arc<dyn Calls>) {
        let _ = self.calls.set(calls);
    }

    /// The Redis link, when `[cluster]` is configured.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// What a join, leave or relay across nodes calls; `None` without a cluster.
    pub(crate) fn calls(&self) -> Option<Arc<dyn Calls>> {
        self.calls.get().cloned()
    }

    /// Every room with a local peer or a pending join, with those peers.
    pub fn local_rooms(&self) -> Vec<LocalRoom> {
        self.lock().rooms.local_rooms()
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
            self.counters.connections_refused.fetch_add(1, Relaxed);
            return None;
        }
        *total += 1;
        per_ip.insert(ip, mine + 1);
        Some(Slot {
            hub: Arc::clone(self),
            ip,
        })
    }

    /// The registry, for one quick change (never held across an await).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry> {
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
            self.counters.joins_refused.fetch_add(1, Relaxed);
        }
        taken
    }

    /// The joins per minute an address may make now.
    pub(crate) fn join_rate(&self) -> u32 {
        self.lock_joins().rate()
    }

    /// Messages refused for `messages-per-second`, and joins for `joins-per-minute-per-ip`.
    pub fn refusals(&self) -> (u64, u64) {
        (
            self.counters.rate_limited.load(Relaxed),
            self.counters.joins_refused.load(Relaxed),
        )
    }

    /// Upgrades refused for `max-connections` or `max-connections-per-ip` (HTTP 503).
    pub fn connections_refused(&self) -> u64 {
        self.counters.connections_refused.load(Relaxed)
    }

    fn lock_connections(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open, messages relayed between peers, clients dropped by the heartbeat.
    pub fn traffic(&self) -> (usize, u64, u64) {
        let open = self.lock_connections().0;
        (
            open,
            self.counters.relayed.load(Relaxed),
            self.counters.heartbeat_drops.load(Relaxed),
        )
    }

    /// Connections closed for not reading (`max-queued-bytes`, or a write stuck for
    /// the session's `WRITE_TIMEOUT`), and relays refused because
    /// the message with `from` added would pass `max-message-size`.
    pub fn overflows(&self) -> (u64, u64) {
        (
            self.counters.slow_consumers.load(Relaxed),
            self.counters.relays_too_large.load(Relaxed),
        )
    }

    /// Connected peers and non-empty rooms, for logs and health.
    pub fn counts(&self) -> (usize, usize) {
        let registry = self.lock();
        (registry.rooms.peer_count(), registry.rooms.room_count())
    }
}

impl LocalNode for Hub {
    fn local_rooms(&self) -> Vec<LocalRoom> {
        Hub::local_rooms(self)
    }

    fn cluster_sync(&self, key: &RoomKey, remote: &[(PeerId, NodeId)], removals: bool) {
        let mut registry = self.lock();
        let out = registry.rooms.sync_room(key, remote, removals);
        registry.deliver(out);
    }

    fn cluster_event(&self, event: &Event) {
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
        registry.deliver(out);
    }

    fn cluster_deliver(&self, envelope: Envelope) -> bool {
        let mut registry = self.lock();
        let key = (envelope.ns, envelope.room);
        match registry
            .rooms
            .deliver_remote(&key, &envelope.to, envelope.text)
        {
            Some(out) => {
                registry.deliver(out);
                true
            }
            None => false,
        }
    }
}
