//! The manager keeping the kernel's channel table in step (#18): which of its channels the
//! kernel may relay, decided again whenever something a channel depends on changes, and
//! what the kernel relayed, added to the counters. The books are [`OffloadTable`]; the
//! types and the maps' trait are in [`super::offload`].
//!
//! A channel is offloaded while all of these hold, and its entry leaves the kernel the
//! moment one stops holding (the channel or its permission expires, the allocation is
//! deleted, expires or is kicked, a reload refuses the peer, revokes the credentials or sets
//! a bandwidth limit):
//! - the offload is on for this shard (its worker has the kernel's maps);
//! - the client is on UDP and the client, listen, relay and peer addresses are of one family
//!   (a wildcard listen address is entered as it is; the kernel learns from the client's
//!   ChannelData which local address it sends to);
//! - neither `max-bps` nor `bps-capacity` is set (they are policed in user space);
//! - a permission covers the channel's peer;
//! - the peer is allowed by the current rules (by its address class, not only as one of
//!   rturn's own live relays) and is not one of rturn's own live relay endpoints
//!   (data for those is handed over inside the process, [`super::ToPeer::Handoff`]);
//! - the allocation's credentials still verify (a reload that removes the user, changes its
//!   password or drops the secret its REST username was made with bars it from the kernel;
//!   user space keeps relaying for it until it ends, as it always did).

use std::net::IpAddr;

use super::allocation::Allocation;
use super::manager::Manager;
use super::metrics::TurnMetrics;
use super::offload::{ChannelEntry, OFFLOAD_CHANNELS, OffloadCounts, OffloadMaps, Offloaded};
use super::offload_table::{OffloadTable, tuple_of};
use super::{Event, FiveTuple, Transport};

impl Manager {
    /// Turns the kernel fast path on (the worker has the kernel's maps) or off for this
    /// shard: every channel that may be offloaded gets its entry, or every entry goes.
    pub fn set_offload(&mut self, on: bool) {
        self.offload.set_on(on);
        self.offload_all();
    }

    /// This shard's offloaded channels.
    pub fn offload(&self) -> &OffloadTable {
        &self.offload
    }

    /// The entry channel `number` of `tuple` should have in the kernel now, if any.
    fn offload_want(&self, tuple: &FiveTuple, number: u16) -> Option<ChannelEntry> {
        let config = &self.config;
        if !self.offload.is_on()
            || tuple.transport != Transport::Udp
            || tuple.is_detached()
            || config.max_bps != 0
            || config.bps_capacity != 0
            || !OFFLOAD_CHANNELS.contains(&number)
            || self.offload.is_barred(tuple)
        {
            return None;
        }
        let alloc = self.allocations.get(tuple)?;
        let peer = alloc.channels.get(&number)?.peer;
        // Present is live: expired permissions and channels are removed by their timers,
        // which call back here.
        alloc.permissions.get(&peer.ip())?;
        let relay = alloc.relay_for(peer.ip())?.addr;
        let v4 = peer.is_ipv4();
        if tuple.client.is_ipv4() != v4 || tuple.server.is_ipv4() != v4 {
            return None;
        }
        // rturn's own live relays are handed over in process, and a relay-ip peer allowed
        // only as one stays in user space, whose per-packet check refuses its port once it
        // is released; a peer its address class allows is relayed by the kernel.
        let rules = &self.rules;
        let own = rules.own_relay(peer).is_some();
        let by_exception = rules.is_relay_ip(peer.ip()) && rules.allows_ip(peer.ip()).is_err();
        if own || by_exception || rules.allows_addr(peer).is_err() {
            return None;
        }
        Some(ChannelEntry {
            client: tuple.client,
            listen: tuple.server,
            channel: number,
            relay,
            peer,
        })
    }

    /// Decides channel `number` of `tuple` again: its entry goes in, stays, or comes out.
    pub(super) fn offload_channel(&mut self, tuple: FiveTuple, number: u16) {
        if !self.offload.is_on() && self.offload.is_empty() {
            return;
        }
        let want = self.offload_want(&tuple, number);
        let (out, put) = self.offload.set(tuple, number, want);
        // Out before in: the kernel never holds two entries for one key.
        if let Some(out) = out {
            self.push_event(Event::OffloadRemove(out));
        }
        if let Some(put) = put {
            self.push_event(Event::OffloadInsert(put));
        }
    }

    /// Decides again every channel of `tuple` to a peer at `ip` (its permission changed).
    pub(super) fn offload_peer_ip(&mut self, tuple: FiveTuple, ip: IpAddr) {
        if !self.offload.is_on() && self.offload.is_empty() {
            return;
        }
        let Some(alloc) = self.allocations.get(&tuple) else {
            return;
        };
        let numbers: Vec<u16> = (alloc.channels.iter())
            .filter(|(_, c)| c.peer.ip() == ip)
            .map(|(n, _)| *n)
            .collect();
        for number in numbers {
            self.offload_channel(tuple, number);
        }
    }

