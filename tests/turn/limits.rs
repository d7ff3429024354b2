//! The abuse limits against the real binary: the per-source bucket for unauthenticated
//! requests, per-allocation caps on permissions and channels, `max-bps`, the per-IP TCP
//! cap, the TCP allocation timeout and the TLS handshake timeout. Every count is read back
//! from `/metrics`. Loopback only; one worker, so one shard holds every bucket.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rturn::testkit::*;
use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_NONCE, ATTR_REQUESTED_TRANSPORT, ATTR_XOR_PEER_ADDRESS,
    ATTR_XOR_RELAYED_ADDRESS,
};
use stun::message::{
    BINDING_SUCCESS, CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message, Method,
};
use stun::xoraddr::XorMappedAddress;

const USER: &str = "alice";
const PASS: &str = "wonderland";

/// One worker, UDP, TCP and HTTP on loopback, loopback peers allowed, user alice; `server`
/// and `relay` go into those sections, `more` at the end.
fn config(server: &str, relay: &str, listen: &str, more: &str) -> String {
    format!(
        "realm = \"test.local\"\n[server]\nworkers = 1\n{server}\n\
         [listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n{listen}\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{relay}\n\
         [auth.users]\n{USER} = \"{PASS}\"\n{more}"
    )
}

/// The current `/metrics` text.
fn metrics(server: &Server) -> String {
    http_body(server.http_addr(), "/metrics")
}

/// The value of one sample, e.g. `rturn_packets_total{outcome="rate_limited"}`.
fn sample(text: &str, name: &str) -> u64 {
    let value = (text.lines())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"));
    value.parse().expect("an integer")
}

/// A UDP socket on loopback address `ip`, connected to `server`.
fn udp_from(ip: &str, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket.connect(server).expect("connect");
    socket
}

/// Everything already waiting on `socket`, without waiting for more.
fn drain(socket: &UdpSocket) -> usize {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1500];
    let mut n = 0;
    while socket.recv(&mut buf).is_ok() {
        n += 1;
    }
    socket.set_nonblocking(false).expect("blocking");
    n
}

/// A TURN request; with `nonce`, signed as alice (long-term credentials).
fn request(method: Method, nonce: Option<&str>, add: impl FnOnce(&mut Message)) -> Message {
    signed_with(PASS, method, nonce, add)
}

/// A TURN request signed (with `nonce`) as alice with password `pass`.
fn signed_with(
    pass: &str,
    method: Method,
    nonce: Option<&str>,
    add: impl FnOnce(&mut Message),
) -> Message {
    let signer = nonce.map(|nonce| Signer {
        user: USER,
        realm: "test.local",
        pass,
        nonce,
    });
    turn_request(method, signer, add)
}

fn allocate(nonce: Option<&str>) -> Message {
    request(METHOD_ALLOCATE, nonce, |m| {
        m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    })
}

fn add_peer(m: &mut Message, peer: SocketAddr) {
    let attr = XorMappedAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    attr.add_to_as(m, ATTR_XOR_PEER_ADDRESS).expect("peer");
}

fn permission(nonce: &str, peers: &[SocketAddr]) -> Message {
    request(METHOD_CREATE_PERMISSION, Some(nonce), |m| {
        for peer in peers {
            add_peer(m, *peer);
        }
    })
}

fn channel_bind(nonce: &str, number: u16, peer: SocketAddr) -> Message {
    request(METHOD_CHANNEL_BIND, Some(nonce), |m| {
        let [a, b] = number.to_be_bytes();
        m.add(ATTR_CHANNEL_NUMBER, &[a, b, 0, 0]);
        add_peer(m, peer);
    })
}

#[track_caller]
fn assert_ok(m: &Message) {
    assert_eq!(
        m.typ.class,
        CLASS_SUCCESS_RESPONSE,
        "error {:?}",
        error_code(m)
    );
}

#[track_caller]
fn assert_code(m: &Message, code: u16) {
    assert_eq!(m.typ.class, CLASS_ERROR_RESPONSE);
    assert_eq!(error_code(m), Some(code));
}

