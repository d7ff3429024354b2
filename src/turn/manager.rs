//! The allocation manager: authentication, dispatch, data-path routing and expiry.
//! The method handlers themselves are in `methods.rs`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message, Setter,
};
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;

use super::allocation::Allocation;
use super::attrs::{self, KNOWN_TURN_ATTRIBUTES};
use super::bandwidth::{self, Bandwidth};
use super::metrics::TurnMetrics;
use super::peer_rules::PeerRules;
use super::quota::Quotas;
use super::{FiveTuple, RelayBinder, TurnConfig};
use crate::auth::{Auth, Integrity, Key, NonceCheck, add_integrity, verify_integrity};
use crate::stun::codec::unknown_required;
use crate::stun::response;
use crate::turn::FastMap;

/// Something with an expiry in the timer heap. Entries are never removed early: when one
/// comes due, the state it names is checked and left alone if it was refreshed meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Timer {
    Allocation(FiveTuple),
    Permission(FiveTuple, IpAddr),
    Channel(FiveTuple, u16),
    Reservation([u8; 8]),
}

/// Who a request authenticated as.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    pub(super) username: String,
    pub(super) key: Key,
    pub(super) integrity: Integrity,
}

/// Where a packet from a peer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRoute {
    /// The client that owns the relay.
    pub client: FiveTuple,
    /// The channel bound to the peer, if any (else a Data indication is sent).
    pub channel: Option<u16>,
}

/// One allocation as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Session {
    /// ID for `DELETE /admin/sessions/<id>`.
    pub id: String,
    /// The user it authenticated as.
    pub user: String,
    /// The client transport.
    pub transport: super::Transport,
    /// The client's address.
    pub client: SocketAddr,
    /// Relayed addresses (as bound).
    pub relays: Vec<SocketAddr>,
    /// Seconds since it was created.
    pub age_secs: u64,
    /// Packets and bytes client → peers.
    pub to_peer: (u64, u64),
    /// Packets and bytes peers → client.
    pub to_client: (u64, u64),
    /// Peer IPs with a permission.
    pub permissions: Vec<IpAddr>,
    /// Channels bound.
    pub channels: usize,
}

/// All allocations of one shard, and the reservations every shard shares (in [`Quotas`]).
/// See the module docs of [`crate::turn`].
pub struct Manager<B> {
    pub(super) config: TurnConfig,
    pub(super) auth: Arc<Auth>,
    pub(super) rules: Arc<PeerRules>,
    pub(super) quotas: Arc<Quotas>,
    pub(super) binder: B,
    pub(super) allocations: FastMap<FiveTuple, Allocation>,
    pub(super) by_relay: FastMap<SocketAddr, FiveTuple>,
    /// Every pending expiry, soonest first; exactly one entry per live timer.
    pub(super) timers: BTreeSet<(Instant, Timer)>,
    /// The deadline of the one live heap entry of each timer.
    queued: FastMap<Timer, Instant>,
    pub(super) response: Message,
    pub(super) peers: Vec<SocketAddr>,
    /// Maps the monotonic clock to unix seconds, for nonces and REST usernames.
    clock_base: (Instant, u64),
    /// Set while draining: new Allocates are refused (300 to this server, or 508).
    pub(super) draining: Option<Option<SocketAddr>>,
    /// What happened, for `/metrics`.
    pub(super) metrics: TurnMetrics,
    /// Whether the last answer of [`Manager::handle_request`] went to an authenticated
    /// request (else it was a 401, 438, 400 or 420 anyone could have asked for).
    authenticated: bool,
    /// This shard's share of `bps-capacity`.
    capacity: Bandwidth,
}

impl<B: RelayBinder> Manager<B> {
    /// A manager with no allocations. `now` and `unix_now` are the same moment on the
    /// monotonic clock and in unix seconds.
    pub fn new(
        config: TurnConfig,
        auth: Arc<Auth>,
        rules: Arc<PeerRules>,
        quotas: Arc<Quotas>,
        binder: B,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        Self {
            config,
            auth,
            rules,
            quotas,
            binder,
            allocations: FastMap::default(),
            by_relay: FastMap::default(),
            timers: BTreeSet::new(),
            queued: FastMap::default(),
            response: Message::new(),
            peers: Vec::new(),
            clock_base: (now, unix_now),
            draining: None,
            metrics: TurnMetrics::default(),
            authenticated: false,
            capacity: Bandwidth::default(),
        }
    }

