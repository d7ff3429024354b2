//! Black-box: the built binary answers STUN Binding over UDP and TCP, to clients we did not
//! write (coturn's turnutils_stunclient) and to raw sockets, and survives malformed input.

use std::io::Write;
use std::process::Command;

use rturn::testkit::*;
use stun::attributes::{ATTR_ERROR_CODE, ATTR_FINGERPRINT, ATTR_SOFTWARE};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{BINDING_ERROR, BINDING_SUCCESS, Getter};
use stun::uattrs::UnknownAttributes;

/// coturn's `turnutils_stunclient` against `server`'s first UDP listener: it succeeds and
/// reports a loopback reflexive address.
pub(crate) fn assert_stunclient_maps(server: &Server) {
    let port = server.udp[0].port().to_string();
    let out = Command::new("timeout")
        .args(["10", "turnutils_stunclient", "-p", &port, "127.0.0.1"])
        .output()
        .expect("turnutils_stunclient is missing: install coturn (scripts/test.sh does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stunclient failed: {stdout}\n{}",
        server.log()
    );
    assert!(
        stdout.contains("UDP reflexive addr: 127.0.0.1:"),
        "no mapped address in: {stdout}"
    );
}

#[test]
fn coturn_stunclient_gets_its_mapped_address_over_udp() {
    assert_stunclient_maps(&Server::start(&loopback_config("")));
}

#[test]
fn udp_binding_maps_the_source_and_echoes_fingerprint() {
    let server = Server::start(&loopback_config(""));
    let client = udp_client(server.udp[0]);
    let request = binding_request(&[], true);
    let response = udp_exchange(&client, &request);
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert_eq!(mapped_address(&response), client.local_addr().unwrap());
    assert!(response.contains(ATTR_FINGERPRINT));
    assert!(!response.contains(ATTR_SOFTWARE));

    let response = udp_exchange(&client, &binding_request(&[], false));
    assert!(
        !response.contains(ATTR_FINGERPRINT),
        "no FINGERPRINT unless asked"
    );
}

#[test]
fn tcp_binding_maps_the_source_and_frames_pipelined_requests() {
    let server = Server::start(&loopback_config(""));
    let mut stream = tcp_client(server.tcp[0]);
    let request = binding_request(&[], true);
    let response = tcp_exchange(&mut stream, &request);
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert_eq!(mapped_address(&response), stream.local_addr().unwrap());

    // Two requests in one write, then one request dribbled a byte at a time.
    let (a, b) = (binding_request(&[], false), binding_request(&[], true));
    stream
        .write_all(&[a.raw.clone(), b.raw.clone()].concat())
        .unwrap();
    decode_response(&a, &read_stun(&mut stream));
    decode_response(&b, &read_stun(&mut stream));
    let c = binding_request(&[], true);
    for byte in &c.raw {
        stream.write_all(&[*byte]).unwrap();
    }
    decode_response(&c, &read_stun(&mut stream));
}

#[test]
fn ipv6_binding_over_udp_and_tcp() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; nothing to test");
        return;
    }
    let config = "realm = \"t\"\n[listen]\nudp = [\"[::1]:0\"]\ntcp = [\"[::1]:0\"]\n";
    let server = Server::start(config);
    let client = udp_client(server.udp[0]);
    let response = udp_exchange(&client, &binding_request(&[], true));
    assert_eq!(mapped_address(&response), client.local_addr().unwrap());
    let mut stream = tcp_client(server.tcp[0]);
    let response = tcp_exchange(&mut stream, &binding_request(&[], true));
    assert_eq!(mapped_address(&response), stream.local_addr().unwrap());
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let server = Server::start(&loopback_config(""));
    let client = udp_client(server.udp[0]);
    let request = binding_request(&[(0x7ff0, b"??"), (0x0003, &[0, 0, 0, 4])], true);
    let response = udp_exchange(&client, &request);
    assert_eq!(response.typ, BINDING_ERROR);
    let mut code = ErrorCodeAttribute::default();
    code.get_from(&response).unwrap();
    assert_eq!(code.code.0, 420);
    assert!(code.reason.is_empty(), "no reason phrase by default");
    let mut unknown = UnknownAttributes(Vec::new());
    unknown.get_from(&response).unwrap();
    let types: Vec<u16> = unknown.0.iter().map(|t| t.0).collect();
    assert_eq!(types, [0x7ff0, 0x0003]);
    assert!(response.contains(ATTR_FINGERPRINT));

    // Comprehension-optional attributes (0x8000 and up) are ignored.
    let request = binding_request(&[(0xc0de, b"fine")], false);
    let response = udp_exchange(&client, &request);
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert!(!response.contains(ATTR_ERROR_CODE));
}

