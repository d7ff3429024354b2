//! The workers: one event-loop thread per shard, owning it ([`Shard`]: the allocation
//! manager, its relay sockets and the source limiter), its SO_REUSEPORT UDP listen sockets
//! (one per UDP listen address), its TURN TCP/TLS clients ([`Conns`]) and its timers. A
//! relayed packet never changes thread: client → listen socket (or TCP connection) → relay
//! socket → peer, and back, on one core, and nothing on that path takes a lock another
//! thread takes. The exception is data for one of rturn's own relays held by another
//! worker: it goes there in a batch per turn ([`super::handoff`]), delivered at the end of
//! that worker's next turn as if read from the relay socket.
//!
//! Per wake-up the loop reads its command channel ([`Command`], sent by
//! [`super::workers::Workers`] for the tokio side: admin, metrics, reload, drain, shutdown,
//! accepted TCP connections), reads one batch from each ready socket with `recvmmsg` (a
//! socket with more waiting goes round again, after the others; a TCP connection reads up
//! to its budget), runs the expiries when due (the poll timeout is the soonest of the
//! manager's [`crate::turn::Manager::poll_timeout`] and the connections' deadlines), and
//! sends everything bound for clients with one `sendmmsg` per listen socket and batch (runs
//! of datagrams for one client and of one length as one GSO send each, [`super::gso`]), and
//! one write per TCP connection.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use stun::message::Message;

use super::command::{Command, WorkerSnapshot};
use super::conns::{CONN_TOKENS, Conns};
use super::gso::Gso;
use super::handoff::Batch;
use super::mmsg::{BATCH, RecvBatch, SendQueue, UNKNOWN};
use super::relay::RELAY_TOKENS;
use super::shard::{Dispatcher, Handled, Shard};
use super::stats::{Counters, Event};
use super::stream::Limits;
use super::tcp_relay::is_tcp_slot;
use super::throttle::Throttle;
use crate::stun::{channel_data, response};
use crate::turn::{FiveTuple, Transport};

/// Wakes a loop to look at its command channel and its stop flag.
const WAKE: Token = Token(0);
/// How often buckets the source limiter no longer needs are forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// A shard's poll set, made before the shard so its relay table can register sockets.
pub(super) struct Poller {
    poll: Poll,
    waker: Arc<Waker>,
}

impl Poller {
    pub(super) fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        Ok(Self { poll, waker })
    }

    /// A handle to register relay sockets with.
    pub(super) fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }

    /// Wakes the loop that polls this set.
    pub(super) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }
}

/// Everything one worker's loop is started with.
pub(super) struct WorkerParts {
    pub(super) poller: Poller,
    pub(super) shard: Shard,
    /// Its UDP listen sockets, one per UDP listen address.
    pub(super) listen: Vec<std::net::UdpSocket>,
    pub(super) commands: mpsc::Receiver<Command>,
    /// Set by senders when they wake the loop; cleared by the loop before it reads commands,
    /// so a burst of commands costs one wake-up.
    pub(super) notified: Arc<AtomicBool>,
    pub(super) counters: Arc<Counters>,
    /// What its TURN TCP/TLS connections are held to.
    pub(super) stream_limits: Limits,
}

