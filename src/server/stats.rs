//! Counters for what the listeners saw. Each worker and each TCP acceptor owns its own
//! [`Counters`], so the data path never writes a cache line another core writes;
//! [`Stats::snapshot`] adds them up when someone asks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One worker's counters. Relaxed atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    replied: AtomicU64,
    malformed: AtomicU64,
    ignored: AtomicU64,
    io_errors: AtomicU64,
    relayed: AtomicU64,
    tcp_accepted: AtomicU64,
    tcp_broken: AtomicU64,
    tcp_idle_closed: AtomicU64,
    rate_limited: AtomicU64,
    tcp_refused_per_ip: AtomicU64,
    tcp_allocation_timeout: AtomicU64,
    tls_handshake_timeout: AtomicU64,
    tcp_slow_consumer: AtomicU64,
    handoff_delivered: AtomicU64,
    handoff_refused: AtomicU64,
    handoff_gone: AtomicU64,
    handoff_full: AtomicU64,
    gso_sends: AtomicU64,
    gso_datagrams: AtomicU64,
    gso_refused: AtomicU64,
    mobility_forwarded: AtomicU64,
    mobility_full: AtomicU64,
    mobility_connections: AtomicU64,
    mobility_reports_dropped: AtomicU64,
}

/// Names the counter to bump.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A datagram or TCP frame arrived.
    Received,
    /// A response was sent.
    Replied,
    /// A packet was dropped as malformed.
    Malformed,
    /// A well-formed packet needed no answer.
    Ignored,
    /// A socket operation failed and was survived.
    IoError,
    /// A data packet was relayed (either direction).
    Relayed,
    /// A TCP connection was accepted.
    TcpAccepted,
    /// A TCP connection was closed because its framing broke, or ended mid-message.
    TcpBroken,
    /// A TCP connection was closed for being idle.
    TcpIdleClosed,
    /// An unauthenticated request went unanswered: its source's bucket was empty.
    RateLimited,
    /// A TCP/TLS connection was closed at accept: its IP address held too many.
    TcpRefusedPerIp,
    /// A TCP/TLS connection was closed for holding no allocation too long.
    TcpAllocationTimeout,
    /// A TLS connection was closed for not finishing its handshake in time.
    TlsHandshakeTimeout,
    /// A TCP/TLS connection was closed for not reading: its queue passed
    /// `max-tcp-queued-bytes`.
    TcpSlowConsumer,
    /// Data for one of rturn's own relays reached its allocation inside the process, which
    /// passed it on to its client.
    HandoffDelivered,
    /// ... which dropped it (no permission for the sender, or over its bandwidth).
    HandoffRefused,
    /// ... whose port was released before the data got there: dropped.
    HandoffGone,
    /// ... whose worker's inbox was full: dropped.
    HandoffFull,
    /// Datagrams for one client left a listen socket as one UDP GSO send.
    GsoSends,
    /// A datagram left inside a UDP GSO send.
    GsoDatagrams,
    /// The kernel refused a UDP GSO send; its datagrams left one by one.
    GsoRefused,
    /// A datagram from a client whose allocation moved to another worker (RFC 8016) went
    /// to that worker's inbox.
    MobilityForwarded,
    /// ... which was full: dropped.
    MobilityFull,
    /// A TCP/TLS connection moving an allocation another worker holds went to that worker.
    MobilityConnection,
    /// A report of a moved or ended mobile allocation found another worker's queue full.
    MobilityReportDropped,
}

impl Counters {
    /// Counts one event.
    pub fn count(&self, event: Event) {
        self.count_many(event, 1);
    }

