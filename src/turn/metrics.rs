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
}

impl TurnMetrics {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &TurnMetrics) {
        self.allocations_created += other.allocations_created;
        self.allocations_expired += other.allocations_expired;
        self.allocations_deleted += other.allocations_deleted;
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
    }

    pub(super) fn auth_failed(&mut self, reason: &'static str) {
        *self.auth_failures.entry(reason).or_default() += 1;
    }

    pub(super) fn refuse(&mut self, code: u16) {
        *self.refused.entry(code).or_default() += 1;
    }
}
