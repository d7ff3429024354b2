//! Black-box RFC 6062 TCP relay allocations: coturn's `turnutils_uclient -T` (pairs of
//! clients that Connect to each other's relayed addresses, so rturn both connects out and
//! accepts, sends ConnectionAttempts and takes ConnectionBinds on any worker) loses nothing;
//! a client of our own checks the bytes through Connect + ConnectionBind to a plain TCP peer
//! (over TCP, over TLS and over IPv6) and through a peer's own connection, a slow reader
//! holding its writer back, `max-bps` slowing a pair down, the pair closing with its allocation, with
//! either side or on a reload that denies the peer, a half-close either way passed on while
//! the other direction goes on, a TLS client cut without close_notify losing nothing it
//! sent, and the refusals: forbidden peer (403), unknown CONNECTION-ID (400), quota (486),
//! TCP over UDP (400), a peer without permission, too many unbound connections (508),
//! `tcp-allocations = false` (442) and its reload.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rturn::client::{Client, Request, Response};
use rturn::testkit::*;
use stun::attributes::{ATTR_CONNECTION_ID, ATTR_XOR_PEER_ADDRESS};
use stun::message::{
    CLASS_INDICATION, METHOD_ALLOCATE, METHOD_CONNECT, METHOD_CONNECTION_ATTEMPT,
    METHOD_CONNECTION_BIND, Message,
};

const USERS: &str = "[auth.users]\nalice = \"wonderland\"\n";

fn config(relay: &str) -> String {
    loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = \"127.0.0.1\"\n{relay}{USERS}"
    ))
}

fn tcp_allocate() -> Request {
    Request::new(METHOD_ALLOCATE).transport(6)
}

/// A TURN client over one TCP or TLS connection: requests with long-term credentials (401
/// and 438 answered), and the indications that arrive meanwhile kept.
struct Turn<S> {
    stream: S,
    client: Client,
    indications: VecDeque<Message>,
}

type Tcp = Turn<TcpStream>;
type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Tcp {
    fn connect(server: SocketAddr) -> Tcp {
        Turn::over(tcp_client(server))
    }
}

impl Turn<Tls> {
    fn tls(server: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Turn<Tls> {
        let name = "localhost".try_into().unwrap();
        let session = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
        Turn::over(rustls::StreamOwned::new(session, tcp_client(server)))
    }
}

impl<S: Read + Write> Turn<S> {
    fn over(stream: S) -> Turn<S> {
        Turn {
            stream,
            client: Client::new("alice", "wonderland"),
            indications: VecDeque::new(),
        }
    }

    /// The next STUN message on the stream.
    fn next(&mut self) -> Message {
        let raw = read_stun(&mut self.stream);
        let mut m = Message::new();
        m.raw = raw;
        m.decode().expect("a STUN message");
        m
    }

    /// `request`, signed once a challenge gave the credentials; its response.
    fn request(&mut self, request: &Request) -> (Response, Message) {
        for _ in 0..3 {
            let m = self.client.request(request).expect("request builds");
            self.stream.write_all(&m.raw).expect("write");
            let answer = loop {
                let answer = self.next();
                if answer.typ.class == CLASS_INDICATION {
                    self.indications.push_back(answer);
                } else if answer.transaction_id == m.transaction_id {
                    break answer;
                }
            };
            let response = Response::from_message(&answer).expect("a response");
            if matches!(response.code(), 401 | 438) && self.client.handle_challenge(&response) {
                continue;
            }
            return (response, answer);
        }
        panic!("{} kept being challenged", request.method());
    }

    fn code(&mut self, request: &Request) -> u16 {
        self.request(request).0.code()
    }

    /// A TCP allocation; its relayed address.
    fn allocate(&mut self) -> SocketAddr {
        let (response, _) = self.request(&tcp_allocate());
        assert!(response.is_success(), "{:?}", response.error);
        response.relayed[0]
    }

