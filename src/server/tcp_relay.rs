//! RFC 6062 TCP relay allocations, the sockets on the allocation's worker: [`TcpRelays`]
//! owns each TCP allocation's relayed listener (a port of the shared pool, like a UDP relay
//! socket) and the outgoing connects of its Connect requests; [`Waiting`] is the table,
//! shared by every worker, of peer connections waiting for their ConnectionBind.
//!
//! A peer connection (accepted by the listener, or connected for a Connect) gets a
//! CONNECTION-ID and goes into [`Waiting`], out of every poll set: its bytes wait in the
//! kernel's socket buffer. The client's data connection reaches whichever worker its 5-tuple
//! hashes to; that worker's manager authenticates the ConnectionBind, takes the peer
//! connection out of the table ([`TcpRelays::handle_orders`]) and splices the two within
//! that worker (`server/splice.rs`, through `server/conns.rs`). What the pure side decides
//! is in [`crate::turn::tcp_relay`].
//!
//! Every peer socket (connecting, waiting, then bound in its `Splice`) holds a permit of
//! the descriptor budget (TURN's share, [`Waiting::share_budget`]); none left, a Connect
//! gets 508 and an accepted peer is closed. A listener whose accept ran out of descriptors
//! is accepted again on the next tick (its queued peers raise no new event).
//!
//! The listener's relay slot is `TCP_SLOT_BASE + index`, so the manager's slot numbers
//! of UDP and TCP relays never meet, and its poll token is `RELAY_TOKENS + slot` like any
//! relay's; a connect's token is past [`CONNECT_BIT`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Protocol, Type};

pub(super) use self::waiting::{Unbound, Waiting};
use super::descriptors::Permit;
use super::ports::PortPool;
pub(super) use super::ports::{TCP_SLOT_BASE, is_tcp_slot};
use super::relay::RELAY_TOKENS;
use crate::turn::tcp_link::{CONNECT_TIMEOUT, Later, PeerSlot, TcpOrder, connection_attempt};
use crate::turn::{Bound, FiveTuple, Manager};

/// Poll tokens of outgoing connects: `RELAY_TOKENS + TCP_SLOT_BASE + CONNECT_BIT + index`.
const CONNECT_BIT: usize = 1 << 27;
/// Free ports tried before an Allocate gets 508 (as for UDP relays).
const BIND_ATTEMPTS: usize = 64;
/// Connections a relayed listener's kernel queue holds before it refuses more.
const BACKLOG: i32 = 64;
/// Connections accepted from one listener per turn (fairness with the other sockets).
const ACCEPTS_PER_TURN: usize = 64;
/// A relayed listener.
struct Listener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

/// An outgoing connect for a Connect request.
struct Connecting {
    socket: std::net::TcpStream,
    tuple: FiveTuple,
    peer: SocketAddr,
    slot: PeerSlot,
    permit: Option<Permit>,
    later: Later,
    deadline: Instant,
}

/// One worker's TCP relay sockets: the listeners of its TCP allocations and their
/// outgoing connects; and its handle on the shared [`Waiting`] table.
pub(super) struct TcpRelays {
    pools: [Arc<PortPool>; 2],
    worker: usize,
    registry: Registry,
    listeners: Vec<Option<Listener>>,
    free_listeners: Vec<usize>,
    connects: Vec<Option<Connecting>>,
    free_connects: Vec<usize>,
    waiting: Arc<Waiting>,
    /// Messages for control connections (Connect answers, ConnectionAttempt indications),
    /// queued by the loop on them at the end of the turn.
    outbox: Vec<(FiveTuple, Vec<u8>)>,
    /// The peer connection the last ConnectionBind took, for the data connection that sent
    /// it ([`TcpRelays::take_bound`]).
    bound: Option<(FiveTuple, Unbound)>,
    /// Listeners whose accept failed for want of a descriptor (EMFILE, ENFILE): their
    /// queued peers raise no new event (the poll is edge-triggered), so they are accepted
    /// again on the next tick.
    retry: Vec<usize>,
}

