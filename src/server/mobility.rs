//! RFC 8016 mobility across workers: datagrams from a client whose allocation lives on
//! another worker, passed to that worker ([`Moves`]).
//!
//! The kernel hashes each UDP client 4-tuple to one worker's SO_REUSEPORT socket, so a client
//! that changes address usually lands on a worker that does not hold its allocation. Two
//! things route it back, both looked at only when this worker holds no allocation for the
//! 5-tuple (the normal path pays nothing):
//!
//! - a Refresh carrying a MOBILITY-TICKET that another worker made: the ticket names that
//!   worker, and its MAC ([`crate::turn::ticket`]) is checked here first, so a forged one is
//!   answered here (400) and never crosses;
//! - the [`MovedTable`]: the UDP 5-tuples allocations moved to, and the worker of each. The
//!   owning worker reports every move and end of a mobile allocation that concerns a UDP
//!   5-tuple ([`Moved`]) to each other worker ([`Reports`], a queue and a flag, bounded:
//!   past [`REPORTS`](reports::REPORTS) a report is dropped and counted); each keeps its own copy, brought up
//!   to date once a turn and before a lookup (one atomic load when nothing changed), so the
//!   lookup itself takes no lock even under a flood of datagrams from unknown addresses.
//!   TCP/TLS moves need no table: a connection is only ever routed by its ticket.
//!
//! Such a datagram is copied, with its 5-tuple, into a [`Batch`] for the owning worker and
//! sent to its [`Inbox`] at the end of the turn (one lock and at most one wake-up per batch;
//! bounded in datagrams and bytes: a batch that does not fit is dropped, as a full socket
//! buffer would drop it). The owner handles each one as if its own listen socket of that
//! address had read it ([`super::datapath`]), and answers from its own socket bound to the
//! same address, which the client cannot tell apart. Peer data for the client leaves the
//! owner directly. A datagram handed over is never handed on again.
//!
//! A TCP/TLS connection whose Refresh carries another worker's ticket is handed to that
//! worker whole ([`Moves::divert_request`], `Conns::hand_over`): its read stops at that
//! request (what follows stays unread in its buffers and TLS session), it is taken out of
//! this loop's poll set, and the request, read and not served here, is put back before its
//! unread bytes ([`StreamConn::prime`]); the owner takes it in from its
//! inbox at the end of its turn (`Conns::adopt`) and serves it from then on, that request
//! first. Its TLS session and its guards go with it.

mod reports;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;
use stun::message::{METHOD_REFRESH, Message};

use super::stats::{Counters, Event};
use super::stream::StreamConn;
use crate::turn::Moved;
use crate::turn::ticket::{ATTR_MOBILITY_TICKET, TicketKey};
use crate::turn::{FiveTuple, Manager, Transport};
use reports::MovedTable;
pub(super) use reports::Reports;

/// Datagrams one worker's inbox holds before batches for it are dropped.
const INBOX_DATAGRAMS: usize = 8192;
/// Bytes one worker's inbox holds before batches for it are dropped.
const INBOX_BYTES: usize = 4 << 20;
/// A batch goes to its worker once it holds this many datagrams or bytes, or at the end
/// of the turn.
const BATCH_DATAGRAMS: usize = 256;
const BATCH_BYTES: usize = 256 << 10;
/// Emptied batches kept to be filled again.
const SPARE_BATCHES: usize = 8;
/// One datagram of a batch; its bytes are `len` bytes of the batch's bytes.
#[derive(Debug, Clone, Copy)]
struct Item {
    tuple: FiveTuple,
    len: usize,
}

/// Datagrams for one worker, their bytes back to back.
#[derive(Debug, Default)]
pub(super) struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.items.len() >= BATCH_DATAGRAMS || self.bytes.len() >= BATCH_BYTES
    }

    /// Its datagrams and their 5-tuples, in the order they were read.
    pub(super) fn iter(&self) -> impl Iterator<Item = (FiveTuple, &[u8])> {
        let mut start = 0;
        self.items.iter().filter_map(move |item| {
            let packet = self.bytes.get(start..start + item.len)?;
            start += item.len;
            Some((item.tuple, packet))
        })
    }
}

/// What an inbox holds, and how much.
#[derive(Debug, Default)]
struct Queued {
    batches: Vec<Batch>,
    datagrams: usize,
    bytes: usize,
}

/// A TCP/TLS connection handed to the allocation's worker, with the guards that keep it
/// counted.
pub(super) type Adopted = (StreamConn, Box<dyn Send>);