#[test]
fn malformed_datagrams_never_stop_the_next_answer() {
    let server = Server::start(&loopback_config(""));
    let client = udp_client(server.udp[0]);
    let valid = binding_request(&[(0x8022, b"client")], true);
    let mut lying = valid.raw.clone();
    lying[3] = lying[3].wrapping_add(40); // length field says more than was sent
    let mut bad_crc = valid.raw.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x00],
        valid.raw[..19].to_vec(), // truncated header
        valid.raw[..24].to_vec(), // truncated attribute
        lying,
        bad_crc,
        vec![0xff; 1200],
        [valid.raw.clone(), vec![0; 8]].concat(), // trailing garbage
    ];
    cases.extend((0..200).map(|seed| noise(seed, (seed as usize * 7) % 600)));
    for case in &cases {
        client.send(case).unwrap();
        // After every bad datagram, a good one is still answered.
        let request = binding_request(&[], true);
        let response = udp_exchange(&client, &request);
        assert_eq!(response.typ, BINDING_SUCCESS);
    }
}

#[test]
fn broken_tcp_framing_closes_only_that_connection() {
    let server = Server::start(&loopback_config(""));
    let tcp = server.tcp[0];
    let mut bystander = tcp_client(tcp);
    tcp_exchange(&mut bystander, &binding_request(&[], false));

    // A TLS ClientHello on the plain TCP port: not STUN, not ChannelData.
    let mut broken = tcp_client(tcp);
    broken
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x2c, 1, 0, 0, 0x28])
        .unwrap();
    assert!(
        closed_by_server(&mut broken),
        "broken framing must close the stream"
    );

    // A wrong magic cookie after one good request: answered, then closed.
    let mut cookie = tcp_client(tcp);
    let good = binding_request(&[], false);
    let mut bad = binding_request(&[], false).raw;
    bad[4] = 0;
    cookie.write_all(&[good.raw.clone(), bad].concat()).unwrap();
    decode_response(&good, &read_stun(&mut cookie));
    assert!(closed_by_server(&mut cookie));

    // A header whose length field promises bytes that never come: the server waits on that
    // connection (until its idle timeout) without blocking anyone else.
    let mut stalled = tcp_client(tcp);
    let mut header = binding_request(&[], false).raw;
    header[2..4].copy_from_slice(&1000u16.to_be_bytes());
    stalled.write_all(&header).unwrap();

    // A well-framed message whose content is bad (wrong FINGERPRINT) is dropped, the stream
    // stays usable.
    let mut crc = tcp_client(tcp);
    let mut bad_crc = binding_request(&[], true).raw;
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    crc.write_all(&bad_crc).unwrap();
    tcp_exchange(&mut crc, &binding_request(&[], true));

    tcp_exchange(&mut bystander, &binding_request(&[], true));
    tcp_exchange(&mut tcp_client(tcp), &binding_request(&[], true));
    let client = udp_client(server.udp[0]);
    assert_eq!(
        udp_exchange(&client, &binding_request(&[], true)).typ,
        BINDING_SUCCESS
    );
    drop(stalled);
}

#[test]
fn idle_tcp_connections_are_closed() {
    let mut server = Server::start(&loopback_config("[server]\ntcp-idle-timeout = \"1s\"\n"));
    let mut idle = tcp_client(server.tcp[0]);
    assert!(
        closed_by_server(&mut idle),
        "idle connection should be closed"
    );
    let stopped = {
        assert!(server.terminate().success());
        server.wait_line(|l| l.contains("stopped"))
    };
    assert!(stopped.contains("tcp_accepted=1"), "{stopped}");
}

#[test]
fn sigterm_stops_gracefully_and_reports_counts() {
    let mut server = Server::start(&loopback_config(""));
    let client = udp_client(server.udp[0]);
    udp_exchange(&client, &binding_request(&[], true));
    client.send(&[0xde, 0xad]).unwrap();
    client.send(&noise(7, 100)).unwrap();
    // A final exchange so both bad datagrams were read before the signal.
    udp_exchange(&client, &binding_request(&[], true));
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let stopped = server.wait_line(|l| l.contains("stopped"));
    assert!(stopped.contains("malformed=2"), "{stopped}");
    assert!(stopped.contains("replied=2"), "{stopped}");
}

#[test]
fn workers_share_one_port_with_reuseport() {
    let server = Server::start(&loopback_config("[server]\nworkers = 3\n"));
    assert!(server.log().contains("(3 sockets)"), "{}", server.log());
    // Many source ports spread over the three sockets; every one is answered.
    for _ in 0..30 {
        let client = udp_client(server.udp[0]);
        let response = udp_exchange(&client, &binding_request(&[], true));
        assert_eq!(mapped_address(&response), client.local_addr().unwrap());
    }
}
