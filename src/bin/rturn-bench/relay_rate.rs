//! `relay-rate`: ChannelData relayed at a fixed rate, with loss and round-trip latency.
//!
//! Each client allocates, binds channel 0x4000 to its own echo peer (a UDP socket on
//! 127.0.0.1 in this process) and sends ChannelData at `rate / clients` packets per second.
//! The server relays each packet to the peer, the peer echoes it to the relayed address, and
//! the server brings it back on the channel: every packet crosses the server twice. A packet
//! carries its sequence number and send time, so the round trip is measured on arrival.
//! Sending is paced in 1 ms steps (the timer's resolution): the count is exact, the spacing
//! within a millisecond is a burst. Allocations are deleted (Refresh 0) at the end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use crate::proto::{CHANNEL, Client, Credentials, Failure, Kind, Request, Session, Step};
use crate::stats::{Histogram, Tally, round};

/// ChannelData header: channel number and length (RFC 8656 §12.4).
const HEADER: usize = 4;
/// Payload bytes the measurement needs: sequence number and send time.
pub(crate) const MIN_SIZE: usize = 16;
/// How long after the last send the receivers and echo peers keep listening.
const DRAIN: Duration = Duration::from_millis(500);
/// Pacing step.
const TICK: Duration = Duration::from_millis(1);
/// Receives per client at most, whatever the rate (late duplicates included).
const MAX_RECEIVES: u64 = 100_000_000;

/// What `relay-rate` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) server: SocketAddr,
    pub(crate) user: String,
    pub(crate) pass: String,
    pub(crate) clients: usize,
    /// Packets per second, all clients together, one way.
    pub(crate) rate: u32,
    /// ChannelData payload bytes.
    pub(crate) size: usize,
    pub(crate) duration: Duration,
}

/// What one client measured.
#[derive(Default)]
struct Outcome {
    sent: u64,
    received: u64,
    latencies: Option<Histogram>,
    failures: Tally,
}

/// Sets up every client, relays for the duration, deletes the allocations, reports.
pub(crate) async fn run(params: Params) -> anyhow::Result<serde_json::Value> {
    let creds = Arc::new(Credentials {
        user: params.user,
        pass: params.pass,
    });
    let mut clients = JoinSet::new();
    let mut ready = Vec::with_capacity(params.clients);
    for _ in 0..params.clients {
        clients.spawn(set_up(params.server, creds.clone()));
    }
    let mut failures = Tally::default();
    while let Some(done) = clients.join_next().await {
        match done.context("a client task failed")? {
            Ok(client) => ready.push(client),
            Err(failure) => failures.add(failure),
        }
    }
    // The whole rate is shared by the clients that are ready; they start together.
    let per_client = f64::from(params.rate) / ready.len().max(1) as f64;
    let start = Instant::now();
    let deadline = start + params.duration;
    let ready_count = ready.len();
    let mut running = JoinSet::new();
    for (client, session, peer) in ready {
        let creds = creds.clone();
        let load = Load {
            per_second: per_client,
            size: params.size,
            start,
            deadline,
        };
        running.spawn(async move { relay(client, session, peer, &creds, load).await });
    }
    let mut latencies = Histogram::new();
    let (mut sent, mut received) = (0u64, 0u64);
    while let Some(done) = running.join_next().await {
        let outcome = done.context("a client task failed")?;
        sent += outcome.sent;
        received += outcome.received;
        if let Some(h) = &outcome.latencies {
            latencies.merge(h);
        }
        failures.merge(&outcome.failures);
    }
    failures.report();
    let lost = sent.saturating_sub(received);
    let loss = if sent > 0 {
        100.0 * lost as f64 / sent as f64
    } else {
        0.0
    };
    let ms = |q| latencies.quantile_ms(q).map(|v| round(v, 3));
    Ok(json!({
        "workload": "relay_rate",
        "clients": params.clients,
        "ready": ready_count,
        "rate": params.rate,
        "size": params.size,
        "seconds": round(params.duration.as_secs_f64(), 3),
        "sent": sent,
        "received": received,
        "loss_percent": round(loss, 3),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "errors": failures.total(),
    }))
}

/// An allocation with channel 0x4000 bound to a fresh echo peer socket.
async fn set_up(
    server: SocketAddr,
    creds: Arc<Credentials>,
) -> Result<(Client, Session, UdpSocket), Failure> {
    let socket_failure = |e: std::io::Error| Failure::new(Step::Socket, Kind::Io(e.kind()));
    let mut client = Client::bind(server).await.map_err(socket_failure)?;
    // The relay is IPv4 (no REQUESTED-ADDRESS-FAMILY), so the peer is too.
    let localhost = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let peer = UdpSocket::bind(localhost).await.map_err(socket_failure)?;
    let peer_addr = peer.local_addr().map_err(socket_failure)?;
    let mut session = client.challenge(&creds).await?;
    client
        .authed(&creds, &mut session, Request::Allocate)
        .await?;
    client
        .authed(
            &creds,
            &mut session,
            Request::ChannelBind(CHANNEL, peer_addr),
        )
        .await?;
    Ok((client, session, peer))
}

