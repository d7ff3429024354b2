//! The link to Redis: one task that connects (and reconnects with backoff), keeps this
//! node's presence and its hold on its `node-id` alive, hears the other nodes' events and
//! messages, and every ¼ `presence-ttl` re-reads the membership of the rooms this node has
//! peers in (putting its own entries right on the way). The connection tasks call
//! [`Cluster`]'s methods; while the link is down they fail at once and the hub serves its
//! local peers alone.
//!
//! Each connect is a new *session* with its own name and its own end: a command that fails
//! ends the session it was sent on, never a later one.
//!
//! A join or leave changes the hub and then Redis; the link's sync and re-registration read
//! the hub and then write Redis. [`Cluster::membership_change`] keeps the two apart, so a
//! snapshot never falls between a change and its Redis call (which would write a peer that
//! just left back into its room).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
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
/// Rooms re-read in one pipelined round trip.
const SYNC_BATCH: usize = 256;

/// What a join asked of the cluster came to.
#[derive(Debug)]
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
struct Session {
    conn: MultiplexedConnection,
    name: NodeId,
    /// Which connect this is (see [`Cluster::failed`]).
    number: u64,
    /// Cancelled when the session ends, for the link task.
    ended: CancellationToken,
}

/// The shared handle on the Redis link.
pub struct Cluster {
    client: redis::Client,
    url: String,
    node_id: String,
    ttl: Duration,
    session: Mutex<Option<Session>>,
    sessions: AtomicU64,
    /// Since when the link is down; `None` while it is up.
    down_since: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    /// Read: a connection task's membership change; write: the link's snapshot and send.
    gate: tokio::sync::RwLock<()>,
    join: redis::Script,
    members: redis::Script,
    alive: redis::Script,
    bye: redis::Script,
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
    /// A handle for `url` (checked by config validation); the link starts with [`run`].
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
    fn failed(&self, number: u64, what: &str, error: &dyn std::fmt::Display) -> Failure {
        self.stats.errors.fetch_add(1, Relaxed);
        tracing::warn!(redis = %self.url, "cluster: {what} failed: {error}");
        *lock(&self.last_error) = Some(format!("{what} failed: {error}"));
        self.end(number);
        Failure::Broken
    }

    /// Session `number` is serving, unless it already ended (a connection task's command
    /// failed while it was registering): then `false`, and the link stays down.
    fn mark_up(&self, number: u64) -> bool {
        let session = lock(&self.session);
        if session.as_ref().is_none_or(|s| s.number != number) {
            return false;
        }
        *lock(&self.down_since) = None;
        *lock(&self.last_error) = None;
        true
    }

