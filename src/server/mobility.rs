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
//! sent to its [`Inbox`] ([`super::batches`]) at the end of the turn (one lock and at most one wake-up per batch;
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
use std::time::Instant;

use mio::Waker;
use stun::message::{METHOD_REFRESH, Message};

use super::batches::{self, Outgoing};
use super::stats::{Counters, Event};
use super::stream::StreamConn;
use crate::turn::Moved;
use crate::turn::ticket::{ATTR_MOBILITY_TICKET, TicketKey};
use crate::turn::{FiveTuple, Manager, Transport};
use reports::MovedTable;
pub(super) use reports::Reports;

/// A moved client's datagrams for one worker, each with its 5-tuple.
pub(super) type Batch = batches::Batch<FiveTuple>;
/// One worker's inbox of its moved clients' datagrams other workers read.
pub(super) type Inbox = batches::Inbox<FiveTuple>;

/// A TCP/TLS connection handed to the allocation's worker, with the guards that keep it
/// counted.
pub(super) type Adopted = (StreamConn, Box<dyn Send>);

/// One worker's inbox of TCP/TLS connections other workers hand it, with the waker of its
/// loop. Bounded by the connections' own permits, which travel with them.
pub(super) struct Adoptions {
    adopted: Mutex<Vec<Adopted>>,
    adopting: AtomicBool,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for Adoptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adoptions").finish_non_exhaustive()
    }
}

impl Adoptions {
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Self {
            adopted: Mutex::default(),
            adopting: AtomicBool::new(false),
            waker,
        }
    }

    fn adopted(&self) -> MutexGuard<'_, Vec<Adopted>> {
        self.adopted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every worker's [`Moves`] is made from, shared: one entry per worker in each list.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) reports: Arc<[Reports]>,
    pub(super) inboxes: Arc<[Inbox]>,
    pub(super) adoptions: Arc<[Adoptions]>,
    pub(super) key: TicketKey,
}

/// One worker's side: where its moved clients' datagrams go, and what it hands over.
pub(super) struct Moves {
    worker: usize,
    shared: Shared,
    /// This worker's copy of where moved allocations are.
    table: MovedTable,
    /// Per worker, what waits to be handed to it this turn.
    outgoing: Outgoing<FiveTuple>,
    /// Set while handling a datagram another worker handed over: it is not handed on.
    pub(super) delivering: bool,
    /// The worker the TCP/TLS connection whose request was just handled goes to.
    handing: Option<usize>,
    /// The UDP 5-tuples other workers' allocations moved to since the last look: an
    /// allocation here that still holds one makes way ([`Moves::catch_up`]).
    taken: Vec<FiveTuple>,
    /// Where datagrams handed over and dropped are counted.
    counters: Arc<Counters>,
}

impl Moves {
    pub(super) fn new(worker: usize, shared: Shared, counters: Arc<Counters>) -> Self {
        Self {
            worker,
            outgoing: Outgoing::new(
                worker,
                Arc::clone(&shared.inboxes),
                Arc::clone(&counters),
                (Some(Event::MobilityForwarded), Event::MobilityFull),
            ),
            shared,
            table: MovedTable::default(),
            delivering: false,
            handing: None,
            taken: Vec::new(),
            counters,
        }
    }

