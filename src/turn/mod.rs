//! The TURN allocation manager (RFC 8656), sans-IO.
//!
//! [`Manager`] owns every allocation, permission and channel binding of its shard, and no
//! socket: requests come in as decoded messages with the time passed in, answers come out as
//! bytes, and relay ports are obtained through a [`RelayBinder`] the caller supplies (real
//! sockets in `server/`, a fake in tests). All expiries sit in one ordered heap driven by
//! [`Manager::poll_timeout`] / [`Manager::handle_timeout`]. Port reservations and quota
//! counts are shared by every shard, in [`quota`]: the Allocate that claims a reservation
//! may reach any shard.
//!
//! - [`attrs`]: reading TURN attributes off decoded messages.
//! - [`allocation`]: one allocation's state.
//! - [`manager`]: the request handlers, routing for the data path, expiry.
//! - [`peer_rules`]: which peers may be relayed to.
//! - [`quota`]: allocation counts per user, per client address and in total, and the port
//!   reservations, shared by every shard.
//! - [`bandwidth`]: `max-bps` per allocation and `bps-capacity` overall.

pub mod allocation;
pub mod attrs;
pub mod bandwidth;
pub mod manager;
mod methods;
pub mod metrics;
pub mod peer_rules;
pub mod quota;
mod report;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use manager::Manager;

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
}

/// Where relay sockets come from: the manager asks, the implementation binds.
pub trait RelayBinder {
    /// Binds a relay socket on `ip`; `None` when no port is free (the manager answers 508).
    /// With [`PortChoice::EvenReserveNext`] the implementation also holds port + 1 until it
    /// is claimed with [`PortChoice::Reserved`] or released, by this binder or by any other
    /// sharing its port range (another shard's). A reserved port receives nothing.
    fn bind(&mut self, ip: IpAddr, choice: PortChoice) -> Option<SocketAddr>;
    /// Closes the relay socket (or reservation) at `addr`; its port returns to the pool.
    fn release(&mut self, addr: SocketAddr);
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
