//! Black-box: a TURN client over TCP that stops reading. Its peer floods the relay address,
//! the data piles up for the client, and once more than `max-tcp-queued-bytes` wait the
//! server closes the connection (deleting the allocation) and counts it in `/metrics`,
//! instead of holding 256 frames of up to 64 KiB per such client. Loopback only; the default
//! worker count.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rturn::testkit::*;
use stun::attributes::{
    ATTR_NONCE, ATTR_REQUESTED_TRANSPORT, ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS,
};
use stun::message::{
    CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CREATE_PERMISSION, Message, Method,
};
use stun::xoraddr::XorMappedAddress;

const SLOW: &str = "rturn_tcp_connections_total{event=\"slow_consumer\"}";

/// A TURN request, signed as alice when `nonce` is given.
fn request(method: Method, nonce: Option<&str>, add: impl FnOnce(&mut Message)) -> Message {
    turn_request(method, nonce.map(alice), add)
}

fn allocate(nonce: Option<&str>) -> Message {
    request(METHOD_ALLOCATE, nonce, |m| {
        m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    })
}

#[track_caller]
fn assert_ok(m: &Message) {
    assert_eq!(m.typ.class, CLASS_SUCCESS_RESPONSE, "{m}");
}

/// A TCP connection whose kernel receive buffer is small, so a client that stops reading
/// fills the server's side soon.
fn small_buffer_client(server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&server.into(), TIMEOUT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Allocates over `stream` and permits `peer`; returns the relayed address.
fn allocate_for(stream: &mut TcpStream, peer: SocketAddr) -> SocketAddr {
    let challenge = tcp_exchange(stream, &allocate(None));
    let nonce = String::from_utf8(challenge.get(ATTR_NONCE).unwrap()).unwrap();
    let answer = tcp_exchange(stream, &allocate(Some(&nonce)));
    assert_ok(&answer);
    let mut relayed = XorMappedAddress::default();
    relayed
        .get_from_as(&answer, ATTR_XOR_RELAYED_ADDRESS)
        .unwrap();
    let permit = request(METHOD_CREATE_PERMISSION, Some(&nonce), |m| {
        let attr = XorMappedAddress {
            ip: peer.ip(),
            port: peer.port(),
        };
        attr.add_to_as(m, ATTR_XOR_PEER_ADDRESS).unwrap();
    });
    assert_ok(&tcp_exchange(stream, &permit));
    SocketAddr::new(relayed.ip, relayed.port)
}

#[test]
fn a_tcp_client_that_stops_reading_is_closed_once_its_queue_passes_the_cap() {
    let server = Server::start(&loopback_config(
        "http = \"127.0.0.1:0\"\n\
         [server]\nmax-tcp-queued-bytes = 65536\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
         [auth.users]\nalice = \"wonderland\"\n",
    ));
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = small_buffer_client(server.tcp[0]);
    let relayed = allocate_for(&mut client, peer.local_addr().unwrap());
    assert_eq!(server.metric(SLOW), 0.0);

    // The client reads nothing from now on; its peer sends 1200-byte datagrams, each a Data
    // indication on the stream. Past the kernel's buffers (a few MB on loopback) they pile
    // up in the server, and 64 KiB later the server closes the client. 50 000 datagrams
    // would be 60 MB.
    let payload = noise(7, 1200);
    let deadline = Instant::now() + 2 * TIMEOUT;
    let mut sent = 0;
    while server.metric(SLOW) < 1.0 && sent < 50_000 && Instant::now() < deadline {
        for _ in 0..500 {
            peer.send_to(&payload, relayed).unwrap();
        }
        sent += 500;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        server.metric(SLOW),
        1.0,
        "not closed after {sent} datagrams\n{}",
        server.log()
    );
    // Its allocation went with it.
    let deadline = Instant::now() + TIMEOUT;
    while server.metric("rturn_allocations{transport=\"tcp\"}") != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the allocation outlived its connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Reading again, the client finds what was on its way, then the end of the stream.
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0usize;
    let closed = loop {
        match client.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => read += n,
            Err(e) => {
                break matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                );
            }
        }
    };
    eprintln!("{sent} datagrams sent, {read} bytes read before the close");
    assert!(closed, "the connection stayed open after {read} bytes");
    assert!(
        read < sent * 1236,
        "all {sent} datagrams arrived: nothing was dropped"
    );

    // The server serves the next client as before.
    let mut next = tcp_client(server.tcp[0]);
    let answer = tcp_exchange(&mut next, &allocate(None));
    assert!(answer.get(ATTR_NONCE).is_ok(), "{answer}");
}
