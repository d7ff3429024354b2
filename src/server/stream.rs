//! One TURN client connection over TCP or TLS, driven by a mio event loop: the building
//! block with which a worker's loop owns its stream clients as it owns its UDP sockets (no
//! task, no lock, no allocation per relayed packet).
//!
//! A [`StreamConn`] owns the socket, the TLS session if any (rustls driven by hand), the
//! incoming bytes and their framing ([`inbuf`]), the outgoing bytes ([`outbuf`], bounded by
//! `max-tcp-queued-bytes`) and its timers ([`timers`]). It knows nothing of allocations:
//! the loop hands each complete message to its dispatcher from [`StreamConn::read`],
//! queues relayed data with [`StreamConn::queue`], and when a connection ends
//! ([`Close`]) counts [`Close::events`], deregisters it and closes its 5-tuple in the
//! manager.
//!
//! How a loop drives one (the socket is registered edge-triggered):
//! - readable (or read-closed, or error) → [`StreamConn::read`]; on
//!   [`ReadOutcome::MoreToRead`] it must call `read` again later in the same turn or the
//!   next, without waiting for another event (fairness: a wake-up reads at most
//!   [`inbuf::READ_BUDGET`] bytes);
//! - writable → [`StreamConn::flush`];
//! - data for the client → [`StreamConn::queue`], then [`StreamConn::flush`] once per
//!   batch ([`StreamConn::wants_flush`] tells which need it); `read` flushes the replies
//!   queued during it itself;
//! - timers → poll no longer than [`StreamConn::deadline`], then
//!   [`StreamConn::on_timeout`].
//!
//! WRITABLE interest is registered only while bytes wait for the socket.
//!
//! A sketch of the read side (the handler borrows the loop's other fields, not the
//! connection, so the 5-tuple is copied out first):
//!
//! ```text
//! let tuple = conn.tuple();
//! let read = conn.read(registry, now, |message, out| {
//!     counters.count(Event::Received);
//!     match dispatcher.handle(&mut shard, now, tuple, message) {
//!         Handled::Reply => match out.queue(&[&dispatcher.reply]) {
//!             Ok(()) => counters.count(Event::Replied),
//!             Err(Overflow) => {} // the read ends with Close::Overflow
//!         },
//!         …
//!     }
//! });
//! if let Err(close) = read { /* count close.events(), drop conn, manager.close(tuple) */ }
//! ```

mod close;
mod inbuf;
mod outbuf;
mod plain;
mod timers;
mod tls;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

use crate::turn::{FiveTuple, Transport};
pub(crate) use close::Close;
use inbuf::InBuf;
pub(crate) use inbuf::ReadOutcome;
use outbuf::OutBuf;
pub(crate) use outbuf::{Out, Overflow};
pub(crate) use timers::Timeouts;
use timers::Timers;

/// What every stream connection of a listener is held to, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The idle, allocation and handshake timeouts.
    pub(crate) timeouts: Timeouts,
    /// `max-tcp-queued-bytes`: what may wait to be written before the client is closed.
    pub(crate) max_queued_bytes: usize,
}

impl Limits {
    /// The limits `[server]` sets.
    pub(crate) fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            timeouts: Timeouts {
                idle: server.tcp_idle_timeout,
                allocation: server.tcp_allocation_timeout,
                handshake: server.tls_handshake_timeout,
            },
            max_queued_bytes: server.max_tcp_queued_bytes,
        }
    }
}

/// One TURN client connection over TCP or TLS (one 5-tuple, RFC 8656 §3.1).
#[derive(Debug)]
pub(crate) struct StreamConn {
    socket: TcpStream,
    tuple: FiveTuple,
    /// The TLS session on a `turns:` listener.
    tls: Option<Box<ServerConnection>>,
    inbuf: InBuf,
    out: OutBuf,
    timers: Timers,
    /// Set once registered.
    token: Option<Token>,
    /// Whether WRITABLE interest is registered.
    writable: bool,
    /// Set when `inbuf` starts with plaintext read before the handover
    /// ([`StreamConn::established`]): the next read frames it first.
    primed: bool,
}

