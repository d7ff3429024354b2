//! Batched UDP I/O: `recvmmsg` fills up to [`BATCH`] buffers in one system call, and
//! [`SendQueue`] collects datagrams for one socket and sends them with one `sendmmsg`, runs
//! of datagrams for one destination and of one length as one GSO send each
//! ([`super::gso`]). Both go through `nix`, so no unsafe code lives here.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

use super::gso::{self, Flushed, Gso, Refusal, coalesce};

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

/// Datagrams waiting to leave one socket, copied into one arena in the order they were
/// queued, so the datagrams of one GSO send ([`super::gso`]) are one slice of it. At most
/// [`BATCH`] of them: the owner flushes a full queue.
pub(super) struct SendQueue {
    arena: Vec<u8>,
    /// Where each datagram starts in the arena.
    starts: Vec<usize>,
    /// Each datagram's destination and length.
    items: Vec<(SocketAddr, usize)>,
    /// Each datagram's destination, as nix takes it.
    to: Vec<Option<SockaddrStorage>>,
    /// Headers for datagrams sent one by one.
    plain: MultiHeaders<SockaddrStorage>,
    /// Headers with room for one `UDP_SEGMENT` control message each, for GSO sends.
    segmented: MultiHeaders<SockaddrStorage>,
    /// The destinations of the GSO sends of one `sendmmsg`.
    segmented_to: Vec<Option<SockaddrStorage>>,
    /// What this socket may send with GSO.
    gso: Gso,
}

/// What one `sendmmsg` did.
enum Step {
    /// These many datagrams left (at least one).
    Sent(usize),
    /// The send buffer is full: the rest is dropped.
    Full,
    /// These many datagrams, at the head, cannot be sent: dropped, the others go on.
    Skip(usize),
    /// The kernel refused GSO: send the same datagrams again, as the socket now allows.
    Again,
}

