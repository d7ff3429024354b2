//! What the I/O layer counts, as `/metrics` families ([`crate::metrics`]): packets, socket
//! errors and UDP GSO sends of the data path, hand-offs to rturn's own relays, TURN TCP/TLS
//! and HTTP connections, failed accepts, the descriptor budget, and the shards' live
//! allocations, relay ports and rate-limited sources.

use super::command::WorkerSnapshot;
use super::descriptors::Budget;
use super::http_stats::HttpStats;
use super::stats::Snapshot;
use crate::metrics::{Counted, Family, Report};

static BUILD_INFO: Family = Family::gauge("build_info", "Build information.");
static ALLOCATIONS: Family =
    Family::gauge("allocations", "Live TURN allocations by client transport.");
static RATE_LIMIT_SOURCES: Family = Family::gauge(
    "rate_limit_sources",
    "Source addresses with a partly used unauthenticated-request bucket.",
);
static RELAY_PORTS: Family = Family::gauge(
    "relay_ports",
    "Relay ports held, and the size of the port range.",
);
static OFFLOADED: Family = Family::gauge(
    "offload_channels",
    "Bound UDP channels the kernel relays by itself now (relay.offload).",
);
static PACKETS: Family = Family::counter(
    "packets_total",
    "Client packets and TCP frames, by outcome.",
);
static RELAY_HANDOFF: Family = Family::counter(
    "relay_handoff_total",
    "Datagrams for rturn's own live relay endpoints, handed to their allocation inside the \
     process (no kernel round trip), by result: delivered to its client, refused by it (no \
     permission, bandwidth), gone (the port was released), full (its worker's inbox was).",
);
static UDP_GSO: Family = Family::counter(
    "udp_gso_total",
    "UDP GSO on the sockets that serve clients: sends (several datagrams for one client in \
     one), the datagrams they carried, and sends the kernel refused (sent again datagram by \
     datagram; GSO is then narrowed or off for that socket).",
);
static MOBILITY: Family = Family::counter(
    "mobility_forwarded_total",
    "Datagrams of clients whose allocation moved (RFC 8016) to another worker than the one \
     their new address lands on, by result: forwarded to it, or dropped (full: its inbox was, or a \
     connection handed to it did not fit its buffer); connection: a TCP/TLS connection handed to it; report_dropped: a move or end of a mobile \
     allocation not reported to another worker, whose queue of reports was full.",
);
static SOCKET_ERRORS: Family = Family::counter("socket_errors_total", "Socket errors survived.");
static TCP_CONNECTIONS: Family = Family::counter(
    "tcp_connections_total",
    "TCP/TLS client connections, by event.",
);
static HTTP_CONNECTIONS: Family = Family::counter(
    "http_connections_total",
    "HTTP/HTTPS connections, by event: refused at accept (max-http-connections, \
     max-http-connections-per-ip, the descriptor budget), shed to make room, closed by \
     http-header-timeout, http-idle-timeout or tls-handshake-timeout.",
);
static ACCEPT_ERRORS: Family = Family::counter(
    "accept_errors_total",
    "Failed accepts (EMFILE and friends), by listener; each one pauses that listener.",
);
static DESCRIPTORS: Family = Family::gauge(
    "descriptors",
    "The descriptor limit, its shares (relay sockets, all connections, HTTP), and the \
     connections holding one now.",
);

/// The version this binary was built from.
pub(super) struct BuildInfo;

impl Counted for BuildInfo {
    fn report(&self, report: &mut Report) {
        report.labelled(&BUILD_INFO, "version", env!("CARGO_PKG_VERSION"), 1);
    }
}

/// The size of the relay port range, `min-port..=max-port`.
pub(super) struct PortRange(pub(super) usize);

impl Counted for PortRange {
    fn report(&self, report: &mut Report) {
        report.labelled(&RELAY_PORTS, "state", "range", self.0 as u64);
    }
}

/// What the workers hold now, added up: allocations, relay ports, rate-limited sources, and
/// the allocation manager's counters.
impl Counted for WorkerSnapshot {
    fn report(&self, report: &mut Report) {
        let [udp, tcp, tls] = self.by_transport.map(|n| n as u64);
        report.labelled(&ALLOCATIONS, "transport", "udp", udp);
        report.labelled(&ALLOCATIONS, "transport", "tcp", tcp);
        report.labelled(&ALLOCATIONS, "transport", "tls", tls);
        report.value(&RATE_LIMIT_SOURCES, self.limited_sources as u64);
        // Reserved ports are shared by every worker: counted once.
        let in_use = (self.relays_in_use + self.reserved) as u64;
        report.labelled(&RELAY_PORTS, "state", "in_use", in_use);
        report.labelled(&RELAY_PORTS, "state", "reserved", self.reserved as u64);
        report.value(&OFFLOADED, self.offloaded as u64);
        self.turn.report(report);
    }
}

impl Counted for Snapshot {
    fn report(&self, report: &mut Report) {
        report.each(
            &PACKETS,
            "outcome",
            [
                ("received", self.received),
                ("replied", self.replied),
                ("malformed", self.malformed),
                ("ignored", self.ignored),
                ("rate_limited", self.rate_limited),
            ],
        );
        report.value(&SOCKET_ERRORS, self.io_errors);
        let [delivered, refused, gone, full] = self.handoff;
        report.each(
            &RELAY_HANDOFF,
            "result",
            [
                ("delivered", delivered),
                ("refused", refused),
                ("gone", gone),
                ("full", full),
            ],
        );
        let [forwarded, full, connections, reports_dropped] = self.mobility;
        report.each(
            &MOBILITY,
            "result",
            [
                ("forwarded", forwarded),
                ("full", full),
                ("connection", connections),
                ("report_dropped", reports_dropped),
            ],
        );
        let [sends, datagrams, refused] = self.gso;
        report.each(
            &UDP_GSO,
            "event",
            [
                ("sends", sends),
                ("datagrams", datagrams),
                ("refused", refused),
            ],
        );
        report.each(
            &TCP_CONNECTIONS,
            "event",
            [
                ("accepted", self.tcp_accepted),
                ("broken", self.tcp_broken),
                ("idle_closed", self.tcp_idle_closed),
                ("refused_per_ip", self.tcp_refused_per_ip),
                ("allocation_timeout", self.tcp_allocation_timeout),
                ("handshake_timeout", self.tls_handshake_timeout),
                ("slow_consumer", self.tcp_slow_consumer),
            ],
        );
    }
}

impl Counted for HttpStats {
    fn report(&self, report: &mut Report) {
        report.each(&HTTP_CONNECTIONS, "event", self.counts());
    }
}

impl Counted for Budget {
    fn report(&self, report: &mut Report) {
        let (refused_http, refused_turn) = self.refused();
        report.labelled(
            &HTTP_CONNECTIONS,
            "event",
            "refused_descriptors",
            refused_http,
        );
        report.labelled(&HTTP_CONNECTIONS, "event", "shed", self.shed_count());
        report.labelled(
            &TCP_CONNECTIONS,
            "event",
            "refused_descriptors",
            refused_turn,
        );
        let (http, turn) = self.accept_errors();
        report.labelled(&ACCEPT_ERRORS, "listener", "http", http);
        report.labelled(&ACCEPT_ERRORS, "listener", "turn", turn);
        let split = self.split();
        let (connections, http) = self.held();
        report.each(
            &DESCRIPTORS,
            "kind",
            [
                ("limit", split.limit),
                ("relay_reserve", split.relay),
                ("connections_max", split.connections),
                ("http_max", split.http),
                ("connections", connections),
                ("http", http),
            ],
        );
    }
}