impl StreamConn {
    /// Takes over a connection of `client` (the socket's peer, or the client a load
    /// balancer's PROXY header named) accepted at `now` (made non-blocking here); with `tls`
    /// (the `turns:` listener's config, [`super::tls::acceptor`]`(…).config()`), its
    /// handshake comes first.
    pub(crate) fn new(
        stream: std::net::TcpStream,
        client: std::net::SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: &Limits,
        now: Instant,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        // Replies are small and should leave at once.
        stream.set_nodelay(true)?;
        let tuple = FiveTuple {
            transport: if tls.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            },
            client,
            server: stream.local_addr()?,
        };
        let tls = match tls {
            Some(config) => {
                let mut session = ServerConnection::new(config).map_err(io::Error::other)?;
                // What rustls holds beyond our queue is bounded too (and counted in it).
                session.set_buffer_limit(Some(tls::BUFFER_LIMIT));
                Some(Box::new(session))
            }
            None => None,
        };
        Ok(Self {
            socket: TcpStream::from_std(stream),
            tuple,
            timers: Timers::new(limits.timeouts, now, tls.is_some()),
            tls,
            inbuf: InBuf::new(),
            out: OutBuf::new(limits.max_queued_bytes),
            token: None,
            writable: false,
            primed: false,
        })
    }

    /// Takes over a TLS connection whose handshake was done elsewhere (the shared
    /// `turns:`/HTTPS port, [`super::shared_tls`]) at `now`: `session` holds what it read
    /// past the handshake, `prefix` the plaintext already taken out of it (the bytes that
    /// told STUN from HTTP), framed first. `tuple` names the client (which need not be the
    /// socket's peer, behind a proxy). The caller must read it once without waiting for an
    /// event: what rustls holds raises none.
    pub(crate) fn established(
        stream: std::net::TcpStream,
        tuple: FiveTuple,
        mut session: Box<ServerConnection>,
        prefix: &[u8],
        limits: &Limits,
        now: Instant,
    ) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        session.set_buffer_limit(Some(tls::BUFFER_LIMIT));
        let mut inbuf = InBuf::new();
        for chunk in prefix.chunks(1024) {
            let room = inbuf.spare();
            let n = chunk.len().min(room.len());
            room[..n].copy_from_slice(&chunk[..n]);
            inbuf.filled(n);
        }
        Ok(Self {
            socket: TcpStream::from_std(stream),
            tuple,
            timers: Timers::new(limits.timeouts, now, false),
            tls: Some(session),
            inbuf,
            out: OutBuf::new(limits.max_queued_bytes),
            token: None,
            writable: false,
            primed: !prefix.is_empty(),
        })
    }

    /// Puts `frames` (whole, stream-padded) before what the connection holds unread, to be
    /// handed out first by the next [`StreamConn::read`], which must come without waiting
    /// for an event; false when they do not fit. For a connection handed to another worker
    /// with the requests read and not yet served (RFC 8016 mobility, `super::mobility`).
    pub(crate) fn prime(&mut self, frames: &[u8]) -> bool {
        let fits = self.inbuf.prepend(frames);
        self.primed |= fits;
        fits
    }

    /// Registers the socket with `registry` under `token` (readable; writable while
    /// bytes wait).
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        registry.register(&mut self.socket, token, interest)?;
        self.token = Some(token);
        self.writable = interest.is_writable();
        Ok(())
    }

    /// Takes the socket out of `registry` (before the connection is dropped).
    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.token = None;
        registry.deregister(&mut self.socket)
    }

    /// The connection's 5-tuple, as the allocation manager knows it.
    pub(crate) fn tuple(&self) -> FiveTuple {
        self.tuple
    }

    /// The client's address.
    #[cfg(test)]
    pub(crate) fn peer_addr(&self) -> std::net::SocketAddr {
        self.tuple.client
    }

    /// The listener's address the client connected to.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.tuple.server
    }

    /// Whether a TLS handshake is still under way (never for plain TCP).
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// Reads what the socket has (up to [`inbuf::READ_BUDGET`] bytes) and calls `on_message`
    /// with each complete STUN or ChannelData message (without its stream padding), in
    /// order, in place, and with this connection's outgoing queue for the replies; then
    /// writes what was queued. `Err`: the connection is to be closed.
    pub(crate) fn read<F>(
        &mut self,
        registry: &Registry,
        now: Instant,
        mut on_message: F,
    ) -> Result<ReadOutcome, Close>
    where
        F: FnMut(&[u8], &mut Out<'_>),
    {
        let mut deliver = |inbuf: &mut InBuf, out: &mut OutBuf| -> Result<(), Close> {
            while let Some(range) = inbuf.next().map_err(|_| Close::Malformed)? {
                let mut handle = Out::new(out);
                on_message(inbuf.get(range), &mut handle);
                let stopped = handle.stopped();
                if out.is_overflowed() {
                    return Err(Close::Overflow);
                }
                if stopped {
                    return Err(Close::Spliced);
                }
            }
            Ok(())
        };
        // Plaintext handed over with the connection is framed before the socket is read.
        let primed = match std::mem::take(&mut self.primed) {
            true => deliver(&mut self.inbuf, &mut self.out),
            false => Ok(()),
        };
        let read = match primed {
            Err(close) => Err(close),
            Ok(()) => self.read_socket(now, deliver),
        };
        match read {
            Ok(outcome) => {
                self.flush(registry, now)?;
                Ok(outcome)
            }
            // The rest is raw bytes, for [`StreamConn::read_raw`].
            Err(Close::Spliced) => {
                self.flush(registry, now)?;
                Ok(ReadOutcome::MoreToRead)
            }
            Err(close) if self.is_handshaking() && close != Close::TlsHandshakeTimeout => {
                Err(Close::TlsHandshakeFailed)
            }
            Err(close @ Close::PeerClosed { .. }) => {
                // The client may have half-closed after its last request: its answers
                // still go out if the socket takes them now.
                let _ = self.write();
                Err(close)
            }
            Err(close) => Err(close),
        }
    }

    /// Reads raw bytes (an RFC 6062 data connection, once bound): hands `sink` what the
    /// framed reads left, then what the socket has, decrypted if TLS, until about `room`
    /// bytes were handed (one read more at most) or the socket has nothing more.
    pub(crate) fn read_raw(
        &mut self,
        now: Instant,
        room: usize,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<ReadOutcome, Close> {
        let mut taken = 0;
        let mut deliver = |inbuf: &mut InBuf, _: &mut OutBuf| -> Result<(), Close> {
            let held = inbuf.take_held();
            taken += held.len();
            sink(held);
            if taken >= room {
                return Err(Close::Spliced);
            }
            Ok(())
        };
        if deliver(&mut self.inbuf, &mut self.out).is_err() {
            return Ok(ReadOutcome::MoreToRead);
        }
        match self.read_socket(now, deliver) {
            Err(Close::Spliced) => Ok(ReadOutcome::MoreToRead),
            other => other,
        }
    }

    /// Reads the socket (up to [`inbuf::READ_BUDGET`] bytes, decrypted if TLS) into `inbuf`,
    /// handing `deliver` the buffer, and the outgoing queue, each time it holds more.
    fn read_socket(
        &mut self,
        now: Instant,
        mut deliver: impl FnMut(&mut InBuf, &mut OutBuf) -> Result<(), Close>,
    ) -> Result<ReadOutcome, Close> {
        let out = &mut self.out;
        let deliver = |inbuf: &mut InBuf| deliver(inbuf, out);
        let (socket, inbuf, timers) = (&mut self.socket, &mut self.inbuf, &mut self.timers);
        match &mut self.tls {
            None => plain::read(socket, inbuf, timers, now, deliver),
            Some(session) => tls::read(session, socket, inbuf, timers, now, deliver),
        }
    }

    /// Queues raw bytes for the client (an RFC 6062 data connection): no padding; the
    /// caller offers no more than [`StreamConn::queued`] leaves room for.
    pub(crate) fn queue_raw(&mut self, data: &[u8]) {
        self.out.push_raw(data);
    }

    /// Ends the direction towards the client of an RFC 6062 data connection whose peer
    /// half-closed: a TLS `close_notify` (queued: [`StreamConn::flush`] writes it), or a TCP
    /// FIN. Call only with nothing left queued; the client may go on sending.
    pub(crate) fn shutdown_write(&mut self) {
        match &mut self.tls {
            Some(session) => session.send_close_notify(),
            None => {
                let _ = self.socket.shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// Queues one frame for the client (copied; padded to 4 bytes, RFC 8656 §12.5),
    /// without writing it: call [`StreamConn::flush`] once the batch is queued.
    /// `Err(Overflow)`: the client is not reading; close it with [`Close::Overflow`].
    pub(crate) fn queue(&mut self, parts: &[&[u8]]) -> Result<(), Overflow> {
        self.out.queue(parts)
    }

    /// Whether bytes wait that the socket has not been offered yet, or could take now.
    pub(crate) fn wants_flush(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Bytes waiting to be written, as counted against `max-tcp-queued-bytes`.
    pub(crate) fn queued(&self) -> usize {
        self.out.queued()
    }

    /// Writes what waits, as far as the socket takes it, and keeps WRITABLE interest
    /// registered exactly while something is left. `Err`: the connection is to be closed.
    pub(crate) fn flush(&mut self, registry: &Registry, now: Instant) -> Result<(), Close> {
        if self.out.is_overflowed() {
            return Err(Close::Overflow);
        }
        let progress = self.write()?;
        let pending = self.wants_flush();
        self.timers.wrote(now, progress, pending);
        if let Some(token) = self.token
            && pending != self.writable
        {
            let interest = self.interest();
            (registry.reregister(&mut self.socket, token, interest))
                .map_err(|_| Close::Io { mid_frame: false })?;
            self.writable = pending;
        }
        Ok(())
    }

    /// When [`StreamConn::on_timeout`] must next be called.
    pub(crate) fn deadline(&self) -> Instant {
        self.timers.deadline()
    }

    /// Applies the timers due at `now` (see [`timers`]): why to close, or `None`.
    /// `has_allocation` (whether the manager holds an allocation for
    /// [`StreamConn::tuple`]) is asked only when a rule depends on it.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        has_allocation: impl FnOnce() -> bool,
    ) -> Option<Close> {
        self.timers.on_timeout(now, has_allocation)
    }

    fn interest(&self) -> Interest {
        if self.wants_flush() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Writes as much as the socket takes; whether it took anything.
    fn write(&mut self) -> Result<bool, Close> {
        match &mut self.tls {
            Some(session) => tls::write(session, &mut self.socket, &mut self.out),
            None => plain::write(&mut self.socket, &mut self.out),
        }
    }
}
