//! What the kernel fast path relays, as plain types, and their bytes in the kernel's maps.
//!
//! [`ChannelEntry`] and [`OffloadCounts`] are the shared contract of issue 18 (the sans-IO table
//! in `turn/` produces entries; this module writes them into the maps). The encoders here are
//! pure: they turn an entry into the exact key and value bytes of `bpf/relay.bpf.c`'s
//! `to_peer` and `to_client` hash maps (addresses, ports and the channel number in network
//! byte order, an IPv4 address in the first 4 of 16 bytes, the family as a native `u32`), and
//! read the two counters back out of a value.

use std::io;
use std::net::{IpAddr, SocketAddr};

pub use crate::turn::offload::{ChannelEntry, OffloadCounts};

/// Size of a `to_peer` key: family, client ip, listen ip, client port, listen port, channel, pad.
pub(crate) const TO_PEER_KEY_LEN: usize = 4 + 16 + 16 + 2 + 2 + 2 + 2;
/// Size of a `to_client` key: family, peer ip, relay ip, peer port, relay port.
pub(crate) const TO_CLIENT_KEY_LEN: usize = 4 + 16 + 16 + 2 + 2;
/// Size of either value: two addresses, two ports, 4 bytes (channel and pad, or pad), packets,
/// bytes.
pub(crate) const VALUE_LEN: usize = 16 + 16 + 2 + 2 + 4 + 8 + 8;
/// Where the packet counter starts in a value; the byte counter follows it.
const COUNTERS_AT: usize = 40;

/// A `to_peer` key.
pub(crate) type ToPeerKey = [u8; TO_PEER_KEY_LEN];
/// A `to_client` key.
pub(crate) type ToClientKey = [u8; TO_CLIENT_KEY_LEN];
/// A value of either map.
pub(crate) type Value = [u8; VALUE_LEN];

/// The four map records of one entry, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub(crate) to_peer_key: ToPeerKey,
    pub(crate) to_peer_value: Value,
    pub(crate) to_client_key: ToClientKey,
    pub(crate) to_client_value: Value,
}

/// The kernel program's family number for an address.
fn family(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    }
}

/// An address as 16 bytes: IPv4 in the first 4, the rest zero; IPv6 as is.
fn ip16(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// The address with an IPv4-mapped IPv6 address (a dual-stack socket's view) made IPv4, which
/// is what the packets on the wire carry.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Writes `bytes` at `at` in `out` (the encoders' one way to fill a record).
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Checks an entry and encodes its four records.
///
/// Refused (`InvalidInput`): a channel outside 0x4000..=0x7FFF or addresses of mixed families.
pub(crate) fn encode(entry: &ChannelEntry) -> io::Result<Encoded> {
    let (client, listen) = (canonical(entry.client), canonical(entry.listen));
    let (relay, peer) = (canonical(entry.relay), canonical(entry.peer));
    if !crate::turn::offload::OFFLOAD_CHANNELS.contains(&entry.channel) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("channel {:#06x} is not in 0x4000..=0x7FFF", entry.channel),
        ));
    }
    let fam = family(client.ip());
    if [listen, relay, peer].iter().any(|a| family(a.ip()) != fam) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the entry's addresses are not all of one family",
        ));
    }
    let channel = entry.channel.to_be_bytes();

    let mut to_peer_key = [0u8; TO_PEER_KEY_LEN];
    put(&mut to_peer_key, 0, &fam.to_ne_bytes());
    put(&mut to_peer_key, 4, &ip16(client.ip()));
    put(&mut to_peer_key, 20, &ip16(listen.ip()));
    put(&mut to_peer_key, 36, &client.port().to_be_bytes());
    put(&mut to_peer_key, 38, &listen.port().to_be_bytes());
    put(&mut to_peer_key, 40, &channel);

    let mut to_peer_value = [0u8; VALUE_LEN];
    put(&mut to_peer_value, 0, &ip16(relay.ip()));
    put(&mut to_peer_value, 16, &ip16(peer.ip()));
    put(&mut to_peer_value, 32, &relay.port().to_be_bytes());
    put(&mut to_peer_value, 34, &peer.port().to_be_bytes());

    let mut to_client_key = [0u8; TO_CLIENT_KEY_LEN];
    put(&mut to_client_key, 0, &fam.to_ne_bytes());
    put(&mut to_client_key, 4, &ip16(peer.ip()));
    put(&mut to_client_key, 20, &ip16(relay.ip()));
    put(&mut to_client_key, 36, &peer.port().to_be_bytes());
    put(&mut to_client_key, 38, &relay.port().to_be_bytes());

    let mut to_client_value = [0u8; VALUE_LEN];
    put(&mut to_client_value, 0, &ip16(client.ip()));
    put(&mut to_client_value, 16, &ip16(listen.ip()));
    put(&mut to_client_value, 32, &client.port().to_be_bytes());
    put(&mut to_client_value, 34, &listen.port().to_be_bytes());
    put(&mut to_client_value, 36, &channel);

    Ok(Encoded {
        to_peer_key,
        to_peer_value,
        to_client_key,
        to_client_value,
    })
}

