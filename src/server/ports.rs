//! The relay port range as a bitmap shared by every shard: a port is taken by setting its
//! bit, so shards never pick the same port, a free port is found by scanning from a random
//! place (ports stay unpredictable), and a nearly full range still finds the last free port
//! instead of giving up after a few random misses.
//!
//! The pool also keeps the sockets of reserved ports (EVEN-PORT R=1, RFC 8656 §7.2): the
//! Allocate that claims one may reach any shard, which takes the socket from here.
//!
//! And it records which worker holds each port bound for an allocation, and in which slot of
//! its relay table ([`PortPool::owner`]): a client's data for one of rturn's own relay
//! endpoints is handed to that worker inside the process ([`super::handoff`]), and the peer
//! rules ask [`Pools`] which relay ports are live.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Free and taken relay ports in `min..=max`, and the sockets holding reserved ones.
#[derive(Debug)]
pub(super) struct PortPool {
    min: u16,
    max: u16,
    words: Box<[AtomicU64]>,
    /// Per port: 0, or the worker and slot of the allocation's relay socket bound to it
    /// ([`pack_owner`]).
    owners: Box<[AtomicU64]>,
    reserved: Mutex<HashMap<u16, UdpSocket>>,
}

/// A port's owner as one word: worker + 1 in the high half (so 0 is "nobody"), the slot in
/// the low half.
fn pack_owner(worker: usize, slot: usize) -> u64 {
    (worker as u64 + 1) << 32 | (slot as u64 & 0xffff_ffff)
}