/// One worker's inbox of datagrams other workers read for its moved clients, and of TCP/TLS
/// connections they hand it, with the waker of its loop.
pub(super) struct Inbox {
    queued: Mutex<Queued>,
    notified: AtomicBool,
    adopted: Mutex<Vec<Adopted>>,
    adopting: AtomicBool,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Self {
            queued: Mutex::default(),
            notified: AtomicBool::new(false),
            adopted: Mutex::default(),
            adopting: AtomicBool::new(false),
            waker,
        }
    }

    fn adopted(&self) -> MutexGuard<'_, Vec<Adopted>> {
        self.adopted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `batch` and wakes the loop, or gives it back when it does not fit.
    fn offer(&self, batch: Batch) -> Result<(), Batch> {
        {
            let mut queued = self.lock();
            let datagrams = queued.datagrams + batch.items.len();
            let bytes = queued.bytes + batch.bytes.len();
            if datagrams > INBOX_DATAGRAMS || bytes > INBOX_BYTES {
                return Err(batch);
            }
            (queued.datagrams, queued.bytes) = (datagrams, bytes);
            queued.batches.push(batch);
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    fn take(&self, into: &mut Vec<Batch>) {
        if !self.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut queued = self.lock();
        into.append(&mut queued.batches);
        (queued.datagrams, queued.bytes) = (0, 0);
    }
}

/// What every worker's [`Moves`] is made from, shared: one entry per worker in each list.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) reports: Arc<[Reports]>,
    pub(super) inboxes: Arc<[Inbox]>,
    pub(super) key: TicketKey,
}

/// One worker's side: where its moved clients' datagrams go, and what it hands over.
pub(super) struct Moves {
    worker: usize,
    shared: Shared,
    /// This worker's copy of where moved allocations are.
    table: MovedTable,
    /// Per worker, what waits to be handed to it this turn.
    pending: Vec<Batch>,
    spare: Vec<Batch>,
    /// Set while handling a datagram another worker handed over: it is not handed on.
    pub(super) delivering: bool,
    /// The worker the TCP/TLS connection whose request was just handled goes to.
    handing: Option<usize>,
    /// Where datagrams handed over and dropped are counted.
    counters: Arc<Counters>,
}

impl Moves {
    pub(super) fn new(worker: usize, shared: Shared, counters: Arc<Counters>) -> Self {
        Self {
            worker,
            pending: (0..shared.inboxes.len())
                .map(|_| Batch::default())
                .collect(),
            shared,
            table: MovedTable::default(),
            spare: Vec::new(),
            delivering: false,
            handing: None,
            counters,
        }
    }

    /// The side of the only worker of a test shard.
    #[cfg(test)]
    pub(super) fn single(waker: Arc<Waker>) -> Self {
        let shared = Shared {
            reports: Arc::from(vec![Reports::default()]),
            inboxes: Arc::from(vec![Inbox::new(waker)]),
            key: TicketKey::random(),
        };
        Self::new(0, shared, Arc::default())
    }

    /// Publishes where this worker's manager moved or ended mobile allocations: into its
    /// own table, and to every other worker.
    pub(super) fn settle(&mut self, manager: &mut Manager) {
        while let Some(moved) = manager.poll_moved() {
            self.publish(moved);
        }
    }

    /// One move or end, if it concerns a UDP 5-tuple (the only ones the table routes).
    fn publish(&mut self, moved: Moved) {
        let udp = |t: &FiveTuple| t.transport == Transport::Udp;
        let routed = match &moved {
            Moved::To { from, to } => udp(from) || udp(to),
            Moved::Gone(tuple) => udp(tuple),
        };
        if !routed {
            return;
        }
        self.table.apply(self.worker, moved);
        for (worker, reports) in self.shared.reports.iter().enumerate() {
            if worker != self.worker && !reports.push(self.worker, moved) {
                self.counters.count(Event::MobilityReportDropped);
            }
        }
    }

    /// Applies what the other workers reported since the last call (once a turn, so their
    /// queues never wait for a lookup); one atomic load when nothing did.
    pub(super) fn catch_up(&mut self) {
        if let Some(reports) = self.shared.reports.get(self.worker) {
            reports.apply_to(&mut self.table);
        }
    }

    /// The worker holding the allocation `tuple` moved to, after what the others reported.
    fn owner(&mut self, tuple: &FiveTuple) -> Option<usize> {
        self.catch_up();
        self.table.get(tuple)
    }

