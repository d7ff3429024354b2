//! The link to Redis: one task that connects (and reconnects with backoff), keeps this
//! node's presence alive, hears the other nodes' events and messages, and every ¼
//! `presence-ttl` re-reads the membership of the rooms this node has peers in. The
//! connection tasks call [`Cluster`]'s methods; while the link is down they fail at once and
//! the hub serves its local peers alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Envelope, Event};
use crate::signal::protocol::PeerId;
use crate::signal::rooms::{NodeId, RoomKey};
use crate::signal::ws::Hub;

/// How long a Redis command may take before the link counts as broken.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a join asked of the cluster came to.
#[derive(Debug)]
pub enum Admission {
    /// In; the room's live members on other nodes.
    Admitted(Vec<(PeerId, NodeId)>),
    /// The room holds this many peers across all nodes already.
    Full(usize),
}

/// The link is down: the caller serves locally.
#[derive(Debug)]
pub struct Down;

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

struct Session {
    conn: MultiplexedConnection,
    name: NodeId,
}

/// The shared handle on the Redis link.
pub struct Cluster {
    client: redis::Client,
    url: String,
    node_id: String,
    ttl: Duration,
    session: Mutex<Option<Session>>,
    up: AtomicBool,
    down_since: Mutex<Option<Instant>>,
    broken: Notify,
    join: redis::Script,
    members: redis::Script,
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
}

impl Cluster {
    /// A handle for `url` (checked by config validation); the link starts with [`run`].
    pub fn new(url: &str, node_id: String, ttl: Duration) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            url: wire::redact(url),
            node_id,
            ttl,
            session: Mutex::new(None),
            up: AtomicBool::new(false),
            down_since: Mutex::new(Some(Instant::now())),
            broken: Notify::new(),
            join: redis::Script::new(wire::JOIN),
            members: redis::Script::new(wire::MEMBERS),
            stats: ClusterStats::default(),
        })
    }

    /// Up or down, for `/healthz` and `/metrics`.
    pub fn status(&self) -> Status {
        let down_since = *self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        Status {
            node_id: self.node_id.clone(),
            up: self.up.load(Relaxed),
            down_for: down_since.map(|t| t.elapsed().as_secs()),
        }
    }

    /// Whether `node` is a session of this node (now or before a reconnect).
    pub fn is_mine(&self, node: &str) -> bool {
        node.strip_prefix(self.node_id.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    fn session(&self) -> Result<(MultiplexedConnection, NodeId), Down> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        session
            .as_ref()
            .map(|s| (s.conn.clone(), s.name.clone()))
            .ok_or(Down)
    }

    /// A command failed: the link is broken; the task reconnects.
    fn failed(&self, what: &str, error: &dyn std::fmt::Display) -> Down {
        self.stats.errors.fetch_add(1, Relaxed);
        tracing::warn!(redis = %self.url, "cluster: {what} failed: {error}");
        self.mark_down();
        self.broken.notify_one();
        Down
    }

    fn mark_down(&self) {
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.up.swap(false, Relaxed) {
            *self.down_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    fn room_ttl_ms(&self) -> u128 {
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
    ) -> Result<Admission, Down> {
        let (mut conn, node) = self.session()?;
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
            Err(e) => return Err(self.failed("join", &e)),
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
            _ => Err(self.failed("join", &"unexpected reply from the join script")),
        }
    }

    /// `peer` left `key`: out of the room's hash, and a `Left` event for the other nodes.
    pub async fn leave(&self, key: &RoomKey, peer: &str) -> Result<(), Down> {
        let (mut conn, node) = self.session()?;
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
            Err(e) => Err(self.failed("leave", &e)),
        }
    }

    /// Sends a relayed message to `node`; `false` when no node is listening there (it died).
    pub async fn relay(&self, node: &str, envelope: &Envelope) -> Result<bool, Down> {
        let (mut conn, _) = self.session()?;
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
            Err(e) => Err(self.failed("relay", &e)),
        }
    }
}

/// A Redis call with [`COMMAND_TIMEOUT`].
async fn timed<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {COMMAND_TIMEOUT:?}")),
    }
}

