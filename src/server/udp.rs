//! STUN/TURN over UDP: one SO_REUSEPORT socket per worker on each listen address, each served
//! by its own loop with its own buffers and counters and bound to one shard, so workers share
//! nothing per packet.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Protocol, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::shard::{Dispatcher, Handled, Shared};
use super::stats::{Counters, Event};
use super::throttle::Throttle;
use crate::turn::{FiveTuple, Transport};

/// Receive buffer: the largest UDP payload, so nothing is ever silently truncated.
const MAX_DATAGRAM: usize = 65_536;

/// Binds `workers` sockets to `addr` with SO_REUSEPORT; the kernel spreads sources across
/// them. With port 0 the first socket picks the port and the others join it.
pub(super) fn bind_group(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let first = bind_one(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(bind_one(bound)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = super::new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Serves one listen socket until `shutdown` fires; its clients live on shard `shard`.
pub(super) async fn serve(
    socket: Arc<UdpSocket>,
    shard: usize,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut dispatcher = Dispatcher::new();
    let mut warn = Throttle::default();
    let server = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!("udp socket has no local address: {e}");
            return;
        }
    };
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, client) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors and buffer exhaustion are transient: count, log rarely, go on.
                counters.count(Event::IoError);
                warn.warn(|| tracing::warn!("udp receive failed: {e}"));
                continue;
            }
        };
        counters.count(Event::Received);
        let tuple = FiveTuple {
            transport: Transport::Udp,
            client,
            server,
        };
        match dispatcher.handle(&shared, shard, tuple, &buf[..len]) {
            Handled::Reply => match socket.send_to(&dispatcher.reply, client).await {
                Ok(_) => counters.count(Event::Replied),
                Err(e) => {
                    counters.count(Event::IoError);
                    warn.warn(|| tracing::warn!("udp send to {client} failed: {e}"));
                }
            },
            Handled::Relayed => counters.count(Event::Relayed),
            Handled::Ignored => counters.count(Event::Ignored),
            Handled::Malformed(_) => counters.count(Event::Malformed),
        }
    }
}