impl SendQueue {
    /// A queue for a socket that may send with `gso` ([`Gso::probe`]).
    pub(super) fn new(gso: Gso) -> Self {
        Self {
            arena: Vec::with_capacity(BATCH * 1500),
            starts: Vec::with_capacity(BATCH),
            items: Vec::with_capacity(BATCH),
            to: Vec::with_capacity(BATCH),
            plain: MultiHeaders::preallocate(BATCH, None),
            segmented: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u16))),
            segmented_to: Vec::with_capacity(BATCH),
            gso,
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
        self.starts.push(start);
        self.items.push((to, self.arena.len() - start));
        self.to.push(Some(SockaddrStorage::from(to)));
    }

    /// Sends everything queued from `socket`, in order: runs of datagrams for one
    /// destination and of one length as GSO sends, the others with one `sendmmsg` per run.
    /// What the socket will not take now (a full send buffer) is dropped, as UDP allows,
    /// and counted in [`Flushed::dropped`].
    pub(super) fn flush(&mut self, socket: &impl AsRawFd) -> Flushed {
        let mut flushed = Flushed::default();
        let mut done = 0;
        // Each round sends or skips at least one datagram, or switches GSO off or narrows
        // it (which a socket does a bounded number of times), so this ends.
        while done < self.items.len() {
            let step = if coalesce(&self.items[done..], self.gso.max_segment()) > 1 {
                self.send_segmented(socket.as_raw_fd(), done, &mut flushed)
            } else {
                self.send_plain(socket.as_raw_fd(), done)
            };
            match step {
                Step::Sent(n) => done += n,
                Step::Full => break,
                Step::Skip(n) => {
                    flushed.dropped += n;
                    done += n;
                }
                Step::Again => {}
            }
        }
        flushed.dropped += self.items.len() - done;
        self.arena.clear();
        self.starts.clear();
        self.items.clear();
        self.to.clear();
        flushed
    }

    /// One `sendmmsg` of the datagrams from `done` that do not coalesce, up to the next that do.
    fn send_plain(&mut self, fd: RawFd, done: usize) -> Step {
        let max_segment = self.gso.max_segment();
        let mut end = done + 1;
        while end < self.items.len()
            && end - done < BATCH
            && coalesce(&self.items[end..], max_segment) == 1
        {
            end += 1;
        }
        // On the stack: the data path allocates nothing per datagram or per batch.
        let mut slices = [[IoSlice::new(&[])]; BATCH];
        for (slot, i) in slices.iter_mut().zip(done..end) {
            *slot = [IoSlice::new(datagrams(
                &self.arena,
                &self.starts,
                &self.items,
                i,
                1,
            ))];
        }
        let none: [ControlMessage<'_>; 0] = [];
        match nix::sys::socket::sendmmsg(
            fd,
            &mut self.plain,
            slices[..end - done].iter(),
            &self.to[done..end],
            none,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => match results.count() {
                0 => Step::Full,
                sent => Step::Sent(sent),
            },
            Err(Errno::EAGAIN) => Step::Full,
            // The datagram at `done` cannot be sent (say, an unreachable address): skip it
            // and go on with the others.
            Err(_) => Step::Skip(1),
        }
    }

    /// One `sendmmsg` of GSO sends from `done`: each a run of datagrams that coalesce, as
    /// long as their segments are as long as the first run's (one control message serves
    /// the whole call).
    fn send_segmented(&mut self, fd: RawFd, done: usize, flushed: &mut Flushed) -> Step {
        let max_segment = self.gso.max_segment();
        let segment = self.items[done].1;
        let mut slices = [[IoSlice::new(&[])]; BATCH];
        let mut counts = [0usize; BATCH];
        let mut sends = 0;
        let mut at = done;
        self.segmented_to.clear();
        while sends < BATCH && at < self.items.len() && self.items[at].1 == segment {
            let count = coalesce(&self.items[at..], max_segment);
            if count < 2 {
                break;
            }
            let bytes = datagrams(&self.arena, &self.starts, &self.items, at, count);
            slices[sends] = [IoSlice::new(bytes)];
            counts[sends] = count;
            self.segmented_to.push(self.to[at]);
            sends += 1;
            at += count;
        }
        // `coalesce` keeps segments under 64 KiB.
        let Ok(size) = u16::try_from(segment) else {
            return Step::Skip(counts[0]);
        };
        let cmsg = [ControlMessage::UdpGsoSegments(&size)];
        match nix::sys::socket::sendmmsg(
            fd,
            &mut self.segmented,
            slices[..sends].iter(),
            &self.segmented_to,
            cmsg,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => {
                let sent = results.count();
                let datagrams = counts[..sent].iter().sum();
                flushed.gso_sends += sent;
                flushed.gso_datagrams += datagrams;
                if datagrams == 0 {
                    Step::Full
                } else {
                    Step::Sent(datagrams)
                }
            }
            Err(Errno::EAGAIN) => Step::Full,
            Err(e) => match self.gso.refused(segment, e) {
                // Another error: the first run's destination cannot be reached now.
                Refusal::Other => Step::Skip(counts[0]),
                refusal => {
                    flushed.gso_refused += 1;
                    let why = gso::describe(refusal, e);
                    if refusal == Refusal::Off {
                        tracing::warn!("{why}");
                    } else {
                        tracing::debug!("{why}");
                    }
                    Step::Again
                }
            },
        }
    }
}

