//! The relay engine of `relay-rate` and `max-rate`: ChannelData offered at a fixed rate over
//! every flow, echoed by the peer, with loss and latency.
//!
//! Two threads. The sender (here) sleeps until about `batch` packets are due (at most 1 ms),
//! then sends every due packet, one `sendmmsg` per flow. The receiver (`receiver`) waits on
//! epoll for the echo peer and the clients' sockets, reads what is there with `recvmmsg`, and
//! at the peer sends it all back with one `sendmmsg`. The server relays each packet twice (client → peer,
//! peer → client).
//!
//! Packet `k` of the run is due `k / rate` seconds after the start and goes on flow
//! `k mod flows`. Its payload starts with the run's id, the flow, the flow's sequence number
//! and the scheduled send time (u32, u32, u64, u64; big-endian). Latency counts from the
//! scheduled time, not the actual send: a sender that falls behind shows in the figures
//! instead of hiding the wait (no coordinated omission). Three histograms: scheduled → peer
//! (one way, through the relay once), scheduled → back at the client (round trip), and
//! scheduled → actually sent (the generator's own lag, to read the others against).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
use serde_json::json;

use crate::flows::Flows;
use crate::procfs;
use crate::proto::CHANNEL;
use crate::receiver::Receiver;
use crate::stats::{Histogram, round};

/// ChannelData header: channel number and length (RFC 8656 §12.4).
pub(crate) const HEADER: usize = 4;
/// Payload bytes the measurement needs: run, flow, sequence number, scheduled time.
pub(crate) const MIN_SIZE: usize = 24;
/// Messages per `sendmmsg` / `recvmmsg` call.
pub(crate) const BATCH: usize = 64;
/// The sender sleeps at most this long between wake-ups.
const MAX_SLEEP: Duration = Duration::from_millis(1);
/// The sender's timer slack: its wake-ups are the schedule.
const TIMER_SLACK_NS: u64 = 1000;
/// The sender gives up this long after the schedule's end; what is left is counted unsent.
pub(crate) const GRACE: Duration = Duration::from_millis(100);
/// How long the receiver waits for the last packets once the sender is done.
pub(crate) const DRAIN: Duration = Duration::from_millis(300);
/// Wake-ups of either thread at most, whatever the timing (about 240 s at 10 µs).
pub(crate) const MAX_ROUNDS: u64 = 25_000_000;
const NANOS: u128 = 1_000_000_000;

/// What one run offers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Packets per second, all flows together, one way.
    pub(crate) rate: u32,
    /// ChannelData payload bytes (at least [`MIN_SIZE`]).
    pub(crate) size: usize,
    pub(crate) duration: Duration,
    /// Packets sent per wake-up, about (the sender sleeps at most 1 ms).
    pub(crate) batch: usize,
    /// Tells this run's packets from late ones of an earlier run on the same flows.
    pub(crate) run: u32,
}

impl Load {
    /// Packets the schedule holds.
    fn total(&self) -> u64 {
        let total = u128::from(self.rate) * self.duration.as_nanos() / NANOS;
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    /// When packet `k` is due, in nanoseconds after the start.
    fn due_ns(&self, k: u64) -> u64 {
        u64::try_from(u128::from(k) * NANOS / u128::from(self.rate.max(1))).unwrap_or(u64::MAX)
    }
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) load: Load,
    pub(crate) scheduled: u64,
    /// Handed to the kernel.
    pub(crate) sent: u64,
    /// Refused by the kernel (or never tried before the sender gave up).
    pub(crate) not_sent: u64,
    /// This run's packets back at the clients.
    pub(crate) received: u64,
    /// Lost in the generator itself: dropped by the kernel because its queues were full
    /// (the receiver thread too slow), or not echoed by the peer.
    pub(crate) generator_dropped: u64,
    /// Earlier runs' packets, ignored.
    pub(crate) stale: u64,
    pub(crate) out_of_order: u64,
    pub(crate) one_way: Histogram,
    pub(crate) round_trip: Histogram,
    pub(crate) send_lag: Histogram,
    /// CPU time of the two engine threads.
    pub(crate) cpu: Duration,
}

