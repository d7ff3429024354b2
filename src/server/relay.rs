//! Relay sockets: [`RelayTable`] is one worker's table of them, owned by its event loop
//! ([`super::datapath`]). The loop binds them when the allocation manager asks
//! ([`crate::turn::Answer::Bind`]: random free ports from the shared [`PortPool`] of
//! `min-port..=max-port`, so they are not predictable) and closes them on its events.
//!
//! A relay socket is a slot in a table indexed by its poll token, so the event loop finds
//! the socket behind a readiness event with one index, routes name the slot to send from,
//! and an idle allocation costs its socket and a slot: no task, no buffer.
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
use crate::turn::{Bound, Event, PortChoice};

/// Free ports tried (ones another program holds fail to bind) before answering 508
/// (Insufficient Capacity).
const BIND_ATTEMPTS: usize = 64;
/// Poll tokens from here on are relay sockets (slot = token - RELAY_TOKENS); below are the
/// event loop's own (waker, listen sockets) and its stream connections
/// ([`super::conns::CONN_TOKENS`]).
pub(super) const RELAY_TOKENS: usize = 1 << 30;

/// One bound relay socket.
pub(super) struct Relay {
    pub(super) addr: SocketAddr,
    pub(super) socket: std::net::UdpSocket,
}

/// One worker's relay sockets, by slot.
pub(super) struct RelayTable {
    /// The port pools of IPv4 and IPv6 relay addresses, shared by every shard; each bound
    /// port records this worker and its slot as its owner.
    pools: [Arc<PortPool>; 2],
    /// The index of the worker that owns this table.
    worker: usize,
    registry: Registry,
    slots: Vec<Option<Relay>>,
    free: Vec<usize>,
    in_use: usize,
}

impl RelayTable {
    /// Worker `worker`'s table, whose sockets are watched by the event loop that polls
    /// `registry`.
    pub(super) fn new(pools: [Arc<PortPool>; 2], registry: Registry, worker: usize) -> Self {
        Self {
            pools,
            worker,
            registry,
            slots: Vec::new(),
            free: Vec::new(),
            in_use: 0,
        }
    }

    /// The relay socket in `slot`, to send from.
    pub(super) fn socket(&self, slot: usize) -> Option<&std::net::UdpSocket> {
        self.slots.get(slot)?.as_ref().map(|r| &r.socket)
    }

    /// Sends `data` to `peer` from the relay socket in `slot`, now, without waiting: a full
    /// socket buffer drops it (UDP semantics, counted by the caller). False when the slot is
    /// empty or the send failed.
    pub(super) fn send_to(&self, slot: usize, data: &[u8], peer: SocketAddr) -> bool {
        self.socket(slot).is_some_and(|socket| {
            socket2::SockRef::from(socket)
                .send_to(data, &peer.into())
                .is_ok()
        })
    }

