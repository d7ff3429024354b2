//! Black-box: the WebSocket signaling relay of the built binary. Clients join rooms, learn each
//! other's server-assigned IDs, relay offers, answers and candidates untouched, and are told
//! when a peer leaves, closes or stops answering heartbeats; every limit (room size, message
//! size, rate, connections per IP), token, origin and the ICE-servers API is checked from the
//! outside, with credentials that must really allocate on rturn's own TURN listener.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

/// Everything but `[signal]` and `[ice]`: an HTTP listener next to STUN/TURN on loopback.
const BASE: &str = "http = \"127.0.0.1:0\"\n\
    [relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n\
    [auth]\nstatic-auth-secret = \"test-secret\"\n";

/// How long a message that must not arrive is waited for.
const QUIET: Duration = Duration::from_millis(500);

/// A made-up peer ID in the shape of a real one.
const MADE_UP_ID: &str = "0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// Harness: a server with its HTTP address, a WebSocket client, a plain HTTP GET.
// ---------------------------------------------------------------------------------------------

/// Awaits `fut`, failing the test after [`TIMEOUT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
}

/// A running rturn with an HTTP listener.
struct Relay {
    server: Server,
    http: SocketAddr,
}

impl Relay {
    /// Starts rturn with `signal` as the `[signal]` section and `ice` as the `[ice]` section.
    fn start(signal: &str, ice: &str) -> Relay {
        let mut server = Server::start(&relay_config(signal, ice));
        let http = http_addr(&mut server);
        Relay { server, http }
    }

    /// Connects a WebSocket to `path` (with its query), panicking on refusal.
    async fn connect(&self, path: &str) -> Ws {
        match self.try_connect(path, &[]).await {
            Ok(ws) => ws,
            Err(e) => panic!("upgrade of {path} failed: {e}\n{}", self.server.log()),
        }
    }

    /// Connects a WebSocket to `path` with extra request `headers`.
    async fn try_connect(&self, path: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
        let tcp = within("TCP connect", TcpStream::connect(self.http))
            .await
            .unwrap();
        let mut request = format!("ws://{}{path}", self.http)
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (stream, _) = within(
            "WebSocket handshake",
            tokio_tungstenite::client_async(request, tcp),
        )
        .await?;
        Ok(Ws { stream })
    }

    /// The HTTP status with which the upgrade of `path` is refused.
    async fn refused(&self, path: &str, headers: &[(&str, &str)]) -> u16 {
        match self.try_connect(path, headers).await {
            Ok(_) => panic!("upgrade of {path} with {headers:?} was accepted"),
            Err(WsError::Http(response)) => response.status().as_u16(),
            Err(e) => panic!("upgrade of {path} failed without an HTTP status: {e}"),
        }
    }

    /// `GET path` over plain HTTP/1.1.
    fn get(&self, path: &str) -> HttpResponse {
        http_get(self.http, path)
    }
}

/// A config with the HTTP listener, loopback relays and the given `[signal]` and `[ice]`.
fn relay_config(signal: &str, ice: &str) -> String {
    loopback_config(&format!("{BASE}[signal]\n{signal}\n[ice]\n{ice}\n"))
}

/// The address from rturn's `listening on http ADDR` log line.
fn http_addr(server: &mut Server) -> SocketAddr {
    const MARK: &str = "listening on http ";
    let found = server
        .log()
        .lines()
        .find(|l| l.contains(MARK))
        .map(str::to_owned);
    let line = found.unwrap_or_else(|| server.wait_line(|l| l.contains(MARK)));
    let rest = line.split(MARK).nth(1).unwrap();
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
        .collect();
    addr.parse()
        .unwrap_or_else(|e| panic!("bad HTTP address in {line:?}: {e}"))
}

/// A signaling client.
struct Ws {
    stream: WebSocketStream<TcpStream>,
}

/// What a `join` answered.
struct Joined {
    you: String,
    peers: Vec<String>,
    reply: Value,
}

