//! The UDP data path: one event-loop thread per shard. Each thread owns its shard's
//! SO_REUSEPORT listen sockets (one per UDP listen address) and polls them together with
//! every relay socket its shard's allocations hold, so a relayed datagram never changes
//! thread: client → listen socket → relay socket → peer, and back, on one core.
//!
//! Per wake-up the thread takes the shard's lock once (other threads take it only for TCP
//! clients, timers and admin requests), reads one batch from each ready socket with
//! `recvmmsg` (a socket with more waiting goes round again, after the others), and sends
//! everything bound for clients with one `sendmmsg` per listen socket and batch.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};
use stun::message::{CLASS_INDICATION, METHOD_DATA, Message, MessageType};

use super::mmsg::{BATCH, RecvBatch, SendQueue, UNKNOWN};
use super::relay::RELAY_TOKENS;
use super::shard::{Dispatcher, Handled, Shard, Shared};
use super::stats::{Counters, Event, Stats};
use super::throttle::Throttle;
use crate::stun::{channel_data, response};
use crate::turn::{FiveTuple, Transport};

/// Wakes a loop to look at its stop flag.
const WAKE: Token = Token(0);

/// A shard's poll set, made before the shard so its binder can register relay sockets.
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

    /// A handle to register relay sockets with, from any thread.
    pub(super) fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }
}

/// The running event-loop threads.
pub(super) struct DataPath {
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<Waker>>,
    stop: Arc<AtomicBool>,
}

impl DataPath {
    /// Starts one thread per poller; `listen[i]` are the listen sockets of shard `i`.
    pub(super) fn start(
        pollers: Vec<Poller>,
        listen: Vec<Vec<std::net::UdpSocket>>,
        shared: &Arc<Shared>,
        stats: &Stats,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut path = Self {
            threads: Vec::new(),
            wakers: Vec::new(),
            stop: Arc::clone(&stop),
        };
        let mut listen = listen.into_iter();
        for (shard, poller) in pollers.into_iter().enumerate() {
            let mut sockets = Vec::new();
            for (i, socket) in listen.next().unwrap_or_default().into_iter().enumerate() {
                let fd = socket.as_raw_fd();
                let token = Token(1 + i);
                (poller.poll.registry()).register(&mut SourceFd(&fd), token, Interest::READABLE)?;
                sockets.push((socket.local_addr()?, socket));
            }
            path.wakers.push(Arc::clone(&poller.waker));
            let shared = Arc::clone(shared);
            let counters = stats.register();
            let stop = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name(format!("rturn-udp-{shard}"))
                .spawn(move || {
                    // Built here: the batch headers hold raw pointers and stay on this thread.
                    let event_loop = Loop {
                        shard,
                        shared,
                        counters,
                        listen: (sockets.into_iter())
                            .map(|(addr, socket)| Listen {
                                addr,
                                socket,
                                out: SendQueue::new(),
                            })
                            .collect(),
                        recv: RecvBatch::new(),
                        dispatcher: Dispatcher::new(),
                        indication: Message::new(),
                        warn: Throttle::default(),
                        again: Vec::new(),
                    };
                    event_loop.run(poller.poll, &stop);
                });
            match thread {
                Ok(thread) => path.threads.push(thread),
                Err(e) => {
                    path.stop();
                    return Err(e);
                }
            }
        }
        Ok(path)
    }

    /// Stops every loop and waits for it; the listen sockets close on return.
    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a udp event loop panicked");
            }
        }
    }
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
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    listen: Vec<Listen>,
    recv: RecvBatch,
    dispatcher: Dispatcher,
    indication: Message,
    warn: Throttle,
    /// Sockets left with datagrams queued after their turn.
    again: Vec<Token>,
}