/// The NONCE of a 401 answering an unauthenticated Allocate.
fn challenge(answer: &Message) -> String {
    assert_code(answer, 401);
    String::from_utf8(answer.get(ATTR_NONCE).expect("NONCE")).expect("text")
}

fn peer(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), port)
}

#[test]
fn unauthenticated_requests_past_the_bucket_get_no_answer_and_it_refills() {
    // One token a second: nothing refills while the test sends its burst.
    let server = Server::start(&config(
        "unauthenticated-rate = 1\nunauthenticated-burst = 10",
        "",
        "",
        "",
    ));
    let addr = server.udp[0];
    let honest = udp_from("127.0.0.1", addr);
    let first = udp_exchange(&honest, &allocate(None)); // token 1 of 10
    let nonce = challenge(&first);
    // An unauthenticated answer is no larger than it must be: ERROR-CODE without a reason
    // phrase, REALM, NONCE, FINGERPRINT; no SOFTWARE.
    let attr = |len: usize| 4 + len.next_multiple_of(4);
    let needed = 20 + attr(4) + attr("test.local".len()) + attr(nonce.len()) + attr(4);
    assert_eq!(first.raw.len(), needed, "{:?}", first.attributes);
    assert!(!first.contains(stun::attributes::ATTR_SOFTWARE));

    // 40 Bindings and unauthenticated Allocates from the same address, another port.
    let flood = udp_from("127.0.0.1", addr);
    for i in 0..40 {
        let m = if i % 2 == 0 {
            binding_request(&[], true)
        } else {
            allocate(None)
        };
        flood.send(&m.raw).expect("send");
    }
    // Another loopback address has its own bucket. One worker handles datagrams in order,
    // so once this is answered every one of the 40 has been handled.
    let other = udp_from("127.0.0.2", addr);
    assert_eq!(
        udp_exchange(&other, &binding_request(&[], true)).typ,
        BINDING_SUCCESS
    );
    let answered = drain(&flood);
    assert!((9..=11).contains(&answered), "{answered} of 40 answered");

    // Authenticated requests from the exhausted address are answered and do not count.
    assert_ok(&udp_exchange(&honest, &allocate(Some(&nonce))));
    let refresh = request(METHOD_REFRESH, Some(&nonce), |_| {});
    assert_ok(&udp_exchange(&honest, &refresh));
    // A signed request whose credentials are wrong is unauthenticated too: its 401 is not
    // sent (checked, again, by the order of one worker).
    let wrong = signed_with("nope", METHOD_REFRESH, Some(&nonce), |_| {});
    honest.send(&wrong.raw).expect("send");
    udp_exchange(&other, &binding_request(&[], true));
    assert_eq!(drain(&honest), 0, "the wrong password was answered");
    let text = metrics(&server);
    let limited = sample(&text, "rturn_packets_total{outcome=\"rate_limited\"}");
    assert_eq!(limited, 40 - answered as u64 + 1, "{text}");
    let bad = "rturn_auth_failures_total{reason=\"bad_integrity\"}";
    assert_eq!(
        sample(&text, bad),
        1,
        "the request was checked, then not answered"
    );
    assert!(sample(&text, "rturn_rate_limit_sources") >= 1);

    // The bucket refills: within a few seconds a Binding is answered again.
    flood
        .set_read_timeout(Some(Duration::from_millis(250)))
        .expect("timeout");
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 1500];
    loop {
        flood.send(&binding_request(&[], true).raw).expect("send");
        if flood.recv(&mut buf).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the bucket never refilled");
    }
}

/// A UDP client from 127.0.0.1 with an allocation; returns it and its nonce.
fn allocated(server: &Server) -> (UdpSocket, String, SocketAddr) {
    let client = udp_from("127.0.0.1", server.udp[0]);
    let nonce = challenge(&udp_exchange(&client, &allocate(None)));
    let answer = udp_exchange(&client, &allocate(Some(&nonce)));
    assert_ok(&answer);
    let mut relay = XorMappedAddress::default();
    relay
        .get_from_as(&answer, ATTR_XOR_RELAYED_ADDRESS)
        .expect("XOR-RELAYED-ADDRESS");
    (client, nonce, SocketAddr::new(relay.ip, relay.port))
}