    /// Whether the relay socket in `slot` is bound to `addr` now (a hand-off names both: the
    /// port may have been released, or bound again elsewhere, since it was sent).
    pub(super) fn holds(&self, slot: usize, addr: SocketAddr) -> bool {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|relay| relay.addr == addr)
    }

    /// The relay socket behind a poll token, if it is still bound.
    pub(super) fn by_token(&self, token: Token) -> Option<&Relay> {
        let slot = token.0.checked_sub(RELAY_TOKENS)?;
        self.slots.get(slot)?.as_ref()
    }

    /// Relay ports bound for this shard's allocations.
    pub(super) fn in_use(&self) -> usize {
        self.in_use
    }

    /// Relay ports reserved, by every shard (the pools are shared).
    pub(super) fn reserved(&self) -> usize {
        self.pools.iter().map(|pool| pool.held()).sum()
    }

    fn pool(&self, ip: IpAddr) -> &PortPool {
        &self.pools[usize::from(ip.is_ipv6())]
    }

    fn activate(&mut self, socket: std::net::UdpSocket) -> Option<Bound> {
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
        self.in_use += 1;
        self.pool(addr.ip())
            .set_owner(addr.port(), self.worker, slot);
        Some(Bound { addr, slot })
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

impl RelayTable {
    /// Binds a relay socket on `ip` as the manager asked; `None` when no port is free (the
    /// manager answers 508). With [`PortChoice::EvenReserveNext`] port + 1 is held, muted,
    /// in the shared pool until any worker claims it ([`PortChoice::Reserved`]) or gives it
    /// up ([`Event::Unreserve`]). A reserved port receives nothing.
    pub(super) fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<Bound> {
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
        let relay = self.activate(socket);
        if relay.is_none() {
            // Not watched, so not used: give the port (and its reserved twin) back.
            self.pool(ip).release(port);
            if pair && self.pool(ip).take_held(port + 1).is_some() {
                self.pool(ip).release(port + 1);
            }
        }
        relay
    }

    /// Does what the manager asked: closes a relay socket, or gives up a reserved port.
    pub(super) fn handle_event(&mut self, event: Event) {
        let addr = match event {
            Event::Close(bound) => {
                let Some(relay) = self.slots.get_mut(bound.slot).and_then(Option::take) else {
                    return;
                };
                // Closing the socket also removes it from the poll set; deregistering first
                // keeps that true even if something else still held the descriptor.
                self.pool(relay.addr.ip()).clear_owner(relay.addr.port());
                let fd = relay.socket.as_raw_fd();
                let _ = self.registry.deregister(&mut SourceFd(&fd));
                self.free.push(bound.slot);
                self.in_use -= 1;
                relay.addr
            }
            Event::Unreserve(addr) => {
                if self.pool(addr.ip()).take_held(addr.port()).is_none() {
                    return;
                }
                addr
            }
            // The kernel's maps' business (`Shard::settle`), not the sockets'.
            Event::OffloadInsert(_) | Event::OffloadRemove(_) => return,
        };
        // Only once the socket is closed may another shard take the port.
        self.pool(addr.ip()).release(addr.port());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Two tables (two shards) over one range of 8 ports on loopback (one range per test:
    /// tests run in parallel).
    fn binders(first: u16) -> (mio::Poll, RelayTable, RelayTable) {
        let poll = mio::Poll::new().expect("poll");
        let pool = || Arc::new(PortPool::new(first, first + 7));
        let pools = [pool(), pool()];
        let binder = |worker| {
            let registry = poll.registry().try_clone().expect("registry");
            RelayTable::new(pools.clone(), registry, worker)
        };
        let (a, b) = (binder(0), binder(1));
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
                Some(relay) => held.push((i % 2, relay)),
                None => break,
            }
        }
        assert!(!held.is_empty() && held.len() <= 8, "{held:?}");
        let mut ports: Vec<u16> = held.iter().map(|(_, r)| r.addr.port()).collect();
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
        // Each bound port names its worker and slot, until it closes.
        let pool = Arc::clone(&a.pools[0]);
        let owner = |relay: &Bound| pool.owner(relay.addr.port());
        for (worker, relay) in &held {
            assert_eq!(owner(relay), Some((*worker, relay.slot)), "{relay:?}");
        }
        assert!(a.holds(freed.slot, freed.addr) && !b.holds(freed.slot, freed.addr));
        a.handle_event(Event::Close(freed));
        assert_eq!(owner(&freed), None);
        assert!(!a.holds(freed.slot, freed.addr));
        assert_eq!(a.in_use() + b.in_use(), held.len() - 1);
        let again = b.bind(LOOPBACK, PortChoice::Any).map(|r| r.addr);
        assert_eq!(again, Some(freed.addr));
    }

    #[test]
    fn a_reserved_twin_is_held_until_claimed_by_any_shard_or_released() {
        let (_poll, mut a, mut b) = binders(47_200);
        let Some(first) = a
            .bind(LOOPBACK, PortChoice::EvenReserveNext)
            .map(|r| r.addr)
        else {
            return; // every even port of the range is taken by other programs: nothing to test
        };
        assert_eq!(first.port() % 2, 0);
        let twin = first.port() + 1;
        assert_eq!((a.in_use(), a.reserved(), b.reserved()), (1, 1, 1));
        // Nobody else gets the twin while it is reserved...
        while let Some(relay) = b.bind(LOOPBACK, PortChoice::Any) {
            assert_ne!(relay.addr.port(), twin);
        }
        // ...and any shard claims it by number (the Allocate with the token may reach
        // another worker than the one that reserved it), once.
        let claimed = b
            .bind(LOOPBACK, PortChoice::Reserved(twin))
            .expect("claimed");
        assert_eq!(claimed.addr, SocketAddr::new(LOOPBACK, twin));
        assert_eq!(a.bind(LOOPBACK, PortChoice::Reserved(twin)), None);
        assert_eq!((b.reserved(), b.socket(claimed.slot).is_some()), (0, true));
        b.handle_event(Event::Close(claimed));
        assert_eq!(
            a.bind(LOOPBACK, PortChoice::Any).map(|a| a.addr.port()),
            Some(twin)
        );
    }

    #[test]
    fn an_unclaimed_reservation_given_up_frees_its_port_once() {
        let (_poll, mut a, mut b) = binders(47_220);
        let Some(first) = a.bind(LOOPBACK, PortChoice::EvenReserveNext) else {
            return; // every even port of the range is taken by other programs: nothing to test
        };
        let twin = SocketAddr::new(LOOPBACK, first.addr.port() + 1);
        // Given up by another worker than the one that reserved it (the shared pool holds it).
        b.handle_event(Event::Unreserve(twin));
        assert_eq!((a.reserved(), b.reserved()), (0, 0));
        // Twice is nothing: the port is not freed under whoever takes it next.
        let again = b.bind(LOOPBACK, PortChoice::Reserved(twin.port()));
        assert_eq!(again, None);
        let mut ports = Vec::new();
        while let Some(relay) = b.bind(LOOPBACK, PortChoice::Any) {
            ports.push(relay.addr.port());
        }
        a.handle_event(Event::Unreserve(twin));
        assert!(ports.contains(&twin.port()), "{ports:?}");
        assert_eq!(b.bind(LOOPBACK, PortChoice::Any), None, "freed twice");
        assert_eq!(a.in_use(), 1);
    }

    #[test]
    fn a_reserved_port_buffers_nothing_and_relays_once_claimed() {
        let (_poll, mut a, mut b) = binders(47_210);
        let Some(first) = a
            .bind(LOOPBACK, PortChoice::EvenReserveNext)
            .map(|r| r.addr)
        else {
            return; // every even port of the range is taken by other programs: nothing to test
        };
        let twin = SocketAddr::new(LOOPBACK, first.port() + 1);
        let stranger = std::net::UdpSocket::bind((LOOPBACK, 0)).expect("bind");
        for _ in 0..50 {
            stranger.send_to(&[0xab; 1000], twin).expect("send");
        }
        // Claimed by another shard than the one that reserved it.
        let claimed = b.bind(LOOPBACK, PortChoice::Reserved(twin.port()));
        assert_eq!(claimed.map(|r| r.addr), Some(twin));
        let socket = b.socket(claimed.expect("bound").slot).expect("bound");
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
