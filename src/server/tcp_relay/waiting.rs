//! The table, shared by every worker, of RFC 6062 peer connections waiting for their
//! ConnectionBind ([`Waiting`]), and the descriptor budget every peer socket draws on.
//!
//! Bounds: [`MAX_WAITING`] connections over the server, of them [`MAX_WAITING_PER_CLIENT`]
//! for the allocations of one client address (IPv4 address or IPv6 /64, as
//! `max-allocations-per-ip` counts), each for [`BIND_TIMEOUT`] at most; besides, each
//! allocation holds at most `MAX_UNBOUND` of them ([`crate::turn::tcp_link`]). So the
//! allocations of one address cannot fill the table for everyone else: it takes 16 addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::server::descriptors::{Budget, Kind, Permit};
use crate::turn::quota::count_down;
use crate::turn::tcp_link::{BIND_TIMEOUT, PeerSlot, bind_check};

/// Peer connections waiting for a ConnectionBind, over the whole server: past it new ones
/// are closed at once (a Connect gets 447).
pub(super) const MAX_WAITING: usize = 16 * 1024;
/// Of those, how many the allocations of one client address may hold: past it the same.
pub(super) const MAX_WAITING_PER_CLIENT: usize = MAX_WAITING / 16;

/// A peer connection, established, waiting for the client's ConnectionBind.
#[derive(Debug)]
pub(in crate::server) struct Unbound {
    pub(in crate::server) socket: std::net::TcpStream,
    pub(in crate::server) peer: SocketAddr,
    pub(in crate::server) slot: PeerSlot,
    /// The socket's share of the descriptor budget.
    pub(in crate::server) permit: Option<Permit>,
    deadline: Instant,
}

/// The peer connections waiting for their ConnectionBind, by CONNECTION-ID, shared by
/// every worker (the data connection lands on any); bounded, each one for [`BIND_TIMEOUT`].
/// And the descriptor budget every peer socket draws on, shared the same way.
#[derive(Debug)]
pub(in crate::server) struct Waiting {
    table: Mutex<Table>,
    budget: OnceLock<Arc<Budget>>,
    /// [`MAX_WAITING_PER_CLIENT`], or less in tests.
    per_client_cap: usize,
}

impl Default for Waiting {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            budget: OnceLock::new(),
            per_client_cap: MAX_WAITING_PER_CLIENT,
        }
    }
}

/// The connections by CONNECTION-ID, and how many each client address holds.
#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<u32, Unbound>,
    per_client: HashMap<u128, usize>,
}

impl Table {
    fn remove(&mut self, id: u32) -> Option<Unbound> {
        let unbound = self.by_id.remove(&id)?;
        count_down(&mut self.per_client, &unbound.slot.link().client(), 1);
        Some(unbound)
    }
}

/// What a peer socket holds of the descriptor budget: `Some(None)` when there is no budget
/// to draw on (tests), `None` when it is spent.
type Share = Option<Option<Permit>>;

impl Waiting {
    /// Every peer socket holds a [`Permit`] of `budget` (TURN's share) from now on, so
    /// peer connections cannot take the descriptors relay sockets need.
    pub(in crate::server) fn share_budget(&self, budget: &Arc<Budget>) {
        let _ = self.budget.set(Arc::clone(budget));
    }

    /// A permit for one more peer socket; `None` when the budget is spent.
    pub(super) fn permit(&self) -> Share {
        match self.budget.get() {
            Some(budget) => budget.try_acquire(Kind::Turn).map(Some),
            None => Some(None),
        }
    }

    /// A table whose client addresses may hold `cap` connections each (tests).
    #[cfg(test)]
    pub(super) fn with_per_client_cap(cap: usize) -> Self {
        Self {
            per_client_cap: cap,
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `socket` (to `peer`, holding `slot` and `permit`) until `now + BIND_TIMEOUT`;
    /// its CONNECTION-ID, or `None` when the table, or the client address's share of it, is
    /// full (then it is closed).
    pub(super) fn insert(
        &self,
        socket: std::net::TcpStream,
        peer: SocketAddr,
        (slot, permit): (PeerSlot, Option<Permit>),
        now: Instant,
    ) -> Option<u32> {
        let mut table = self.lock();
        let client = slot.link().client();
        let held = table.per_client.get(&client).copied().unwrap_or(0);
        if table.by_id.len() >= MAX_WAITING || held >= self.per_client_cap {
            return None;
        }
        let id = loop {
            let id: u32 = crate::random::os_random();
            if id != 0 && !table.by_id.contains_key(&id) {
                break id;
            }
        };
        let deadline = now + BIND_TIMEOUT;
        let unbound = Unbound {
            socket,
            peer,
            slot,
            permit,
            deadline,
        };
        table.by_id.insert(id, unbound);
        *table.per_client.entry(client).or_default() += 1;
        Some(id)
    }

    /// The connection `id` for a ConnectionBind of `user` at `now` ([`bind_check`]): taken
    /// out when it may be bound, or when it is past saving (its allocation gone, its time
    /// up); left for its owner when another user names it.
    pub(super) fn take(&self, id: u32, user: &str, now: Instant) -> Option<Unbound> {
        let mut table = self.lock();
        let waiting = table.by_id.get(&id)?;
        let (link, deadline) = (waiting.slot.link(), waiting.deadline);
        match bind_check(link, user, deadline, now) {
            Ok(()) => table.remove(id),
            Err(_) if link.user() == user => {
                table.remove(id);
                None
            }
            Err(_) => None,
        }
    }

    /// Closes the connections nobody bound in time, or whose allocation ended; how many.
    pub(super) fn expire(&self, now: Instant) -> usize {
        let mut table = self.lock();
        let Table { by_id, per_client } = &mut *table;
        let before = by_id.len();
        by_id.retain(|_, w| {
            let keep = w.deadline > now && w.slot.link().is_alive();
            if !keep {
                count_down(per_client, &w.slot.link().client(), 1);
            }
            keep
        });
        before - by_id.len()
    }
}
