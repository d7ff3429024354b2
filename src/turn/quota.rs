//! What clients hold, shared by every shard: allocation counts per user, per client address
//! and in total (`user-quota`, `max-allocations-per-ip`, `total-quota`), and the relay ports
//! reserved for a later Allocate (EVEN-PORT R=1, RFC 8656 §7.2). Touched only when an
//! allocation or a reservation is made or ends, never per packet.
//!
//! A reservation is held like an allocation: it takes one unit of every quota of the client
//! that made it until it is claimed (the unit passes to the allocation that claims it) or
//! expires. Reservations live here rather than in a shard because the Allocate presenting
//! the token may reach any worker (UDP `SO_REUSEPORT` hashes the client's new socket anew).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

/// Who an allocation or a reservation counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The user the quota counts: a static user's name, or the user part of a REST username
    /// (see [`crate::auth::Auth::quota_user`]).
    pub user: String,
    /// The client's address key ([`crate::client_key::client_key_bits`]): its IPv4 address
    /// or IPv6 /64.
    pub client: u128,
}

/// Which quota refused an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user holds `user-quota` allocations and reservations: 486.
    User,
    /// The client address holds `max-allocations-per-ip`: 486.
    Client,
    /// The server holds `total-quota`: 508 (Insufficient Capacity).
    Total,
}

impl Refusal {
    /// The STUN error code it is answered with (RFC 8656 §7.2).
    pub fn code(self) -> u16 {
        match self {
            Refusal::User | Refusal::Client => 486,
            Refusal::Total => 508,
        }
    }
}

/// The limits, each 0 for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Allocations and reservations one user may hold (`user-quota`).
    pub user: usize,
    /// Allocations and reservations the server may hold (`total-quota`).
    pub total: usize,
    /// Allocations and reservations one client address may hold (`max-allocations-per-ip`).
    pub per_client: usize,
}

/// A relay port held for the Allocate that presents its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The reserved relay address.
    pub addr: SocketAddr,
    /// When it lapses if nobody claims it.
    pub expires: Instant,
    /// Who made it, and is charged for it.
    pub holder: Holder,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    users: HashMap<String, usize>,
    clients: HashMap<u128, usize>,
    reservations: HashMap<[u8; 8], Reservation>,
}

/// Counts allocations and reservations per user, per client and in total; holds the
/// reservations.
#[derive(Debug, Default)]
pub struct Quotas {
    user_limit: AtomicUsize,
    total_limit: AtomicUsize,
    client_limit: AtomicUsize,
    held: Mutex<Held>,
}

impl Quotas {
    /// Quotas with these limits.
    pub fn new(limits: Limits) -> Self {
        let quotas = Self::default();
        quotas.set_limits(limits);
        quotas
    }