    /// A STUN request from `tuple`, which holds no allocation here: handed to the worker
    /// the moved table or its MOBILITY-TICKET names (true), or left to this worker. Over
    /// TCP/TLS a Refresh with another worker's ticket hands the whole connection over
    /// ([`Moves::take_handing`]), this request first.
    pub(super) fn divert_request(
        &mut self,
        manager: &Manager,
        tuple: FiveTuple,
        req: &Message,
        packet: &[u8],
    ) -> bool {
        if tuple.transport != Transport::Udp {
            let other = (ticket_worker(&self.shared.key, req))
                .filter(|w| *w != self.worker && *w < self.pending.len());
            if other.is_none() || manager.has_allocation(&tuple) {
                return false;
            }
            self.handing = other;
            return true;
        }
        if !self.may_divert(manager, &tuple) {
            return false;
        }
        let worker = (self.owner(&tuple)).or_else(|| ticket_worker(&self.shared.key, req));
        worker.is_some_and(|worker| self.push(worker, tuple, packet))
    }

    /// The worker the connection whose request was just handled is to be handed to, once
    /// ([`Moves::divert_request`]).
    pub(super) fn take_handing(&mut self) -> Option<usize> {
        self.handing.take()
    }

    /// Hands a TCP/TLS connection to worker `worker`, which serves it from its next turn,
    /// `kept` (the request read and not served here) first; dropped (closed) if there is
    /// no such worker, or, counted as full, if `kept` does not fit its buffer (it always
    /// does: the read stopped at that request).
    pub(super) fn adopt(
        &mut self,
        worker: usize,
        mut conn: StreamConn,
        kept: &[u8],
        guards: Box<dyn Send>,
    ) {
        if !conn.prime(kept) {
            self.counters.count(Event::MobilityFull);
            return;
        }
        if let Some(inbox) = self.shared.inboxes.get(worker) {
            self.counters.count(Event::MobilityConnection);
            inbox.adopted().push((conn, guards));
            if !inbox.adopting.swap(true, Ordering::AcqRel) {
                let _ = inbox.waker.wake();
            }
        }
    }

    /// The connections other workers handed this one since the last call.
    pub(super) fn take_adopted(&mut self) -> Vec<Adopted> {
        match self.shared.inboxes.get(self.worker) {
            Some(inbox) if inbox.adopting.swap(false, Ordering::AcqRel) => {
                std::mem::take(&mut *inbox.adopted())
            }
            _ => Vec::new(),
        }
    }

    /// Data (ChannelData, a Send indication) from `tuple` that went nowhere here: handed to
    /// the worker its allocation moved to, if any.
    pub(super) fn divert_data(
        &mut self,
        manager: &Manager,
        tuple: FiveTuple,
        packet: &[u8],
    ) -> bool {
        if !self.may_divert(manager, &tuple) {
            return false;
        }
        let worker = self.owner(&tuple);
        worker.is_some_and(|worker| self.push(worker, tuple, packet))
    }

    fn may_divert(&self, manager: &Manager, tuple: &FiveTuple) -> bool {
        tuple.transport == Transport::Udp && !self.delivering && !manager.has_allocation(tuple)
    }

    /// Copies `packet` into worker `worker`'s batch; false for this worker or one that does
    /// not exist (then this worker handles it).
    fn push(&mut self, worker: usize, tuple: FiveTuple, packet: &[u8]) -> bool {
        if worker == self.worker {
            return false;
        }
        let Some(batch) = self.pending.get_mut(worker) else {
            return false;
        };
        batch.items.push(Item {
            tuple,
            len: packet.len(),
        });
        batch.bytes.extend_from_slice(packet);
        if batch.is_full() {
            self.send(worker);
        }
        true
    }

    /// Sends what waits for other workers to their inboxes (end of the turn).
    pub(super) fn flush(&mut self) {
        for worker in 0..self.pending.len() {
            if !self.pending[worker].items.is_empty() {
                self.send(worker);
            }
        }
    }

    fn send(&mut self, worker: usize) {
        let fresh = self.spare.pop().unwrap_or_default();
        let Some(slot) = self.pending.get_mut(worker) else {
            return;
        };
        let batch = std::mem::replace(slot, fresh);
        let count = batch.items.len() as u64;
        let Some(inbox) = self.shared.inboxes.get(worker) else {
            return;
        };
        match inbox.offer(batch) {
            Ok(()) => self.counters.count_many(Event::MobilityForwarded, count),
            Err(refused) => {
                self.counters.count_many(Event::MobilityFull, count);
                self.recycle(refused);
            }
        }
    }