    /// This shard's counters.
    pub fn metrics(&self) -> &TurnMetrics {
        &self.metrics
    }

    /// Live allocations by client transport: UDP, TCP, TLS.
    pub fn allocations_by_transport(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for tuple in self.allocations.keys() {
            counts[tuple.transport as usize] += 1;
        }
        counts
    }

    /// New credentials, peer rules and lifetimes from a config reload. Relay addresses stay
    /// (changing them needs a restart); allocations live on, and so do their permissions and
    /// channels unless the new rules refuse their peer.
    pub fn reload(&mut self, config: TurnConfig, auth: Arc<Auth>, rules: Arc<PeerRules>) {
        self.config = TurnConfig {
            relay_v4: self.config.relay_v4,
            relay_v6: self.config.relay_v6,
            ..config
        };
        self.auth = auth;
        self.rules = rules;
        self.revoke_refused_peers();
    }

    /// Ends every permission and channel whose peer the current rules refuse, so tightening
    /// `denied-peer-ip` (or turning `allow-loopback-peers` off) cuts relaying to those peers
    /// at the reload, not when the client stops refreshing them. ChannelData is forwarded by
    /// table lookup without a rules check per packet; this keeps that table honest.
    fn revoke_refused_peers(&mut self) {
        let mut gone = Vec::new();
        let rules = &self.rules;
        for (tuple, alloc) in &mut self.allocations {
            alloc.permissions.retain(|ip, _| {
                let allowed = rules.allows_ip(*ip).is_ok();
                if !allowed {
                    gone.push(Timer::Permission(*tuple, *ip));
                }
                allowed
            });
            let by_peer = &mut alloc.channel_by_peer;
            alloc.channels.retain(|number, channel| {
                let allowed = rules.allows_addr(channel.peer).is_ok();
                if !allowed {
                    by_peer.remove(&channel.peer);
                    gone.push(Timer::Channel(*tuple, *number));
                }
                allowed
            });
        }
        for timer in gone {
            self.unschedule(timer);
        }
    }

    /// Refuse new allocations from now on: RFC 8656 §7.2's 300 (Try Alternate) with
    /// ALTERNATE-SERVER when `alternate` is given, else 508. Existing ones live on.
    pub fn drain(&mut self, alternate: Option<SocketAddr>) {
        self.draining = Some(alternate);
    }

    /// The relay binder, for the I/O layer to collect the sockets it bound.
    pub fn binder_mut(&mut self) -> &mut B {
        &mut self.binder
    }

    /// The relay binder, to find the socket of a relay address.
    pub fn binder(&self) -> &B {
        &self.binder
    }

    /// Whether `tuple` holds an allocation.
    pub fn has_allocation(&self, tuple: &FiveTuple) -> bool {
        self.allocations.contains_key(tuple)
    }

