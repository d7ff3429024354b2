//! `alloc-rate`: how many full allocation lives per second a server sustains.
//!
//! Each client runs a closed loop of cycles: Allocate without credentials (401), authenticated
//! Allocate, ChannelBind 0x4000 to the discard port, Refresh with LIFETIME 0. The cycle's wall
//! time is its latency (opening the socket is not counted).
//!
//! By default each cycle opens a new socket on a new loopback source address, as a new client
//! would: coturn keeps a deleted allocation's 5-tuple for about a second and answers 437 to an
//! Allocate on it meanwhile, which would make a reused socket measure that delay. With
//! `--reuse-socket` every cycle of a client has the same 5-tuple (fine with rturn, which frees
//! it at once). When a cycle fails after the 401, a best-effort Refresh 0 clears whatever
//! allocation may be left, so a reused socket does not meet 437 on the next cycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::task::JoinSet;

use crate::proto::{CHANNEL, Client, Credentials, DISCARD_PEER, Failure, Kind, Request, Step};
use crate::stats::{Histogram, Tally, round};

/// Cycles per client at most, whatever the duration.
const MAX_CYCLES: u64 = 10_000_000;
/// Pause after a failed cycle, so a dead server is not hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// What `alloc-rate` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) server: SocketAddr,
    pub(crate) user: String,
    pub(crate) pass: String,
    pub(crate) clients: usize,
    pub(crate) duration: Duration,
    /// Keep one socket (one 5-tuple) per client for every cycle instead of a new one each.
    pub(crate) reuse_socket: bool,
}

/// Runs the clients until the duration is over and reports.
pub(crate) async fn run(params: Params) -> anyhow::Result<serde_json::Value> {
    let creds = Arc::new(Credentials {
        user: params.user,
        pass: params.pass,
    });
    let start = Instant::now();
    let deadline = start + params.duration;
    let mut clients = JoinSet::new();
    for _ in 0..params.clients {
        let (server, creds) = (params.server, creds.clone());
        clients.spawn(client_loop(server, creds, deadline, params.reuse_socket));
    }
    let mut latencies = Histogram::new();
    let mut failures = Tally::default();
    while let Some(done) = clients.join_next().await {
        let (h, t) = done.context("a client task failed")?;
        latencies.merge(&h);
        failures.merge(&t);
    }
    let seconds = start.elapsed().as_secs_f64();
    failures.report();
    let cycles = latencies.count();
    let ms = |q| latencies.quantile_ms(q).map(|v| round(v, 3));
    Ok(json!({
        "workload": "alloc_rate",
        "clients": params.clients,
        "seconds": round(seconds, 3),
        "cycles": cycles,
        "per_second": round(cycles as f64 / seconds, 1),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "errors": failures.total(),
    }))
}

/// One client's closed loop; returns its latencies and failures.
async fn client_loop(
    server: SocketAddr,
    creds: Arc<Credentials>,
    deadline: Instant,
    reuse_socket: bool,
) -> (Histogram, Tally) {
    let mut latencies = Histogram::new();
    let mut failures = Tally::default();
    let mut client = match Client::bind(server).await {
        Ok(client) => client,
        Err(e) => {
            failures.add(Failure::new(Step::Socket, Kind::Io(e.kind())));
            return (latencies, failures);
        }
    };
    for n in 0..MAX_CYCLES {
        if Instant::now() >= deadline {
            break;
        }
        if n > 0
            && !reuse_socket
            && let Err(e) = client.rebind(server).await
        {
            failures.add(Failure::new(Step::Socket, Kind::Io(e.kind())));
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        }
        let started = Instant::now();
        match cycle(&mut client, &creds).await {
            Ok(()) => latencies.record(started.elapsed()),
            Err(failure) => {
                failures.add(failure);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    (latencies, failures)
}

/// One allocation's life, from the 401 to Refresh 0.
async fn cycle(client: &mut Client, creds: &Credentials) -> Result<(), Failure> {
    let mut session = client.challenge(creds).await?;
    let steps = [
        Request::Allocate,
        Request::ChannelBind(CHANNEL, DISCARD_PEER),
        Request::Refresh(0),
    ];
    for req in steps {
        if let Err(failure) = client.authed(creds, &mut session, req).await {
            // The allocation may exist (a lost response, a 437 left over from an earlier
            // failure, a refused ChannelBind): delete it, whatever the answer.
            if !matches!(req, Request::Refresh(_)) || failure.kind == Kind::Timeout {
                let _ = client
                    .authed(creds, &mut session, Request::Refresh(0))
                    .await;
            }
            return Err(failure);
        }
    }
    Ok(())
}
