//! RFC 6062 TCP relay allocations, the shared pure types: what every peer connection of a
//! TCP allocation shares with it ([`TcpLink`], [`PeerSlot`]) whichever worker serves it, the
//! orders the manager gives its loop ([`TcpOrder`]), and the small decisions the loop asks
//! for (`bind_check`, `connection_attempt`, `nonce_client`). A leaf: the manager
//! (`tcp_relay.rs` holds its handlers), its allocations and the server's glue use it.
//!
//! Bounds: [`MAX_CONNECTIONS`] peer connections per allocation (pending connects, connections
//! waiting for their ConnectionBind and bound pairs), of which at most [`MAX_UNBOUND`] not
//! bound yet (so one user cannot fill the server's table of waiting connections),
//! [`CONNECT_TIMEOUT`] for an outgoing
//! connect (then 447), [`BIND_TIMEOUT`] for a CONNECTION-ID to be bound (then its peer
//! connection closes), both RFC 6062's 30 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stun::attributes::{ATTR_CONNECTION_ID, ATTR_XOR_PEER_ADDRESS};
use stun::message::{CLASS_INDICATION, METHOD_CONNECTION_ATTEMPT, Message, MessageType};

use super::FiveTuple;
use super::bandwidth::Bandwidth;
use super::pending::Credentials;
use crate::stun::response;

/// REQUESTED-TRANSPORT for TCP (RFC 6062 §6.1): the IANA protocol number.
pub const PROTO_TCP: u8 = 6;
/// How long an outgoing connect to a peer may take before the Connect is answered 447
/// (RFC 6062 §5.2; coturn's 30 s too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer connection waits for the client's ConnectionBind before it is closed
/// (RFC 6062 §5.2, §5.3).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// Peer connections one TCP allocation may hold at once, connecting, waiting for their
/// ConnectionBind or bound: past it a Connect gets 508 and a peer's connection is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Of those, how many may be unbound at once (connecting, or waiting for their
/// ConnectionBind): past it a Connect gets 508 and a peer's connection is closed. A client
/// binds each within a round trip, but may Connect to many peers before it binds any
/// (coturn's uclient Connects a client to every other first, and coturn has no such bound),
/// so a burst of 32 passes; what it cannot hold up is the server-wide table of waiting
/// connections, for 30 s each (which also bounds each client address's share).
pub const MAX_UNBOUND: usize = 32;

/// What the peer connections of one TCP allocation share with it, across workers: whether
/// it still lives (a connection of a dead allocation closes within a tick), whose it is
/// (a ConnectionBind must come from the same user), how many connections it holds, the
/// peers of its Connects, its `max-bps` buckets, and the bytes relayed.
#[derive(Debug)]
pub struct TcpLink {
    alive: AtomicBool,
    user: String,
    /// The client's address key ([`crate::client_key::client_key_bits`]): the server's
    /// table of connections waiting for their ConnectionBind bounds each address's share.
    client: u128,
    open: AtomicUsize,
    /// Of `open`, the connections not bound yet.
    unbound: AtomicUsize,
    /// Peers connecting or connected now, with how many connections each (RFC 6062 §5.2:
    /// a Connect to one of them gets 446).
    connected: Mutex<HashMap<SocketAddr, usize>>,
    /// The allocation's `max-bps` buckets, one per direction, which all its connections
    /// draw on, from whichever worker serves each: locked for the room before a read and
    /// again to charge what was read, into debt when pairs on other workers read the same
    /// room meanwhile ([`super::bandwidth::ByteBucket::spend`]).
    buckets: Mutex<Bandwidth>,
    /// Reads and bytes relayed client → peers, then peers → client, over this
    /// allocation's connections (on whichever worker), for the admin API.
    relayed: [AtomicU64; 4],
}

impl TcpLink {
    /// A live link of an allocation made by `user` from the client address key `client`.
    pub fn new(user: &str, client: u128) -> Self {
        Self {
            alive: AtomicBool::new(true),
            user: user.to_owned(),
            client,
            open: AtomicUsize::new(0),
            unbound: AtomicUsize::new(0),
            connected: Mutex::new(HashMap::new()),
            buckets: Mutex::default(),
            relayed: Default::default(),
        }
    }

    /// Whether the allocation still lives.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// The allocation ended: every connection of it is to close.
    pub fn end(&self) {
        self.alive.store(false, Ordering::Release);
    }

    /// The user the allocation belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The address key of the client that made the allocation.
    pub fn client(&self) -> u128 {
        self.client
    }