impl Outcome {
    /// Packets sent and not back, in percent of those sent.
    pub(crate) fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }

    /// Whether the rate was offered and relayed with at most `max_loss` percent lost (packets
    /// the generator could not send count too: the rate was not offered).
    /// Whether the generator itself lost at least half of what was lost or not sent: then a
    /// failing rate says more about the generator than about the server.
    pub(crate) fn generator_bound(&self) -> bool {
        let lost = self.sent.saturating_sub(self.received) + self.not_sent;
        lost > 0 && 2 * (self.generator_dropped + self.not_sent) >= lost
    }

    pub(crate) fn passes(&self, max_loss: f64) -> bool {
        let not_sent = 100.0 * self.not_sent as f64 / self.scheduled.max(1) as f64;
        self.sent > 0 && self.loss_percent() < max_loss && not_sent < max_loss
    }

    /// The figures, as fields of a JSON report.
    pub(crate) fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let ms = |h: &Histogram, q| h.quantile_ms(q).map(|v| round(v, 4));
        let figures = json!({
            "rate": self.load.rate,
            "seconds": round(self.load.duration.as_secs_f64(), 3),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "not_sent": self.not_sent,
            "received": self.received,
            "loss_percent": round(self.loss_percent(), 4),
            "generator_dropped": self.generator_dropped,
            "stale": self.stale,
            "out_of_order": self.out_of_order,
            "p50_ms": ms(&self.one_way, 0.5),
            "p99_ms": ms(&self.one_way, 0.99),
            "p999_ms": ms(&self.one_way, 0.999),
            "rtt_p50_ms": ms(&self.round_trip, 0.5),
            "rtt_p99_ms": ms(&self.round_trip, 0.99),
            "rtt_p999_ms": ms(&self.round_trip, 0.999),
            "send_lag_p50_ms": ms(&self.send_lag, 0.5),
            "send_lag_p99_ms": ms(&self.send_lag, 0.99),
            "generator_cpu_s": round(self.cpu.as_secs_f64(), 3),
        });
        match figures {
            serde_json::Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        }
    }
}

/// What the sender tells the receiver.
pub(crate) struct Progress {
    pub(crate) sent: AtomicU64,
    /// Nanoseconds after the start at which the sender finished; 0 while it runs.
    pub(crate) done_at: AtomicU64,
    pub(crate) done: AtomicBool,
}

/// Runs `load` over the flows; blocks until the last packet is back or the drain time is
/// over.
pub(crate) fn run(flows: &Flows, load: Load) -> anyhow::Result<Outcome> {
    let fds: Vec<RawFd> = flows.clients.iter().map(|(s, _)| s.as_raw_fd()).collect();
    let peer = &flows.peer;
    let progress = Progress {
        sent: AtomicU64::new(0),
        done_at: AtomicU64::new(0),
        done: AtomicBool::new(false),
    };
    let mut receiver = Receiver::new(&fds, peer.as_raw_fd(), load)?;
    let drops_before = flows.udp_drops();
    let start = Instant::now();
    let (sender, received) = std::thread::scope(|s| {
        let sending = s.spawn(|| send(&fds, load, start, &progress));
        let received = receiver.run(start, &progress);
        (sending.join(), received)
    });
    let sender = match sender {
        Ok(sender) => sender,
        Err(_) => anyhow::bail!("the sender thread panicked"),
    };
    received.context("receiving")?;
    let drops = match (drops_before, flows.udp_drops()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => 0,
    };
    Ok(Outcome {
        load,
        scheduled: load.total(),
        sent: sender.sent,
        not_sent: load.total().saturating_sub(sender.sent),
        received: receiver.received,
        generator_dropped: drops + receiver.echo_not_sent,
        stale: receiver.stale,
        out_of_order: receiver.out_of_order,
        one_way: receiver.one_way,
        round_trip: receiver.round_trip,
        send_lag: sender.lag,
        cpu: sender.cpu + receiver.cpu,
    })
}

/// What the sender did.
struct Sent {
    sent: u64,
    lag: Histogram,
    cpu: Duration,
}

