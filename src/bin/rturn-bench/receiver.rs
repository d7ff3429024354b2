//! The receiving half of the relay engine (`load`): the clients' sockets and the echo peer on
//! one epoll (mio), read with `recvmmsg`; the peer answers each batch with one `sendmmsg`.
//! Edge-triggered: a socket is read until it is empty, or put back in line after
//! [`FAIR_BATCHES`] batches so that one busy socket does not starve the others.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg};

use crate::load::{BATCH, DRAIN, GRACE, HEADER, Load, MAX_ROUNDS, Progress, elapsed_cpu, send_all};
use crate::procfs;
use crate::proto::CHANNEL;
use crate::stats::Histogram;

/// Receive buffer per message: larger than any packet sent (`MAX_SIZE` + header).
const SLOT: usize = 2048;
/// The longest epoll wait, so the end of the run is noticed.
const POLL_TICK: Duration = Duration::from_millis(5);
/// Batches read from one socket before the others get their turn.
const FAIR_BATCHES: usize = 16;

/// The receiver: the clients' sockets and the echo peer on one epoll.
pub(crate) struct Receiver<'a> {
    fds: &'a [RawFd],
    peer: RawFd,
    load: Load,
    poll: Poll,
    /// The run's start, which the scheduled times count from.
    start: Instant,
    buf: Vec<u8>,
    lens: [usize; BATCH],
    addrs: [Option<SockaddrIn>; BATCH],
    recv_headers: MultiHeaders<SockaddrIn>,
    send_headers: MultiHeaders<SockaddrIn>,
    /// The highest sequence number seen per flow, plus one (0: none yet).
    next_seq: Vec<u64>,
    pub(crate) received: u64,
    pub(crate) stale: u64,
    pub(crate) out_of_order: u64,
    pub(crate) echo_not_sent: u64,
    pub(crate) one_way: Histogram,
    pub(crate) round_trip: Histogram,
    pub(crate) cpu: Duration,
}

