//! A signaling WebSocket's outgoing queue, bounded in bytes: what it has waiting to be
//! written to it, pushed by other sessions and the cluster link from any task. (A TURN
//! TCP/TLS client's queue is its connection's own buffer on its worker, bounded the same
//! way: `server/stream/outbuf.rs`.)
//!
//! A count of messages bounds nothing when messages are large (256 signaling messages of
//! 187 kB each pinned 48 MB per reader), so the queue counts bytes. A client that stops
//! reading fills it; the push that would take it past its limit is refused and marks the
//! queue *overflowed*, which its connection watches (`Receiver::overflowed`) to close the
//! client at once: a slow consumer is dropped, not fed forever from the server's memory.
//!
//! Every item costs its length plus [`ITEM_OVERHEAD`] (the allocation and the channel slot),
//! so a flood of tiny frames is bounded too. An item is always accepted into an empty queue,
//! so one message larger than the limit still goes out; the most a queue holds is the limit
//! plus one item.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// What one queued item costs beyond its bytes: its heap block and channel slot, roughly.
pub const ITEM_OVERHEAD: usize = 64;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is past its limit (now, or earlier: an overflowed queue takes nothing more).
    Full,
    /// The connection is gone.
    Closed,
}

struct Shared {
    queued: AtomicUsize,
    limit: usize,
    overflowed: CancellationToken,
}

/// The pushing side; cheap to clone, safe to use from any thread without awaiting.
pub struct Sender<T> {
    tx: mpsc::UnboundedSender<T>,
    shared: Arc<Shared>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The connection's side: takes items in order and tells when the queue overflowed.
pub struct Receiver<T> {
    rx: mpsc::UnboundedReceiver<T>,
    shared: Arc<Shared>,
}

/// A queue that holds at most `limit` bytes (plus one item).
pub fn channel<T: AsRef<[u8]>>(limit: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit,
        overflowed: CancellationToken::new(),
    });
    (
        Sender {
            tx,
            shared: Arc::clone(&shared),
        },
        Receiver { rx, shared },
    )
}

fn cost(item: &impl AsRef<[u8]>) -> usize {
    item.as_ref().len() + ITEM_OVERHEAD
}

impl<T: AsRef<[u8]>> Sender<T> {
    /// Queues `item`, or refuses it: [`Refused::Full`] when it would take a non-empty queue
    /// past its limit (the queue is then overflowed for good), [`Refused::Closed`] when the
    /// connection is gone.
    pub fn push(&self, item: T) -> Result<(), Refused> {
        let shared = &self.shared;
        if shared.overflowed.is_cancelled() {
            return Err(Refused::Full);
        }
        let cost = cost(&item);
        let before = shared.queued.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before.saturating_add(cost) > shared.limit {
            shared.queued.fetch_sub(cost, Ordering::AcqRel);
            shared.overflowed.cancel();
            return Err(Refused::Full);
        }
        if self.tx.send(item).is_err() {
            shared.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(Refused::Closed);
        }
        Ok(())
    }

    /// Completes once a push was refused for the limit: the client is not reading.
    pub fn overflowed(&self) -> WaitForCancellationFuture<'_> {
        self.shared.overflowed.cancelled()
    }
}

impl<T: AsRef<[u8]>> Receiver<T> {
    /// The next item; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await?;
        self.shared.queued.fetch_sub(cost(&item), Ordering::AcqRel);
        Some(item)
    }

    /// Cancelled once a push was refused for the limit: the client is not reading. A token,
    /// so the connection can wait on it while it also awaits [`Receiver::recv`].
    pub fn overflow(&self) -> CancellationToken {
        self.shared.overflowed.clone()
    }

    /// Whether a push was refused for the limit.
    pub fn is_overflowed(&self) -> bool {
        self.shared.overflowed.is_cancelled()
    }

    /// Bytes queued now, as counted against the limit.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: usize) -> Vec<u8> {
        vec![0; len]
    }

    #[tokio::test]
    async fn holds_up_to_its_limit_then_overflows_for_good() {
        let (tx, mut rx) = channel(4 * (1000 + ITEM_OVERHEAD));
        for _ in 0..4 {
            tx.push(item(1000)).unwrap();
        }
        assert!(!rx.is_overflowed());
        assert_eq!(tx.push(item(1)), Err(Refused::Full));
        assert!(rx.is_overflowed());
        // Reading makes room, but an overflowed queue takes nothing more: its client is
        // being closed.
        assert_eq!(rx.recv().await.map(|i| i.len()), Some(1000));
        assert_eq!(tx.push(item(1)), Err(Refused::Full));
        rx.overflow().cancelled().await;
    }

    #[tokio::test]
    async fn reading_gives_the_bytes_back() {
        let (tx, mut rx) = channel(2000);
        for _ in 0..100 {
            tx.push(item(1500)).unwrap();
            assert_eq!(rx.queued(), 1500 + ITEM_OVERHEAD);
            rx.recv().await.unwrap();
            assert_eq!(rx.queued(), 0);
        }
        assert!(!rx.is_overflowed());
    }

    #[test]
    fn one_item_larger_than_the_limit_goes_into_an_empty_queue() {
        let (tx, rx) = channel(100);
        tx.push(item(10_000)).unwrap();
        assert_eq!(tx.push(item(1)), Err(Refused::Full));
        assert!(rx.is_overflowed());
    }

    #[test]
    fn tiny_items_are_bounded_by_their_overhead() {
        let (tx, rx) = channel(64 * 1024);
        let accepted = (0..100_000)
            .take_while(|_| tx.push(item(4)).is_ok())
            .count();
        assert_eq!(accepted, 64 * 1024 / (4 + ITEM_OVERHEAD));
        assert!(rx.queued() <= 64 * 1024);
    }

    #[test]
    fn a_closed_connection_refuses_and_keeps_no_count() {
        let (tx, rx) = channel::<Vec<u8>>(1000);
        let shared = Arc::clone(&rx.shared);
        drop(rx);
        assert_eq!(tx.push(item(10)), Err(Refused::Closed));
        assert_eq!(shared.queued.load(Ordering::Acquire), 0);
    }
}
