//! STUN/TURN over TCP and TLS, the tokio side: an accept loop capped by a semaphore (and
//! per client IP by [`PerIp`]) that draws a permit of the descriptor budget
//! ([`super::descriptors`]) for each connection, backs off on failed accepts, and hands the
//! connection with those guards to its worker ([`Workers::accept`]). Behind a load balancer
//! (`proxy-protocol-from`), a task of the connection's own reads its PROXY header first
//! ([`super::proxy`]) and the per-IP cap counts the real client, not the balancer; a
//! connection from elsewhere is capped by its own address at accept, as always. The worker's
//! event loop serves it from then on ([`super::conns`], [`super::stream`]): framing, TLS, the
//! byte-bounded outgoing buffer, the idle, allocation and handshake timeouts.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use socket2::{Protocol, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::descriptors::{Budget, Kind};
use super::proxy::Policy;
use super::stats::{Counters, Event};
use super::throttle::{Backoff, Throttle, accept};
use super::workers::Workers;
use crate::turn::{FiveTuple, Transport};

/// Pending connections the kernel queues while all permits are taken.
const BACKLOG: i32 = 1024;

/// Binds a listening TCP socket.
pub(super) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = super::new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// What every connection on one listener shares.
#[derive(Clone)]
pub(super) struct TcpContext {
    /// Caps connections served at once.
    pub(super) permits: Arc<Semaphore>,
    /// Connections per client IP, shared by every TCP and TLS listener.
    pub(super) per_ip: Arc<PerIp>,
    /// The descriptor budget every connection draws on.
    pub(super) budget: Arc<Budget>,
    /// The workers whose shards hold the allocations.
    pub(super) workers: Arc<Workers>,
    /// This listener's counters.
    pub(super) counters: Arc<Counters>,
    /// Fires on shutdown.
    pub(super) shutdown: CancellationToken,
    /// Set on a `turns:` listener: the TLS handshake comes first.
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    /// Set when this listener sits behind a load balancer speaking the PROXY protocol.
    pub(super) proxy: Option<Arc<Policy>>,
}

/// Accepts connections until shutdown.
pub(super) async fn serve(listener: TcpListener, ctx: TcpContext) {
    let (mut warn, mut backoff) = (Throttle::default(), Backoff::default());
    loop {
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = Arc::clone(&ctx.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // semaphore closed: shutting down
            },
        };
        let pacing = (&mut backoff, &mut warn);
        let Some((stream, peer)) = accept(&listener, &ctx.shutdown, pacing, |e, warn| {
            ctx.counters.count(Event::IoError);
            ctx.budget.accept_error(Kind::Turn);
            warn.warn(|| tracing::warn!("tcp accept failed: {e}"));
        })
        .await
        else {
            return;
        };
        // A trusted load balancer's connections are counted per IP once its header names
        // the real client; everyone else's here, before anything is read.
        let behind_balancer = ctx.proxy.as_ref().is_some_and(|p| p.trusts(peer));
        let slot = match behind_balancer {
            true => None,
            false => match PerIp::acquire(&ctx.per_ip, peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    // Closed at once: the client sees a reset or EOF, the permit goes back.
                    ctx.counters.count(Event::TcpRefusedPerIp);
                    drop(stream);
                    continue;
                }
            },
        };
        // Refused (and counted) when even shedding idle HTTP left no descriptor for it.
        let Some(descriptor) = ctx.budget.acquire(Kind::Turn).await else {
            continue;
        };
        let Some(policy) = ctx.proxy.clone() else {
            hand_over(&ctx, stream, peer, Box::new((slot, permit, descriptor))).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let client = tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                client = policy.client(&mut stream, peer) => client,
            };
            let Some(client) = client else { return };
            let slot = match slot {
                Some(slot) => slot,
                None => match PerIp::acquire(&ctx.per_ip, client.ip()) {
                    Some(slot) => slot,
                    None => return ctx.counters.count(Event::TcpRefusedPerIp),
                },
            };
            hand_over(&ctx, stream, client, Box::new((slot, permit, descriptor))).await;
        });
    }
}

/// Off tokio, onto the worker's event loop: the connection of `client` (the socket's peer,
/// or the client a load balancer's PROXY header named) with the `guards` that keep it
/// counted.
async fn hand_over(
    ctx: &TcpContext,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    guards: Box<dyn Send>,
) {
    ctx.counters.count(Event::TcpAccepted);
    let (Ok(server), Ok(stream)) = (stream.local_addr(), stream.into_std()) else {
        return;
    };
    let transport = match ctx.tls {
        Some(_) => Transport::Tls,
        None => Transport::Tcp,
    };
    let tuple = FiveTuple {
        transport,
        client,
        server,
    };
    (ctx.workers)
        .accept(&tuple, stream, ctx.tls.clone(), guards)
        .await;
}

/// Open connections per client address (IPv6: per /64), for `max-tcp-connections-per-ip`.
/// Touched once per accept and once per close, never per packet.
#[derive(Debug, Default)]
pub(super) struct PerIp {
    /// 0: no limit.
    limit: usize,
    open: Mutex<HashMap<u128, usize>>,
}

impl PerIp {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::default(),
        }
    }

    /// One more connection from `ip`, or `None` when it already holds `limit`.
    pub(super) fn acquire(this: &Arc<Self>, ip: IpAddr) -> Option<PerIpSlot> {
        let key = crate::client_key::client_key_bits(ip);
        let mut open = this.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(key).or_insert(0);
        if this.limit != 0 && *held >= this.limit {
            if *held == 0 {
                open.remove(&key);
            }
            return None;
        }
        *held += 1;
        Some(PerIpSlot {
            table: Arc::clone(this),
            key,
        })
    }
}

/// One open connection counted in [`PerIp`]; uncounted when dropped.
pub(super) struct PerIpSlot {
    table: Arc<PerIp>,
    key: u128,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let table = Arc::new(PerIp::new(2));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = PerIp::acquire(&table, a).unwrap();
        let second = PerIp::acquire(&table, a).unwrap();
        assert!(PerIp::acquire(&table, a).is_none());
        let other = PerIp::acquire(&table, b).unwrap();
        drop(first);
        let again = PerIp::acquire(&table, a).unwrap();
        drop((second, again, other));
        assert!(table.open.lock().unwrap().is_empty(), "nothing left behind");
        let unlimited = Arc::new(PerIp::new(0));
        let slots: Vec<_> = (0..100).map(|_| PerIp::acquire(&unlimited, a)).collect();
        assert!(slots.iter().all(Option::is_some));
    }
}
