//! `binding-rate`: STUN Binding requests per second (RFC 8489 §3), the server's cheapest path.
//!
//! Each client owns one UDP socket and keeps a window of requests in flight, matched to their
//! responses by transaction ID. A request unanswered after [`TIMEOUT`] is an error and frees
//! its slot (no retransmission: this measures the server, not recovery). Responses are checked
//! by header only (type, cookie, length, transaction ID) to keep the generator's own cost low.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use rturn::stun::codec::decode_into;
use serde_json::json;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::message::{BINDING_REQUEST, Getter, MAGIC_COOKIE, Message, Setter};
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use crate::proto::{Client, Failure, Kind, Step};
use crate::stats::{Histogram, Tally, round};

/// A request unanswered this long is lost.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Requests per client at most, whatever the duration.
const MAX_REQUESTS: u64 = 100_000_000;
/// Pause after a socket error, so a dead server is not hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Binding success and error response types (RFC 8489 §5).
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const BINDING_ERROR: [u8; 2] = [0x01, 0x11];

/// What `binding-rate` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) server: SocketAddr,
    pub(crate) clients: usize,
    pub(crate) window: usize,
    pub(crate) duration: Duration,
}

/// What one client measured.
struct Outcome {
    latencies: Histogram,
    failures: Tally,
    /// When the last response arrived.
    last: Option<Instant>,
}

/// Runs the clients until the duration is over, waits for the last answers, and reports.
pub(crate) async fn run(params: Params) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let deadline = start + params.duration;
    let mut clients = JoinSet::new();
    for _ in 0..params.clients {
        clients.spawn(client_loop(params.server, params.window, deadline));
    }
    let mut latencies = Histogram::new();
    let mut failures = Tally::default();
    let mut last = start;
    while let Some(done) = clients.join_next().await {
        let outcome = done.context("a client task failed")?;
        latencies.merge(&outcome.latencies);
        failures.merge(&outcome.failures);
        last = last.max(outcome.last.unwrap_or(start));
    }
    failures.report();
    let seconds = (last - start).as_secs_f64();
    let requests = latencies.count();
    let per_second = if seconds > 0.0 {
        requests as f64 / seconds
    } else {
        0.0
    };
    let ms = |q| latencies.quantile_ms(q).map(|v| round(v, 3));
    Ok(json!({
        "workload": "binding_rate",
        "clients": params.clients,
        "window": params.window,
        "seconds": round(seconds, 3),
        "requests": requests,
        "per_second": round(per_second, 1),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "errors": failures.total(),
    }))
}

/// A request in flight.
struct Pending {
    transaction_id: [u8; 12],
    sent: Instant,
}

/// One client's closed loop: fill the window, take answers, expire the lost, until the
/// deadline; then wait (at most [`TIMEOUT`]) for what is still in flight.
async fn client_loop(server: SocketAddr, window: usize, deadline: Instant) -> Outcome {
    let mut out = Outcome {
        latencies: Histogram::new(),
        failures: Tally::default(),
        last: None,
    };
    let failure = |kind| Failure::new(Step::Binding, kind);
    let client = match Client::bind(server).await {
        Ok(client) => client,
        Err(e) => {
            out.failures
                .add(Failure::new(Step::Socket, Kind::Io(e.kind())));
            return out;
        }
    };
    let sock = client.into_socket();
    let mut pending: Vec<Pending> = Vec::with_capacity(window);
    let mut req = Message::new();
    let mut buf = vec![0u8; 1500];
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        let sending = now < deadline && sent < MAX_REQUESTS;
        pending.retain(|p| {
            let lost = now.duration_since(p.sent) >= TIMEOUT;
            if lost {
                out.failures.add(failure(Kind::Timeout));
            }
            !lost
        });
        while sending && pending.len() < window {
            if let Err(kind) = build(&mut req) {
                out.failures.add(failure(kind));
                break;
            }
            sent += 1;
            match sock.send(&req.raw).await {
                Ok(_) => pending.push(Pending {
                    transaction_id: req.transaction_id.0,
                    sent: Instant::now(),
                }),
                Err(e) => {
                    out.failures.add(failure(Kind::Io(e.kind())));
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    break;
                }
            }
        }
        let Some(oldest) = pending.iter().map(|p| p.sent).min() else {
            if sending {
                continue;
            }
            break;
        };
        let wait_until = tokio::time::Instant::from_std(oldest + TIMEOUT);
        let n = match timeout_at(wait_until, sock.recv(&mut buf)).await {
            Err(_elapsed) => continue, // expired at the top of the loop
            Ok(Err(e)) => {
                out.failures.add(failure(Kind::Io(e.kind())));
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
            Ok(Ok(n)) => n,
        };
        let Some((typ, transaction_id)) = buf.get(..n).and_then(header) else {
            continue;
        };
        let Some(at) = pending
            .iter()
            .position(|p| p.transaction_id == transaction_id)
        else {
            continue; // late answer to a request already counted as lost
        };
        let request = pending.swap_remove(at);
        match typ {
            BINDING_SUCCESS => {
                let now = Instant::now();
                out.latencies.record(now.duration_since(request.sent));
                out.last = Some(now);
            }
            BINDING_ERROR => out.failures.add(failure(Kind::Code(error_code(&buf[..n])))),
            _ => out
                .failures
                .add(failure(Kind::Protocol("response of another method"))),
        }
    }
    out
}

/// A new Binding request with FINGERPRINT in `req`, reusing its buffers.
fn build(req: &mut Message) -> Result<(), Kind> {
    req.reset();
    req.typ = BINDING_REQUEST;
    // The header first: the new transaction ID is written into it.
    req.write_header();
    req.new_transaction_id()
        .map_err(|_| Kind::Protocol("no transaction ID"))?;
    FINGERPRINT
        .add_to(req)
        .map_err(|_| Kind::Protocol("cannot add FINGERPRINT"))
}

/// Type and transaction ID of a well-framed STUN message.
fn header(packet: &[u8]) -> Option<([u8; 2], [u8; 12])> {
    let typ: [u8; 2] = packet.get(..2)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    let cookie = u32::from_be_bytes(packet.get(4..8)?.try_into().ok()?);
    let transaction_id = packet.get(8..20)?.try_into().ok()?;
    (cookie == MAGIC_COOKIE && 20 + len == packet.len()).then_some((typ, transaction_id))
}

/// The ERROR-CODE of an error response (a rare path: decoded in full), 0 if there is none.
fn error_code(packet: &[u8]) -> u16 {
    let mut msg = Message::new();
    let mut error = ErrorCodeAttribute::default();
    match decode_into(packet, &mut msg).is_ok() && error.get_from(&msg).is_ok() {
        true => error.code.0,
        false => 0,
    }
}
