//! Two clients of one server relay to each other on the default peer rules, although the relay
//! address is loopback: a peer that is one of rturn's own live relay endpoints (at its
//! `relay-ip` or its `external-ip`) is allowed whatever its address class, and its data is
//! handed to that allocation inside the process, across workers too (#17):
//! `rturn_relay_handoff_total` counts it, and with an `external-ip` that is not on this
//! machine it still arrives. The receiving allocation still needs its own permission. Every
//! other address of that host stays refused: another port, a port once live but released, a
//! reserved port no allocation holds, and an operator's `denied-peer-ip`.
//!
//! The servers run the default number of workers, so an allocation may live on any of them;
//! a client over TCP is handed data like one over UDP.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rturn::client::Request;
use rturn::testkit::raw_turn::{RawTurn, Relayed};
use rturn::testkit::{
    Server, alice, error_code, read_stun, tcp_client, tcp_exchange, turn_request,
};
use stun::attributes::{
    ATTR_DATA, ATTR_NONCE, ATTR_REQUESTED_TRANSPORT, ATTR_XOR_PEER_ADDRESS,
    ATTR_XOR_RELAYED_ADDRESS,
};
use stun::message::{
    CLASS_INDICATION, METHOD_ALLOCATE, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_SEND, Message,
    MessageType,
};
use stun::xoraddr::XorMappedAddress;

fn start(extra: &str) -> Server {
    Server::start(&format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\n{extra}\
         [auth.users]\nalice = \"wonderland\"\n"
    ))
}

fn client(server: &Server) -> RawTurn {
    RawTurn::allocate(server.udp[0], "alice", "wonderland", false)
}

/// Long enough for what must arrive, on a loaded machine too.
const WAIT: Duration = Duration::from_secs(5);
/// Long enough for a datagram that would arrive to arrive.
const NOTHING: Duration = Duration::from_millis(300);

fn handoffs(server: &Server, result: &str) -> f64 {
    server.metric(&format!("rturn_relay_handoff_total{{result=\"{result}\"}}"))
}

fn data(peer: SocketAddr, data: &[u8]) -> Option<Relayed> {
    Some(Relayed::Data {
        peer,
        data: data.to_vec(),
    })
}

#[test]
fn clients_of_one_server_relay_to_each_other_on_the_default_rules() {
    let server = start("");
    let (mut a, mut b) = (client(&server), client(&server));
    let (ra, rb) = (a.relays[0], b.relays[0]);
    assert!(ra.ip().is_loopback() && rb.ip().is_loopback());
    assert_eq!(
        a.create_permission(rb),
        0,
        "A may reach B's live relay address"
    );
    assert_eq!(
        b.create_permission(ra),
        0,
        "B may reach A's live relay address"
    );

    a.send_indication(rb, b"a to b");
    assert_eq!(
        b.next_relayed(WAIT),
        Some(Relayed::Data {
            peer: ra,
            data: b"a to b".to_vec()
        })
    );
    assert_eq!(b.channel_bind(0x4001, ra), 0);
    b.channel_data(0x4001, b"b to a");
    assert_eq!(
        a.next_relayed(WAIT),
        Some(Relayed::Data {
            peer: rb,
            data: b"b to a".to_vec()
        })
    );
    // Both went inside the process, not through the kernel.
    assert_eq!(handoffs(&server, "delivered"), 2.0);
}

#[test]
fn a_ring_of_clients_relays_across_workers() {
    // Six clients, each sending to the next: with two or more workers, a neighbour on another
    // worker is all but certain (the kernel spreads the clients' sockets), and each pair is
    // checked whatever worker holds it.
    let server = start("");
    let mut ring: Vec<RawTurn> = (0..6).map(|_| client(&server)).collect();
    let relays: Vec<SocketAddr> = ring.iter().map(|c| c.relays[0]).collect();
    let n = ring.len();
    for (i, c) in ring.iter_mut().enumerate() {
        assert_eq!(c.create_permission(relays[(i + 1) % n]), 0);
        assert_eq!(c.create_permission(relays[(i + n - 1) % n]), 0);
        assert_eq!(c.channel_bind(0x4000, relays[(i + 1) % n]), 0);
    }
    for round in 0..3u8 {
        for (i, c) in ring.iter().enumerate() {
            c.channel_data(0x4000, &[round, i as u8]);
        }
        for (i, c) in ring.iter_mut().enumerate() {
            let from = (i + n - 1) % n;
            assert_eq!(
                c.next_relayed(WAIT),
                data(relays[from], &[round, from as u8]),
                "client {i}, round {round}"
            );
        }
    }
    assert_eq!(handoffs(&server, "delivered"), 18.0);
    assert_eq!(handoffs(&server, "full") + handoffs(&server, "gone"), 0.0);
}

