//! TLS: a rustls client (in a thread, over a blocking socket) against a [`StreamConn`]
//! serving the real `turns:` server config (`server::tls::acceptor`) with a self-signed
//! certificate made by rcgen.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{Close, Harness, PATIENCE, StreamConn, channel_data, limits, stun};
use crate::server::tls::{CertStore, acceptor};

/// The `turns:` listener's config for a fresh self-signed certificate, and a client
/// config that trusts it and offers ALPN `stun.turn`.
fn configs() -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
    let store = CertStore::new(Arc::new(CertifiedKey::new(vec![der.clone()], signer)));
    let server = Arc::clone(acceptor(&store, false).unwrap().config());
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"stun.turn".to_vec()];
    (server, Arc::new(client))
}

type Client = StreamOwned<ClientConnection, std::net::TcpStream>;

/// A `turns:` connection: the server end in a harness, the client's `script` run in a
/// thread on the other end.
fn tls_pair<T: Send + 'static>(
    script: impl FnOnce(Client) -> T + Send + 'static,
) -> (Harness, JoinHandle<T>) {
    let (server_config, client_config) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let session = ClientConnection::new(client_config, name).unwrap();
        script(StreamOwned::new(session, socket))
    });
    let (server, _) = listener.accept().unwrap();
    (Harness::new(server, Some(server_config), limits()), client)
}

#[test]
fn a_tls_client_handshakes_and_frames_go_both_ways() {
    let request = stun(8, 1);
    let pushed = channel_data(0x4001, b"from the peer");
    let (want_request, want_pushed) = (request.clone(), pushed.clone());
    let (mut h, client) = tls_pair(move |mut tls| {
        tls.write_all(&request).unwrap();
        let mut answer = vec![0; request.len()];
        tls.read_exact(&mut answer).unwrap();
        let mut data = vec![0; pushed.len()];
        tls.read_exact(&mut data).unwrap();
        let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        (answer, data, alpn)
    });
    assert_eq!(h.conn.tuple().transport, crate::turn::Transport::Tls);
    assert!(h.conn.is_handshaking());
    h.echo = true;
    h.until("the request", |h| !h.got.is_empty());
    assert!(!h.conn.is_handshaking());
    assert_eq!(h.got, vec![want_request.clone()]);
    let header = crate::stun::channel_data::header(0x4001, 13);
    h.conn.queue(&[&header, b"from the peer"]).unwrap();
    h.conn.flush(h.poll.registry(), h.clock).unwrap();
    assert_eq!(h.until_closed(), Close::PeerClosed { mid_frame: false });
    let (answer, data, alpn) = client.join().unwrap();
    assert_eq!(answer, want_request);
    assert_eq!(data, want_pushed, "padded to 4 inside TLS as well");
    assert_eq!(alpn.as_deref(), Some(&b"stun.turn"[..]));
}

#[test]
fn the_handshake_has_its_deadline_then_the_allocation_timeout_starts() {
    let (mut h, client) = tls_pair(|mut tls| {
        tls.write_all(&stun(0, 2)).unwrap();
        tls
    });
    let t0 = h.clock;
    assert_eq!(h.conn.deadline(), t0 + Duration::from_secs(10));
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(9), || true),
        None
    );
    // The handshake finishes at t0 + 2 s (virtual): the allocation timeout runs from then.
    h.clock = t0 + Duration::from_secs(2);
    h.until("the request", |h| !h.got.is_empty());
    assert_eq!(h.conn.deadline(), t0 + Duration::from_secs(32));
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(10), || false),
        None
    );
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(32), || false),
        Some(Close::AllocationTimeout)
    );
    drop(client.join().unwrap());
}

#[test]
fn a_client_that_never_handshakes_times_out() {
    let (mut h, client) = tls_pair(|tls| tls);
    let t0 = h.clock;
    h.turn();
    assert!(h.conn.is_handshaking());
    assert_eq!(
        h.conn
            .on_timeout(t0 + Duration::from_millis(9_999), || true),
        None
    );
    assert_eq!(
        h.conn.on_timeout(t0 + Duration::from_secs(10), || true),
        Some(Close::TlsHandshakeTimeout)
    );
    drop(client.join().unwrap());
}

