//! The allocation manager: authentication, dispatch, data-path routing and expiry.
//! The method handlers themselves are in `methods.rs`.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CONNECT, METHOD_CONNECTION_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message,
    Setter,
};
use stun::uattrs::UnknownAttributes;

use super::allocation::Allocation;
use super::attrs::{self, KNOWN_TURN_ATTRIBUTES};
use super::bandwidth::Bandwidth;
use super::metrics::TurnMetrics;
use super::mobile_table::Mobility;
use super::offload_table::OffloadTable;
use super::peer_rules::PeerRules;
use super::pending::{Credentials, PendingAllocate};
use super::quota::Quotas;
use super::tcp_link::TcpOrder;
use super::ticket::ATTR_MOBILITY_TICKET;
use super::{Answer, Event, FiveTuple, TurnConfig};
use crate::auth::{Auth, add_integrity};
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

/// Where a packet from a peer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRoute {
    /// The client that owns the relay.
    pub client: FiveTuple,
    /// The channel bound to the peer, if any (else a Data indication is sent).
    pub channel: Option<u16>,
}

/// All allocations of one shard, and the reservations every shard shares (in [`Quotas`]).
/// See the module docs of [`crate::turn`].
pub struct Manager {
    pub(super) config: TurnConfig,
    pub(super) auth: Arc<Auth>,
    pub(super) rules: Arc<PeerRules>,
    pub(super) quotas: Arc<Quotas>,
    pub(super) allocations: FastMap<FiveTuple, Allocation>,
    /// The allocation of each relay slot.
    pub(super) by_relay: FastMap<usize, FiveTuple>,
    /// What the event loop has to do: sockets to close, reservations to give up.
    events: VecDeque<Event>,
    /// The Allocate waiting for its relay sockets ([`Answer::Bind`]).
    pub(super) pending: Option<PendingAllocate>,
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
    pub(super) capacity: Bandwidth,
    /// The channels the kernel relays for this shard (#18); off unless its worker has the
    /// kernel's maps.
    pub(super) offload: OffloadTable,
    /// Its mobile allocations' tickets (RFC 8016).
    pub(super) mobility: Mobility,
    /// RFC 6062 Connects and ConnectionBinds for the loop to carry out (`tcp_relay.rs`).
    pub(super) tcp_orders: VecDeque<TcpOrder>,
}

impl Manager {
    /// A manager with no allocations. `now` and `unix_now` are the same moment on the
    /// monotonic clock and in unix seconds.
    pub fn new(
        config: TurnConfig,
        auth: Arc<Auth>,
        rules: Arc<PeerRules>,
        quotas: Arc<Quotas>,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        Self {
            config,
            auth,
            rules,
            quotas,
            allocations: FastMap::default(),
            by_relay: FastMap::default(),
            events: VecDeque::new(),
            pending: None,
            timers: BTreeSet::new(),
            queued: FastMap::default(),
            response: Message::new(),
            peers: Vec::new(),
            clock_base: (now, unix_now),
            draining: None,
            metrics: TurnMetrics::default(),
            authenticated: false,
            capacity: Bandwidth::default(),
            offload: OffloadTable::default(),
            mobility: Mobility::default(),
            tcp_orders: VecDeque::new(),
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
    /// channels unless the new rules refuse their peer. Every offloaded channel is decided
    /// again: the kernel keeps none the new rules, credentials or bandwidth limits refuse.
    pub fn reload(&mut self, config: TurnConfig, auth: Arc<Auth>, rules: Arc<PeerRules>) {
        self.config = TurnConfig {
            relay_v4: self.config.relay_v4,
            relay_v6: self.config.relay_v6,
            ..config
        };
        self.auth = auth;
        self.rules = rules;
        self.revoke_refused_peers();
        self.offload_recheck_credentials();
        self.offload_all();
    }

    /// New credentials, the rest of the settings unchanged (see [`Manager::reload`]).
    pub fn set_auth(&mut self, auth: Arc<Auth>) {
        self.reload(self.config.clone(), auth, Arc::clone(&self.rules));
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
                // A relay address stays: its live endpoints are checked per packet.
                let allowed = rules.allows_ip(*ip).is_ok() || rules.is_relay_ip(*ip);
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
            match timer {
                Timer::Permission(tuple, ip) => self.offload_peer_ip(tuple, ip),
                Timer::Channel(tuple, number) => self.offload_channel(tuple, number),
                Timer::Allocation(_) | Timer::Reservation(_) => {}
            }
        }
    }

    /// Refuse new allocations from now on: RFC 8656 §7.2's 300 (Try Alternate) with
    /// ALTERNATE-SERVER when `alternate` is given, else 508. Existing ones live on.
    pub fn drain(&mut self, alternate: Option<SocketAddr>) {
        self.draining = Some(alternate);
    }

    /// The next thing the event loop must do; call after every input until `None`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(super) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
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
    /// caller decoded: the response to send back on the same 5-tuple, or, for an Allocate
    /// that needs relay sockets, which to bind ([`Answer::Bind`]).
    pub fn handle_request(&mut self, now: Instant, tuple: FiveTuple, req: &Message) -> Answer<'_> {
        self.authenticated = false;
        let mut unknown = UnknownAttributes(Vec::new());
        unknown_required(req, KNOWN_TURN_ATTRIBUTES, &mut unknown.0);
        if !unknown.0.is_empty() {
            self.metrics.refuse(420);
            self.error(req, 420);
            let _ = unknown.add_to(&mut self.response);
            response::finish(&mut self.response, req);
            return Answer::Reply(&self.response.raw);
        }
        let creds = match self.authenticate(now, tuple, req) {
            Ok(creds) => creds,
            Err(()) => return Answer::Reply(&self.response.raw),
        };
        self.authenticated = true;
        // A Refresh with a MOBILITY-TICKET checks the user itself: it may be another
        // client's moving onto this address (`mobility.rs`).
        let ticketed = req.typ.method == METHOD_REFRESH && req.contains(ATTR_MOBILITY_TICKET);
        if ticketed && self.move_needs_fresh_nonce(now, tuple, req, &creds) {
            self.challenge(now, tuple, req, 438);
            return Answer::Reply(&self.response.raw);
        }
        if let Some(alloc) = self.allocations.get(&tuple)
            && alloc.username != creds.username
            && !ticketed
        {
            // RFC 8656 §5: the credentials must be those that created the allocation.
            return Answer::Reply(self.fail(req, 441, &creds));
        }
        let result = match req.typ.method {
            METHOD_ALLOCATE => match (self.mobility_asked(req))
                .and_then(|()| self.allocate(now, tuple, req, &creds))
            {
                Ok(Some(binds)) => return Answer::Bind(binds),
                Ok(None) => Ok(()),
                Err(code) => Err(code),
            },
            METHOD_REFRESH => self.refresh_or_move(now, tuple, req, &creds),
            METHOD_CREATE_PERMISSION => self.create_permission(now, tuple, req),
            METHOD_CHANNEL_BIND => self.channel_bind(now, tuple, req),
            // RFC 6062: answered once the loop has connected, or found the connection.
            METHOD_CONNECT | METHOD_CONNECTION_BIND => {
                match self.tcp_request(now, tuple, req, &creds) {
                    Ok(()) => return Answer::Later,
                    Err(code) => Err(code),
                }
            }
            _ => Err(400),
        };
        Answer::Reply(self.answer(tuple, req, &creds, result))
    }

