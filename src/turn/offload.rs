//! The kernel fast path as the allocation manager sees it (#18): which bound UDP channels
//! the kernel may relay by itself, and what it relayed. Pure: the kernel's maps are the
//! [`OffloadMaps`] trait, which the worker implements over eBPF maps (or a test over a
//! `Vec`); this file holds the types both sides share.
//!
//! User space stays the authority. The manager decides, channel by channel, whether an
//! entry should exist ([`super::Manager`]'s `offload_*` hooks, in `offload_sync.rs`), and
//! `OffloadTable` (`offload_table.rs`) turns each decision into operations the worker carries out through
//! [`super::Manager::poll_event`]: [`Event::OffloadInsert`](super::Event::OffloadInsert) on a
//! successful ChannelBind, [`Event::OffloadRemove`](super::Event::OffloadRemove) when the
//! channel or its permission ends, the allocation goes, or a reload revokes the peer or the
//! credentials. The kernel counts what it relays per entry; the worker reads the counts back
//! ([`super::Manager::handle_offload_counts`], and once more on removal) and the manager adds what is new to the
//! allocation's and the server's counters, so `/metrics` and the admin API see offloaded
//! traffic like any other.

use std::net::SocketAddr;

/// The channel numbers the kernel may relay: every one a client may bind, RFC 8656 §12's
/// 0x4000–0x4FFF and the 0x5000–0x7FFF that RFC 5766 clients still use (coturn's uclient
/// draws from all of them).
pub const OFFLOAD_CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

/// One bound UDP channel the kernel may relay: client <-> listen address (ChannelData with
/// `channel`), relay <-> peer (plain UDP). All addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelEntry {
    /// The TURN client's address as the server sees it.
    pub client: SocketAddr,
    /// The server's UDP listen address the client sends to.
    pub listen: SocketAddr,
    /// The channel number, 0x4000..=0x7FFF.
    pub channel: u16,
    /// The allocation's bound relay address (`relay-ip:port`).
    pub relay: SocketAddr,
    /// The peer.
    pub peer: SocketAddr,
}

/// Packets and bytes (payload bytes, without the 4-byte ChannelData header) the kernel
/// relayed for one entry since it was inserted, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadCounts {
    /// Packets client → peer.
    pub to_peer_packets: u64,
    /// Payload bytes client → peer.
    pub to_peer_bytes: u64,
    /// Packets peer → client.
    pub to_client_packets: u64,
    /// Payload bytes peer → client.
    pub to_client_bytes: u64,
}

impl OffloadCounts {
    /// What was counted since `earlier` (a reading of the same entry); never below zero.
    pub fn since(&self, earlier: &OffloadCounts) -> OffloadCounts {
        OffloadCounts {
            to_peer_packets: self.to_peer_packets.saturating_sub(earlier.to_peer_packets),
            to_peer_bytes: self.to_peer_bytes.saturating_sub(earlier.to_peer_bytes),
            to_client_packets: (self.to_client_packets).saturating_sub(earlier.to_client_packets),
            to_client_bytes: self.to_client_bytes.saturating_sub(earlier.to_client_bytes),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &OffloadCounts) {
        self.to_peer_packets += other.to_peer_packets;
        self.to_peer_bytes += other.to_peer_bytes;
        self.to_client_packets += other.to_client_packets;
        self.to_client_bytes += other.to_client_bytes;
    }

    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == OffloadCounts::default()
    }
}

/// The kernel's channel maps, as one worker reaches them. Implemented by the eBPF loader;
/// `None` in the worker when the offload is off.
pub trait OffloadMaps: Send {
    /// Lets the kernel relay `entry`, both ways. An error leaves the channel in user space.
    fn insert(&mut self, entry: &ChannelEntry) -> std::io::Result<()>;
    /// Stops the kernel relaying `entry` (nothing happens if it holds no such entry).
    fn remove(&mut self, entry: &ChannelEntry);
    /// What the kernel relayed for `entry` since it was inserted; `None` if it holds none.
    fn counts(&self, entry: &ChannelEntry) -> Option<OffloadCounts>;
}

/// An entry on its way out of the kernel ([`super::Event::OffloadRemove`]): the worker
/// reads its counts one last time, removes it, and gives both back to
/// [`super::Manager::offload_removed`], which adds what was not counted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloaded {
    /// The entry to remove.
    pub entry: ChannelEntry,
    /// Its counts as last read: what is already added to the counters.
    pub(super) seen: OffloadCounts,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Counts to peer (packets, bytes) and to client (packets, bytes).
    pub(in crate::turn) fn counts(p: u64, b: u64, q: u64, c: u64) -> OffloadCounts {
        OffloadCounts {
            to_peer_packets: p,
            to_peer_bytes: b,
            to_client_packets: q,
            to_client_bytes: c,
        }
    }

    #[test]
    fn since_counts_what_is_new_and_never_goes_below_zero() {
        let earlier = counts(3, 300, 2, 200);
        assert_eq!(
            counts(5, 500, 2, 250).since(&earlier),
            counts(2, 200, 0, 50)
        );
        // A counter that went backwards (a new entry under the same key) adds nothing.
        assert!(counts(1, 1, 1, 1).since(&earlier).is_zero());
        let mut total = counts(1, 2, 3, 4);
        total.add(&counts(1, 1, 1, 1));
        assert_eq!(total, counts(2, 3, 4, 5));
    }
}
