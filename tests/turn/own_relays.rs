//! Two clients of one server relay to each other on the default peer rules, although the relay
//! address is loopback: a peer that is one of rturn's own live relay endpoints is allowed
//! whatever its address class (#17). Every other address of that host stays refused: another
//! port, a port once live but released, and an operator's `denied-peer-ip`.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rturn::testkit::Server;
use rturn::testkit::raw_turn::{RawTurn, Relayed};

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

const WAIT: Duration = Duration::from_millis(1500);

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
}

#[test]
fn other_ports_of_the_relay_address_stay_refused() {
    let server = start("");
    let mut a = client(&server);
    let b = client(&server);
    // A loopback socket that is not a relay: a permission for B's relay (the same IP) must
    // not open it.
    let bystander = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
    bystander.set_read_timeout(Some(WAIT)).expect("a timeout");
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
}

#[test]
fn an_operator_denial_wins_over_own_relays() {
    let server = start("denied-peer-ip = [\"127.0.0.1\"]\n");
    let mut a = client(&server);
    let b = client(&server);
    assert_eq!(a.create_permission(b.relays[0]), 403);
}
