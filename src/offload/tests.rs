//! The kernel program on `lo`, end to end: four loopback UDP sockets stand in for a client,
//! rturn's listen socket, an allocation's relay socket and a peer.
//!
//! Needs root (CAP_BPF + CAP_NET_ADMIN), as CI runs; without it the test fails and says so.
//! Attaching to `lo` touches every loopback packet of the machine, so the whole scenario is one
//! test function (nothing else in this binary attaches), the program passes every packet it
//! does not own, and the `Offload` guard detaches it when dropped, also while a panic unwinds.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use aya::programs::SchedClassifier;
use aya::programs::tc::TcAttachType;

use super::{ChannelEntry, Offload, OffloadCounts, check_privileges};

const PACKETS: usize = 100;

fn socket(host: &str) -> UdpSocket {
    let s = UdpSocket::bind((host, 0)).expect("bind a loopback UDP socket");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().expect("local address")
}

/// A ChannelData message (RFC 8656 §12.4) with a length field of `length`.
fn channel_data(channel: u16, length: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The i-th test payload: sizes from 0 to ~1.4 kB, contents that tell packets apart.
fn payload(i: usize) -> Vec<u8> {
    (0..(i * 37) % 1400).map(|j| (i + j) as u8).collect()
}

pub(super) fn recv(s: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: nothing received within 2 s ({e})"));
    (buf[..n].to_vec(), from)
}

pub(super) fn assert_empty(s: &UdpSocket, what: &str) {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("{what} should have received nothing, got {other:?}"),
    }
    s.set_nonblocking(false).expect("blocking");
}

/// The ids of the TCX programs on lo's ingress.
fn lo_programs() -> Vec<u32> {
    SchedClassifier::query_tcx("lo", TcAttachType::Ingress)
        .map(|(_, progs)| progs.iter().map(|p| p.id()).collect())
        .unwrap_or_default()
}

#[test]
fn relays_bound_channels_on_lo_and_passes_the_rest() {
    if let Err(e) = check_privileges() {
        panic!("this test loads an eBPF program and needs root (CI runs as root): {e}");
    }
    let mut offload = Offload::load().unwrap_or_else(|e| panic!("{e}"));
    offload.attach("lo").unwrap_or_else(|e| panic!("{e}"));
    let id = offload.program_id().expect("the loaded program's id");
    scenario(&mut offload, "127.0.0.1");
    scenario(&mut offload, "::1");
    wildcard(&mut offload, "127.0.0.1", "0.0.0.0");
    wildcard(&mut offload, "::1", "::");

    // Dropped: detached from lo.
    assert!(lo_programs().contains(&id), "attached to lo's ingress");
    drop(offload);
    assert!(!lo_programs().contains(&id), "detached from lo on drop");
}

