//! One signaling WebSocket: [`serve`] is the task of one connection. It owns the socket,
//! its outbox (bounded in bytes by `max-queued-bytes`) and its heartbeat. It reads frames,
//! enforces size, message rate and the join rate of its address ([`super::limits`]), asks
//! the registry in the [`Hub`] what each message means, and writes what the registry says
//! to write.
//!
//! A step that needs the other nodes (`join.rs`) runs in a task of its own; while it
//! is pending the session reads no further frame (so a client's messages keep their order)
//! but goes on pinging and writing its outbox, and takes the answer as one more event of
//! its loop: nothing in the loop waits for Redis.
//!
//! A connection on `/skyrtc` speaks SkyRTC's dialect ([`super::skyrtc`]): its frames are
//! translated into `/ws` messages as they are read, and what its outbox holds back into
//! SkyRTC events as it is written; everything in between is the same for both.
//!
//! It pings, drops a client that stays silent past the heartbeat timeout, and closes one
//! that stops reading (its outbox overflows, or a write is stuck for [`WRITE_TIMEOUT`])
//! with close code 1008.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Slot};
use super::join::{self, Outcome, Pending};
use super::limits::Bucket;
use super::protocol::{self, ClientMessage, ErrorCode, SignalError};
use super::skyrtc::Dialect;
use crate::config::SignalConfig;
use crate::outbox;

/// How long one write may take before the client counts as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one WebSocket speaking `dialect` in `namespace` until it closes, fails the
/// heartbeat or shutdown. `only_room`: the one room a room-bound token allows.
pub async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    namespace: String,
    only_room: Option<String>,
    dialect: Dialect,
    slot: Slot,
    shutdown: CancellationToken,
) {
    let (sink, stream) = socket.split();
    let me = Me {
        id: protocol::new_peer_id(),
        namespace,
        ip: slot.ip(),
        only_room,
        dialect,
    };
    run(sink, stream, hub, me, shutdown).await;
    drop(slot);
}

/// Who is on the other end.
pub(crate) struct Me {
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) ip: IpAddr,
    /// The one room a room-bound token allows.
    pub(crate) only_room: Option<String>,
    /// The protocol it speaks: frames are translated to and from `/ws`'s at the edges.
    pub(crate) dialect: Dialect,
}