#[test]
fn permissions_and_channels_past_their_caps_get_508() {
    let server = Server::start(&config(
        "",
        "max-permissions-per-allocation = 2\nmax-channels-per-allocation = 1",
        "",
        "",
    ));
    let (client, nonce, _) = allocated(&server);
    let (a, b, c) = (
        peer("127.0.0.1", 9),
        peer("127.0.0.2", 9),
        peer("127.0.0.3", 9),
    );
    let exchange = |m: Message| udp_exchange(&client, &m);
    assert_code(&exchange(permission(&nonce, &[a, b, c])), 508);
    assert_ok(&exchange(permission(&nonce, &[a, b])));
    assert_code(&exchange(permission(&nonce, &[c])), 508);
    // Refreshing what is held is not more.
    assert_ok(&exchange(permission(&nonce, &[b, a])));
    assert_ok(&exchange(channel_bind(&nonce, 0x4000, a)));
    assert_code(&exchange(channel_bind(&nonce, 0x4001, b)), 508);
    assert_ok(&exchange(channel_bind(&nonce, 0x4000, a)));

    let text = metrics(&server);
    let caps = |cap| {
        sample(
            &text,
            &format!("rturn_allocation_caps_reached_total{{cap=\"{cap}\"}}"),
        )
    };
    assert_eq!((caps("permissions"), caps("channels")), (2, 1), "{text}");
    assert_eq!(
        sample(&text, "rturn_requests_refused_total{code=\"508\"}"),
        3
    );
}

#[test]
fn max_bps_drops_what_an_allocation_sends_past_it() {
    // 10 000 bytes a second: ten 1000-byte packets at once, then one per 100 ms.
    let server = Server::start(&config("", "max-bps = 10000", "", ""));
    let echo = EchoPeer::start();
    let (client, nonce, _) = allocated(&server);
    let to_echo = peer("127.0.0.1", echo.port);
    assert_ok(&udp_exchange(
        &client,
        &channel_bind(&nonce, 0x4000, to_echo),
    ));
    let mut frame = vec![0x40, 0x00, 0x03, 0xe8];
    frame.resize(4 + 1000, 0xab);
    for _ in 0..100 {
        client.send(&frame).expect("send");
    }
    // Echoes come back within the limit of the other direction.
    let mut buf = [0u8; 1500];
    let n = client.recv(&mut buf).expect("an echo");
    assert_eq!(&buf[..4], &frame[..4], "ChannelData from the echo peer");
    assert_eq!(n, frame.len());

    // Every packet was either relayed or dropped, and counted.
    let deadline = Instant::now() + TIMEOUT;
    let (relayed, dropped, text) = loop {
        let text = metrics(&server);
        let relayed = sample(&text, "rturn_relayed_packets_total{direction=\"to_peer\"}");
        let dropped = sample(
            &text,
            "rturn_relay_dropped_packets_total{limit=\"max_bps\"}",
        );
        if relayed + dropped >= 100 || Instant::now() > deadline {
            break (relayed, dropped, text);
        }
    };
    // The burst passes; how many more the refill lets through depends on how long the
    // sending took, which is not this test's business beyond "far from all of them".
    assert!((10..=60).contains(&relayed), "{relayed} relayed\n{text}");
    assert!(dropped >= 100 - relayed, "{dropped} dropped\n{text}");
    let bytes = sample(&text, "rturn_relay_dropped_bytes_total{limit=\"max_bps\"}");
    assert_eq!(bytes, dropped * 1000);
    assert_eq!(
        sample(
            &text,
            "rturn_relay_dropped_packets_total{limit=\"bps_capacity\"}"
        ),
        0
    );
}