/// Four sockets on `host`: an entry relays both ways, the rest goes to user space.
fn scenario(offload: &mut Offload, host: &str) {
    let socket = || socket(host);
    let (client, listen, relay, peer) = (socket(), socket(), socket(), socket());
    let entry = ChannelEntry {
        client: addr(&client),
        listen: addr(&listen),
        channel: 0x4000,
        relay: addr(&relay),
        peer: addr(&peer),
    };
    offload.maps().insert(&entry).expect("insert the entry");
    assert_eq!(
        offload.maps().counts(&entry),
        Some(OffloadCounts::default())
    );

    // Client -> peer: the header is stripped, the peer sees the relay address.
    let mut bytes = 0;
    for i in 0..PACKETS {
        let p = payload(i);
        bytes += p.len() as u64;
        let cd = channel_data(0x4000, p.len() as u16, &p);
        client.send_to(&cd, entry.listen).expect("client send");
        let (got, from) = recv(&peer, "peer");
        assert_eq!(
            (got, from),
            (p, entry.relay),
            "{host}: packet {i} to the peer"
        );
    }
    assert_empty(&listen, "the listen socket");

    // Peer -> client: the header is prepended, the client sees the listen address.
    for i in 0..PACKETS {
        let p = payload(PACKETS - 1 - i);
        peer.send_to(&p, entry.relay).expect("peer send");
        let (got, from) = recv(&client, "client");
        let want = channel_data(0x4000, p.len() as u16, &p);
        assert_eq!(
            (got, from),
            (want, entry.listen),
            "{host}: packet {i} to the client"
        );
    }
    assert_empty(&relay, "the relay socket");
    let counts = offload.maps().counts(&entry).expect("the entry's counts");
    let want = OffloadCounts {
        to_peer_packets: PACKETS as u64,
        to_peer_bytes: bytes,
        to_client_packets: PACKETS as u64,
        to_client_bytes: bytes,
    };
    assert_eq!(counts, want);

    // Not the kernel's: another channel, a padded or short length field, a STUN message.
    let other = channel_data(0x4001, 3, b"abc");
    let padded = channel_data(0x4000, 3, b"abc\0");
    let stun = [
        0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    for msg in [&other[..], &padded[..], &stun[..]] {
        client.send_to(msg, entry.listen).expect("client send");
        assert_eq!(recv(&listen, "listen"), (msg.to_vec(), entry.client));
    }
    assert_empty(&peer, "the peer");
    assert_eq!(offload.maps().counts(&entry), Some(want));

    // A peer with no socket here (on lo it could only be one elsewhere): user space sends it.
    let gone = addr(&socket());
    let elsewhere = ChannelEntry {
        channel: 0x4002,
        peer: gone,
        ..entry
    };
    offload.maps().insert(&elsewhere).expect("insert");
    let cd = channel_data(0x4002, 3, b"abc");
    client.send_to(&cd, entry.listen).expect("client send");
    assert_eq!(recv(&listen, "listen"), (cd, entry.client));
    let no_counts = OffloadCounts::default();
    assert_eq!(offload.maps().counts(&elsewhere), Some(no_counts));
    offload.maps().remove(&elsewhere);

    // Removed: both ways go to user space again.
    offload.maps().remove(&entry);
    assert_eq!(offload.maps().counts(&entry), None);
    let cd = channel_data(0x4000, 5, b"hello");
    client.send_to(&cd, entry.listen).expect("client send");
    assert_eq!(recv(&listen, "listen"), (cd, entry.client));
    peer.send_to(b"back", entry.relay).expect("peer send");
    assert_eq!(recv(&relay, "relay"), (b"back".to_vec(), entry.peer));
    assert_empty(&client, "the client");
    assert_empty(&peer, "the peer");
}

/// A client of a wildcard listen address (entered with listen 0.0.0.0 or ::): the program
/// relays its ChannelData to the peer and learns the address it was sent to; until then the
/// peer's data goes to user space, afterwards the client gets it from that address.
fn wildcard(offload: &mut Offload, host: &str, any: &str) {
    let socket = || socket(host);
    let (client, relay, peer) = (socket(), socket(), socket());
    let listen = UdpSocket::bind((any, 0)).expect("bind a wildcard socket");
    listen
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    let port = addr(&listen).port();
    let to = SocketAddr::new(host.parse().expect("an address"), port);
    let entry = ChannelEntry {
        client: addr(&client),
        listen: addr(&listen),
        channel: 0x4003,
        relay: addr(&relay),
        peer: addr(&peer),
    };
    assert!(entry.listen.ip().is_unspecified());
    offload.maps().insert(&entry).expect("insert the entry");

    // Before the client sent anything the local address is not known: user space answers.
    peer.send_to(b"early", entry.relay).expect("peer send");
    assert_eq!(recv(&relay, "relay"), (b"early".to_vec(), entry.peer));
    assert_empty(&client, "the client");

    let cd = channel_data(0x4003, 2, b"hi");
    client.send_to(&cd, to).expect("client send");
    assert_eq!(recv(&peer, "peer"), (b"hi".to_vec(), entry.relay), "{any}");
    assert_empty(&listen, "the wildcard listen socket");

    peer.send_to(b"back", entry.relay).expect("peer send");
    let want = channel_data(0x4003, 4, b"back");
    assert_eq!(
        recv(&client, "client"),
        (want, to),
        "{any}: from the learned address"
    );
    assert_empty(&relay, "the relay socket");
    let counts = offload.maps().counts(&entry).expect("the entry's counts");
    assert_eq!((counts.to_peer_packets, counts.to_client_packets), (1, 1));
    offload.maps().remove(&entry);
}