/// Starts worker `index`'s loop on its own thread; it runs until `stop` is set and it is
/// woken.
pub(super) fn spawn(
    index: usize,
    parts: WorkerParts,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let mut sockets = Vec::new();
    for (i, socket) in parts.listen.into_iter().enumerate() {
        let fd = socket.as_raw_fd();
        let token = Token(1 + i);
        (parts.poller.poll.registry()).register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        sockets.push((socket.local_addr()?, socket));
    }
    let (poller, shard, counters) = (parts.poller, parts.shard, parts.counters);
    let (commands, notified) = (parts.commands, parts.notified);
    let conns = Conns::new(poller.registry()?, parts.stream_limits);
    std::thread::Builder::new()
        .name(format!("rturn-worker-{index}"))
        .spawn(move || {
            // Built here: the batch headers hold raw pointers and stay on this thread.
            let event_loop = Loop {
                shard: index,
                counters,
                listen: (sockets.into_iter())
                    .map(|(addr, socket)| {
                        let gso = Gso::probe(&socket);
                        if gso == Gso::OFF && index == 0 {
                            tracing::info!(
                                "UDP GSO is not available on {addr} (Linux < 4.18?): \
                                 datagrams to its clients leave one by one"
                            );
                        }
                        Listen {
                            addr,
                            socket,
                            out: SendQueue::new(gso),
                        }
                    })
                    .collect(),
                recv: RecvBatch::new(),
                dispatcher: Dispatcher::new(),
                indication: Message::new(),
                warn: Throttle::default(),
                again: Vec::new(),
                commands,
                notified,
                conns,
                handed: Vec::new(),
            };
            event_loop.run(poller.poll, shard, &stop);
        })
}

/// One listen socket of a loop and what waits to leave it.
struct Listen {
    addr: SocketAddr,
    socket: std::net::UdpSocket,
    out: SendQueue,
}

/// One shard's event loop.
struct Loop {
    shard: usize,
    counters: Arc<Counters>,
    listen: Vec<Listen>,
    recv: RecvBatch,
    dispatcher: Dispatcher,
    indication: Message,
    warn: Throttle,
    /// Sockets left with datagrams queued after their turn.
    again: Vec<Token>,
    commands: mpsc::Receiver<Command>,
    notified: Arc<AtomicBool>,
    /// Its TURN TCP/TLS clients.
    conns: Conns,
    /// Hand-off batches being delivered (kept for their capacity).
    handed: Vec<Batch>,
}

