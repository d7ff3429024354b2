//! Black-box: one TLS port for `turns:`, HTTPS and WSS (`listen.https` naming a `listen.tls`
//! address). TURN allocations, an HTTPS GET and a WebSocket join on the same port, with ALPN
//! and without it (then the first bytes after the handshake tell them apart), each client's
//! first bytes sent with its last handshake flight; bytes that are neither STUN nor HTTP are
//! closed; and what was chosen, how, is counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rturn::client::{Client, Request, Response};
use rturn::testkit::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// `turns:` and HTTPS on `port`, TURN also on UDP (no plain TCP listener: its accept loop
/// would hold one of `max-tcp-connections` while it waits), users for the long-term
/// credentials; `extra` goes in `[server]`.
fn shared_config(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        "realm = \"t\"\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n\
         tls = [\"127.0.0.1:{port}\"]\nhttps = \"127.0.0.1:{port}\"\n\
         [server]\n{extra}\n[relay]\nrelay-ip = \"127.0.0.1\"\n\
         [auth.users]\nalice = \"wonderland\"\n{}",
        test_certificate(dir)
    )
}

/// A TLS client to `addr` trusting only the certificate in `dir`, offering `alpn`, whose
/// `first` bytes are queued before the handshake (rustls sends them with its Finished, so
/// the server may hold them before it has chosen a protocol).
fn tls_client(addr: SocketAddr, dir: &Path, alpn: &[&[u8]], first: &[u8]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    conn.writer().write_all(first).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    tls.flush().expect("TLS handshake");
    tls
}

/// The next STUN message on `tls`.
fn read_message(tls: &mut Tls) -> stun::message::Message {
    let mut header = [0u8; 20];
    tls.read_exact(&mut header).expect("a STUN header");
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut raw = header.to_vec();
    raw.resize(20 + len, 0);
    tls.read_exact(&mut raw[20..]).expect("a STUN body");
    let mut m = stun::message::Message::new();
    m.raw = raw;
    m.decode().expect("a STUN message");
    m
}

/// An authenticated Allocate over a new TLS connection offering `alpn`, the first request
/// sent with the handshake; returns the connection (holding the allocation) and its relay.
fn turns_allocation(addr: SocketAddr, dir: &Path, alpn: &[&[u8]]) -> (Tls, SocketAddr) {
    let mut client = Client::new("alice", "wonderland");
    let allocate = Request::allocate();
    let first = client.request(&allocate).unwrap();
    let mut tls = tls_client(addr, dir, alpn, &first.raw);
    let challenge = Response::from_message(&read_message(&mut tls)).unwrap();
    assert_eq!(challenge.code(), 401, "unauthenticated Allocate");
    assert!(client.handle_challenge(&challenge));
    let m = client.request(&allocate).unwrap();
    tls.write_all(&m.raw).unwrap();
    tls.flush().unwrap();
    let response = Response::from_message(&read_message(&mut tls)).unwrap();
    assert!(response.is_success(), "Allocate over turns: {response:?}");
    let relay = response.relayed[0];
    (tls, relay)
}

