//! Data for one of rturn's own live relay endpoints, handed over inside the process (#17).
//!
//! When a client's data goes to a peer that is one of rturn's own relays
//! ([`ToPeer::Handoff`](crate::turn::ToPeer::Handoff), decided by the pure manager), it
//! never reaches the kernel: [`Handoffs::push`] finds the worker and relay-table slot that
//! hold that port in the shared port table ([`super::ports::PortPool::owner`]) and copies
//! the payload into a batch for that worker ([`super::batches`]). At the end of the turn the
//! batches for other workers go to their inboxes (one lock and at most one wake-up per
//! batch, not per packet), and the event loop delivers the batch for itself and whatever
//! its own inbox holds ([`super::datapath`]): each datagram is processed as one arriving on that relay
//! socket from the sender's advertised relay address, so the receiving allocation's
//! permission, channels, counters and bandwidth limits apply unchanged.
//!
//! An inbox is bounded in datagrams and in bytes: a batch that does not fit is dropped and
//! counted (`rturn_relay_handoff_total{result="full"}`), as a full socket buffer would drop
//! it. A port released before its data arrives drops it too (`{result="gone"}`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::batches::{self, Outgoing};
use super::ports::PortPool;
use super::stats::{Counters, Event};

/// Where a handed-over datagram goes, as the receiving loop sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Route {
    /// The sending relay's advertised address: the peer the receiving allocation sees.
    pub(super) from: SocketAddr,
    /// The receiving relay's bound address.
    pub(super) to: SocketAddr,
    /// Its slot in the receiving worker's relay table.
    pub(super) slot: usize,
}

/// Hand-offs for one worker.
pub(super) type Batch = batches::Batch<Route>;
/// One worker's inbox of hand-offs from the others.
pub(super) type Inbox = batches::Inbox<Route>;

/// One worker's side of the hand-offs: what it sends to each worker this turn, and its way
/// into every worker's inbox. Owned by its shard ([`super::shard::Shard`]).
#[derive(Debug)]
pub(super) struct Handoffs {
    outgoing: Outgoing<Route>,
    /// The relay port pools of IPv4 and IPv6, which record each port's owner.
    pools: [Arc<PortPool>; 2],
    counters: Arc<Counters>,
}

impl Handoffs {
    /// Worker `worker`'s side, counting into its `counters`.
    pub(super) fn new(
        worker: usize,
        inboxes: Arc<[Inbox]>,
        pools: [Arc<PortPool>; 2],
        counters: Arc<Counters>,
    ) -> Self {
        let counted = (None, Event::HandoffFull);
        Self {
            outgoing: Outgoing::new(worker, inboxes, Arc::clone(&counters), counted),
            pools,
            counters,
        }
    }

    /// Hands `payload` to the relay bound at `to`, as from `from`: copied into the batch
    /// of the worker that holds that port now. False (counted `gone`) when no allocation
    /// holds it any more.
    pub(super) fn push(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> bool {
        let pool = &self.pools[usize::from(to.is_ipv6())];
        let held = pool.owner(to.port()).is_some_and(|(worker, slot)| {
            let route = Route { from, to, slot };
            self.outgoing.push(worker, route, payload)
        });
        if !held {
            self.counters.count(Event::HandoffGone);
        }
        held
    }

    /// Sends what waits for other workers to their inboxes (end of the turn); a batch an
    /// inbox has no room for is dropped, each of its datagrams counted `full`.
    pub(super) fn flush(&mut self) {
        self.outgoing.flush();
    }

    /// What this worker delivers now: its own pending batch, then its inbox.
    pub(super) fn take_incoming(&mut self, into: &mut Vec<Batch>) {
        self.outgoing.take_incoming(into);
    }

    /// Keeps a delivered batch to be filled again.
    pub(super) fn recycle(&mut self, batch: Batch) {
        self.outgoing.recycle(batch);
    }
}

#[cfg(test)]
mod tests;