    /// The next ConnectionAttempt: the peer and its CONNECTION-ID.
    fn connection_attempt(&mut self) -> (SocketAddr, u32) {
        let m = match self.indications.pop_front() {
            Some(m) => m,
            None => self.next(),
        };
        assert_eq!(m.typ.method, METHOD_CONNECTION_ATTEMPT);
        let peer = m.get(ATTR_XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
        let peer = rturn::turn::attrs::decode_xor_address(&peer, &m.transaction_id.0).unwrap();
        (peer, connection_id(&m))
    }
}

fn connection_id(m: &Message) -> u32 {
    let id = m.get(ATTR_CONNECTION_ID).expect("CONNECTION-ID");
    u32::from_be_bytes(id.try_into().expect("4 bytes"))
}

/// A new data connection bound to `id`: the stream, carrying raw bytes from now on.
fn bind(server: SocketAddr, id: u32) -> Result<TcpStream, u16> {
    bind_over(Tcp::connect(server), id)
}

/// `data` (a new connection) bound to `id`.
fn bind_over<S: Read + Write>(mut data: Turn<S>, id: u32) -> Result<S, u16> {
    let bind = Request::new(METHOD_CONNECTION_BIND).attr(ATTR_CONNECTION_ID, &id.to_be_bytes());
    match data.request(&bind).0.code() {
        0 => Ok(data.stream),
        code => Err(code),
    }
}

/// `data` from `a` to `b` and other bytes back, checked; both ways at once.
fn both_ways(a: &mut TcpStream, b: &mut TcpStream, seed: u64) {
    let (there, back) = (noise(seed, 200_000), noise(seed + 1, 150_000));
    let mut a_writer = a.try_clone().unwrap();
    let mut b_writer = b.try_clone().unwrap();
    let (t1, t2) = (there.clone(), back.clone());
    let w1 = std::thread::spawn(move || a_writer.write_all(&t1).unwrap());
    let w2 = std::thread::spawn(move || b_writer.write_all(&t2).unwrap());
    let mut got_there = vec![0; there.len()];
    b.read_exact(&mut got_there).unwrap();
    let mut got_back = vec![0; back.len()];
    a.read_exact(&mut got_back).unwrap();
    w1.join().unwrap();
    w2.join().unwrap();
    assert!(got_there == there, "bytes to the peer changed");
    assert!(got_back == back, "bytes to the client changed");
}

/// Whether `stream` reaches its end (EOF or reset) within the read timeout.
fn ends(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                );
            }
        }
    }
}

fn peer_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn accepted(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let (s, from) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (s, from)
}

/// A successful Connect of `ctl`'s allocation to the peer at `listener`: the peer's end of
/// the new connection, where the peer saw it come from, and its CONNECTION-ID.
fn connect_to<S: Read + Write>(
    ctl: &mut Turn<S>,
    listener: &TcpListener,
) -> (TcpStream, SocketAddr, u32) {
    let peer = listener.local_addr().unwrap();
    let (response, m) = ctl.request(&Request::new(METHOD_CONNECT).peer(peer));
    assert!(response.is_success(), "{:?}", response.error);
    let (at_peer, from) = accepted(listener);
    (at_peer, from, connection_id(&m))
}

/// A bound pair over Connect + ConnectionBind: `ctl` allocates and Connects to the peer at
/// `listener`, then the connection `data` opens is bound. (data connection, the peer's end,
/// the control connection that holds the allocation).
fn pair_over<S: Read + Write>(
    mut ctl: Turn<S>,
    data: impl FnOnce() -> Turn<S>,
    listener: &TcpListener,
) -> (S, TcpStream, Turn<S>) {
    ctl.allocate();
    let (at_peer, _, id) = connect_to(&mut ctl, listener);
    let data = bind_over(data(), id).expect("bound");
    (data, at_peer, ctl)
}

