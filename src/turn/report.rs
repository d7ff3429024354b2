//! What the allocation manager counts, as `/metrics` families ([`crate::metrics`]).

use super::metrics::TurnMetrics;
use crate::metrics::{Counted, Family, Report};

static ENDED: Family = Family::counter("allocations_ended_total", "Allocations ended, by how.");
static CREATED: Family = Family::counter("allocations_created_total", "Allocations created.");
static MOVED: Family = Family::counter(
    "allocations_moved_total",
    "Allocations moved to their client's new address with a MOBILITY-TICKET (RFC 8016).",
);
static REFUSED: Family = Family::counter(
    "requests_refused_total",
    "TURN requests refused, by STUN error code (403: peer rules; 486, 508: quotas and ports).",
);
static CHALLENGES: Family = Family::counter(
    "auth_challenges_total",
    "401 challenges to requests without credentials.",
);
static AUTH_FAILURES: Family =
    Family::counter("auth_failures_total", "Authentication failures, by reason.");
static RELAYED_PACKETS: Family = Family::counter(
    "relayed_packets_total",
    "Data packets relayed, by direction.",
);
static RELAYED_BYTES: Family = Family::counter(
    "relayed_bytes_total",
    "Payload bytes relayed, by direction.",
);
static DROPPED_PACKETS: Family = Family::counter(
    "relay_dropped_packets_total",
    "Data packets dropped by the bandwidth limits (relay.max-bps per allocation, relay.bps-capacity overall).",
);
static DROPPED_BYTES: Family = Family::counter(
    "relay_dropped_bytes_total",
    "Payload bytes dropped by the bandwidth limits.",
);
static OFFLOAD_PACKETS: Family = Family::counter(
    "offload_packets_total",
    "ChannelData packets the kernel relayed by itself (relay.offload), by direction; also \
     counted in relayed_packets_total.",
);
static OFFLOAD_BYTES: Family = Family::counter(
    "offload_bytes_total",
    "Payload bytes the kernel relayed by itself, by direction; also in relayed_bytes_total.",
);
static CAPS: Family = Family::counter(
    "allocation_caps_reached_total",
    "CreatePermission and ChannelBind refused with 508 for a per-allocation cap.",
);
static QUOTAS: Family = Family::counter(
    "quota_refusals_total",
    "Allocates refused by a quota: user-quota and max-allocations-per-ip (486), total-quota (508 or 300).",
);
static TCP_CONNECTIONS: Family = Family::counter(
    "tcp_relay_connections_total",
    "RFC 6062 peer connections of TCP allocations, by result (connected, connect_failed, \
     peer_accepted, peer_refused, bound, bind_refused, bind_expired); their bytes are in \
     relayed_bytes_total.",
);

impl Counted for TurnMetrics {
    fn report(&self, report: &mut Report) {
        report.labelled(&ENDED, "reason", "expired", self.allocations_expired);
        report.labelled(&ENDED, "reason", "deleted", self.allocations_deleted);
        report.value(&CREATED, self.allocations_created);
        report.value(&MOVED, self.allocations_moved);
        report.each(
            &REFUSED,
            "code",
            self.refused.iter().map(|(code, n)| (code.to_string(), *n)),
        );
        report.value(&CHALLENGES, self.challenges);
        report.each(
            &AUTH_FAILURES,
            "reason",
            self.auth_failures.iter().map(|(r, n)| (*r, *n)),
        );
        report.labelled(&RELAYED_PACKETS, "direction", "to_peer", self.to_peer.0);
        report.labelled(&RELAYED_PACKETS, "direction", "to_client", self.to_client.0);
        report.labelled(&RELAYED_BYTES, "direction", "to_peer", self.to_peer.1);
        report.labelled(&RELAYED_BYTES, "direction", "to_client", self.to_client.1);
        let (max_bps, capacity) = (self.dropped_max_bps, self.dropped_bps_capacity);
        report.labelled(&DROPPED_PACKETS, "limit", "max_bps", max_bps.0);
        report.labelled(&DROPPED_PACKETS, "limit", "bps_capacity", capacity.0);
        report.labelled(&DROPPED_BYTES, "limit", "max_bps", max_bps.1);
        report.labelled(&DROPPED_BYTES, "limit", "bps_capacity", capacity.1);
        let (to_peer, to_client) = (self.offloaded_to_peer, self.offloaded_to_client);
        report.labelled(&OFFLOAD_PACKETS, "direction", "to_peer", to_peer.0);
        report.labelled(&OFFLOAD_PACKETS, "direction", "to_client", to_client.0);
        report.labelled(&OFFLOAD_BYTES, "direction", "to_peer", to_peer.1);
        report.labelled(&OFFLOAD_BYTES, "direction", "to_client", to_client.1);
        report.labelled(&CAPS, "cap", "permissions", self.permission_cap);
        report.labelled(&CAPS, "cap", "channels", self.channel_cap);
        for quota in ["user", "per_ip", "total"] {
            let n = self.quota_refused.get(quota).copied().unwrap_or(0);
            report.labelled(&QUOTAS, "quota", quota, n);
        }
        for result in [
            "connected",
            "connect_failed",
            "peer_accepted",
            "peer_refused",
            "bound",
            "bind_refused",
            "bind_expired",
        ] {
            let n = self.tcp_connections.get(result).copied().unwrap_or(0);
            report.labelled(&TCP_CONNECTIONS, "result", result, n);
        }
    }
}