#[test]
fn an_external_ip_not_on_this_machine_is_handed_over_too() {
    // 203.0.113.9 (TEST-NET-3) is advertised but nowhere on this machine: without the
    // hand-off the data would go to it. It cannot: a socket on the loopback relay address
    // has no route off the machine (the kernel refuses a loopback source), checked first
    // with a connect, which sends nothing.
    let external: SocketAddr = "203.0.113.9:9".parse().expect("an address");
    let probe = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
    assert!(
        probe.connect(external).is_err(),
        "a loopback socket could reach {external}: this test must not run here"
    );
    let server = start("external-ip = \"203.0.113.9\"\n");
    let (mut a, mut b) = (client(&server), client(&server));
    let (ra, rb) = (a.relays[0], b.relays[0]);
    assert_eq!(
        (ra.ip(), rb.ip()),
        (external.ip(), external.ip()),
        "advertised"
    );
    assert_eq!(a.create_permission(rb), 0);
    assert_eq!(b.create_permission(ra), 0);

    a.send_indication(rb, b"to the external address");
    assert_eq!(b.next_relayed(WAIT), data(ra, b"to the external address"));
    assert_eq!(b.channel_bind(0x4001, ra), 0);
    b.channel_data(0x4001, b"and back");
    assert_eq!(a.next_relayed(WAIT), data(rb, b"and back"));
    // The relay-ip spelling of a relay reaches the same allocation, which sees the sender's
    // advertised address: B's channel to it applies.
    let rb_bound = SocketAddr::new("127.0.0.1".parse().expect("loopback"), rb.port());
    assert_eq!(a.create_permission(rb_bound), 0);
    a.send_indication(rb_bound, b"to the bound address");
    assert_eq!(
        b.next_relayed(WAIT),
        Some(Relayed::Channel {
            channel: 0x4001,
            data: b"to the bound address".to_vec()
        })
    );
    assert_eq!(handoffs(&server, "delivered"), 3.0);
}

#[test]
fn the_receiver_needs_its_own_permission() {
    let server = start("");
    let (mut a, mut b) = (client(&server), client(&server));
    let (ra, rb) = (a.relays[0], b.relays[0]);
    assert_eq!(a.create_permission(rb), 0);
    a.send_indication(rb, b"not yet");
    assert_eq!(b.next_relayed(NOTHING), None, "B has no permission for A");
    assert_eq!(handoffs(&server, "refused"), 1.0);
    assert_eq!(b.create_permission(ra), 0);
    a.send_indication(rb, b"now");
    assert_eq!(b.next_relayed(WAIT), data(ra, b"now"));
    assert_eq!(handoffs(&server, "delivered"), 1.0);
}

#[test]
fn other_ports_of_the_relay_address_stay_refused() {
    let server = start("");
    let mut a = client(&server);
    let b = client(&server);
    // A loopback socket that is not a relay: a permission for B's relay (the same IP) must
    // not open it.
    let bystander = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
    bystander
        .set_read_timeout(Some(NOTHING))
        .expect("a timeout");
    let target: SocketAddr = bystander.local_addr().expect("its address");
    assert_eq!(
        a.create_permission(target),
        403,
        "not a relay endpoint: refused as before"
    );
    assert_eq!(a.create_permission(b.relays[0]), 0);
    assert_eq!(
        a.channel_bind(0x4002, target),
        403,
        "ChannelBind checks the exact address"
    );
    a.send_indication(target, b"should not arrive");
    let mut buf = [0u8; 64];
    assert!(
        bystander.recv_from(&mut buf).is_err(),
        "a Send to another loopback port was relayed"
    );
    assert!(server.metric("rturn_requests_refused_total{code=\"403\"}") >= 2.0);
}