/// A server with a TLS listener besides, allowing loopback peers, its certificate in `dir`;
/// a client configuration that trusts it.
fn tls_server(dir: &std::path::Path) -> (Server, Arc<rustls::ClientConfig>) {
    let tls = test_certificate(dir);
    let listen = "tls = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n[relay]";
    let text = config("allow-loopback-peers = true\n").replacen(
        "http = \"127.0.0.1:0\"\n[relay]",
        listen,
        1,
    );
    let server = Server::start(&format!("{text}{tls}"));
    (server, test_tls_client(dir))
}

/// A bound pair over TLS, both connections to `server`'s TLS listener: (data connection,
/// its TLS session kept; the peer's end; the control connection).
fn tls_pair(
    server: &Server,
    client: &Arc<rustls::ClientConfig>,
    listener: &TcpListener,
) -> (Tls, TcpStream, Turn<Tls>) {
    let ctl = Turn::tls(server.tls[0], client);
    pair_over(ctl, || Turn::tls(server.tls[0], client), listener)
}

/// A bound pair over TCP, both connections to `server`'s first TCP listener.
fn tcp_pair(server: &Server, listener: &TcpListener) -> (TcpStream, TcpStream, Tcp) {
    let ctl = Tcp::connect(server.tcp[0]);
    pair_over(ctl, || Tcp::connect(server.tcp[0]), listener)
}

#[test]
fn connect_and_bind_relay_bytes_both_ways_and_close_with_the_allocation() {
    let server = Server::start(&config("allow-loopback-peers = true\n"));
    let listener = peer_listener();
    let peer = listener.local_addr().unwrap();
    let mut ctl = Tcp::connect(server.tcp[0]);
    let relayed = ctl.allocate();
    // The peer sees the connection come from the relayed address (RFC 6062 §5.2).
    let (mut at_peer, from, id) = connect_to(&mut ctl, &listener);
    assert_eq!(from, relayed);
    // The same peer again: 446.
    assert_eq!(ctl.code(&Request::new(METHOD_CONNECT).peer(peer)), 446);
    let mut data = bind(server.tcp[0], id).expect("bound");
    both_ways(&mut data, &mut at_peer, 1);
    // Bound once only.
    assert_eq!(bind(server.tcp[0], id).map(|_| ()), Err(400));
    // Nobody listening: 447 (Connection Timeout or Failure).
    let closed = peer_listener().local_addr().unwrap();
    assert_eq!(ctl.code(&Request::new(METHOD_CONNECT).peer(closed)), 447);
    // The allocation ends: both sides of the pair close.
    assert_eq!(ctl.code(&Request::refresh(0)), 0);
    assert!(ends(&mut at_peer), "the peer connection stayed open");
    assert!(ends(&mut data), "the data connection stayed open");
    let counted = |result: &str| {
        server.metric(&format!(
            "rturn_tcp_relay_connections_total{{result=\"{result}\"}}"
        ))
    };
    assert_eq!((counted("connected"), counted("bound")), (1.0, 1.0));
    assert_eq!(counted("connect_failed"), 1.0);
    assert!(server.metric("rturn_relayed_bytes_total{direction=\"to_peer\"}") >= 200_000.0);
}

#[test]
fn a_peer_with_a_permission_is_announced_and_bound_one_without_is_closed() {
    let server = Server::start(&config("allow-loopback-peers = true\n"));
    let mut ctl = Tcp::connect(server.tcp[0]);
    let relayed = ctl.allocate();
    // No permission yet: closed at once.
    let mut stranger = tcp_client(relayed);
    assert!(closed_by_server(&mut stranger));
    assert_eq!(ctl.code(&Request::create_permission(&[relayed])), 0);
    let mut at_peer = tcp_client(relayed);
    let (peer, id) = ctl.connection_attempt();
    assert_eq!(peer, at_peer.local_addr().unwrap());
    // Bytes the peer sends before the bind wait for it.
    at_peer.write_all(b"early").unwrap();
    let mut data = bind(server.tcp[0], id).expect("bound");
    let mut early = [0u8; 5];
    data.read_exact(&mut early).unwrap();
    assert_eq!(&early, b"early");
    both_ways(&mut data, &mut at_peer, 7);
    // Either side closing closes the other.
    drop(at_peer);
    assert!(ends(&mut data));
}