/// The packet and byte counters of a value (native-endian `u64`s the program adds to).
pub(crate) fn counters(value: &Value) -> (u64, u64) {
    let mut packets = [0u8; 8];
    let mut bytes = [0u8; 8];
    packets.copy_from_slice(&value[COUNTERS_AT..COUNTERS_AT + 8]);
    bytes.copy_from_slice(&value[COUNTERS_AT + 8..COUNTERS_AT + 16]);
    (u64::from_ne_bytes(packets), u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn entry() -> ChannelEntry {
        ChannelEntry {
            client: addr("10.0.0.1:5000"),
            listen: addr("10.0.0.2:3478"),
            channel: 0x4001,
            relay: addr("10.0.0.2:50000"),
            peer: addr("10.0.0.3:6000"),
        }
    }

    #[test]
    fn layout_matches_the_kernel_structs() {
        let e = encode(&entry()).expect("valid entry");
        let mut key = [0u8; TO_PEER_KEY_LEN];
        key[..4].copy_from_slice(&4u32.to_ne_bytes());
        key[4..8].copy_from_slice(&[10, 0, 0, 1]);
        key[20..24].copy_from_slice(&[10, 0, 0, 2]);
        key[36..38].copy_from_slice(&[0x13, 0x88]);
        key[38..40].copy_from_slice(&[0x0d, 0x96]);
        key[40..42].copy_from_slice(&[0x40, 0x01]);
        assert_eq!(e.to_peer_key, key);
        assert_eq!(&e.to_peer_value[..4], &[10, 0, 0, 2]);
        assert_eq!(&e.to_peer_value[16..20], &[10, 0, 0, 3]);
        assert_eq!(&e.to_peer_value[32..36], &[0xc3, 0x50, 0x17, 0x70]);
        assert_eq!(&e.to_client_key[4..8], &[10, 0, 0, 3]);
        assert_eq!(&e.to_client_key[20..24], &[10, 0, 0, 2]);
        assert_eq!(&e.to_client_key[36..40], &[0x17, 0x70, 0xc3, 0x50]);
        assert_eq!(&e.to_client_value[36..38], &[0x40, 0x01]);
        assert_eq!(counters(&e.to_client_value), (0, 0));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mut mapped = entry();
        mapped.client = addr("[::ffff:10.0.0.1]:5000");
        mapped.peer = addr("[::ffff:10.0.0.3]:6000");
        assert_eq!(encode(&mapped).ok(), encode(&entry()).ok());
    }

    #[test]
    fn bad_entries_are_refused_and_ipv6_is_encoded() {
        let mut bad = entry();
        bad.channel = 0x3fff;
        assert_eq!(
            encode(&bad).map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::InvalidInput)
        );
        bad = entry();
        bad.peer = addr("[2001:db8::1]:6000");
        assert_eq!(
            encode(&bad).map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::InvalidInput)
        );
        let v6 = ChannelEntry {
            client: addr("[2001:db8::1]:5000"),
            listen: addr("[2001:db8::2]:3478"),
            channel: 0x4000,
            relay: addr("[2001:db8::2]:50000"),
            peer: addr("[2001:db8::3]:6000"),
        };
        let e = encode(&v6).expect("IPv6 entry");
        assert_eq!(&e.to_peer_key[..4], &6u32.to_ne_bytes());
        assert_eq!(
            e.to_peer_key[4..20],
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets()
        );
    }

    #[test]
    fn counters_are_read_from_their_offsets() {
        let mut value = [0u8; VALUE_LEN];
        value[40..48].copy_from_slice(&7u64.to_ne_bytes());
        value[48..56].copy_from_slice(&700u64.to_ne_bytes());
        assert_eq!(counters(&value), (7, 700));
    }
}
