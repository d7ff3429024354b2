//! Black-box: the kernel fast path (`[relay] offload`, issue 18). As root (CI runs as root) on
//! loopback addresses, `auto` loads the eBPF program: a bound UDP channel is then relayed by
//! the kernel both ways, and the packets still show in `/metrics`. With `off`, the same
//! exchange goes through user space. Both must deliver every packet, intact and in order.

use std::net::UdpSocket;

use rturn::testkit::*;

/// Packets each way.
const PACKETS: usize = 100;

/// The sum of every sample of metric family `name` (all its labels).
fn family(server: &Server, name: &str) -> f64 {
    let samples = server.metrics();
    (samples.iter())
        .filter(|(n, _)| n == name || n.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// Binds a channel to a loopback peer and exchanges [`PACKETS`] each way; returns the
/// server for its metrics.
fn exchange(offload: &str) -> Server {
    let config = loopback_config(&format!(
        "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{offload}\
         [auth.users]\nalice = \"wonderland\"\n"
    ));
    // /metrics too.
    let server = Server::start(&config.replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = ["));
    let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", false);
    let relay = client.relays[0];
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(TIMEOUT)).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    assert_eq!(client.create_permission(peer_addr), 0);
    assert_eq!(client.channel_bind(0x4001, peer_addr), 0);
    let mut buf = [0u8; 1500];
    for i in 0..PACKETS {
        let out = format!("to the peer {i}");
        client.channel_data(0x4001, out.as_bytes());
        let (n, from) = peer.recv_from(&mut buf).expect("the peer receives");
        assert_eq!((&buf[..n], from), (out.as_bytes(), relay), "packet {i}");
        let back = format!("to the client {i}");
        peer.send_to(back.as_bytes(), relay).unwrap();
        let got = client.next_relayed(TIMEOUT);
        let want = Relayed::Channel {
            channel: 0x4001,
            data: back.into_bytes(),
        };
        assert_eq!(got, Some(want), "packet {i}; log:\n{}", server.log());
    }
    server
}

#[test]
fn a_bound_channel_is_relayed_by_the_kernel_both_ways_and_still_counted() {
    let server = exchange("offload = \"auto\"\n");
    assert_eq!(
        family(&server, "rturn_offload_active"),
        1.0,
        "{}",
        server.log()
    );
    assert_eq!(family(&server, "rturn_offload_channels"), 1.0);
    // Every packet of the exchange went through the kernel, and a scrape reads them back.
    let offloaded = family(&server, "rturn_offload_packets_total");
    assert_eq!(offloaded, (2 * PACKETS) as f64, "{:?}", server.metrics());
    assert!(family(&server, "rturn_offload_bytes_total") > 0.0);
}

#[test]
fn with_the_offload_off_the_same_exchange_goes_through_user_space() {
    let server = exchange("offload = \"off\"\n");
    assert_eq!(family(&server, "rturn_offload_active"), 0.0);
    assert_eq!(family(&server, "rturn_offload_packets_total"), 0.0);
}
