//! Data for one of rturn's own live relay endpoints, handed over inside the process (#17).
//!
//! When a client's data goes to a peer that is one of rturn's own relays
//! ([`ToPeer::Handoff`](crate::turn::ToPeer::Handoff), decided by the pure manager), it
//! never reaches the kernel: [`Handoffs::push`] finds the worker and relay-table slot that
//! hold that port in the shared port table ([`super::ports::PortPool::owner`]) and copies
//! the payload into a [`Batch`] for that worker. At the end of the turn the batches for
//! other workers go to their [`Inbox`] (one lock and at most one wake-up per batch, not per
//! packet), and the event loop delivers the batch for itself and whatever its own inbox
//! holds ([`super::datapath`]): each datagram is processed as one arriving on that relay
//! socket from the sender's advertised relay address, so the receiving allocation's
//! permission, channels, counters and bandwidth limits apply unchanged.
//!
//! An inbox is bounded in datagrams and in bytes: a batch that does not fit is dropped and
//! counted (`rturn_relay_handoff_total{result="full"}`), as a full socket buffer would drop
//! it. A port released before its data arrives drops it too (`{result="gone"}`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

use super::ports::PortPool;
use super::stats::{Counters, Event};

/// Datagrams one worker's inbox holds before batches for it are dropped.
pub(super) const INBOX_DATAGRAMS: usize = 8192;
/// Payload bytes one worker's inbox holds before batches for it are dropped.
pub(super) const INBOX_BYTES: usize = 4 << 20;
/// A batch goes to its worker's inbox once it holds this many datagrams or bytes, or at
/// the end of the turn.
const BATCH_DATAGRAMS: usize = 256;
const BATCH_BYTES: usize = 256 << 10;
/// Emptied batches kept to be filled again, so a steady flow allocates nothing.
const SPARE_BATCHES: usize = 16;

/// One datagram of a batch; its payload is `len` bytes of the batch's bytes.
#[derive(Debug, Clone, Copy)]
struct Item {
    from: SocketAddr,
    to: SocketAddr,
    slot: usize,
    len: usize,
}

/// One handed-over datagram, as the receiving loop sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Delivery<'a> {
    /// The sending relay's advertised address: the peer the receiving allocation sees.
    pub(super) from: SocketAddr,
    /// The receiving relay's bound address.
    pub(super) to: SocketAddr,
    /// Its slot in the receiving worker's relay table.
    pub(super) slot: usize,
    pub(super) payload: &'a [u8],
}

/// Datagrams for one worker, their payloads back to back.
#[derive(Debug, Default)]
pub(super) struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
}

