//! The link to Redis: one task that connects (and reconnects with backoff), keeps this
//! node's presence and its hold on its `node-id` alive, hears the other nodes' events and
//! messages, and every ¼ `presence-ttl` re-reads the membership of the rooms this node has
//! peers in (putting its own entries right on the way). Each connect installs a new
//! session in the shared handle ([`Cluster`], in `handle.rs`), which the cross-node
//! steps call; while the link is down those calls fail at once and the hub serves its
//! local peers alone. What the link hears goes to the hub through [`LocalNode`]: this file
//! names neither the hub nor a session.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::api::LocalNode;
use super::handle::{COMMAND_TIMEOUT, Session, lock, timed};
pub use super::handle::{Cluster, ClusterStats, Status};
use super::wire::{self, Envelope, Event};
use crate::signal::protocol::PeerId;
use crate::signal::rooms::NodeId;

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest wait between reconnect attempts.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// Rooms re-read in one pipelined round trip.
const SYNC_BATCH: usize = 256;

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
///
/// `hub`: where what the link hears goes (the signaling hub).
pub async fn run<H: LocalNode + 'static>(
    cluster: Arc<Cluster>,
    hub: Arc<H>,
    shutdown: CancellationToken,
) {
    let hub: &dyn LocalNode = &*hub;
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
                    hub,
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
    hub: &'a dyn LocalNode,
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
    hub: &dyn LocalNode,
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
fn heard(cluster: &Cluster, hub: &dyn LocalNode, inbox: &str, message: &redis::Msg) {
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
