//! Relay sockets: [`SocketBinder`] binds them for the allocation manager (random free ports
//! from the shared [`PortPool`] of `min-port..=max-port`, so they are not predictable) and
//! registers each with its shard's
//! event loop ([`super::datapath`]), which moves datagrams from peers back to clients.
//!
//! A relay socket is a slot in a table indexed by its poll token, so the event loop finds
//! the socket behind a readiness event with one index, and an idle allocation costs its
//! socket and a slot: no task, no buffer.
//!
//! A reserved port (EVEN-PORT R=1) is held by a bound socket that nobody reads: it is kept
//! in the shared [`PortPool`] (any shard may claim it) with a socket filter that drops every
//! datagram before it is queued, so strangers cannot fill its receive buffer; the filter
//! comes off when an Allocate claims the port.

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

    /// Relay ports bound for this shard's allocations.
    pub(super) fn in_use(&self) -> usize {
        self.by_addr.len()
    }

    /// Relay ports reserved, by every shard (the pools are shared).
    pub(super) fn reserved(&self) -> usize {
        self.pools.iter().map(|pool| pool.held()).sum()
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

/// The classic BPF program `ret #0`: accept zero bytes of every packet, i.e. drop it.
const DROP_ALL: [socket2::SockFilter; 1] = [socket2::SockFilter::new(0x06, 0, 0, 0)];

/// A socket that holds `addr` and receives nothing: the filter is attached before the bind,
/// so not one datagram is ever queued on it.
fn bind_muted(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = super::new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.attach_filter(&DROP_ALL)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl RelayBinder for SocketBinder {
    fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<SocketAddr> {
        if let PortChoice::Reserved(port) = choice {
            let socket = self.pool(ip).take_held(port)?;
            let unmuted = socket2::SockRef::from(&socket).detach_filter();
            let addr = unmuted.ok().and_then(|()| self.activate(socket));
            if addr.is_none() {
                self.pool(ip).release(port);
            }
            return addr;
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
                let Ok(next) = bind_muted(SocketAddr::new(ip, port + 1)) else {
                    busy.push(port + 1);
                    drop(socket);
                    self.pool(ip).release(port);
                    continue;
                };
                self.pool(ip).hold(port + 1, next);
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
            if pair && self.pool(ip).take_held(port + 1).is_some() {
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
        closed |= self.pool(addr.ip()).take_held(addr.port()).is_some();
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
    fn a_reserved_twin_is_held_until_claimed_by_any_shard_or_released() {
        let (_poll, mut a, mut b) = binders(47_200);
        let Some(first) = a.bind(LOOPBACK, PortChoice::EvenReserveNext) else {
            return; // every even port of the range is taken by other programs: nothing to test
        };
        assert_eq!(first.port() % 2, 0);
        let twin = first.port() + 1;
        assert_eq!((a.in_use(), a.reserved(), b.reserved()), (1, 1, 1));
        // Nobody else gets the twin while it is reserved...
        while let Some(addr) = b.bind(LOOPBACK, PortChoice::Any) {
            assert_ne!(addr.port(), twin);
        }
        // ...and any shard claims it by number (the Allocate with the token may reach
        // another worker than the one that reserved it), once.
        let claimed = b.bind(LOOPBACK, PortChoice::Reserved(twin));
        assert_eq!(claimed, Some(SocketAddr::new(LOOPBACK, twin)));
        assert_eq!(a.bind(LOOPBACK, PortChoice::Reserved(twin)), None);
        assert_eq!(
            (
                b.reserved(),
                b.socket(&SocketAddr::new(LOOPBACK, twin)).is_some()
            ),
            (0, true)
        );
        b.release(SocketAddr::new(LOOPBACK, twin));
        assert_eq!(
            a.bind(LOOPBACK, PortChoice::Any).map(|a| a.port()),
            Some(twin)
        );
    }

    #[test]
    fn a_reserved_port_buffers_nothing_and_relays_once_claimed() {
        let (_poll, mut a, mut b) = binders(47_210);
        let Some(first) = a.bind(LOOPBACK, PortChoice::EvenReserveNext) else {
            return; // every even port of the range is taken by other programs: nothing to test
        };
        let twin = SocketAddr::new(LOOPBACK, first.port() + 1);
        let stranger = std::net::UdpSocket::bind((LOOPBACK, 0)).expect("bind");
        for _ in 0..50 {
            stranger.send_to(&[0xab; 1000], twin).expect("send");
        }
        // Claimed by another shard than the one that reserved it.
        let claimed = b.bind(LOOPBACK, PortChoice::Reserved(twin.port()));
        assert_eq!(claimed, Some(twin));
        let socket = b.socket(&twin).expect("bound");
        let mut buf = [0u8; 1500];
        // Nothing the stranger sent while the port was reserved was kept...
        let before = socket.recv_from(&mut buf);
        assert!(
            before
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "{before:?}"
        );
        // ...and once claimed the socket receives like any relay.
        stranger.send_to(b"after", twin).expect("send");
        socket.set_nonblocking(false).expect("blocking");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let (n, from) = socket.recv_from(&mut buf).expect("a datagram");
        assert_eq!(
            (&buf[..n], from),
            (&b"after"[..], stranger.local_addr().expect("addr"))
        );
    }
}