    /// New limits (config reload); what is already held is kept.
    pub fn set_limits(&self, limits: Limits) {
        self.user_limit.store(limits.user, Relaxed);
        self.total_limit.store(limits.total, Relaxed);
        self.client_limit.store(limits.per_client, Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `units` (an allocation, plus one for a reservation it makes) for `holder`, all
    /// or nothing, or says which quota refuses them. The total is checked first: a full
    /// server is a capacity problem (508, or 300 to an alternate), whoever asks.
    pub fn acquire(&self, holder: &Holder, units: usize) -> Result<(), Refusal> {
        let mut held = self.lock();
        let over = |limit: usize, count: usize| limit != 0 && count + units > limit;
        if over(self.total_limit.load(Relaxed), held.total) {
            return Err(Refusal::Total);
        }
        let user = held.users.get(&holder.user).copied().unwrap_or(0);
        if over(self.user_limit.load(Relaxed), user) {
            return Err(Refusal::User);
        }
        let client = held.clients.get(&holder.client).copied().unwrap_or(0);
        if over(self.client_limit.load(Relaxed), client) {
            return Err(Refusal::Client);
        }
        held.total += units;
        *held.users.entry(holder.user.clone()).or_default() += units;
        *held.clients.entry(holder.client).or_default() += units;
        Ok(())
    }

    /// One allocation of `holder` moved to the client address key `to` (RFC 8016): its unit
    /// of the per-address count goes with it when `to` has room under
    /// `max-allocations-per-ip`; else it stays where it was (the move goes ahead all the same:
    /// a client that changes network is never stranded, and no address ever counts more than
    /// its limit, so moving allocations away cannot make room for more). Whether it moved.
    /// The user's and the total counts stay.
    pub fn move_client(&self, holder: &Holder, to: u128) -> bool {
        if holder.client == to {
            return false;
        }
        let mut held = self.lock();
        let limit = self.client_limit.load(Relaxed);
        if limit != 0 && held.clients.get(&to).copied().unwrap_or(0) >= limit {
            return false;
        }
        count_down(&mut held.clients, &holder.client, 1);
        *held.clients.entry(to).or_default() += 1;
        true
    }

    /// Returns `units` of `holder`.
    pub fn release(&self, holder: &Holder, units: usize) {
        Self::give_back(&mut self.lock(), holder, units);
    }

    fn give_back(held: &mut Held, holder: &Holder, units: usize) {
        held.total = held.total.saturating_sub(units);
        count_down(&mut held.users, &holder.user, units);
        count_down(&mut held.clients, &holder.client, units);
    }

    /// Records a reservation under `token`; its unit was acquired with the allocation that
    /// made it.
    pub fn reserve(&self, token: [u8; 8], reservation: Reservation) {
        self.lock().reservations.insert(token, reservation);
    }

    /// Takes the reservation of `token`, whichever shard made it. Its unit passes to the
    /// caller, which charges the allocation it makes to `holder` and releases it with it.
    pub fn claim(&self, token: &[u8; 8]) -> Option<Reservation> {
        self.lock().reservations.remove(token)
    }

    /// Ends the reservation of `token` if it lapsed by `now` (and was not claimed), returning
    /// its unit; the caller releases its port.
    pub fn expire(&self, token: &[u8; 8], now: Instant) -> Option<Reservation> {
        let mut held = self.lock();
        if held.reservations.get(token)?.expires > now {
            return None;
        }
        let gone = held.reservations.remove(token)?;
        Self::give_back(&mut held, &gone.holder, 1);
        Some(gone)
    }

    /// When the reservation of `token` lapses, if it is still held.
    pub fn reservation_expiry(&self, token: &[u8; 8]) -> Option<Instant> {
        self.lock().reservations.get(token).map(|r| r.expires)
    }

    /// Ends every reservation (shutdown), returning their units; the caller releases ports.
    pub fn clear_reservations(&self) -> Vec<Reservation> {
        let mut held = self.lock();
        let gone: Vec<Reservation> = held.reservations.drain().map(|(_, r)| r).collect();
        for r in &gone {
            Self::give_back(&mut held, &r.holder, 1);
        }
        gone
    }

    /// Allocations and reservations held right now.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// Reservations held right now.
    pub fn reservations(&self) -> usize {
        self.lock().reservations.len()
    }
}

/// Takes `n` off `key`'s count, forgetting the key at zero (a map of counts holds only
/// what is held).
pub(crate) fn count_down<K: Eq + Hash>(counts: &mut HashMap<K, usize>, key: &K, n: usize) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(n);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(user: &str, client: u128) -> Holder {
        Holder {
            user: user.to_owned(),
            client,
        }
    }

    fn limits(user: usize, total: usize, per_client: usize) -> Limits {
        Limits {
            user,
            total,
            per_client,
        }
    }

    #[test]
    fn user_and_total_limits() {
        let q = Quotas::new(limits(2, 3, 0));
        let (a, b, c) = (holder("a", 1), holder("b", 1), holder("c", 2));
        assert_eq!(q.acquire(&a, 1), Ok(()));
        assert_eq!(q.acquire(&a, 1), Ok(()));
        assert_eq!(q.acquire(&a, 1), Err(Refusal::User));
        assert_eq!(q.acquire(&b, 1), Ok(()));
        assert_eq!(q.acquire(&c, 1), Err(Refusal::Total));
        q.release(&a, 1);
        assert_eq!(q.acquire(&c, 1), Ok(()));
        assert_eq!(q.total(), 3);
        let unlimited = Quotas::new(Limits::default());
        for _ in 0..100 {
            assert_eq!(unlimited.acquire(&a, 2), Ok(()));
        }
    }

    #[test]
    fn a_client_address_has_its_own_cap_whatever_the_user() {
        let q = Quotas::new(limits(0, 0, 3));
        assert_eq!(q.acquire(&holder("a", 7), 2), Ok(()));
        assert_eq!(q.acquire(&holder("b", 7), 1), Ok(()));
        assert_eq!(q.acquire(&holder("c", 7), 1), Err(Refusal::Client));
        assert_eq!(q.acquire(&holder("c", 8), 1), Ok(()));
        // All or nothing: two units do not fit where one does.
        q.release(&holder("b", 7), 1);
        assert_eq!(q.acquire(&holder("c", 7), 2), Err(Refusal::Client));
        assert_eq!(q.acquire(&holder("c", 7), 1), Ok(()));
        assert_eq!(Refusal::Client.code(), 486);
        assert_eq!(Refusal::Total.code(), 508);
    }

    #[test]
    fn a_reservation_holds_a_unit_until_claimed_or_expired() {
        let q = Quotas::new(limits(2, 0, 0));
        let a = holder("a", 1);
        let t0 = Instant::now();
        let reservation = |port| Reservation {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            expires: t0 + std::time::Duration::from_secs(30),
            holder: a.clone(),
        };
        q.acquire(&a, 2).expect("room for two");
        q.reserve([1; 8], reservation(50_001));
        assert_eq!(q.acquire(&a, 1), Err(Refusal::User));
        // Not yet lapsed; an unknown token is nothing.
        assert_eq!(q.expire(&[1; 8], t0), None);
        assert_eq!(
            q.expire(&[2; 8], t0 + std::time::Duration::from_secs(99)),
            None
        );
        let lapsed = q.expire(&[1; 8], t0 + std::time::Duration::from_secs(30));
        assert_eq!(lapsed, Some(reservation(50_001)));
        assert_eq!((q.total(), q.reservations()), (1, 0));
        // Claimed: the unit stays held, now by the claimer's allocation.
        q.acquire(&a, 1).expect("room again");
        q.reserve([3; 8], reservation(50_003));
        assert_eq!(q.claim(&[3; 8]), Some(reservation(50_003)));
        assert_eq!(q.claim(&[3; 8]), None);
        assert_eq!((q.total(), q.reservations()), (2, 0));
        q.release(&a, 2);
        q.acquire(&a, 1).expect("room again");
        q.reserve([4; 8], reservation(50_005));
        assert_eq!(q.clear_reservations(), vec![reservation(50_005)]);
        assert_eq!(q.total(), 0);
    }
}
