//! The HTTP listeners' edge against the real binary: request heads that never finish,
//! keep-alives that idle, WebSocket upgrades missing their last CRLF, the total and per-IP
//! connection caps, the HTTPS handshake timeout and the descriptor budget (the server under
//! `prlimit --nofile=256`, flooded with idle HTTP connections, still relays, answers TURN over
//! TCP and `/healthz`). Every refusal is read back from `/metrics`. Loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rturn::testkit::*;
use stun::attributes::{ATTR_NONCE, ATTR_REQUESTED_TRANSPORT};
use stun::message::{
    BINDING_SUCCESS, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_REFRESH, Message, Method,
};
use tokio_tungstenite::tungstenite;

const USER: &str = "alice";
const PASS: &str = "wonderland";

/// UDP, TCP and HTTP on loopback at the default worker count; `server` goes into
/// `[server]`, `more` at the end.
fn config(server: &str, more: &str) -> String {
    format!(
        "realm = \"test.local\"\n[server]\n{server}\n[listen]\nudp = [\"127.0.0.1:0\"]\n\
         tcp = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n{more}"
    )
}

/// One keep-alive request on `stream`: the status code and the body.
fn request(stream: &mut TcpStream, path: &str) -> (u16, String) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = (line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {line:?}"));
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        if header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status, String::from_utf8(body).expect("text"))
}

/// Waits (up to [`TIMEOUT`]) for the server to close `stream`; how long it took.
#[track_caller]
fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    assert!(closed_by_server(stream), "still open after {TIMEOUT:?}");
    since.elapsed()
}

/// The value of `rturn_http_connections_total{event="EVENT"}` in `samples`.
fn http_event(samples: &[(String, f64)], event: &str) -> f64 {
    sample(
        samples,
        &format!("rturn_http_connections_total{{event=\"{event}\"}}"),
    )
}

