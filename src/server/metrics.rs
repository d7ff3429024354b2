//! `/metrics` in the Prometheus text format: counters added up over every shard and worker
//! at scrape time, with no per-user labels.

use std::fmt::Write;
use std::sync::Arc;

use super::descriptors::Budget;
use super::http_listener::HttpStats;
use super::stats::Stats;
use super::workers::Workers;
use crate::signal::ws::Hub;

/// What a scrape reads.
pub(super) struct Sources {
    pub(super) workers: Arc<Workers>,
    pub(super) stats: Arc<Stats>,
    pub(super) hub: Option<Arc<Hub>>,
    pub(super) port_range: usize,
    pub(super) budget: Arc<Budget>,
    pub(super) http: Arc<HttpStats>,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP rturn_{name} {help}");
    let _ = writeln!(out, "# TYPE rturn_{name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "rturn_{name}{labels} {value}");
    }
}

/// Owned label strings as the `(labels, value)` pairs [`metric`] takes.
fn labelled(samples: &[(String, u64)]) -> Vec<(&str, u64)> {
    samples.iter().map(|(l, n)| (l.as_str(), *n)).collect()
}

/// The `/metrics` handler for [`crate::http::HttpState`].
pub(super) fn handler(
    sources: Sources,
) -> Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync> {
    let sources = Arc::new(sources);
    Arc::new(move || {
        let sources = Arc::clone(&sources);
        Box::pin(async move { render(&sources).await })
    })
}

