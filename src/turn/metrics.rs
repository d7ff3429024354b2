//! What the allocation manager counts, for `/metrics`. Plain integers: every shard keeps its
//! own under its lock, and a scrape adds them up.

use std::collections::BTreeMap;

/// Counters of one shard (or, added up, of the server).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TurnMetrics {
    /// Allocations created.
    pub allocations_created: u64,
    /// Allocations whose lifetime ran out.
    pub allocations_expired: u64,
    /// Allocations ended by the client (Refresh 0, TCP close), an operator, or shutdown.
    pub allocations_deleted: u64,
    /// Allocations moved to their client's new 5-tuple (RFC 8016 mobility).
    pub allocations_moved: u64,
    /// 401 challenges to requests without credentials (the normal first round trip).
    pub challenges: u64,
    /// Authentication failures by reason.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Requests refused after authentication (or before it, for 420), by error code:
    /// 403 peer rules, 486/508 quotas and ports, 437, 441, 442, ...
    pub refused: BTreeMap<u16, u64>,
    /// Packets and bytes relayed from clients to peers.
    pub to_peer: (u64, u64),
    /// Packets and bytes relayed from peers to clients.
    pub to_client: (u64, u64),
    /// CreatePermission and ChannelBind refused (508) for `max-permissions-per-allocation`.
    pub permission_cap: u64,
    /// ChannelBind refused (508) for `max-channels-per-allocation`.
    pub channel_cap: u64,
    /// Allocates refused by a quota: `user` (`user-quota`, 486), `per_ip`
    /// (`max-allocations-per-ip`, 486), `total` (`total-quota`, 508 or 300).
    pub quota_refused: BTreeMap<&'static str, u64>,
    /// Packets and bytes dropped for an allocation's `max-bps`.
    pub dropped_max_bps: (u64, u64),
    /// Packets and bytes dropped for the server's `bps-capacity`.
    pub dropped_bps_capacity: (u64, u64),
    /// Packets and bytes the kernel relayed from clients to peers (#18), also counted in
    /// `to_peer`.
    pub offloaded_to_peer: (u64, u64),
    /// Packets and bytes the kernel relayed from peers to clients, also in `to_client`.
    pub offloaded_to_client: (u64, u64),
    /// RFC 6062 peer connections by what became of them: `connected` and `connect_failed`
    /// (Connect), `peer_accepted` and `peer_refused` (a peer connecting to a relayed
    /// listener), `bound` and `bind_refused` (ConnectionBind), `bind_expired`.
    pub tcp_connections: BTreeMap<&'static str, u64>,
}

impl TurnMetrics {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &TurnMetrics) {
        self.allocations_created += other.allocations_created;
        self.allocations_expired += other.allocations_expired;
        self.allocations_deleted += other.allocations_deleted;
        self.allocations_moved += other.allocations_moved;
        self.challenges += other.challenges;
        for (reason, n) in &other.auth_failures {
            *self.auth_failures.entry(reason).or_default() += n;
        }
        for (code, n) in &other.refused {
            *self.refused.entry(*code).or_default() += n;
        }
        self.to_peer.0 += other.to_peer.0;
        self.to_peer.1 += other.to_peer.1;
        self.to_client.0 += other.to_client.0;
        self.to_client.1 += other.to_client.1;
        self.permission_cap += other.permission_cap;
        self.channel_cap += other.channel_cap;
        for (quota, n) in &other.quota_refused {
            *self.quota_refused.entry(quota).or_default() += n;
        }
        self.dropped_max_bps.0 += other.dropped_max_bps.0;
        self.dropped_max_bps.1 += other.dropped_max_bps.1;
        self.dropped_bps_capacity.0 += other.dropped_bps_capacity.0;
        self.dropped_bps_capacity.1 += other.dropped_bps_capacity.1;
        self.offloaded_to_peer.0 += other.offloaded_to_peer.0;
        self.offloaded_to_peer.1 += other.offloaded_to_peer.1;
        self.offloaded_to_client.0 += other.offloaded_to_client.0;
        self.offloaded_to_client.1 += other.offloaded_to_client.1;
        for (result, n) in &other.tcp_connections {
            *self.tcp_connections.entry(result).or_default() += n;
        }
    }

    pub(super) fn auth_failed(&mut self, reason: &'static str) {
        *self.auth_failures.entry(reason).or_default() += 1;
    }

    pub(super) fn dropped(&mut self, over: super::bandwidth::Over, len: usize) {
        let counter = match over {
            super::bandwidth::Over::Allocation => &mut self.dropped_max_bps,
            super::bandwidth::Over::Capacity => &mut self.dropped_bps_capacity,
        };
        counter.0 += 1;
        counter.1 += len as u64;
    }

    pub(super) fn quota_refused(&mut self, refusal: super::quota::Refusal) {
        let quota = match refusal {
            super::quota::Refusal::User => "user",
            super::quota::Refusal::Client => "per_ip",
            super::quota::Refusal::Total => "total",
        };
        *self.quota_refused.entry(quota).or_default() += 1;
    }

    pub(super) fn refuse(&mut self, code: u16) {
        *self.refused.entry(code).or_default() += 1;
    }
}
