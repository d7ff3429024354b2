//! Black-box: UDP GSO towards clients. A peer's burst of equal-size datagrams to one relay
//! reaches the worker in one receive batch, leaves for the client as GSO sends
//! (`rturn_udp_gso_total`), and arrives as the same datagrams: every one, whole, apart (a
//! datagram glued to the next would hide the next), in order, and counted once each.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use rturn::testkit::*;

/// Datagrams per burst: one receive batch of the worker.
const BURST: usize = 32;
const ROUNDS: usize = 10;
/// Payload bytes of each datagram.
const SIZE: usize = 1_000;

/// Payload `i` of round `round`: its numbers, then noise.
fn payload(round: usize, i: usize) -> Vec<u8> {
    let mut data = noise((round * BURST + i) as u64, SIZE);
    data[..4].copy_from_slice(&[b'g', b's', round as u8, i as u8]);
    data
}

/// Sends `burst` from `peer` to `to` at once: as one GSO send of its own, so the relay
/// socket has them all queued when the worker reads it (one by one if the kernel says no).
fn send_burst(peer: &UdpSocket, to: SocketAddr, burst: &[Vec<u8>]) {
    let all = burst.concat();
    let segment = SIZE as u16;
    let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
    let iov = [std::io::IoSlice::new(&all)];
    let dest = SockaddrStorage::from(to);
    if sendmsg(
        peer.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::empty(),
        Some(&dest),
    )
    .is_err()
    {
        for datagram in burst {
            peer.send_to(datagram, to).unwrap();
        }
    }
}

#[test]
fn a_burst_to_one_client_leaves_as_gso_sends_and_arrives_datagram_by_datagram() {
    let server = Server::start(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         [relay]\nrelay-ip = [\"127.0.0.1\"]\nallow-loopback-peers = true\n\
         [auth.users]\nalice = \"wonderland\"\n",
    );
    let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", false);
    let relay = client.relays[0];
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let channel = 0x4000;
    assert_eq!(client.create_permission(peer.local_addr().unwrap()), 0);
    assert_eq!(client.channel_bind(channel, peer.local_addr().unwrap()), 0);

    for round in 0..ROUNDS {
        let burst: Vec<Vec<u8>> = (0..BURST).map(|i| payload(round, i)).collect();
        send_burst(&peer, relay, &burst);
        for (i, data) in burst.into_iter().enumerate() {
            let got = client.next_relayed(TIMEOUT);
            assert_eq!(
                got,
                Some(Relayed::Channel { channel, data }),
                "datagram {i} of round {round}; server log:\n{}",
                server.log()
            );
        }
    }
    assert_eq!(
        client.next_relayed(std::time::Duration::from_millis(100)),
        None
    );

    let relayed = (ROUNDS * BURST) as f64;
    let to_client = "rturn_relayed_packets_total{direction=\"to_client\"}";
    assert_eq!(server.metric(to_client), relayed);
    assert_eq!(server.metric("rturn_socket_errors_total"), 0.0);
    let gso = |event: &str| server.metric(&format!("rturn_udp_gso_total{{event=\"{event}\"}}"));
    let (sends, datagrams) = (gso("sends"), gso("datagrams"));
    assert!(sends >= 1.0, "no GSO send; server log:\n{}", server.log());
    assert!(
        datagrams >= 2.0 * sends && datagrams <= relayed,
        "{sends} GSO sends carried {datagrams} datagrams"
    );
    assert_eq!(gso("refused"), 0.0);
}