    /// The side of the only worker of a test shard.
    #[cfg(test)]
    pub(super) fn single(waker: Arc<Waker>) -> Self {
        let shared = Shared {
            reports: Arc::from(vec![Reports::default()]),
            inboxes: Arc::from(vec![Inbox::new(Arc::clone(&waker))]),
            adoptions: Arc::from(vec![Adoptions::new(waker)]),
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
        // A move may take a 5-tuple an allocation of another worker still holds: that
        // worker is woken to make way at once, not at its next event (moves are rare).
        let wake = matches!(moved, Moved::To { to, .. } if udp(&to));
        for (worker, reports) in self.shared.reports.iter().enumerate() {
            if worker == self.worker {
                continue;
            }
            if !reports.push(self.worker, moved) {
                self.counters.count(Event::MobilityReportDropped);
            } else if wake && let Some(adoptions) = self.shared.adoptions.get(worker) {
                let _ = adoptions.waker.wake();
            }
        }
    }

    /// Applies what the other workers reported since the last call (before every UDP
    /// datagram and once a turn, so their queues never wait); one atomic load when nothing
    /// waits. An allocation here that still holds a 5-tuple another worker's allocation
    /// just moved to makes way ([`Manager::vacate`]): its client left that address, and
    /// the mover, whose move its owner checked (ticket, user, a nonce made for that
    /// address), receives there. True when one did: the caller settles its events.
    pub(super) fn catch_up(&mut self, manager: &mut Manager, now: Instant) -> bool {
        self.apply_reports();
        let mut made_way = false;
        for tuple in self.taken.drain(..) {
            made_way |= manager.vacate(now, tuple);
        }
        made_way
    }

    /// What the other workers reported, into the table and `taken`.
    fn apply_reports(&mut self) {
        if let Some(reports) = self.shared.reports.get(self.worker) {
            reports.apply_to(&mut self.table, &mut self.taken);
        }
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
                .filter(|w| *w != self.worker && *w < self.outgoing.workers());
            if other.is_none() || manager.has_allocation(&tuple) {
                return false;
            }
            self.handing = other;
            return true;
        }
        if self.delivering {
            return false;
        }
        // A genuine ticket another worker made names the worker holding its allocation for
        // life: that worker decides, even when an allocation here still holds this 5-tuple
        // (its client gone; it makes way once the move is reported).
        let ticket = ticket_worker(&self.shared.key, req).filter(|w| *w != self.worker);
        if let Some(worker) = ticket {
            return self.push(worker, tuple, packet);
        }
        if !self.may_divert(manager, &tuple) {
            return false;
        }
        let worker = self.table.get(&tuple);
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
        if let Some(inbox) = self.shared.adoptions.get(worker) {
            self.counters.count(Event::MobilityConnection);
            inbox.adopted().push((conn, guards));
            if !inbox.adopting.swap(true, Ordering::AcqRel) {
                let _ = inbox.waker.wake();
            }
        }
    }

    /// The connections other workers handed this one since the last call.
    pub(super) fn take_adopted(&mut self) -> Vec<Adopted> {
        match self.shared.adoptions.get(self.worker) {
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
        let worker = self.table.get(&tuple);
        worker.is_some_and(|worker| self.push(worker, tuple, packet))
    }

    fn may_divert(&self, manager: &Manager, tuple: &FiveTuple) -> bool {
        tuple.transport == Transport::Udp && !self.delivering && !manager.has_allocation(tuple)
    }

    /// Copies `packet` into worker `worker`'s batch; false for this worker or one that does
    /// not exist (then this worker handles it).
    fn push(&mut self, worker: usize, tuple: FiveTuple, packet: &[u8]) -> bool {
        worker != self.worker && self.outgoing.push(worker, tuple, packet)
    }

    /// Sends what waits for other workers to their inboxes (end of the turn); a batch an
    /// inbox has no room for is dropped and counted `full`.
    pub(super) fn flush(&mut self) {
        self.outgoing.flush();
    }

    /// What other workers handed this one since the last call.
    pub(super) fn take_incoming(&mut self, into: &mut Vec<Batch>) {
        self.outgoing.take_incoming(into);
    }

    /// Keeps a delivered batch to be filled again.
    pub(super) fn recycle(&mut self, batch: Batch) {
        self.outgoing.recycle(batch);
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

    /// A UDP 5-tuple from 127.0.0.1:`port` (reports.rs's tests use it too).
    pub(super) fn tuple(port: u16) -> FiveTuple {
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
            adoptions: Arc::from(vec![
                Adoptions::new(Arc::clone(&waker)),
                Adoptions::new(Arc::clone(&waker)),
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
        other.apply_reports();
        assert_eq!(queued(&moves, 1), 0);
    }
}