    /// Counts one read of `len` bytes relayed `to_peer` (from the client) or to it.
    pub fn count(&self, to_peer: bool, len: usize) {
        let at = if to_peer { 0 } else { 2 };
        self.relayed[at].fetch_add(1, Ordering::Relaxed);
        self.relayed[at + 1].fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Reads and bytes relayed: client → peers, then peers → client.
    pub fn relayed(&self) -> [(u64, u64); 2] {
        let get = |i: usize| self.relayed[i].load(Ordering::Relaxed);
        [(get(0), get(1)), (get(2), get(3))]
    }

    /// The allocation's `max-bps` buckets, for one read and its charge.
    pub fn buckets(&self) -> std::sync::MutexGuard<'_, Bandwidth> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Peer connections held now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn lock_connected(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, usize>> {
        self.connected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of the allocation's [`MAX_CONNECTIONS`] (and of its [`MAX_UNBOUND`], until
    /// [`PeerSlot::bound`]) for a new connection with `peer`:
    /// for a Connect (`connect`), `Err(446)` when a connection with that peer is under way
    /// or open (made by a Connect, or the peer's own: coturn's rule too, and two clients
    /// connecting to each other's relays at once would otherwise ask the kernel for the
    /// same pair of addresses twice); `Err(508)` at the cap. Given back when the
    /// [`PeerSlot`] drops.
    pub fn open(self: &Arc<Self>, peer: SocketAddr, connect: bool) -> Result<PeerSlot, u16> {
        let mut connected = self.lock_connected();
        if connect && connected.contains_key(&peer) {
            return Err(446);
        }
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(508);
        }
        let unbound = (self.unbound).fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_UNBOUND).then_some(n + 1)
        });
        if unbound.is_err() {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(508);
        }
        *connected.entry(peer).or_default() += 1;
        Ok(PeerSlot {
            link: Arc::clone(self),
            peer,
            unbound: true,
        })
    }
}

/// One peer connection's place in its allocation ([`TcpLink::open`]), held by whoever holds
/// the socket (the pending connect, the table of unbound connections, the bound pair);
/// dropping it gives the place back.
#[derive(Debug)]
pub struct PeerSlot {
    link: Arc<TcpLink>,
    peer: SocketAddr,
    /// Counted among the allocation's unbound connections.
    unbound: bool,
}

impl PeerSlot {
    /// The allocation's link.
    pub fn link(&self) -> &Arc<TcpLink> {
        &self.link
    }

    /// The connection is bound to its data connection now: its place among the
    /// allocation's [`MAX_UNBOUND`] is given back (its place among the connections is not).
    pub fn bound(&mut self) {
        if std::mem::take(&mut self.unbound) {
            self.link.unbound.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.bound();
        self.link.open.fetch_sub(1, Ordering::AcqRel);
        let mut connected = self.link.lock_connected();
        if let Some(n) = connected.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                connected.remove(&self.peer);
            }
        }
    }
}

/// A request the loop answers later with [`Manager::tcp_answer`]: the request and who it
/// authenticated as.
#[derive(Debug)]
pub struct Later {
    pub(super) req: Message,
    pub(super) creds: Credentials,
}

/// What the loop has to do for a Connect or a ConnectionBind ([`Manager::poll_tcp_order`]).
#[derive(Debug)]
pub enum TcpOrder {
    /// Connect to `peer` from `relay` (the allocation's relayed address: the listener's),
    /// within [`CONNECT_TIMEOUT`]; then answer with a CONNECTION-ID, or 447.
    Connect {
        /// The control connection, which gets the answer.
        tuple: FiveTuple,
        /// Where from.
        relay: SocketAddr,
        /// Where to.
        peer: SocketAddr,
        /// Its place in the allocation.
        slot: PeerSlot,
        /// The Connect.
        later: Later,
    },
    /// Bind the data connection of `tuple` to the peer connection `id`, if it is waiting and
    /// belongs to an allocation of `user` ([`bind_check`]); then answer success or 400.
    Bind {
        /// The data connection.
        tuple: FiveTuple,
        /// The CONNECTION-ID.
        id: u32,
        /// Who the ConnectionBind authenticated as.
        user: String,
        /// The ConnectionBind.
        later: Later,
    },
}

/// Whether a waiting peer connection may be bound by a ConnectionBind of `user` at `now`
/// (RFC 6062 §5.4): its allocation lives, is `user`'s, and the connection has not waited
/// past its deadline; else 400.
pub fn bind_check(link: &TcpLink, user: &str, deadline: Instant, now: Instant) -> Result<(), u16> {
    if link.is_alive() && link.user() == user && now < deadline {
        Ok(())
    } else {
        Err(400)
    }
}

/// A ConnectionAttempt indication (RFC 6062 §5.3): a peer at `peer` connected to the
/// relayed address; its connection is `id`. Indications carry no integrity.
pub fn connection_attempt(peer: SocketAddr, id: u32) -> Vec<u8> {
    let mut msg = Message::new();
    msg.typ = MessageType::new(METHOD_CONNECTION_ATTEMPT, CLASS_INDICATION);
    msg.transaction_id.0 = crate::random::os_random();
    msg.write_header();
    response::add_xor_address(&mut msg, ATTR_XOR_PEER_ADDRESS, peer);
    msg.add(ATTR_CONNECTION_ID, &id.to_be_bytes());
    msg.raw
}

/// The address a NONCE is bound to: a UDP client's address, a TCP or TLS client's IP only.
/// An RFC 6062 client opens a data connection from a new port for each peer and signs its
/// ConnectionBind with the nonce of its control connection (coturn's clients then reuse
/// the data connection's nonce on the control connection), so a nonce must hold for every
/// connection of the client.
pub fn nonce_client(tuple: FiveTuple) -> SocketAddr {
    match tuple.transport {
        super::Transport::Udp => tuple.client,
        super::Transport::Tcp | super::Transport::Tls => SocketAddr::new(tuple.client.ip(), 0),
    }
}
