//! One allocation (RFC 8656 §2.2): its relay addresses, credentials, permissions and channels.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::Bound;
use super::bandwidth::Bandwidth;
use super::quota::Holder;
use crate::auth::{Integrity, Key};
use crate::turn::FastMap;

/// A channel binding (RFC 8656 §12).
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    /// The peer the channel is bound to.
    pub peer: SocketAddr,
    /// When the binding lapses unless refreshed.
    pub expires: Instant,
}

/// The state of one allocation.
#[derive(Debug)]
pub struct Allocation {
    /// Random ID for the admin API.
    pub id: u64,
    /// When it was created.
    pub created: Instant,
    /// Packets and bytes relayed client → peer.
    pub to_peer: (u64, u64),
    /// Packets and bytes relayed peer → client.
    pub to_client: (u64, u64),
    /// The user that created it; later requests must come from the same one (else 441).
    pub username: String,
    /// That user's long-term key, kept so later requests need no lookup.
    pub key: Key,
    /// Which integrity attribute the client used; responses use the same.
    pub integrity: Integrity,
    /// Bound relay sockets: one, or one per family for a dual allocation.
    pub relays: Vec<Bound>,
    /// When the allocation lapses unless refreshed.
    pub expires: Instant,
    /// Permissions by peer IP (RFC 8656 §9: ports do not matter) and their expiry.
    pub permissions: FastMap<IpAddr, Instant>,
    /// Channels by number.
    pub channels: FastMap<u16, Channel>,
    /// Channel numbers by peer, for the peer-to-client direction.
    pub channel_by_peer: FastMap<SocketAddr, u16>,
    /// Transaction ID of the Allocate that made it, to answer retransmissions (RFC 8656 §7.2).
    pub allocate_transaction: [u8; 12],
    /// The family a dual allocation could not get (repeated to a retransmitted Allocate).
    pub missing_family: Option<u8>,
    /// The RESERVATION-TOKEN the Allocate handed out, if any (repeated likewise).
    pub reservation_token: Option<[u8; 8]>,
    /// Its `max-bps` buckets.
    pub bandwidth: Bandwidth,
    /// For a TCP allocation (RFC 6062), what its peer connections share with it.
    pub tcp: Option<std::sync::Arc<super::tcp_link::TcpLink>>,
    /// Whose quotas it counts against: its user's and client address's, or, when it claimed
    /// a reservation, those of the client that made the reservation.
    pub holder: Holder,
}

/// An allocation that ends (deleted, expired, its TCP connection closed, kicked, shutdown)
/// ends its RFC 6062 peer and data connections too, on whichever worker they are.
impl Drop for Allocation {
    fn drop(&mut self) {
        if let Some(link) = &self.tcp {
            link.end();
        }
    }
}

impl Allocation {
    /// The relay address that serves peers of `peer`'s family.
    pub fn relay_for(&self, peer: IpAddr) -> Option<Bound> {
        self.relays
            .iter()
            .copied()
            .find(|r| r.addr.is_ipv4() == peer.is_ipv4())
    }

    /// Whether a live permission covers `peer` at `now`.
    pub fn permits(&self, peer: IpAddr, now: Instant) -> bool {
        self.permissions.get(&peer).is_some_and(|&t| t > now)
    }

    /// Permissions live at `now`.
    pub fn live_permissions(&self, now: Instant) -> usize {
        self.permissions.values().filter(|&&t| t > now).count()
    }

    /// Channels live at `now`.
    pub fn live_channels(&self, now: Instant) -> usize {
        self.channels.values().filter(|c| c.expires > now).count()
    }

    /// The live channel bound to `channel`, if any.
    pub fn channel(&self, channel: u16, now: Instant) -> Option<Channel> {
        self.channels
            .get(&channel)
            .copied()
            .filter(|c| c.expires > now)
    }
}