impl TcpRelays {
    /// Worker `worker`'s table, whose sockets `registry` watches.
    pub(super) fn new(
        pools: [Arc<PortPool>; 2],
        registry: Registry,
        worker: usize,
        waiting: Arc<Waiting>,
    ) -> Self {
        Self {
            pools,
            worker,
            registry,
            listeners: Vec::new(),
            free_listeners: Vec::new(),
            connects: Vec::new(),
            free_connects: Vec::new(),
            waiting,
            outbox: Vec::new(),
            bound: None,
            retry: Vec::new(),
        }
    }

    fn pool(&self, ip: IpAddr) -> &PortPool {
        &self.pools[usize::from(ip.is_ipv6())]
    }

    /// Binds a relayed TCP listener on `ip`, on a free port of the shared pool; `None` when
    /// none is free (508).
    pub(super) fn bind(&mut self, ip: IpAddr) -> Option<Bound> {
        let mut busy = Vec::new();
        let mut bound = None;
        for _ in 0..BIND_ATTEMPTS {
            let Some(port) = self.pool(ip).take(false, false) else {
                break;
            };
            match listen(SocketAddr::new(ip, port)) {
                Ok(socket) => {
                    bound = Some((port, socket));
                    break;
                }
                Err(_) => busy.push(port),
            }
        }
        for port in busy {
            self.pool(ip).release(port);
        }
        let (port, socket) = bound?;
        let addr = SocketAddr::new(ip, port);
        let index = self.free_listeners.pop().unwrap_or(self.listeners.len());
        let slot = TCP_SLOT_BASE + index;
        let fd = socket.as_raw_fd();
        let token = Token(RELAY_TOKENS + slot);
        if let Err(e) = (self.registry).register(&mut SourceFd(&fd), token, Interest::READABLE) {
            tracing::warn!("cannot watch relayed tcp listener {addr}: {e}");
            self.free_listeners.push(index);
            self.pool(ip).release(port);
            return None;
        }
        if index == self.listeners.len() {
            self.listeners.push(None);
        }
        self.listeners[index] = Some(Listener { socket, addr });
        self.pool(ip).set_owner(port, self.worker, slot);
        Some(Bound { addr, slot })
    }

    /// Closes the listener of `bound` (its allocation ended) and gives its port back.
    pub(super) fn close(&mut self, bound: Bound) {
        let index = bound.slot - TCP_SLOT_BASE;
        let Some(listener) = self.listeners.get_mut(index).and_then(Option::take) else {
            return;
        };
        let pool = &self.pools[usize::from(listener.addr.is_ipv6())];
        pool.clear_owner(listener.addr.port());
        let fd = listener.socket.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        drop(listener.socket);
        pool.release(listener.addr.port());
        self.free_listeners.push(index);
    }

    /// Listeners bound now.
    pub(super) fn in_use(&self) -> usize {
        self.listeners.iter().flatten().count()
    }