impl Loop {
    fn run(mut self, mut poll: Poll, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        let mut ready = Vec::with_capacity(1024);
        // Its own handle, so the lock guard does not borrow `self`.
        let shared = Arc::clone(&self.shared);
        loop {
            let timeout = (!self.again.is_empty()).then_some(Duration::ZERO);
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("udp event loop of shard {} failed: {e}", self.shard);
                return;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            ready.clear();
            ready.append(&mut self.again);
            ready.extend(events.iter().map(|e| e.token()).filter(|t| *t != WAKE));
            let mut shard = shared.lock(self.shard);
            let now = Instant::now();
            for &token in &ready {
                if token.0 >= RELAY_TOKENS {
                    self.serve_relay(&mut shard, now, token);
                } else {
                    self.serve_listen(&mut shard, now, token);
                }
            }
            drop(shard);
            for i in 0..self.listen.len() {
                self.flush(i);
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
            match self.dispatcher.handle(shard, now, tuple, packet) {
                Handled::Reply => {
                    self.counters.count(Event::Replied);
                    self.listen[index]
                        .out
                        .push(client, &[&self.dispatcher.reply]);
                    if self.listen[index].out.is_full() {
                        self.flush(index);
                    }
                }
                Handled::Relayed => self.counters.count(Event::Relayed),
                Handled::Ignored => self.counters.count(Event::Ignored),
                Handled::Malformed(_) => self.counters.count(Event::Malformed),
                Handled::RateLimited => self.counters.count(Event::RateLimited),
            }
        }
        self.take_turn(token, count);
    }

    /// Datagrams from peers: to their clients as ChannelData or Data indications.
    fn serve_relay(&mut self, shard: &mut Shard, now: Instant, token: Token) {
        let Some(relay) = shard.manager.binder().by_token(token).map(|r| r.addr) else {
            return; // released since the event was queued
        };
        let Some(count) = self.receive(usize::MAX, Some(token), shard) else {
            return;
        };
        for i in 0..count {
            self.forward(shard, now, relay, i);
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
                let relay = shard.manager.binder().by_token(token)?;
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
    fn forward(&mut self, shard: &mut Shard, now: Instant, relay: SocketAddr, i: usize) {
        let Some((payload, peer)) = self.recv.get(i) else {
            return;
        };
        let Some(route) = shard.manager.peer_route(now, relay, peer, payload.len()) else {
            self.counters.count(Event::Ignored);
            return;
        };
        let header: [u8; 4];
        let parts: [&[u8]; 2] = match route.channel {
            Some(channel) => {
                header = channel_data::header(channel, payload.len());
                [&header, payload]
            }
            None => {
                data_indication(&mut self.indication, peer, payload);
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
            Transport::Tcp | Transport::Tls => match shard.tcp_sinks.get(&route.client) {
                Some(tx) => {
                    // Streams carry ChannelData padded to 4 bytes (RFC 8656 §12.5).
                    let len = parts[0].len() + parts[1].len();
                    let mut frame = Vec::with_capacity(len + 3);
                    frame.extend_from_slice(parts[0]);
                    frame.extend_from_slice(parts[1]);
                    frame.resize(len.next_multiple_of(4), 0);
                    // A client that stopped reading overflows its queue and is closed by
                    // its connection task (`tcp.rs`); meanwhile its data is dropped.
                    tx.push(frame).is_ok()
                }
                None => false,
            },
        };
        self.counters
            .count(if sent { Event::Relayed } else { Event::IoError });
    }

    /// Sends what waits on listen socket `index`; what the socket refused is counted as an
    /// I/O error (it was counted as replied or relayed when queued).
    fn flush(&mut self, index: usize) {
        let Some(listen) = self.listen.get_mut(index) else {
            return;
        };
        for _ in 0..listen.out.flush(&listen.socket) {
            self.counters.count(Event::IoError);
        }
    }
}

/// A Data indication (RFC 8656 §11.4) carrying `payload` from `peer`.
fn data_indication(msg: &mut Message, peer: SocketAddr, payload: &[u8]) {
    msg.reset();
    msg.typ = MessageType::new(METHOD_DATA, CLASS_INDICATION);
    // Not a secret, and per packet: the thread-local CSPRNG, no system call.
    msg.transaction_id.0 = rand::random();
    msg.write_header();
    response::add_xor_address(msg, ATTR_XOR_PEER_ADDRESS, peer);
    msg.add(ATTR_DATA, payload);
}