#[test]
fn refusals_forbidden_peer_unknown_id_quota_udp_and_switched_off() {
    let server = Server::start(&config("user-quota = 1\n"));
    let mut ctl = Tcp::connect(server.tcp[0]);
    ctl.allocate();
    // Loopback peers are refused by default (403), rturn's own listener too.
    let listener = peer_listener();
    let peer = listener.local_addr().unwrap();
    assert_eq!(ctl.code(&Request::new(METHOD_CONNECT).peer(peer)), 403);
    assert_eq!(
        ctl.code(&Request::new(METHOD_CONNECT).peer(server.tcp[0])),
        403
    );
    // An unknown CONNECTION-ID: 400.
    assert_eq!(bind(server.tcp[0], 0x1234_5678).map(|_| ()), Err(400));
    // user-quota = 1: a second TCP allocation of alice's is 486.
    let mut second = Tcp::connect(server.tcp[0]);
    assert_eq!(second.code(&tcp_allocate()), 486);
    // TCP over UDP: 400.
    let refused = RawTurn::try_allocate_with(server.udp[0], "alice", "wonderland", &tcp_allocate());
    let code = refused.err().map(|m| error_code(&m));
    assert_eq!(code, Some(Some(400)));
    assert_eq!(
        server.metric("rturn_requests_refused_total{code=\"403\"}"),
        2.0
    );

    // tcp-allocations = false, applied by a reload: 442, and back.
    let (ctl_off, on) = (config("tcp-allocations = false\n"), config(""));
    let pid = Pid::from_raw(server.pid() as i32);
    let mut server = server;
    for (text, want) in [(&ctl_off, 442), (&on, 0)] {
        std::fs::write(&server.config_path, text).unwrap();
        kill(pid, Signal::SIGHUP).unwrap();
        server.wait_line(|l| l.contains("configuration reloaded"));
        let mut other = Tcp::connect(server.tcp[0]);
        assert_eq!(other.code(&tcp_allocate()), want);
    }
}

/// Over TLS: the control connection and the data connection (its TLS session kept once
/// bound) carry the peer's bytes both ways.
#[test]
fn tls_control_and_data_connections_relay_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = tls_server(dir.path());
    let listener = peer_listener();
    let (mut data, mut at_peer, _ctl) = tls_pair(&server, &client, &listener);
    for (i, len) in [1, 1000, 40_000].into_iter().enumerate() {
        let there = noise(i as u64, len);
        data.write_all(&there).unwrap();
        let mut got = vec![0; len];
        at_peer.read_exact(&mut got).unwrap();
        assert!(got == there, "{len} bytes to the peer changed");
        let back = noise(100 + i as u64, len);
        at_peer.write_all(&back).unwrap();
        data.read_exact(&mut got).unwrap();
        assert!(got == back, "{len} bytes to the client changed");
    }
    // The peer closing closes the data connection (a TLS end or a reset).
    drop(at_peer);
    let mut buf = [0u8; 16];
    match data.read(&mut buf) {
        Ok(0) => {}
        Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the data connection stayed open: {other:?}"),
    }
}

/// A TLS client that writes, then cuts its connection without close_notify: what it wrote
/// still reaches the peer, then the peer sees the end.
#[test]
fn a_tls_client_cut_without_close_notify_loses_nothing_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = tls_server(dir.path());
    let listener = peer_listener();
    let (mut data, mut at_peer, _ctl) = tls_pair(&server, &client, &listener);
    let sent = noise(51, 200_000);
    data.write_all(&sent).unwrap();
    data.flush().unwrap();
    data.sock.shutdown(std::net::Shutdown::Both).unwrap();
    let mut got = Vec::new();
    at_peer.read_to_end(&mut got).expect("an orderly end");
    assert!(
        got == sent,
        "{} of {} bytes reached the peer",
        got.len(),
        sent.len()
    );
}

