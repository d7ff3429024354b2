//! UDP generic segmentation offload (GSO, `UDP_SEGMENT`, Linux ≥ 4.18) for the datagrams a
//! worker sends to its clients ([`super::mmsg::SendQueue`]): consecutive datagrams of one
//! batch for the same destination and of the same length leave as one send of their
//! concatenation, which the kernel (or the NIC) cuts back into the same datagrams; one trip
//! down the UDP/IP stack instead of one per datagram.
//!
//! This file holds the pure part, which datagrams coalesce ([`coalesce`]), and each socket's
//! state ([`Gso`]): probed once when the worker starts, then narrowed or switched off for
//! that socket alone when the kernel refuses a GSO send, whose datagrams are then sent one
//! by one, in order, none lost.

use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt};

/// Most datagrams in one GSO send: the kernel's `UDP_MAX_SEGMENTS`, 64 in the kernels that
/// brought `UDP_SEGMENT` (newer ones allow more; 64 is safe everywhere).
pub(super) const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: one IP packet (65 535 bytes) less the IPv6 and UDP headers,
/// for IPv4 sockets too.
pub(super) const MAX_BYTES: usize = 65_535 - 40 - 8;
/// A segment length every path carries unfragmented (the IPv6 minimum MTU, 1 280, less the
/// IPv6 and UDP headers): the kernel refusing GSO at or below it means GSO does not work on
/// this socket at all, not that the segment was longer than the route's MTU.
const ALWAYS_FITS: usize = 1_280 - 40 - 8;

/// How many of `items` (destination, length), from the first, leave as one send: the first,
/// and the datagrams after it for the same destination and of the same length; the last may
/// be shorter (not empty). At most [`MAX_SEGMENTS`] datagrams and [`MAX_BYTES`] bytes, and
/// only when the first is no longer than `max_segment`. 1 means a plain datagram; 0 only
/// for no items.
pub(super) fn coalesce<D: PartialEq>(items: &[(D, usize)], max_segment: usize) -> usize {
    let Some((to, segment)) = items.first() else {
        return 0;
    };
    let segment = *segment;
    if segment == 0 || segment > max_segment {
        return 1;
    }
    let (mut count, mut bytes) = (1, segment);
    for (next_to, len) in &items[1..] {
        let len = *len;
        if count == MAX_SEGMENTS || next_to != to || len > segment || len == 0 {
            break;
        }
        if bytes + len > MAX_BYTES {
            break;
        }
        count += 1;
        bytes += len;
        // A shorter datagram can only be the last segment.
        if len < segment {
            break;
        }
    }
    count
}

/// What one socket may send with GSO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gso {
    /// The longest segment to coalesce; 0 when GSO is off for this socket.
    max_segment: usize,
}

/// What [`Gso::refused`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// GSO is off for this socket from now on.
    Off,
    /// Segments longer than this are sent one by one from now on (longer than the route's
    /// MTU: the kernel will not fragment a GSO segment).
    Narrowed(usize),
    /// Not GSO's fault: the send failed for another reason.
    Other,
}

impl Gso {
    /// GSO is off.
    pub(super) const OFF: Gso = Gso { max_segment: 0 };
    /// GSO for any segment length.
    pub(super) const ON: Gso = Gso {
        max_segment: MAX_BYTES,
    };

    /// On when the kernel knows `UDP_SEGMENT` on `socket` (asked once, at start).
    pub(super) fn probe(socket: &impl AsFd) -> Gso {
        match getsockopt(socket, sockopt::UdpGsoSegment) {
            Ok(_) => Gso::ON,
            Err(_) => Gso::OFF,
        }
    }

    /// The longest segment to coalesce; 0 when off.
    pub(super) fn max_segment(self) -> usize {
        self.max_segment
    }

    /// A GSO send of `segment`-byte datagrams failed with `error`: EIO (no checksum offload
    /// on the device), ENOPROTOOPT or EOPNOTSUPP switch GSO off; EINVAL or EMSGSIZE for a
    /// segment longer than what every path carries keeps GSO for shorter ones.
    pub(super) fn refused(&mut self, segment: usize, error: Errno) -> Refusal {
        match error {
            Errno::EINVAL | Errno::EMSGSIZE if segment > ALWAYS_FITS => {
                self.max_segment = self.max_segment.min(segment - 1);
                Refusal::Narrowed(self.max_segment)
            }
            Errno::EINVAL
            | Errno::EMSGSIZE
            | Errno::EIO
            | Errno::ENOPROTOOPT
            | Errno::EOPNOTSUPP => {
                *self = Gso::OFF;
                Refusal::Off
            }
            _ => Refusal::Other,
        }
    }
}