/// The session on any socket halves (a WebSocket's, or channels in the tests).
pub(crate) async fn run<S, R, E>(
    mut sink: S,
    mut stream: R,
    hub: Arc<Hub>,
    me: Me,
    shutdown: CancellationToken,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let id = me.id.clone();
    let config = hub.config();
    let (queue, mut outbox) = outbox::channel::<String>(config.max_queued_bytes);
    let overflow = outbox.overflow();
    hub.lock().connect(&id, &me.namespace, queue.clone());
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut bucket = Bucket::new(
        config.messages_per_second,
        Duration::from_secs(1),
        Instant::now(),
    );
    // A write that did not finish within WRITE_TIMEOUT: the client is not reading.
    let mut stuck = false;
    // The answer of a step that waits for the other nodes; no frame is read meanwhile.
    let mut pending: Option<Pending> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = overflow.cancelled() => break,
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.heartbeat_timeout {
                    tracing::debug!(peer = %id, "heartbeat timeout");
                    hub.counters.heartbeat_drops.fetch_add(1, Relaxed);
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
                let text = me.dialect.outgoing(text);
                let sent = sink.send(Message::Text(text.into()));
                match write(&overflow, sent).await {
                    Write::Sent => {}
                    Write::TimedOut => { stuck = true; break }
                    Write::Failed | Write::Overflowed => break,
                }
            }
            answer = answer(&mut pending), if pending.is_some() => {
                pending = None;
                if let Err(error) = answer {
                    hub.refusals.error(error.code);
                    let _ = queue.push(error.to_json());
                }
            }
            frame = stream.next(), if pending.is_none() => {
                let Some(Ok(frame)) = frame else { break };
                last_heard = Instant::now();
                let reply = match frame {
                    Message::Text(text) => {
                        match handle_text(&hub, &me, &mut bucket, &config, text.as_str()) {
                            Outcome::Done(result) => result.err(),
                            Outcome::Pending(waiting) => {
                                pending = Some(waiting);
                                None
                            }
                        }
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
    // A step still under way finishes before the peer leaves (it may be joining a room).
    if let Some(mut waiting) = pending.take() {
        let _ = waiting.answer().await;
    }
    join::disconnect(&hub, &id).await;
    if stuck || overflow.is_cancelled() {
        hub.counters.slow_consumers.fetch_add(1, Relaxed);
        tracing::debug!(peer = %id, "closing a client that does not read");
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
}

/// The answer `pending` waits for (never ready when there is none).
async fn answer(pending: &mut Option<Pending>) -> Result<(), SignalError> {
    match pending {
        Some(waiting) => waiting.answer().await,
        None => std::future::pending().await,
    }
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

/// Spends one message of the connection's `messages-per-second`; the error past it.
fn over_rate(hub: &Hub, bucket: &mut Bucket, config: &SignalConfig) -> Option<SignalError> {
    if bucket.take(Instant::now()) {
        return None;
    }
    hub.counters.rate_limited.fetch_add(1, Relaxed);
    Some(SignalError::new(
        ErrorCode::RateLimited,
        format!(
            "more than {} messages per second",
            config.messages_per_second
        ),
    ))
}

/// One text frame, with the error sent back now (if any) counted by code.
fn handle_text(
    hub: &Arc<Hub>,
    me: &Me,
    bucket: &mut Bucket,
    config: &SignalConfig,
    text: &str,
) -> Outcome {
    let outcome = answer_text(hub, me, bucket, config, text);
    if let Outcome::Done(Err(error)) = &outcome {
        hub.refusals.error(error.code);
    }
    outcome
}

/// One text frame: limits first, then what it asks for.
fn answer_text(
    hub: &Arc<Hub>,
    me: &Me,
    bucket: &mut Bucket,
    config: &SignalConfig,
    text: &str,
) -> Outcome {
    let refuse = |error| Outcome::Done(Err(error));
    if let Some(refused) = over_rate(hub, bucket, config) {
        return refuse(refused);
    }
    if text.len() > config.max_message_size {
        return refuse(SignalError::new(
            ErrorCode::TooLarge,
            format!(
                "{} bytes; the limit is {}",
                text.len(),
                config.max_message_size
            ),
        ));
    }
    // A SkyRTC frame as the `/ws` message it means, from here on.
    let text = match me.dialect.incoming(text) {
        Ok(text) => text,
        Err(e) => return refuse(e),
    };
    let message = match protocol::parse(&text) {
        Ok(m) => m,
        Err(e) => return refuse(e),
    };
    let id = me.id.as_str();
    match message {
        ClientMessage::Join { room } => {
            // Every join costs (a `peers` reply mints TURN credentials), refused ones too.
            if !hub.take_join(me.ip) {
                return refuse(SignalError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} joins per minute from this address; try again later",
                        hub.join_rate()
                    ),
                ));
            }
            if me
                .only_room
                .as_ref()
                .is_some_and(|allowed| *allowed != room)
            {
                return refuse(SignalError::new(
                    ErrorCode::Unauthorized,
                    "this connection's token is for another room (the one in &room=): to \
                     join this one, connect again with a token minted for it (rturn token \
                     --room ROOM) and &room=ROOM",
                ));
            }
            join::join(hub, id, &me.namespace, &room)
        }
        ClientMessage::Leave => join::leave(hub, id),
        ClientMessage::Ping => {
            hub.lock().deliver(vec![(id.to_owned(), protocol::pong())]);
            Outcome::Done(Ok(()))
        }
        ClientMessage::Relay { to } => join::relay(hub, id, &to, &text, config.max_message_size),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