impl<'a> Receiver<'a> {
    pub(crate) fn new(fds: &'a [RawFd], peer: RawFd, load: Load) -> anyhow::Result<Receiver<'a>> {
        let poll = Poll::new().context("creating the epoll instance")?;
        for (i, fd) in fds.iter().enumerate() {
            poll.registry()
                .register(&mut SourceFd(fd), Token(i), Interest::READABLE)
                .context("registering a client socket")?;
        }
        poll.registry()
            .register(&mut SourceFd(&peer), Token(fds.len()), Interest::READABLE)
            .context("registering the echo peer")?;
        Ok(Receiver {
            fds,
            peer,
            load,
            poll,
            start: Instant::now(),
            buf: vec![0; BATCH * SLOT],
            lens: [0; BATCH],
            addrs: [None; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
            next_seq: vec![0; fds.len()],
            received: 0,
            stale: 0,
            out_of_order: 0,
            echo_not_sent: 0,
            one_way: Histogram::new(),
            round_trip: Histogram::new(),
            cpu: Duration::ZERO,
        })
    }

    /// Reads and echoes until every sent packet is back, or [`DRAIN`] after the sender is
    /// done (the latest: the schedule's end plus [`GRACE`] and [`DRAIN`]).
    pub(crate) fn run(&mut self, start: Instant, progress: &Progress) -> anyhow::Result<()> {
        let cpu_start = procfs::thread_cpu();
        self.start = start;
        let mut events = Events::with_capacity(1024);
        // Sockets with more to read than one turn took, served before waiting again.
        let mut ready: Vec<usize> = Vec::new();
        let mut queued = vec![false; self.fds.len() + 1];
        let latest = start + self.load.duration + GRACE + DRAIN;
        for _ in 0..MAX_ROUNDS {
            let now = Instant::now();
            let stop = if progress.done.load(Ordering::Acquire) {
                if self.received >= progress.sent.load(Ordering::Acquire) {
                    break;
                }
                let done_at = progress.done_at.load(Ordering::Acquire);
                start + Duration::from_nanos(done_at) + DRAIN
            } else {
                latest
            };
            if now >= stop {
                break;
            }
            let wait = if ready.is_empty() {
                (stop - now).min(POLL_TICK)
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("waiting on epoll"),
            }
            for event in &events {
                let token = event.token().0;
                if let Some(flag) = queued.get_mut(token)
                    && !*flag
                {
                    *flag = true;
                    ready.push(token);
                }
            }
            let mut i = 0;
            while i < ready.len() {
                let token = ready[i];
                if self.serve(token) {
                    i += 1;
                } else {
                    queued[token] = false;
                    ready.swap_remove(i);
                }
            }
        }
        self.cpu = elapsed_cpu(cpu_start);
        Ok(())
    }

    /// Reads up to [`FAIR_BATCHES`] batches from socket `token`; true if it may hold more.
    fn serve(&mut self, token: usize) -> bool {
        for _ in 0..FAIR_BATCHES {
            let is_peer = token == self.fds.len();
            let fd = if is_peer {
                self.peer
            } else {
                match self.fds.get(token) {
                    Some(&fd) => fd,
                    None => return false,
                }
            };
            let n = self.receive_batch(fd);
            if n == 0 {
                return false;
            }
            if is_peer {
                self.echo(n);
            } else {
                self.take(token, n);
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    /// One `recvmmsg` into the buffer; fills `lens` and `addrs`, returns the count.
    fn receive_batch(&mut self, fd: RawFd) -> usize {
        let mut slots = self.buf.chunks_mut(SLOT);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
        let flags = MsgFlags::MSG_DONTWAIT;
        let Ok(results) = recvmmsg(fd, &mut self.recv_headers, &mut iovs, flags, None) else {
            // EAGAIN: nothing more; an ICMP error: the loss count tells the story.
            return 0;
        };
        let mut n = 0;
        for (msg, (len, addr)) in results.zip(self.lens.iter_mut().zip(&mut self.addrs)) {
            *len = msg.bytes;
            *addr = msg.address;
            n += 1;
        }
        n
    }

    /// Nanoseconds since the run's start.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// At the peer: times the first pass through the relay and sends everything back.
    fn echo(&mut self, n: usize) {
        let now = self.now_ns();
        let mut iovs = Vec::with_capacity(n);
        for (slot, &len) in self.buf.chunks(SLOT).zip(&self.lens[..n]) {
            let data = slot.get(..len).unwrap_or_default();
            if let Some(stamp) = stamp(data, self.load.run) {
                self.one_way.record_ns(now.saturating_sub(stamp.due_ns));
            }
            iovs.push([IoSlice::new(data)]);
        }
        let echoed = send_all(self.peer, &mut self.send_headers, &iovs, &self.addrs[..n]);
        self.echo_not_sent += (n as u64).saturating_sub(echoed);
    }

    /// At a client: counts and times what came back on flow `flow`.
    fn take(&mut self, flow: usize, n: usize) {
        let now = self.now_ns();
        for (slot, &len) in self.buf.chunks(SLOT).zip(&self.lens[..n]) {
            let Some(payload) = channel_payload(slot.get(..len).unwrap_or_default()) else {
                continue;
            };
            let Some(stamp) = stamp(payload, self.load.run) else {
                self.stale += 1;
                continue;
            };
            self.received += 1;
            self.round_trip.record_ns(now.saturating_sub(stamp.due_ns));
            if let Some(next) = self.next_seq.get_mut(flow) {
                if stamp.seq < *next {
                    self.out_of_order += 1;
                } else {
                    *next = stamp.seq + 1;
                }
            }
        }
    }
}

/// What a packet carries about itself.
struct Stamp {
    seq: u64,
    /// Scheduled send time, in nanoseconds after the run's start.
    due_ns: u64,
}

/// The payload of a ChannelData packet on our channel.
fn channel_payload(packet: &[u8]) -> Option<&[u8]> {
    let channel = u16::from_be_bytes(packet.get(..2)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    if channel != CHANNEL {
        return None;
    }
    packet.get(HEADER..HEADER + len)
}

/// The stamp of a payload of run `run`; `None` for another run's or a short one.
fn stamp(payload: &[u8], run: u32) -> Option<Stamp> {
    let field = |range: std::ops::Range<usize>| payload.get(range);
    let their_run = u32::from_be_bytes(field(0..4)?.try_into().ok()?);
    if their_run != run {
        return None;
    }
    let seq = u64::from_be_bytes(field(8..16)?.try_into().ok()?);
    let due_ns = u64::from_be_bytes(field(16..24)?.try_into().ok()?);
    Some(Stamp { seq, due_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_other_runs_are_told_apart() {
        let mut packet = vec![0u8; HEADER + 24];
        packet[..2].copy_from_slice(&CHANNEL.to_be_bytes());
        packet[2..4].copy_from_slice(&24u16.to_be_bytes());
        packet[4..8].copy_from_slice(&7u32.to_be_bytes());
        packet[12..20].copy_from_slice(&42u64.to_be_bytes());
        packet[20..28].copy_from_slice(&123_456u64.to_be_bytes());
        let payload = channel_payload(&packet).expect("our channel");
        let s = stamp(payload, 7).expect("this run");
        assert_eq!((s.seq, s.due_ns), (42, 123_456));
        assert!(stamp(payload, 8).is_none());
        assert!(stamp(&payload[..20], 7).is_none());
        // Another channel, or a length past the end, is not ours.
        let mut other = packet.clone();
        other[1] = 1;
        assert!(channel_payload(&other).is_none());
        assert!(channel_payload(&packet[..20]).is_none());
    }
}