#[test]
fn request_heads_that_never_finish_are_closed_within_the_header_timeout() {
    let server = Server::start(&config(
        "http-header-timeout = \"1s\"\nhttp-idle-timeout = \"30s\"",
        "",
    ));
    let http = server.http_addr();
    // A request without its final CRLF.
    let mut half = tcp_client(http);
    let start = Instant::now();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // A connection that never says anything: its first head is timed from accept.
    let mut silent = tcp_client(http);
    // Slowloris: a header byte every 200 ms; the head's deadline does not move.
    let mut drip = tcp_client(http);
    drip.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    drip.write_all(b"GET / HTTP/1.1\r\n").expect("write");
    let mut drip_closed = false;
    for _ in 0..25 {
        let mut buf = [0u8; 64];
        match drip.read(&mut buf) {
            Ok(0) => drip_closed = true,
            Ok(_) => panic!("an answer to half a request"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => drip_closed = true,
        }
        if drip_closed || drip.write_all(b"X-Drip: 1\r\n").is_err() {
            drip_closed = true;
            break;
        }
    }
    assert!(drip_closed, "a dripping head was kept open for 5 s");
    assert!(closed_after(&mut half, start) < Duration::from_secs(5));
    assert!(closed_after(&mut silent, start) < Duration::from_secs(5));
    let samples = server.metrics();
    assert_eq!(http_event(&samples, "header_timeout"), 3.0, "{samples:?}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_within_the_idle_timeout() {
    let server = Server::start(&config(
        "http-header-timeout = \"5s\"\nhttp-idle-timeout = \"2s\"",
        "",
    ));
    let mut stream = tcp_client(server.http_addr());
    // Requests closer together than the idle timeout (by far: a loaded machine may stall a
    // while) keep the connection.
    for _ in 0..3 {
        let (status, body) = request(&mut stream, "/healthz");
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(400));
    }
    let start = Instant::now();
    assert!(closed_after(&mut stream, start) < Duration::from_secs(5));
    let samples = server.metrics();
    assert_eq!(http_event(&samples, "idle_timeout"), 1.0, "{samples:?}");
    assert_eq!(http_event(&samples, "header_timeout"), 0.0);
}

#[test]
fn a_websocket_upgrade_missing_its_last_crlf_is_closed_and_a_finished_one_outlives_the_timers() {
    let server = Server::start(&config(
        "http-header-timeout = \"1s\"\nhttp-idle-timeout = \"1s\"",
        "",
    ));
    let http = server.http_addr();
    let mut half = tcp_client(http);
    let start = Instant::now();
    half.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .expect("write");
    assert!(closed_after(&mut half, start) < Duration::from_secs(5));
    // An upgraded connection belongs to signaling: the HTTP timers no longer apply.
    let (mut ws, _) = tungstenite::client(format!("ws://{http}/ws"), tcp_client(http))
        .expect("websocket upgrade");
    std::thread::sleep(Duration::from_millis(2500));
    ws.send(tungstenite::Message::text(r#"{"type":"ping"}"#))
        .expect("send");
    let pong = loop {
        match ws.read().expect("the websocket is still open") {
            tungstenite::Message::Text(text) => break text,
            _ => continue,
        }
    };
    assert!(pong.contains("pong"), "{pong}");
    let samples = server.metrics();
    assert_eq!(http_event(&samples, "header_timeout"), 1.0, "{samples:?}");
}

#[test]
fn the_total_and_per_ip_caps_close_the_next_connection_at_accept_websockets_included() {
    let server = Server::start(&config(
        "http-header-timeout = \"30s\"\nhttp-idle-timeout = \"30s\"\n\
         max-http-connections = 3\nmax-http-connections-per-ip = 2",
        "",
    ));
    let http = server.http_addr();
    let (a1, a2) = (
        tcp_client_from("127.0.0.1", http),
        tcp_client_from("127.0.0.1", http),
    );
    let mut b1 = tcp_client_from("127.0.0.2", http);
    // b1 is served (and keeps serving: the scrapes below go through it).
    assert_eq!(request(&mut b1, "/healthz").0, 200);
    let start = Instant::now();
    let mut per_ip = tcp_client_from("127.0.0.1", http);
    assert!(closed_after(&mut per_ip, start) < Duration::from_secs(5));
    let mut over = tcp_client_from("127.0.0.3", http);
    assert!(closed_after(&mut over, start) < Duration::from_secs(5));
    let (_, text) = request(&mut b1, "/metrics");
    assert!(text.contains("rturn_http_connections_total{event=\"refused_per_ip\"} 1"));
    assert!(text.contains("rturn_http_connections_total{event=\"refused_max\"} 1"));

    // Upgraded to WebSockets, two connections still hold their places.
    drop((a1, a2));
    let websocket = || loop {
        // The server sees a1 and a2 close a moment later; until then it refuses.
        match tungstenite::client(format!("ws://{http}/ws"), tcp_client(http)) {
            Ok((ws, _)) => return ws,
            Err(_) if start.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("no websocket: {e}"),
        }
    };
    let (_w1, _w2) = (websocket(), websocket());
    let refused_before = {
        let (_, text) = request(&mut b1, "/metrics");
        let line = (text.lines())
            .find(|l| l.starts_with("rturn_http_connections_total{event=\"refused_per_ip\"}"))
            .map(str::to_owned);
        line.expect("the per-IP counter")
    };
    let mut third = tcp_client_from("127.0.0.1", http);
    assert!(closed_after(&mut third, Instant::now()) < Duration::from_secs(5));
    let mut fourth = tcp_client_from("127.0.0.4", http);
    assert!(closed_after(&mut fourth, Instant::now()) < Duration::from_secs(5));
    let (_, text) = request(&mut b1, "/metrics");
    let per_ip: u64 = (refused_before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    let now = format!(
        "rturn_http_connections_total{{event=\"refused_per_ip\"}} {}",
        per_ip + 1
    );
    assert!(text.contains(&now), "{text}");
    assert!(
        text.contains("rturn_http_connections_total{event=\"refused_max\"} 2"),
        "{text}"
    );
}

#[test]
fn https_handshake_timeouts_and_refused_websocket_upgrades_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = test_certificate(dir.path());
    let server = Server::start(&config(
        "tls-handshake-timeout = \"1s\"",
        &format!("https = \"127.0.0.1:0\"\n{tls}\n[signal]\nmax-connections-per-ip = 1\n"),
    ));
    let https = server.https.expect("an https listener");
    let mut silent = tcp_client(https);
    let start = Instant::now();
    assert!(closed_after(&mut silent, start) < Duration::from_secs(5));

    let http = server.http_addr();
    let (_first, _) =
        tungstenite::client(format!("ws://{http}/ws"), tcp_client(http)).expect("websocket");
    match tungstenite::client(format!("ws://{http}/ws"), tcp_client(http)) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 503);
        }
        Ok(_) => panic!("a second websocket past max-connections-per-ip = 1"),
        Err(e) => panic!("unexpected: {e}"),
    }
    let samples = server.metrics();
    assert_eq!(
        http_event(&samples, "handshake_timeout"),
        1.0,
        "{samples:?}"
    );
    assert_eq!(
        sample(&samples, "rturn_signal_connections_refused_total"),
        1.0
    );
}

/// A descriptor limit that leaves a server at the default worker count (one per core, each
/// with a few descriptors of its own) as many spare as `base` leaves one with two workers.
fn nofile(base: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    base + 4 * cores.saturating_sub(2)
}

/// A TURN Allocate for UDP; signed as alice with `nonce`.
fn allocate(nonce: Option<&str>) -> Message {
    signed(METHOD_ALLOCATE, nonce, |m| {
        m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    })
}

