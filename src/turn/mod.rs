//! The TURN allocation manager (RFC 8656), sans-IO.
//!
//! [`Manager`] owns every allocation, permission and channel binding of its shard, and no
//! socket: requests come in as decoded messages with the time passed in, answers come out as
//! bytes. Relay sockets belong to the caller's event loop, in a table of slots: an Allocate
//! that needs ports answers [`Answer::Bind`], the loop binds and completes it with
//! [`Manager::allocate_bound`]; routes name the slot to send from; sockets to close come out
//! of [`Manager::poll_event`] (like quinn's endpoint events). All expiries sit in one
//! ordered heap driven by [`Manager::poll_timeout`] / [`Manager::handle_timeout`]. Port reservations and quota
//! counts are shared by every shard, in [`quota`]: the Allocate that claims a reservation
//! may reach any shard.
//!
//! - [`attrs`]: reading TURN attributes off decoded messages.
//! - [`allocation`]: one allocation's state.
//! - [`manager`]: authentication, dispatch, events and expiry.
//! - `methods`: the request handlers; `routes`: routing for the data path; `sessions`: the
//!   admin view.
//! - [`peer_rules`]: which peers may be relayed to; [`own_relays`]: rturn's own live relay
//!   endpoints as peers, whose data is handed over inside the process ([`ToPeer::Handoff`]).
//! - [`quota`]: allocation counts per user, per client address and in total, and the port
//!   reservations, shared by every shard.
//! - [`bandwidth`]: `max-bps` per allocation and `bps-capacity` overall.
//! - `tcp_relay`: RFC 6062 TCP allocations, Connect and ConnectionBind; [`tcp_link`]: what
//!   their peer connections share with the allocation. The sockets are the loop's.
//! - [`offload`]: the kernel fast path's types and maps; [`offload_table`]: which channels
//!   the kernel holds; `offload_sync`: the manager keeping them in step (#18).
//! - `mobility`: RFC 8016 MOBILITY-TICKET and moving an allocation to its client's new
//!   5-tuple ([`Moved`] says where it went); `mobile_table`: the tickets held;
//!   [`ticket`]: the ticket's bytes.

pub mod allocation;
pub mod attrs;
mod authenticate;
pub mod bandwidth;
pub mod manager;
mod methods;
pub mod metrics;
mod mobile_table;
mod mobility;
pub mod offload;
mod offload_sync;
pub mod offload_table;
pub mod own_relays;
pub mod peer_rules;
mod pending;
pub mod quota;
mod report;
mod routes;
mod sessions;
pub mod tcp_link;
mod tcp_relay;
#[cfg(test)]
mod tests;
pub mod ticket;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use manager::{Manager, PeerRoute};
pub use mobile_table::Moved;
pub use sessions::Session;

/// The hash map of the data path: keyed by addresses that clients and peers choose, so
/// randomly seeded (like the standard one) but several times faster than SipHash on a
/// 5-tuple.
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// The client transport of a 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP: the 5-tuple is the client's source address and our listen address.
    Udp,
    /// TCP: one connection is one 5-tuple.
    Tcp,
    /// TLS over TCP (`turns:`): like TCP.
    Tls,
}

/// Identifies a client's allocation (RFC 8656 §2): transport, client and server address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    /// How the client reaches us.
    pub transport: Transport,
    /// The client's address as we see it.
    pub client: SocketAddr,
    /// Our listen address it sent to.
    pub server: SocketAddr,
}

impl FiveTuple {
    /// Whether this is a detached mobile allocation's placeholder (RFC 8016: client port 0
    /// in the discard prefix, which no client sends from), not a client's 5-tuple.
    pub fn is_detached(&self) -> bool {
        self.client.port() == 0
    }
}

/// How a relay port should be chosen (RFC 8656 §7.2, EVEN-PORT and RESERVATION-TOKEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// Any free port in the range.
    Any,
    /// An even port.
    Even,
    /// An even port, and hold the next port for a later Allocate.
    EvenReserveNext,
    /// Exactly this port, previously reserved.
    Reserved(u16),
    /// Any free port, for a TCP listener (RFC 6062) instead of a UDP socket.
    Tcp,
}

/// A relay socket as the manager knows it: the address it is bound to and its slot in the
/// socket table of the event loop that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bound {
    /// The bound relay address.
    pub addr: SocketAddr,
    /// Its index in the owning loop's socket table.
    pub slot: usize,
}

/// Where a client's data for a peer goes ([`Manager::handle_send`],
/// [`Manager::channel_route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToPeer {
    /// Out of the relay socket in `slot`, to `peer`.
    Out {
        /// The relay socket to send from.
        slot: usize,
        /// Where to.
        peer: SocketAddr,
    },
    /// `peer` is one of rturn's own live relay endpoints ([`own_relays`]): the loop hands
    /// the data to the allocation that holds the relay bound at `to`, inside the process, as
    /// a datagram arriving there from `from` (the sending relay as clients know it, its
    /// `external-ip` when set). The receiving allocation's permission, channels and
    /// bandwidth apply as to any datagram.
    Handoff {
        /// The bound relay address the peer names (`relay-ip:port`).
        to: SocketAddr,
        /// The sending relay's advertised address.
        from: SocketAddr,
    },
}

