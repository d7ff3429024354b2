//! One worker's TURN TCP/TLS clients ([`StreamConn`]), served by its event loop
//! ([`super::datapath`]) like its UDP sockets: the accept loop on the tokio side hands each
//! accepted connection over ([`super::workers::Workers::accept`]) with the guards that
//! count it (connection permit, per-IP slot, descriptor), or, from the TLS port shared with
//! HTTPS ([`super::shared_tls`]), with its TLS handshake already done
//! ([`Conns::accept_established`]); from then on its reads, writes,
//! timers and close happen on this thread. Data a peer sends to a TCP client is copied
//! straight into the connection's outgoing buffer: no allocation, no other thread.
//!
//! A connection is a slot in a table indexed by its poll token (`CONN_TOKENS + slot`), and
//! found by its 5-tuple for the peer → client direction.

use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::shard::{Dispatcher, Handled, Shard};
use super::splice::{PEER_BIT, Splice};
use super::stats::{Counters, Event};
use super::stream::{Close, Limits, ReadOutcome, StreamConn};
use crate::turn::{FastMap, FiveTuple};

/// Poll tokens from here up to [`super::relay::RELAY_TOKENS`] are stream connections.
pub(super) const CONN_TOKENS: usize = 1 << 16;
/// Timers of connections are looked at no more often than this (a deadline is met this
/// late at worst), so many connections with deadlines a little apart cost one scan.
const TIMER_GRANULARITY: Duration = Duration::from_millis(50);

/// What keeps an accepted connection counted (its permit, per-IP slot and descriptor);
/// dropped with it.
pub(super) type Guards = Box<dyn Send>;

struct Entry {
    conn: StreamConn,
    _guards: Guards,
    /// Set once it is an RFC 6062 data connection bound to its peer.
    splice: Option<Box<Splice>>,
}

/// A worker's stream connections.
pub(super) struct Conns {
    registry: Registry,
    limits: Limits,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_tuple: FastMap<FiveTuple, usize>,
    /// Connections that had bytes queued this turn, flushed at its end.
    dirty: Vec<usize>,
    /// When the connections' timers are next looked at.
    next_check: Option<Instant>,
}

impl Conns {
    pub(super) fn new(registry: Registry, limits: Limits) -> Self {
        Self {
            registry,
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: FastMap::default(),
            dirty: Vec::new(),
            next_check: None,
        }
    }

    /// Takes over a connection of `client` the accept loop handed over (with its TLS config
    /// on a `turns:` listener) and starts watching it.
    pub(super) fn accept(
        &mut self,
        stream: std::net::TcpStream,
        client: std::net::SocketAddr,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        guards: Guards,
        now: Instant,
    ) {
        match StreamConn::new(stream, client, tls, &self.limits, now) {
            Ok(conn) => {
                self.insert(conn, guards);
            }
            Err(e) => tracing::debug!("accepted connection unusable: {e}"),
        }
    }

    /// Takes over a TLS connection handshaken on the tokio side (the shared
    /// `turns:`/HTTPS port), with the plaintext already read from it. Returns its token,
    /// which the loop must serve this turn or the next without waiting for an event (what
    /// rustls holds raises none).
    pub(super) fn accept_established(
        &mut self,
        stream: std::net::TcpStream,
        tuple: FiveTuple,
        session: Box<rustls::ServerConnection>,
        prefix: &[u8],
        guards: Guards,
        now: Instant,
    ) -> Option<Token> {
        match StreamConn::established(stream, tuple, session, prefix, &self.limits, now) {
            Ok(conn) => self.insert(conn, guards),
            Err(e) => {
                tracing::debug!("handed-over connection unusable: {e}");
                None
            }
        }
    }