    /// What other workers handed this one since the last call.
    pub(super) fn take_incoming(&mut self, into: &mut Vec<Batch>) {
        if let Some(inbox) = self.shared.inboxes.get(self.worker) {
            inbox.take(into);
        }
    }

    /// Keeps a delivered batch to be filled again.
    pub(super) fn recycle(&mut self, mut batch: Batch) {
        if self.spare.len() < SPARE_BATCHES {
            batch.items.clear();
            batch.bytes.clear();
            self.spare.push(batch);
        }
    }
}

/// The worker a Refresh's MOBILITY-TICKET names, if it carries one this process made.
fn ticket_worker(key: &TicketKey, req: &Message) -> Option<usize> {
    if req.typ.method != METHOD_REFRESH {
        return None;
    }
    let ticket = crate::turn::attrs::value(req, ATTR_MOBILITY_TICKET)?;
    let (worker, _) = key.open(ticket)?;
    Some(usize::from(worker))
}

#[cfg(test)]
mod tests {
    use super::reports::REPORTS;
    use super::*;

    fn tuple(port: u16) -> FiveTuple {
        FiveTuple {
            transport: Transport::Udp,
            client: ([127, 0, 0, 1], port).into(),
            server: ([127, 0, 0, 1], 3478).into(),
        }
    }

    fn over_tcp(port: u16) -> FiveTuple {
        FiveTuple {
            transport: Transport::Tcp,
            ..tuple(port)
        }
    }

    /// Worker 0's side of a shard of two, and the stats it counts into.
    fn pair() -> (Moves, crate::server::stats::Stats) {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let shared = Shared {
            reports: Arc::from(vec![Reports::default(), Reports::default()]),
            inboxes: Arc::from(vec![
                Inbox::new(Arc::clone(&waker)),
                Inbox::new(Arc::clone(&waker)),
            ]),
            key: TicketKey::random(),
        };
        let stats = crate::server::stats::Stats::default();
        (Moves::new(0, shared, stats.register()), stats)
    }

    fn queued(moves: &Moves, worker: usize) -> usize {
        moves.shared.reports[worker].len()
    }

    #[test]
    fn only_moves_that_concern_udp_are_reported_and_reports_are_bounded() {
        let (mut moves, stats) = pair();
        // A TCP/TLS-only workload reports nothing and keeps nothing.
        for port in 0..1000 {
            let (from, to) = (over_tcp(port), over_tcp(port + 1000));
            moves.publish(Moved::To { from, to });
            moves.publish(Moved::Gone(to));
        }
        assert_eq!(queued(&moves, 1), 0);
        assert!(moves.table.is_empty());
        // From TCP to UDP and back: both reported, the UDP entry only while it holds.
        moves.publish(Moved::To {
            from: over_tcp(1),
            to: tuple(2),
        });
        assert_eq!(moves.table.get(&tuple(2)), Some(0));
        moves.publish(Moved::To {
            from: tuple(2),
            to: over_tcp(3),
        });
        assert_eq!(queued(&moves, 1), 2);
        assert!(moves.table.is_empty());
        // A worker that never empties its queue: it stops growing, drops counted.
        for i in 0..REPORTS {
            moves.publish(Moved::Gone(tuple((i % 50_000) as u16)));
        }
        assert_eq!(queued(&moves, 1), REPORTS);
        assert_eq!(stats.snapshot().mobility[3], 2);
        // Its turn empties it.
        let (mut other, _) = pair();
        other.worker = 1;
        other.shared = moves.shared.clone();
        other.catch_up();
        assert_eq!(queued(&moves, 1), 0);
    }

    #[test]
    fn a_batch_gives_back_its_datagrams_in_order() {
        let mut batch = Batch::default();
        for (port, bytes) in [(1, &b"one"[..]), (2, b""), (3, b"three")] {
            batch.items.push(Item {
                tuple: tuple(port),
                len: bytes.len(),
            });
            batch.bytes.extend_from_slice(bytes);
        }
        let got: Vec<(u16, Vec<u8>)> = batch
            .iter()
            .map(|(t, p)| (t.client.port(), p.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (1, b"one".to_vec()),
                (2, Vec::new()),
                (3, b"three".to_vec())
            ]
        );
    }
}
