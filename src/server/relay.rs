//! Relay sockets: [`SocketBinder`] binds them for the allocation manager (random free ports
//! from the shared [`PortPool`] of `min-port..=max-port`, so they are not predictable) and
//! registers each with its shard's
//! event loop ([`super::datapath`]), which moves datagrams from peers back to clients.
//!
//! A relay socket is a slot in a table indexed by its poll token, so the event loop finds
//! the socket behind a readiness event with one index, and an idle allocation costs its
//! socket and a slot: no task, no buffer.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Protocol, Type};

use super::ports::PortPool;
use crate::turn::{FastMap, PortChoice, RelayBinder};

/// Free ports tried (ones another program holds fail to bind) before answering 508
/// (Insufficient Capacity).
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
    /// The port pools of IPv4 and IPv6 relay addresses, shared by every shard.
    pools: [Arc<PortPool>; 2],
    registry: Registry,
    slots: Vec<Option<Relay>>,
    free: Vec<usize>,
    by_addr: FastMap<SocketAddr, usize>,
    reserved: FastMap<SocketAddr, std::net::UdpSocket>,
}

impl SocketBinder {
    /// A binder whose sockets are watched by the event loop that polls `registry`.
    pub(super) fn new(pools: [Arc<PortPool>; 2], registry: Registry) -> Self {
        Self {
            pools,
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

    fn pool(&self, ip: IpAddr) -> &PortPool {
        &self.pools[usize::from(ip.is_ipv6())]
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
        // Ports some other program holds stay marked until the search ends, so it moves on.
        let mut busy = Vec::new();
        let mut bound = None;
        for _ in 0..BIND_ATTEMPTS {
            let Some(port) = self.pool(ip).take(even, pair) else {
                break;
            };
            let Ok(socket) = bind_udp(SocketAddr::new(ip, port)) else {
                busy.push(port);
                if pair {
                    self.pool(ip).release(port + 1);
                }
                continue;
            };
            if pair {
                let Ok(next) = bind_udp(SocketAddr::new(ip, port + 1)) else {
                    busy.push(port + 1);
                    drop(socket);
                    self.pool(ip).release(port);
                    continue;
                };
                self.reserved.insert(SocketAddr::new(ip, port + 1), next);
            }
            bound = Some((port, socket));
            break;
        }
        for port in busy {
            self.pool(ip).release(port);
        }
        let (port, socket) = bound?;
        let addr = self.activate(socket);
        if addr.is_none() {
            // Not watched, so not used: give the port (and its reserved twin) back.
            self.pool(ip).release(port);
            if pair
                && self
                    .reserved
                    .remove(&SocketAddr::new(ip, port + 1))
                    .is_some()
            {
                self.pool(ip).release(port + 1);
            }
        }
        addr
    }

    fn release(&mut self, addr: SocketAddr) {
        let mut closed = false;
        if let Some(slot) = self.by_addr.remove(&addr) {
            if let Some(relay) = self.slots.get_mut(slot).and_then(Option::take) {
                // Closing the socket also removes it from the poll set; deregistering first
                // keeps that true even if something else still held the descriptor.
                let fd = relay.socket.as_raw_fd();
                let _ = self.registry.deregister(&mut SourceFd(&fd));
            }
            self.free.push(slot);
            closed = true;
        }
        closed |= self.reserved.remove(&addr).is_some();
        // Only once the socket is closed may another shard take the port.
        if closed {
            self.pool(addr.ip()).release(addr.port());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Two binders (two shards) over one range of 8 ports on loopback (one range per test:
    /// tests run in parallel).
    fn binders(first: u16) -> (mio::Poll, SocketBinder, SocketBinder) {
        let poll = mio::Poll::new().expect("poll");
        let pool = || Arc::new(PortPool::new(first, first + 7));
        let pools = [pool(), pool()];
        let binder = || {
            let registry = poll.registry().try_clone().expect("registry");
            SocketBinder::new(pools.clone(), registry)
        };
        let (a, b) = (binder(), binder());
        (poll, a, b)
    }

    #[test]
    fn shards_share_the_range_and_released_ports_come_back() {
        let (_poll, mut a, mut b) = binders(47_190);
        let mut held = Vec::new();
        // Alternate shards until the range is full (a port another program holds is skipped).
        for i in 0.. {
            let binder = if i % 2 == 0 { &mut a } else { &mut b };
            match binder.bind(LOOPBACK, PortChoice::Any) {
                Some(addr) => held.push((i % 2, addr)),
                None => break,
            }
        }
        assert!(!held.is_empty() && held.len() <= 8, "{held:?}");
        let mut ports: Vec<u16> = held.iter().map(|(_, addr)| addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), held.len(), "a port bound twice: {held:?}");
        assert_eq!(b.bind(LOOPBACK, PortChoice::Any), None);

        // A port released by shard A can be bound by shard B at once.
        let (_, freed) = held
            .iter()
            .copied()
            .find(|(shard, _)| *shard == 0)
            .expect("A bound");
        a.release(freed);
        assert_eq!(a.in_use() + b.in_use(), held.len() - 1);
        assert_eq!(b.bind(LOOPBACK, PortChoice::Any), Some(freed));
    }

    #[test]
    fn a_reserved_twin_is_held_until_claimed_or_released() {
        let (_poll, mut a, mut b) = binders(47_200);
        let Some(first) = a.bind(LOOPBACK, PortChoice::EvenReserveNext) else {
            return; // every even port of the range is taken by other programs: nothing to test
        };
        assert_eq!(first.port() % 2, 0);
        let twin = first.port() + 1;
        assert_eq!(a.in_use(), 2);
        // Nobody else gets the twin while it is reserved...
        while let Some(addr) = b.bind(LOOPBACK, PortChoice::Any) {
            assert_ne!(addr.port(), twin);
        }
        // ...and the holder claims it by number.
        let claimed = a.bind(LOOPBACK, PortChoice::Reserved(twin));
        assert_eq!(claimed, Some(SocketAddr::new(LOOPBACK, twin)));
        a.release(SocketAddr::new(LOOPBACK, twin));
        assert_eq!(
            b.bind(LOOPBACK, PortChoice::Any).map(|a| a.port()),
            Some(twin)
        );
    }
}
