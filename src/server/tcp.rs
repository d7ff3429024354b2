//! STUN/TURN over TCP: an accept loop capped by a semaphore (and per client IP by
//! [`PerIp`]), and per connection a reader that frames the stream
//! ([`crate::stun::next_frame`]) and hands each frame to the connection's worker
//! ([`Workers::tcp_frame`]), and a writer fed by one ordered queue, bounded in bytes
//! ([`crate::outbox`]), where the worker puts answers and relayed data. Broken framing, silence past the idle timeout without an allocation,
//! holding no allocation past `tcp-allocation-timeout`, or letting more than
//! `max-tcp-queued-bytes` pile up unread closes it; on TLS, so does a handshake slower than
//! `tls-handshake-timeout`. Each connection also holds a permit of the descriptor budget
//! ([`super::descriptors`]); failed accepts back off.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use socket2::{Protocol, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::descriptors::{Budget, Kind};
use super::stats::{Counters, Event};
use super::throttle::{Backoff, Throttle, accept};
use super::workers::Workers;
use crate::outbox;
use crate::stun::{Frame, next_frame};
use crate::turn::{FiveTuple, Transport};
use tokio_rustls::TlsAcceptor;

/// Pending connections the kernel queues while all permits are taken.
const BACKLOG: i32 = 1024;

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
    /// Silence after which a connection without an allocation is closed.
    pub(super) idle_timeout: Duration,
    /// How long a connection may hold no allocation, chatty or not.
    pub(super) allocation_timeout: Duration,
    /// Bytes waiting for one connection's writer; past them the client is closed.
    pub(super) max_queued_bytes: usize,
    /// How long a TLS client may take over its handshake.
    pub(super) handshake_timeout: Duration,
    /// Connections per client IP, shared by every TCP and TLS listener.
    pub(super) per_ip: Arc<PerIp>,
    /// The descriptor budget every connection draws on.
    pub(super) budget: Arc<Budget>,
    /// The workers whose shards hold the allocations.
    pub(super) workers: Arc<Workers>,
    /// This listener's counters.
    pub(super) counters: Arc<Counters>,
    /// Fires on shutdown.
    pub(super) shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub(super) tasks: TaskTracker,
    /// Set on a `turns:` listener: the TLS handshake comes first.
    pub(super) tls: Option<TlsAcceptor>,
}

/// Accepts connections until shutdown.
pub(super) async fn serve(listener: TcpListener, ctx: TcpContext) {
    let (mut warn, mut backoff) = (Throttle::default(), Backoff::default());
    loop {
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = Arc::clone(&ctx.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // semaphore closed: shutting down
            },
        };
        let pacing = (&mut backoff, &mut warn);
        let Some((stream, peer)) = accept(&listener, &ctx.shutdown, pacing, |e, warn| {
            ctx.counters.count(Event::IoError);
            ctx.budget.accept_error(Kind::Turn);
            warn.warn(|| tracing::warn!("tcp accept failed: {e}"));
        })
        .await
        else {
            return;
        };
        let Some(slot) = PerIp::acquire(&ctx.per_ip, peer.ip()) else {
            // Closed at once: the client sees a reset or EOF, the permit goes back.
            ctx.counters.count(Event::TcpRefusedPerIp);
            drop(stream);
            continue;
        };
        // Refused (and counted) when even shedding idle HTTP left no descriptor for it.
        let Some(descriptor) = ctx.budget.acquire(Kind::Turn).await else {
            continue;
        };
        ctx.counters.count(Event::TcpAccepted);
        let conn_ctx = ctx.clone();
        ctx.tasks.spawn(async move {
            accepted_connection(stream, peer, &conn_ctx).await;
            drop((slot, permit, descriptor));
        });
    }
}

/// A connection just accepted: TLS handshake first on a `turns:` listener.
async fn accepted_connection(stream: TcpStream, client: SocketAddr, ctx: &TcpContext) {
    // Replies are small and should leave at once.
    let _ = stream.set_nodelay(true);
    let Ok(server) = stream.local_addr() else {
        return;
    };
    let Some(acceptor) = &ctx.tls else {
        let tuple = FiveTuple {
            transport: Transport::Tcp,
            client,
            server,
        };
        return connection(stream, tuple, ctx).await;
    };
    match tokio::time::timeout(ctx.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let tuple = FiveTuple {
                transport: Transport::Tls,
                client,
                server,
            };
            connection(stream, tuple, ctx).await;
        }
        // A failed or slow handshake: nothing was said, nothing to clean up.
        Ok(Err(e)) => {
            tracing::debug!(%client, "tls handshake failed: {e}");
            ctx.counters.count(Event::TcpBroken);
        }
        Err(_) => ctx.counters.count(Event::TlsHandshakeTimeout),
    }
}

/// Serves one connection: one 5-tuple, so closing it deletes its allocation (RFC 8656 §3.1).
async fn connection<S>(stream: S, tuple: FiveTuple, ctx: &TcpContext)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let worker = ctx.workers.worker_for(&tuple);
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = outbox::channel::<Vec<u8>>(ctx.max_queued_bytes);
    ctx.workers.tcp_open(worker, tuple, tx.clone()).await;
    // Answers and relayed data share one ordered queue to the socket.
    let writer_task = tokio::spawn(write_loop(writer, rx, ctx.idle_timeout));
    read_loop(&mut reader, tuple, worker, &tx, ctx).await;
    ctx.workers.tcp_close(worker, tuple).await;
    drop(tx);
    let _ = writer_task.await;
}

