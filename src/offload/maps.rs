//! The handle on the kernel program's two hash maps: user space writes an entry per bound
//! channel and reads its counters back.
//!
//! [`KernelMaps`] owns the map descriptors (taken out of the loaded object in `mod.rs`); it is
//! the only one that inserts and removes. The program reads entries and adds to their
//! counters, and for a client of a wildcard listen address writes the local address the
//! client sent to into the `to_client` value (entered as zero), so a removed entry stops
//! matching for the next packet.

use std::io;

use aya::maps::{HashMap, Map, MapData, MapError};

use super::entry::{
    self, ChannelEntry, OffloadCounts, TO_CLIENT_KEY_LEN, TO_PEER_KEY_LEN, ToClientKey, ToPeerKey,
    Value,
};

/// The bytes of a value that name where a packet goes (both addresses, ports and the channel),
/// before the counters.
const ROUTE_LEN: usize = 38;

/// Whether a stored `to_client` value still routes to `want`'s client: its route bytes are
/// the same, but for the listen address (bytes 16..32) when the entry's is a wildcard, which
/// the program fills in itself.
fn to_client_matches(stored: &Value, want: &entry::Encoded) -> bool {
    let want = &want.to_client_value;
    if want[16..32] == [0u8; 16] {
        stored[..16] == want[..16] && stored[32..ROUTE_LEN] == want[32..ROUTE_LEN]
    } else {
        stored[..ROUTE_LEN] == want[..ROUTE_LEN]
    }
}

/// The `to_peer` and `to_client` maps of one loaded program.
#[derive(Debug)]
pub struct KernelMaps {
    to_peer: HashMap<MapData, ToPeerKey, Value>,
    to_client: HashMap<MapData, ToClientKey, Value>,
}

/// A map error as an `io::Error`, naming the map.
fn io_error(map: &str, e: MapError) -> io::Error {
    io::Error::other(format!("offload map {map}: {e}"))
}

impl KernelMaps {
    /// Wraps the two maps taken out of the loaded object.
    pub(crate) fn new(to_peer: Map, to_client: Map) -> Result<Self, MapError> {
        Ok(KernelMaps {
            to_peer: HashMap::try_from(to_peer)?,
            to_client: HashMap::try_from(to_client)?,
        })
    }

    /// Starts relaying `entry` in the kernel, with its counters at zero (an entry already there
    /// is replaced). A channel number out of range or mixed families are `InvalidInput`.
    pub fn insert(&mut self, entry: &ChannelEntry) -> io::Result<()> {
        let e = entry::encode(entry)?;
        self.to_peer
            .insert(e.to_peer_key, e.to_peer_value, 0)
            .map_err(|err| io_error("to_peer", err))?;
        if let Err(err) = self.to_client.insert(e.to_client_key, e.to_client_value, 0) {
            let _ = self.to_peer.remove(&e.to_peer_key);
            return Err(io_error("to_client", err));
        }
        Ok(())
    }

    /// Stops relaying `entry` in the kernel: its packets go to user space again. A record that
    /// now belongs to another entry (the same key written since) is left alone.
    pub fn remove(&mut self, entry: &ChannelEntry) {
        let Ok(e) = entry::encode(entry) else {
            return;
        };
        if self
            .to_peer
            .get(&e.to_peer_key, 0)
            .is_ok_and(|v| v[..ROUTE_LEN] == e.to_peer_value[..ROUTE_LEN])
        {
            let _ = self.to_peer.remove(&e.to_peer_key);
        }
        if self
            .to_client
            .get(&e.to_client_key, 0)
            .is_ok_and(|v| to_client_matches(&v, &e))
        {
            let _ = self.to_client.remove(&e.to_client_key);
        }
    }

    /// What the kernel relayed for `entry` since it was inserted; `None` when it is not (or no
    /// longer) in the maps.
    pub fn counts(&self, entry: &ChannelEntry) -> Option<OffloadCounts> {
        let e = entry::encode(entry).ok()?;
        let to_peer = self.to_peer.get(&e.to_peer_key, 0).ok()?;
        let to_client = self.to_client.get(&e.to_client_key, 0).ok()?;
        if to_peer[..ROUTE_LEN] != e.to_peer_value[..ROUTE_LEN]
            || !to_client_matches(&to_client, &e)
        {
            return None;
        }
        let (to_peer_packets, to_peer_bytes) = entry::counters(&to_peer);
        let (to_client_packets, to_client_bytes) = entry::counters(&to_client);
        Some(OffloadCounts {
            to_peer_packets,
            to_peer_bytes,
            to_client_packets,
            to_client_bytes,
        })
    }
}

// The key sizes the maps are declared with in bpf/relay.bpf.c; aya checks them on `try_from`.
const _: () = assert!(TO_PEER_KEY_LEN == 44 && TO_CLIENT_KEY_LEN == 40);