/// Renders every metric.
pub(super) async fn render(src: &Sources) -> String {
    let workers = src.workers.snapshot().await;
    let (turn, by_transport) = (&workers.turn, workers.by_transport);
    let (ports, limited_sources) = (workers.relays_in_use, workers.limited_sources);
    // Reserved ports are shared by every shard: counted once.
    let reserved = workers.reserved;
    let s = src.stats.snapshot();
    let mut out = String::with_capacity(4096);
    let v = |n: usize| n as u64;
    metric(
        &mut out,
        "build_info",
        "gauge",
        "Build information.",
        &[(&format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
    );
    metric(
        &mut out,
        "allocations",
        "gauge",
        "Live TURN allocations by client transport.",
        &[
            ("{transport=\"udp\"}", v(by_transport[0])),
            ("{transport=\"tcp\"}", v(by_transport[1])),
            ("{transport=\"tls\"}", v(by_transport[2])),
        ],
    );
    metric(
        &mut out,
        "allocations_ended_total",
        "counter",
        "Allocations ended, by how.",
        &[
            ("{reason=\"expired\"}", turn.allocations_expired),
            ("{reason=\"deleted\"}", turn.allocations_deleted),
        ],
    );
    metric(
        &mut out,
        "allocations_created_total",
        "counter",
        "Allocations created.",
        &[("", turn.allocations_created)],
    );
    let refused: Vec<(String, u64)> = (turn.refused.iter())
        .map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n))
        .collect();
    let refused: Vec<(&str, u64)> = refused.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        &mut out,
        "requests_refused_total",
        "counter",
        "TURN requests refused, by STUN error code (403: peer rules; 486, 508: quotas and ports).",
        &refused,
    );
    metric(
        &mut out,
        "auth_challenges_total",
        "counter",
        "401 challenges to requests without credentials.",
        &[("", turn.challenges)],
    );
    let failures: Vec<(String, u64)> = (turn.auth_failures.iter())
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n))
        .collect();
    let failures: Vec<(&str, u64)> = failures.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        &mut out,
        "auth_failures_total",
        "counter",
        "Authentication failures, by reason.",
        &failures,
    );
    metric(
        &mut out,
        "relayed_packets_total",
        "counter",
        "Data packets relayed, by direction.",
        &[
            ("{direction=\"to_peer\"}", turn.to_peer.0),
            ("{direction=\"to_client\"}", turn.to_client.0),
        ],
    );
    metric(
        &mut out,
        "relayed_bytes_total",
        "counter",
        "Payload bytes relayed, by direction.",
        &[
            ("{direction=\"to_peer\"}", turn.to_peer.1),
            ("{direction=\"to_client\"}", turn.to_client.1),
        ],
    );
    metric(
        &mut out,
        "relay_dropped_packets_total",
        "counter",
        "Data packets dropped by the bandwidth limits (relay.max-bps per allocation, relay.bps-capacity overall).",
        &[
            ("{limit=\"max_bps\"}", turn.dropped_max_bps.0),
            ("{limit=\"bps_capacity\"}", turn.dropped_bps_capacity.0),
        ],
    );
    metric(
        &mut out,
        "relay_dropped_bytes_total",
        "counter",
        "Payload bytes dropped by the bandwidth limits.",
        &[
            ("{limit=\"max_bps\"}", turn.dropped_max_bps.1),
            ("{limit=\"bps_capacity\"}", turn.dropped_bps_capacity.1),
        ],
    );
    metric(
        &mut out,
        "allocation_caps_reached_total",
        "counter",
        "CreatePermission and ChannelBind refused with 508 for a per-allocation cap.",
        &[
            ("{cap=\"permissions\"}", turn.permission_cap),
            ("{cap=\"channels\"}", turn.channel_cap),
        ],
    );
    let quota = |name| turn.quota_refused.get(name).copied().unwrap_or(0);
    metric(
        &mut out,
        "quota_refusals_total",
        "counter",
        "Allocates refused by a quota: user-quota and max-allocations-per-ip (486), total-quota (508 or 300).",
        &[
            ("{quota=\"user\"}", quota("user")),
            ("{quota=\"per_ip\"}", quota("per_ip")),
            ("{quota=\"total\"}", quota("total")),
        ],
    );
    metric(
        &mut out,
        "rate_limit_sources",
        "gauge",
        "Source addresses with a partly used unauthenticated-request bucket.",
        &[("", v(limited_sources))],
    );
    metric(
        &mut out,
        "relay_ports",
        "gauge",
        "Relay ports held, and the size of the port range.",
        &[
            ("{state=\"in_use\"}", v(ports + reserved)),
            ("{state=\"reserved\"}", v(reserved)),
            ("{state=\"range\"}", v(src.port_range)),
        ],
    );
    metric(
        &mut out,
        "packets_total",
        "counter",
        "Client packets and TCP frames, by outcome.",
        &[
            ("{outcome=\"received\"}", s.received),
            ("{outcome=\"replied\"}", s.replied),
            ("{outcome=\"malformed\"}", s.malformed),
            ("{outcome=\"ignored\"}", s.ignored),
            ("{outcome=\"rate_limited\"}", s.rate_limited),
        ],
    );
    metric(
        &mut out,
        "socket_errors_total",
        "counter",
        "Socket errors survived.",
        &[("", s.io_errors)],
    );
    metric(
        &mut out,
        "tcp_connections_total",
        "counter",
        "TCP/TLS client connections, by event.",
        &[
            ("{event=\"accepted\"}", s.tcp_accepted),
            ("{event=\"broken\"}", s.tcp_broken),
            ("{event=\"idle_closed\"}", s.tcp_idle_closed),
            ("{event=\"refused_per_ip\"}", s.tcp_refused_per_ip),
            ("{event=\"allocation_timeout\"}", s.tcp_allocation_timeout),
            ("{event=\"handshake_timeout\"}", s.tls_handshake_timeout),
            ("{event=\"refused_descriptors\"}", src.budget.refused().1),
            ("{event=\"slow_consumer\"}", s.tcp_slow_consumer),
        ],
    );
    connection_metrics(&mut out, src);
    if let Some(hub) = &src.hub {
        let (open, relayed, drops) = hub.traffic();
        let (peers, rooms) = hub.counts();
        metric(
            &mut out,
            "signal_connections",
            "gauge",
            "Open signaling WebSockets.",
            &[("", v(open))],
        );
        metric(
            &mut out,
            "signal_peers",
            "gauge",
            "Signaling peers connected.",
            &[("", v(peers))],
        );
        metric(
            &mut out,
            "signal_rooms",
            "gauge",
            "Non-empty signaling rooms.",
            &[("", v(rooms))],
        );
        metric(
            &mut out,
            "signal_messages_relayed_total",
            "counter",
            "Offers, answers and candidates relayed.",
            &[("", relayed)],
        );
        metric(
            &mut out,
            "signal_heartbeat_drops_total",
            "counter",
            "Clients dropped for failing the heartbeat.",
            &[("", drops)],
        );
        metric(
            &mut out,
            "signal_connections_refused_total",
            "counter",
            "WebSocket upgrades answered 503: [signal] max-connections or max-connections-per-ip reached.",
            &[("", hub.connections_refused())],
        );
        let (messages, joins) = hub.refusals();
        metric(
            &mut out,
            "signal_rate_limited_total",
            "counter",
            "Signaling messages answered rate_limited, by limit.",
            &[
                ("{limit=\"messages-per-second\"}", messages),
                ("{limit=\"joins-per-minute-per-ip\"}", joins),
            ],
        );
        let refused: Vec<(String, u64)> = (hub.refusals.refused_counts().iter())
            .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n))
            .collect();
        metric(
            &mut out,
            "signal_refused_total",
            "counter",
            "Signaling upgrades and ICE-servers calls refused, by rule.",
            &labelled(&refused),
        );
        let errors: Vec<(String, u64)> = (hub.refusals.error_counts().iter())
            .map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n))
            .collect();
        metric(
            &mut out,
            "signal_errors_total",
            "counter",
            "Signaling error frames answering text messages, by code.",
            &labelled(&errors),
        );
        let (slow, too_large) = hub.overflows();
        metric(
            &mut out,
            "signal_slow_consumers_total",
            "counter",
            "Signaling connections closed for not reading: their queue passed signal.max-queued-bytes (WebSocket close 1008), or a write waited 10 s.",
            &[("", slow)],
        );
        metric(
            &mut out,
            "signal_relay_too_large_total",
            "counter",
            "Offers, answers and candidates refused (too_large) because with \"from\" added they would pass signal.max-message-size.",
            &[("", too_large)],
        );
        if let Some(cluster) = hub.cluster() {
            cluster_metrics(&mut out, cluster);
        }
    }
    out
}

