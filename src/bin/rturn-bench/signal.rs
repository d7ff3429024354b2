//! `signal`: many WebSocket clients in rooms of the signaling relay, exchanging offers,
//! answers and candidates; relay latency, lost messages and errors, and the server's memory.
//!
//! Client `i` joins room `bench-{i mod rooms}` (the protocol of README.md: `join`, then
//! `peers` lists who is there and `new_peer` announces who comes later). Once every client
//! has joined (or the set-up time is over), all start together: each sends `--rate` messages
//! a second, to the other members of its room in turn, cycling offer → answer → candidate,
//! spread evenly so the server sees a steady stream. A message carries its send time
//! (`bench_us`, microseconds since the run's start); the recipient records send → receipt.
//! Sends stop after `--duration`; clients read on until every message sent has arrived, for
//! [`DRAIN`] at most, then close. A message sent and never received is lost; every `error`
//! frame is counted by code.
//!
//! Each client connects from its own source address on 127.0.0.0/8 (as `proto` does for
//! UDP), so ten thousand connections neither run out of ephemeral ports nor meet the TIME_WAIT
//! of an earlier run. `--server-pid` samples the server's RSS once all have joined and every
//! second of the exchange (the sum, given once per node).
//!
//! Given several `--server`s (the nodes of a `[cluster]`), the members of each room are
//! spread over them: client `i` connects to server `(i / rooms) mod servers`, so its room's
//! next member is on the next node and nearly every message crosses nodes through Redis.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rturn::signal::protocol::ErrorCode;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::sync::CancellationToken;

use crate::procfs;
use crate::proto::{Failure, Kind, Step, next_source};
use crate::stats::{Histogram, Tally, round};

/// After the last send, clients read at most this long for what is still on its way.
const DRAIN: Duration = Duration::from_secs(2);
/// How often the end of the drain checks whether everything has arrived.
const DRAIN_CHECK: Duration = Duration::from_millis(20);
/// Pause between the last join and the first message, for the `new_peer` announcements.
const SETTLE: Duration = Duration::from_millis(500);
/// A write taking longer than this counts as a failure.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server's RSS is sampled during the exchange.
const RSS_EVERY: Duration = Duration::from_secs(1);
/// Frames one client handles at most, whatever the run length.
const MAX_FRAMES: u64 = 10_000_000;
/// Per-connection read buffer: signaling frames are small, and there are thousands of us.
const READ_BUFFER: usize = 4096;
/// A host candidate as a browser sends it.
const CANDIDATE: &str = "candidate:1 1 udp 2122260223 192.0.2.10 54321 typ host generation 0";

/// What `signal` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    /// The HTTP listeners of the server, or of each node of a cluster.
    pub(crate) servers: Vec<SocketAddr>,
    /// The WebSocket route, `/ws` or `/ws/<namespace>`.
    pub(crate) path: String,
    pub(crate) clients: usize,
    pub(crate) rooms: usize,
    /// Messages per second each client sends.
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    /// Clients connecting and joining at once.
    pub(crate) in_flight: usize,
    pub(crate) setup_timeout: Duration,
    /// Bytes of SDP in each offer and answer.
    pub(crate) sdp_size: usize,
    /// The server's processes (one per node), to read their RSS from `/proc`.
    pub(crate) server_pids: Vec<u32>,
}

/// What every client shares.
struct Shared {
    params: Params,
    /// Where `bench_us` counts from.
    start: Instant,
    latencies: Mutex<Histogram>,
    /// Messages handed to the server, all clients together.
    sent: AtomicU64,
    /// Relayed messages received, all clients together.
    received: AtomicU64,
    /// Clients with a send still to make: the drain may only judge `sent` against
    /// `received` once none is left, or a send running late would count as lost.
    sending: AtomicU64,
    connecting: Semaphore,
    /// Cancelled when everything sent has arrived, or the drain is over.
    done: CancellationToken,
    sdp: String,
}