impl Ws {
    /// Sends `msg` as one text frame.
    async fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string()).await;
    }

    /// Sends `text` verbatim as one text frame.
    async fn send_text(&mut self, text: &str) {
        within("send", self.stream.send(Message::text(text)))
            .await
            .unwrap();
    }

    /// The next text frame, skipping control frames; `None` once the server closed.
    async fn next_text(&mut self) -> Option<String> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next JSON message, within `limit`.
    async fn recv_within(&mut self, limit: Duration) -> Value {
        match timeout(limit, self.next_text()).await {
            Ok(Some(text)) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {text}")),
            Ok(None) => panic!("the server closed the connection"),
            Err(_) => panic!("no message within {limit:?}"),
        }
    }

    /// The next JSON message.
    async fn recv(&mut self) -> Value {
        self.recv_within(TIMEOUT).await
    }

    /// The next message, which must be of `typ`.
    async fn expect(&mut self, typ: &str) -> Value {
        let msg = self.recv().await;
        assert_eq!(msg["type"], typ, "expected a {typ} message, got {msg}");
        msg
    }

    /// The next message, which must be an error with `code` and a message for humans.
    async fn expect_error(&mut self, code: &str) -> Value {
        let msg = self.expect("error").await;
        assert_eq!(msg["code"], code, "wrong error code in {msg}");
        assert!(
            msg["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {msg}"
        );
        msg
    }

    /// Asserts that no message arrives for `quiet` and the connection stays open.
    async fn silent(&mut self, quiet: Duration) {
        match timeout(quiet, self.next_text()).await {
            Err(_) => {}
            Ok(Some(text)) => panic!("unexpected message: {text}"),
            Ok(None) => panic!("the server closed the connection"),
        }
    }

    /// A `ping` answered by a `pong`: the connection is open and served.
    async fn ping_pong(&mut self) {
        self.send(json!({"type": "ping"})).await;
        self.expect("pong").await;
    }

    /// Joins `room` and checks the `peers` reply.
    async fn join(&mut self, room: &str) -> Joined {
        self.send(json!({"type": "join", "room": room})).await;
        let reply = self.expect("peers").await;
        assert_eq!(reply["room"], room, "{reply}");
        let you = reply["you"].as_str().unwrap_or_else(|| panic!("{reply}"));
        assert_unguessable(you);
        let peers: Vec<String> = reply["peers"]
            .as_array()
            .unwrap_or_else(|| panic!("peers is not an array: {reply}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert!(!peers.iter().any(|p| p == you), "you among peers: {reply}");
        assert!(
            reply["iceServers"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "no iceServers: {reply}"
        );
        Joined {
            you: you.to_owned(),
            peers,
            reply,
        }
    }

    /// Whether the server closes the connection (close frame, EOF or reset) within the timeout.
    async fn closed_by_server(&mut self) -> bool {
        loop {
            match timeout(TIMEOUT, self.stream.next()).await {
                Err(_) => return false,
                Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// Asserts `id` carries at least 128 bits: 32+ hex digits or 22+ base64url characters.
fn assert_unguessable(id: &str) {
    let hex = id.chars().all(|c| c.is_ascii_hexdigit());
    let base64url = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    assert!(
        (hex && id.len() >= 32) || (!hex && base64url && id.len() >= 22),
        "peer ID {id:?} is too short to carry 128 random bits"
    );
}

/// A plain HTTP response.
struct HttpResponse {
    status: u16,
    headers: String,
    body: String,
}

/// `GET path` on `addr` with `Connection: close`, read to the end.
fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = tcp_client(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {raw:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signaling token by the contract: `EXPIRY:hex(HMAC-SHA256(secret, "EXPIRY:ROOM"))`.
fn token(secret: &str, expiry: u64, room: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{expiry}:{room}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{expiry}:{hex}")
}

/// Runs `rturn -c FILE token ARGS` and returns the one line it prints.
fn mint_token(config: &str, args: &[&str]) -> String {
    let (_dir, path) = write_config(config);
    let out = rturn()
        .arg("-c")
        .arg(&path)
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "rturn token {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stdout:?}");
    lines[0].trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Rooms and relaying
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn join_lists_peers_and_announces_the_newcomer() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("lobby").await;
    assert!(ja.peers.is_empty(), "first in the room: {}", ja.reply);

    let mut b = relay.connect("/ws").await;
    let jb = b.join("lobby").await;
    assert_eq!(jb.peers, std::slice::from_ref(&ja.you));
    let news = a.expect("new_peer").await;
    assert_eq!(news["id"], jb.you.as_str());

    let mut c = relay.connect("/ws").await;
    let jc = c.join("lobby").await;
    let mut peers = jc.peers.clone();
    peers.sort();
    let mut expected = vec![ja.you.clone(), jb.you.clone()];
    expected.sort();
    assert_eq!(peers, expected);
    assert_eq!(a.expect("new_peer").await["id"], jc.you.as_str());
    assert_eq!(b.expect("new_peer").await["id"], jc.you.as_str());
    c.silent(QUIET).await; // no new_peer about oneself

    // IDs are distinct and not a counter: no two share a prefix.
    let mut ids = vec![ja.you, jb.you, jc.you];
    for room in ["x", "y", "z", "w", "v"] {
        ids.push(relay.connect("/ws").await.join(room).await.you);
    }
    for (i, x) in ids.iter().enumerate() {
        for y in &ids[i + 1..] {
            assert_ne!(x[..8], y[..8], "IDs {x} and {y} look sequential");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offer_answer_and_candidate_arrive_with_from_and_nothing_else_changed() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("call").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("call").await;
    a.expect("new_peer").await;
    let mut c = relay.connect("/ws").await;
    c.join("call").await;
    a.expect("new_peer").await;
    b.expect("new_peer").await;

    // A 2 000-character SDP with CRLFs, quotes, backslashes and non-ASCII text.
    let mut sdp =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=\"q\\\"\r\n");
    while sdp.chars().count() < 1990 {
        sdp.push_str("a=fmtp:111 minptime=10;useinbandfec=1 é☃\r\n");
    }
    let sdp: String = sdp.chars().take(2000).collect();
    assert_eq!(sdp.chars().count(), 2000);

    let offer = json!({
        "type": "offer",
        "to": jb.you,
        "from": "forged-sender",
        "sdp": {"type": "offer", "sdp": sdp},
        "meta": {
            "nested": [1, -2, 3.5, true, null, {"deep": ["x", {"deeper": "\u{1F600}"}]}],
            "big": 18_446_744_073_709_551_615u64,
            "empty": {},
            "tab\tkey": "line\nbreak"
        }
    });
    a.send(offer.clone()).await;
    let got = b.expect("offer").await;
    assert_eq!(got["from"], ja.you.as_str(), "from is the real sender");
    let mut expected = offer;
    expected["from"] = json!(ja.you);
    assert_eq!(got, expected, "fields other than from must be untouched");
    assert_eq!(
        got["sdp"]["sdp"].as_str().unwrap().as_bytes(),
        sdp.as_bytes()
    );

    let answer = json!({"type": "answer", "to": ja.you, "sdp": {"type": "answer", "sdp": "v=0\r\n"}, "n": 7});
    b.send(answer.clone()).await;
    let got = a.expect("answer").await;
    let mut expected = answer;
    expected["from"] = json!(jb.you);
    assert_eq!(got, expected);

    let candidate = json!({
        "type": "candidate",
        "to": jb.you,
        "candidate": {
            "candidate": "candidate:842163049 1 udp 1677729535 192.0.2.7 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": null
        }
    });
    a.send(candidate.clone()).await;
    let got = b.expect("candidate").await;
    let mut expected = candidate;
    expected["from"] = json!(ja.you);
    assert_eq!(got, expected);

    // Only the addressee hears any of it.
    c.silent(QUIET).await;
    a.silent(Duration::ZERO).await;
    b.silent(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relaying_to_a_peer_elsewhere_or_nowhere_is_unknown_peer() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    a.join("one").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("two").await;

    for typ in ["offer", "answer", "candidate"] {
        a.send(json!({"type": typ, "to": jb.you, "sdp": "v=0"}))
            .await;
        a.expect_error("unknown_peer").await;
        a.send(json!({"type": typ, "to": MADE_UP_ID, "sdp": "v=0"}))
            .await;
        a.expect_error("unknown_peer").await;
    }
    b.silent(QUIET).await;
    a.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relaying_before_join_is_not_joined() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    for typ in ["offer", "answer", "candidate"] {
        a.send(json!({"type": typ, "to": MADE_UP_ID, "sdp": "v=0"}))
            .await;
        a.expect_error("not_joined").await;
    }
    a.ping_pong().await;
    a.join("later").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_bad_message_and_the_connection_stays() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("r").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("r").await;
    a.expect("new_peer").await;

    let bad = [
        "this is not JSON".to_owned(),
        "{\"type\": \"join\", \"room\": ".to_owned(),
        "[1, 2, 3]".to_owned(),
        "[{\"type\": \"ping\"}]".to_owned(),
        "\"ping\"".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        json!({"room": "r"}).to_string(),
        json!({"type": "join"}).to_string(),
        json!({"type": "join", "room": 7}).to_string(),
        json!({"type": "offer", "sdp": "v=0"}).to_string(),
        json!({"type": "offer", "to": 5, "sdp": "v=0"}).to_string(),
    ];
    for text in &bad {
        b.send_text(text).await;
        let err = b.recv().await;
        assert_eq!(err["type"], "error", "{text} → {err}");
        assert_eq!(err["code"], "bad_message", "{text} → {err}");
        assert!(err["message"].is_string(), "{err}");
    }
    a.silent(QUIET).await;
    b.ping_pong().await;

    // Still in the room: a relays to b.
    a.send(json!({"type": "offer", "to": jb.you, "sdp": "v=0"}))
        .await;
    assert_eq!(b.expect("offer").await["from"], ja.you.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_type_is_reported_and_the_connection_stays() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    a.send(json!({"type": "dance"})).await;
    a.expect_error("unknown_type").await;
    a.join("r").await;
    a.send(json!({"type": "dance", "to": MADE_UP_ID})).await;
    a.expect_error("unknown_type").await;
    a.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_is_answered_with_pong_in_and_out_of_a_room() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    a.ping_pong().await;
    a.join("r").await;
    a.ping_pong().await;
    a.silent(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_room_refuses_the_next_joiner() {
    let relay = Relay::start("max-peers-per-room = 2", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("full").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("full").await;
    a.expect("new_peer").await;

    let mut c = relay.connect("/ws").await;
    c.send(json!({"type": "join", "room": "full"})).await;
    c.expect_error("room_full").await;
    a.silent(QUIET).await;
    b.silent(Duration::ZERO).await;
    c.send(json!({"type": "offer", "to": ja.you, "sdp": "v=0"}))
        .await;
    c.expect_error("not_joined").await;

    // A place freed by a leaver is taken by the next joiner.
    a.send(json!({"type": "leave"})).await;
    assert_eq!(b.expect("remove_peer").await["id"], ja.you.as_str());
    let jc = c.join("full").await;
    assert_eq!(jc.peers, [jb.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_the_size_limit_is_too_large_and_the_connection_stays() {
    let relay = Relay::start("max-message-size = 4096", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("r").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("r").await;
    a.expect("new_peer").await;

    let sized = |len: usize| {
        let mut msg = json!({"type": "offer", "to": jb.you, "sdp": ""});
        let pad = len - msg.to_string().len();
        msg["sdp"] = json!("s".repeat(pad));
        assert_eq!(msg.to_string().len(), len);
        msg
    };
    // Under the limit: relayed intact.
    let fits = sized(4000);
    a.send(fits.clone()).await;
    let got = b.expect("offer").await;
    assert_eq!(got["sdp"], fits["sdp"]);
    assert_eq!(got["from"], ja.you.as_str());

    // Over it: an error for the sender, nothing for the addressee.
    a.send(sized(5000)).await;
    a.expect_error("too_large").await;
    b.silent(QUIET).await;

    a.ping_pong().await;
    a.send(fits.clone()).await;
    assert_eq!(b.expect("offer").await["sdp"], fits["sdp"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_past_the_rate_is_rate_limited_and_the_connection_recovers() {
    const RATE: usize = 10;
    let relay = Relay::start(&format!("messages-per-second = {RATE}"), "");
    let mut a = relay.connect("/ws").await;
    for _ in 0..4 * RATE {
        a.stream
            .feed(Message::text(json!({"type": "ping"}).to_string()))
            .await
            .unwrap();
    }
    within("flush", a.stream.flush()).await.unwrap();

    let (mut pongs, mut limited) = (0, 0);
    loop {
        let Ok(text) = timeout(Duration::from_millis(700), a.next_text()).await else {
            break;
        };
        let text = text.unwrap_or_else(|| panic!("closed after a burst\n{}", relay.server.log()));
        let msg: Value = serde_json::from_str(&text).unwrap();
        match (msg["type"].as_str(), msg["code"].as_str()) {
            (Some("pong"), _) => pongs += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected reply to a burst of pings: {msg}"),
        }
    }
    assert!(limited >= 1, "no rate_limited after {} pings", 4 * RATE);
    assert!(
        (RATE..=RATE + 5).contains(&pongs),
        "{pongs} pongs for a burst of {} at {RATE}/s with a burst of {RATE}",
        4 * RATE
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..RATE / 2 {
        a.ping_pong().await;
    }
    a.join("after-the-storm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leave_and_close_announce_remove_peer_and_empty_rooms_vanish() {
    let relay = Relay::start("", "");
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut ws = relay.connect("/ws").await;
        ids.push(ws.join("r").await.you);
        clients.push(ws);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        for _ in i + 1..4 {
            ws.expect("new_peer").await;
        }
    }
    let [mut a, mut b, mut c, mut d] = <[Ws; 4]>::try_from(clients).ok().unwrap();

    // An explicit leave: the connection stays, the others are told.
    a.send(json!({"type": "leave"})).await;
    for ws in [&mut b, &mut d] {
        assert_eq!(ws.expect("remove_peer").await["id"], ids[0].as_str());
    }
    a.ping_pong().await;

    // A close handshake.
    within("close", b.stream.close(None)).await.unwrap();
    assert_eq!(d.expect("remove_peer").await["id"], ids[1].as_str());
    assert_eq!(c.expect("remove_peer").await["id"], ids[0].as_str());
    assert_eq!(c.expect("remove_peer").await["id"], ids[1].as_str());

    // A TCP close without a close frame.
    drop(c);
    assert_eq!(d.expect("remove_peer").await["id"], ids[2].as_str());

    d.send(json!({"type": "leave"})).await;
    d.silent(QUIET).await;

    let mut e = relay.connect("/ws").await;
    let je = e.join("r").await;
    assert!(
        je.peers.is_empty(),
        "the emptied room lingers: {}",
        je.reply
    );
    let ja = a.join("r").await;
    assert_eq!(ja.peers, [je.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_another_room_leaves_the_first() {
    let relay = Relay::start("", "");
    let mut a = relay.connect("/ws").await;
    let ja = a.join("first").await;
    let mut b = relay.connect("/ws").await;
    let jb = b.join("first").await;
    a.expect("new_peer").await;

    let ja2 = a.join("second").await;
    assert!(ja2.peers.is_empty(), "{}", ja2.reply);
    assert_eq!(b.expect("remove_peer").await["id"], ja.you.as_str());

    for to in [&ja.you, &ja2.you] {
        b.send(json!({"type": "offer", "to": to, "sdp": "v=0"}))
            .await;
        b.expect_error("unknown_peer").await;
    }
    a.silent(QUIET).await;

    let mut c = relay.connect("/ws").await;
    assert_eq!(c.join("first").await.peers, [jb.you]);
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_keep_rooms_of_the_same_name_apart() {
    let relay = Relay::start("", "");
    let mut a1 = relay.connect("/ws/a").await;
    let ja1 = a1.join("lobby").await;

    let mut b1 = relay.connect("/ws/b").await;
    let jb1 = b1.join("lobby").await;
    assert!(jb1.peers.is_empty(), "saw another namespace: {}", jb1.reply);
    let mut root = relay.connect("/ws").await;
    let jr = root.join("lobby").await;
    assert!(jr.peers.is_empty(), "saw another namespace: {}", jr.reply);
    a1.silent(QUIET).await;

    b1.send(json!({"type": "offer", "to": ja1.you, "sdp": "v=0"}))
        .await;
    b1.expect_error("unknown_peer").await;
    a1.send(json!({"type": "offer", "to": jb1.you, "sdp": "v=0"}))
        .await;
    a1.expect_error("unknown_peer").await;
    a1.send(json!({"type": "offer", "to": jr.you, "sdp": "v=0"}))
        .await;
    a1.expect_error("unknown_peer").await;

    // The same namespace does meet.
    let mut a2 = relay.connect("/ws/a").await;
    let ja2 = a2.join("lobby").await;
    assert_eq!(ja2.peers, std::slice::from_ref(&ja1.you));
    assert_eq!(a1.expect("new_peer").await["id"], ja2.you.as_str());
    b1.silent(QUIET).await;
    root.silent(Duration::ZERO).await;

    drop(a1);
    assert_eq!(a2.expect("remove_peer").await["id"], ja1.you.as_str());
    b1.silent(QUIET).await;
}

// ---------------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_answering_pings_is_dropped_and_announced() {
    let relay = Relay::start(
        "heartbeat-interval = \"1s\"\nheartbeat-timeout = \"3s\"",
        "",
    );
    let mut honest = relay.connect("/ws").await;
    let jh = honest.join("hb").await;
    let mut mute = relay.connect("/ws").await;
    let jm = mute.join("hb").await;
    let joined = Instant::now();
    assert_eq!(honest.expect("new_peer").await["id"], jm.you.as_str());

    // `mute` is never polled from here on, so it never answers a Ping with a Pong.
    let gone = honest.recv_within(Duration::from_secs(3 + 4)).await;
    assert_eq!(gone["type"], "remove_peer", "{gone}");
    assert_eq!(gone["id"], jm.you.as_str());
    let after = joined.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "dropped after {after:?}, well before heartbeat-timeout"
    );
    assert!(
        mute.closed_by_server().await,
        "the mute connection stays open"
    );

    // The honest client, which reads and so answers every Ping, is still there more than
    // two timeouts after it joined.
    honest.silent(Duration::from_secs(4)).await;
    honest.ping_pong().await;
    let mut late = relay.connect("/ws").await;
    assert_eq!(late.join("hb").await.peers, [jh.you]);
}

// ---------------------------------------------------------------------------------------------
// Access: tokens, origins, connection caps
// ---------------------------------------------------------------------------------------------

const TOKEN_SECRET: &str = "signal-token-secret";

#[tokio::test(flavor = "multi_thread")]
async fn tokens_guard_the_websocket_and_the_ice_api() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let future = unix_now() + 600;

    assert_eq!(relay.refused("/ws", &[]).await, 401, "no token");
    assert_eq!(relay.refused("/ws?token=", &[]).await, 401, "empty token");
    assert_eq!(relay.refused("/ws?token=garbage", &[]).await, 401);
    let wrong_secret = token("not-the-secret", future, "");
    assert_eq!(
        relay
            .refused(&format!("/ws?token={wrong_secret}"), &[])
            .await,
        401
    );
    let good = token(TOKEN_SECRET, future, "");
    let (expiry, mac) = good.split_once(':').unwrap();
    let flipped = format!(
        "{expiry}:{}{}",
        &mac[..63],
        if mac.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(
        relay.refused(&format!("/ws?token={flipped}"), &[]).await,
        401
    );
    let moved = format!("{}:{mac}", future + 1);
    assert_eq!(
        relay.refused(&format!("/ws?token={moved}"), &[]).await,
        401,
        "expiry is signed"
    );
    let expired = token(TOKEN_SECRET, unix_now() - 10, "");
    assert_eq!(
        relay.refused(&format!("/ws?token={expired}"), &[]).await,
        401,
        "expired"
    );

    // A token computed by the contract's formula, and one minted by the CLI.
    let mut a = relay.connect(&format!("/ws?token={good}")).await;
    a.join("anything").await;
    let config = relay_config(&signal, "");
    let minted = mint_token(&config, &["--ttl", "1h"]);
    let (expiry, _) = minted.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry.abs_diff(unix_now() + 3600) <= 60,
        "{minted}: expiry not in 1h"
    );
    assert_eq!(
        minted,
        token(TOKEN_SECRET, expiry, ""),
        "CLI token off the formula"
    );
    let mut b = relay.connect(&format!("/ws/ns?token={minted}")).await;
    b.join("anywhere").await;

    // The CLI's --ttl is honoured.
    let short = mint_token(&config, &["--ttl", "1s"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        relay.refused(&format!("/ws?token={short}"), &[]).await,
        401,
        "expired CLI token"
    );

    // The ICE API is guarded too; health is not.
    assert_eq!(relay.get("/api/ice-servers").status, 401);
    assert_eq!(
        relay
            .get(&format!("/api/ice-servers?token={expired}"))
            .status,
        401
    );
    let ok = relay.get(&format!("/api/ice-servers?token={good}"));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(relay.get("/healthz").status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_token_opens_only_its_room() {
    let signal = format!("token-secret = \"{TOKEN_SECRET}\"");
    let relay = Relay::start(&signal, "");
    let config = relay_config(&signal, "");
    let minted = mint_token(&config, &["--room", "alpha", "--ttl", "1h"]);
    let (expiry, _) = minted.split_once(':').unwrap();
    assert_eq!(
        minted,
        token(TOKEN_SECRET, expiry.parse().unwrap(), "alpha"),
        "CLI room token off the formula"
    );

    let mut a = relay
        .connect(&format!("/ws?token={minted}&room=alpha"))
        .await;
    a.send(json!({"type": "join", "room": "beta"})).await;
    a.expect_error("unauthorized").await;
    a.join("alpha").await;
    a.send(json!({"type": "join", "room": "beta"})).await;
    a.expect_error("unauthorized").await;
    a.ping_pong().await;

    // Claiming another room, or none, with the same token gets nowhere near beta.
    for path in [
        format!("/ws?token={minted}&room=beta"),
        format!("/ws?token={minted}"),
    ] {
        match relay.try_connect(&path, &[]).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401, "{path}"),
            Err(e) => panic!("{path}: {e}"),
            Ok(mut ws) => {
                ws.send(json!({"type": "join", "room": "beta"})).await;
                ws.expect_error("unauthorized").await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_origins_may_connect() {
    let relay = Relay::start("allowed-origins = [\"https://good.example\"]", "");
    let status = relay
        .refused("/ws", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(status, 403);
    let status = relay
        .refused("/ws", &[("Origin", "https://good.example.evil.example")])
        .await;
    assert_eq!(status, 403);

    let mut good = relay
        .try_connect("/ws", &[("Origin", "https://good.example")])
        .await
        .unwrap();
    good.join("r").await;
    let own = format!("http://{}", relay.http);
    let mut own = relay.try_connect("/ws", &[("Origin", &own)]).await.unwrap();
    own.join("r").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_per_ip_are_capped_and_released() {
    let relay = Relay::start("max-connections-per-ip = 2", "");
    let mut a = relay.connect("/ws").await;
    let mut b = relay.connect("/ws").await;
    a.ping_pong().await;
    b.ping_pong().await;
    assert_eq!(relay.refused("/ws", &[]).await, 503);
    assert_eq!(relay.refused("/ws/other", &[]).await, 503);

    // A closed connection gives its place back.
    within("close", a.stream.close(None)).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut c = loop {
        match relay.try_connect("/ws", &[]).await {
            Ok(ws) => break ws,
            Err(WsError::Http(r)) if r.status() == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("place not released: {e}"),
        }
    };
    c.ping_pong().await;
    b.ping_pong().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP: ICE servers, health, pages
// ---------------------------------------------------------------------------------------------

/// The `iceServers` array of `/api/ice-servers`, and its `ttl`.
fn ice_servers(relay: &Relay) -> (Vec<Value>, u64) {
    let response = relay.get("/api/ice-servers");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.headers.contains("application/json"),
        "{}",
        response.headers
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    let servers = body["iceServers"].as_array().unwrap().clone();
    (
        servers,
        body["ttl"].as_u64().unwrap_or_else(|| panic!("{body}")),
    )
}

/// All URLs of `servers`, in order.
fn urls(servers: &[Value]) -> Vec<String> {
    servers
        .iter()
        .flat_map(|s| s["urls"].as_array().unwrap().iter())
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ice_servers_point_at_rturn_and_their_credentials_allocate() {
    let relay = Relay::start("", "credential-ttl = \"10m\"");
    let (udp, tcp) = (relay.server.udp[0].port(), relay.server.tcp[0].port());
    let (servers, ttl) = ice_servers(&relay);
    assert_eq!(ttl, 600);
    let mut got = urls(&servers);
    got.sort();
    let mut expected = vec![
        format!("stun:127.0.0.1:{udp}"),
        format!("turn:127.0.0.1:{udp}?transport=udp"),
        format!("turn:127.0.0.1:{tcp}?transport=tcp"),
    ];
    expected.sort();
    assert_eq!(got, expected);

    let turn = servers
        .iter()
        .find(|s| s["username"].is_string())
        .unwrap_or_else(|| panic!("no TURN credentials in {servers:?}"));
    assert!(
        urls(std::slice::from_ref(turn))
            .iter()
            .all(|u| u.starts_with("turn:"))
    );
    let username = turn["username"].as_str().unwrap();
    let credential = turn["credential"].as_str().unwrap();
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!(
        expiry.abs_diff(unix_now() + 600) <= 60,
        "{username}: expiry not in ttl"
    );

    // The signaling peers reply hands out the same servers.
    let mut ws = relay.connect("/ws").await;
    let joined = ws.join("r").await;
    let mut from_join = urls(joined.reply["iceServers"].as_array().unwrap());
    from_join.sort();
    assert_eq!(from_join, expected);

    // The credentials allocate on rturn's TURN listener, with a client we did not write.
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = Client::new(ClientConfig {
        stun_serv_addr: relay.server.udp[0].to_string(),
        turn_serv_addr: relay.server.udp[0].to_string(),
        username: username.to_owned(),
        password: credential.to_owned(),
        realm: "test.local".to_owned(),
        software: String::new(),
        rto_in_ms: 0,
        conn: socket,
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let allocated = match within("allocate", client.allocate()).await {
        Ok(allocated) => allocated,
        Err(e) => panic!(
            "allocate with /api/ice-servers credentials: {e}\n{}",
            relay.server.log()
        ),
    };
    let relayed = allocated.local_addr().unwrap();
    assert_eq!(relayed.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    within("client close", client.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ice_servers_use_the_public_host() {
    let relay = Relay::start("", "public-host = \"turn.example.org\"");
    let (udp, tcp) = (relay.server.udp[0].port(), relay.server.tcp[0].port());
    let mut got = urls(&ice_servers(&relay).0);
    got.sort();
    let mut expected = vec![
        format!("stun:turn.example.org:{udp}"),
        format!("turn:turn.example.org:{udp}?transport=udp"),
        format!("turn:turn.example.org:{tcp}?transport=tcp"),
    ];
    expected.sort();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_pages_are_served() {
    let relay = Relay::start("", "");
    assert_eq!(relay.get("/healthz").status, 200);
    for path in ["/", "/room/abc"] {
        let page = relay.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert!(
            page.headers.contains("text/html"),
            "{path}: {}",
            page.headers
        );
        assert!(page.body.to_ascii_lowercase().contains("<html"), "{path}");
    }
    assert_eq!(relay.get("/no/such/page").status, 404);
}
