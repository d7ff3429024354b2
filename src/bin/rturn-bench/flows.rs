//! The flows of the relay workloads: allocations, each with channel 0x4000 bound to one echo
//! peer socket that all of them share.
//!
//! One peer for every flow lets the peer receive and answer in batches (`recvmmsg` and
//! `sendmmsg` over many relayed addresses) and keeps the generator to two threads whatever the
//! number of flows. After set-up the sockets leave tokio's reactor (`into_std`): the engine
//! (`load`) reads them with its own epoll, and tokio would otherwise wake for every datagram.
//! [`Flows::tear_down`] hands them back to tokio to delete the allocations (Refresh 0).
//!
//! The peer is on 127.0.0.1 unless [`EchoPeer`] says otherwise: in the benchmark's veth
//! topology it is bound inside the peer's network namespace (`netns`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use socket2::SockRef;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use crate::netns::Netns;
use crate::procfs;
use crate::proto::{CHANNEL, Client, Credentials, Failure, Kind, Request, Session, Step};
use crate::stats::Tally;

/// Allocations being set up, or deleted, at once.
const IN_FLIGHT: usize = 64;
/// Give up on the set-up after this long, whatever is not ready has failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Kernel receive buffer asked for each socket (the kernel caps it at `net.core.rmem_max`):
/// a burst the engine is slow to read is then queued, not dropped and counted as loss.
const RECV_BUFFER: usize = 4 << 20;

/// Where the echo peer is bound.
#[derive(Debug)]
pub(crate) struct EchoPeer {
    /// Its address (IPv4, as the relay is).
    pub(crate) ip: Ipv4Addr,
    /// The network namespace it is bound in; `None`: the generator's own.
    pub(crate) netns: Option<Netns>,
}

impl Default for EchoPeer {
    fn default() -> Self {
        EchoPeer {
            ip: Ipv4Addr::LOCALHOST,
            netns: None,
        }
    }
}

/// Allocations ready to relay, and their echo peer.
pub(crate) struct Flows {
    /// One per flow: the client's socket, connected to the server, and its session.
    pub(crate) clients: Vec<(UdpSocket, Session)>,
    /// The echo peer every channel is bound to (non-blocking).
    pub(crate) peer: UdpSocket,
    /// The local addresses of all these sockets as `/proc/net/udp` lists them, to read how
    /// many datagrams the kernel dropped because the generator read too slowly.
    pub(crate) udp_keys: HashSet<String>,
    /// The echo peer's namespace, where its drops are counted.
    peer_netns: Option<Netns>,
    creds: Arc<Credentials>,
}

/// Sets up `count` flows, at most [`IN_FLIGHT`] at a time; failures are counted in
/// `failures` and the flows that worked are returned.
pub(crate) async fn set_up(
    server: SocketAddr,
    creds: Credentials,
    count: usize,
    echo: EchoPeer,
    failures: &mut Tally,
) -> anyhow::Result<Flows> {
    let creds = Arc::new(creds);
    // The relay is IPv4 (no REQUESTED-ADDRESS-FAMILY), so the peer is too.
    let bind = || UdpSocket::bind(SocketAddr::new(IpAddr::V4(echo.ip), 0));
    let peer = match &echo.netns {
        Some(ns) => ns.run(bind)?,
        None => bind(),
    }
    .with_context(|| format!("binding the echo peer on {}", echo.ip))?;
    peer.set_nonblocking(true)
        .context("making the echo peer non-blocking")?;
    let _ = SockRef::from(&peer).set_recv_buffer_size(RECV_BUFFER);
    let peer_addr = peer.local_addr().context("the echo peer's address")?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut clients = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    let mut started = 0;
    while started < count || !tasks.is_empty() {
        while started < count && tasks.len() < IN_FLIGHT {
            tasks.spawn(set_up_one(server, creds.clone(), peer_addr));
            started += 1;
        }
        match timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(done)) => match done.context("a set-up task failed")? {
                Ok(client) => clients.push(client),
                Err(failure) => failures.add(failure),
            },
            Ok(None) => break,
            Err(_elapsed) => {
                for _ in 0..tasks.len() + (count - started) {
                    failures.add(Failure::new(Step::Allocate, Kind::Timeout));
                }
                tasks.abort_all();
                break;
            }
        }
    }
    if clients.is_empty() {
        failures.report();
        bail!("none of the {count} flows could be set up");
    }
    let udp_keys = clients
        .iter()
        .map(|(sock, _)| sock)
        .chain([&peer])
        .filter_map(|sock| sock.local_addr().ok().and_then(procfs::udp_key))
        .collect();
    Ok(Flows {
        clients,
        peer,
        udp_keys,
        peer_netns: echo.netns,
        creds,
    })
}

/// One allocation with channel 0x4000 bound to the echo peer, its socket out of tokio.
async fn set_up_one(
    server: SocketAddr,
    creds: Arc<Credentials>,
    peer: SocketAddr,
) -> Result<(UdpSocket, Session), Failure> {
    let socket_failure = |e: std::io::Error| Failure::new(Step::Socket, Kind::Io(e.kind()));
    let mut client = Client::bind(server).await.map_err(socket_failure)?;
    let mut session = client.challenge(&creds).await?;
    client
        .authed(&creds, &mut session, Request::Allocate)
        .await?;
    client
        .authed(&creds, &mut session, Request::ChannelBind(CHANNEL, peer))
        .await?;
    let sock = client.into_socket().into_std().map_err(socket_failure)?;
    let _ = SockRef::from(&sock).set_recv_buffer_size(RECV_BUFFER);
    Ok((sock, session))
}

impl Flows {
    /// Datagrams the kernel dropped so far on these sockets (`procfs::udp_drops`), in the
    /// generator's namespace and the echo peer's.
    pub(crate) fn udp_drops(&self) -> Option<u64> {
        let here = procfs::udp_drops(&self.udp_keys)?;
        match &self.peer_netns {
            Some(ns) => Some(here + ns.run(|| procfs::udp_drops(&self.udp_keys)).ok()??),
            None => Some(here),
        }
    }

    /// Deletes every allocation (Refresh 0), at most [`IN_FLIGHT`] at a time; failures are
    /// counted in `failures`.
    pub(crate) async fn tear_down(self, failures: &mut Tally) -> anyhow::Result<()> {
        let mut pending = self.clients.into_iter();
        let mut tasks = JoinSet::new();
        loop {
            while tasks.len() < IN_FLIGHT
                && let Some((sock, session)) = pending.next()
            {
                tasks.spawn(delete(sock, session, self.creds.clone()));
            }
            let Some(done) = tasks.join_next().await else {
                return Ok(());
            };
            if let Err(failure) = done.context("a tear-down task failed")? {
                failures.add(failure);
            }
        }
    }
}

async fn delete(
    sock: UdpSocket,
    mut session: Session,
    creds: Arc<Credentials>,
) -> Result<(), Failure> {
    let mut client =
        Client::from_std(sock).map_err(|e| Failure::new(Step::Socket, Kind::Io(e.kind())))?;
    client
        .authed(&creds, &mut session, Request::Refresh(0))
        .await
}