/// Connects every client, runs the exchange, reports.
pub(crate) async fn run(params: Params) -> anyhow::Result<serde_json::Value> {
    procfs::check_fd_limit(params.clients, &format!("--clients {}", params.clients))?;
    let start = Instant::now();
    let rss_idle = rss_kib(&params.server_pids);
    let setup_deadline = start + params.setup_timeout;
    let shared = Arc::new(Shared {
        start,
        latencies: Mutex::new(Histogram::new()),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        sending: AtomicU64::new(0),
        connecting: Semaphore::new(params.in_flight),
        done: CancellationToken::new(),
        sdp: format!("v=0 {}", "x".repeat(params.sdp_size.saturating_sub(4))),
        params,
    });
    let (go_tx, go_rx) = watch::channel(None);
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for i in 0..shared.params.clients {
        let (shared, go, joined) = (shared.clone(), go_rx.clone(), joined_tx.clone());
        tasks.spawn(client(i, shared, setup_deadline, go, joined));
    }
    drop(joined_tx);
    let (mut answered, mut joined) = (0, 0);
    while answered < shared.params.clients {
        match timeout_at(setup_deadline, joined_rx.recv()).await {
            Ok(Some(ok)) => {
                answered += 1;
                joined += usize::from(ok);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let joined_in = start.elapsed();
    eprintln!(
        "rturn-bench: {joined} of {} clients joined in {joined_in:.1?}",
        shared.params.clients
    );
    sleep(SETTLE).await;
    let mut rss_peak = rss_kib(&shared.params.server_pids);
    let rss_joined = rss_peak;
    let cpu_before = procfs::process_cpu();
    let go_at = Instant::now() + Duration::from_millis(100);
    let send_end = go_at + shared.params.duration;
    go_tx.send_replace(Some(go_at));
    for _ in 0..shared.params.duration.as_secs() + 1 {
        let now = Instant::now();
        if now >= send_end {
            break;
        }
        sleep_until((now + RSS_EVERY).min(send_end)).await;
        let rss = rss_kib(&shared.params.server_pids);
        rss_peak = rss_peak.max(rss);
    }
    let drain_end = send_end + DRAIN;
    while Instant::now() < drain_end
        && (shared.sending.load(Ordering::Relaxed) > 0
            || shared.received.load(Ordering::Relaxed) < shared.sent.load(Ordering::Relaxed))
    {
        sleep(DRAIN_CHECK).await;
    }
    shared.done.cancel();
    let mut failures = Tally::default();
    let hard_stop = drain_end + WRITE_TIMEOUT;
    let mut finished = 0;
    while let Ok(Some(done)) = timeout_at(hard_stop, tasks.join_next()).await {
        failures.merge(&done.context("a client task failed")?);
        finished += 1;
    }
    for _ in finished..shared.params.clients {
        failures.add(Failure::new(Step::Signal, Kind::Timeout));
    }
    tasks.abort_all();
    let (sent, received) = (
        shared.sent.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
    );
    let cpu = match (cpu_before, procfs::process_cpu()) {
        (Some(before), Some(after)) => Some(round((after - before).as_secs_f64(), 2)),
        _ => None,
    };
    failures.report();
    let latencies = shared
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let ms = |q| latencies.quantile_ms(q).map(|v| round(v, 3));
    let seconds = shared.params.duration.as_secs_f64();
    Ok(json!({
        "workload": "signal",
        "clients": shared.params.clients,
        "rooms": shared.params.rooms,
        "joined": joined,
        "joined_in_s": round(joined_in.as_secs_f64(), 2),
        "seconds": round(seconds, 3),
        "sent": sent,
        "received": received,
        "lost": sent.saturating_sub(received),
        "messages_per_second": round(received as f64 / seconds, 1),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "errors": failures.total(),
        "server_rss_idle_kib": rss_idle,
        "server_rss_joined_kib": rss_joined,
        "server_rss_peak_kib": rss_peak,
        "generator_cpu_s": cpu,
    }))
}

type Ws = WebSocketStream<TcpStream>;

/// The RSS of all `pids` together; `None` without any, or when one cannot be read.
fn rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| procfs::rss_kib(*pid)).sum()
}

/// One client: connect and join, report it, then exchange until the end of the drain.
async fn client(
    i: usize,
    shared: Arc<Shared>,
    setup_deadline: Instant,
    go: watch::Receiver<Option<Instant>>,
    joined: mpsc::UnboundedSender<bool>,
) -> Tally {
    let mut out = Tally::default();
    let room = format!("bench-{}", i % shared.params.rooms);
    let set_up = async {
        let _permit = shared.connecting.acquire().await;
        let servers = &shared.params.servers;
        let server = servers[(i / shared.params.rooms) % servers.len()];
        connect_and_join(&shared.params, server, &room).await
    };
    let (mut ws, members) = match timeout_at(setup_deadline, set_up).await {
        Ok(Ok(ready)) => ready,
        Ok(Err(failure)) => {
            out.add(failure);
            let _ = joined.send(false);
            return out;
        }
        Err(_elapsed) => {
            out.add(Failure::new(Step::Join, Kind::Timeout));
            let _ = joined.send(false);
            return out;
        }
    };
    let _ = joined.send(true);
    let mut peer = Peer {
        shared: &shared,
        members,
        out,
        turn: i,
    };
    peer.exchange(&mut ws, i, go).await;
    let _ = timeout_at(Instant::now() + WRITE_TIMEOUT, ws.close(None)).await;
    peer.out
}

/// Opens the WebSocket from a fresh source address and joins `room`; returns the socket and
/// the room's other members.
async fn connect_and_join(
    params: &Params,
    server: SocketAddr,
    room: &str,
) -> Result<(Ws, Vec<String>), Failure> {
    let failure = |kind| Failure::new(Step::WsConnect, kind);
    let io = |e: std::io::Error| failure(Kind::Io(e.kind()));
    let stream = match next_source(server) {
        Some(source) => match connect_from(source, server).await {
            // Not every system routes all of 127.0.0.0/8 to the loopback interface.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                TcpStream::connect(server).await
            }
            other => other,
        },
        None => TcpStream::connect(server).await,
    }
    .map_err(io)?;
    // Small frames: without this, Nagle's algorithm would hold them back for an ACK.
    stream.set_nodelay(true).map_err(io)?;
    let url = format!("ws://{}{}", server, params.path);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _response) = client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|_| failure(Kind::Protocol("WebSocket handshake refused")))?;
    let join = json!({"type": "join", "room": room}).to_string();
    ws.send(Message::text(join))
        .await
        .map_err(|_| Failure::new(Step::Join, Kind::Protocol("cannot send join")))?;
    for _ in 0..MAX_FRAMES {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                return Err(Failure::new(
                    Step::Join,
                    Kind::Protocol("closed before peers"),
                ));
            }
        };
        let reply: Value = serde_json::from_str(text.as_str())
            .map_err(|_| Failure::new(Step::Join, Kind::Protocol("reply is not JSON")))?;
        match reply["type"].as_str() {
            Some("peers") => {
                let members = reply["peers"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)))
                    .map(Iterator::collect)
                    .unwrap_or_default();
                return Ok((ws, members));
            }
            Some("error") => return Err(Failure::new(Step::Join, error_kind(&reply))),
            _ => {}
        }
    }
    Err(Failure::new(Step::Join, Kind::Protocol("no peers reply")))
}

