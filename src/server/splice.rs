//! An RFC 6062 data connection bound to its peer connection: the client's connection (a
//! [`StreamConn`], TLS kept if it has it) and the peer's socket, spliced byte for byte within
//! the worker that received the ConnectionBind ([`super::conns`] holds the pair in one
//! slot; the peer socket's poll token is the connection's with [`PEER_BIT`] set).
//!
//! Bounded: at most [`SPLICE_BUFFER`] bytes (plus one read) wait in each direction; a full
//! direction stops reading its source until the other end takes some, so a slow reader slows
//! its writer down instead of growing a buffer. The allocation's `max-bps` applies to all its
//! pairs together in each direction (their buckets are in its `TcpLink`, whichever worker
//! serves them), and the shard's `bps-capacity` to all pairs of the shard (a pair over its
//! rate is parked and pumped again on the next tick). Bytes count into the relayed counters.
//! A side that half-closes (TCP FIN, TLS `close_notify`, or a TLS stream cut without it)
//! has what it sent passed on, then its end passed on (a FIN to the peer, a FIN or
//! `close_notify` to the client), and the other direction goes on until that side ends too:
//! the pair closes once both ends were passed on and nothing waits, or `tcp-idle-timeout`
//! after the first end ([`Splice::lingered`]). A socket error closes it at once; so does the
//! allocation ending, checked on the loop's ticks ([`Splice::is_alive`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::descriptors::Permit;
use super::stream::{Close, StreamConn};
use super::tcp_relay::Unbound;
use crate::turn::Manager;
use crate::turn::tcp_link::PeerSlot;

/// Set in a stream connection's poll token for the peer socket spliced to it.
pub(super) const PEER_BIT: usize = 1 << 28;
/// Bytes that may wait in each direction of a pair.
pub(super) const SPLICE_BUFFER: usize = 64 * 1024;
/// The most one pump moves before the loop serves the others.
const PUMP_BUDGET: usize = 256 * 1024;
/// One read from the peer.
const CHUNK: usize = 16 * 1024;

/// The peer half of a bound pair, and what waits for it.
pub(super) struct Splice {
    peer: TcpStream,
    peer_addr: SocketAddr,
    slot: PeerSlot,
    /// The peer socket's share of the descriptor budget.
    _permit: Option<Permit>,
    /// `to_peer[sent..]` waits for the peer.
    to_peer: Vec<u8>,
    sent: usize,
    scratch: Vec<u8>,
    /// The client ended its direction; then, once what it sent reached the peer, the
    /// peer was told (`peer_shut`).
    client_eof: bool,
    peer_shut: bool,
    /// The peer ended its direction; then, once what it sent reached the client, the
    /// client was told (`client_shut`).
    peer_eof: bool,
    client_shut: bool,
    /// The client's connection failed: nothing more goes to it.
    client_broken: bool,
    /// When the first side ended its direction.
    half_closed: Option<Instant>,
    /// The bandwidth limits held a direction back: pump again on the next tick.
    throttled: bool,
}

impl Splice {
    /// The pair of a data connection and `unbound`, its peer socket watched under `token`.
    pub(super) fn new(unbound: Unbound, registry: &Registry, token: Token) -> io::Result<Self> {
        let mut peer = TcpStream::from_std(unbound.socket);
        registry.register(&mut peer, token, Interest::READABLE | Interest::WRITABLE)?;
        let mut slot = unbound.slot;
        slot.bound();
        Ok(Self {
            peer,
            peer_addr: unbound.peer,
            slot,
            _permit: unbound.permit,
            to_peer: Vec::new(),
            sent: 0,
            scratch: vec![0; CHUNK],
            client_eof: false,
            peer_shut: false,
            peer_eof: false,
            client_shut: false,
            client_broken: false,
            half_closed: None,
            throttled: false,
        })
    }

