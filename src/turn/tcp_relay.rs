//! RFC 6062 TCP relay allocations, the manager's half: what it answers to an Allocate with
//! REQUESTED-TRANSPORT TCP, to Connect and to ConnectionBind. The sockets are the event
//! loop's (`server/tcp_relay.rs`: the relayed listener, the outgoing connects, the table of
//! peer connections waiting for their ConnectionBind; `server/splice.rs`: a bound data
//! connection and its peer). The manager only decides: a Connect or ConnectionBind that
//! passes its checks becomes a [`TcpOrder`] the loop carries out
//! ([`Manager::poll_tcp_order`]), then answers with [`Manager::tcp_answer`], which builds the
//! authenticated response (and installs the peer's permission after a Connect). The types
//! shared with the loop are in [`super::tcp_link`].

use std::net::SocketAddr;
use std::time::Instant;

use stun::attributes::ATTR_CONNECTION_ID;
use stun::message::Message;

use super::FiveTuple;
use super::attrs;
use super::manager::Manager;
use super::pending::Credentials;
use super::tcp_link::{Later, PROTO_TCP, PeerSlot, TcpOrder};
use crate::auth::add_integrity;
use crate::stun::response;

/// CONNECTION-ID's value (RFC 6062 §6.2).
fn connection_id(req: &Message) -> Result<u32, u16> {
    match attrs::value(req, ATTR_CONNECTION_ID) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(400),
    }
}

impl Manager {
    /// A Connect or a ConnectionBind: `Ok` when handed to the loop ([`TcpOrder`]).
    pub(super) fn tcp_request(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
    ) -> Result<(), u16> {
        match req.typ.method {
            stun::message::METHOD_CONNECT => self.tcp_connect(now, tuple, req, creds),
            _ => self.tcp_connection_bind(tuple, req, creds),
        }
    }

    /// RFC 6062 §5.1: what an Allocate asking for TCP may not carry, and where it may not
    /// come from. `Ok(false)` for UDP, `Ok(true)` for TCP, else the refusal.
    pub(super) fn requested_tcp(&self, tuple: FiveTuple, req: &Message) -> Result<bool, u16> {
        use stun::attributes::{ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN};
        match attrs::first_byte(req, stun::attributes::ATTR_REQUESTED_TRANSPORT) {
            None | Some(Err(_)) => Err(400),
            Some(Ok(attrs::PROTO_UDP)) => Ok(false),
            Some(Ok(PROTO_TCP)) if !self.config.tcp_allocations => Err(442),
            Some(Ok(PROTO_TCP)) => {
                let udp = tuple.transport == super::Transport::Udp;
                let forbidden = [ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_RESERVATION_TOKEN];
                if udp || forbidden.iter().any(|&a| req.contains(a)) {
                    return Err(400);
                }
                Ok(true)
            }
            Some(Ok(_)) => Err(442),
        }
    }

    /// A Connect (RFC 6062 §5.2): checked, then handed to the loop as [`TcpOrder::Connect`].
    ///
    /// The peer is judged by `PeerRules::allows_connect`: the plain peer rules, with the
    /// exception for rturn's own relay endpoints narrowed to its TCP relay listeners (a
    /// Connect's connection goes through the kernel to whatever listens at that address:
    /// a UDP relay's port may be any other program's TCP port). The permission it installs on success
    /// counts against `max-permissions-per-allocation` (508 at the cap, unless the peer's
    /// IP is permitted already), as CreatePermission's do.
    fn tcp_connect(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
    ) -> Result<(), u16> {
        let alloc = self.allocations.get(&tuple).ok_or(437u16)?;
        let link = alloc.tcp.as_ref().ok_or(400u16)?;
        let peer = attrs::first_peer(req, &mut self.peers).ok_or(400u16)?;
        let relay = alloc.relay_for(peer.ip()).ok_or(443u16)?;
        self.rules.allows_connect(peer).map_err(|_| 403u16)?;
        let cap = self.config.max_permissions;
        if cap != 0 && !alloc.permits(peer.ip(), now) && alloc.live_permissions(now) >= cap {
            self.metrics.permission_cap += 1;
            return Err(508);
        }
        let slot = link.open(peer, true)?;
        self.tcp_orders.push_back(TcpOrder::Connect {
            tuple,
            relay: relay.addr,
            peer,
            slot,
            later: Later {
                req: req.clone(),
                creds: creds.clone(),
            },
        });
        Ok(())
    }

    /// A ConnectionBind (RFC 6062 §5.4) on a new connection: checked, then handed to the
    /// loop as [`TcpOrder::Bind`]. Only over TCP or TLS, on a connection that holds no
    /// allocation, with a CONNECTION-ID; else 400.
    fn tcp_connection_bind(
        &mut self,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
    ) -> Result<(), u16> {
        if tuple.transport == super::Transport::Udp || self.allocations.contains_key(&tuple) {
            return Err(400);
        }
        let id = connection_id(req)?;
        self.tcp_orders.push_back(TcpOrder::Bind {
            tuple,
            id,
            user: creds.username.clone(),
            later: Later {
                req: req.clone(),
                creds: creds.clone(),
            },
        });
        Ok(())
    }

