//! The TURN request handlers (RFC 8656 §7–§12). Each returns `Ok(())` with a success response
//! started in `self.response`, or the error code to answer with; authentication, integrity
//! and FINGERPRINT are added by the caller.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use stun::attributes::{
    ATTR_LIFETIME, ATTR_REQUESTED_ADDRESS_FAMILY, ATTR_RESERVATION_TOKEN, ATTR_XOR_RELAYED_ADDRESS,
    ATTR_XORMAPPED_ADDRESS,
};
use stun::message::Message;

use super::allocation::{Allocation, Channel};
use super::attrs::{self, FAMILY_IPV4, FAMILY_IPV6};
use super::manager::{Manager, Timer};
use super::pending::{AllocateRequest, Credentials, PendingAllocate};
use super::quota::{Holder, Reservation};
use super::tcp_link::TcpLink;
use super::{Bound, Event, FiveTuple, PortChoice};
use crate::stun::response;
use crate::turn::FastMap;

/// Channel numbers a client may bind: RFC 8656 §12's 0x4000–0x4FFF plus the 0x5000–0x7FFF
/// that RFC 5766 allowed and its clients still use (see [`crate::stun::PacketKind`]).
const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

impl Manager {
    /// Phase one of an Allocate: answered at once (`Ok(None)`: a retransmission; `Err`: a
    /// refusal), or the relay sockets to bind, with the quota already charged
    /// ([`Manager::finish_allocate`] is phase two).
    pub(super) fn allocate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
    ) -> Result<Option<Vec<(IpAddr, PortChoice)>>, u16> {
        if let Some(alloc) = self.allocations.get(&tuple) {
            if alloc.allocate_transaction != req.transaction_id.0 {
                return Err(437);
            }
            // A retransmitted Allocate: answer it again, changing nothing.
            let relays: Vec<SocketAddr> = alloc.relays.iter().map(|r| r.addr).collect();
            let (missing, token) = (alloc.missing_family, alloc.reservation_token);
            let left = alloc.expires.saturating_duration_since(now);
            self.allocate_success(req, tuple, &relays, missing, token, left);
            return Ok(None);
        }
        if let Some(alternate) = self.draining {
            // fail() adds ALTERNATE-SERVER to the 300.
            return Err(if alternate.is_some() { 300 } else { 508 });
        }
        let ask = self.parse_allocate(tuple, req)?;
        let (binds, holder, units, claimed) = match ask.token {
            Some(token) => {
                // Whichever shard reserved it; the allocation takes over the reservation's
                // quota unit and its holder.
                let reservation = self.quotas.claim(&token).ok_or(508u16)?;
                // The timer, if this shard made it, finds nothing when it fires; drop it now.
                self.unschedule(Timer::Reservation(token));
                let addr = reservation.addr;
                let bind = vec![(addr.ip(), PortChoice::Reserved(addr.port()))];
                (bind, reservation.holder, 1, true)
            }
            None => {
                let holder = Holder {
                    user: self.auth.quota_user(&creds.username).to_owned(),
                    client: crate::client_key::client_key_bits(tuple.client.ip()),
                };
                // A reservation made with it counts like an allocation, until claimed.
                let units = 1 + usize::from(ask.port == PortChoice::EvenReserveNext);
                if let Err(refusal) = self.quotas.acquire(&holder, units) {
                    self.metrics.quota_refused(refusal);
                    return Err(self.redirect(refusal.code()));
                }
                // EVEN-PORT applies to the first (requested) family only.
                let binds = (ask.families.iter().enumerate())
                    .filter_map(|(i, &family)| {
                        let relay = self.config.relay_for_family(family)?;
                        let port = match ask.port {
                            PortChoice::Tcp => PortChoice::Tcp,
                            port if i == 0 => port,
                            _ => PortChoice::Any,
                        };
                        Some((relay.bind, port))
                    })
                    .collect();
                (binds, holder, units, false)
            }
        };
        self.pending = Some(PendingAllocate {
            tuple,
            transaction: req.transaction_id.0,
            creds: creds.clone(),
            ask,
            holder,
            units,
            claimed,
            wanted: binds.len(),
        });
        Ok(Some(binds))
    }

    /// At capacity (508 for the total quota or the port range, not a user's own quota,
    /// 486), a configured alternate takes the client instead (RFC 8656 §7.2, 300).
    fn redirect(&self, code: u16) -> u16 {
        match (code, self.config.alternate_server) {
            (508, Some(_)) => 300,
            _ => code,
        }
    }

    /// Phase two of an Allocate: the sockets asked for are `bound` (all of them, or the
    /// ones bound before one failed). All or nothing: on failure every socket bound or port
    /// reserved for it is given back and the quota units it took are released.
    pub(super) fn finish_allocate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        pending: PendingAllocate,
        bound: &[Bound],
    ) -> Result<(), u16> {
        let PendingAllocate { ask, holder, .. } = &pending;
        let complete = bound.len() == pending.wanted && pending.wanted > 0;
        let twin = (ask.port == PortChoice::EvenReserveNext && !pending.claimed)
            .then(|| bound.first())
            .flatten()
            .map(|first| SocketAddr::new(first.addr.ip(), first.addr.port() + 1));
        if !complete {
            for b in bound {
                self.push_event(Event::Close(*b));
            }
            if let Some(twin) = twin {
                self.push_event(Event::Unreserve(twin));
            }
            self.quotas.release(holder, pending.units);
            return Err(if pending.claimed {
                508
            } else {
                self.redirect(508)
            });
        }
        if pending.units > 1 && twin.is_none() {
            self.quotas.release(holder, pending.units - 1);
        }
        let reserved_token = twin.map(|addr| {
            let token: [u8; 8] = crate::random::os_random();
            let expires = now + self.config.reservation_lifetime;
            let holder = holder.clone();
            (self.quotas).reserve(
                token,
                Reservation {
                    addr,
                    expires,
                    holder,
                },
            );
            self.schedule(expires, Timer::Reservation(token));
            token
        });
        let PendingAllocate {
            creds, ask, holder, ..
        } = pending;
        let lifetime = self.granted_lifetime(ask.lifetime);
        let expires = now + lifetime;
        for relay in bound {
            self.by_relay.insert(relay.slot, tuple);
        }
        let relays: Vec<SocketAddr> = bound.iter().map(|r| r.addr).collect();
        self.allocations.insert(
            tuple,
            Allocation {
                id: crate::random::os_random(),
                created: now,
                to_peer: (0, 0),
                to_client: (0, 0),
                username: creds.username.clone(),
                key: creds.key,
                integrity: creds.integrity,
                relays: bound.to_vec(),
                expires,
                permissions: FastMap::default(),
                channels: FastMap::default(),
                channel_by_peer: FastMap::default(),
                allocate_transaction: req.transaction_id.0,
                missing_family: ask.missing_family,
                reservation_token: reserved_token,
                bandwidth: Default::default(),
                tcp: (ask.port == PortChoice::Tcp)
                    .then(|| std::sync::Arc::new(TcpLink::new(&creds.username, holder.client))),
                holder,
            },
        );
        self.schedule(expires, Timer::Allocation(tuple));
        self.metrics.allocations_created += 1;
        tracing::debug!(client = %tuple.client, user = %creds.username, ?relays, "allocated");
        self.allocate_success(
            req,
            tuple,
            &relays,
            ask.missing_family,
            reserved_token,
            lifetime,
        );
        Ok(())
    }

    /// Checks the Allocate attributes (RFC 8656 §7.2 steps 2–7, RFC 6156 and §7.2.1).
    fn parse_allocate(&self, tuple: FiveTuple, req: &Message) -> Result<AllocateRequest, u16> {
        let tcp = self.requested_tcp(tuple, req)?;
        // DONT-FRAGMENT needs no action: relay sockets keep the kernel's path-MTU discovery,
        // which sets DF on IPv4 and never fragments IPv6.
        let even = attrs::even_port(req).transpose().map_err(|_| 400u16)?;
        let token = attrs::reservation_token(req)
            .transpose()
            .map_err(|_| 400u16)?;
        let requested = attrs::first_byte(req, ATTR_REQUESTED_ADDRESS_FAMILY)
            .transpose()
            .map_err(|_| 400u16)?;
        let additional = attrs::first_byte(req, attrs::ATTR_ADDITIONAL_ADDRESS_FAMILY)
            .transpose()
            .map_err(|_| 400u16)?;
        let lifetime = attrs::lifetime(req).transpose().map_err(|_| 400u16)?;
        if (even.is_some() && token.is_some())
            || (token.is_some() && (requested.is_some() || additional.is_some()))
            || (requested.is_some() && additional.is_some())
        {
            return Err(400);
        }
        let port = match even {
            _ if tcp => PortChoice::Tcp,
            Some(true) => PortChoice::EvenReserveNext,
            Some(false) => PortChoice::Even,
            None => PortChoice::Any,
        };
        let mut families = Vec::with_capacity(2);
        let mut missing_family = None;
        match (requested, additional) {
            (Some(family @ (FAMILY_IPV4 | FAMILY_IPV6)), _) => families.push(family),
            (Some(_), _) => return Err(440),
            (None, Some(FAMILY_IPV6)) => {
                // Dual allocation (RFC 8656 §7.2): IPv4 plus IPv6 if we have it.
                families.push(FAMILY_IPV4);
                if self.config.relay_v6.is_some() {
                    families.push(FAMILY_IPV6);
                } else {
                    missing_family = Some(FAMILY_IPV6);
                }
            }
            (None, Some(_)) => return Err(400),
            (None, None) => families.push(FAMILY_IPV4),
        }
        if token.is_none() && self.config.relay_for_family(families[0]).is_none() {
            return Err(440);
        }
        Ok(AllocateRequest {
            families,
            missing_family,
            port,
            token,
            lifetime,
        })
    }

    fn allocate_success(
        &mut self,
        req: &Message,
        tuple: FiveTuple,
        relays: &[SocketAddr],
        missing_family: Option<u8>,
        token: Option<[u8; 8]>,
        lifetime: Duration,
    ) {
        self.success(req);
        for relay in relays {
            let advertised = self.config.advertised(*relay);
            response::add_xor_address(&mut self.response, ATTR_XOR_RELAYED_ADDRESS, advertised);
        }
        if let Some(family) = missing_family {
            // ADDRESS-ERROR-CODE: family, reserved, class, number (RFC 8656 §18.12).
            self.response
                .add(attrs::ATTR_ADDRESS_ERROR_CODE, &[family, 0, 4, 40]);
        }
        add_lifetime(&mut self.response, lifetime);
        if let Some(token) = token {
            self.response.add(ATTR_RESERVATION_TOKEN, &token);
        }
        response::add_xor_address(&mut self.response, ATTR_XORMAPPED_ADDRESS, tuple.client);
    }

    /// RFC 8656 §7.2, §7.3: min(asked, max), but never below the default.
    fn granted_lifetime(&self, asked: Option<u32>) -> Duration {
        asked
            .map_or(self.config.default_lifetime, |secs| {
                Duration::from_secs(secs.into()).min(self.config.max_lifetime)
            })
            .max(self.config.default_lifetime)
    }

    pub(super) fn refresh(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
    ) -> Result<(), u16> {
        let alloc = self.allocations.get(&tuple).ok_or(437u16)?;
        let family = attrs::first_byte(req, ATTR_REQUESTED_ADDRESS_FAMILY)
            .transpose()
            .map_err(|_| 400u16)?;
        if let Some(family) = family
            && !alloc
                .relays
                .iter()
                .any(|r| attrs::family_of(r.addr.ip()) == family)
        {
            return Err(443);
        }
        let lifetime = match attrs::lifetime(req).transpose().map_err(|_| 400u16)? {
            Some(0) => Duration::ZERO, // RFC 8656 §7.3: zero deletes
            asked => self.granted_lifetime(asked),
        };
        if lifetime.is_zero() {
            self.delete_allocation(tuple);
        } else if let Some(alloc) = self.allocations.get_mut(&tuple) {
            alloc.expires = now + lifetime;
            self.schedule(now + lifetime, Timer::Allocation(tuple));
        }
        self.success(req);
        add_lifetime(&mut self.response, lifetime);
        Ok(())
    }

    pub(super) fn create_permission(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
    ) -> Result<(), u16> {
        let alloc = self.allocations.get(&tuple).ok_or(437u16)?;
        let mut peers = std::mem::take(&mut self.peers);
        let mut capped = false;
        let checked = (|| {
            attrs::peer_addresses(req, &mut peers).map_err(|_| 400u16)?;
            if peers.is_empty() {
                return Err(400);
            }
            // All or nothing: every peer is checked before any permission is installed.
            for peer in &peers {
                alloc.relay_for(peer.ip()).ok_or(443u16)?;
                self.rules.allows_permission(*peer).map_err(|_| 403u16)?;
            }
            let cap = self.config.max_permissions;
            if cap != 0 {
                // Refreshing a live permission (or naming an IP twice) takes no new room.
                let new = (peers.iter().enumerate())
                    .filter(|(i, p)| !peers[..*i].iter().any(|q| q.ip() == p.ip()))
                    .filter(|(_, p)| !alloc.permits(p.ip(), now))
                    .count();
                if alloc.live_permissions(now) + new > cap {
                    // RFC 8656 §9.2: 508 when the server cannot install more.
                    capped = true;
                    return Err(508);
                }
            }
            Ok(())
        })();
        if capped {
            self.metrics.permission_cap += 1;
        }
        if checked.is_ok() {
            let expires = now + self.config.permission_lifetime;
            for peer in &peers {
                self.permit(tuple, peer.ip(), expires);
            }
            self.success(req);
        }
        self.peers = peers;
        checked
    }

    pub(super) fn channel_bind(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
    ) -> Result<(), u16> {
        let alloc = self.allocations.get(&tuple).ok_or(437u16)?;
        if alloc.tcp.is_some() {
            // RFC 6062 §5: a TCP allocation's data goes over data connections, not channels.
            return Err(400);
        }
        let number = match attrs::channel_number(req) {
            Some(Ok(n)) if CHANNELS.contains(&n) => n,
            _ => return Err(400),
        };
        let peer = attrs::first_peer(req, &mut self.peers).ok_or(400u16)?;
        alloc.relay_for(peer.ip()).ok_or(443u16)?;
        self.rules.allows_addr(peer).map_err(|_| 403u16)?;
        // RFC 8656 §12.2: a channel is bound to one peer and a peer to one channel.
        if alloc.channels.get(&number).is_some_and(|c| c.peer != peer)
            || alloc
                .channel_by_peer
                .get(&peer)
                .is_some_and(|&n| n != number)
        {
            return Err(400);
        }
        // RFC 8656 §11.2: a server that cannot bind more answers 508. Rebinding a live
        // channel, or permitting a peer already permitted, takes no new room.
        let (max_channels, max_permissions) =
            (self.config.max_channels, self.config.max_permissions);
        if max_channels != 0
            && alloc.channel(number, now).is_none()
            && alloc.live_channels(now) >= max_channels
        {
            self.metrics.channel_cap += 1;
            return Err(508);
        }
        if max_permissions != 0
            && !alloc.permits(peer.ip(), now)
            && alloc.live_permissions(now) >= max_permissions
        {
            self.metrics.permission_cap += 1;
            return Err(508);
        }
        let expires = now + self.config.channel_lifetime;
        if let Some(alloc) = self.allocations.get_mut(&tuple) {
            alloc.channels.insert(number, Channel { peer, expires });
            alloc.channel_by_peer.insert(peer, number);
        }
        self.schedule(expires, Timer::Channel(tuple, number));
        // Binding a channel also installs or refreshes the permission (RFC 8656 §12.2).
        self.permit(tuple, peer.ip(), now + self.config.permission_lifetime);
        self.success(req);
        Ok(())
    }

    pub(super) fn permit(&mut self, tuple: FiveTuple, ip: IpAddr, expires: Instant) {
        if let Some(alloc) = self.allocations.get_mut(&tuple) {
            alloc.permissions.insert(ip, expires);
            self.schedule(expires, Timer::Permission(tuple, ip));
            // A channel to `ip` may be relayed by the kernel now (a ChannelBind binds its
            // channel before it permits): its entry goes in, once.
            self.offload_peer_ip(tuple, ip);
        }
    }
}

fn add_lifetime(response: &mut Message, lifetime: Duration) {
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    response.add(ATTR_LIFETIME, &secs.to_be_bytes());
}