/// The bytes of `count` queued datagrams from the `first`, one after the other in `arena`.
fn datagrams<'a>(
    arena: &'a [u8],
    starts: &[usize],
    items: &[(SocketAddr, usize)],
    first: usize,
    count: usize,
) -> &'a [u8] {
    let last = first + count - 1;
    &arena[starts[first]..starts[last] + items[last].1]
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

    /// A bound receiver that waits up to 5 s for each datagram.
    fn receiver() -> std::net::UdpSocket {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        (socket.set_read_timeout(Some(std::time::Duration::from_secs(5)))).expect("timeout");
        socket
    }

    /// The next `n` datagrams on `socket`, each as received.
    fn take(socket: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        (0..n)
            .map(|_| {
                let len = socket.recv(&mut buf).expect("a datagram");
                buf[..len].to_vec()
            })
            .collect()
    }

    /// Datagram `i`: `len` bytes of `i`.
    fn datagram(i: usize, len: usize) -> Vec<u8> {
        vec![i as u8; len]
    }

    /// To a: 10 × 100 bytes and a shorter 40 (one GSO send); to b: 3 × 50 (another); to a:
    /// one more 100 (alone). Sent with `gso`, then every datagram is checked at its receiver,
    /// whole, apart and in order.
    fn mixed_batch(sender: &impl AsRawFd, gso: Gso) -> Flushed {
        let (a, b) = (receiver(), receiver());
        let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let mut want_a = Vec::new();
        let mut want_b = Vec::new();
        let mut queue = SendQueue::new(gso);
        for i in 0..15 {
            let (to, want, len) = match i {
                0..10 => (to_a, &mut want_a, 100),
                10 => (to_a, &mut want_a, 40),
                11..14 => (to_b, &mut want_b, 50),
                _ => (to_a, &mut want_a, 100),
            };
            let bytes = datagram(i, len);
            // In two parts, as a ChannelData header and its payload are queued.
            queue.push(to, &[&bytes[..4], &bytes[4..]]);
            want.push(bytes);
        }
        let flushed = queue.flush(sender);
        assert_eq!(take(&a, want_a.len()), want_a);
        assert_eq!(take(&b, want_b.len()), want_b);
        flushed
    }

    #[test]
    fn runs_for_one_destination_leave_as_gso_sends_and_arrive_apart_in_order() {
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
        let flushed = mixed_batch(&sender, Gso::probe(&sender));
        let want = Flushed {
            dropped: 0,
            gso_sends: 2,
            gso_datagrams: 14,
            gso_refused: 0,
        };
        assert_eq!(flushed, want);
        // Without GSO the same datagrams arrive the same way.
        let plain = mixed_batch(&sender, Gso::OFF);
        assert_eq!(plain, Flushed::default());
    }

    #[test]
    fn datagrams_of_two_sockets_never_share_a_send() {
        // One queue per socket: the same destination and length from two sockets are two
        // GSO sends, each from its own source.
        let to = receiver();
        let addr = to.local_addr().expect("addr");
        let senders: Vec<_> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("sender"))
            .collect();
        let mut queues = [SendQueue::new(Gso::ON), SendQueue::new(Gso::ON)];
        for (s, queue) in queues.iter_mut().enumerate() {
            for i in 0..3 {
                queue.push(addr, &[&datagram(s * 10 + i, 100)]);
            }
        }
        for (sender, queue) in senders.iter().zip(&mut queues) {
            let flushed = queue.flush(sender);
            assert_eq!((flushed.gso_sends, flushed.gso_datagrams), (1, 3));
        }
        let mut buf = [0u8; 200];
        for (s, sender) in senders.iter().enumerate() {
            for i in 0..3 {
                let (len, from) = to.recv_from(&mut buf).expect("a datagram");
                assert_eq!(
                    (&buf[..len], from),
                    (
                        &datagram(s * 10 + i, 100)[..],
                        sender.local_addr().expect("addr")
                    )
                );
            }
        }
    }

    #[test]
    fn a_socket_that_refuses_gso_sends_every_datagram_one_by_one() {
        // The kernel refuses GSO on UDP-Lite sockets (EIO), as on a device without checksum
        // offload.
        let udplite = socket2::Protocol::from(136);
        let socket = |addr: &str| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(udplite))
                    .expect("a UDP-Lite socket");
            let addr: SocketAddr = addr.parse().expect("addr");
            socket.bind(&addr.into()).expect("bind");
            std::net::UdpSocket::from(socket)
        };
        let (sender, receiver) = (socket("127.0.0.1:0"), socket("127.0.0.1:0"));
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let to = receiver.local_addr().expect("addr");
        let mut queue = SendQueue::new(Gso::ON);
        for round in 0..2 {
            let want: Vec<_> = (0..6).map(|i| datagram(i, 100)).collect();
            for bytes in &want {
                queue.push(to, &[bytes]);
            }
            let flushed = queue.flush(&sender);
            // Refused once, then off for this socket.
            let refused = usize::from(round == 0);
            assert_eq!(
                flushed,
                Flushed {
                    gso_refused: refused,
                    ..Flushed::default()
                }
            );
            assert_eq!(take(&receiver, want.len()), want);
        }
        assert_eq!(queue.gso, Gso::OFF);
    }
}