    /// The next Connect or ConnectionBind for the loop to carry out; call after every
    /// request answered with [`super::Answer::Later`].
    pub fn poll_tcp_order(&mut self) -> Option<TcpOrder> {
        self.tcp_orders.pop_front()
    }

    /// The answer to a request the loop carried out: success (with CONNECTION-ID `id` for a
    /// Connect), or the error `code` (447 for a failed connect, 400 for a ConnectionBind).
    /// A Connect that succeeded also installs or refreshes the permission for its peer's
    /// IP, as coturn does, so the peer's data is the client's to see at `now`.
    pub fn tcp_answer(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        later: &Later,
        result: Result<Option<(u32, SocketAddr)>, u16>,
    ) -> &[u8] {
        let Later { req, creds } = later;
        match result {
            Ok(connected) => {
                self.success(req);
                if let Some((id, peer)) = connected {
                    self.response.add(ATTR_CONNECTION_ID, &id.to_be_bytes());
                    self.permit(tuple, peer.ip(), now + self.config.permission_lifetime);
                }
                add_integrity(&mut self.response, &creds.key, creds.integrity);
                response::finish(&mut self.response, req);
                &self.response.raw
            }
            Err(code) => self.fail(req, code, creds),
        }
    }

    /// A peer at `peer` connected to the relayed listener in `slot` (RFC 6062 §5.3): the
    /// control connection to tell and a place in the allocation, when the allocation is a
    /// live TCP one with a permission for the peer's IP and room for one more connection;
    /// else `None`, and the connection is closed at once.
    pub fn tcp_accept(
        &self,
        now: Instant,
        slot: usize,
        peer: SocketAddr,
    ) -> Option<(FiveTuple, PeerSlot)> {
        let tuple = *self.by_relay.get(&slot)?;
        let alloc = self.allocations.get(&tuple)?;
        let link = alloc.tcp.as_ref()?;
        // The rules again: a reload may have denied the peer since its permission was given.
        if !alloc.permits(peer.ip(), now) || self.rules.allows_permission(peer).is_err() {
            return None;
        }
        Some((tuple, link.open(peer, false).ok()?))
    }

    /// Whether data may still flow to `peer` under the current rules (a reload may have
    /// denied it since its connection opened).
    pub fn tcp_peer_allowed(&self, peer: SocketAddr) -> bool {
        self.rules.allows_addr(peer).is_ok()
    }

    /// How many bytes a bound pair may relay in one direction now (`to_peer`: from the
    /// client): what its allocation's `max-bps` bucket (`bucket`, shared by all its pairs)
    /// and the shard's `bps-capacity` hold. A TCP
    /// pair cannot drop bytes, so it reads about this much (one socket read more at most),
    /// then [`Manager::tcp_charge`]s what it read, and waits when it is 0.
    pub fn tcp_room(
        &mut self,
        now: Instant,
        bucket: &mut super::bandwidth::ByteBucket,
        to_peer: bool,
    ) -> usize {
        let (max_bps, bps_capacity) = (self.config.max_bps, self.config.bps_capacity);
        let capacity = self.capacity_bucket(to_peer).room(now, bps_capacity);
        capacity.min(bucket.room(now, max_bps))
    }

    /// Charges `len` bytes a bound pair relayed to its bucket and the shard's, into debt if
    /// another pair of the allocation, on another worker, read its room at the same time
    /// ([`ByteBucket::spend`](super::bandwidth::ByteBucket::spend)): the long-run rate stays
    /// `max-bps`.
    pub fn tcp_charge(
        &mut self,
        now: Instant,
        bucket: &mut super::bandwidth::ByteBucket,
        to_peer: bool,
        len: usize,
    ) {
        bucket.spend(now, self.config.max_bps, len);
        let capacity = self.config.bps_capacity;
        self.capacity_bucket(to_peer).spend(now, capacity, len);
    }

    fn capacity_bucket(&mut self, to_peer: bool) -> &mut super::bandwidth::ByteBucket {
        match to_peer {
            true => &mut self.capacity.to_peer,
            false => &mut self.capacity.to_client,
        }
    }

    /// Counts a peer connection's `result` (see `TurnMetrics::tcp_connections`).
    pub fn tcp_counted(&mut self, result: &'static str) {
        *self.metrics.tcp_connections.entry(result).or_default() += 1;
    }

    /// Counts bytes a bound pair relayed, into this shard's counters: `to_peer` from the
    /// client, else to it.
    pub fn tcp_relayed(&mut self, to_peer: bool, len: usize) {
        let counter = if to_peer {
            &mut self.metrics.to_peer
        } else {
            &mut self.metrics.to_client
        };
        counter.0 += 1;
        counter.1 += len as u64;
    }
}
