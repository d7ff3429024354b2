//! Datagrams one worker hands to another, in batches: what [`super::handoff`] (data for
//! one of rturn's own relays, #17) and [`super::mobility`] (a moved client's datagrams,
//! RFC 8016) both send.
//!
//! A sender copies each datagram, with what its receiver needs to know of it (`M`), into a
//! [`Batch`] per receiving worker ([`Outgoing`]); a full batch, and at the end of the turn
//! every batch, goes into the receiver's [`Inbox`]: one lock and at most one wake-up per
//! batch, not per packet. An inbox is bounded in datagrams and in bytes; a batch that does
//! not fit is dropped whole and counted, as a full socket buffer would drop it. The
//! receiving loop takes everything queued in one lock, and gives the emptied batches back
//! to be filled again, so a steady flow allocates nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Waker;

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

/// Datagrams for one worker, their payloads back to back, each with its `M`.
#[derive(Debug)]
pub(super) struct Batch<M> {
    /// Each datagram's `M` and length, in the order they were pushed.
    items: Vec<(M, usize)>,
    bytes: Vec<u8>,
}

impl<M> Default for Batch<M> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            bytes: Vec::new(),
        }
    }
}

impl<M: Copy> Batch<M> {
    /// Copies `payload` in, with `meta`.
    pub(super) fn push(&mut self, meta: M, payload: &[u8]) {
        self.items.push((meta, payload.len()));
        self.bytes.extend_from_slice(payload);
    }

    /// How many datagrams it holds.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    fn is_full(&self) -> bool {
        self.items.len() >= BATCH_DATAGRAMS || self.bytes.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
    }

    /// Its datagrams with their `M`, in the order they were pushed.
    pub(super) fn iter(&self) -> impl Iterator<Item = (M, &[u8])> {
        let mut start = 0;
        self.items.iter().filter_map(move |&(meta, len)| {
            let payload = self.bytes.get(start..start + len)?;
            start += len;
            Some((meta, payload))
        })
    }
}

/// What an inbox holds, and how much.
#[derive(Debug)]
struct Queued<M> {
    batches: Vec<Batch<M>>,
    datagrams: usize,
    bytes: usize,
}

/// One worker's inbox of batches handed over by the others, with the waker of its loop.
#[derive(Debug)]
pub(super) struct Inbox<M> {
    queued: Mutex<Queued<M>>,
    /// Set by a sender that queued something; cleared by the loop before it takes.
    notified: AtomicBool,
    waker: Arc<Waker>,
}