impl Loop {
    fn run(mut self, mut poll: Poll, mut shard: Shard, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        let mut ready = Vec::with_capacity(1024);
        let mut purge_at = Instant::now() + PURGE_EVERY;
        loop {
            let timeout = if self.again.is_empty() {
                let next = [shard.manager.poll_timeout(), self.conns.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .fold(purge_at, Instant::min);
                next.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("the event loop of worker {} failed: {e}", self.shard);
                return;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            ready.clear();
            ready.append(&mut self.again);
            ready.extend(events.iter().map(|e| e.token()).filter(|t| *t != WAKE));
            let now = Instant::now();
            self.commands(&mut shard, now);
            for &token in &ready {
                if token.0 >= RELAY_TOKENS {
                    self.serve_relay(&mut shard, now, token);
                } else if token.0 >= CONN_TOKENS {
                    let (dispatcher, counters) = (&mut self.dispatcher, &self.counters);
                    // Past its read budget: another turn, after the others.
                    if (self.conns).serve(token, &mut shard, dispatcher, counters, now) {
                        self.again.push(token);
                    }
                } else {
                    self.serve_listen(&mut shard, now, token);
                }
            }
            self.handoffs(&mut shard, now);
            self.moved(&mut shard, now);
            self.conns.adopt(&mut shard, &mut self.again);
            if shard.manager.poll_timeout().is_some_and(|due| due <= now) {
                shard.manager.handle_timeout(now);
                shard.settle();
            }
            (self.conns).handle_timeout(now, &mut shard, &self.counters);
            let again =
                (self.conns).tcp_relay_turn(&mut shard, &self.counters, now, now >= purge_at);
            self.again.extend(again);
            self.conns.flush(&mut shard, &self.counters, now);
            if now >= purge_at {
                shard.limiter.purge(now);
                purge_at = now + PURGE_EVERY;
                // At most once per READ_EVERY; nothing without the offload.
                shard.read_offload(now, false);
            }
            for i in 0..self.listen.len() {
                self.flush(i);
            }
        }
    }

    /// Everything the command channel holds.
    fn commands(&mut self, shard: &mut Shard, now: Instant) {
        self.notified.store(false, Ordering::Release);
        while let Ok(command) = self.commands.try_recv() {
            self.command(shard, now, command);
        }
    }

    fn command(&mut self, shard: &mut Shard, now: Instant, command: Command) {
        // A reply nobody waits for any more is dropped.
        match command {
            Command::Sessions(reply) => {
                // Counters that include what the kernel relayed until now.
                shard.read_offload(now, true);
                let _ = reply.send(shard.manager.sessions(now));
            }
            Command::Kick { id, user, reply } => {
                let kicked = shard.manager.kick(id.as_deref(), user.as_deref());
                shard.settle();
                let _ = reply.send(kicked);
            }
            Command::Snapshot(reply) => {
                shard.read_offload(now, true);
                let _ = reply.send(WorkerSnapshot {
                    turn: shard.manager.metrics().clone(),
                    by_transport: shard.manager.allocations_by_transport(),
                    relays_in_use: shard.relays.in_use() + shard.tcp.in_use(),
                    reserved: shard.relays.reserved(),
                    limited_sources: shard.limiter.tracked(),
                    draining: shard.manager.is_draining(),
                    offloaded: shard.manager.offload().len(),
                });
            }
            Command::Reload(new, reply) => {
                let new = *new;
                shard.manager.reload(new.config, new.auth, new.rules);
                // Channels the new rules, credentials or limits refuse leave the kernel now.
                shard.settle();
                if let Some(alternate) = new.draining {
                    shard.manager.drain(alternate);
                }
                shard.limiter.set(new.rate, new.burst);
                let _ = reply.send(());
            }
            Command::SetAuth(auth, reply) => {
                shard.manager.set_auth(auth);
                shard.settle();
                let _ = reply.send(());
            }
            Command::Drain(alternate, reply) => {
                shard.manager.drain(alternate);
                let _ = reply.send(());
            }
            Command::Clear(reply) => {
                let allocations = shard.manager.allocation_count();
                shard.manager.clear();
                shard.settle();
                let _ = reply.send(allocations);
            }
            Command::Accept {
                stream,
                client,
                tls,
                guards,
            } => self.conns.accept(stream, client, tls, guards, now),
            Command::AcceptTls(tls) => {
                // Read it next turn: rustls may already hold its first requests.
                let tls = *tls;
                let (stream, tuple, session) = (tls.stream, tls.tuple, tls.session);
                let accepted = (self.conns).accept_established(
                    stream,
                    tuple,
                    session,
                    &tls.prefix,
                    tls.guards,
                    now,
                );
                if let Some(token) = accepted {
                    self.again.push(token);
                }
            }
        }
    }

    /// Datagrams from clients: ChannelData to peers, requests answered.
    fn serve_listen(&mut self, shard: &mut Shard, now: Instant, token: Token) {
        let index = token.0 - 1;
        let Some(listen) = self.listen.get(index) else {
            return;
        };
        let server = listen.addr;
        let Some(count) = self.receive(index, None, shard) else {
            return;
        };
        for i in 0..count {
            let Some((packet, client)) = self.recv.get(i) else {
                break;
            };
            if client == UNKNOWN {
                self.counters.count(Event::Malformed);
                continue;
            }
            self.counters.count(Event::Received);
            let tuple = FiveTuple {
                transport: Transport::Udp,
                client,
                server,
            };
            let handled = self.dispatcher.handle(shard, now, tuple, packet);
            self.handled(index, client, handled);
        }
        self.take_turn(token, count);
    }

    /// Acts on what became of a datagram from `client` read on listen socket `index`.
    fn handled(&mut self, index: usize, client: SocketAddr, handled: Handled) {
        match handled {
            Handled::Reply => {
                self.counters.count(Event::Replied);
                // RFC 5780: the answer may leave from another of this worker's sockets.
                let (out, to) = match self.dispatcher.route {
                    Some((from, to)) => (self.listen_index(from).unwrap_or(index), to),
                    None => (index, client),
                };
                self.listen[out].out.push(to, &[&self.dispatcher.reply]);
                if self.listen[out].out.is_full() {
                    self.flush(out);
                }
            }
            Handled::Relayed => self.counters.count(Event::Relayed),
            Handled::Ignored => self.counters.count(Event::Ignored),
            Handled::Malformed(_) => self.counters.count(Event::Malformed),
            Handled::RateLimited => self.counters.count(Event::RateLimited),
        }
    }

    /// Datagrams other workers read from clients whose allocation moved to this one (RFC
    /// 8016, [`super::mobility`]), handled as if this worker's listen socket of the same
    /// address had read them; what this worker's sockets read for other workers' moved
    /// clients leaves for their inboxes first.
    fn moved(&mut self, shard: &mut Shard, now: Instant) {
        shard.moves.flush();
        if shard.moves.catch_up(&mut shard.manager, now) {
            shard.settle();
        }
        let mut batches = Vec::new();
        shard.moves.take_incoming(&mut batches);
        for batch in batches {
            shard.moves.delivering = true;
            for (tuple, packet) in batch.iter() {
                let Some(index) = self.listen_index(tuple.server) else {
                    continue;
                };
                let handled = self.dispatcher.handle(shard, now, tuple, packet);
                self.handled(index, tuple.client, handled);
            }
            shard.moves.delivering = false;
            shard.moves.recycle(batch);
        }
    }

    /// The index of this worker's listen socket bound to `addr`.
    fn listen_index(&self, addr: SocketAddr) -> Option<usize> {
        self.listen.iter().position(|l| l.addr == addr)
    }

    /// Datagrams from peers: to their clients as ChannelData or Data indications; or a TCP
    /// allocation's listener or connect (RFC 6062).
    fn serve_relay(&mut self, shard: &mut Shard, now: Instant, token: Token) {
        let slot = token.0 - RELAY_TOKENS;
        if is_tcp_slot(slot) {
            return self
                .again
                .extend(shard.serve_tcp_relay(slot, now).then_some(token));
        }
        // Nothing when released since the event was queued.
        let Some(count) = self.receive(usize::MAX, Some(token), shard) else {
            return;
        };
        for i in 0..count {
            self.forward(shard, now, slot, i);
        }
        self.take_turn(token, count);
    }

    /// One batch per socket per turn, so a busy socket cannot hold up the others (their
    /// packets would wait, adding latency): a full batch means more may be queued, and the
    /// edge-triggered poll will not say so again, so the socket goes round once more.
    fn take_turn(&mut self, token: Token, received: usize) {
        if received == BATCH {
            self.again.push(token);
        }
    }

    /// One `recvmmsg` on listen socket `index`, or on the relay socket behind `relay`.
    /// `None` when nothing (more) can be read now.
    fn receive(&mut self, index: usize, relay: Option<Token>, shard: &Shard) -> Option<usize> {
        let received = match relay {
            Some(token) => {
                let relay = shard.relays.by_token(token)?;
                self.recv.recv(&relay.socket, relay.addr.is_ipv6())
            }
            None => {
                let listen = self.listen.get(index)?;
                self.recv.recv(&listen.socket, listen.addr.is_ipv6())
            }
        };
        match received {
            Ok(count) => Some(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => {
                // ICMP errors and buffer exhaustion are transient: count, log rarely, go on.
                self.counters.count(Event::IoError);
                self.warn.warn(|| tracing::warn!("udp receive failed: {e}"));
                Some(0)
            }
        }
    }

    /// Sends datagram `i` of the last receive on relay `relay` to its client.
    fn forward(&mut self, shard: &mut Shard, now: Instant, slot: usize, i: usize) {
        let Some((payload, peer)) = self.recv.get(i) else {
            return;
        };
        // Borrowed field by field: the payload is still in the receive buffer.
        let mut out = ToClient {
            listen: &mut self.listen,
            conns: &mut self.conns,
            indication: &mut self.indication,
            counters: &self.counters,
        };
        out.forward(shard, now, slot, peer, payload);
    }

    /// Data handed to this worker's relays ([`super::handoff`]) by its own clients this turn
    /// and by other workers' through its inbox, delivered as datagrams arriving on those
    /// relay sockets from the sending relays; what its clients handed to other workers
    /// leaves for their inboxes first.
    fn handoffs(&mut self, shard: &mut Shard, now: Instant) {
        shard.handoffs.flush();
        let mut batches = std::mem::take(&mut self.handed);
        shard.handoffs.take_incoming(&mut batches);
        for batch in batches.drain(..) {
            for (route, payload) in batch.iter() {
                let event = if !shard.relays.holds(route.slot, route.to) {
                    Event::HandoffGone
                } else if (self.clients()).forward(shard, now, route.slot, route.from, payload) {
                    Event::HandoffDelivered
                } else {
                    Event::HandoffRefused
                };
                self.counters.count(event);
            }
            shard.handoffs.recycle(batch);
        }
        self.handed = batches;
    }

    fn clients(&mut self) -> ToClient<'_> {
        ToClient {
            listen: &mut self.listen,
            conns: &mut self.conns,
            indication: &mut self.indication,
            counters: &self.counters,
        }
    }

    /// Sends what waits on listen socket `index`.
    fn flush(&mut self, index: usize) {
        self.clients().flush(index);
    }
}

/// What a loop sends to its clients through, borrowed from it for one datagram.
struct ToClient<'a> {
    listen: &'a mut [Listen],
    conns: &'a mut Conns,
    indication: &'a mut Message,
    counters: &'a Counters,
}

impl ToClient<'_> {
    /// A datagram from `peer` on the relay socket in `slot`: to its allocation's client as
    /// ChannelData or a Data indication. False when the allocation refused it (no
    /// permission, over its bandwidth).
    fn forward(
        &mut self,
        shard: &mut Shard,
        now: Instant,
        slot: usize,
        peer: SocketAddr,
        payload: &[u8],
    ) -> bool {
        let Some(route) = shard.manager.peer_route(now, slot, peer, payload.len()) else {
            self.counters.count(Event::Ignored);
            return false;
        };
        let header: [u8; 4];
        let parts: [&[u8]; 2] = match route.channel {
            Some(channel) => {
                header = channel_data::header(channel, payload.len());
                [&header, payload]
            }
            None => {
                response::data_indication(self.indication, peer, payload);
                [&self.indication.raw, &[]]
            }
        };
        let sent = match route.client.transport {
            Transport::Udp => {
                let server = route.client.server;
                match self.listen.iter().position(|l| l.addr == server) {
                    Some(index) => {
                        self.listen[index].out.push(route.client.client, &parts);
                        if self.listen[index].out.is_full() {
                            self.flush(index);
                        }
                        true
                    }
                    None => false,
                }
            }
            // Copied into the connection's outgoing buffer (padded to 4 bytes, RFC 8656
            // §12.5) and written at the end of the turn; a client that stopped reading is
            // closed and its data dropped.
            Transport::Tcp | Transport::Tls => {
                (self.conns).queue(&route.client, &parts, shard, self.counters, now)
            }
        };
        self.counters
            .count(if sent { Event::Relayed } else { Event::IoError });
        true
    }

    /// Sends what waits on listen socket `index`; what the socket refused is counted as an
    /// I/O error (it was counted as replied or relayed when queued).
    fn flush(&mut self, index: usize) {
        let Some(listen) = self.listen.get_mut(index) else {
            return;
        };
        let flushed = listen.out.flush(&listen.socket);
        for (event, n) in [
            (Event::IoError, flushed.dropped),
            (Event::GsoSends, flushed.gso_sends),
            (Event::GsoDatagrams, flushed.gso_datagrams),
            (Event::GsoRefused, flushed.gso_refused),
        ] {
            if n > 0 {
                self.counters.count_many(event, n as u64);
            }
        }
    }
}