#[test]
fn tcp_connections_past_the_per_ip_cap_are_closed_at_accept() {
    let server = Server::start(&config("max-tcp-connections-per-ip = 2", "", "", ""));
    let tcp = server.tcp[0];
    let mut a = tcp_client_from("127.0.0.1", tcp);
    let mut b = tcp_client_from("127.0.0.1", tcp);
    assert!(binding_answered(&mut a) && binding_answered(&mut b));
    let mut third = tcp_client_from("127.0.0.1", tcp);
    assert!(
        closed_by_server(&mut third),
        "a third connection from one IP"
    );
    // Another address is not affected.
    let mut other = tcp_client_from("127.0.0.2", tcp);
    assert!(binding_answered(&mut other));
    // A closed connection gives its place back (once the server has seen the close).
    drop(a);
    let deadline = Instant::now() + TIMEOUT;
    let mut refused = 1;
    while !binding_answered(&mut tcp_client_from("127.0.0.1", tcp)) {
        refused += 1;
        assert!(Instant::now() < deadline, "the place never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(binding_answered(&mut b));
    let text = metrics(&server);
    let counted = sample(
        &text,
        "rturn_tcp_connections_total{event=\"refused_per_ip\"}",
    );
    assert_eq!(counted, refused, "{text}");
}

/// A TCP connection from 127.0.0.1 with an allocation; returns it and its nonce.
fn tcp_allocated(server: &Server) -> (TcpStream, String) {
    let mut stream = tcp_client_from("127.0.0.1", server.tcp[0]);
    let nonce = challenge(&tcp_exchange(&mut stream, &allocate(None)));
    assert_ok(&tcp_exchange(&mut stream, &allocate(Some(&nonce))));
    (stream, nonce)
}

#[test]
fn tcp_connections_without_an_allocation_are_closed_after_the_timeout() {
    // The idle timeout is far away: only the allocation timeout can close these.
    let server = Server::start(&config(
        "tcp-allocation-timeout = \"1s\"\ntcp-idle-timeout = \"60s\"",
        "",
        "",
        "",
    ));
    let (mut holder, nonce) = tcp_allocated(&server);
    // A chatty connection that never allocates: answered, then closed.
    let mut chatty = tcp_client_from("127.0.0.1", server.tcp[0]);
    let deadline = Instant::now() + TIMEOUT;
    let mut answered = 0;
    while binding_answered(&mut chatty) {
        answered += 1;
        assert!(Instant::now() < deadline, "never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(answered >= 1);
    // The connection holding an allocation, older than the chatty one, is still served.
    let refresh = request(METHOD_REFRESH, Some(&nonce), |_| {});
    assert_ok(&tcp_exchange(&mut holder, &refresh));
    let text = metrics(&server);
    let closed = "rturn_tcp_connections_total{event=\"allocation_timeout\"}";
    assert_eq!(sample(&text, closed), 1, "{text}");

    // Once its allocation is gone, it is closed too.
    let delete = request(METHOD_REFRESH, Some(&nonce), |m| {
        m.add(stun::attributes::ATTR_LIFETIME, &0u32.to_be_bytes())
    });
    assert_ok(&tcp_exchange(&mut holder, &delete));
    assert!(
        closed_by_server(&mut holder),
        "closed after its allocation ended"
    );
    assert_eq!(sample(&metrics(&server), closed), 2);
}

#[test]
fn tls_clients_that_never_finish_the_handshake_are_closed() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = test_certificate(dir.path());
    let server = Server::start(&config(
        "tls-handshake-timeout = \"500ms\"",
        "",
        "tls = [\"127.0.0.1:0\"]",
        &tls,
    ));
    let addr = server.tls[0];
    // One says nothing; one starts a ClientHello and stops.
    let mut silent = tcp_client_from("127.0.0.1", addr);
    let mut stalled = tcp_client_from("127.0.0.1", addr);
    stalled
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .expect("write");
    assert!(closed_by_server(&mut silent), "silent client");
    assert!(closed_by_server(&mut stalled), "stalled client");
    let text = metrics(&server);
    let closed = "rturn_tcp_connections_total{event=\"handshake_timeout\"}";
    assert_eq!(sample(&text, closed), 2, "{text}");
}