/// An IPv6 TCP relay (REQUESTED-ADDRESS-FAMILY) connects to an IPv6 peer from its relayed
/// address, and bytes pass.
#[test]
fn an_ipv6_tcp_relay_connects_to_an_ipv6_peer() {
    let text = loopback_config(&format!(
        "http = \"127.0.0.1:0\"\n[relay]\nrelay-ip = [\"127.0.0.1\", \"::1\"]\n\
         allow-loopback-peers = true\n{USERS}"
    ));
    let server = Server::start(&text);
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let mut ctl = Tcp::connect(server.tcp[0]);
    let (response, _) = ctl.request(&tcp_allocate().family(rturn::turn::attrs::FAMILY_IPV6));
    assert!(response.is_success(), "{:?}", response.error);
    let relayed = response.relayed[0];
    assert!(relayed.is_ipv6(), "{relayed}");
    let (mut at_peer, from, id) = connect_to(&mut ctl, &listener);
    assert_eq!(from, relayed);
    let mut data = bind(server.tcp[0], id).expect("bound");
    both_ways(&mut data, &mut at_peer, 31);
}

/// A reload that denies the peer closes its pair within a tick, as it ends the peer's UDP
/// permissions and channels.
#[test]
fn a_reload_that_denies_the_peer_closes_its_pair() {
    let mut server = Server::start(&config("allow-loopback-peers = true\n"));
    let listener = peer_listener();
    let (mut data, mut at_peer, mut ctl) = tcp_pair(&server, &listener);
    both_ways(&mut data, &mut at_peer, 21);
    let denied = config("allow-loopback-peers = true\ndenied-peer-ip = [\"127.0.0.1\"]\n");
    std::fs::write(&server.config_path, denied).unwrap();
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGHUP).unwrap();
    server.wait_line(|l| l.contains("configuration reloaded"));
    assert!(ends(&mut at_peer), "the peer connection stayed open");
    assert!(ends(&mut data), "the data connection stayed open");
    // And a new Connect to it is refused.
    let peer = listener.local_addr().unwrap();
    assert_eq!(ctl.code(&Request::new(METHOD_CONNECT).peer(peer)), 403);
}

/// A reader that lags behind: its side's buffers fill, the writer is held back (not
/// closed, nothing lost) and catches up once the reader reads, in both directions.
#[test]
fn a_slow_reader_holds_its_writer_back_and_loses_nothing() {
    let server = Server::start(&config("allow-loopback-peers = true\n"));
    let listener = peer_listener();
    let (data, at_peer, _ctl) = tcp_pair(&server, &listener);
    for (seed, (mut writer, mut reader)) in
        [(11, (clone(&data), clone(&at_peer))), (12, (at_peer, data))]
    {
        let sent = noise(seed, 4 << 20);
        let copy = sent.clone();
        let writing = std::thread::spawn(move || writer.write_all(&copy).map(|()| writer));
        // Far more than every buffer on the way holds is waiting when the reader starts.
        std::thread::sleep(Duration::from_millis(500));
        reader
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = vec![0; sent.len()];
        reader.read_exact(&mut got).unwrap();
        assert!(got == sent, "bytes changed on the way");
        writing.join().unwrap().unwrap();
    }
}

fn clone(stream: &TcpStream) -> TcpStream {
    stream.try_clone().unwrap()
}