/// Writes what the queue holds, in order, until the connection ends, a write takes longer
/// than `write_timeout`, or the queue overflows (the client stopped reading: what it holds
/// is dropped with it at once, not written out first).
async fn write_loop(
    mut writer: impl AsyncWrite + Unpin,
    mut rx: outbox::Receiver<Vec<u8>>,
    write_timeout: Duration,
) {
    let overflow = rx.overflow();
    loop {
        let frame = tokio::select! {
            biased;
            _ = overflow.cancelled() => return,
            frame = rx.recv() => frame,
        };
        let Some(frame) = frame else { return };
        let sent = tokio::select! {
            biased;
            _ = overflow.cancelled() => return,
            sent = tokio::time::timeout(write_timeout, writer.write_all(&frame)) => sent,
        };
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
}

async fn read_loop(
    reader: &mut (impl AsyncRead + Unpin),
    tuple: FiveTuple,
    worker: usize,
    tx: &outbox::Sender<Vec<u8>>,
    ctx: &TcpContext,
) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut allocation_check = tokio::time::Instant::now() + ctx.allocation_timeout;
    loop {
        // Handle every complete frame already buffered, in order.
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
            let bytes = match frame {
                // The padding is not part of the ChannelData message.
                Frame::ChannelData(_) => channel_data_without_padding(&buf),
                Frame::Stun(len) => &buf[..len],
            };
            // The worker answers into `tx` and counts what became of the frame; a client
            // that sends requests and reads no answers overflows `tx` (seen below).
            ctx.workers.tcp_frame(worker, tuple, bytes).await;
            buf.advance(frame.len());
        }
        buf.reserve(4096);
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tx.overflowed() => {
                // Relayed data piled up past `max-tcp-queued-bytes`: the client is not
                // reading. Closing it deletes its allocation and frees the queue.
                ctx.counters.count(Event::TcpSlowConsumer);
                return;
            }
            _ = tokio::time::sleep(ctx.idle_timeout) => {
                if ctx.workers.has_allocation(worker, tuple).await {
                    continue;
                }
                ctx.counters.count(Event::TcpIdleClosed);
                return;
            }
            _ = tokio::time::sleep_until(allocation_check) => {
                if ctx.workers.has_allocation(worker, tuple).await {
                    // Looked at again a timeout later: an allocation that ended by then
                    // closes the connection within one more timeout.
                    allocation_check += ctx.allocation_timeout;
                    continue;
                }
                ctx.counters.count(Event::TcpAllocationTimeout);
                return;
            }
            r = reader.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) | Err(_) => {
                if read.is_err() {
                    ctx.counters.count(Event::IoError);
                }
                // The client closed (or reset) the stream; bytes left over are a message cut
                // short, dropped like any other malformed input, and counted.
                if !buf.is_empty() {
                    ctx.counters.count(Event::TcpBroken);
                }
                return;
            }
            Ok(_) => {}
        }
    }
}

/// The ChannelData message at the start of `buf`, without its stream padding.
fn channel_data_without_padding(buf: &[u8]) -> &[u8] {
    // `next_frame` found a whole frame here, so the parse succeeds; if it did not, the
    // dispatcher would count what it is given as malformed.
    match crate::stun::channel_data::parse(buf) {
        Ok(cd) => &buf[..cd.message_len()],
        Err(_) => buf,
    }
}

/// Open connections per client address (IPv6: per /64), for `max-tcp-connections-per-ip`.
/// Touched once per accept and once per close, never per packet.
#[derive(Debug, Default)]
pub(super) struct PerIp {
    /// 0: no limit.
    limit: usize,
    open: Mutex<HashMap<u128, usize>>,
}

impl PerIp {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::default(),
        }
    }

    /// One more connection from `ip`, or `None` when it already holds `limit`.
    pub(super) fn acquire(this: &Arc<Self>, ip: IpAddr) -> Option<PerIpSlot> {
        let key = crate::client_key::client_key_bits(ip);
        let mut open = this.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(key).or_insert(0);
        if this.limit != 0 && *held >= this.limit {
            if *held == 0 {
                open.remove(&key);
            }
            return None;
        }
        *held += 1;
        Some(PerIpSlot {
            table: Arc::clone(this),
            key,
        })
    }
}

/// One open connection counted in [`PerIp`]; uncounted when dropped.
pub(super) struct PerIpSlot {
    table: Arc<PerIp>,
    key: u128,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let table = Arc::new(PerIp::new(2));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = PerIp::acquire(&table, a).unwrap();
        let second = PerIp::acquire(&table, a).unwrap();
        assert!(PerIp::acquire(&table, a).is_none());
        let other = PerIp::acquire(&table, b).unwrap();
        drop(first);
        let again = PerIp::acquire(&table, a).unwrap();
        drop((second, again, other));
        assert!(table.open.lock().unwrap().is_empty(), "nothing left behind");
        let unlimited = Arc::new(PerIp::new(0));
        let slots: Vec<_> = (0..100).map(|_| PerIp::acquire(&unlimited, a)).collect();
        assert!(slots.iter().all(Option::is_some));
    }
}