    /// Registers `conn` in a free slot; its token, or `None` when it cannot be watched
    /// (then it is dropped, and closed).
    fn insert(&mut self, mut conn: StreamConn, guards: Guards) -> Option<Token> {
        // Only a PROXY header can name a 5-tuple twice (one client reaching two addresses of
        // the load balancer from one port): the newcomer must not take the first's place.
        if self.by_tuple.contains_key(&conn.tuple()) {
            tracing::debug!(client = %conn.tuple().client, "a connection of this 5-tuple is open: closed");
            return None;
        }
        let slot = self.free.pop().unwrap_or(self.slots.len());
        if let Err(e) = conn.register(&self.registry, Token(CONN_TOKENS + slot)) {
            tracing::warn!("cannot watch a tcp connection: {e}");
            if slot < self.slots.len() {
                self.free.push(slot);
            }
            return None;
        }
        if slot == self.slots.len() {
            self.slots.push(None);
        }
        self.by_tuple.insert(conn.tuple(), slot);
        self.note(conn.deadline());
        self.slots[slot] = Some(Entry {
            conn,
            _guards: guards,
            splice: None,
        });
        Some(Token(CONN_TOKENS + slot))
    }

    /// When [`Conns::handle_timeout`] next has work.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.next_check
    }

    fn note(&mut self, deadline: Instant) {
        self.next_check = Some(self.next_check.map_or(deadline, |at| at.min(deadline)));
    }

    /// A readiness event (or another turn) for the connection behind `token`: reads and
    /// handles what it sent, writes what waits. `true` when more may be left to read.
    pub(super) fn serve(
        &mut self,
        token: Token,
        shard: &mut Shard,
        dispatcher: &mut Dispatcher,
        counters: &Counters,
        now: Instant,
    ) -> bool {
        // The peer socket of a data connection shares its slot.
        let slot = (token.0 - CONN_TOKENS) & !PEER_BIT;
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return false; // closed since the event was queued
        };
        if let Some(splice) = &mut entry.splice {
            return match splice.pump(&mut entry.conn, &self.registry, &mut shard.manager, now) {
                Ok(more) => {
                    let deadline = entry.conn.deadline();
                    self.note(deadline);
                    more
                }
                Err(close) => {
                    self.close(slot, close, shard, counters, now);
                    false
                }
            };
        }
        let tuple = entry.conn.tuple();
        // RFC 8016: set when a request moves the connection to another worker; it is kept
        // for that worker, and what follows it is not read here.
        let mut handing: Option<(usize, Vec<u8>)> = None;
        // RFC 6062: set when a ConnectionBind took a peer connection.
        let mut bound = None;
        let read = entry.conn.read(&self.registry, now, |message, out| {
            counters.count(Event::Received);
            let handled = dispatcher.handle(shard, now, tuple, message);
            // A ConnectionBind took a peer connection: taken here, whatever happens next, so
            // one whose answer cannot be queued is dropped (closed, its place given back)
            // instead of lingering in the table.
            let taken = shard.tcp.take_bound(&tuple);
            if let Some(worker) = shard.moves.take_handing() {
                // The read ends at this request: what follows stays unread in the
                // connection's buffers (and its TLS session) and goes with it.
                out.stop_framing();
                let mut kept = Vec::new();
                keep_frame(&mut kept, message);
                handing = Some((worker, kept));
                return;
            }
            let event = match handled {
                // A refused reply ends the read with Close::Overflow (counted then).
                Handled::Reply => match out.queue(&[&dispatcher.reply]) {
                    Ok(()) => {
                        // From now on the connection carries that peer's bytes (RFC 6062
                        // §5.4).
                        if taken.is_some() {
                            bound = taken;
                            out.stop_framing();
                        }
                        Event::Replied
                    }
                    Err(_) => return,
                },
                Handled::Relayed => Event::Relayed,
                Handled::Ignored => Event::Ignored,
                Handled::Malformed(_) => Event::Malformed,
                Handled::RateLimited => Event::RateLimited,
            };
            counters.count(event);
        });
        if let (Ok(_), Some(unbound)) = (&read, bound) {
            let token = Token(CONN_TOKENS + PEER_BIT + slot);
            match Splice::new(unbound, &self.registry, token) {
                Ok(splice) => entry.splice = Some(Box::new(splice)),
                Err(e) => {
                    tracing::warn!("cannot watch a tcp relay peer connection: {e}");
                    self.close(slot, Close::RelayEnded, shard, counters, now);
                    return false;
                }
            }
            // What followed the ConnectionBind is the client's first bytes for the peer.
            return true;
        }
        match read {
            Ok(_) if handing.is_some() => {
                if let Some((worker, kept)) = handing {
                    self.hand_over(slot, worker, &kept, shard);
                }
                false
            }
            Ok(outcome) => {
                let deadline = entry.conn.deadline();
                self.note(deadline);
                outcome == ReadOutcome::MoreToRead
            }
            Err(close) => {
                self.close(slot, close, shard, counters, now);
                false
            }
        }
    }

    /// Hands the connection in `slot` to worker `worker` (RFC 8016: a move to an allocation
    /// it holds), with `kept`, the request read and not served here, to be served there
    /// first.
    fn hand_over(&mut self, slot: usize, worker: usize, kept: &[u8], shard: &mut Shard) {
        let Some(mut entry) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = entry.conn.deregister(&self.registry);
        self.by_tuple.remove(&entry.conn.tuple());
        self.free.push(slot);
        shard.moves.adopt(worker, entry.conn, kept, entry._guards);
    }

    /// Takes over the connections other workers handed this one ([`Conns::hand_over`]);
    /// their tokens go to `again`, to be served without waiting for an event.
    pub(super) fn adopt(&mut self, shard: &mut Shard, again: &mut Vec<Token>) {
        for (conn, guards) in shard.moves.take_adopted() {
            again.extend(self.insert(conn, guards));
        }
    }

    /// Queues a frame from a peer for the client of `tuple`, to be written at the end of
    /// the turn ([`Conns::flush`]). `false` when there is no such connection or it is not
    /// reading (then it is closed: the slow consumer).
    pub(super) fn queue(
        &mut self,
        tuple: &FiveTuple,
        parts: &[&[u8]],
        shard: &mut Shard,
        counters: &Counters,
        now: Instant,
    ) -> bool {
        let Some(&slot) = self.by_tuple.get(tuple) else {
            return false;
        };
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        let idle = !entry.conn.wants_flush();
        if entry.conn.queue(parts).is_err() {
            self.close(slot, Close::Overflow, shard, counters, now);
            return false;
        }
        if idle {
            self.dirty.push(slot);
        }
        true
    }

    /// Writes what this turn queued.
    pub(super) fn flush(&mut self, shard: &mut Shard, counters: &Counters, now: Instant) {
        while let Some(slot) = self.dirty.pop() {
            let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            match entry.conn.flush(&self.registry, now) {
                Ok(()) => {
                    let deadline = entry.conn.deadline();
                    self.note(deadline);
                }
                Err(close) => self.close(slot, close, shard, counters, now),
            }
        }
    }

    /// Applies the timers due at `now`: idle, allocation, handshake and write timeouts.
    pub(super) fn handle_timeout(&mut self, now: Instant, shard: &mut Shard, counters: &Counters) {
        if self.next_check.is_none_or(|at| at > now) {
            return;
        }
        self.next_check = None;
        for slot in 0..self.slots.len() {
            let Some(entry) = self.slots[slot].as_mut() else {
                continue;
            };
            let tuple = entry.conn.tuple();
            // A data connection lives as long as its allocation, wherever that is.
            let alive = entry.splice.as_ref().map(|s| s.is_alive());
            let close = if entry.conn.deadline() <= now {
                (entry.conn).on_timeout(now, || {
                    alive.unwrap_or_else(|| shard.manager.has_allocation(&tuple))
                })
            } else {
                None
            };
            match close {
                Some(close) => self.close(slot, close, shard, counters, now),
                None => {
                    let deadline = entry.conn.deadline();
                    self.note(deadline);
                }
            }
        }
        // Deadlines a little apart are met by one scan.
        if let Some(at) = self.next_check {
            self.next_check = Some(at.max(now + TIMER_GRANULARITY));
        }
    }

    /// RFC 6062 at the end of a turn: on a `tick` (once a second) connects and unbound
    /// connections timed out, pairs of ended allocations closed, pairs the bandwidth limits
    /// held back pumped; then the Connect answers and ConnectionAttempts queued on their
    /// control connections. Returns the tokens to serve again.
    pub(super) fn tcp_relay_turn(
        &mut self,
        shard: &mut Shard,
        counters: &Counters,
        now: Instant,
        tick: bool,
    ) -> Vec<Token> {
        let again = match tick {
            true => {
                let listeners = shard.tcp.tick(&mut shard.manager, now);
                let mut again = self.tick_splices(shard, counters, now);
                let relay = |slot| Token(super::relay::RELAY_TOKENS + slot);
                again.extend(listeners.into_iter().map(relay));
                again
            }
            false => Vec::new(),
        };
        for (tuple, message) in shard.tcp.take_outbox() {
            self.queue(&tuple, &[&message], shard, counters, now);
        }
        again
    }

    /// Once a second: closes the RFC 6062 data connections whose allocation ended, whose
    /// peer the rules now refuse, or one of whose sides ended `tcp-idle-timeout` ago, and
    /// pumps the ones the bandwidth limits held back.
    /// Returns the tokens to serve again (their budget ran out).
    fn tick_splices(&mut self, shard: &mut Shard, counters: &Counters, now: Instant) -> Vec<Token> {
        let mut again = Vec::new();
        for slot in 0..self.slots.len() {
            let Some(entry) = self.slots[slot].as_mut() else {
                continue;
            };
            let Some(splice) = &mut entry.splice else {
                continue;
            };
            let ended = !splice.is_alive() || !shard.manager.tcp_peer_allowed(splice.peer());
            let result = if ended || splice.lingered(now, self.limits.timeouts.idle) {
                Err(Close::RelayEnded)
            } else if splice.is_throttled() {
                splice.pump(&mut entry.conn, &self.registry, &mut shard.manager, now)
            } else {
                Ok(false)
            };
            match result {
                Ok(true) => again.push(Token(CONN_TOKENS + slot)),
                Ok(false) => {}
                Err(close) => self.close(slot, close, shard, counters, now),
            }
        }
        again
    }

    /// Ends the connection in `slot` for `close` (counted): its allocation goes with it
    /// (RFC 8656 §3.1), its socket closes and its guards are given back. Answers already
    /// queued (to the requests before a broken frame, say) get one last chance to leave,
    /// unless the client is not reading or the socket failed.
    fn close(
        &mut self,
        slot: usize,
        close: Close,
        shard: &mut Shard,
        counters: &Counters,
        now: Instant,
    ) {
        let Some(mut entry) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        for &event in close.events() {
            counters.count(event);
        }
        if !matches!(
            close,
            Close::Overflow | Close::Io { .. } | Close::WriteTimeout
        ) {
            let _ = entry.conn.flush(&self.registry, now);
        }
        let _ = entry.conn.deregister(&self.registry);
        if let Some(splice) = &mut entry.splice {
            splice.deregister(&self.registry);
        }
        let tuple = entry.conn.tuple();
        self.by_tuple.remove(&tuple);
        self.free.push(slot);
        shard.manager.close(now, tuple);
        shard.settle();
    }
}

/// Appends a frame read from a stream to `kept`, padded as on the stream (RFC 8656 §12.5:
/// ChannelData to four bytes; STUN messages always are), so it can be framed again.
fn keep_frame(kept: &mut Vec<u8>, frame: &[u8]) {
    kept.extend_from_slice(frame);
    kept.resize(kept.len().next_multiple_of(4), 0);
}
