//! `[server]` through the whole file: the abuse limits (with `[relay]`'s) parse and are checked.

use std::time::Duration;

use crate::config::Config;
use crate::config::tests::err;

#[test]
fn abuse_limits_parse_and_are_validated() {
    let c = Config::from_toml(
        "realm = \"r\"\n[server]\nunauthenticated-rate = 0\nunauthenticated-burst = 0\n\
         max-tcp-connections-per-ip = 0\ntcp-allocation-timeout = \"2m\"\n\
         tls-handshake-timeout = \"3s\"\nhttp-header-timeout = \"1s\"\n\
         http-idle-timeout = \"2m\"\nmax-http-connections = 10\n\
         max-http-connections-per-ip = 0\n[relay]\nmax-permissions-per-allocation = 0\n\
         max-channels-per-allocation = 7\nmax-bps = 125000\nbps-capacity = 12500000\n\
         max-allocations-per-ip = 0\n",
    )
    .unwrap();
    assert_eq!(c.server.unauthenticated_rate, 0);
    assert_eq!(c.server.tcp_allocation_timeout, Duration::from_secs(120));
    assert_eq!(c.server.tls_handshake_timeout, Duration::from_secs(3));
    assert_eq!(c.server.http_header_timeout, Duration::from_secs(1));
    assert_eq!(c.server.http_idle_timeout, Duration::from_secs(120));
    assert_eq!(c.server.max_http_connections, 10);
    assert_eq!(c.server.max_http_connections_per_ip, 0);
    assert_eq!(c.relay.max_channels_per_allocation, 7);
    assert_eq!(c.relay.max_allocations_per_ip, 0);
    assert_eq!(
        (c.relay.max_bps, c.relay.bps_capacity),
        (125_000, 12_500_000)
    );
    let cases = [
        (
            "[server]\nunauthenticated-rate = 10\nunauthenticated-burst = 0",
            "server.unauthenticated-burst",
        ),
        (
            "[server]\ntcp-allocation-timeout = \"0s\"",
            "server.tcp-allocation-timeout",
        ),
        (
            "[server]\ntls-handshake-timeout = \"10ms\"",
            "server.tls-handshake-timeout",
        ),
        (
            "[server]\nhttp-header-timeout = \"0s\"",
            "server.http-header-timeout",
        ),
        (
            "[server]\nhttp-idle-timeout = \"50ms\"",
            "server.http-idle-timeout",
        ),
        (
            "[server]\nmax-http-connections = 0",
            "server.max-http-connections",
        ),
        ("[relay]\nmax-bps = 10", "relay.max-bps"),
        ("[relay]\nbps-capacity = 999", "relay.bps-capacity"),
        (
            "[relay]\nmax-allocations-per-ip = -1",
            "relay.max-allocations-per-ip",
        ),
        (
            "[server]\nunauthenticated-rate = -1",
            "server.unauthenticated-rate",
        ),
        (
            "[relay]\nmax-channels-per-allocation = \"x\"",
            "relay.max-channels-per-allocation",
        ),
    ];
    for (text, key) in cases {
        let text = format!("realm = \"r\"\n{text}\n");
        assert_eq!(err(&text).key, key, "for {text:?}");
    }
}