/// What became of one flush of a send queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flushed {
    /// Datagrams the socket would not take (a full send buffer, an unreachable address).
    pub(super) dropped: usize,
    /// GSO sends that the kernel took, and the datagrams they carried.
    pub(super) gso_sends: usize,
    pub(super) gso_datagrams: usize,
    /// GSO sends the kernel refused, each sent again datagram by datagram.
    pub(super) gso_refused: usize,
}

/// The error of a failed flush, for the log.
pub(super) fn describe(refusal: Refusal, error: Errno) -> String {
    let error = io::Error::from(error);
    match refusal {
        Refusal::Off => format!("UDP GSO refused ({error}): off for this socket"),
        Refusal::Narrowed(max) => {
            format!("UDP GSO refused ({error}): only segments up to {max} bytes from now on")
        }
        Refusal::Other => format!("UDP GSO send failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(items: &[(u8, usize)]) -> Vec<usize> {
        // Every group, in order, as the send queue cuts its batch.
        let mut groups = Vec::new();
        let mut at = 0;
        while at < items.len() {
            let n = coalesce(&items[at..], MAX_BYTES);
            assert!(n >= 1);
            groups.push(n);
            at += n;
        }
        groups
    }

    #[test]
    fn same_destination_and_length_coalesce() {
        assert_eq!(run(&[(1, 100); 5]), [5]);
        assert_eq!(run(&[]), Vec::<usize>::new());
        assert_eq!(run(&[(1, 100)]), [1]);
    }

    #[test]
    fn a_shorter_last_datagram_ends_the_group() {
        assert_eq!(run(&[(1, 100), (1, 100), (1, 40), (1, 100)]), [3, 1]);
        // Longer ones do not join: the kernel would cut them at the first's length.
        assert_eq!(run(&[(1, 100), (1, 101), (1, 101)]), [1, 2]);
        // An empty datagram would vanish inside a GSO send.
        assert_eq!(run(&[(1, 100), (1, 0), (1, 0)]), [1, 1, 1]);
    }

    #[test]
    fn other_destinations_break_the_group_and_order_holds() {
        assert_eq!(run(&[(1, 100), (2, 100), (1, 100), (1, 100)]), [1, 1, 2]);
        assert_eq!(run(&[(1, 100), (1, 100), (2, 100), (2, 100)]), [2, 2]);
    }

    #[test]
    fn at_most_64_segments_and_64_kib() {
        assert_eq!(run(&[(1, 10); 130]), [64, 64, 2]);
        // 1 000-byte datagrams: 65 of them make 65 000 bytes, but 64 is the limit.
        assert_eq!(run(&[(1, 1_000); 65]), [64, 1]);
        // 1 400-byte datagrams: 46 fit in 65 487 bytes.
        assert_eq!(run(&[(1, 1_400); 50]), [46, 4]);
        assert_eq!(run(&[(1, MAX_BYTES); 2]), [1, 1]);
    }

    #[test]
    fn no_coalescing_past_the_socket_limit() {
        let items = [(1, 1_400); 4];
        assert_eq!(coalesce(&items, Gso::OFF.max_segment()), 1);
        assert_eq!(coalesce(&items, 1_399), 1);
        assert_eq!(coalesce(&items, 1_400), 4);
    }

    #[test]
    fn refusals_narrow_or_switch_off() {
        let mut gso = Gso::ON;
        assert_eq!(gso.refused(1_400, Errno::EINVAL), Refusal::Narrowed(1_399));
        assert_eq!(gso.max_segment(), 1_399);
        assert_eq!(
            gso.refused(1_300, Errno::EMSGSIZE),
            Refusal::Narrowed(1_299)
        );
        assert_eq!(gso.refused(1_000, Errno::EHOSTUNREACH), Refusal::Other);
        assert_eq!(gso.max_segment(), 1_299);
        assert_eq!(gso.refused(1_000, Errno::EINVAL), Refusal::Off);
        assert_eq!(gso, Gso::OFF);
        let mut gso = Gso::ON;
        assert_eq!(gso.refused(1_400, Errno::EIO), Refusal::Off);
        assert_eq!(gso.max_segment(), 0);
    }

    #[test]
    fn the_probe_finds_gso_on_this_kernel() {
        // Linux ≥ 4.18 everywhere this runs.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert_eq!(Gso::probe(&socket), Gso::ON);
    }
}