    /// Completes the Allocate that answered [`Answer::Bind`] with the sockets bound for it,
    /// in the order asked (fewer when one failed: then they are all given back, through
    /// events, and the answer is 508 or 300). Returns the response.
    pub fn allocate_bound(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        req: &Message,
        bound: &[super::Bound],
    ) -> &[u8] {
        let Some(pending) = (self.pending.take()).filter(|p| p.is_for(tuple, req)) else {
            // Nothing asked for these (a caller's mistake): give them back, answer nothing.
            for b in bound {
                self.push_event(Event::Close(*b));
            }
            return &[];
        };
        self.authenticated = true;
        let creds = pending.creds.clone();
        let result = self.finish_allocate(now, tuple, req, pending, bound);
        self.answer(tuple, req, &creds, result)
    }

    /// The authenticated response to `req`: a success the handler started, or `result`'s
    /// error code.
    fn answer(
        &mut self,
        tuple: FiveTuple,
        req: &Message,
        creds: &Credentials,
        result: Result<(), u16>,
    ) -> &[u8] {
        match result {
            Ok(()) => {
                self.add_ticket(tuple, req);
                add_integrity(&mut self.response, &creds.key, creds.integrity);
                response::finish(&mut self.response, req);
                &self.response.raw
            }
            Err(code) => {
                tracing::debug!(client = %tuple.client, method = %req.typ.method, code, "request refused");
                self.fail(req, code, creds)
            }
        }
    }

    /// Whether the last answer of [`Manager::handle_request`] was to a request with valid
    /// credentials; else it was an unauthenticated answer (401, 438, 400 or 420), which the
    /// server rate-limits per source.
    pub fn answered_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Starts an error response; the caller finishes it.
    pub(super) fn error(&mut self, req: &Message, code: u16) {
        response::begin(&mut self.response, req, CLASS_ERROR_RESPONSE);
        response::add_error_code(&mut self.response, code);
    }

    /// An authenticated error response: ERROR-CODE, MESSAGE-INTEGRITY, FINGERPRINT.
    pub(super) fn fail(&mut self, req: &Message, code: u16, creds: &Credentials) -> &[u8] {
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

    /// Whether new allocations are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// The client's TCP connection closed: its allocation goes with it (RFC 8656 §3.1),
    /// unless it is mobile (RFC 8016): then it is detached from the connection's 5-tuple
    /// and kept for a short grace ([`super::mobility::TCP_GRACE`]), for the client to take
    /// to a new connection with its ticket (as coturn does).
    pub fn close(&mut self, now: Instant, tuple: FiveTuple) {
        if !self.detach(now, tuple) {
            self.delete_allocation(tuple);
        }
    }

    /// Deletes every allocation and reservation (shutdown).
    pub fn clear(&mut self) {
        let tuples: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        for tuple in tuples {
            self.delete_allocation(tuple);
        }
        // Reservations are shared: the first shard to clear ends them all.
        for r in self.quotas.clear_reservations() {
            self.push_event(Event::Unreserve(r.addr));
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
                        self.offload_peer_ip(tuple, ip);
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
                        self.offload_channel(tuple, number);
                        None
                    }
                    later => later.map(|(_, c)| c.expires),
                }
            }
            Timer::Reservation(token) => match self.quotas.expire(&token, now) {
                Some(r) => {
                    self.push_event(Event::Unreserve(r.addr));
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
            // Out of the kernel before its relay ports can go to another allocation.
            self.offload_deleted(tuple, &alloc);
            for relay in &alloc.relays {
                self.by_relay.remove(&relay.slot);
                self.push_event(Event::Close(*relay));
            }
            self.quotas.release(&alloc.holder, 1);
            self.mobility_forget(tuple);
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
