//! `hold`: many idle allocations at once, to measure what each costs the server in memory.
//!
//! Each allocation has its own UDP socket (so its own 5-tuple), one permission and one
//! channel to the discard port. At most `--in-flight` are being set up at a time. Once all are
//! ready the report goes to stdout at once, so a driver can sample the server's RSS while this
//! process holds the sockets, silent, for `--hold`. Nothing is deleted at the end: the sockets
//! close when the process exits and the server expires the allocations.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use crate::procfs;
use crate::proto::{CHANNEL, Client, Credentials, DISCARD_PEER, Failure, Kind, Request, Step};
use crate::stats::{Tally, round};

/// errno values for "too many open files", per process and system-wide (Linux).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// What `hold` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) server: SocketAddr,
    pub(crate) user: String,
    pub(crate) pass: String,
    pub(crate) count: usize,
    pub(crate) hold: Duration,
    pub(crate) in_flight: usize,
    pub(crate) setup_timeout: Duration,
}

/// Why one allocation could not be set up.
enum SetupError {
    /// Out of file descriptors: no point in going on.
    Fds(io::Error),
    /// A step failed; counted, and the others go on.
    Step(Failure),
}

/// Sets everything up, prints the report, holds, returns.
pub(crate) async fn run(params: Params) -> anyhow::Result<()> {
    procfs::check_fd_limit(params.count, &format!("--count {}", params.count))?;
    let creds = Arc::new(Credentials {
        user: params.user,
        pass: params.pass,
    });
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + params.setup_timeout);
    let mut held: Vec<UdpSocket> = Vec::with_capacity(params.count);
    let mut failures = Tally::default();
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < params.count || !tasks.is_empty() {
        while started < params.count
            && tasks.len() < params.in_flight
            && tokio::time::Instant::now() < deadline
        {
            tasks.spawn(set_up(params.server, creds.clone()));
            started += 1;
        }
        let joined = match timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(joined)) => joined.context("a set-up task failed")?,
            Ok(None) | Err(_) => {
                // Past the set-up deadline: whatever is not ready has failed.
                let unfinished = tasks.len() + (params.count - started);
                tasks.abort_all();
                eprintln!(
                    "rturn-bench: set-up timeout ({:?}) with {unfinished} allocations not ready",
                    params.setup_timeout
                );
                for _ in 0..unfinished {
                    failures.add(Failure::new(Step::Allocate, Kind::Timeout));
                }
                break;
            }
        };
        match joined {
            Ok(sock) => held.push(sock),
            Err(SetupError::Step(failure)) => failures.add(failure),
            Err(SetupError::Fds(e)) => bail!(
                "cannot open socket {} of {}: {e}; raise the open files limit in the shell \
                 that runs rturn-bench, e.g. `ulimit -n {}`",
                held.len() + 1,
                params.count,
                procfs::wanted_fds(params.count)
            ),
        }
    }
    let ready_in = start.elapsed().as_secs_f64();
    failures.report();
    crate::print_report(&json!({
        "workload": "hold",
        "allocations": held.len(),
        "ready_in_s": round(ready_in, 3),
        "errors": failures.total(),
    }))?;
    eprintln!(
        "rturn-bench: holding {} allocations for {:?}",
        held.len(),
        params.hold
    );
    tokio::time::sleep(params.hold).await;
    drop(held);
    Ok(())
}

/// One allocation with a permission and a channel; returns its socket to hold.
async fn set_up(server: SocketAddr, creds: Arc<Credentials>) -> Result<UdpSocket, SetupError> {
    let mut client = Client::bind(server)
        .await
        .map_err(|e| match e.raw_os_error() {
            Some(EMFILE | ENFILE) => SetupError::Fds(e),
            _ => SetupError::Step(Failure::new(Step::Socket, Kind::Io(e.kind()))),
        })?;
    let mut session = client.challenge(&creds).await.map_err(SetupError::Step)?;
    let steps = [
        Request::Allocate,
        Request::Permission(DISCARD_PEER),
        Request::ChannelBind(CHANNEL, DISCARD_PEER),
    ];
    for req in steps {
        (client.authed(&creds, &mut session, req).await).map_err(SetupError::Step)?;
    }
    Ok(client.into_socket())
}