    /// Decides every channel again (the offload was turned on or off, or a reload changed
    /// the rules, the credentials or the bandwidth limits).
    pub(super) fn offload_all(&mut self) {
        if !self.offload.is_on() && self.offload.is_empty() {
            return;
        }
        let mut keys = self.offload.keys();
        for (tuple, alloc) in &self.allocations {
            keys.extend(alloc.channels.keys().map(|n| (*tuple, *n)));
        }
        keys.sort_unstable();
        keys.dedup();
        for (tuple, number) in keys {
            self.offload_channel(tuple, number);
        }
    }

    /// The allocation `tuple` is gone (already out of the table): every entry of its
    /// channels comes out. Called before its relay sockets are closed, so the kernel never
    /// holds an entry for a port another allocation may bind next.
    pub(super) fn offload_deleted(&mut self, tuple: FiveTuple, alloc: &Allocation) {
        self.offload.unbar(&tuple);
        for number in alloc.channels.keys() {
            self.offload_channel(tuple, *number);
        }
    }

    /// After a reload: allocations whose credentials no longer verify are kept out of the
    /// kernel (and let back in if a later reload restores them). REST usernames are judged
    /// without their expiry: a credential that expires does not end an allocation.
    pub(super) fn offload_recheck_credentials(&mut self) {
        if !self.offload.is_on() {
            return;
        }
        let revoked: Vec<(FiveTuple, bool)> = (self.allocations.iter())
            .map(|(tuple, a)| {
                let keys = self.auth.keys_for(&a.username, 0);
                (*tuple, !keys.is_ok_and(|keys| keys.contains(&a.key)))
            })
            .collect();
        for (tuple, revoked) in revoked {
            if revoked {
                self.offload.bar(tuple);
            } else {
                self.offload.unbar(&tuple);
            }
        }
    }

    /// Carries out an offload event ([`Event::OffloadInsert`], [`Event::OffloadRemove`]) on
    /// the kernel's maps; other events are not the maps' business. A removal reads the
    /// entry's counts one last time and adds what is new to the counters; returns that
    /// (zero for an insert). An insert the kernel refuses leaves the channel in user space
    /// (the error says why); the next refresh of the channel asks again.
    pub fn offload_apply(
        &mut self,
        maps: &mut dyn OffloadMaps,
        event: &Event,
    ) -> std::io::Result<OffloadCounts> {
        match event {
            Event::OffloadInsert(entry) => {
                if let Err(e) = maps.insert(entry) {
                    self.offload.forget(entry);
                    return Err(e);
                }
                Ok(OffloadCounts::default())
            }
            Event::OffloadRemove(gone) => {
                let last = maps.counts(&gone.entry);
                maps.remove(&gone.entry);
                Ok(self.offload_removed(gone, last))
            }
            Event::Close(_) | Event::Unreserve(_) => Ok(OffloadCounts::default()),
        }
    }

    /// An entry left the kernel after counting `last` in all: what it counted since the
    /// last reading goes to its allocation (if still there) and the shard's counters.
    pub fn offload_removed(
        &mut self,
        gone: &Offloaded,
        last: Option<OffloadCounts>,
    ) -> OffloadCounts {
        let new = last.map(|c| c.since(&gone.seen)).unwrap_or_default();
        let alloc = self.allocations.get_mut(&tuple_of(&gone.entry));
        credit(alloc, &mut self.metrics, &new);
        new
    }

    /// Reads what the kernel relayed for every entry of this shard and adds what is new to
    /// the allocations' and the shard's counters; returns that. Call after the events are
    /// carried out (so no entry on its way out is read twice).
    pub fn handle_offload_counts(&mut self, maps: &dyn OffloadMaps) -> OffloadCounts {
        let mut total = OffloadCounts::default();
        let (allocations, metrics) = (&mut self.allocations, &mut self.metrics);
        self.offload.read(
            |entry| maps.counts(entry),
            |tuple, new| {
                credit(allocations.get_mut(&tuple), metrics, new);
                total.add(new);
            },
        );
        total
    }
}

/// Adds what the kernel relayed to an allocation's counters and the shard's: the same ones
/// user space counts into, and the offload's own.
fn credit(alloc: Option<&mut Allocation>, metrics: &mut TurnMetrics, new: &OffloadCounts) {
    let to_peer = (new.to_peer_packets, new.to_peer_bytes);
    let to_client = (new.to_client_packets, new.to_client_bytes);
    if let Some(alloc) = alloc {
        add(&mut alloc.to_peer, to_peer);
        add(&mut alloc.to_client, to_client);
    }
    add(&mut metrics.to_peer, to_peer);
    add(&mut metrics.to_client, to_client);
    add(&mut metrics.offloaded_to_peer, to_peer);
    add(&mut metrics.offloaded_to_client, to_client);
}

fn add(counter: &mut (u64, u64), (packets, bytes): (u64, u64)) {
    counter.0 += packets;
    counter.1 += bytes;
}
