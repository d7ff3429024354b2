//! Black-box: IPv4 and IPv6 packets interleaved on one server. A dual-stack allocation
//! (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY) relays both ways on both families at once, and
//! IPv6 clients of a server that also listens on IPv4 are answered at their own address. A
//! receive batch that reused one header for IPv4 and IPv6 sources cut the IPv6 source to the
//! 16 bytes of the IPv4 one before: every IPv6 peer packet looked like it came from a
//! stranger and was dropped, and IPv6 clients were answered at a garbage address.

use std::net::{SocketAddr, UdpSocket};

use rturn::testkit::*;

#[test]
fn dual_allocation_relays_both_families_interleaved() {
    let server = Server::start(&loopback_config(
        "[relay]\nrelay-ip = [\"127.0.0.1\", \"::1\"]\nallow-loopback-peers = true\n\
         [auth.users]\nalice = \"wonderland\"\n",
    ));
    let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", true);
    assert_eq!(client.relays.len(), 2, "{:?}", client.relays);
    let peers: Vec<(SocketAddr, UdpSocket)> = (client.relays.clone().into_iter())
        .map(|relay| {
            let peer = UdpSocket::bind(SocketAddr::new(relay.ip(), 0)).unwrap();
            peer.set_read_timeout(Some(TIMEOUT)).unwrap();
            (relay, peer)
        })
        .collect();
    for (i, (_, peer)) in peers.iter().enumerate() {
        let addr = peer.local_addr().unwrap();
        assert_eq!(client.create_permission(addr), 0, "permission for {addr}");
        assert_eq!(
            client.channel_bind(0x4000 + i as u16, addr),
            0,
            "channel to {addr}"
        );
    }

    let mut buf = [0u8; 1500];
    for round in 0..10 {
        for (i, (relay, peer)) in peers.iter().enumerate() {
            let addr = peer.local_addr().unwrap();
            let channel = 0x4000 + i as u16;
            // Client to peer, from the relay of the peer's family.
            let out = format!("round {round} to {addr}");
            client.channel_data(channel, out.as_bytes());
            let (n, from) = peer.recv_from(&mut buf).expect("the peer receives");
            assert_eq!((&buf[..n], from), (out.as_bytes(), *relay));
            // Peer to client, on the channel.
            let back = format!("round {round} from {addr}");
            peer.send_to(back.as_bytes(), relay).unwrap();
            let got = client.next_relayed(TIMEOUT);
            assert_eq!(
                got,
                Some(Relayed::Channel {
                    channel,
                    data: back.into_bytes()
                }),
                "what {addr} sent to {relay}; server log:\n{}",
                server.log()
            );
        }
    }
}

#[test]
fn ipv6_clients_answered_at_their_address_between_ipv4_ones() {
    // One worker: both listen sockets share its receive batch, as with any dual-stack server.
    let server = Server::start(
        "realm = \"test.local\"\n[server]\nworkers = 1\n\
         [listen]\nudp = [\"127.0.0.1:0\", \"[::1]:0\"]\ntcp = []\n",
    );
    let clients: Vec<UdpSocket> = server.udp.iter().map(|&addr| udp_client(addr)).collect();
    for _ in 0..10 {
        for client in &clients {
            let response = udp_exchange(client, &binding_request(&[], true));
            assert_eq!(mapped_address(&response), client.local_addr().unwrap());
        }
    }
}
