//! Black-box: rturn behind a load balancer speaking the PROXY protocol
//! (`[listen] proxy-protocol-from`). The "load balancer" is a client bound to 127.0.0.3, the
//! only trusted address; the clients it speaks for are TEST-NET addresses it merely claims
//! (replies go back on the socket, so nothing is ever sent to them). Every other loopback
//! address is an untrusted client, served as itself (the `/metrics` scrapes among them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rturn::testkit::*;
use rustls::pki_types::ServerName;
use stun::attributes::{ATTR_NONCE, ATTR_REQUESTED_TRANSPORT};
use stun::message::{CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, Message};

/// The load balancer's address, the one `proxy-protocol-from` trusts.
const BALANCER: &str = "127.0.0.3";

/// The default worker count; TCP and HTTP on loopback (and `listen` added), 127.0.0.3 trusted; `server`
/// goes into `[server]`, `more` at the end.
fn config(server: &str, listen: &str, more: &str) -> String {
    format!(
        "realm = \"test.local\"\n[server]\n{server}\n\
         [listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         proxy-protocol-from = [\"{BALANCER}/32\"]\n{listen}\n\
         [relay]\nrelay-ip = \"127.0.0.1\"\n[auth.users]\nalice = \"wonderland\"\n{more}"
    )
}

/// A v1 line naming `client` (IPv4).
fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    format!(
        "PROXY TCP4 {} 127.0.0.1 {} 3478\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

/// A v2 PROXY header naming `client` (IPv4), with a TLV the server must skip.
fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let std::net::IpAddr::V4(ip) = client.ip() else {
        panic!("IPv4 only")
    };
    let mut body = ip.octets().to_vec();
    body.extend_from_slice(&[127, 0, 0, 1]);
    body.extend_from_slice(&client.port().to_be_bytes());
    body.extend_from_slice(&3478u16.to_be_bytes());
    body.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]); // PP2_TYPE_NOOP
    let mut out = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A TCP connection from the load balancer to `server` that first sends `header`.
fn through_balancer(server: SocketAddr, header: &[u8]) -> TcpStream {
    let mut stream = tcp_client_from(BALANCER, server);
    stream.write_all(header).unwrap();
    stream
}

/// The XOR-MAPPED-ADDRESS a Binding over `stream` gets back.
fn binding_mapped(stream: &mut (impl Read + Write)) -> SocketAddr {
    let request = binding_request(&[], true);
    mapped_address(&tcp_exchange(stream, &request))
}

/// Allocates over `stream` as alice; the success response.
fn allocated(stream: &mut TcpStream) -> Message {
    let udp = |m: &mut Message| m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let challenge = tcp_exchange(stream, &turn_request(METHOD_ALLOCATE, None, udp));
    assert_eq!(error_code(&challenge), Some(401));
    let nonce = String::from_utf8(challenge.get(ATTR_NONCE).unwrap()).unwrap();
    let answer = tcp_exchange(
        stream,
        &turn_request(METHOD_ALLOCATE, Some(alice(&nonce)), udp),
    );
    assert_eq!(
        answer.typ.class,
        CLASS_SUCCESS_RESPONSE,
        "{:?}",
        error_code(&answer)
    );
    answer
}

fn outcome(server: &Server, outcome: &str) -> f64 {
    server.metric(&format!(
        "rturn_proxy_protocol_total{{outcome=\"{outcome}\"}}"
    ))
}

#[test]
fn the_client_a_header_names_is_the_one_binding_and_allocate_see() {
    let server = Server::start(&config("", "", ""));
    let tcp = server.tcp[0];
    let mut first = through_balancer(tcp, &v1("198.51.100.7:4242"));
    assert_eq!(
        binding_mapped(&mut first),
        "198.51.100.7:4242".parse().unwrap()
    );
    assert_eq!(
        mapped_address(&allocated(&mut first)),
        "198.51.100.7:4242".parse().unwrap()
    );
    let mut second = through_balancer(tcp, &v2("203.0.113.9:5000"));
    assert_eq!(
        binding_mapped(&mut second),
        "203.0.113.9:5000".parse().unwrap()
    );
    assert_eq!(
        mapped_address(&allocated(&mut second)),
        "203.0.113.9:5000".parse().unwrap()
    );
    // A health check (LOCAL) is the load balancer itself.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let mut check = through_balancer(tcp, local);
    let own = check.local_addr().unwrap();
    assert_eq!(binding_mapped(&mut check), own);
    // A client the load balancer does not stand in front of is served as itself.
    let mut direct = tcp_client_from("127.0.0.2", tcp);
    let own = direct.local_addr().unwrap();
    assert_eq!(binding_mapped(&mut direct), own);
    assert_eq!(outcome(&server, "accepted_v1"), 1.0);
    assert_eq!(outcome(&server, "accepted_v2"), 2.0);
}