/// `GET path` over a new TLS connection offering `alpn`, the request sent with the
/// handshake; the whole response.
fn https_get(addr: SocketAddr, dir: &Path, alpn: &[&[u8]], path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut tls = tls_client(addr, dir, alpn, request.as_bytes());
    let mut response = Vec::new();
    // rustls reports a close without close_notify as an error, after the bytes.
    let _ = tls.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// The value of `/metrics` sample `name` read over HTTPS, 0 if absent.
pub(crate) fn metric(addr: SocketAddr, dir: &Path, name: &str) -> f64 {
    let body = https_get(addr, dir, &[b"http/1.1"], "/metrics");
    (body.lines())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn turns_https_and_wss_share_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(&shared_config(dir.path(), port, ""));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(server.tls, [addr], "the shared port is the turns: listener");
    assert_eq!(server.https, Some(addr), "and the HTTPS listener");

    // TURN, chosen by ALPN, and told by its first bytes (no ALPN: what browsers send).
    let (_with_alpn, relay_a) = turns_allocation(addr, dir.path(), &[b"stun.turn"]);
    let (_without, relay_b) = turns_allocation(addr, dir.path(), &[]);
    assert_ne!(relay_a, relay_b);

    // HTTPS, as a browser offers it (h2 and http/1.1: http/1.1 is chosen), and without ALPN.
    for alpn in [&[&b"h2"[..], b"http/1.1"][..], &[]] {
        let response = https_get(addr, dir.path(), alpn, "/healthz");
        assert!(response.starts_with("HTTP/1.1 200"), "{alpn:?}: {response}");
    }

    // A WebSocket join (wss:), the upgrade request sent with the handshake.
    let upgrade = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "wss://localhost:{port}/ws"
    ))
    .unwrap();
    let tls = tls_client(addr, dir.path(), &[b"http/1.1"], b"");
    let (mut ws, _) = tungstenite::client::client(upgrade, tls).expect("WebSocket upgrade");
    let join = r#"{"type":"join","room":"shared"}"#;
    ws.send(WsMessage::text(join)).unwrap();
    let reply = loop {
        match ws.read().expect("a reply to join") {
            WsMessage::Text(text) => break text.as_str().to_owned(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert!(reply.contains("\"type\":\"peers\""), "{reply}");
    assert!(reply.contains("\"room\":\"shared\""), "{reply}");

    // Neither STUN nor HTTP: closed without an answer.
    let mut odd = tls_client(addr, dir.path(), &[], b"\xff\xfe not a protocol");
    let mut buf = [0u8; 64];
    assert!(matches!(odd.read(&mut buf), Ok(0) | Err(_)), "closed");

    // Each choice counted, and each side's own counters saw only its connections.
    let count = |outcome: &str| {
        let name = format!("rturn_shared_tls_connections_total{{outcome=\"{outcome}\"}}");
        metric(addr, dir.path(), &name)
    };
    assert_eq!(count("turn_alpn"), 1.0);
    assert_eq!(count("turn_first_bytes"), 1.0);
    assert_eq!(count("http_first_bytes"), 1.0);
    assert_eq!(count("unknown"), 1.0);
    // h2+http/1.1, the WebSocket, and this scrape and the ones before it.
    assert!(count("http_alpn") >= 3.0);
    let tcp_accepted = "rturn_tcp_connections_total{event=\"accepted\"}";
    assert_eq!(metric(addr, dir.path(), tcp_accepted), 2.0);
    let tls_allocations = "rturn_allocations{transport=\"tls\"}";
    assert_eq!(metric(addr, dir.path(), tls_allocations), 2.0);
    drop(ws);
}

/// A client that finishes its handshake but never speaks is closed within
/// `tls-handshake-timeout`, and counted as silent; a TLS client past `max-tcp-connections`
/// is refused as TURN while HTTPS on the same port still answers.
#[test]
fn silent_clients_close_and_turn_caps_hold_on_the_shared_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = "tls-handshake-timeout = \"1s\"\nmax-tcp-connections = 1";
    let _server = Server::start(&shared_config(dir.path(), port, extra));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut silent = tls_client(addr, dir.path(), &[], b"");
    let mut buf = [0u8; 16];
    silent
        .sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)), "closed");
    let silent_name = "rturn_shared_tls_connections_total{outcome=\"silent\"}";
    assert_eq!(metric(addr, dir.path(), silent_name), 1.0);

    let (_first, _) = turns_allocation(addr, dir.path(), &[b"stun.turn"]);
    let client = Client::new("alice", "wonderland");
    let first = client.request(&Request::allocate()).unwrap();
    let mut second = tls_client(addr, dir.path(), &[b"stun.turn"], &first.raw);
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)), "refused");
    let refused = "rturn_shared_tls_connections_total{outcome=\"turn_refused\"}";
    assert_eq!(metric(addr, dir.path(), refused), 1.0);
}
