//! RFC 8016 mobility in the manager: MOBILITY-TICKET on Allocate and Refresh, and moving an
//! allocation to the client's new 5-tuple. Pure, like the rest of the manager.
//!
//! An Allocate with an empty MOBILITY-TICKET gets a ticket ([`super::ticket`]) in its success
//! response when `[relay] mobility` is on, else 405 (Mobility Forbidden, RFC 8016 §3.1). A
//! Refresh carrying a ticket from a 5-tuple with no allocation is a move (§3.2): the ticket
//! must be one this manager handed out and still files ([`Mobility`]; else 400 for a ticket
//! that is not ours, 437 for one that names no live allocation), the request's credentials
//! those of the allocation's user (else 441). The allocation is then re-keyed to the new
//! 5-tuple with everything it holds: relay sockets, permissions, channels, timers, counters,
//! and its channels leave the kernel's maps and come back with the new client address (one
//! kept out of the kernel by a reload stays out). The old 5-tuple reaches nothing from then
//! on. The Refresh is checked and applied before the move, so one that fails moves nothing.
//!
//! An allocation keeps one ticket for its whole life, as coturn does, and every successful
//! Refresh of it carries that ticket: a client whose address changes while a response is on
//! its way still holds a ticket that works, and the retransmission of a moving Refresh (now
//! from the allocation's own 5-tuple) is simply a Refresh. A ticket alone moves nothing: the
//! Refresh must be signed by the allocation's user.
//!
//! An RFC 6062 TCP allocation is never mobile (no ticket). A mobile TCP/TLS allocation whose
//! connection closes is detached ([`Manager::close`]): re-keyed to a 5-tuple no connection
//! can have, so a new connection from the same address and port (a reused NAT port) reaches
//! nothing of it, and kept for at most [`TCP_GRACE`] for a ticketed Refresh to take it.
//!
//! Which worker a ticket names is the glue's business ([`Moved`] tells it where allocations
//! went, `server/mobility.rs` routes the new 5-tuple's datagrams there). The state itself,
//! tickets by handle and by 5-tuple, is in `mobile_table.rs`.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use stun::attributes::ATTR_NONCE;
use stun::message::{METHOD_ALLOCATE, METHOD_REFRESH, Message};

use super::FiveTuple;
use super::attrs;
use super::manager::{Manager, Timer};
use super::mobile_table::{Mobile, Moved};
use super::pending::Credentials;
use super::ticket::{self, ATTR_MOBILITY_TICKET, Handle, TicketKey, WIRE_LEN};

/// How long a mobile TCP/TLS allocation outlives its connection, at most.
pub(crate) const TCP_GRACE: Duration = Duration::from_secs(60);
/// How fresh the nonce of a Refresh that moves an allocation must be.
pub(crate) const MOVE_NONCE: Duration = Duration::from_secs(30);

impl Manager {
    /// The worker index this manager's tickets name, and the key every worker signs them
    /// with (one per process).
    pub fn set_mobility(&mut self, worker: u16, key: TicketKey) {
        self.mobility.worker = worker;
        self.mobility.key = key;
    }

    /// The next change the event loop must publish to the other workers.
    pub fn poll_moved(&mut self) -> Option<Moved> {
        self.mobility.moved.pop_front()
    }

    /// Mobile allocations held (for tests and the admin view).
    pub fn mobile_count(&self) -> usize {
        self.mobility.by_tuple.len()
    }

    /// An Allocate's MOBILITY-TICKET (RFC 8016 §3.1): absent or empty with mobility on is
    /// fine; 405 with mobility off, 400 when not empty.
    pub(super) fn mobility_asked(&self, req: &Message) -> Result<(), u16> {
        match attrs::value(req, ATTR_MOBILITY_TICKET) {
            None => Ok(()),
            Some(_) if !self.config.mobility => Err(405),
            Some([]) => Ok(()),
            Some(_) => Err(400),
        }
    }

    /// Adds the ticket to an Allocate's success response when the client asked for one
    /// (the same ticket to a retransmission). An RFC 6062 TCP allocation gets none: it lives
    /// and dies with its control connection, so it is never mobile, and a client learns that
    /// from the missing ticket (RFC 8016 §3.1).
    pub(super) fn add_ticket(&mut self, tuple: FiveTuple, req: &Message) {
        if req.typ.method != METHOD_ALLOCATE
            || !req.contains(ATTR_MOBILITY_TICKET)
            || !self.config.mobility
            || self.allocations.get(&tuple).is_none_or(|a| a.tcp.is_some())
        {
            return;
        }
        let handle = match self.mobility.by_tuple.get(&tuple) {
            Some(mobile) => mobile.handle,
            None => {
                let handle = ticket::new_handle();
                self.mobility.by_handle.insert(handle, tuple);
                self.mobility.by_tuple.insert(tuple, Mobile { handle });
                handle
            }
        };
        self.put_ticket(handle);
    }

