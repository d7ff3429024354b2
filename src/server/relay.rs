//! Relay sockets: [`SocketBinder`] binds them for the allocation manager (random ports in
//! `min-port..=max-port`, so they are not predictable), and [`serve`] moves datagrams from
//! peers back to clients.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use socket2::{Protocol, Type};
use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};
use stun::message::{CLASS_INDICATION, METHOD_DATA, Message, MessageType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::shard::{ClientSink, Shared};
use super::stats::{Counters, Event};
use crate::stun::response;
use crate::turn::{PortChoice, RelayBinder};

/// Random ports tried before answering 508 (Insufficient Capacity).
const BIND_ATTEMPTS: usize = 64;
/// Room in front of a received payload for a ChannelData header.
const HEADROOM: usize = 4;

/// A relay socket just bound, for the I/O layer to start serving.
pub(super) struct NewRelay {
    pub(super) addr: SocketAddr,
    pub(super) socket: Arc<UdpSocket>,
    pub(super) stop: CancellationToken,
}

/// Binds relay sockets on behalf of one shard's allocation manager.
pub(super) struct SocketBinder {
    min_port: u16,
    max_port: u16,
    active: HashMap<SocketAddr, (Arc<UdpSocket>, CancellationToken)>,
    reserved: HashMap<SocketAddr, std::net::UdpSocket>,
    started: Vec<NewRelay>,
}

impl SocketBinder {
    pub(super) fn new(min_port: u16, max_port: u16) -> Self {
        Self {
            min_port,
            max_port,
            active: HashMap::new(),
            reserved: HashMap::new(),
            started: Vec::new(),
        }
    }

    /// The relay socket bound at `addr`, to send from.
    pub(super) fn socket(&self, addr: &SocketAddr) -> Option<&UdpSocket> {
        self.active.get(addr).map(|(s, _)| s.as_ref())
    }

    /// Relay ports held: bound for allocations, or reserved.
    pub(super) fn in_use(&self) -> usize {
        self.active.len() + self.reserved.len()
    }

    /// Sockets bound since the last call; the caller spawns [`serve`] for each.
    pub(super) fn take_started(&mut self) -> Vec<NewRelay> {
        std::mem::take(&mut self.started)
    }

    fn random_port(&self, even: bool, need_next: bool) -> Option<u16> {
        let top = if need_next {
            self.max_port.checked_sub(1)?
        } else {
            self.max_port
        };
        if top < self.min_port {
            return None;
        }
        let port = rand::random_range(self.min_port..=top);
        if even && port % 2 == 1 {
            // Step down to the even neighbour, or up when that leaves the range.
            if port > self.min_port {
                Some(port - 1)
            } else {
                port.checked_add(1).filter(|p| *p <= top)
            }
        } else {
            Some(port)
        }
    }

    fn activate(&mut self, socket: std::net::UdpSocket) -> Option<SocketAddr> {
        let addr = socket.local_addr().ok()?;
        let socket = Arc::new(UdpSocket::from_std(socket).ok()?);
        let stop = CancellationToken::new();
        self.active
            .insert(addr, (Arc::clone(&socket), stop.clone()));
        self.started.push(NewRelay { addr, socket, stop });
        Some(addr)
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = super::new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl RelayBinder for SocketBinder {
    fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<SocketAddr> {
        if let PortChoice::Reserved(port) = choice {
            let socket = self.reserved.remove(&SocketAddr::new(ip, port))?;
            return self.activate(socket);
        }
        let even = choice != PortChoice::Any;
        let pair = choice == PortChoice::EvenReserveNext;
        for _ in 0..BIND_ATTEMPTS {
            let port = self.random_port(even, pair)?;
            let Ok(socket) = bind_udp(SocketAddr::new(ip, port)) else {
                continue;
            };
            if pair {
                let Ok(next) = bind_udp(SocketAddr::new(ip, port + 1)) else {
                    continue;
                };
                self.reserved.insert(SocketAddr::new(ip, port + 1), next);
            }
            return self.activate(socket);
        }
        None
    }

    fn release(&mut self, addr: SocketAddr) {
        if let Some((_, stop)) = self.active.remove(&addr) {
            stop.cancel();
        }
        self.reserved.remove(&addr);
    }
}

/// Datagrams handled per wake-up before yielding to other tasks.
const BURST: usize = 64;

thread_local! {
    /// One receive buffer (and Data-indication builder) per worker thread, not per relay
    /// socket: a datagram is received and forwarded without awaiting in between, so the
    /// buffer is never held across a task switch. This keeps an idle allocation's memory to
    /// its bookkeeping (BENCHMARKS.md: RSS per allocation).
    static SCRATCH: RefCell<(Vec<u8>, Message)> =
        RefCell::new((vec![0u8; HEADROOM + 65_536], Message::new()));
}

/// Serves one relay socket: every datagram from a permitted peer goes to the client, as
/// ChannelData when a channel is bound (written in place in front of the payload, no copy)
/// or as a Data indication otherwise. Stops when the allocation releases the socket.
pub(super) async fn serve(
    relay: NewRelay,
    shard: usize,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
) {
    loop {
        tokio::select! {
            _ = relay.stop.cancelled() => return,
            ready = relay.socket.readable() => if ready.is_err() {
                counters.count(Event::IoError);
                return;
            },
        }
        for _ in 0..BURST {
            let more = SCRATCH.with(|scratch| {
                let (buf, indication) = &mut *scratch.borrow_mut();
                match relay.socket.try_recv_from(&mut buf[HEADROOM..]) {
                    Ok((len, peer)) => {
                        forward(
                            &relay, shard, &shared, &counters, buf, indication, len, peer,
                        );
                        true
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                    Err(_) => {
                        counters.count(Event::IoError);
                        false
                    }
                }
            });
            if !more {
                break;
            }
        }
    }
}

/// Sends one received datagram (payload at `buf[HEADROOM..HEADROOM + len]`) to its client.
#[allow(clippy::too_many_arguments)]
fn forward(
    relay: &NewRelay,
    shard: usize,
    shared: &Shared,
    counters: &Counters,
    buf: &mut [u8],
    indication: &mut Message,
    len: usize,
    peer: SocketAddr,
) {
    let Some((route, sink)) = shared.route_from_peer(shard, Instant::now(), relay.addr, peer, len)
    else {
        counters.count(Event::Ignored);
        return;
    };
    let frame: &[u8] = match route.channel {
        Some(channel) => {
            let length = u16::try_from(len).unwrap_or(u16::MAX);
            buf[..2].copy_from_slice(&channel.to_be_bytes());
            buf[2..4].copy_from_slice(&length.to_be_bytes());
            &buf[..HEADROOM + len]
        }
        None => {
            data_indication(indication, peer, &buf[HEADROOM..HEADROOM + len]);
            &indication.raw
        }
    };
    let sent = match sink {
        ClientSink::Udp(socket) => super::send_now(&socket, frame, route.client.client),
        ClientSink::Tcp(tx) => {
            // Streams carry ChannelData padded to 4 bytes (RFC 8656 §12.5).
            let mut out = Vec::with_capacity(frame.len() + 3);
            out.extend_from_slice(frame);
            out.resize(frame.len().next_multiple_of(4), 0);
            tx.try_send(out).is_ok()
        }
    };
    counters.count(if sent { Event::Relayed } else { Event::IoError });
}

/// A Data indication (RFC 8656 §11.4) carrying `payload` from `peer`.
fn data_indication(msg: &mut Message, peer: SocketAddr, payload: &[u8]) {
    msg.reset();
    msg.typ = MessageType::new(METHOD_DATA, CLASS_INDICATION);
    msg.transaction_id.0 = rand::random();
    msg.write_header();
    response::add_xor_address(msg, ATTR_XOR_PEER_ADDRESS, peer);
    msg.add(ATTR_DATA, payload);
}