/// What the manager needs its event loop to do ([`Manager::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Close the relay socket in this slot; its port goes back to the shared pool.
    Close(Bound),
    /// Give up a reserved port (EVEN-PORT R=1) nobody claimed: the socket holding it closes
    /// and its port goes back to the pool, whichever shard reserved it.
    Unreserve(SocketAddr),
    /// Let the kernel relay this channel (only while the offload is on,
    /// [`Manager::set_offload`]); carried out by [`Manager::offload_apply`].
    OffloadInsert(offload::ChannelEntry),
    /// Stop the kernel relaying this channel, counting what it relayed since the last
    /// reading; carried out by [`Manager::offload_apply`].
    OffloadRemove(offload::Offloaded),
}

/// The answer to a TURN request ([`Manager::handle_request`]).
#[derive(Debug)]
pub enum Answer<'a> {
    /// The response to send back on the same 5-tuple.
    Reply(&'a [u8]),
    /// An Allocate that needs relay sockets: bind one per entry, in order (stop at the first
    /// that fails), then call [`Manager::allocate_bound`] with what was bound.
    ///
    /// With [`PortChoice::EvenReserveNext`] the loop also holds port + 1, muted, in the
    /// shared pool until it is claimed with [`PortChoice::Reserved`] (by any shard) or given
    /// back on [`Event::Unreserve`].
    Bind(Vec<(IpAddr, PortChoice)>),
    /// A Connect or ConnectionBind (RFC 6062) the loop carries out first: take its order
    /// from [`Manager::poll_tcp_order`], then answer with [`Manager::tcp_answer`].
    Later,
}

/// One relay address family: where sockets bind and what clients are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    /// Address relay sockets bind to.
    pub bind: IpAddr,
    /// Address advertised in XOR-RELAYED-ADDRESS (differs behind 1:1 NAT).
    pub advertise: IpAddr,
}

/// Settings of the allocation manager, derived from `[relay]`.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// The IPv4 relay address, if relaying over IPv4.
    pub relay_v4: Option<RelayAddress>,
    /// The IPv6 relay address, if relaying over IPv6.
    pub relay_v6: Option<RelayAddress>,
    /// Lifetime of an allocation when the client asks for less or nothing (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// The most an allocation may be refreshed for at once (3600 s).
    pub max_lifetime: Duration,
    /// Lifetime of a permission (RFC 8656: 300 s).
    pub permission_lifetime: Duration,
    /// Lifetime of a channel binding (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// How long a reserved port (EVEN-PORT R bit) is held (RFC 8656: about 30 s).
    pub reservation_lifetime: Duration,
    /// Permissions one allocation may hold; past it CreatePermission gets 508. 0: no limit.
    pub max_permissions: usize,
    /// Channels one allocation may bind; past it ChannelBind gets 508. 0: no limit.
    pub max_channels: usize,
    /// Bytes per second one allocation may relay in each direction; 0: no limit.
    pub max_bps: u64,
    /// Bytes per second this shard relays in each direction over all its allocations: the
    /// configured `bps-capacity` divided among the shards. 0: no limit.
    pub bps_capacity: u64,
    /// Where a new Allocate is sent with 300 (Try Alternate, RFC 8656 §7.2) when this server
    /// is at capacity (`total-quota` reached or no relay port free) or draining; `None`: 508.
    pub alternate_server: Option<SocketAddr>,
    /// RFC 8016 mobility (`[relay] mobility`): Allocates may ask for a MOBILITY-TICKET and
    /// Refreshes may move an allocation with it; off, both get 405.
    pub mobility: bool,
    /// Whether an Allocate may ask for a TCP relay (RFC 6062, `tcp-allocations`); else 442.
    pub tcp_allocations: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            relay_v4: None,
            relay_v6: None,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            reservation_lifetime: Duration::from_secs(30),
            max_permissions: 0,
            max_channels: 0,
            max_bps: 0,
            bps_capacity: 0,
            alternate_server: None,
            mobility: false,
            tcp_allocations: true,
        }
    }
}

impl TurnConfig {
    /// The relay address for a family code (RFC 8656 §18.6), if configured.
    pub fn relay_for_family(&self, family: u8) -> Option<RelayAddress> {
        match family {
            attrs::FAMILY_IPV4 => self.relay_v4,
            attrs::FAMILY_IPV6 => self.relay_v6,
            _ => None,
        }
    }

    /// What to advertise for a bound relay address.
    pub fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        let relay = if bound.is_ipv4() {
            self.relay_v4
        } else {
            self.relay_v6
        };
        match relay {
            Some(r) if r.bind == bound.ip() => SocketAddr::new(r.advertise, bound.port()),
            _ => bound,
        }
    }
}
