//! Tests of the whole file: defaults, how parse errors name the key and the line, the rules
//! that span sections, the shipped configs; and the texts and `err` the section tests share.

use std::path::Path;
use std::time::Duration;

use super::*;

/// The smallest valid file: every other key takes its default.
pub(super) const MINIMAL: &str = "realm = \"example.org\"\n";
/// Loopback listeners and relay address: what the shipped config and the tests use.
pub(super) const LOCAL: &str = "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:3478\"]\ntcp = []\n\
                                [relay]\nrelay-ip = \"127.0.0.1\"\n";
/// A public listener (the default 0.0.0.0:3478) and a relay address of its own.
pub(super) const PUBLIC: &str = "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.5\"\n";

/// The error `text` is refused with.
pub(super) fn err(text: &str) -> KeyError {
    Config::from_toml(text).expect_err("config should be rejected")
}

#[test]
fn minimal_config_takes_defaults() {
    let c = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(c.listen.udp, vec!["0.0.0.0:3478".parse().unwrap()]);
    assert_eq!(c.listen.tcp, c.listen.udp);
    assert_eq!(c.server.tcp_idle_timeout, DEFAULT_TCP_IDLE_TIMEOUT);
    assert_eq!((c.relay.min_port, c.relay.max_port), (49152, 65535));
    assert!(!c.relay.allow_loopback_peers);
    assert!(c.workers().get() >= 1);
    // The abuse limits: on by default where a legitimate client never meets them,
    // bandwidth off (as in coturn).
    let s = &c.server;
    assert_eq!(
        (s.unauthenticated_rate, s.unauthenticated_burst),
        (200, 1000)
    );
    assert_eq!(s.max_tcp_connections_per_ip, 1000);
    assert_eq!(s.tcp_allocation_timeout, Duration::from_secs(30));
    assert_eq!(s.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(
        (s.http_header_timeout, s.http_idle_timeout),
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!(
        (s.max_http_connections, s.max_http_connections_per_ip),
        (20_000, 500)
    );
    assert_eq!(s.max_tcp_queued_bytes, 1024 * 1024);
    assert_eq!(c.signal.max_queued_bytes, 1024 * 1024);
    let r = &c.relay;
    assert_eq!(
        (
            r.max_permissions_per_allocation,
            r.max_channels_per_allocation
        ),
        (128, 128)
    );
    assert_eq!((r.max_bps, r.bps_capacity), (0, 0));
    assert_eq!(r.max_allocations_per_ip, 256);
}

#[test]
fn realm_is_required() {
    let e = err("[listen]\nudp = []\n");
    assert_eq!(e.key, "realm", "{e}");
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let e = err("realm = \"r\"\n[listen]\nudpp = [\"127.0.0.1:1\"]\n");
    assert_eq!(e.key, "listen.udpp");
    assert_eq!(e.line, Some(3));
    let e = err("realm = \"r\"\nlisten-udp = 1\n");
    assert_eq!(e.key, "listen-udp");
}

#[test]
fn bad_value_names_the_key() {
    let e = err("realm = \"r\"\n[listen]\nudp = [\"not-an-address\"]\n");
    assert_eq!(e.key, "listen.udp[0]", "{e}");
    let e = err("realm = \"r\"\n[server]\ntcp-idle-timeout = \"5 parsecs\"\n");
    assert_eq!(e.key, "server.tcp-idle-timeout");
    assert!(e.message.contains("invalid duration"), "{e}");
    // Would overflow the clock at the first allocation (Instant + Duration panics).
    let e = err("realm = \"r\"\n[relay]\nallocation-lifetime = \"500000000000y\"\n");
    assert_eq!(e.key, "relay.allocation-lifetime");
    assert!(e.message.contains("longer than 10 years"), "{e}");
    let e = err("realm = \"r\"\n[relay]\nmin-port = 70000\n");
    assert_eq!(e.key, "relay.min-port");
}

#[test]
fn durations_are_human() {
    let c = Config::from_toml("realm = \"r\"\n[server]\ntcp-idle-timeout = \"2m 30s\"\n").unwrap();
    assert_eq!(c.server.tcp_idle_timeout, Duration::from_secs(150));
}

#[test]
fn syntax_error_has_a_line() {
    let e = err("realm = \"r\"\n[listen\n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn cross_field_rules() {
    let cases = [
        ("realm = \"\"", "realm"),
        ("realm = \"r\"\n[server]\nworkers = 0", "server.workers"),
        ("realm = \"r\"\n[listen]\nudp = []\ntcp = []", "listen"),
        (
            "realm = \"r\"\n[listen]\nudp = [\"127.0.0.1:1\", \"127.0.0.1:1\"]",
            "listen.udp",
        ),
        (
            "realm = \"r\"\n[listen]\ntls = [\"127.0.0.1:5349\"]",
            "listen.tls",
        ),
        (
            "realm = \"r\"\n[listen]\nhttps = \"127.0.0.1:8443\"",
            "listen.https",
        ),
        (
            "realm = \"r\"\n[listen]\ntcp = [\"127.0.0.1:1\"]\ntls = [\"127.0.0.1:1\"]\n[tls]\ncert = \"c\"\nkey = \"k\"",
            "listen.tls",
        ),
        (
            "realm = \"r\"\n[signal]\nheartbeat-timeout = \"10s\"\nheartbeat-interval = \"20s\"",
            "signal.heartbeat-timeout",
        ),
        (
            "realm = \"r\"\n[signal]\nmax-peers-per-room = 0",
            "signal.max-peers-per-room",
        ),
        (
            "realm = \"r\"\n[signal]\njoins-per-minute-per-ip = 0",
            "signal.joins-per-minute-per-ip",
        ),
        (
            "realm = \"r\"\n[signal]\nmax-message-size = 70000\nmax-queued-bytes = 65536",
            "signal.max-queued-bytes",
        ),
        (
            "realm = \"r\"\n[server]\nmax-tcp-queued-bytes = 1000",
            "server.max-tcp-queued-bytes",
        ),
        (
            "realm = \"r\"\n[signal]\nallowed-origins = [\"app.example.org\"]",
            "signal.allowed-origins",
        ),
        (
            "realm = \"r\"\n[ice]\npublic-host = \"http://x/\"",
            "ice.public-host",
        ),
        (
            "realm = \"r\"\n[relay]\nmin-port = 6000\nmax-port = 5000",
            "relay.min-port",
        ),
        (
            "realm = \"r\"\n[relay]\nrelay-ip = \"0.0.0.0\"",
            "relay.relay-ip",
        ),
        (
            "realm = \"r\"\n[relay]\nrelay-ip = \"10.0.0.1\"\nexternal-ip = \"::1\"",
            "relay.external-ip",
        ),
        ("realm = \"r\"\n[auth.users]\nbob = \"\"", "auth.users.bob"),
        (
            "realm = \"r\"\n[auth.users]\nbob = \"0x1234\"",
            "auth.users.bob",
        ),
        (
            "realm = \"r\"\n[auth]\nstatic-auth-secret = [\"\"]",
            "auth.static-auth-secret[0]",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(err(text).key, key, "for {text:?}");
    }
}

#[test]
fn every_shipped_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::read(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no config files in {}", dir.display());
}

#[test]
fn read_error_names_the_file() {
    let e = Config::read(Path::new("/nonexistent/rturn.toml")).unwrap_err();
    assert!(
        e.to_string().starts_with("/nonexistent/rturn.toml: "),
        "{e}"
    );
}

/// `#[serde(default)]` on each section: an empty section, like a missing one, takes
/// exactly `impl Default`, and those are the values rturn has always had.
#[test]
fn empty_sections_take_each_sections_default() {
    let c = Config::from_toml(
        "realm = \"example.org\"\n[server]\n[listen]\n[relay]\n[auth]\n[signal]\n[ice]\n[admin]\n\
         [cluster]\n",
    )
    .unwrap();
    let missing = Config::from_toml(MINIMAL).unwrap();
    for (section, empty, default) in [
        (
            "server",
            format!("{:?}", c.server),
            format!("{:?}", ServerConfig::default()),
        ),
        (
            "listen",
            format!("{:?}", c.listen),
            format!("{:?}", ListenConfig::default()),
        ),
        (
            "relay",
            format!("{:?}", c.relay),
            format!("{:?}", RelayConfig::default()),
        ),
        (
            "auth",
            format!("{:?}", c.auth),
            format!("{:?}", AuthConfig::default()),
        ),
        (
            "signal",
            format!("{:?}", c.signal),
            format!("{:?}", SignalConfig::default()),
        ),
        (
            "ice",
            format!("{:?}", c.ice),
            format!("{:?}", IceConfig::default()),
        ),
        (
            "admin",
            format!("{:?}", c.admin),
            format!("{:?}", AdminConfig::default()),
        ),
        (
            "cluster",
            format!("{:?}", c.cluster),
            format!("{:?}", ClusterConfig::default()),
        ),
    ] {
        assert_eq!(empty, default, "[{section}]");
    }
    assert_eq!(format!("{missing:?}"), format!("{c:?}"));
    let s = &c.signal;
    assert_eq!(
        (s.heartbeat_interval, s.heartbeat_timeout),
        (Duration::from_secs(25), Duration::from_secs(60))
    );
    assert_eq!((s.max_peers_per_room, s.max_message_size), (16, 64 * 1024));
    assert_eq!((s.messages_per_second, s.joins_per_minute_per_ip), (50, 60));
    assert_eq!((s.max_connections, s.max_connections_per_ip), (10_000, 100));
    assert!(s.allowed_origins.is_empty() && s.token_secret.is_none());
    assert_eq!(c.ice.credential_ttl, Duration::from_secs(3600));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(3600));
    assert_eq!(c.server.max_tcp_connections, 10_000);
    let r = &c.relay;
    assert_eq!(
        (
            r.allocation_lifetime,
            r.max_allocation_lifetime,
            r.permission_lifetime,
            r.channel_lifetime
        ),
        (
            Duration::from_secs(600),
            Duration::from_secs(3600),
            Duration::from_secs(300),
            Duration::from_secs(600)
        )
    );
    assert_eq!((r.user_quota, r.total_quota), (0, 0));
    assert_eq!(
        (c.auth.rest_separator, c.auth.nonce_lifetime),
        (':', Duration::from_secs(600))
    );
    assert!(c.listen.tls.is_empty() && c.listen.http.is_none() && c.listen.https.is_none());
}

/// Every section refuses a key it does not have, by its full name and line.
#[test]
fn every_section_refuses_unknown_keys() {
    for section in [
        "server", "listen", "relay", "auth", "signal", "ice", "admin", "cluster", "tls",
    ] {
        let e = err(&format!("realm = \"r\"\n[{section}]\nbogus-key = 1\n"));
        assert_eq!(e.key, format!("{section}.bogus-key"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }
}
