//! Relay sockets: [`SocketBinder`] binds them for the allocation manager (random ports in
//! `min-port..=max-port`, so they are not predictable) and registers each with its shard's
//! event loop ([`super::datapath`]), which moves datagrams from peers back to clients.
//!
//! A relay socket is a slot in a table indexed by its poll token, so the event loop finds
//! the socket behind a readiness event with one index, and an idle allocation costs its
//! socket and a slot: no task, no buffer.

use crate::turn::FastMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Protocol, Type};

use crate::turn::{PortChoice, RelayBinder};

/// Random ports tried before answering 508 (Insufficient Capacity).
const BIND_ATTEMPTS: usize = 64;
/// Poll tokens from here on are relay sockets (slot = token - RELAY_TOKENS); below are the
/// event loop's own (waker, listen sockets).
pub(super) const RELAY_TOKENS: usize = 1 << 16;

/// One bound relay socket.
pub(super) struct Relay {
    pub(super) addr: SocketAddr,
    pub(super) socket: std::net::UdpSocket,
}

/// Binds relay sockets on behalf of one shard's allocation manager.
pub(super) struct SocketBinder {
    min_port: u16,
    max_port: u16,
    registry: Registry,
    slots: Vec<Option<Relay>>,
    free: Vec<usize>,
    by_addr: FastMap<SocketAddr, usize>,
    reserved: FastMap<SocketAddr, std::net::UdpSocket>,
}

impl SocketBinder {
    /// A binder whose sockets are watched by the event loop that polls `registry`.
    pub(super) fn new(min_port: u16, max_port: u16, registry: Registry) -> Self {
        Self {
            min_port,
            max_port,
            registry,
            slots: Vec::new(),
            free: Vec::new(),
            by_addr: FastMap::default(),
            reserved: FastMap::default(),
        }
    }

    /// The relay socket bound at `addr`, to send from.
    pub(super) fn socket(&self, addr: &SocketAddr) -> Option<&std::net::UdpSocket> {
        let slot = *self.by_addr.get(addr)?;
        self.slots.get(slot)?.as_ref().map(|r| &r.socket)
    }

    /// The relay socket behind a poll token, if it is still bound.
    pub(super) fn by_token(&self, token: Token) -> Option<&Relay> {
        let slot = token.0.checked_sub(RELAY_TOKENS)?;
        self.slots.get(slot)?.as_ref()
    }

    /// Relay ports held: bound for allocations, or reserved.
    pub(super) fn in_use(&self) -> usize {
        self.by_addr.len() + self.reserved.len()
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
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let token = Token(RELAY_TOKENS + slot);
        let fd = socket.as_raw_fd();
        if let Err(e) = (self.registry).register(&mut SourceFd(&fd), token, Interest::READABLE) {
            tracing::warn!("cannot watch relay socket {addr}: {e}");
            if slot < self.slots.len() {
                self.free.push(slot);
            }
            return None;
        }
        if slot == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[slot] = Some(Relay { addr, socket });
        self.by_addr.insert(addr, slot);
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
        if let Some(slot) = self.by_addr.remove(&addr) {
            if let Some(relay) = self.slots.get_mut(slot).and_then(Option::take) {
                // Closing the socket also removes it from the poll set; deregistering first
                // keeps that true even if something else still held the descriptor.
                let fd = relay.socket.as_raw_fd();
                let _ = self.registry.deregister(&mut SourceFd(&fd));
            }
            self.free.push(slot);
        }
        self.reserved.remove(&addr);
    }
}
