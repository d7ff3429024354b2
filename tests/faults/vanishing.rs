//! Clients that vanish: one that never refreshes, TCP ones that drop half-way through a
//! message. Each holds the only relay port, so the next Allocate shows when it came back.

use super::raw::RawClient;
use super::*;

const ALLOC: &str = "rturn_allocations{transport=\"udp\"}";
const ALLOC_TCP: &str = "rturn_allocations{transport=\"tcp\"}";
const EXPIRED: &str = "rturn_allocations_ended_total{reason=\"expired\"}";
const DELETED: &str = "rturn_allocations_ended_total{reason=\"deleted\"}";
const PORTS: &str = "rturn_relay_ports{state=\"in_use\"}";
const BROKEN: &str = "rturn_tcp_connections_total{event=\"broken\"}";

#[test]
fn an_allocation_nobody_refreshes_expires_and_its_port_returns() {
    let (port, range) = one_port_range();
    let lifetimes = "allocation-lifetime = \"2s\"\nmax-allocation-lifetime = \"2s\"\n";
    let server = Server::start(&turn_config(&(range + lifetimes)));
    let udp = server.udp[0];

    // The vanishing client asks for ten minutes and is granted the configured two seconds.
    let mut gone = RawClient::udp(udp, "alice", "wonderland");
    let (relayed, lifetime) = gone
        .allocate(Some(Duration::from_secs(600)))
        .expect("the first allocation");
    let allocated = Instant::now();
    assert_eq!(relayed.port(), port);
    assert_eq!(lifetime, Duration::from_secs(2));
    assert_eq!((server.metric(ALLOC), server.metric(PORTS)), (1.0, 1.0));

    // The range is full until the allocation expires; then the next Allocate gets its port.
    let mut next = RawClient::udp(udp, "bob", "builder");
    let relayed = loop {
        match next.allocate(None) {
            Ok((relayed, _)) => break relayed,
            Err(508) => {}
            Err(code) => panic!("Allocate on a full range: {code}, not 508"),
        }
        assert!(
            allocated.elapsed() < Duration::from_secs(8),
            "the port did not come back within 8 s of a 2 s lifetime"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = allocated.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "the port came back after {after:?}, before the 2 s lifetime ran out"
    );
    assert_eq!(relayed.port(), port, "the same, only port");
    assert_eq!(server.metric(EXPIRED), 1.0);
    assert!(server.metric("rturn_requests_refused_total{code=\"508\"}") >= 1.0);

    // The vanished client's allocation is really gone: its late Refresh is 437.
    assert_eq!(gone.refresh(Duration::from_secs(600)), Err(437));
    assert_eq!((server.metric(ALLOC), server.metric(PORTS)), (1.0, 1.0));
}

#[test]
fn a_client_that_refreshes_outlives_the_lifetime() {
    // The contrast to the test above: the `turn` crate's client refreshes at half the
    // lifetime on its own, and keeps relaying after more than two lifetimes.
    let lifetimes = "allocation-lifetime = \"3s\"\nmax-allocation-lifetime = \"3s\"\n";
    let server = Server::start(&turn_config(lifetimes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use webrtc_util::Conn;
        let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let client = turn_client(server.udp[0], socket, "alice", "wonderland").await;
        let relay = tokio::time::timeout(TIMEOUT, client.allocate())
            .await
            .unwrap()
            .unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        tokio::time::sleep(Duration::from_secs(7)).await;
        relay
            .send_to(b"still here", peer.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(TIMEOUT, peer.recv_from(&mut buf))
            .await
            .expect("relayed after more than two lifetimes")
            .unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"still here"[..], relay.local_addr().unwrap())
        );
        client.close().await.unwrap();
    });
    assert_eq!(server.metric(EXPIRED), 0.0);
}

#[test]
fn tcp_clients_that_drop_mid_message_are_cleaned_up() {
    let (port, range) = one_port_range();
    let server = Server::start(&turn_config(&range));
    let (tcp, udp) = (server.tcp[0], server.udp[0]);
    // Half a Refresh: a header promising 40 bytes of body, and only 12 of them.
    let mut half = binding_request(&[], false).raw;
    half[0..2].copy_from_slice(&0x0004u16.to_be_bytes());
    half[2..4].copy_from_slice(&40u16.to_be_bytes());
    half.extend_from_slice(&[0; 12]);

    for (round, reset) in [(1.0, false), (2.0, true)] {
        let deleted = server.metric(DELETED);
        let mut client = RawClient::tcp(tcp, "alice", "wonderland");
        let (relayed, _) = client.allocate(None).expect("TCP allocation");
        assert_eq!(relayed.port(), port);
        assert_eq!(server.metric(ALLOC_TCP), 1.0);
        assert_eq!(
            RawClient::udp(udp, "bob", "builder").allocate(None),
            Err(508)
        );

        client.send_raw(&half);
        let super::raw::Link::Tcp(stream) = client.link else {
            unreachable!()
        };
        if reset {
            // SO_LINGER 0: close sends RST instead of FIN.
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(stream);

        // The allocation goes with the connection, and its port with it.
        wait_for("the TCP allocation to go", TIMEOUT, || {
            server.metric(ALLOC_TCP) == 0.0
        });
        assert_eq!(server.metric(DELETED), deleted + 1.0);
        assert_eq!(server.metric(PORTS), 0.0);
        let mut next = RawClient::udp(udp, "bob", "builder");
        assert_eq!(next.allocate(None).map(|(a, _)| a.port()), Ok(port));
        assert_eq!(next.refresh(Duration::ZERO), Ok(Duration::ZERO));
        // The truncated message is counted, not silently forgotten.
        assert_eq!(server.metric(BROKEN), round, "{}", server.log());
    }
}