    /// Takes the peer socket out of the poll set (before the pair is dropped).
    pub(super) fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.peer);
    }

    /// Whether the allocation still lives.
    pub(super) fn is_alive(&self) -> bool {
        self.slot.link().is_alive()
    }

    /// The peer's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Whether the bandwidth limits held it back at its last pump.
    pub(super) fn is_throttled(&self) -> bool {
        self.throttled
    }

    /// Whether one side ended its direction `idle` or longer before `now`: the other has
    /// had its time to finish, and the pair is to close.
    pub(super) fn lingered(&self, now: Instant, idle: std::time::Duration) -> bool {
        self.half_closed.is_some_and(|at| now >= at + idle)
    }

    fn waiting_for_peer(&self) -> usize {
        self.to_peer.len() - self.sent
    }

    /// Moves what each side has for the other, as far as the sockets, the buffers and the
    /// limits allow. `Ok(true)`: the budget ran out with more to move (serve it again this
    /// turn or the next); `Err`: the pair is to close.
    pub(super) fn pump(
        &mut self,
        conn: &mut StreamConn,
        registry: &Registry,
        manager: &mut Manager,
        now: Instant,
    ) -> Result<bool, Close> {
        let mut budget = PUMP_BUDGET;
        self.throttled = false;
        loop {
            // Bytes written count as progress too: room they made in a full buffer lets its
            // source be read again, and no event would say so (the poll is edge-triggered).
            let read = self.client_to_peer(conn, manager, now)?
                + self.peer_to_client(conn, manager, now)?;
            let written = self.write_peer()?;
            let queued = conn.queued();
            if !self.client_broken {
                conn.flush(registry, now)?;
            }
            let moved = read + written + queued.saturating_sub(conn.queued());
            if (self.client_eof || self.peer_eof) && self.half_closed.is_none() {
                self.half_closed = Some(now);
            }
            if self.client_eof && !self.peer_shut && self.waiting_for_peer() == 0 {
                // What the client sent before it closed reached the peer: pass its end on.
                let _ = self.peer.shutdown(std::net::Shutdown::Write);
                self.peer_shut = true;
            }
            if self.peer_eof && !self.client_shut && !conn.wants_flush() {
                // Likewise the other way (a close_notify is flushed like any bytes).
                conn.shutdown_write();
                conn.flush(registry, now)?;
                self.client_shut = true;
            }
            if self.peer_shut && (self.client_broken || self.client_shut && !conn.wants_flush()) {
                return Err(Close::RelayEnded);
            }
            if moved == 0 {
                return Ok(false);
            }
            budget = budget.saturating_sub(moved);
            if budget == 0 {
                return Ok(true);
            }
        }
    }

    /// Client → buffer for the peer; the bytes read.
    fn client_to_peer(
        &mut self,
        conn: &mut StreamConn,
        manager: &mut Manager,
        now: Instant,
    ) -> Result<usize, Close> {
        let waiting = self.waiting_for_peer();
        if self.client_eof || waiting >= SPLICE_BUFFER {
            return Ok(0);
        }
        let allowed = manager.tcp_room(now, &mut self.slot.link().buckets().to_peer, true);
        if allowed == 0 {
            self.throttled = true;
            return Ok(0);
        }
        let before = self.to_peer.len();
        let to_peer = &mut self.to_peer;
        match conn.read_raw(now, allowed.min(SPLICE_BUFFER - waiting), |bytes| {
            to_peer.extend_from_slice(bytes)
        }) {
            Ok(_) => {}
            Err(Close::PeerClosed { .. }) => self.client_eof = true,
            // A reset, or a TLS stream cut without close_notify: what was read before still
            // goes to the peer, then the pair closes (nothing more can reach the client).
            Err(Close::Io { .. }) => {
                self.client_eof = true;
                self.client_broken = true;
            }
            Err(close) => return Err(close),
        }
        let n = self.to_peer.len() - before;
        if n > 0 {
            manager.tcp_charge(now, &mut self.slot.link().buckets().to_peer, true, n);
            manager.tcp_relayed(true, n);
            self.slot.link().count(true, n);
        }
        Ok(n)
    }

    /// Peer → the client's outgoing buffer; the bytes read.
    fn peer_to_client(
        &mut self,
        conn: &mut StreamConn,
        manager: &mut Manager,
        now: Instant,
    ) -> Result<usize, Close> {
        let queued = conn.queued();
        if self.peer_eof || self.client_broken || queued >= SPLICE_BUFFER {
            return Ok(0);
        }
        let allowed = manager.tcp_room(now, &mut self.slot.link().buckets().to_client, false);
        if allowed == 0 {
            self.throttled = true;
            return Ok(0);
        }
        let room = (SPLICE_BUFFER - queued)
            .min(self.scratch.len())
            .min(allowed);
        let n = loop {
            match self.peer.read(&mut self.scratch[..room]) {
                Ok(0) => {
                    self.peer_eof = true;
                    return Ok(0);
                }
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close::RelayEnded),
            }
        };
        conn.queue_raw(&self.scratch[..n]);
        manager.tcp_charge(now, &mut self.slot.link().buckets().to_client, false, n);
        manager.tcp_relayed(false, n);
        self.slot.link().count(false, n);
        Ok(n)
    }

    /// Writes what waits for the peer, as far as its socket takes it; the bytes written.
    fn write_peer(&mut self) -> Result<usize, Close> {
        let before = self.sent;
        while self.sent < self.to_peer.len() {
            match self.peer.write(&self.to_peer[self.sent..]) {
                Ok(0) => return Err(Close::RelayEnded),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close::RelayEnded),
            }
        }
        let written = self.sent - before;
        if self.sent == self.to_peer.len() {
            self.to_peer.clear();
            self.sent = 0;
            if self.to_peer.capacity() > SPLICE_BUFFER * 2 {
                self.to_peer.shrink_to(SPLICE_BUFFER);
            }
        } else if self.sent >= SPLICE_BUFFER {
            self.to_peer.drain(..self.sent);
            self.sent = 0;
        }
        Ok(written)
    }
}
