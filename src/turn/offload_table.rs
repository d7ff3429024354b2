//! One shard's books of its offloaded channels (#18): exactly the entries the kernel was
//! asked to hold, keyed by allocation and channel number, with each entry's counts as last
//! read. The manager decides what should be there (`offload_sync.rs`); this only turns each
//! decision into what to take out and put in, and readings into what is new.

use super::offload::{ChannelEntry, OffloadCounts, Offloaded};
use super::{FastMap, FiveTuple, Transport};

/// The 5-tuple of the allocation an entry belongs to.
pub(super) fn tuple_of(entry: &ChannelEntry) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: entry.client,
        server: entry.listen,
    }
}

/// One shard's books of its offloaded channels: exactly the entries the kernel was asked to
/// hold, by allocation and channel number. Off (and empty) unless the worker has the
/// kernel's maps, so a server without the offload does no work for it.
#[derive(Debug, Default)]
pub struct OffloadTable {
    on: bool,
    live: FastMap<(FiveTuple, u16), Offloaded>,
    /// Allocations that may not be offloaded any more: their credentials were revoked by
    /// a reload.
    barred: FastMap<FiveTuple, ()>,
}

impl OffloadTable {
    /// Whether the kernel relays for this shard.
    pub fn is_on(&self) -> bool {
        self.on
    }

    pub(super) fn set_on(&mut self, on: bool) {
        self.on = on;
    }

    /// Entries the kernel holds for this shard.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether the kernel holds no entry for this shard.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The entry of `channel` of the allocation `tuple`, if the kernel holds one.
    pub fn get(&self, tuple: &FiveTuple, channel: u16) -> Option<ChannelEntry> {
        self.live.get(&(*tuple, channel)).map(|l| l.entry)
    }

    /// Makes the kernel's entry for `channel` of `tuple` be `want`: what to take out (with
    /// its counts as last read) and what to put in. The same entry again changes nothing,
    /// so refreshing a channel keeps its one entry and its counts.
    pub(super) fn set(
        &mut self,
        tuple: FiveTuple,
        channel: u16,
        want: Option<ChannelEntry>,
    ) -> (Option<Offloaded>, Option<ChannelEntry>) {
        let key = (tuple, channel);
        let have = self.live.get(&key).map(|l| l.entry);
        if have == want {
            return (None, None);
        }
        let out = self.live.remove(&key);
        if let Some(entry) = want {
            let seen = OffloadCounts::default();
            self.live.insert(key, Offloaded { entry, seen });
        }
        (out, want)
    }

    /// Forgets `entry` without taking it out: the kernel refused it (its maps are full),
    /// so the channel stays in user space, and the next refresh asks again.
    pub(super) fn forget(&mut self, entry: &ChannelEntry) {
        let key = (tuple_of(entry), entry.channel);
        if self.live.get(&key).is_some_and(|l| l.entry == *entry) {
            self.live.remove(&key);
        }
    }

    /// Reads every entry's counts with `read` and hands what is new since the last reading
    /// to `add`, with the allocation it belongs to.
    pub(super) fn read(
        &mut self,
        mut read: impl FnMut(&ChannelEntry) -> Option<OffloadCounts>,
        mut add: impl FnMut(FiveTuple, &OffloadCounts),
    ) {
        for ((tuple, _), live) in &mut self.live {
            let Some(now) = read(&live.entry) else {
                continue;
            };
            let new = now.since(&live.seen);
            live.seen = now;
            if !new.is_zero() {
                add(*tuple, &new);
            }
        }
    }

    /// Every (allocation, channel) the kernel holds an entry for.
    pub(super) fn keys(&self) -> Vec<(FiveTuple, u16)> {
        self.live.keys().copied().collect()
    }

    /// Keeps the allocation `tuple` out of the kernel from now on.
    pub(super) fn bar(&mut self, tuple: FiveTuple) {
        self.barred.insert(tuple, ());
    }