impl Batch {
    fn push(&mut self, from: SocketAddr, to: SocketAddr, slot: usize, payload: &[u8]) {
        self.items.push(Item {
            from,
            to,
            slot,
            len: payload.len(),
        });
        self.bytes.extend_from_slice(payload);
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn is_full(&self) -> bool {
        self.items.len() >= BATCH_DATAGRAMS || self.bytes.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
    }

    /// Its datagrams, in the order they were pushed.
    pub(super) fn iter(&self) -> impl Iterator<Item = Delivery<'_>> {
        let mut start = 0;
        self.items.iter().filter_map(move |item| {
            let payload = self.bytes.get(start..start + item.len)?;
            start += item.len;
            Some(Delivery {
                from: item.from,
                to: item.to,
                slot: item.slot,
                payload,
            })
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

/// One worker's inbox of batches handed over by the others, with the waker of its loop.
#[derive(Debug)]
pub(super) struct Inbox {
    queued: Mutex<Queued>,
    /// Set by a sender that queued something; cleared by the loop before it takes.
    notified: AtomicBool,
    waker: Arc<Waker>,
}

impl Inbox {
    /// The inbox of the loop `waker` wakes.
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Self {
            queued: Mutex::default(),
            notified: AtomicBool::new(false),
            waker,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        // A panic while holding it cannot leave the queue half-written.
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `batch` and wakes the loop, or gives the batch back when the inbox would pass
    /// [`INBOX_DATAGRAMS`] or [`INBOX_BYTES`].
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
        // Queued before notified: a loop that clears the flag and then takes sees it, or is
        // woken again.
        if !self.notified.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        Ok(())
    }

    /// Moves everything queued into `into`; touches the lock only when a sender queued
    /// something since the last call.
    fn take(&self, into: &mut Vec<Batch>) {
        if !self.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut queued = self.lock();
        into.append(&mut queued.batches);
        (queued.datagrams, queued.bytes) = (0, 0);
    }
}

/// One worker's side of the hand-offs: what it sends to each worker this turn, and its way
/// into every worker's inbox. Owned by its shard ([`super::shard::Shard`]).
pub(super) struct Handoffs {
    worker: usize,
    /// Every worker's inbox, by worker index.
    inboxes: Arc<[Inbox]>,
    /// The relay port pools of IPv4 and IPv6, which record each port's owner.
    pools: [Arc<PortPool>; 2],
    /// Per worker, what waits to be handed to it; this worker's own is delivered at the end
    /// of the turn without a queue.
    pending: Vec<Batch>,
    spare: Vec<Batch>,
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
        Self {
            worker,
            pending: (0..inboxes.len()).map(|_| Batch::default()).collect(),
            inboxes,
            pools,
            spare: Vec::new(),
            counters,
        }
    }

    /// Hands `payload` to the relay bound at `to`, as from `from`: copied into the batch
    /// of the worker that holds that port now. False (counted `gone`) when no allocation
    /// holds it any more.
    pub(super) fn push(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> bool {
        let pool = &self.pools[usize::from(to.is_ipv6())];
        let Some((worker, slot)) = pool.owner(to.port()) else {
            self.counters.count(Event::HandoffGone);
            return false;
        };
        let Some(batch) = self.pending.get_mut(worker) else {
            self.counters.count(Event::HandoffGone);
            return false;
        };
        batch.push(from, to, slot, payload);
        if worker != self.worker && batch.is_full() {
            self.send(worker);
        }
        true
    }

    /// Sends what waits for other workers to their inboxes (end of the turn).
    pub(super) fn flush(&mut self) {
        for worker in 0..self.pending.len() {
            if worker != self.worker && !self.pending[worker].is_empty() {
                self.send(worker);
            }
        }
    }

    /// Offers worker `worker`'s pending batch to its inbox; a batch that does not fit is
    /// dropped, each of its datagrams counted `full`.
    fn send(&mut self, worker: usize) {
        let fresh = self.spare.pop().unwrap_or_default();
        let Some(slot) = self.pending.get_mut(worker) else {
            return;
        };
        let batch = std::mem::replace(slot, fresh);
        let Some(inbox) = self.inboxes.get(worker) else {
            return;
        };
        if let Err(refused) = inbox.offer(batch) {
            let dropped = refused.items.len() as u64;
            self.counters.count_many(Event::HandoffFull, dropped);
            self.recycle(refused);
        }
    }

    /// What this worker delivers now: its own pending batch, then its inbox.
    pub(super) fn take_incoming(&mut self, into: &mut Vec<Batch>) {
        let fresh = self.spare.pop().unwrap_or_default();
        if let Some(own) = self.pending.get_mut(self.worker) {
            if !own.is_empty() {
                into.push(std::mem::replace(own, fresh));
            } else {
                self.recycle(fresh);
            }
        }
        if let Some(inbox) = self.inboxes.get(self.worker) {
            inbox.take(into);
        }
    }

    /// Keeps a delivered batch to be filled again.
    pub(super) fn recycle(&mut self, mut batch: Batch) {
        if self.spare.len() < SPARE_BATCHES {
            batch.clear();
            self.spare.push(batch);
        }
    }
}

#[cfg(test)]
mod tests;