#[test]
fn a_header_from_an_untrusted_address_or_none_from_the_balancer_is_refused() {
    let server = Server::start(&config("", "", ""));
    let tcp = server.tcp[0];
    for header in [v1("198.51.100.7:4242"), v2("198.51.100.7:4242")] {
        let mut spoofer = tcp_client_from("127.0.0.2", tcp);
        spoofer.write_all(&header).unwrap();
        assert!(closed_by_server(&mut spoofer), "an untrusted header");
    }
    let mut bare = tcp_client_from(BALANCER, tcp);
    assert!(
        !binding_answered(&mut bare),
        "the balancer without a header"
    );
    let mut broken = through_balancer(tcp, b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 1\r\n");
    assert!(closed_by_server(&mut broken), "a bad port");
    assert_eq!(outcome(&server, "refused_untrusted"), 2.0);
    assert_eq!(outcome(&server, "refused_missing"), 1.0);
    assert_eq!(outcome(&server, "refused_malformed"), 1.0);
    assert_eq!(outcome(&server, "accepted_v1"), 0.0);
    // One client's address and port named twice at once: the second connection must not
    // take the first one's 5-tuple (and with it its allocation); it is closed.
    let mut first = through_balancer(tcp, &v1("198.51.100.7:4242"));
    assert!(binding_answered(&mut first));
    let mut twin = through_balancer(tcp, &v2("198.51.100.7:4242"));
    assert!(
        !binding_answered(&mut twin),
        "a second connection of one 5-tuple"
    );
    assert!(
        binding_answered(&mut first),
        "the first one is still served"
    );
}

#[test]
fn per_ip_caps_count_the_real_client_not_the_balancer() {
    let server = Server::start(&config(
        "max-tcp-connections-per-ip = 1\nmax-http-connections-per-ip = 1",
        "",
        "",
    ));
    let tcp = server.tcp[0];
    // Two clients behind one balancer: each holds its own place.
    let mut a = through_balancer(tcp, &v1("198.51.100.7:1"));
    let mut b = through_balancer(tcp, &v1("198.51.100.8:1"));
    assert!(binding_answered(&mut a) && binding_answered(&mut b));
    // The first client again: past its cap.
    let mut again = through_balancer(tcp, &v2("198.51.100.7:2"));
    assert!(
        !binding_answered(&mut again),
        "a second connection of 198.51.100.7"
    );
    let refused = "rturn_tcp_connections_total{event=\"refused_per_ip\"}";
    assert_eq!(server.metric(refused), 1.0);

    // HTTP: the same, by the client the header names.
    let http = server.http_addr();
    let held = through_balancer(http, &v1("198.51.100.7:1"));
    let get_path = |header: Vec<u8>, path: &str| {
        let mut stream = through_balancer(http, &header);
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(request.as_bytes());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    };
    let get = |header: Vec<u8>| get_path(header, "/healthz");
    // The load balancer's own address holds nothing: another client is served.
    let other = get(v1("198.51.100.8:1"));
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // Wait until the held connection is admitted (its header read), then try its twin.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let twin = loop {
        let answer = get(v2("198.51.100.7:2"));
        if answer.is_empty() || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(twin, "", "a second connection of 198.51.100.7 over HTTP");
    // Scraped as a third client through the balancer: 127.0.0.1's one place may still be
    // held by the scrape above while its connection winds down on a busy machine.
    let refused = "rturn_http_connections_total{event=\"refused_per_ip\"} ";
    let metrics = get_path(v1("198.51.100.9:1"), "/metrics");
    let count = (metrics.lines())
        .find_map(|l| l.strip_prefix(refused)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(count >= 1.0, "{metrics}");
    drop(held);
}

/// A TLS session over a connection from the balancer that first sent `header`.
fn tls_through_balancer(
    server: SocketAddr,
    header: &[u8],
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let stream = through_balancer(server, header);
    let name = ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    rustls::StreamOwned::new(session, stream)
}

/// The REST user part of the TURN username `/api/ice-servers` minted (an HMAC of the
/// client's address), over HTTPS through the balancer for `client`.
fn ice_user(https: SocketAddr, client: &str, config: &Arc<rustls::ClientConfig>) -> String {
    let mut tls = tls_through_balancer(https, &v1(client), config);
    let request = "GET /api/ice-servers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    tls.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let username = response
        .split("\"username\":\"")
        .nth(1)
        .expect("a username");
    let username = username.split('"').next().unwrap();
    username.split(':').nth(1).expect("expiry:user").to_owned()
}

#[test]
fn over_tls_and_https_the_header_comes_before_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let more = format!(
        "[auth]\nstatic-auth-secret = \"proxy-test-secret\"\n{}",
        test_certificate(dir.path())
    );
    let listen = "tls = [\"127.0.0.1:0\"]\nhttps = \"127.0.0.1:0\"";
    let server = Server::start(
        &config("", listen, &more).replace("[auth.users]\nalice = \"wonderland\"\n", ""),
    );
    let client = test_tls_client(dir.path());
    let mut turns = tls_through_balancer(server.tls[0], &v2("198.51.100.7:4242"), &client);
    let mapped = binding_mapped(&mut turns);
    assert_eq!(mapped, "198.51.100.7:4242".parse().unwrap());

    // The ICE API mints credentials per client address: the claimed one.
    let https = server.https.expect("https address in the log");
    let a = ice_user(https, "198.51.100.7:1", &client);
    assert_eq!(ice_user(https, "198.51.100.7:2", &client), a, "same client");
    assert_ne!(
        ice_user(https, "198.51.100.8:1", &client),
        a,
        "another client"
    );
    assert_eq!(outcome(&server, "accepted_v1"), 3.0);
    assert_eq!(outcome(&server, "accepted_v2"), 1.0);
}

/// On the port `turns:` and HTTPS share, the header comes before the handshake too, and the
/// client it names is what the TURN side (XOR-MAPPED-ADDRESS) and the HTTP side (the ICE
/// API's per-client credentials) see.
#[test]
fn on_the_shared_tls_port_the_header_comes_first_for_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let more = format!(
        "[auth]\nstatic-auth-secret = \"proxy-test-secret\"\n{}",
        test_certificate(dir.path())
    );
    let port = free_port();
    let listen = format!("tls = [\"127.0.0.1:{port}\"]\nhttps = \"127.0.0.1:{port}\"");
    let server = Server::start(
        &config("", &listen, &more).replace("[auth.users]\nalice = \"wonderland\"\n", ""),
    );
    let shared: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = test_tls_client(dir.path());
    let mut turns = tls_through_balancer(shared, &v2("198.51.100.7:4242"), &client);
    let mapped = binding_mapped(&mut turns);
    assert_eq!(mapped, "198.51.100.7:4242".parse().unwrap());

    let a = ice_user(shared, "198.51.100.7:1", &client);
    assert_ne!(
        ice_user(shared, "198.51.100.8:1", &client),
        a,
        "another client"
    );
    assert_eq!(outcome(&server, "accepted_v1"), 2.0);
    assert_eq!(outcome(&server, "accepted_v2"), 1.0);

    // A header from an address the balancer list does not hold is refused here as well.
    let mut direct = tcp_client_from("127.0.0.1", shared);
    direct.write_all(&v1("198.51.100.9:1")).unwrap();
    let mut rest = Vec::new();
    let _ = direct.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the untrusted header got an answer");
    assert_eq!(outcome(&server, "refused_untrusted"), 1.0);
}