    fn put_ticket(&mut self, handle: Handle) {
        let wire = self.mobility.key.seal(self.mobility.worker, &handle);
        self.response.add(ATTR_MOBILITY_TICKET, &wire);
    }

    /// A Refresh: a plain one, or with MOBILITY-TICKET one from the allocation's own
    /// 5-tuple or a move. Every successful Refresh of a mobile allocation carries its
    /// ticket, the same one for the allocation's whole life (as coturn does): a client that
    /// changes address while a response is lost still holds a ticket that works.
    pub(super) fn refresh_or_move(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
    ) -> Result<(), u16> {
        let Some(value) = attrs::value(req, ATTR_MOBILITY_TICKET) else {
            self.refresh(now, tuple, req)?;
            self.put_current_ticket(tuple);
            return Ok(());
        };
        if !self.config.mobility {
            return Err(405);
        }
        let shown: [u8; WIRE_LEN] = value.try_into().map_err(|_| 400u16)?;
        let taking = self.allocations.contains_key(&tuple) && self.takes_over(tuple, &shown, creds);
        if let Some(alloc) = self.allocations.get(&tuple).filter(|_| !taking) {
            // From the allocation's own 5-tuple (a periodic Refresh, or the retransmission
            // of the Refresh that moved it here): its own user, and only its own ticket.
            if alloc.username != creds.username {
                return Err(441);
            }
            let mobile = *self.mobility.by_tuple.get(&tuple).ok_or(400u16)?;
            if shown != self.mobility.key.seal(self.mobility.worker, &mobile.handle) {
                return Err(400);
            }
            self.refresh(now, tuple, req)?;
        } else {
            let (worker, handle) = self.mobility.key.open(&shown).ok_or(400u16)?;
            // The glue hands another worker's ticket to that worker (`server/mobility.rs`);
            // one that still reaches this one names nothing here.
            if worker != self.mobility.worker {
                return Err(437);
            }
            let from = *self.mobility.by_handle.get(&handle).ok_or(437u16)?;
            let alloc = self.allocations.get(&from).ok_or(437u16)?;
            // RFC 8016 §3.2: only the allocation's own user may move it.
            if alloc.username != creds.username {
                return Err(441);
            }
            // Never mobile (`add_ticket`); refused should one ever be filed.
            if alloc.tcp.is_some() {
                return Err(400);
            }
            // The Refresh is checked and applied where the allocation is, so one that fails
            // (a bad LIFETIME, 443) moves nothing; LIFETIME 0 deletes it there.
            self.refresh(now, from, req)?;
            if self.allocations.contains_key(&from) {
                // Another client's allocation still holding this address makes way, only
                // now that the move is sure.
                if taking {
                    self.vacate(now, tuple);
                }
                self.move_allocation(from, tuple);
                self.metrics.allocations_moved += 1;
            }
        }
        self.put_current_ticket(tuple);
        Ok(())
    }

    /// Whether `req`, a Refresh with a MOBILITY-TICKET from `tuple` signed with `creds`,
    /// would move an allocation here (onto a 5-tuple that holds none, or one that makes
    /// way) with a nonce issued more than [`MOVE_NONCE`] ago: a move asks for a fresh one
    /// (438), so only a sender that receives at `tuple` now can make it.
    pub(super) fn move_needs_fresh_nonce(
        &self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
    ) -> bool {
        let Some(shown) = attrs::value(req, ATTR_MOBILITY_TICKET)
            .and_then(|v| <[u8; WIRE_LEN]>::try_from(v).ok())
            .filter(|_| self.config.mobility && req.typ.method == METHOD_REFRESH)
        else {
            return false;
        };
        let moving =
            !self.allocations.contains_key(&tuple) || self.takes_over(tuple, &shown, creds);
        let issued = attrs::value(req, ATTR_NONCE).and_then(crate::auth::nonce_issued);
        moving && issued.is_none_or(|at| at.saturating_add(MOVE_NONCE.as_secs()) < self.unix(now))
    }

    /// Whether `shown`, shown from `tuple` by a request signed with `creds` (with a nonce
    /// made for `tuple`, so its sender receives there), is the ticket of another live,
    /// mobile UDP allocation of this worker and of that user: then its client has moved
    /// onto the address the allocation at `tuple` still holds, whose client left it
    /// without a word (a NAT or the OS gave its port to the mover).
    fn takes_over(&self, tuple: FiveTuple, shown: &[u8; WIRE_LEN], creds: &Credentials) -> bool {
        let Some((worker, handle)) = self.mobility.key.open(shown) else {
            return false;
        };
        let from = self.mobility.by_handle.get(&handle).copied();
        let alloc = from.filter(|f| *f != tuple && worker == self.mobility.worker);
        alloc
            .and_then(|from| self.allocations.get(&from))
            .is_some_and(|a| a.username == creds.username && a.tcp.is_none())
    }