#[test]
fn a_failed_or_abandoned_handshake_is_broken() {
    // Plain TURN sent to the TLS port.
    let (mut h, client) = tls_pair(|mut tls| {
        tls.sock.write_all(&stun(0, 3)).unwrap();
        tls
    });
    assert_eq!(h.until_closed(), Close::TlsHandshakeFailed);
    drop(client.join().unwrap());
    // A client that leaves mid-handshake.
    let (mut h, client) = tls_pair(|mut tls| {
        tls.conn.write_tls(&mut tls.sock).unwrap(); // the ClientHello
        tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
    });
    assert_eq!(h.until_closed(), Close::TlsHandshakeFailed);
    client.join().unwrap();
}

#[test]
fn a_tls_stream_cut_without_close_notify_is_an_io_error() {
    let (mut h, client) = tls_pair(|mut tls| {
        tls.write_all(&stun(0, 4)).unwrap();
        tls.flush().unwrap();
        // Cut right after the request (written in full): no close_notify.
        tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
    });
    assert_eq!(h.until_closed(), Close::Io { mid_frame: false });
    assert_eq!(h.got, vec![stun(0, 4)]);
    client.join().unwrap();
}

#[test]
fn a_tls_client_that_stops_reading_overflows() {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (mut h, client) = tls_pair(move |mut tls| {
        tls.write_all(&stun(0, 5)).unwrap();
        tls.flush().unwrap();
        // Reads nothing more until the test is over.
        let _ = done_rx.recv_timeout(PATIENCE);
        tls
    });
    h.until("the request", |h| !h.got.is_empty());
    let limit = limits().max_queued_bytes;
    let header = crate::stun::channel_data::header(0x4000, 1200);
    let payload = [6; 1200];
    let mut queued = 0;
    let overflowed = (0..100_000).find(|_| {
        let refused = h.conn.queue(&[&header, &payload]).is_err();
        let _ = h.conn.flush(h.poll.registry(), h.clock);
        queued = queued.max(h.conn.queued());
        assert!(h.conn.queued() <= limit + 1204);
        refused
    });
    assert!(overflowed.is_some(), "never overflowed");
    assert!(queued > limit - 1204, "overflowed early: {queued}");
    assert_eq!(
        h.conn.flush(h.poll.registry(), h.clock),
        Err(Close::Overflow)
    );
    done_tx.send(()).unwrap();
    drop(client.join().unwrap());
}

/// The shared `turns:`/HTTPS port's handover: the handshake done elsewhere (here by hand,
/// blocking), the first 5 plaintext bytes already taken out (part of a frame), the rest of
/// the client's first flight still held by rustls. The connection frames the prefix first
/// and reads what rustls holds on its first read, with no socket event.
#[test]
fn a_connection_handshaken_elsewhere_carries_on_from_what_was_read() {
    let (first, second) = (stun(8, 21), stun(0, 22));
    let flight = [first.clone(), second.clone()].concat();
    let answers = flight.len();
    let (server_config, client_config) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(client_config, name).unwrap(), socket);
        tls.write_all(&flight).unwrap();
        tls.flush().unwrap();
        let mut echoed = vec![0; answers];
        tls.read_exact(&mut echoed).unwrap();
        echoed
    });
    let (mut socket, _) = listener.accept().unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut session = rustls::ServerConnection::new(server_config).unwrap();
    while session.is_handshaking() {
        session.complete_io(&mut socket).unwrap();
    }
    // Records until there is plaintext; take 5 bytes of it, as the shared port's split does.
    let mut prefix = [0u8; 5];
    let mut taken = 0;
    while taken < prefix.len() {
        match session.reader().read(&mut prefix[taken..]) {
            Ok(n) => taken += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                session.read_tls(&mut socket).unwrap();
                session.process_new_packets().unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let tuple = crate::turn::FiveTuple {
        transport: crate::turn::Transport::Tls,
        client: socket.peer_addr().unwrap(),
        server: addr,
    };
    let clock = std::time::Instant::now();
    let conn = StreamConn::established(socket, tuple, Box::new(session), &prefix, &limits(), clock);
    let mut h = Harness::serving(conn.unwrap(), clock);
    assert!(!h.conn.is_handshaking());
    assert_eq!(h.conn.tuple(), tuple);
    h.echo = true;
    // The first read is the loop's, not an event's.
    h.more = true;
    h.until("both requests", |h| h.got.len() == 2);
    assert_eq!(h.got, vec![first.clone(), second.clone()]);
    let echoed = client.join().unwrap();
    assert_eq!(echoed, [first, second].concat());
}