    /// Allocations held by this shard.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    pub(super) fn unix(&self, now: Instant) -> u64 {
        self.clock_base.1 + now.saturating_duration_since(self.clock_base.0).as_secs()
    }

    /// Answers a TURN request (Allocate, Refresh, CreatePermission, ChannelBind) that the
    /// caller decoded; returns the response to send back on the same 5-tuple.
    pub fn handle_request(&mut self, now: Instant, tuple: FiveTuple, req: &Message) -> &[u8] {
        self.authenticated = false;
        let mut unknown = UnknownAttributes(Vec::new());
        unknown_required(req, KNOWN_TURN_ATTRIBUTES, &mut unknown.0);
        if !unknown.0.is_empty() {
            self.metrics.refuse(420);
            self.error(req, 420);
            let _ = unknown.add_to(&mut self.response);
            response::finish(&mut self.response, req);
            return &self.response.raw;
        }
        let creds = match self.authenticate(now, tuple, req) {
            Ok(creds) => creds,
            Err(()) => return &self.response.raw,
        };
        self.authenticated = true;
        if let Some(alloc) = self.allocations.get(&tuple)
            && alloc.username != creds.username
        {
            // RFC 8656 §5: the credentials must be those that created the allocation.
            return self.fail(req, 441, &creds);
        }
        let result = match req.typ.method {
            METHOD_ALLOCATE => self.allocate(now, tuple, req, &creds),
            METHOD_REFRESH => self.refresh(now, tuple, req),
            METHOD_CREATE_PERMISSION => self.create_permission(now, tuple, req),
            METHOD_CHANNEL_BIND => self.channel_bind(now, tuple, req),
            _ => Err(400),
        };
        match result {
            Ok(()) => {
                add_integrity(&mut self.response, &creds.key, creds.integrity);
                response::finish(&mut self.response, req);
                &self.response.raw
            }
            Err(code) => {
                tracing::debug!(client = %tuple.client, method = %req.typ.method, code, "request refused");
                self.fail(req, code, &creds)
            }
        }
    }

    /// Whether the last answer of [`Manager::handle_request`] was to a request with valid
    /// credentials; else it was an unauthenticated answer (401, 438, 400 or 420), which the
    /// server rate-limits per source.
    pub fn answered_authenticated(&self) -> bool {
        self.authenticated
    }

    /// RFC 8489 §9.2.4, in its order. On failure the error response is already built.
    fn authenticate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
    ) -> Result<Credentials, ()> {
        let unix = self.unix(now);
        let has_integrity = req.contains(stun::attributes::ATTR_MESSAGE_INTEGRITY)
            || req.contains(stun::attributes::ATTR_MESSAGE_INTEGRITY_SHA256);
        if !has_integrity {
            self.metrics.challenges += 1;
            self.challenge(now, tuple, req, 401);
            return Err(());
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            attrs::value(req, ATTR_USERNAME),
            attrs::value(req, ATTR_REALM),
            attrs::value(req, ATTR_NONCE),
        ) else {
            self.metrics.auth_failed("bad_request");
            self.error(req, 400);
            response::finish(&mut self.response, req);
            return Err(());
        };
        if self.auth.check_nonce(nonce, unix, tuple.client) != NonceCheck::Valid {
            self.metrics.auth_failed("stale_nonce");
            self.challenge(now, tuple, req, 438);
            return Err(());
        }
        let username = match std::str::from_utf8(username) {
            Ok(u) if realm == self.auth.realm().as_bytes() => u,
            _ => {
                self.metrics.auth_failed("wrong_realm");
                self.challenge(now, tuple, req, 401);
                return Err(());
            }
        };
        let keys = match self.auth.keys_for(username, unix) {
            Ok(keys) => keys,
            Err(e) => {
                self.metrics.auth_failed(match e {
                    crate::auth::AuthError::Expired => "expired",
                    _ => "unknown_user",
                });
                self.challenge(now, tuple, req, 401);
                return Err(());
            }
        };
        for key in keys {
            if let Ok(integrity) = verify_integrity(req, &key) {
                return Ok(Credentials {
                    username: username.to_owned(),
                    key,
                    integrity,
                });
            }
        }
        self.metrics.auth_failed("bad_integrity");
        self.challenge(now, tuple, req, 401);
        Err(())
    }

    /// 401 or 438 with REALM and a fresh NONCE, and no MESSAGE-INTEGRITY.
    fn challenge(&mut self, now: Instant, tuple: FiveTuple, req: &Message, code: u16) {
        let nonce = self.auth.make_nonce(self.unix(now), tuple.client);
        let realm = self.auth.realm().to_owned();
        self.error(req, code);
        let _ = TextAttribute::new(ATTR_REALM, realm).add_to(&mut self.response);
        let _ = TextAttribute::new(ATTR_NONCE, nonce).add_to(&mut self.response);
        response::finish(&mut self.response, req);
    }

    /// Starts an error response; the caller finishes it.
    pub(super) fn error(&mut self, req: &Message, code: u16) {
        response::begin(&mut self.response, req, CLASS_ERROR_RESPONSE);
        response::add_error_code(&mut self.response, code);
    }

    /// An authenticated error response: ERROR-CODE, MESSAGE-INTEGRITY, FINGERPRINT.
    fn fail(&mut self, req: &Message, code: u16, creds: &Credentials) -> &[u8] {
        self.metrics.refuse(code);
        self.error(req, code);
        // Draining names the alternate it was given; otherwise 300 means at capacity.
        let alternate = self.draining.unwrap_or(self.config.alternate_server);
        if let (300, Some(alternate)) = (code, alternate) {
            add_alternate_server(&mut self.response, alternate);
        }
        add_integrity(&mut self.response, &creds.key, creds.integrity);
        response::finish(&mut self.response, req);
        &self.response.raw
    }

    /// Starts a success response; the handler adds its attributes.
    pub(super) fn success(&mut self, req: &Message) {
        response::begin(&mut self.response, req, CLASS_SUCCESS_RESPONSE);
    }

    /// A Send indication (RFC 8656 §11.2): where its DATA goes, or `None` to drop it silently
    /// (indications get no error responses).
    pub fn handle_send<'m>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &'m Message,
    ) -> Option<(SocketAddr, SocketAddr, &'m [u8])> {
        let alloc = self.allocations.get(&tuple)?;
        let peer = attrs::decode_xor_address(
            attrs::value(msg, stun::attributes::ATTR_XOR_PEER_ADDRESS)?,
            &msg.transaction_id.0,
        )?;
        let data = attrs::value(msg, stun::attributes::ATTR_DATA)?;
        if !alloc.permits(peer.ip(), now) || self.rules.allows_addr(peer).is_err() {
            return None;
        }
        let relay = alloc.relay_for(peer.ip())?;
        self.admit_to_peer(now, &tuple, data.len())?;
        Some((relay, peer, data))
    }

    /// ChannelData from a client (RFC 8656 §12.4): the relay to send from and the peer.
    pub fn channel_route(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        channel: u16,
        len: usize,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let alloc = self.allocations.get(tuple)?;
        let bound = alloc.channel(channel, now)?;
        if !alloc.permits(bound.peer.ip(), now) {
            return None;
        }
        let relay = alloc.relay_for(bound.peer.ip())?;
        self.admit_to_peer(now, tuple, len)?;
        Some((relay, bound.peer))
    }

    /// A datagram from `peer` arrived on relay address `relay` (RFC 8656 §11.3, §12.5): the
    /// client to deliver it to, or `None` to drop it (no permission).
    pub fn peer_route(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        len: usize,
    ) -> Option<PeerRoute> {
        let client = *self.by_relay.get(&relay)?;
        let alloc = self.allocations.get_mut(&client)?;
        if !alloc.permits(peer.ip(), now) {
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

    /// Every allocation, for the admin API.
    pub fn sessions(&self, now: Instant) -> Vec<Session> {
        (self.allocations.iter())
            .map(|(tuple, a)| Session {
                id: format!("{:016x}", a.id),
                user: a.username.clone(),
                transport: tuple.transport,
                client: tuple.client,
                relays: a.relays.clone(),
                age_secs: now.saturating_duration_since(a.created).as_secs(),
                to_peer: a.to_peer,
                to_client: a.to_client,
                permissions: a.permissions.keys().copied().collect(),
                channels: a.channels.len(),
            })
            .collect()
    }

    /// Deletes the allocations whose admin ID is `id` or whose user is `user`; returns how
    /// many went. A TCP client's connection stays open but has no allocation any more.
    pub fn kick(&mut self, id: Option<&str>, user: Option<&str>) -> usize {
        let doomed: Vec<FiveTuple> = (self.allocations.iter())
            .filter(|(_, a)| {
                id.is_some_and(|id| format!("{:016x}", a.id) == id)
                    || user.is_some_and(|u| a.username == u)
            })
            .map(|(t, _)| *t)
            .collect();
        for tuple in &doomed {
            tracing::info!(client = %tuple.client, "allocation deleted by an operator");
            self.delete_allocation(*tuple);
        }
        doomed.len()
    }

    /// Whether new allocations are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// The client's TCP connection closed: its allocation goes with it (RFC 8656 §3.1).
    pub fn close(&mut self, tuple: FiveTuple) {
        self.delete_allocation(tuple);
    }

    /// Deletes every allocation and reservation (shutdown).
    pub fn clear(&mut self) {
        let tuples: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        for tuple in tuples {
            self.delete_allocation(tuple);
        }
        // Reservations are shared: the first shard to clear ends them all.
        for r in self.quotas.clear_reservations() {
            self.binder.release(r.addr);
        }
    }

    /// When [`Manager::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Expires everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(due, timer)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            self.queued.remove(&timer);
            self.expire(timer, now);
        }
    }

    /// A timer came due: remove what expired, or queue the timer again at the later expiry
    /// a refresh gave it.
    fn expire(&mut self, timer: Timer, now: Instant) {
        let still = match timer {
            Timer::Allocation(tuple) => match self.allocations.get(&tuple).map(|a| a.expires) {
                Some(at) if at <= now => {
                    self.delete_allocation(tuple);
                    // Counted as expired, not deleted.
                    self.metrics.allocations_deleted -= 1;
                    self.metrics.allocations_expired += 1;
                    None
                }
                later => later,
            },
            Timer::Permission(tuple, ip) => {
                let alloc = self.allocations.get_mut(&tuple);
                match alloc.as_ref().and_then(|a| a.permissions.get(&ip).copied()) {
                    Some(at) if at <= now => {
                        alloc.map(|a| a.permissions.remove(&ip));
                        None
                    }
                    later => later,
                }
            }
            Timer::Channel(tuple, number) => {
                let alloc = self.allocations.get_mut(&tuple);
                match alloc.and_then(|a| a.channels.get(&number).copied().map(|c| (a, c))) {
                    Some((alloc, channel)) if channel.expires <= now => {
                        alloc.channels.remove(&number);
                        alloc.channel_by_peer.remove(&channel.peer);
                        None
                    }
                    later => later.map(|(_, c)| c.expires),
                }
            }
            Timer::Reservation(token) => match self.quotas.expire(&token, now) {
                Some(r) => {
                    self.binder.release(r.addr);
                    None
                }
                // Claimed meanwhile, maybe on another shard (reservations are shared, their
                // timers are not): nothing left. Or not due yet: look again then.
                None => self.quotas.reservation_expiry(&token),
            },
        };
        if let Some(at) = still {
            self.schedule(at, timer);
        }
    }

    /// Makes sure `timer` fires no later than `at`. A refresh that moves an expiry later
    /// changes nothing here: the entry already queued fires first and re-queues itself at
    /// the new expiry (see [`Manager::expire`]). So there is one entry per live thing,
    /// however often clients refresh, and none for things that are gone ([`Manager::unschedule`]).
    pub(super) fn schedule(&mut self, at: Instant, timer: Timer) {
        match self.queued.get(&timer) {
            Some(&queued) if queued <= at => {}
            Some(&queued) => {
                self.timers.remove(&(queued, timer));
                self.queued.insert(timer, at);
                self.timers.insert((at, timer));
            }
            None => {
                self.queued.insert(timer, at);
                self.timers.insert((at, timer));
            }
        }
    }

    /// Forgets `timer`: what it would expire is already gone.
    pub(super) fn unschedule(&mut self, timer: Timer) {
        if let Some(queued) = self.queued.remove(&timer) {
            self.timers.remove(&(queued, timer));
        }
    }

    pub(super) fn delete_allocation(&mut self, tuple: FiveTuple) {
        if let Some(alloc) = self.allocations.remove(&tuple) {
            // Its timers go with it, so a client that allocates and deletes in a loop cannot
            // grow the timer set.
            self.unschedule(Timer::Allocation(tuple));
            for ip in alloc.permissions.keys() {
                self.unschedule(Timer::Permission(tuple, *ip));
            }
            for number in alloc.channels.keys() {
                self.unschedule(Timer::Channel(tuple, *number));
            }
            self.metrics.allocations_deleted += 1;
            tracing::debug!(client = %tuple.client, user = %alloc.username, "allocation deleted");
            for relay in &alloc.relays {
                self.by_relay.remove(relay);
                self.binder.release(*relay);
            }
            self.quotas.release(&alloc.holder, 1);
        }
    }
}

/// ALTERNATE-SERVER (RFC 8489 §14.15): a plain MAPPED-ADDRESS-style address, not XORed.
fn add_alternate_server(response: &mut Message, addr: SocketAddr) {
    let mut value = Vec::with_capacity(20);
    value.push(0);
    value.push(attrs::family_of(addr.ip()));
    value.extend_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => value.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => value.extend_from_slice(&ip.octets()),
    }
    response.add(stun::attributes::ATTR_ALTERNATE_SERVER, &value);
}