    /// The allocation of `tuple` makes way for another that moved onto its 5-tuple (here,
    /// or reported by another worker): detached if it is mobile, so its client can still
    /// take it with its ticket, else deleted. False when `tuple` holds none.
    pub fn vacate(&mut self, now: Instant, tuple: FiveTuple) -> bool {
        if !self.allocations.contains_key(&tuple) {
            return false;
        }
        tracing::debug!(client = %tuple.client, "another allocation moved onto this address: the old one makes way");
        if !self.detach(now, tuple) {
            self.delete_allocation(tuple);
        }
        true
    }

    /// The ticket of `tuple`'s allocation into the response, if it is mobile (none after a
    /// zero LIFETIME deleted it) and mobility is on (a reload may have turned it off).
    fn put_current_ticket(&mut self, tuple: FiveTuple) {
        if !self.config.mobility {
            return;
        }
        if let Some(mobile) = self.mobility.by_tuple.get(&tuple) {
            let handle = mobile.handle;
            self.put_ticket(handle);
        }
    }

    /// Re-keys the allocation of `from` to `to`, with its relay slots, timers, ticket and
    /// kernel entries.
    fn move_allocation(&mut self, from: FiveTuple, to: FiveTuple) {
        let Some(mut alloc) = self.allocations.remove(&from) else {
            return;
        };
        // `max-allocations-per-ip` counts it at its new address from now on, if that has
        // room (a detached placeholder leaves it where its client last was).
        if !to.is_detached() {
            let key = crate::client_key::client_key_bits(to.client.ip());
            if self.quotas.move_client(&alloc.holder, key) {
                alloc.holder.client = key;
            }
        }
        // Its channels leave the kernel while the table no longer holds it under `from`;
        // a ban from a reload that revoked its key goes with it.
        let barred = self.offload.is_barred(&from);
        self.offload_deleted(from, &alloc);
        if barred {
            self.offload.bar(to);
        }
        self.unschedule(Timer::Allocation(from));
        for ip in alloc.permissions.keys() {
            self.unschedule(Timer::Permission(from, *ip));
        }
        for number in alloc.channels.keys() {
            self.unschedule(Timer::Channel(from, *number));
        }
        for relay in &alloc.relays {
            self.by_relay.insert(relay.slot, to);
        }
        self.schedule(alloc.expires, Timer::Allocation(to));
        for (ip, at) in &alloc.permissions {
            self.schedule(*at, Timer::Permission(to, *ip));
        }
        let numbers: Vec<u16> = alloc.channels.keys().copied().collect();
        for (number, channel) in &alloc.channels {
            self.schedule(channel.expires, Timer::Channel(to, *number));
        }
        tracing::debug!(from = %from.client, to = %to.client, user = %alloc.username, "allocation moved");
        self.allocations.insert(to, alloc);
        for number in numbers {
            self.offload_channel(to, number);
        }
        if let Some(mobile) = self.mobility.by_tuple.remove(&from) {
            self.mobility.by_handle.insert(mobile.handle, to);
            self.mobility.by_tuple.insert(to, mobile);
        }
        self.mobility.moved.push_back(Moved::To { from, to });
    }

    /// The client of `tuple`, a mobile allocation's, left: its TCP/TLS connection closed,
    /// or another allocation moved onto its address ([`Manager::vacate`]). The allocation
    /// is re-keyed to a 5-tuple of its own that no client can have (client port 0 in the
    /// discard prefix 100::/64, RFC 6666), so nothing reaches it but a Refresh with its
    /// ticket, and it expires within [`TCP_GRACE`] unless one takes it. False when `tuple`
    /// holds no mobile allocation.
    pub(super) fn detach(&mut self, now: Instant, tuple: FiveTuple) -> bool {
        if !self.mobility.by_tuple.contains_key(&tuple) {
            return false;
        }
        self.mobility.detached += 1;
        let ip = Ipv6Addr::from((0x0100_u128 << 112) | u128::from(self.mobility.detached));
        let detached = FiveTuple {
            client: SocketAddr::new(ip.into(), 0),
            ..tuple
        };
        self.move_allocation(tuple, detached);
        if let Some(alloc) = self.allocations.get_mut(&detached)
            && alloc.expires > now + TCP_GRACE
        {
            alloc.expires = now + TCP_GRACE;
            self.schedule(now + TCP_GRACE, Timer::Allocation(detached));
        }
        true
    }

    /// The allocation of `tuple` is gone: so is its ticket.
    pub(super) fn mobility_forget(&mut self, tuple: FiveTuple) {
        if let Some(mobile) = self.mobility.by_tuple.remove(&tuple) {
            self.mobility.by_handle.remove(&mobile.handle);
            self.mobility.moved.push_back(Moved::Gone(tuple));
        }
    }
}