impl PortPool {
    pub(super) fn new(min: u16, max: u16) -> Self {
        let count = usize::from(max.saturating_sub(min)) + 1;
        Self {
            min,
            max,
            words: (0..count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            owners: (0..count).map(|_| AtomicU64::new(0)).collect(),
            reserved: Mutex::default(),
        }
    }

    fn lock_reserved(&self) -> std::sync::MutexGuard<'_, HashMap<u16, UdpSocket>> {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `socket`, bound to the taken `port`, until a shard claims or releases it.
    pub(super) fn hold(&self, port: u16, socket: UdpSocket) {
        self.lock_reserved().insert(port, socket);
    }

    /// The socket of reserved `port`, for the shard that claims it (the port stays taken).
    pub(super) fn take_held(&self, port: u16) -> Option<UdpSocket> {
        self.lock_reserved().remove(&port)
    }

    /// Reserved ports held now.
    pub(super) fn held(&self) -> usize {
        self.lock_reserved().len()
    }

    /// Takes a free port chosen at random: even when `even`, and with the next port free
    /// and taken too when `pair`. `None` when no such port is left.
    pub(super) fn take(&self, even: bool, pair: bool) -> Option<u16> {
        let span = usize::from(self.max.checked_sub(self.min)?) + 1;
        let start = crate::random::os_random_range(0..span);
        (0..span)
            .map(|i| (start + i) % span)
            .filter(|&offset| {
                let port = usize::from(self.min) + offset;
                (!even || port % 2 == 0) && (!pair || offset + 1 < span)
            })
            .find(|&offset| self.claim(offset, pair))
            .and_then(|offset| u16::try_from(usize::from(self.min) + offset).ok())
    }

    /// Frees `port` (its socket is closed).
    pub(super) fn release(&self, port: u16) {
        if let Some(offset) = self.offset(port) {
            self.clear(offset);
        }
    }

    /// Whether `port` is taken now: bound for an allocation, or reserved.
    #[cfg(test)]
    fn is_taken(&self, port: u16) -> bool {
        self.offset(port).is_some_and(|offset| {
            self.words[offset / 64].load(Ordering::Relaxed) & (1u64 << (offset % 64)) != 0
        })
    }

    /// Records that `worker`'s relay socket in `slot` is bound to the taken `port` for an
    /// allocation: from now on it is a live relay endpoint.
    pub(super) fn set_owner(&self, port: u16, worker: usize, slot: usize) {
        if let Some(offset) = self.offset(port) {
            self.owners[offset].store(pack_owner(worker, slot), Ordering::Release);
        }
    }

    /// Forgets the owner of `port`, before its socket closes.
    pub(super) fn clear_owner(&self, port: u16) {
        if let Some(offset) = self.offset(port) {
            self.owners[offset].store(0, Ordering::Release);
        }
    }

    /// The worker and relay-table slot of the allocation holding `port` now; `None` when the
    /// port is free, reserved, or being bound or closed.
    pub(super) fn owner(&self, port: u16) -> Option<(usize, usize)> {
        let word = self.owners[self.offset(port)?].load(Ordering::Acquire);
        let worker = (word >> 32).checked_sub(1)?;
        Some((worker as usize, (word & 0xffff_ffff) as usize))
    }

    /// Ports taken now.
    #[cfg(test)]
    fn taken(&self) -> u32 {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum()
    }

    fn offset(&self, port: u16) -> Option<usize> {
        (self.min..=self.max)
            .contains(&port)
            .then(|| usize::from(port - self.min))
    }

    /// Sets the bit of `offset` (and of the next one when `pair`) if clear; all or nothing.
    fn claim(&self, offset: usize, pair: bool) -> bool {
        if !self.claim_one(offset) {
            return false;
        }
        if pair && !self.claim_one(offset + 1) {
            self.clear(offset);
            return false;
        }
        true
    }

    fn claim_one(&self, offset: usize) -> bool {
        let bit = 1u64 << (offset % 64);
        let word = &self.words[offset / 64];
        // A plain load first: scanning a crowded range must not write every word it reads.
        word.load(Ordering::Relaxed) & bit == 0 && word.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    fn clear(&self, offset: usize) {
        self.words[offset / 64].fetch_and(!(1 << (offset % 64)), Ordering::Relaxed);
    }
}

/// The relay port pools of IPv4 and IPv6, shared by every worker; as
/// [`crate::turn::own_relays::LiveRelays`] they tell the peer rules which of the relay
/// addresses' ports are rturn's own live relay endpoints now: bound for an allocation (a
/// reserved port nobody claimed is not).
#[derive(Debug)]
pub(super) struct Pools {
    pub(super) v4: std::sync::Arc<PortPool>,
    pub(super) v6: std::sync::Arc<PortPool>,
}

impl Pools {
    pub(super) fn new(min: u16, max: u16) -> Self {
        Self {
            v4: std::sync::Arc::new(PortPool::new(min, max)),
            v6: std::sync::Arc::new(PortPool::new(min, max)),
        }
    }

    /// Both pools, IPv4 first, as the relay tables take them.
    pub(super) fn both(&self) -> [std::sync::Arc<PortPool>; 2] {
        [
            std::sync::Arc::clone(&self.v4),
            std::sync::Arc::clone(&self.v6),
        ]
    }
}

/// Relay slots from here on are RFC 6062 TCP listeners' (`server/tcp_relay.rs`; slot -
/// TCP_SLOT_BASE is the index), so a port's owner says which kind of relay holds it.
pub(super) const TCP_SLOT_BASE: usize = 1 << 28;

/// Whether a relay slot is a TCP listener's.
pub(super) fn is_tcp_slot(slot: usize) -> bool {
    slot >= TCP_SLOT_BASE
}

impl crate::turn::own_relays::LiveRelays for Pools {
    fn holds(&self, port: u16, ipv6: bool) -> bool {
        if ipv6 { &self.v6 } else { &self.v4 }.owner(port).is_some()
    }

    fn holds_tcp(&self, port: u16, ipv6: bool) -> bool {
        let owner = if ipv6 { &self.v6 } else { &self.v4 }.owner(port);
        owner.is_some_and(|(_, slot)| is_tcp_slot(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_is_handed_out_once_then_none() {
        let pool = PortPool::new(50_000, 50_099);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let port = pool.take(false, false).expect("a free port");
            assert!((50_000..=50_099).contains(&port));
            assert!(seen.insert(port), "{port} handed out twice");
        }
        assert_eq!(pool.take(false, false), None);
        pool.release(50_042);
        assert_eq!(pool.take(false, false), Some(50_042));
    }

    #[test]
    fn a_port_is_live_from_take_to_release() {
        let pool = PortPool::new(50_000, 50_009);
        let port = pool.take(false, false).expect("a free port");
        assert!(pool.is_taken(port));
        assert!(
            !pool.is_taken(49_999) && !pool.is_taken(50_010),
            "outside the range"
        );
        pool.release(port);
        assert!(!pool.is_taken(port));
    }

    #[test]
    fn a_port_has_an_owner_from_activation_to_close() {
        let pool = PortPool::new(50_000, 50_009);
        let port = pool.take(false, false).expect("a free port");
        assert_eq!(pool.owner(port), None, "taken, not yet bound");
        pool.set_owner(port, 1, 70_000);
        assert_eq!(pool.owner(port), Some((1, 70_000)));
        pool.set_owner(50_042, 0, 0);
        assert_eq!(pool.owner(50_042), None, "outside the range");
        pool.clear_owner(port);
        assert_eq!(pool.owner(port), None);
        // Worker 0, slot 0 is an owner too (0 is not "nobody").
        pool.set_owner(port, 0, 0);
        assert_eq!(pool.owner(port), Some((0, 0)));
    }

    #[test]
    fn even_pairs_take_both_ports() {
        let pool = PortPool::new(50_001, 50_010);
        let mut pairs = Vec::new();
        while let Some(port) = pool.take(true, true) {
            assert_eq!(port % 2, 0);
            pairs.push(port);
        }
        // 50002/3, 50004/5, 50006/7, 50008/9: 50010 has no twin inside the range.
        assert_eq!(pairs.len(), 4);
        assert_eq!(pool.taken(), 8);
        assert_eq!(pool.take(true, false), Some(50_010));
    }

    #[test]
    fn ports_are_not_sequential() {
        let pool = PortPool::new(10_000, 59_999);
        let ports: Vec<u16> = (0..20).filter_map(|_| pool.take(false, false)).collect();
        let sequential = ports.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(sequential < 3, "{ports:?}");
    }
}