/// The sender thread: every due packet, flow by flow, in `sendmmsg` batches.
fn send(fds: &[RawFd], load: Load, start: Instant, progress: &Progress) -> Sent {
    let cpu_start = procfs::thread_cpu();
    procfs::set_timer_slack(TIMER_SLACK_NS);
    let flows = fds.len().max(1) as u64;
    let total = load.total();
    let give_up = start + load.duration + GRACE;
    let mut packets = vec![vec![0u8; HEADER + load.size]; BATCH];
    let len = u16::try_from(load.size).unwrap_or(u16::MAX).to_be_bytes();
    for packet in &mut packets {
        packet[..2].copy_from_slice(&CHANNEL.to_be_bytes());
        packet[2..4].copy_from_slice(&len);
        packet[HEADER..HEADER + 4].copy_from_slice(&load.run.to_be_bytes());
    }
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut lag = Histogram::new();
    let (mut next, mut sent) = (0u64, 0u64);
    for _ in 0..MAX_ROUNDS {
        let now = Instant::now();
        if next >= total || now > give_up {
            break;
        }
        let elapsed = now.duration_since(start).as_nanos();
        let due = u128::from(load.rate) * elapsed / NANOS + 1;
        let due = u64::try_from(due).unwrap_or(u64::MAX).min(total);
        // Packets next..due: the ones of each flow go out together.
        for first in next..due.min(next + flows) {
            let Some(&fd) = usize::try_from(first % flows).ok().and_then(|f| fds.get(f)) else {
                continue;
            };
            let mut k = first;
            while k < due {
                let mut n = 0;
                while n < BATCH && k < due {
                    let packet = &mut packets[n];
                    let flow = u32::try_from(k % flows).unwrap_or(u32::MAX);
                    packet[HEADER + 4..HEADER + 8].copy_from_slice(&flow.to_be_bytes());
                    packet[HEADER + 8..HEADER + 16].copy_from_slice(&(k / flows).to_be_bytes());
                    packet[HEADER + 16..HEADER + 24].copy_from_slice(&load.due_ns(k).to_be_bytes());
                    let late = elapsed.saturating_sub(u128::from(load.due_ns(k)));
                    lag.record_ns(u64::try_from(late).unwrap_or(u64::MAX));
                    k += flows;
                    n += 1;
                }
                let iovs: Vec<[IoSlice<'_>; 1]> =
                    packets[..n].iter().map(|p| [IoSlice::new(p)]).collect();
                sent += send_all(fd, &mut headers, &iovs, &[None; BATCH][..n]);
            }
        }
        next = due;
        progress.sent.store(sent, Ordering::Release);
        // Sleep until about `batch` packets are due, and at most MAX_SLEEP.
        let batch_end = next.saturating_add(load.batch as u64 - 1).min(total);
        let wake = start + Duration::from_nanos(load.due_ns(batch_end));
        let now = Instant::now();
        if wake > now {
            std::thread::sleep((wake - now).min(MAX_SLEEP));
        }
    }
    let done_at = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    progress.done_at.store(done_at.max(1), Ordering::Release);
    progress.sent.store(sent, Ordering::Release);
    progress.done.store(true, Ordering::Release);
    Sent {
        sent,
        lag,
        cpu: elapsed_cpu(cpu_start),
    }
}

/// Sends every message with as few `sendmmsg` calls as it takes; a message the kernel
/// refuses is skipped. Returns how many went out.
pub(crate) fn send_all(
    fd: RawFd,
    headers: &mut MultiHeaders<SockaddrIn>,
    iovs: &[[IoSlice<'_>; 1]],
    addrs: &[Option<SockaddrIn>],
) -> u64 {
    let (mut at, mut sent) = (0, 0);
    // Each call sends at least one message or skips one: at most 2 × len calls.
    for _ in 0..2 * iovs.len() {
        if at >= iovs.len() {
            break;
        }
        let cmsgs: [ControlMessage<'_>; 0] = [];
        let flags = MsgFlags::MSG_DONTWAIT;
        match sendmmsg(fd, headers, &iovs[at..], &addrs[at..], cmsgs, flags) {
            Ok(results) => {
                let n = results.count();
                at += n.max(1);
                sent += n as u64;
            }
            Err(Errno::EINTR) => {}
            // Queue full (EAGAIN, ENOBUFS) or an ICMP error reported: this one is lost.
            Err(_) => at += 1,
        }
    }
    sent
}

pub(crate) fn elapsed_cpu(start: Option<Duration>) -> Duration {
    match (start, procfs::thread_cpu()) {
        (Some(start), Some(end)) => end.saturating_sub(start),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rate: u32, millis: u64) -> Load {
        Load {
            rate,
            size: 160,
            duration: Duration::from_millis(millis),
            batch: 16,
            run: 7,
        }
    }

    #[test]
    fn schedule_spreads_the_packets_evenly() {
        let l = load(4000, 1500);
        assert_eq!(l.total(), 6000);
        assert_eq!(l.due_ns(0), 0);
        assert_eq!(l.due_ns(1), 250_000);
        assert_eq!(l.due_ns(4000), 1_000_000_000);
    }

    #[test]
    fn loss_and_generator_blame() {
        let mut o = Outcome {
            load: load(1000, 1000),
            scheduled: 1000,
            sent: 1000,
            not_sent: 0,
            received: 999,
            generator_dropped: 0,
            stale: 0,
            out_of_order: 0,
            one_way: Histogram::new(),
            round_trip: Histogram::new(),
            send_lag: Histogram::new(),
            cpu: Duration::ZERO,
        };
        assert!((o.loss_percent() - 0.1).abs() < 1e-9);
        assert!(!o.passes(0.1), "0.1 % is not less than 0.1 %");
        assert!(o.passes(0.2));
        assert!(!o.generator_bound());
        o.generator_dropped = 1;
        assert!(o.generator_bound());
        o.received = 1000;
        o.not_sent = 5;
        assert!(!o.passes(0.2), "not offering the rate fails the probe");
    }
}