    /// Carries out the Connects and ConnectionBinds the manager just accepted, answering
    /// into `reply` what is answered at once: a ConnectionBind, and a Connect whose connect
    /// failed before it started.
    pub(super) fn handle_orders(
        &mut self,
        manager: &mut Manager,
        now: Instant,
        reply: &mut Vec<u8>,
    ) {
        while let Some(order) = manager.poll_tcp_order() {
            match order {
                TcpOrder::Connect {
                    tuple,
                    relay,
                    peer,
                    slot,
                    later,
                } => {
                    tracing::trace!(%relay, %peer, "tcp relay connect");
                    let Some(permit) = self.waiting.permit() else {
                        // Out of descriptors: the server cannot open one more (RFC 8656 §9.2).
                        manager.tcp_counted("no_descriptor");
                        reply.extend_from_slice(manager.tcp_answer(now, tuple, &later, Err(508)));
                        continue;
                    };
                    let failed = match connect(relay, peer) {
                        Ok(socket) => {
                            let deadline = now + CONNECT_TIMEOUT;
                            let connecting = Connecting {
                                socket,
                                tuple,
                                peer,
                                slot,
                                permit,
                                later,
                                deadline,
                            };
                            (self.watch(connecting).err())
                                .map(|c| (c.later, "cannot watch its socket".to_owned()))
                        }
                        Err(e) => Some((later, e.to_string())),
                    };
                    if let Some((later, why)) = failed {
                        tracing::debug!(%relay, %peer, "tcp relay connect failed at once: {why}");
                        manager.tcp_counted("connect_failed");
                        reply.extend_from_slice(manager.tcp_answer(now, tuple, &later, Err(447)));
                    }
                }
                TcpOrder::Bind {
                    tuple,
                    id,
                    user,
                    later,
                } => {
                    let result = match self.waiting.take(id, &user, now) {
                        Some(mut unbound) => {
                            // Bound from the answer on: its place among the allocation's
                            // unbound ones is free before the client can send its next
                            // Connect (given back here, not when the splice is built).
                            unbound.slot.bound();
                            self.bound = Some((tuple, unbound));
                            Ok(None)
                        }
                        None => Err(400),
                    };
                    manager.tcp_counted(if result.is_ok() {
                        "bound"
                    } else {
                        "bind_refused"
                    });
                    reply.extend_from_slice(manager.tcp_answer(now, tuple, &later, result));
                }
            }
        }
    }

    /// The peer connection a ConnectionBind on `tuple` just took, to splice to it.
    pub(super) fn take_bound(&mut self, tuple: &FiveTuple) -> Option<Unbound> {
        match &self.bound {
            Some((t, _)) if t == tuple => self.bound.take().map(|(_, u)| u),
            _ => None,
        }
    }

    fn watch(&mut self, connecting: Connecting) -> Result<(), Box<Connecting>> {
        let index = self.free_connects.pop().unwrap_or(self.connects.len());
        let token = Token(RELAY_TOKENS + TCP_SLOT_BASE + CONNECT_BIT + index);
        let fd = connecting.socket.as_raw_fd();
        if (self.registry)
            .register(&mut SourceFd(&fd), token, Interest::WRITABLE)
            .is_err()
        {
            self.free_connects.push(index);
            return Err(Box::new(connecting));
        }
        if index == self.connects.len() {
            self.connects.push(None);
        }
        self.connects[index] = Some(connecting);
        Ok(())
    }

    /// A readiness event for one of these sockets (`slot` = token - RELAY_TOKENS). `true`
    /// when a listener may have more connections queued than a turn accepts: serve it
    /// again without waiting for an event (the poll is edge-triggered).
    pub(super) fn serve(&mut self, slot: usize, manager: &mut Manager, now: Instant) -> bool {
        let index = slot - TCP_SLOT_BASE;
        if index >= CONNECT_BIT {
            self.connect_ready(index - CONNECT_BIT, manager, now);
            false
        } else {
            self.accept(index, slot, manager, now)
        }
    }

