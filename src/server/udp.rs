//! UDP listen sockets: one SO_REUSEPORT socket per worker on each listen address, each served
//! by its worker's event loop ([`super::datapath`]), so workers share nothing per packet.

use std::io;
use std::net::SocketAddr;

use socket2::{Protocol, Type};

/// Socket buffers asked for (the kernel caps them at net.core.[rw]mem_max): room for a burst
/// of datagrams while the event loop is busy with the previous one.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds `workers` sockets to `addr` with SO_REUSEPORT; the kernel spreads sources across
/// them. With port 0 the first socket picks the port and the others join it.
///
/// A fixed port is first bound once without SO_REUSEPORT and let go: SO_REUSEPORT alone would
/// let a second rturn (same user) join a running one's group and silently take a share of its
/// clients, whose allocations live in the other process. The probe fails instead, with
/// "address in use", as TCP does.
pub(super) fn bind_group(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    if addr.port() != 0 {
        let probe = super::new_socket(addr, Type::DGRAM, Protocol::UDP)?;
        probe.bind(&addr.into())?;
    }
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
    // Best effort: the default buffers still work, only bursts suffer.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