    /// Counts `n` events of one kind.
    pub fn count_many(&self, event: Event, n: u64) {
        let counter = match event {
            Event::Received => &self.received,
            Event::Replied => &self.replied,
            Event::Malformed => &self.malformed,
            Event::Ignored => &self.ignored,
            Event::IoError => &self.io_errors,
            Event::Relayed => &self.relayed,
            Event::TcpAccepted => &self.tcp_accepted,
            Event::TcpBroken => &self.tcp_broken,
            Event::TcpIdleClosed => &self.tcp_idle_closed,
            Event::RateLimited => &self.rate_limited,
            Event::TcpRefusedPerIp => &self.tcp_refused_per_ip,
            Event::TcpAllocationTimeout => &self.tcp_allocation_timeout,
            Event::TlsHandshakeTimeout => &self.tls_handshake_timeout,
            Event::TcpSlowConsumer => &self.tcp_slow_consumer,
            Event::HandoffDelivered => &self.handoff_delivered,
            Event::HandoffRefused => &self.handoff_refused,
            Event::HandoffGone => &self.handoff_gone,
            Event::HandoffFull => &self.handoff_full,
            Event::GsoSends => &self.gso_sends,
            Event::GsoDatagrams => &self.gso_datagrams,
            Event::GsoRefused => &self.gso_refused,
            Event::MobilityForwarded => &self.mobility_forwarded,
            Event::MobilityFull => &self.mobility_full,
            Event::MobilityConnection => &self.mobility_connections,
            Event::MobilityReportDropped => &self.mobility_reports_dropped,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Totals over every worker at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Datagrams and TCP frames received.
    pub received: u64,
    /// Responses sent.
    pub replied: u64,
    /// Packets dropped as malformed.
    pub malformed: u64,
    /// Well-formed packets that needed no answer.
    pub ignored: u64,
    /// Socket errors survived.
    pub io_errors: u64,
    /// Data packets relayed, both directions.
    pub relayed: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// TCP connections closed because their framing broke, or that ended mid-message.
    pub tcp_broken: u64,
    /// TCP connections closed for being idle.
    pub tcp_idle_closed: u64,
    /// Unauthenticated requests left unanswered by the per-source rate limit.
    pub rate_limited: u64,
    /// TCP/TLS connections closed at accept for the per-IP cap.
    pub tcp_refused_per_ip: u64,
    /// TCP/TLS connections closed for holding no allocation.
    pub tcp_allocation_timeout: u64,
    /// TLS connections closed for not finishing the handshake in time.
    pub tls_handshake_timeout: u64,
    /// TCP/TLS connections closed for not reading (`max-tcp-queued-bytes`).
    pub tcp_slow_consumer: u64,
    /// Datagrams for rturn's own relays handed over inside the process: delivered to the
    /// client, refused by the receiving allocation, dropped for a released port, dropped
    /// for a full inbox.
    pub handoff: [u64; 4],
    /// UDP GSO on the listen sockets: sends, the datagrams they carried, sends refused by
    /// the kernel (sent again datagram by datagram).
    pub gso: [u64; 3],
    /// Datagrams of clients whose allocation moved to another worker: handed to it,
    /// dropped for its full inbox; TCP/TLS connections handed to it; reports of moves
    /// dropped for another worker's full queue.
    pub mobility: [u64; 4],
}

/// The registry of every worker's counters.
#[derive(Debug, Default)]
pub struct Stats {
    workers: Mutex<Vec<Arc<Counters>>>,
}

impl Stats {
    /// Counters for one more worker; taken once at start-up, never per packet.
    pub fn register(&self) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        self.lock().push(Arc::clone(&counters));
        counters
    }

    /// Adds up every worker's counters.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for c in self.lock().iter() {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.received += get(&c.received);
            s.replied += get(&c.replied);
            s.malformed += get(&c.malformed);
            s.ignored += get(&c.ignored);
            s.io_errors += get(&c.io_errors);
            s.relayed += get(&c.relayed);
            s.tcp_accepted += get(&c.tcp_accepted);
            s.tcp_broken += get(&c.tcp_broken);
            s.tcp_idle_closed += get(&c.tcp_idle_closed);
            s.rate_limited += get(&c.rate_limited);
            s.tcp_refused_per_ip += get(&c.tcp_refused_per_ip);
            s.tcp_allocation_timeout += get(&c.tcp_allocation_timeout);
            s.tls_handshake_timeout += get(&c.tls_handshake_timeout);
            s.tcp_slow_consumer += get(&c.tcp_slow_consumer);
            let handoff = [
                &c.handoff_delivered,
                &c.handoff_refused,
                &c.handoff_gone,
                &c.handoff_full,
            ];
            for (total, counter) in s.handoff.iter_mut().zip(handoff) {
                *total += get(counter);
            }
            let gso = [&c.gso_sends, &c.gso_datagrams, &c.gso_refused];
            for (total, counter) in s.gso.iter_mut().zip(gso) {
                *total += get(counter);
            }
            s.mobility[0] += get(&c.mobility_forwarded);
            s.mobility[1] += get(&c.mobility_full);
            s.mobility[2] += get(&c.mobility_connections);
            s.mobility[3] += get(&c.mobility_reports_dropped);
        }
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Counters>>> {
        // A panic while holding this lock cannot leave the Vec half-written.
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_adds_up_workers() {
        let stats = Stats::default();
        let a = stats.register();
        let b = stats.register();
        a.count(Event::Malformed);
        b.count(Event::Malformed);
        b.count(Event::Replied);
        let s = stats.snapshot();
        assert_eq!((s.malformed, s.replied, s.received), (2, 1, 0));
    }
}