#[test]
fn a_released_relay_port_is_refused_again() {
    let server = start("");
    let mut a = client(&server);
    let mut b = client(&server);
    let rb = b.relays[0];
    assert_eq!(a.create_permission(rb), 0);
    assert_eq!(a.channel_bind(0x4003, rb), 0);
    // B leaves: its port is no longer one of ours.
    assert_eq!(b.request(&rturn::client::Request::refresh(0)).error, None);
    drop(b);
    assert_eq!(
        a.channel_bind(0x4004, rb),
        403,
        "a released port is a plain loopback address again"
    );
    // The channel bound while it was live carries nothing any more.
    a.channel_data(0x4003, b"to a released port");
    assert_eq!(a.create_permission(rb), 403);
    assert_eq!(handoffs(&server, "delivered"), 0.0);
}

#[test]
fn a_reserved_port_no_allocation_holds_is_refused() {
    let server = start("");
    let mut a = client(&server);
    let even = Request::allocate().even_port(true);
    let c = RawTurn::try_allocate_with(server.udp[0], "alice", "wonderland", &even)
        .expect("an EVEN-PORT Allocate");
    let reserved = SocketAddr::new(c.relays[0].ip(), c.relays[0].port() + 1);
    assert_eq!(
        a.create_permission(c.relays[0]),
        0,
        "the allocated port is live"
    );
    assert_eq!(
        a.create_permission(reserved),
        403,
        "reserved, but no allocation holds it yet"
    );
}

#[test]
fn an_operator_denial_wins_over_own_relays() {
    let server = start("denied-peer-ip = [\"127.0.0.1\"]\n");
    let mut a = client(&server);
    let b = client(&server);
    assert_eq!(a.create_permission(b.relays[0]), 403);
}

#[test]
fn a_tcp_client_and_a_udp_client_relay_to_each_other() {
    let server = start("");
    let mut udp = client(&server);
    let mut tcp = tcp_client(server.tcp[0]);
    let signed = |method, nonce: Option<&str>, add: &dyn Fn(&mut Message)| {
        turn_request(method, nonce.map(alice), add)
    };
    let peer = |addr: SocketAddr| {
        move |m: &mut Message| {
            let attr = XorMappedAddress {
                ip: addr.ip(),
                port: addr.port(),
            };
            attr.add_to_as(m, ATTR_XOR_PEER_ADDRESS).expect("peer");
        }
    };
    let udp_relay = udp.relays[0];
    // Allocate over TCP (after the 401 that brings the nonce) and permit the UDP client's relay.
    let udp_transport = |m: &mut Message| m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let challenge = tcp_exchange(&mut tcp, &signed(METHOD_ALLOCATE, None, &udp_transport));
    let nonce = String::from_utf8(challenge.get(ATTR_NONCE).expect("a nonce")).expect("text");
    let allocate = signed(METHOD_ALLOCATE, Some(&nonce), &udp_transport);
    let answer = tcp_exchange(&mut tcp, &allocate);
    let mut relayed = XorMappedAddress::default();
    relayed
        .get_from_as(&answer, ATTR_XOR_RELAYED_ADDRESS)
        .expect("a relayed address");
    let tcp_relay = SocketAddr::new(relayed.ip, relayed.port);
    let permit = signed(METHOD_CREATE_PERMISSION, Some(&nonce), &peer(udp_relay));
    assert_eq!(error_code(&tcp_exchange(&mut tcp, &permit)), None);
    assert_eq!(udp.create_permission(tcp_relay), 0);

    // UDP client → the TCP client's relay: a Data indication on the TCP connection.
    udp.send_indication(tcp_relay, b"to tcp");
    let frame = read_stun(&mut tcp);
    let mut indication = Message::new();
    indication.unmarshal_binary(&frame).expect("a STUN message");
    let typ = (indication.typ.method, indication.typ.class);
    assert_eq!(typ, (METHOD_DATA, CLASS_INDICATION));
    let mut from = XorMappedAddress::default();
    (from.get_from_as(&indication, ATTR_XOR_PEER_ADDRESS)).expect("the peer");
    assert_eq!(SocketAddr::new(from.ip, from.port), udp_relay);
    assert_eq!(indication.get(ATTR_DATA).expect("data"), b"to tcp");

    // TCP client → the UDP client's relay.
    let mut send = Message::new();
    send.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
    send.new_transaction_id().expect("a transaction id");
    send.write_header();
    peer(udp_relay)(&mut send);
    send.add(ATTR_DATA, b"to udp");
    tcp.write_all(&send.raw).expect("write");
    assert_eq!(udp.next_relayed(WAIT), data(tcp_relay, b"to udp"));
    assert_eq!(handoffs(&server, "delivered"), 2.0);
}