    /// Whether the allocation `tuple` is kept out of the kernel.
    pub(super) fn is_barred(&self, tuple: &FiveTuple) -> bool {
        self.barred.contains_key(tuple)
    }

    /// The allocation `tuple` is gone: forget that it was barred.
    pub(super) fn unbar(&mut self, tuple: &FiveTuple) {
        self.barred.remove(tuple);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::offload::tests::counts;
    use std::net::SocketAddr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn entry(channel: u16, peer: &str) -> ChannelEntry {
        ChannelEntry {
            client: sa("198.51.100.1:40000"),
            listen: sa("203.0.113.1:3478"),
            channel,
            relay: sa("203.0.113.1:50000"),
            peer: sa(peer),
        }
    }

    #[test]
    fn the_same_entry_twice_is_one_entry_and_a_new_peer_replaces_it() {
        let mut table = OffloadTable::default();
        let a = entry(0x4000, "192.0.2.10:5000");
        let tuple = tuple_of(&a);
        assert_eq!(table.set(tuple, 0x4000, Some(a)), (None, Some(a)));
        assert_eq!(table.set(tuple, 0x4000, Some(a)), (None, None), "refresh");
        assert_eq!(table.len(), 1);
        let b = entry(0x4000, "192.0.2.11:5000");
        let (out, add) = table.set(tuple, 0x4000, Some(b));
        assert_eq!((out.map(|o| o.entry), add), (Some(a), Some(b)));
        assert_eq!(table.get(&tuple, 0x4000), Some(b));
        let (out, add) = table.set(tuple, 0x4000, None);
        assert_eq!((out.map(|o| o.entry), add), (Some(b), None));
        assert!(table.is_empty());
        assert_eq!(table.set(tuple, 0x4000, None), (None, None));
    }

    #[test]
    fn readings_add_only_what_is_new_and_removal_carries_what_was_seen() {
        let mut table = OffloadTable::default();
        let a = entry(0x4000, "192.0.2.10:5000");
        table.set(tuple_of(&a), 0x4000, Some(a));
        let mut added = Vec::new();
        let mut kernel = counts(3, 300, 2, 200);
        table.read(|_| Some(kernel), |t, c| added.push((t, *c)));
        kernel = counts(5, 500, 2, 200);
        table.read(|_| Some(kernel), |t, c| added.push((t, *c)));
        table.read(|_| Some(kernel), |t, c| added.push((t, *c)));
        table.read(|_| None, |t, c| added.push((t, *c)));
        assert_eq!(
            added,
            [
                (tuple_of(&a), counts(3, 300, 2, 200)),
                (tuple_of(&a), counts(2, 200, 0, 0))
            ]
        );
        let (out, _) = table.set(tuple_of(&a), 0x4000, None);
        let out = out.unwrap();
        assert_eq!(out.seen, kernel);
        assert_eq!(
            counts(6, 600, 2, 200).since(&out.seen),
            counts(1, 100, 0, 0)
        );
        // A counter that went backwards (a new entry under the same key) adds nothing.
        assert!(counts(1, 1, 1, 1).since(&kernel).is_zero());
    }

    #[test]
    fn a_refused_entry_is_forgotten_and_barring_is_per_allocation() {
        let mut table = OffloadTable::default();
        let a = entry(0x4000, "192.0.2.10:5000");
        table.set(tuple_of(&a), 0x4000, Some(a));
        table.forget(&entry(0x4000, "192.0.2.99:1"));
        assert_eq!(table.len(), 1, "another entry under the same key stays");
        table.forget(&a);
        assert!(table.is_empty());
        assert_eq!(
            table.set(tuple_of(&a), 0x4000, Some(a)),
            (None, Some(a)),
            "asked again"
        );
        assert!(!table.is_barred(&tuple_of(&a)));
        table.bar(tuple_of(&a));
        assert!(table.is_barred(&tuple_of(&a)));
        table.unbar(&tuple_of(&a));
        assert!(!table.is_barred(&tuple_of(&a)));
    }
}
