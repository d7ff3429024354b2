//! Socket helpers shared by the listeners and the relay: a non-blocking socket for an
//! address, and a datagram sent without waiting.

use std::io;
use std::net::SocketAddr;

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

/// counted by the caller).
pub(super) fn send_now(socket: &std::net::UdpSocket, data: &[u8], to: SocketAddr) -> bool {
    socket2::SockRef::from(socket)
        .send_to(data, &to.into())
        .is_ok()
}