    /// Peers connecting to the listener at `index`: the ones with a permission wait for
    /// their ConnectionBind, announced by a ConnectionAttempt; the others are closed.
    fn accept(&mut self, index: usize, slot: usize, manager: &mut Manager, now: Instant) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listeners.get(index).and_then(Option::as_ref) else {
                return false;
            };
            let (socket, peer) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("relayed tcp accept failed: {e}");
                    manager.tcp_counted("accept_failed");
                    if out_of_descriptors(&e) && !self.retry.contains(&index) {
                        self.retry.push(index);
                    }
                    return false;
                }
            };
            let Some((tuple, place)) = manager.tcp_accept(now, slot, peer) else {
                tracing::debug!(%peer, "tcp peer without permission: closed");
                manager.tcp_counted("peer_refused");
                continue;
            };
            let Some(permit) = self.waiting.permit() else {
                tracing::debug!(%peer, "tcp peer: out of descriptors: closed");
                manager.tcp_counted("no_descriptor");
                continue;
            };
            if socket.set_nonblocking(true).is_err() {
                continue;
            }
            match self.waiting.insert(socket, peer, (place, permit), now) {
                Some(id) => {
                    manager.tcp_counted("peer_accepted");
                    self.outbox.push((tuple, connection_attempt(peer, id)));
                }
                None => manager.tcp_counted("peer_refused"),
            }
        }
        true
    }

    /// The outgoing connect at `index` finished, or failed.
    fn connect_ready(&mut self, index: usize, manager: &mut Manager, now: Instant) {
        let Some(connecting) = self.connects.get(index).and_then(Option::as_ref) else {
            return;
        };
        let done = match connecting.socket.take_error() {
            Ok(None) => match connecting.socket.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet (a spurious wake-up): wait on.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
            Ok(Some(e)) | Err(e) => Err(e),
        };
        let Some(connecting) = self.unwatch(index) else {
            return;
        };
        self.finish(connecting, done.map_err(|e| e.to_string()), manager, now);
    }

    fn unwatch(&mut self, index: usize) -> Option<Connecting> {
        let connecting = self.connects.get_mut(index).and_then(Option::take)?;
        let fd = connecting.socket.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        self.free_connects.push(index);
        Some(connecting)
    }

    /// Answers a Connect whose connect ended: a CONNECTION-ID, or 447.
    fn finish(
        &mut self,
        connecting: Connecting,
        done: Result<(), String>,
        manager: &mut Manager,
        now: Instant,
    ) {
        let Connecting {
            socket,
            tuple,
            peer,
            slot,
            permit,
            later,
            ..
        } = connecting;
        if !slot.link().is_alive() {
            return; // the allocation and its control connection are gone: nobody to tell
        }
        let result = match done {
            Ok(()) => match self.waiting.insert(socket, peer, (slot, permit), now) {
                Some(id) => Ok(Some((id, peer))),
                None => Err(447),
            },
            Err(e) => {
                tracing::debug!(%peer, "tcp relay connect failed: {e}");
                Err(447)
            }
        };
        manager.tcp_counted(if result.is_ok() {
            "connected"
        } else {
            "connect_failed"
        });
        let answer = manager.tcp_answer(now, tuple, &later, result).to_vec();
        self.outbox.push((tuple, answer));
    }

    /// Once a second: connects past [`CONNECT_TIMEOUT`] answered 447 (or dropped when their
    /// allocation ended), peer connections nobody bound in time closed, listeners whose
    /// accept ran out of descriptors accepted again. Returns the slots of the listeners to
    /// serve again this turn (more queued than a turn accepts).
    pub(super) fn tick(&mut self, manager: &mut Manager, now: Instant) -> Vec<usize> {
        for index in 0..self.connects.len() {
            let due = self.connects[index]
                .as_ref()
                .is_some_and(|c| c.deadline <= now || !c.slot.link().is_alive());
            if due && let Some(connecting) = self.unwatch(index) {
                let timeout = Err("timed out".to_owned());
                self.finish(connecting, timeout, manager, now);
            }
        }
        for _ in 0..self.waiting.expire(now) {
            manager.tcp_counted("bind_expired");
        }
        let mut again = Vec::new();
        for index in std::mem::take(&mut self.retry) {
            let slot = TCP_SLOT_BASE + index;
            if self.accept(index, slot, manager, now) {
                again.push(slot);
            }
        }
        again
    }

    /// What waits for control connections, to queue on them.
    pub(super) fn take_outbox(&mut self) -> Vec<(FiveTuple, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }
}

/// Whether an accept failed for want of a descriptor (the process's or the system's).
fn out_of_descriptors(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(e.raw_os_error(), Some(code) if code == Errno::EMFILE as i32 || code == Errno::ENFILE as i32)
}

/// A relayed listener on `addr`: SO_REUSEADDR and SO_REUSEPORT, so outgoing connects can
/// leave from the same address (RFC 6062 §5.2).
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = super::new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A non-blocking connect from the relayed address `from` to `peer`, under way.
fn connect(from: SocketAddr, peer: SocketAddr) -> io::Result<std::net::TcpStream> {
    let socket = super::new_socket(from, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&from.into())?;
    match socket.connect(&peer.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

mod waiting;

#[cfg(test)]
mod tests;