/// `max-bps` holds a pair back instead of dropping bytes (TCP cannot): 60 KB at 20 kB/s
/// arrive whole, and not before the limit allows.
#[test]
fn max_bps_slows_a_pair_down_and_loses_nothing() {
    let server = Server::start(&config("allow-loopback-peers = true\nmax-bps = 20000\n"));
    let listener = peer_listener();
    let (mut data, mut at_peer, _ctl) = tcp_pair(&server, &listener);
    at_peer
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let there = noise(3, 60_000);
    let start = std::time::Instant::now();
    data.write_all(&there).unwrap();
    let mut got = vec![0; there.len()];
    at_peer.read_exact(&mut got).unwrap();
    assert!(got == there, "bytes to the peer changed");
    // One second's worth at once, then 20 kB a second.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// [`tcp_pair`], the data connection's read timeout 5 s.
fn bound_pair(server: &Server, listener: &TcpListener) -> (TcpStream, TcpStream, Tcp) {
    let (data, at_peer, ctl) = tcp_pair(server, listener);
    data.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (data, at_peer, ctl)
}

/// Reads `stream` to its end (EOF within the read timeout); what it read.
fn to_the_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("an orderly end");
    got
}

/// `first` sends 100 kB (`seed`) and half-closes; `then` reads them to the end, sends other
/// bytes back and half-closes, and `first` reads those to the end. `lost` says what failed:
/// the bytes to `then`, the bytes back.
fn half_close_then_back(first: &mut TcpStream, then: &mut TcpStream, seed: u64, lost: [&str; 2]) {
    let sent = noise(seed, 100_000);
    first.write_all(&sent).unwrap();
    first.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(to_the_end(then) == sent, "{}", lost[0]);
    let back = noise(seed + 1, 100_000);
    then.write_all(&back).unwrap();
    then.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(to_the_end(first) == back, "{}", lost[1]);
}

/// A half-close passes on what was sent, then the end, and the other direction goes on:
/// a client that half-closes after its request still gets the peer's answer, and a peer
/// that half-closes after its data still gets what the client sends then.
#[test]
fn a_half_close_either_way_passes_the_end_on_and_the_other_direction_goes_on() {
    let server = Server::start(&config("allow-loopback-peers = true\n"));
    let listener = peer_listener();
    // The client half-closes: the peer reads the request to its end, then answers.
    let (mut data, mut at_peer, _ctl) = bound_pair(&server, &listener);
    let lost = [
        "the request changed",
        "the answer after the half-close was lost",
    ];
    half_close_then_back(&mut data, &mut at_peer, 41, lost);
    // The peer half-closes: the client reads its data to the end, then sends more.
    let (mut data, mut at_peer, _ctl) = bound_pair(&server, &listener);
    let lost = [
        "the peer's data changed",
        "bytes after the peer's half-close were lost",
    ];
    half_close_then_back(&mut at_peer, &mut data, 43, lost);
    // Both ends passed on: the pair is gone.
    assert!(ends(&mut data));
}

/// An allocation holds few connections that are not bound yet: the Connect past
/// `MAX_UNBOUND` whose connection would wait for its ConnectionBind gets 508; binding one
/// makes room.
#[test]
fn unbound_connections_per_allocation_are_capped() {
    use rturn::turn::tcp_link::MAX_UNBOUND;
    let server = Server::start(&config("allow-loopback-peers = true\n"));
    let mut ctl = Tcp::connect(server.tcp[0]);
    ctl.allocate();
    let listeners: Vec<_> = (0..=MAX_UNBOUND).map(|_| peer_listener()).collect();
    let mut ids = Vec::new();
    for listener in &listeners[..MAX_UNBOUND] {
        let (response, m) =
            ctl.request(&Request::new(METHOD_CONNECT).peer(listener.local_addr().unwrap()));
        assert!(response.is_success(), "{:?}", response.error);
        ids.push(connection_id(&m));
    }
    let one_more = listeners[MAX_UNBOUND].local_addr().unwrap();
    assert_eq!(ctl.code(&Request::new(METHOD_CONNECT).peer(one_more)), 508);
    let _data = bind(server.tcp[0], ids[0]).expect("bound");
    let (response, _) = ctl.request(&Request::new(METHOD_CONNECT).peer(one_more));
    assert!(response.is_success(), "{:?}", response.error);
}