/// A TURN request with what `add` adds; signed as alice with `nonce`.
fn signed(method: Method, nonce: Option<&str>, add: impl FnOnce(&mut Message)) -> Message {
    turn_request(method, nonce.map(alice), add)
}

#[test]
fn idle_http_connections_cannot_take_the_descriptors_of_the_relay() {
    // Timers far away: the descriptor budget alone must hold.
    let server = Server::start_with_nofile(
        &config(
            "http-header-timeout = \"60s\"\nhttp-idle-timeout = \"60s\"",
            &format!("[relay]\nrelay-ip = \"127.0.0.1\"\n[auth.users]\n{USER} = \"{PASS}\"\n"),
        ),
        nofile(256),
    );
    let http = server.http_addr();
    let idle: Vec<TcpStream> = (0..300).map(|_| tcp_client(http)).collect();
    // The server has seen (accepted, refused or shed) every one of them once a request on
    // a later connection is answered; the relay still gets its sockets.
    let udp = udp_client(server.udp[0]);
    let challenge = udp_exchange(&udp, &allocate(None));
    assert_eq!(error_code(&challenge), Some(401));
    let nonce = String::from_utf8(challenge.get(ATTR_NONCE).expect("NONCE")).expect("text");
    let allocated = udp_exchange(&udp, &allocate(Some(&nonce)));
    assert_eq!(
        allocated.typ.class,
        CLASS_SUCCESS_RESPONSE,
        "Allocate answered {:?}",
        error_code(&allocated)
    );
    // TURN over TCP answers.
    let mut tcp = tcp_client(server.tcp[0]);
    let binding = binding_request(&[], true);
    assert_eq!(tcp_exchange(&mut tcp, &binding).typ, BINDING_SUCCESS);
    // And HTTP still answers a newcomer: idle connections gave way.
    let health = http_body(http, "/healthz");
    assert!(health.contains("\"ok\""), "{health}");
    let samples = server.metrics();
    let limit = sample(&samples, "rturn_descriptors{kind=\"limit\"}");
    assert_eq!(limit, f64::from(nofile(256)));
    let shed = http_event(&samples, "shed");
    let http_max = sample(&samples, "rturn_descriptors{kind=\"http_max\"}");
    assert!(http_max > 0.0 && http_max < 200.0, "{samples:?}");
    assert!(shed >= 300.0 - http_max, "{shed} shed; {samples:?}");
    drop(idle);
    let log = server.log();
    assert!(log.contains("descriptor budget"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn failed_accepts_back_off_are_counted_and_the_listener_recovers() {
    // Relay sockets may use every descriptor the connections leave: allocate until the
    // relay runs out (508), so the next accept fails with EMFILE.
    let server = Server::start_with_nofile(
        &config(
            "",
            &format!("[relay]\nrelay-ip = \"127.0.0.1\"\n[auth.users]\n{USER} = \"{PASS}\"\n"),
        ),
        nofile(128),
    );
    let mut held = Vec::new();
    let exhausted = (0..200).any(|_| {
        let udp = udp_client(server.udp[0]);
        let challenge = udp_exchange(&udp, &allocate(None));
        let nonce = String::from_utf8(challenge.get(ATTR_NONCE).expect("NONCE")).expect("text");
        let answer = udp_exchange(&udp, &allocate(Some(&nonce)));
        if answer.typ.class == CLASS_SUCCESS_RESPONSE {
            held.push((udp, nonce));
            return false;
        }
        assert_eq!(error_code(&answer), Some(508));
        true
    });
    assert!(
        exhausted,
        "200 allocations under a limit of {} descriptors",
        nofile(128)
    );
    // Nothing left to accept with: the listener pauses and retries, quietly.
    let waiting = tcp_client(server.http_addr());
    std::thread::sleep(Duration::from_millis(1500));
    for (udp, nonce) in &held {
        let refresh = signed(METHOD_REFRESH, Some(nonce), |m| {
            m.add(stun::attributes::ATTR_LIFETIME, &0u32.to_be_bytes());
        });
        let answer = udp_exchange(udp, &refresh);
        assert_eq!(answer.typ.class, CLASS_SUCCESS_RESPONSE);
    }
    // Descriptors are back: the waiting connection and a new one are served.
    let samples = server.metrics();
    let errors = sample(&samples, "rturn_accept_errors_total{listener=\"http\"}");
    // 10 ms doubling: a handful of retries in 1.5 s, not a spin.
    assert!((1.0..=12.0).contains(&errors), "{errors} failed accepts");
    drop(waiting);
    let log = server.log();
    let lines = log.matches("accept failed").count();
    assert!(lines <= 2, "{lines} log lines for failed accepts:\n{log}");
}