impl<M: Copy> Inbox<M> {
    /// The inbox of the loop `waker` wakes.
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        let queued = Queued {
            batches: Vec::new(),
            datagrams: 0,
            bytes: 0,
        };
        Self {
            queued: Mutex::new(queued),
            notified: AtomicBool::new(false),
            waker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queued<M>> {
        // A panic while holding it cannot leave the queue half-written.
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `batch` and wakes the loop, or gives the batch back when the inbox would pass
    /// [`INBOX_DATAGRAMS`] or [`INBOX_BYTES`].
    pub(super) fn offer(&self, batch: Batch<M>) -> Result<(), Batch<M>> {
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
    pub(super) fn take(&self, into: &mut Vec<Batch<M>>) {
        if !self.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut queued = self.lock();
        into.append(&mut queued.batches);
        (queued.datagrams, queued.bytes) = (0, 0);
    }
}

/// One worker's side: what it sends to each worker this turn, and its way into every
/// worker's inbox.
#[derive(Debug)]
pub(super) struct Outgoing<M> {
    worker: usize,
    /// Every worker's inbox, by worker index.
    inboxes: Arc<[Inbox<M>]>,
    /// Per worker, what waits to be handed to it; this worker's own is delivered at the end
    /// of the turn without a queue.
    pending: Vec<Batch<M>>,
    spare: Vec<Batch<M>>,
    counters: Arc<Counters>,
    /// Counted per datagram an inbox took (if any), and per datagram it refused.
    taken: Option<Event>,
    refused: Event,
}

impl<M: Copy> Outgoing<M> {
    /// Worker `worker`'s side, counting `taken` and `refused` into its `counters`.
    pub(super) fn new(
        worker: usize,
        inboxes: Arc<[Inbox<M>]>,
        counters: Arc<Counters>,
        (taken, refused): (Option<Event>, Event),
    ) -> Self {
        Self {
            worker,
            pending: (0..inboxes.len()).map(|_| Batch::default()).collect(),
            inboxes,
            spare: Vec::new(),
            counters,
            taken,
            refused,
        }
    }

    /// How many workers there are.
    pub(super) fn workers(&self) -> usize {
        self.pending.len()
    }

    /// Copies `payload` into worker `worker`'s batch; false when there is no such worker.
    pub(super) fn push(&mut self, worker: usize, meta: M, payload: &[u8]) -> bool {
        let Some(batch) = self.pending.get_mut(worker) else {
            return false;
        };
        batch.push(meta, payload);
        if worker != self.worker && batch.is_full() {
            self.send(worker);
        }
        true
    }

    /// Sends what waits for other workers to their inboxes (end of the turn).
    pub(super) fn flush(&mut self) {
        for worker in 0..self.pending.len() {
            if worker != self.worker && !self.pending[worker].items.is_empty() {
                self.send(worker);
            }
        }
    }

    /// Offers worker `worker`'s pending batch to its inbox; a batch that does not fit is
    /// dropped, each of its datagrams counted.
    fn send(&mut self, worker: usize) {
        let fresh = self.spare.pop().unwrap_or_default();
        let Some(slot) = self.pending.get_mut(worker) else {
            return;
        };
        let batch = std::mem::replace(slot, fresh);
        let Some(inbox) = self.inboxes.get(worker) else {
            return;
        };
        let count = batch.len() as u64;
        match inbox.offer(batch) {
            Ok(()) => {
                if let Some(taken) = self.taken {
                    self.counters.count_many(taken, count);
                }
            }
            Err(refused) => {
                self.counters.count_many(self.refused, count);
                self.recycle(refused);
            }
        }
    }

    /// What this worker delivers now: its own pending batch, then its inbox.
    pub(super) fn take_incoming(&mut self, into: &mut Vec<Batch<M>>) {
        let fresh = self.spare.pop().unwrap_or_default();
        if let Some(own) = self.pending.get_mut(self.worker) {
            if !own.items.is_empty() {
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
    pub(super) fn recycle(&mut self, mut batch: Batch<M>) {
        if self.spare.len() < SPARE_BATCHES {
            batch.clear();
            self.spare.push(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use mio::{Poll, Token};

    use super::*;

    fn batch(n: usize, len: usize) -> Batch<usize> {
        let mut batch = Batch::default();
        for i in 0..n {
            batch.push(i, &vec![i as u8; len]);
        }
        batch
    }

    #[test]
    fn a_batch_gives_back_each_datagram_in_order() {
        let mut batch = Batch::default();
        batch.push(3, b"one");
        batch.push(4, b"");
        batch.push(5, b"three");
        let got: Vec<_> = batch.iter().map(|(m, p)| (m, p.to_vec())).collect();
        assert_eq!(
            got,
            [(3, b"one".to_vec()), (4, vec![]), (5, b"three".to_vec())]
        );
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn an_inbox_is_bounded_in_datagrams_and_in_bytes() {
        let poll = Poll::new().unwrap();
        let inbox = Inbox::new(Arc::new(Waker::new(poll.registry(), Token(0)).unwrap()));
        // Datagrams: full at INBOX_DATAGRAMS, whatever their size.
        assert!(inbox.offer(batch(INBOX_DATAGRAMS - 1, 1)).is_ok());
        assert!(inbox.offer(batch(2, 1)).is_err(), "past the count");
        assert!(inbox.offer(batch(1, 1)).is_ok(), "exactly full");
        let mut taken = Vec::new();
        inbox.take(&mut taken);
        assert_eq!(taken.iter().map(Batch::len).sum::<usize>(), INBOX_DATAGRAMS);
        // Bytes: full at INBOX_BYTES, however few datagrams.
        assert!(inbox.offer(batch(3, INBOX_BYTES / 4)).is_ok());
        let refused = inbox.offer(batch(2, INBOX_BYTES / 4)).unwrap_err();
        assert_eq!(refused.len(), 2, "given back whole, to be counted");
        // Taking empties it: room again.
        inbox.take(&mut taken);
        assert!(inbox.offer(batch(2, INBOX_BYTES / 4)).is_ok());
    }
}