/// Runs the link until shutdown: connect, serve a session, and after a failure reconnect
/// with a backoff from 100 ms doubling to 5 s.
pub async fn run(cluster: Arc<Cluster>, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures: u64 = 0;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&cluster) => c,
        };
        match connected {
            Ok((conn, pubsub, name)) => {
                if failures > 0 {
                    tracing::info!(redis = %cluster.url, node = %name, "cluster: reconnected");
                } else {
                    tracing::info!(redis = %cluster.url, node = %name, "cluster: connected");
                }
                backoff = FIRST_BACKOFF;
                failures = 0;
                session(&cluster, &hub, conn, pubsub, name, &shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                cluster.stats.errors.fetch_add(1, Relaxed);
                failures += 1;
                // Said once, then every 30 attempts: an outage does not flood the log.
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(redis = %cluster.url, attempts = failures,
                        "cluster: cannot reach Redis ({e}); serving local peers only, retrying");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(
    cluster: &Cluster,
) -> Result<(MultiplexedConnection, redis::aio::PubSub, NodeId), String> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    let mut conn = timed(
        cluster
            .client
            .get_multiplexed_async_connection_with_config(&config),
    )
    .await?;
    let mut pubsub = timed(cluster.client.get_async_pubsub()).await?;
    let name = wire::session_name(&cluster.node_id);
    timed(pubsub.subscribe(wire::EVENTS)).await?;
    timed(pubsub.subscribe(wire::inbox(&name))).await?;
    alive(cluster, &mut conn, &name).await?;
    Ok((conn, pubsub, name))
}

async fn session(
    cluster: &Arc<Cluster>,
    hub: &Arc<Hub>,
    mut conn: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
    name: NodeId,
    shutdown: &CancellationToken,
) {
    let connected_at = Instant::now();
    *cluster.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(Session {
        conn: conn.clone(),
        name: name.clone(),
    });
    cluster.stats.connects.fetch_add(1, Relaxed);
    if let Err(e) = register(cluster, hub, &mut conn, &name).await {
        cluster.failed("registering local peers", &e);
        return;
    }
    cluster.up.store(true, Relaxed);
    *cluster.down_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let mut messages = pubsub.into_on_message();
    let mut tick = tokio::time::interval(cluster.ttl / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Leaving on purpose: the other nodes drop this node's peers at their next sync.
                let del = redis::cmd("DEL").arg(wire::presence_key(&name)).to_owned();
                let _ = timed(del.query_async::<()>(&mut conn)).await;
                cluster.mark_down();
                return;
            }
            _ = cluster.broken.notified() => return,
            message = messages.next() => {
                let Some(message) = message else {
                    cluster.failed("subscription", &"Redis closed the connection");
                    return;
                };
                heard(cluster, hub, &name, &message);
            }
            _ = tick.tick() => {
                match alive(cluster, &mut conn, &name).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(node = %name, "cluster: presence had expired; registering again");
                        cluster.mark_down();
                        return;
                    }
                    Err(e) => {
                        cluster.failed("presence refresh", &e);
                        return;
                    }
                }
                // Right after a (re)connect the other nodes may still be registering
                // their peers: only add what is new until one TTL has passed.
                let removals = connected_at.elapsed() >= cluster.ttl;
                if let Err(e) = sync(cluster, hub, &mut conn, removals).await {
                    cluster.failed("room sync", &e);
                    return;
                }
            }
        }
    }
}

/// Refreshes presence; `Ok(false)` when the key had expired before this refresh.
async fn alive(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    name: &str,
) -> Result<bool, String> {
    let ttl_ms = (cluster.ttl * 3 / 4).as_millis().to_string();
    let set = redis::cmd("SET")
        .arg(wire::presence_key(name))
        .arg("1")
        .arg("PX")
        .arg(&ttl_ms)
        .arg("GET")
        .to_owned();
    let previous: Option<String> = timed(set.query_async(conn)).await?;
    Ok(previous.is_some())
}

/// Puts every local peer into its room's hash under this session, and tells the others.
async fn register(
    cluster: &Cluster,
    hub: &Hub,
    conn: &mut MultiplexedConnection,
    name: &str,
) -> Result<(), String> {
    for (key, peers) in hub.local_rooms() {
        let room = wire::room_key(&key);
        let mut pipe = redis::pipe();
        for peer in &peers {
            let joined = Event::Joined {
                node: name.to_owned(),
                ns: key.0.clone(),
                room: key.1.clone(),
                peer: peer.clone(),
            };
            pipe.cmd("HSET").arg(&room).arg(peer).arg(name).ignore();
            pipe.cmd("PUBLISH")
                .arg(wire::EVENTS)
                .arg(joined.to_json())
                .ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&room)
            .arg(cluster.room_ttl_ms().to_string())
            .ignore();
        timed(pipe.query_async::<()>(conn)).await?;
    }
    Ok(())
}

/// Re-reads the live membership of every room with a local peer and applies it.
async fn sync(
    cluster: &Cluster,
    hub: &Hub,
    conn: &mut MultiplexedConnection,
    removals: bool,
) -> Result<(), String> {
    for (key, _) in hub.local_rooms() {
        let mut call = cluster.members.key(wire::room_key(&key));
        call.arg(wire::PRESENCE_PREFIX)
            .arg(cluster.room_ttl_ms().to_string());
        let flat: Vec<String> = timed(call.invoke_async(conn)).await?;
        let remote: Vec<(PeerId, NodeId)> = wire::pairs(&flat)
            .into_iter()
            .filter(|(_, n)| !cluster.is_mine(n))
            .collect();
        hub.cluster_sync(&key, &remote, removals);
    }
    Ok(())
}

/// One message from a subscription: an event of another node, or a relay for a local peer.
fn heard(cluster: &Cluster, hub: &Hub, name: &str, message: &redis::Msg) {
    let payload = message.get_payload_bytes();
    if message.get_channel_name() == wire::EVENTS {
        let Some(event) = Event::parse(payload) else {
            cluster.stats.malformed.fetch_add(1, Relaxed);
            return;
        };
        if cluster.is_mine(event.node()) {
            return;
        }
        cluster.stats.events.fetch_add(1, Relaxed);
        hub.cluster_event(&event);
    } else if message.get_channel_name() == wire::inbox(name) {
        match Envelope::parse(payload) {
            Some(envelope) => {
                if hub.cluster_deliver(envelope) {
                    cluster.stats.relayed_in.fetch_add(1, Relaxed);
                }
            }
            None => {
                cluster.stats.malformed.fetch_add(1, Relaxed);
            }
        }
    }
}