async fn connect_from(source: SocketAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(source)?;
    sock.connect(server).await
}

/// The error code of an `error` frame, as a failure kind.
fn error_kind(frame: &Value) -> Kind {
    let code = frame["code"].as_str().unwrap_or_default();
    let known = ErrorCode::ALL.iter().find(|c| c.as_str() == code);
    Kind::Protocol(known.map_or("unknown error code", |c| c.as_str()))
}

/// A joined client during the exchange.
struct Peer<'a> {
    shared: &'a Shared,
    /// The other members of the room, as the server announced them.
    members: Vec<String>,
    out: Tally,
    /// Which member and message kind come next.
    turn: usize,
}

impl Peer<'_> {
    /// Waits for the start, sends on schedule and takes what arrives, until the drain ends.
    async fn exchange(&mut self, ws: &mut Ws, i: usize, mut go: watch::Receiver<Option<Instant>>) {
        let params = &self.shared.params;
        let period = Duration::from_secs_f64(1.0 / params.rate);
        // Until the start is known: no sends, and the latest possible end.
        let mut next_send: Option<Instant> = None;
        let mut send_end = Instant::now();
        let mut stop = Instant::now() + params.setup_timeout + params.duration + DRAIN + SETTLE;
        let mut waiting = true;
        for _ in 0..MAX_FRAMES {
            let wake = next_send.map_or(stop, |at| at.min(stop));
            tokio::select! {
                () = self.shared.done.cancelled() => return,
                changed = go.changed(), if waiting => {
                    waiting = false;
                    if let (Ok(()), Some(at)) = (changed, *go.borrow_and_update()) {
                        // Spread the clients over one period.
                        let offset = period.mul_f64(i as f64 / params.clients as f64);
                        next_send = Some(at + offset);
                        self.shared.sending.fetch_add(1, Ordering::Relaxed);
                        send_end = at + params.duration;
                        stop = send_end + DRAIN;
                    }
                }
                frame = timeout_at(wake, ws.next()) => match frame {
                    Err(_elapsed) => {
                        let now = Instant::now();
                        if now >= stop {
                            return;
                        }
                        if let Some(at) = next_send.filter(|&at| at <= now) {
                            self.send(ws).await;
                            next_send = Some(at + period).filter(|&next| next < send_end);
                            if next_send.is_none() {
                                self.shared.sending.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(Some(Ok(Message::Text(text)))) => self.take(text.as_str()),
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(_)) | None) => {
                        self.fail(Kind::Protocol("connection lost"));
                        return;
                    }
                }
            }
        }
    }

    /// Sends the next message to the next member, if there is one.
    async fn send(&mut self, ws: &mut Ws) {
        if self.members.is_empty() {
            return;
        }
        let to = &self.members[self.turn % self.members.len()];
        let sent_us = u64::try_from(self.shared.start.elapsed().as_micros()).unwrap_or(0);
        let message = match self.turn % 3 {
            0 => json!({"type": "offer", "to": to, "sdp": self.shared.sdp, "bench_us": sent_us}),
            1 => json!({"type": "answer", "to": to, "sdp": self.shared.sdp, "bench_us": sent_us}),
            _ => json!({
                "type": "candidate",
                "to": to,
                "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0},
                "bench_us": sent_us,
            }),
        };
        self.turn += 1;
        let write = ws.send(Message::text(message.to_string()));
        match timeout_at(Instant::now() + WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {
                self.shared.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) => self.fail(Kind::Protocol("write failed")),
            Err(_) => self.fail(Kind::Timeout),
        }
    }

    /// Handles one frame from the server.
    fn take(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            self.fail(Kind::Protocol("frame is not JSON"));
            return;
        };
        match frame["type"].as_str() {
            Some("offer" | "answer" | "candidate") => {
                let Some(sent_us) = frame["bench_us"].as_u64() else {
                    self.fail(Kind::Protocol("relayed message without bench_us"));
                    return;
                };
                let now_us = u64::try_from(self.shared.start.elapsed().as_micros()).unwrap_or(0);
                let latency = Duration::from_micros(now_us.saturating_sub(sent_us));
                self.shared.received.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(latency);
            }
            Some("new_peer") => {
                if let Some(id) = frame["id"].as_str() {
                    self.members.push(id.to_owned());
                }
            }
            Some("remove_peer") => {
                if let Some(id) = frame["id"].as_str() {
                    self.members.retain(|m| m != id);
                }
            }
            Some("error") => self.fail(error_kind(&frame)),
            _ => {}
        }
    }

    fn fail(&mut self, kind: Kind) {
        self.out.add(Failure::new(Step::Signal, kind));
    }
}
