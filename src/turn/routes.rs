//! Routing for the data path: where a client's ChannelData or Send indication goes, and
//! which client a peer's datagram is for, with the bandwidth limits counted on the way.
//! Routes name the relay socket by its slot in the event loop's table, so the loop sends
//! without a lookup by address; data for one of rturn's own live relay endpoints is routed
//! to that relay instead ([`ToPeer::Handoff`]), decided here with the same check that
//! allowed it.

use std::net::SocketAddr;
use std::time::Instant;

use stun::message::Message;

use super::Bound;
use super::attrs;
use super::bandwidth;
use super::manager::{Manager, PeerRoute};
use super::{FiveTuple, ToPeer};

impl Manager {
    /// A Send indication (RFC 8656 §11.2): where its DATA goes, or `None` to drop it silently
    /// (indications get no error responses).
    pub fn handle_send<'m>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &'m Message,
    ) -> Option<(ToPeer, &'m [u8])> {
        let alloc = self.allocations.get(&tuple)?;
        if alloc.tcp.is_some() {
            return None; // RFC 6062 §5: a TCP allocation relays over its data connections only
        }
        let peer = attrs::decode_xor_address(
            attrs::value(msg, stun::attributes::ATTR_XOR_PEER_ADDRESS)?,
            &msg.transaction_id.0,
        )?;
        let data = attrs::value(msg, stun::attributes::ATTR_DATA)?;
        if !alloc.permits(peer.ip(), now) || self.rules.allows_addr(peer).is_err() {
            return None;
        }
        let relay = alloc.relay_for(peer.ip())?;
        let to = self.to_peer(relay, peer)?;
        self.admit_to_peer(now, &tuple, data.len())?;
        Some((to, data))
    }

    /// ChannelData from a client (RFC 8656 §12.4): where its payload goes.
    pub fn channel_route(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        channel: u16,
        len: usize,
    ) -> Option<ToPeer> {
        let alloc = self.allocations.get(tuple)?;
        if alloc.tcp.is_some() {
            return None; // it has no channels (ChannelBind is 400): never a UDP relay's data
        }
        let bound = alloc.channel(channel, now)?;
        if !alloc.permits(bound.peer.ip(), now) {
            return None;
        }
        let relay = alloc.relay_for(bound.peer.ip())?;
        let to = self.to_peer(relay, bound.peer)?;
        self.admit_to_peer(now, tuple, len)?;
        Some(to)
    }

    /// Out of the relay socket, or, for one of rturn's own live relay endpoints, handed to
    /// it as from the sending relay's advertised address. A peer at a relay address is
    /// judged again here, in the one check that decides: a channel or permission to one of
    /// our endpoints lives only as long as that endpoint, and a port released since the
    /// permission was given is refused (`None`) rather than sent through the kernel.
    fn to_peer(&self, relay: Bound, peer: SocketAddr) -> Option<ToPeer> {
        if let Some(to) = self.rules.own_relay(peer) {
            let from = self.config.advertised(relay.addr);
            return Some(ToPeer::Handoff { to, from });
        }
        if self.rules.is_relay_ip(peer.ip()) && self.rules.allows_addr(peer).is_err() {
            return None;
        }
        Some(ToPeer::Out {
            slot: relay.slot,
            peer,
        })
    }

    /// A datagram from `peer` arrived on the relay socket in `slot` (RFC 8656 §11.3,
    /// §12.5): the client to deliver it to, or `None` to drop it (no permission).
    pub fn peer_route(
        &mut self,
        now: Instant,
        slot: usize,
        peer: SocketAddr,
        len: usize,
    ) -> Option<PeerRoute> {
        let client = *self.by_relay.get(&slot)?;
        let alloc = self.allocations.get_mut(&client)?;
        // A detached mobile allocation (RFC 8016) has nobody to deliver to until its client
        // comes back with the ticket.
        if !alloc.permits(peer.ip(), now) || client.is_detached() {
            return None;
        }
        let channel = alloc
            .channel_by_peer
            .get(&peer)
            .copied()
            .filter(|&c| alloc.channel(c, now).is_some());
        let rates = (self.config.max_bps, self.config.bps_capacity);
        let (mine, shard) = (&mut alloc.bandwidth.to_client, &mut self.capacity.to_client);
        if let Err(over) = bandwidth::admit(mine, shard, rates, now, len) {
            self.metrics.dropped(over, len);
            return None;
        }
        self.metrics.to_client.0 += 1;
        self.metrics.to_client.1 += len as u64;
        alloc.to_client.0 += 1;
        alloc.to_client.1 += len as u64;
        Some(PeerRoute { client, channel })
    }

    /// Counts `len` bytes from the client of `tuple` to a peer, or `None` when its
    /// `max-bps` or the shard's `bps-capacity` is used up (the packet is dropped, counted).
    fn admit_to_peer(&mut self, now: Instant, tuple: &FiveTuple, len: usize) -> Option<()> {
        let alloc = self.allocations.get_mut(tuple)?;
        let rates = (self.config.max_bps, self.config.bps_capacity);
        let (mine, shard) = (&mut alloc.bandwidth.to_peer, &mut self.capacity.to_peer);
        if let Err(over) = bandwidth::admit(mine, shard, rates, now, len) {
            self.metrics.dropped(over, len);
            return None;
        }
        self.metrics.to_peer.0 += 1;
        self.metrics.to_peer.1 += len as u64;
        alloc.to_peer.0 += 1;
        alloc.to_peer.1 += len as u64;
        Some(())
    }
}
