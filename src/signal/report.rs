//! What signaling counts, as `/metrics` families ([`crate::metrics`]): the hub's connections,
//! peers, rooms, relays and refusals, and the cluster link's state and traffic.

use std::sync::atomic::Ordering::Relaxed;

use super::cluster::link::Cluster;
use super::hub::Hub;
use crate::metrics::{Counted, Family, Report};

static CONNECTIONS: Family = Family::gauge("signal_connections", "Open signaling WebSockets.");
static PEERS: Family = Family::gauge("signal_peers", "Signaling peers connected.");
static ROOMS: Family = Family::gauge("signal_rooms", "Non-empty signaling rooms.");
static RELAYED: Family = Family::counter(
    "signal_messages_relayed_total",
    "Offers, answers and candidates relayed.",
);
static HEARTBEAT_DROPS: Family = Family::counter(
    "signal_heartbeat_drops_total",
    "Clients dropped for failing the heartbeat.",
);
static CONNECTIONS_REFUSED: Family = Family::counter(
    "signal_connections_refused_total",
    "WebSocket upgrades answered 503: [signal] max-connections or max-connections-per-ip reached.",
);
static RATE_LIMITED: Family = Family::counter(
    "signal_rate_limited_total",
    "Signaling messages answered rate_limited, by limit.",
);
static REFUSED: Family = Family::counter(
    "signal_refused_total",
    "Signaling upgrades and ICE-servers calls refused, by rule.",
);
static ERRORS: Family = Family::counter(
    "signal_errors_total",
    "Signaling error frames answering text messages, by code.",
);
static SLOW_CONSUMERS: Family = Family::counter(
    "signal_slow_consumers_total",
    "Signaling connections closed for not reading: their queue passed signal.max-queued-bytes (WebSocket close 1008), or a write waited 10 s.",
);
static TOO_LARGE: Family = Family::counter(
    "signal_relay_too_large_total",
    "Offers, answers and candidates refused (too_large) because with \"from\" added they would pass signal.max-message-size.",
);

impl Counted for Hub {
    fn report(&self, report: &mut Report) {
        let (open, relayed, drops) = self.traffic();
        let (peers, rooms) = self.counts();
        report.value(&CONNECTIONS, open as u64);
        report.value(&PEERS, peers as u64);
        report.value(&ROOMS, rooms as u64);
        report.value(&RELAYED, relayed);
        report.value(&HEARTBEAT_DROPS, drops);
        report.value(&CONNECTIONS_REFUSED, self.connections_refused());
        let (messages, joins) = self.refusals();
        report.labelled(&RATE_LIMITED, "limit", "messages-per-second", messages);
        report.labelled(&RATE_LIMITED, "limit", "joins-per-minute-per-ip", joins);
        report.each(&REFUSED, "reason", self.refusals.refused_counts());
        report.each(&ERRORS, "code", self.refusals.error_counts());
        let (slow, too_large) = self.overflows();
        report.value(&SLOW_CONSUMERS, slow);
        report.value(&TOO_LARGE, too_large);
        if let Some(cluster) = self.cluster() {
            cluster.report(report);
        }
    }
}

static CLUSTER_UP: Family = Family::gauge(
    "cluster_up",
    "1 while the link to Redis is up; 0: rooms do not cross nodes now.",
);
static CLUSTER_CONNECTS: Family = Family::counter(
    "cluster_connects_total",
    "Sessions started with Redis (the first and every reconnect).",
);
static CLUSTER_ERRORS: Family = Family::counter(
    "cluster_errors_total",
    "Failed connects and commands, and lost links to Redis.",
);
static CLUSTER_RELAYED: Family = Family::counter(
    "cluster_relayed_total",
    "Offers, answers and candidates crossing nodes, by direction.",
);
static CLUSTER_EVENTS: Family = Family::counter(
    "cluster_events_total",
    "Join and leave events heard from other nodes.",
);
static CLUSTER_MALFORMED: Family = Family::counter(
    "cluster_malformed_total",
    "Messages on rturn's Redis channels that were not rturn's.",
);

impl Counted for Cluster {
    fn report(&self, report: &mut Report) {
        let s = &self.stats;
        report.value(&CLUSTER_UP, u64::from(self.status().up));
        report.value(&CLUSTER_CONNECTS, s.connects.load(Relaxed));
        report.value(&CLUSTER_ERRORS, s.errors.load(Relaxed));
        report.labelled(
            &CLUSTER_RELAYED,
            "direction",
            "out",
            s.relayed_out.load(Relaxed),
        );
        report.labelled(
            &CLUSTER_RELAYED,
            "direction",
            "in",
            s.relayed_in.load(Relaxed),
        );
        report.value(&CLUSTER_EVENTS, s.events.load(Relaxed));
        report.value(&CLUSTER_MALFORMED, s.malformed.load(Relaxed));
    }
}