    /// Ends session `number` if it is still the one in force.
    fn end(&self, number: u64) {
        let mut session = lock(&self.session);
        if session.as_ref().is_some_and(|s| s.number == number) {
            if let Some(s) = session.take() {
                s.ended.cancel();
            }
            lock(&self.down_since).get_or_insert_with(Instant::now);
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

/// A mutex's guard, poisoned or not (every value behind these locks is valid at all times).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

/// A connected session, not yet serving.
struct Connected {
    conn: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
    name: NodeId,
    /// [`wire::EPOCH`] as found.
    epoch: String,
}

/// Runs the link until shutdown: connect, serve a session, and after a failure reconnect
/// with a backoff from 100 ms doubling to 5 s.
pub async fn run(cluster: Arc<Cluster>, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures: u64 = 0;
    // Earlier sessions of this process not yet dropped from Redis, newest last.
    let mut earlier: Vec<NodeId> = Vec::new();
    let mut epoch: Option<String> = None;
    let mut lost_at: Option<Instant> = None;
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&cluster, earlier.last().map(String::as_str)) => c,
        };
        match connected {
            Ok(connected) => {
                let name = connected.name.clone();
                if earlier.is_empty() {
                    tracing::info!(redis = %cluster.url, node = %name, "cluster: connected");
                } else {
                    tracing::info!(redis = %cluster.url, node = %name, "cluster: reconnected");
                }
                // The other nodes' presence may have lapsed meanwhile (Redis lost its data,
                // or was away longer than a presence lasts): they are registering again too,
                // so for one TTL nobody is taken for gone.
                let data_lost = epoch.as_ref().is_some_and(|e| *e != connected.epoch);
                let long_outage = lost_at.is_some_and(|t| t.elapsed() > cluster.ttl / 2);
                epoch = Some(connected.epoch.clone());
                backoff = FIRST_BACKOFF;
                failures = 0;
                let ctx = Serving {
                    cluster: &cluster,
                    hub: &hub,
                    shutdown: &shutdown,
                };
                serve(ctx, connected, &mut earlier, data_lost || long_outage).await;
                earlier.push(name);
                lost_at = Some(Instant::now());
                if shutdown.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                cluster.stats.errors.fetch_add(1, Relaxed);
                *lock(&cluster.last_error) = Some(e.clone());
                failures += 1;
                // Said once, then every 30 attempts: an outage does not flood the log.
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(redis = %cluster.url, attempts = failures,
                        "cluster: {e}; serving local peers only, retrying");
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

/// What a session serves with.
#[derive(Clone, Copy)]
struct Serving<'a> {
    cluster: &'a Arc<Cluster>,
    hub: &'a Arc<Hub>,
    shutdown: &'a CancellationToken,
}

async fn connect(cluster: &Cluster, previous: Option<&str>) -> Result<Connected, String> {
    let unreachable = |e: String| format!("cannot reach Redis ({e})");
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    let mut conn = timed(
        cluster
            .client
            .get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(unreachable)?;
    let mut pubsub = timed(cluster.client.get_async_pubsub())
        .await
        .map_err(unreachable)?;
    for script in [
        &cluster.join,
        &cluster.members,
        &cluster.alive,
        &cluster.bye,
    ] {
        timed(script.load_async(&mut conn))
            .await
            .map_err(unreachable)?;
    }
    let name = wire::session_name(&cluster.node_id);
    timed(pubsub.subscribe(wire::EVENTS))
        .await
        .map_err(unreachable)?;
    timed(pubsub.subscribe(wire::inbox(&name)))
        .await
        .map_err(unreachable)?;
    // Last: once this session holds the node-id, nothing here can fail any more.
    let claimed = alive(cluster, &mut conn, &name, previous).await;
    let epoch = match claimed.map_err(unreachable)? {
        Alive::Taken(holder) => {
            return Err(format!(
                "node-id {:?} is held by another running node (session {holder}); give each \
                 node its own [cluster] node-id (a node restarted within presence-ttl waits \
                 for its old session to expire)",
                cluster.node_id
            ));
        }
        Alive::Ok { epoch, .. } => epoch,
    };
    Ok(Connected {
        conn,
        pubsub,
        name,
        epoch,
    })
}

async fn serve(ctx: Serving<'_>, connected: Connected, earlier: &mut Vec<NodeId>, grace: bool) {
    let Serving {
        cluster,
        hub,
        shutdown,
    } = ctx;
    let Connected {
        mut conn,
        pubsub,
        name,
        ..
    } = connected;
    let number = cluster.sessions.fetch_add(1, Relaxed) + 1;
    let ended = CancellationToken::new();
    *lock(&cluster.session) = Some(Session {
        conn: conn.clone(),
        name: name.clone(),
        number,
        ended: ended.clone(),
    });
    cluster.stats.connects.fetch_add(1, Relaxed);
    // Every local peer into its room under the new session, and announced to the others.
    let grace_until = grace.then(|| Instant::now() + cluster.ttl);
    if let Err(e) = sync(cluster, hub, &mut conn, &name, !grace, true).await {
        cluster.failed(number, "registering local peers", &e);
        return;
    }
    // The earlier sessions' entries (and with them peers that left during the outage) go
    // with their presence keys.
    if !earlier.is_empty() {
        let del = redis::cmd("DEL")
            .arg(
                earlier
                    .iter()
                    .map(|n| wire::presence_key(n))
                    .collect::<Vec<_>>(),
            )
            .to_owned();
        if let Err(e) = timed(del.query_async::<()>(&mut conn)).await {
            cluster.failed(number, "dropping the previous session", &e);
            return;
        }
        earlier.clear();
    }
    if !cluster.mark_up(number) {
        return;
    }

    let inbox = wire::inbox(&name);
    let mut messages = pubsub.into_on_message();
    let mut tick = tokio::time::interval(cluster.ttl / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Leaving on purpose: the other nodes drop this node's peers at their next sync.
                let mut bye = cluster.bye.key(wire::presence_key(&name));
                bye.key(wire::claim_key(&cluster.node_id)).arg(&name);
                let _ = timed(bye.invoke_async::<i64>(&mut conn)).await;
                cluster.end(number);
                return;
            }
            _ = ended.cancelled() => return,
            message = messages.next() => {
                let Some(message) = message else {
                    cluster.failed(number, "subscription", &"Redis closed the connection");
                    return;
                };
                heard(cluster, hub, &inbox, &message);
            }
            _ = tick.tick() => {
                match alive(cluster, &mut conn, &name, None).await {
                    Ok(Alive::Ok { had: true, .. }) => {}
                    Ok(Alive::Ok { had: false, .. }) => {
                        tracing::warn!(node = %name, "cluster: presence had expired; registering again");
                        cluster.end(number);
                        return;
                    }
                    Ok(Alive::Taken(holder)) => {
                        cluster.failed(number, "presence refresh",
                            &format!("node-id {:?} was taken by session {holder}", cluster.node_id));
                        return;
                    }
                    Err(e) => {
                        cluster.failed(number, "presence refresh", &e);
                        return;
                    }
                }
                let removals = grace_until.is_none_or(|t| Instant::now() >= t);
                if let Err(e) = sync(cluster, hub, &mut conn, &name, removals, false).await {
                    cluster.failed(number, "room sync", &e);
                    return;
                }
            }
        }
    }
}

/// What a presence refresh found.
enum Alive {
    /// Refreshed; `had`: the presence key was still there; `epoch`: [`wire::EPOCH`].
    Ok { had: bool, epoch: String },
    /// Another session holds this `node-id`.
    Taken(String),
}

/// Refreshes presence and the `node-id` claim (which `previous` may hand over).
async fn alive(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    name: &str,
    previous: Option<&str>,
) -> Result<Alive, String> {
    let ttl_ms = (cluster.ttl * 3 / 4).as_millis().to_string();
    let fresh: u64 = crate::random::os_random();
    let mut call = cluster.alive.key(wire::presence_key(name));
    call.key(wire::claim_key(&cluster.node_id))
        .key(wire::EPOCH)
        .arg(name)
        .arg(&ttl_ms)
        .arg(format!("{fresh:016x}"))
        .arg(previous.unwrap_or_default());
    let reply: Vec<String> = timed(call.invoke_async(conn)).await?;
    match reply.as_slice() {
        [status, holder] if status == "taken" => Ok(Alive::Taken(holder.clone())),
        [status, had, epoch] if status == "ok" => Ok(Alive::Ok {
            had: had == "1",
            epoch: epoch.clone(),
        }),
        _ => Err("unexpected reply from the presence script".to_owned()),
    }
}

/// Re-reads the live membership of every room with a local peer (or a pending join) and
/// applies it; the script also puts this session's own entries right, so on a new session
/// it registers every local peer, and with `announce` their `Joined` events go to the other
/// nodes too. Pipelined, so a node with many rooms takes one round trip per [`SYNC_BATCH`].
async fn sync(
    cluster: &Cluster,
    hub: &Hub,
    conn: &mut MultiplexedConnection,
    name: &str,
    removals: bool,
    announce: bool,
) -> Result<(), String> {
    let _snapshot = cluster.gate.write().await;
    let rooms = hub.local_rooms();
    let ttl_ms = cluster.room_ttl_ms().to_string();
    for batch in rooms.chunks(SYNC_BATCH) {
        let mut pipe = redis::pipe();
        for local in batch {
            pipe.cmd("EVALSHA")
                .arg(cluster.members.get_hash())
                .arg(1)
                .arg(wire::room_key(&local.key))
                .arg(wire::PRESENCE_PREFIX)
                .arg(&ttl_ms)
                .arg(name)
                .arg(local.peers.len())
                .arg(&local.peers)
                .arg(&local.joining);
            for peer in local.peers.iter().filter(|_| announce) {
                let joined = Event::Joined {
                    node: name.to_owned(),
                    ns: local.key.0.clone(),
                    room: local.key.1.clone(),
                    peer: peer.clone(),
                };
                pipe.cmd("PUBLISH")
                    .arg(wire::EVENTS)
                    .arg(joined.to_json())
                    .ignore();
            }
        }
        let replies: Vec<Vec<String>> = match pipelined(&pipe, conn).await {
            // The scripts were flushed (SCRIPT FLUSH, a failover behind a proxy): load
            // them again and retry once, rather than end the session.
            Err(e) if e.code() == Some("NOSCRIPT") => {
                timed(cluster.members.load_async(conn)).await?;
                pipelined(&pipe, conn).await.map_err(|e| e.to_string())?
            }
            reply => reply.map_err(|e| e.to_string())?,
        };
        for (local, flat) in batch.iter().zip(replies) {
            let remote: Vec<(PeerId, NodeId)> = wire::pairs(&flat)
                .into_iter()
                .filter(|(_, n)| !cluster.is_mine(n))
                .collect();
            hub.cluster_sync(&local.key, &remote, removals);
        }
    }
    Ok(())
}

/// A pipeline with [`COMMAND_TIMEOUT`], keeping Redis's error as it is.
async fn pipelined<T: redis::FromRedisValue>(
    pipe: &redis::Pipeline,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async(conn)).await {
        Ok(reply) => reply,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer in {COMMAND_TIMEOUT:?}"),
        ))),
    }
}

/// One message from a subscription: an event of another node, or a relay for a local peer.
fn heard(cluster: &Cluster, hub: &Hub, inbox: &str, message: &redis::Msg) {
    let payload = message.get_payload_bytes();
    let channel = message.get_channel_name();
    if channel == wire::EVENTS {
        let Some(event) = Event::parse(payload) else {
            cluster.stats.malformed.fetch_add(1, Relaxed);
            return;
        };
        if cluster.is_mine(event.node()) {
            return;
        }
        cluster.stats.events.fetch_add(1, Relaxed);
        hub.cluster_event(&event);
    } else if channel == inbox {
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
