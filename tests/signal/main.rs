//! Black-box: the WebSocket signaling relay of the built binary. Clients join rooms, learn each
//! other's server-assigned IDs, relay offers, answers and candidates untouched, and are told
//! when a peer leaves, closes or stops answering heartbeats; every limit (room size, message
//! size, message and join rates, connections in total and per IP, bytes queued for a client
//! that stops reading, and the memory that comes back after), token, origin and the
//! ICE-servers API is checked from the outside, with credentials that must really allocate
//! on rturn's own TURN listener. The SkyRTC dialect on `/skyrtc` is checked with a client of
//! our own speaking it, alone and in rooms shared with `/ws` clients (`skyrtc.rs`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod access;
mod cluster;
mod limits;
mod queues;
mod rooms;
mod skyrtc;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rturn::testkit::*;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
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
        let server = Server::start(&relay_config(signal, ice));
        let http = server.http_addr();
        Relay { server, http }
    }

    /// Connects a WebSocket to `path` (with its query), panicking on refusal.
    async fn connect(&self, path: &str) -> Ws {
        match self.try_connect(path, &[]).await {
            Ok(ws) => ws,
            Err(e) => panic!("upgrade of {path} failed: {e}\n{}", self.server.log()),
        }
    }

    /// `first` joins `room`, then a second client on `/ws`; `first` has been told of it.
    async fn pair_with(&self, mut first: Ws, room: &str) -> (Ws, Joined, Ws, Joined) {
        let joined_first = first.join(room).await;
        let mut second = self.connect("/ws").await;
        let joined_second = second.join(room).await;
        first.expect("new_peer").await;
        (first, joined_first, second, joined_second)
    }

    /// Two clients on `/ws` in `room`, the first told of the second.
    async fn pair(&self, room: &str) -> (Ws, Joined, Ws, Joined) {
        self.pair_with(self.connect("/ws").await, room).await
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

    /// The value of the `/metrics` sample `name` (labels included, as printed).
    fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics").body;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
    }
}

/// A config with the HTTP listener, loopback relays and the given `[signal]` and `[ice]`.
fn relay_config(signal: &str, ice: &str) -> String {
    loopback_config(&format!("{BASE}[signal]\n{signal}\n[ice]\n{ice}\n"))
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