/// `max-bps` is the allocation's, not each pair's: two pairs of one allocation sending 20 KB
/// each at 10 kB/s take the time 40 KB take (each pair on its own would be done in two
/// seconds' worth), and lose nothing.
#[test]
fn max_bps_is_shared_by_the_pairs_of_an_allocation() {
    let server = Server::start(&config("allow-loopback-peers = true\nmax-bps = 10000\n"));
    let mut ctl = Tcp::connect(server.tcp[0]);
    ctl.allocate();
    let mut pairs = Vec::new();
    for _ in 0..2 {
        let listener = peer_listener();
        let (at_peer, _, id) = connect_to(&mut ctl, &listener);
        at_peer
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        pairs.push((bind(server.tcp[0], id).expect("bound"), at_peer));
    }
    let start = std::time::Instant::now();
    let readers: Vec<_> = (pairs.into_iter().enumerate())
        .map(|(i, (mut data, mut at_peer))| {
            let there = noise(60 + i as u64, 20_000);
            data.write_all(&there).unwrap();
            std::thread::spawn(move || {
                let mut got = vec![0; there.len()];
                at_peer.read_exact(&mut got).unwrap();
                assert!(got == there, "bytes to the peer changed");
                drop(data);
            })
        })
        .collect();
    for reader in readers {
        reader.join().unwrap();
    }
    // One second's worth at once, then 10 kB a second for the 30 kB left: 3 s. Pairs on two
    // workers may both read the first second's worth before either charges it, and the
    // second read is then owed, so still about 3 s.
    assert!(
        start.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
}

/// Runs a `turnutils_uclient -T` binary against `server`; its output.
fn uclient(binary: &str, server: &Server, clients: usize, messages: usize) -> String {
    let out = Command::new("timeout")
        .arg("90")
        .arg(binary)
        .args(["-T", "-u", "alice", "-w", "wonderland"])
        .args(["-p", &server.tcp[0].port().to_string()])
        .args(["-m", &clients.to_string(), "-n", &messages.to_string()])
        .args(["-l", "120", "-X", "127.0.0.1", "127.0.0.1"])
        .output()
        .expect("turnutils_uclient is missing: install coturn (scripts/test.sh does)");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn assert_lossless(text: &str, server: &Server, clients: usize, messages: usize) {
    let summary = || format!("uclient -T:\n{text}\nserver log:\n{}", server.log());
    let pairs = clients * (clients - 1);
    assert!(
        text.contains(&format!("{pairs} connections are completed")),
        "{}",
        summary()
    );
    assert_all_arrived(text, clients, messages, summary);
}

/// coturn's client: 10 clients (so pairs cross workers), each Connecting to every other's
/// relayed address, 9 Connects before it binds any (more than a small per-allocation bound
/// of unbound connections would let through), 50 messages each, through rturn's TCP relays,
/// losing nothing. On the default peer rules: the peers are rturn's own live relay endpoints
/// (loopback here), which they allow.
#[test]
fn uclient_tcp_relay_loses_nothing() {
    let server = Server::start(&config(""));
    let (clients, messages) = (10, 50);
    let text = uclient("turnutils_uclient", &server, clients, messages);
    assert_lossless(&text, &server, clients, messages);
    // coturn 4.17.1's own client too, where it is built (COTURN_417=PREFIX, as for the
    // bench, else the build script's usual place).
    let prefix = std::env::var("COTURN_417").unwrap_or_else(|_| "/work/coturn-4.17.1".into());
    let newer = format!("{prefix}/bin/turnutils_uclient");
    if std::path::Path::new(&newer).exists() {
        let text = uclient(&newer, &server, clients, messages);
        assert_lossless(&text, &server, clients, messages);
    }
}