/// The traffic one client offers.
#[derive(Debug, Clone, Copy)]
struct Load {
    per_second: f64,
    size: usize,
    start: Instant,
    deadline: Instant,
}

/// Sends, receives and echoes for one client until the deadline and the drain after it,
/// then deletes the allocation.
async fn relay(
    mut client: Client,
    mut session: Session,
    peer: UdpSocket,
    creds: &Credentials,
    load: Load,
) -> Outcome {
    let stop = load.deadline + DRAIN;
    let sock = client.socket();
    let (sent, (received, latencies), echo_failures) = tokio::join!(
        send(sock, load),
        receive(sock, load.start, stop),
        echo(&peer, stop)
    );
    let mut out = Outcome {
        sent: sent.0,
        received,
        latencies: Some(latencies),
        failures: sent.1,
    };
    out.failures.merge(&echo_failures);
    if let Err(failure) = client
        .authed(creds, &mut session, Request::Refresh(0))
        .await
    {
        out.failures.add(failure);
    }
    out
}

/// Paced ChannelData sends; returns how many went out, and the failures.
async fn send(sock: &UdpSocket, load: Load) -> (u64, Tally) {
    let mut failures = Tally::default();
    let seconds = load.deadline.duration_since(load.start).as_secs_f64();
    let total = (load.per_second * seconds).floor() as u64;
    let mut packet = vec![0u8; HEADER + load.size];
    packet[..2].copy_from_slice(&CHANNEL.to_be_bytes());
    let len = u16::try_from(load.size).unwrap_or(u16::MAX);
    packet[2..4].copy_from_slice(&len.to_be_bytes());
    let mut sent = 0u64;
    while sent < total {
        let now = Instant::now();
        if now >= load.deadline {
            break;
        }
        let due = now.duration_since(load.start).as_secs_f64() * load.per_second;
        let due = (due.floor() as u64).min(total);
        while sent < due {
            let stamp = u64::try_from(load.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            packet[HEADER..HEADER + 8].copy_from_slice(&sent.to_be_bytes());
            packet[HEADER + 8..HEADER + 16].copy_from_slice(&stamp.to_be_bytes());
            if let Err(e) = sock.send(&packet).await {
                failures.add(Failure::new(Step::Relay, Kind::Io(e.kind())));
            }
            sent += 1;
        }
        tokio::time::sleep(TICK).await;
    }
    (sent, failures)
}

/// Takes the echoed ChannelData until `stop`; returns the count and the round trips.
async fn receive(sock: &UdpSocket, start: Instant, stop: Instant) -> (u64, Histogram) {
    let mut latencies = Histogram::new();
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    let stop = tokio::time::Instant::from_std(stop);
    while received < MAX_RECEIVES {
        let n = match timeout_at(stop, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            // An ICMP error from an earlier send; the loss count tells the story.
            Ok(Err(_)) => continue,
            Err(_elapsed) => break,
        };
        let Some(stamp) = buf.get(..n).and_then(send_time) else {
            continue;
        };
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latencies.record(Duration::from_nanos(now.saturating_sub(stamp)));
        received += 1;
    }
    (received, latencies)
}

/// The send time in a ChannelData packet of our channel, in nanoseconds since the start.
fn send_time(packet: &[u8]) -> Option<u64> {
    let channel = u16::from_be_bytes(packet.get(..2)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    if channel != CHANNEL || len < MIN_SIZE || HEADER + len > packet.len() {
        return None;
    }
    let stamp = packet.get(HEADER + 8..HEADER + 16)?;
    Some(u64::from_be_bytes(stamp.try_into().ok()?))
}

/// The echo peer: sends every datagram back where it came from (the relayed address).
async fn echo(peer: &UdpSocket, stop: Instant) -> Tally {
    let mut failures = Tally::default();
    let mut buf = vec![0u8; 65536];
    let stop = tokio::time::Instant::from_std(stop);
    for _ in 0..MAX_RECEIVES {
        let (n, from) = match timeout_at(stop, peer.recv_from(&mut buf)).await {
            Ok(Ok(got)) => got,
            Ok(Err(_)) => continue,
            Err(_elapsed) => break,
        };
        if let Some(data) = buf.get(..n)
            && let Err(e) = peer.send_to(data, from).await
        {
            failures.add(Failure::new(Step::Relay, Kind::Io(e.kind())));
        }
    }
    failures
}
