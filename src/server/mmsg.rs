//! Batched UDP I/O: `recvmmsg` fills up to [`BATCH`] buffers in one system call, and
//! [`SendQueue`] collects datagrams for one socket and sends them with one `sendmmsg`.
//! Both go through `nix`, so no unsafe code lives here.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

/// Datagrams per system call.
pub(super) const BATCH: usize = 32;
/// The largest UDP payload, so nothing is ever silently truncated.
const MAX_DATAGRAM: usize = 65_536;

/// Receive buffers and headers for one thread.
pub(super) struct RecvBatch {
    bufs: Box<[Vec<u8>; BATCH]>,
    /// Headers for IPv4 sockets and for IPv6 sockets, apart. `msg_namelen` is in-out: the
    /// kernel leaves the length of the source it wrote there, and nix's `recvmmsg` does not
    /// restore the capacity (nix-rust/nix#2813), so a header that once held an IPv4 source
    /// would cut every later IPv6 source to 16 bytes: a garbage address, and the packet of a
    /// permitted IPv6 peer dropped. Each header of a family always holds that family's length.
    headers: [MultiHeaders<SockaddrStorage>; 2],
    /// Length and source of each datagram of the last [`RecvBatch::recv`].
    meta: Vec<(usize, SocketAddr)>,
}

impl RecvBatch {
    pub(super) fn new() -> Self {
        Self {
            bufs: Box::new(std::array::from_fn(|_| vec![0u8; MAX_DATAGRAM])),
            headers: std::array::from_fn(|_| MultiHeaders::preallocate(BATCH, None)),
            meta: Vec::with_capacity(BATCH),
        }
    }

    /// Receives what is queued on `socket` (an IPv6 one if `ipv6`), up to [`BATCH`]
    /// datagrams, without waiting. Returns how many arrived; fewer than [`BATCH`] means the
    /// queue is now empty.
    pub(super) fn recv(&mut self, socket: &impl AsRawFd, ipv6: bool) -> io::Result<usize> {
        self.meta.clear();
        let fd: RawFd = socket.as_raw_fd();
        let mut slices = self
            .bufs
            .each_mut()
            .map(|b| [IoSliceMut::new(b.as_mut_slice())]);
        let results = nix::sys::socket::recvmmsg(
            fd,
            &mut self.headers[usize::from(ipv6)],
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for msg in results {
            // A datagram without a usable source (not IPv4/IPv6) cannot be answered.
            let from = msg.address.as_ref().and_then(to_std);
            self.meta.push((msg.bytes, from.unwrap_or(UNKNOWN)));
        }
        Ok(self.meta.len())
    }

    /// Datagram `i` of the last receive and its source; the source is [`UNKNOWN`] when the
    /// kernel gave none.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, from) = self.meta.get(i)?;
        Some((self.bufs.get(i)?.get(..len)?, from))
    }
}

/// Stands for a missing source address; never a real peer (port 0).
pub(super) const UNKNOWN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Datagrams waiting to leave one socket, copied into one arena.
pub(super) struct SendQueue {
    arena: Vec<u8>,
    items: Vec<(usize, usize)>,
    to: Vec<Option<SockaddrStorage>>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl SendQueue {
    pub(super) fn new() -> Self {
        Self {
            arena: Vec::with_capacity(BATCH * 1500),
            items: Vec::with_capacity(BATCH),
            to: Vec::with_capacity(BATCH),
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.items.len() >= BATCH
    }

    /// Queues one datagram made of `parts` (copied), for `to`.
    pub(super) fn push(&mut self, to: SocketAddr, parts: &[&[u8]]) {
        let start = self.arena.len();
        for part in parts {
            self.arena.extend_from_slice(part);
        }
        self.items.push((start, self.arena.len() - start));
        self.to.push(Some(SockaddrStorage::from(to)));
    }

    /// Sends everything queued from `socket` and returns how many datagrams were dropped:
    /// what the socket will not take now (a full send buffer) is dropped, as UDP allows.
    pub(super) fn flush(&mut self, socket: &impl AsRawFd) -> usize {
        if self.items.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        let mut done = 0;
        // Each round sends at least one datagram or skips one, so this ends.
        while done < self.items.len() {
            // On the stack: the data path allocates nothing per datagram or per batch.
            let mut slices = [[IoSlice::new(&[])]; BATCH];
            let pending = &self.items[done..];
            for (slot, &(start, len)) in slices.iter_mut().zip(pending) {
                *slot = [IoSlice::new(&self.arena[start..start + len])];
            }
            let slices = &slices[..pending.len().min(BATCH)];
            let none: [ControlMessage<'_>; 0] = [];
            match nix::sys::socket::sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices.iter(),
                &self.to[done..],
                none,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => {
                    let sent = results.count();
                    if sent == 0 {
                        break;
                    }
                    done += sent;
                }
                // The send buffer is full: the rest is dropped below.
                Err(nix::errno::Errno::EAGAIN) => break,
                // The datagram at `done` cannot be sent (say, an unreachable address):
                // skip it and go on with the others.
                Err(_) => {
                    dropped += 1;
                    done += 1;
                }
            }
        }
        dropped += self.items.len() - done;
        self.arena.clear();
        self.items.clear();
        self.to.clear();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_survive_ipv4_ones_in_the_same_batch() {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("v4");
        let v6 = std::net::UdpSocket::bind("[::1]:0").expect("v6");
        let (from4, from6) = (
            std::net::UdpSocket::bind("127.0.0.1:0").expect("v4 sender"),
            std::net::UdpSocket::bind("[::1]:0").expect("v6 sender"),
        );
        let mut batch = RecvBatch::new();
        for _ in 0..2 {
            for (socket, sender, ipv6) in [(&v4, &from4, false), (&v6, &from6, true)] {
                let to = socket.local_addr().expect("addr");
                sender.send_to(b"x", to).expect("send");
                socket.set_nonblocking(false).expect("blocking");
                // Wait until it is queued, then take it the way the event loop does.
                let mut peek = [0u8; 1];
                socket.peek_from(&mut peek).expect("peek");
                assert_eq!(batch.recv(socket, ipv6).expect("recv"), 1);
                let (data, source) = batch.get(0).expect("a datagram");
                assert_eq!(
                    (data, source),
                    (&b"x"[..], sender.local_addr().expect("addr"))
                );
            }
        }
    }
}
