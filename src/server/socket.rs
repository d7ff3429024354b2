//! The non-blocking socket every listener and relay socket starts from.

use std::io;
use std::net::SocketAddr;

/// A non-blocking socket for `addr`. IPv6 sockets are IPv6-only, so "[::]:3478" and
/// "0.0.0.0:3478" can be listed side by side.
pub(super) fn new_socket(
    addr: SocketAddr,
    ty: socket2::Type,
    protocol: socket2::Protocol,
) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}