/// The HTTP listeners' connection events, failed accepts and the descriptor budget.
fn connection_metrics(out: &mut String, src: &Sources) {
    let (refused_http, _) = src.budget.refused();
    let events: Vec<(String, u64)> = (src.http.counts().into_iter())
        .chain([
            ("refused_descriptors", refused_http),
            ("shed", src.budget.shed_count()),
        ])
        .map(|(event, n)| (format!("{{event=\"{event}\"}}"), n))
        .collect();
    let events: Vec<(&str, u64)> = events.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        out,
        "http_connections_total",
        "counter",
        "HTTP/HTTPS connections, by event: refused at accept (max-http-connections, \
         max-http-connections-per-ip, the descriptor budget), shed to make room, closed by \
         http-header-timeout, http-idle-timeout or tls-handshake-timeout.",
        &events,
    );
    let (http, turn) = src.budget.accept_errors();
    metric(
        out,
        "accept_errors_total",
        "counter",
        "Failed accepts (EMFILE and friends), by listener; each one pauses that listener.",
        &[("{listener=\"http\"}", http), ("{listener=\"turn\"}", turn)],
    );
    let split = src.budget.split();
    let (connections, http) = src.budget.held();
    metric(
        out,
        "descriptors",
        "gauge",
        "The descriptor limit, its shares (relay sockets, all connections, HTTP), and the \
         connections holding one now.",
        &[
            ("{kind=\"limit\"}", split.limit),
            ("{kind=\"relay_reserve\"}", split.relay),
            ("{kind=\"connections_max\"}", split.connections),
            ("{kind=\"http_max\"}", split.http),
            ("{kind=\"connections\"}", connections),
            ("{kind=\"http\"}", http),
        ],
    );
}

/// `[cluster]`: the Redis link's state and traffic.
fn cluster_metrics(out: &mut String, cluster: &crate::signal::cluster::link::Cluster) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &cluster.stats;
    metric(
        out,
        "cluster_up",
        "gauge",
        "1 while the link to Redis is up; 0: rooms do not cross nodes now.",
        &[("", u64::from(cluster.status().up))],
    );
    metric(
        out,
        "cluster_connects_total",
        "counter",
        "Sessions started with Redis (the first and every reconnect).",
        &[("", s.connects.load(Relaxed))],
    );
    metric(
        out,
        "cluster_errors_total",
        "counter",
        "Failed connects and commands, and lost links to Redis.",
        &[("", s.errors.load(Relaxed))],
    );
    metric(
        out,
        "cluster_relayed_total",
        "counter",
        "Offers, answers and candidates crossing nodes, by direction.",
        &[
            ("{direction=\"out\"}", s.relayed_out.load(Relaxed)),
            ("{direction=\"in\"}", s.relayed_in.load(Relaxed)),
        ],
    );
    metric(
        out,
        "cluster_events_total",
        "counter",
        "Join and leave events heard from other nodes.",
        &[("", s.events.load(Relaxed))],
    );
    metric(
        out,
        "cluster_malformed_total",
        "counter",
        "Messages on rturn's Redis channels that were not rturn's.",
        &[("", s.malformed.load(Relaxed))],
    );
}
