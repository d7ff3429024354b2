//! STUN over TCP: an accept loop capped by a semaphore, and one task per connection that
//! frames the stream ([`crate::stun::next_frame`]) and answers each message in order.
//! Broken framing or silence past the idle timeout closes the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use socket2::{Protocol, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::stats::{Counters, Event};
use super::throttle::Throttle;
use crate::stun::{Frame, Outcome, Responder, next_frame};

/// Pending connections the kernel queues while all permits are taken.
const BACKLOG: i32 = 1024;
/// Pause after a failed accept (EMFILE and friends), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a listening TCP socket.
pub(super) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = super::new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// What every connection on one listener shares.
#[derive(Clone)]
pub(super) struct TcpContext {
    /// Caps connections served at once.
    pub(super) permits: Arc<Semaphore>,
    /// Silence after which a connection is closed.
    pub(super) idle_timeout: Duration,
    /// This listener's counters.
    pub(super) counters: Arc<Counters>,
    /// Fires on shutdown.
    pub(super) shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub(super) tasks: TaskTracker,
}

/// Accepts connections until shutdown.
pub(super) async fn serve(listener: TcpListener, ctx: TcpContext) {
    let mut warn = Throttle::default();
    loop {
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = Arc::clone(&ctx.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // semaphore closed: shutting down
            },
        };
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                ctx.counters.count(Event::IoError);
                warn.warn(|| tracing::warn!("tcp accept failed: {e}"));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        ctx.counters.count(Event::TcpAccepted);
        let conn_ctx = ctx.clone();
        ctx.tasks.spawn(async move {
            connection(stream, peer, &conn_ctx).await;
            drop(permit);
        });
    }
}

/// Serves one connection until it closes, breaks, idles out or shutdown fires.
async fn connection(mut stream: TcpStream, peer: SocketAddr, ctx: &TcpContext) {
    // Replies are small and should leave at once.
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let mut responder = Responder::new();
    loop {
        // Answer every complete frame already buffered, in order.
        loop {
            let frame = match next_frame(&buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    ctx.counters.count(Event::TcpBroken);
                    return;
                }
            };
            ctx.counters.count(Event::Received);
            let bytes = &buf[..frame.len()];
            let outcome = match frame {
                Frame::Stun(_) => responder.handle(bytes, peer),
                Frame::ChannelData(_) => Outcome::Ignored(crate::stun::Ignored::ChannelData),
            };
            match outcome {
                Outcome::Reply(reply) => {
                    let sent =
                        tokio::time::timeout(ctx.idle_timeout, stream.write_all(reply)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        ctx.counters.count(Event::IoError);
                        return;
                    }
                    ctx.counters.count(Event::Replied);
                }
                Outcome::Ignored(_) => ctx.counters.count(Event::Ignored),
                Outcome::Malformed(_) => ctx.counters.count(Event::Malformed),
            }
            buf.advance(frame.len());
        }
        buf.reserve(4096);
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.idle_timeout) => {
                ctx.counters.count(Event::TcpIdleClosed);
                return;
            }
            r = stream.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) => return, // the client closed
            Ok(_) => {}
            Err(_) => {
                ctx.counters.count(Event::IoError);
                return;
            }
        }
    }
}
