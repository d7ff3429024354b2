//! Black-box: RFC 5780 NAT behaviour discovery with `[stun] other-address` on 127.0.0.2:
//! coturn's turnutils_natdiscovery finds mapping and filtering behaviour, and raw sockets see
//! CHANGE-REQUEST answered from the socket it names, RESPONSE-PORT answered at the port it
//! names, and PADDING that never makes an answer larger than its request.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;

use rturn::testkit::*;
use stun::addr::MappedAddress;
use stun::attributes::{
    ATTR_CHANGE_REQUEST, ATTR_OTHER_ADDRESS, ATTR_PADDING, ATTR_RESPONSE_ORIGIN,
    ATTR_RESPONSE_PORT, AttrType,
};
use stun::message::{BINDING_ERROR, BINDING_SUCCESS, Message};

/// rturn with RFC 5780 on: primary 127.0.0.1:P, other 127.0.0.2:Q.
fn start() -> (Server, SocketAddr, SocketAddr) {
    // The server binds both ports on both addresses.
    let mut free_on_both = (0..100)
        .map(|_| free_port())
        .filter(|&p| UdpSocket::bind(("127.0.0.2", p)).is_ok());
    let p = free_on_both.next().expect("a free port");
    let q = free_on_both.next().expect("a second free port");
    let config = format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:{p}\"]\ntcp = [\"127.0.0.1:{p}\"]\n\
         [stun]\nother-address = \"127.0.0.2:{q}\"\n"
    );
    let server = Server::start(&config);
    let primary: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
    let other: SocketAddr = format!("127.0.0.2:{q}").parse().unwrap();
    assert!(
        server.udp.contains(&other) && server.udp.len() == 4,
        "the four sockets: {:?}",
        server.udp
    );
    (server, primary, other)
}

fn address(m: &Message, typ: AttrType) -> SocketAddr {
    let mut a = MappedAddress::default();
    a.get_from_as(m, typ).expect("an address attribute");
    SocketAddr::new(a.ip, a.port)
}

/// Sends `request` from `socket` to `to`; the answer and where it came from.
fn exchange(socket: &UdpSocket, to: SocketAddr, request: &Message) -> (Message, SocketAddr) {
    socket.send_to(&request.raw, to).expect("send");
    let mut buf = [0u8; 2048];
    let (n, from) = socket
        .recv_from(&mut buf)
        .expect("an answer within the timeout");
    (decode_response(request, &buf[..n]), from)
}

fn unconnected() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s
}

#[test]
fn coturn_natdiscovery_finds_mapping_and_filtering_behaviour() {
    let (server, primary, other) = start();
    let out = Command::new("timeout")
        .args(["20", "turnutils_natdiscovery", "-m", "-f", "-p"])
        .arg(primary.port().to_string())
        .arg("127.0.0.1")
        .output()
        .expect("turnutils_natdiscovery is missing: install coturn (scripts/test.sh does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", server.log());
    assert!(out.status.success(), "natdiscovery failed: {report}");
    assert!(
        stdout.contains("NAT with Endpoint Independent Mapping!"),
        "{report}"
    );
    assert!(
        stdout.contains("NAT with Endpoint Independent Filtering!"),
        "{report}"
    );
    assert!(
        stdout.contains(&format!("Other addr: : {other}")),
        "{report}"
    );
    // The filtering test's change-IP-and-port answer came from the other address.
    assert!(
        stdout.contains(&format!("Response origin: : {other}")),
        "{report}"
    );
}

#[test]
fn change_request_answers_from_the_socket_it_names() {
    let (_server, primary, other) = start();
    let socket = unconnected();
    let cases = [
        (0u8, primary),
        (2, SocketAddr::new(primary.ip(), other.port())),
        (4, SocketAddr::new(other.ip(), primary.port())),
        (6, other),
    ];
    for (flags, expected) in cases {
        let flags = [0, 0, 0, flags];
        let request = binding_request(&[(ATTR_CHANGE_REQUEST.0, &flags)], true);
        let (response, from) = exchange(&socket, primary, &request);
        assert_eq!(response.typ, BINDING_SUCCESS, "flags {flags:?}");
        assert_eq!(from, expected, "flags {flags:?}: the answer's source");
        assert_eq!(address(&response, ATTR_RESPONSE_ORIGIN), expected);
        assert_eq!(address(&response, ATTR_OTHER_ADDRESS), other);
        assert_eq!(mapped_address(&response), socket.local_addr().unwrap());
    }
    // Sent to the other address, OTHER-ADDRESS names the primary.
    let request = binding_request(&[], true);
    let (response, from) = exchange(&socket, other, &request);
    assert_eq!(from, other);
    assert_eq!(address(&response, ATTR_OTHER_ADDRESS), primary);
}

#[test]
fn response_port_and_padding() {
    let (_server, primary, _) = start();
    let (asker, receiver) = (unconnected(), unconnected());
    let port = receiver.local_addr().unwrap().port().to_be_bytes();
    let request = binding_request(&[(ATTR_RESPONSE_PORT.0, &[port[0], port[1], 0, 0])], true);
    asker.send_to(&request.raw, primary).expect("send");
    let mut buf = [0u8; 2048];
    let (n, from) = receiver
        .recv_from(&mut buf)
        .expect("the answer at RESPONSE-PORT");
    assert_eq!(from, primary);
    let response = decode_response(&request, &buf[..n]);
    // XOR-MAPPED-ADDRESS is still the request's source, not where the answer went.
    assert_eq!(mapped_address(&response), asker.local_addr().unwrap());

    let padding = [0u8; 512];
    let request = binding_request(&[(ATTR_PADDING.0, &padding)], true);
    let (response, _) = exchange(&asker, primary, &request);
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert!(response.contains(ATTR_PADDING));
    assert!(
        response.raw.len() <= request.raw.len() && response.raw.len() > 400,
        "padded to at most the request's {} bytes: {}",
        request.raw.len(),
        response.raw.len()
    );

    // A RESPONSE-PORT of 0 is malformed; over TCP CHANGE-REQUEST is not understood (420).
    let request = binding_request(&[(ATTR_RESPONSE_PORT.0, &[0, 0, 0, 0])], true);
    let (response, _) = exchange(&asker, primary, &request);
    assert_eq!(
        (response.typ, error_code(&response)),
        (BINDING_ERROR, Some(400))
    );
    let mut stream = tcp_client(primary);
    let request = binding_request(&[(ATTR_CHANGE_REQUEST.0, &[0, 0, 0, 6])], true);
    let response = tcp_exchange(&mut stream, &request);
    assert_eq!(error_code(&response), Some(420));
}
