//! The cross-worker half of RFC 8016 mobility's routing table: each worker's [`MovedTable`]
//! (the UDP 5-tuples mobile allocations moved to, and the worker holding each) and the
//! bounded [`Reports`] queue the owners fill for it. A leaf: `super` (`server/mobility.rs`)
//! publishes into the queues and looks the table up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::turn::Moved;
use crate::turn::{FastMap, FiveTuple, Transport};

/// Reports one worker's queue holds before more are dropped (each some 100 bytes): a
/// worker empties it every turn, so only a stalled worker fills it.
pub(super) const REPORTS: usize = 1 << 16;

/// The 5-tuples mobile allocations moved to, and the worker holding each: every worker
/// keeps its own copy, so a lookup takes no lock and touches no memory another core writes.
#[derive(Debug, Default)]
pub(super) struct MovedTable {
    map: FastMap<FiveTuple, usize>,
}

impl MovedTable {
    /// The worker holding the allocation `tuple` moved to, if any.
    pub(super) fn get(&self, tuple: &FiveTuple) -> Option<usize> {
        self.map.get(tuple).copied()
    }

    /// Whether it routes nothing.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// What worker `worker`'s manager reported.
    pub(super) fn apply(&mut self, worker: usize, moved: Moved) {
        let map = &mut self.map;
        let mut forget = |tuple: FiveTuple| {
            if map.get(&tuple) == Some(&worker) {
                map.remove(&tuple);
            }
        };
        match moved {
            Moved::To { from, to } => {
                forget(from);
                // Not a detached allocation's placeholder: no client sends from it.
                if to.transport == Transport::Udp && !to.is_detached() {
                    map.insert(to, worker);
                }
            }
            Moved::Gone(tuple) => forget(tuple),
        }
    }
}

/// What the other workers reported to one worker since it last looked: moves and ends of
/// their mobile allocations, in the order each reported them.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    queue: Mutex<Vec<(usize, Moved)>>,
    /// Set by a reporter; cleared by the worker before it takes the queue.
    pending: AtomicBool,
}

impl Reports {
    /// Reports waiting.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(usize, Moved)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a report; false when the queue is full (then it is dropped).
    pub(super) fn push(&self, worker: usize, moved: Moved) -> bool {
        {
            let mut queue = self.lock();
            if queue.len() >= REPORTS {
                return false;
            }
            queue.push((worker, moved));
        }
        self.pending.store(true, Ordering::Release);
        true
    }

    /// Applies what waits to `table`, adding to `taken` each 5-tuple an allocation moved to;
    /// one atomic load when nothing waits.
    pub(super) fn apply_to(&self, table: &mut MovedTable, taken: &mut Vec<FiveTuple>) {
        if !self.pending.load(Ordering::Acquire) || !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        for (worker, moved) in self.lock().drain(..) {
            if let Moved::To { to, .. } = moved
                && to.transport == Transport::Udp
                && !to.is_detached()
            {
                taken.push(to);
            }
            table.apply(worker, moved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::mobility::tests::tuple;

    #[test]
    fn the_table_follows_moves_and_forgets_ended_allocations() {
        let mut table = MovedTable::default();
        assert_eq!(table.get(&tuple(1)), None);
        table.apply(
            1,
            Moved::To {
                from: tuple(1),
                to: tuple(2),
            },
        );
        assert_eq!(table.get(&tuple(2)), Some(1));
        table.apply(
            1,
            Moved::To {
                from: tuple(2),
                to: tuple(3),
            },
        );
        assert_eq!(
            (table.get(&tuple(2)), table.get(&tuple(3))),
            (None, Some(1))
        );
        // Another worker's report does not remove this worker's entry.
        table.apply(0, Moved::Gone(tuple(3)));
        assert_eq!(table.get(&tuple(3)), Some(1));
        table.apply(1, Moved::Gone(tuple(3)));
        assert_eq!(table.get(&tuple(3)), None);
        assert!(table.map.is_empty());
    }

    #[test]
    fn reports_reach_the_other_workers_table_in_order() {
        let reports = Reports::default();
        let mut table = MovedTable::default();
        reports.apply_to(&mut table, &mut Vec::new());
        let (from, to) = (tuple(1), tuple(2));
        reports.push(1, Moved::To { from, to });
        reports.push(1, Moved::To { from: to, to: from });
        reports.apply_to(&mut table, &mut Vec::new());
        assert_eq!(
            (table.get(&tuple(1)), table.get(&tuple(2))),
            (Some(1), None)
        );
        reports.push(1, Moved::Gone(tuple(1)));
        reports.apply_to(&mut table, &mut Vec::new());
        assert!(table.map.is_empty());
    }
}
