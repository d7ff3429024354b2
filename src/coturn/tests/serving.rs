//! What the converted file serves beyond TURN and what its messages say about it: the HTTP
//! listener for `/metrics` and `/healthz`, the alternate server, certificates the service
//! cannot read, options named in the wrong letters, and coturn's newer options.

use std::net::SocketAddr;

use super::{attention_lines, run, skip, skipped};
use crate::coturn::unsupported::UNSUPPORTED;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn metrics_and_healthz_are_served_on_loopback_without_prometheus() {
    let (config, c) = run("realm=r\n");
    assert_eq!(config.listen.http, Some(addr("127.0.0.1:8080")));
    // Said in the TOML beside the key: what it serves, and what to do before opening it.
    assert!(c.toml.contains("# /healthz and /metrics"), "{}", c.toml);
    assert!(c.toml.contains("token-secret"), "{}", c.toml);
    assert!(!skipped(&c, "prometheus"), "{:#?}", c.skipped);
    // prometheus-port and -address without prometheus: coturn served nothing there.
    let (config, c) = run("realm=r\nprometheus-port=9100\nprometheus-address=10.0.0.5\n");
    assert_eq!(config.listen.http, Some(addr("127.0.0.1:8080")));
    assert!(skip(&c, "line 2: prometheus-port: ").contains("prometheus is off"));
    assert!(skip(&c, "line 3: prometheus-address: ").contains("prometheus is off"));
}

#[test]
fn prometheus_becomes_listen_http() {
    // coturn's default: every address, port 9641. rturn keeps it on loopback and says why.
    let (config, c) = run("realm=r\nprometheus\n");
    assert_eq!(config.listen.http, Some(addr("127.0.0.1:9641")));
    let why = skip(&c, "line 2: prometheus: ");
    assert!(
        why.contains("127.0.0.1:9641") && why.contains("token-secret"),
        "{why}"
    );
    assert!(!why.contains("not served"), "{why}");
    let (config, _) = run("realm=r\nprometheus\nprometheus-address=0.0.0.0\n");
    assert_eq!(config.listen.http, Some(addr("127.0.0.1:9641")));

    // A named address and port are kept; a public one is reported for what else it serves.
    let (config, c) =
        run("realm=r\nprometheus\nprometheus-port=9100\nprometheus-address=10.0.0.5\n");
    assert_eq!(config.listen.http, Some(addr("10.0.0.5:9100")));
    assert!(skip(&c, "line 4: prometheus-address: ").contains("/ws"));
    assert!(!skipped(&c, "line 2:") && !skipped(&c, "line 3:"));
    let (config, c) = run("realm=r\nprometheus\nprometheus-address=127.0.0.1\n");
    assert_eq!(config.listen.http, Some(addr("127.0.0.1:9641")));
    assert!(!skipped(&c, "line "), "{:#?}", c.skipped);

    // A port STUN/TURN's TCP listener holds: no HTTP listener, and the reason.
    let (config, c) = run("realm=r\nprometheus\nprometheus-port=3478\n");
    assert_eq!(config.listen.http, None);
    assert!(skip(&c, "line 2: prometheus-port: ").contains("no listen.http"));
    // rturn's usual 8080 taken by coturn's listening-port: said without a prometheus line.
    let (config, c) = run("realm=r\nlistening-port=8080\n");
    assert_eq!(config.listen.http, None);
    assert!(skip(&c, "http: ").contains("no listen.http"));
}

#[test]
fn prometheus_options_rturn_lacks_say_what_it_does_instead() {
    let text = "realm=r\nprometheus\nprometheus-username-labels\nprometheus-path=/stats\n\
                prometheus-tls\n";
    let (_, c) = run(text);
    assert!(skip(&c, "line 3: prometheus-username-labels: ").contains("no per-user labels"));
    assert!(skip(&c, "line 4: prometheus-path: ").contains("/metrics"));
    assert!(skip(&c, "line 5: prometheus-tls: ").contains("listen.https"));
}

#[test]
fn alternate_server_becomes_relay_alternate_server() {
    let (config, c) = run("realm=r\nalternate-server=192.0.2.8:5678\nalternate-server=5.6.7.8\n");
    assert_eq!(config.relay.alternate_server, Some(addr("192.0.2.8:5678")));
    // Converted, but it behaves differently: reported under "Needs attention".
    let why = skip(&c, "line 2: alternate-server: ");
    assert!(
        why.contains("full or draining") && why.contains("every"),
        "{why}"
    );
    assert!(skip(&c, "line 3: alternate-server: ").contains("one alternate"));
    assert!(
        attention_lines(&c)
            .iter()
            .any(|l| l.contains("line 2: alternate-server")),
        "{}",
        c.toml
    );
    // coturn's default port, and the IPv6 forms.
    let (config, _) = run("realm=r\nalternate-server=5.6.7.8\n");
    assert_eq!(config.relay.alternate_server, Some(addr("5.6.7.8:3478")));
    let (config, _) = run("realm=r\nalternate-server=[2001:db8::1]:3479\n");
    assert_eq!(
        config.relay.alternate_server,
        Some(addr("[2001:db8::1]:3479"))
    );
    let (config, _) = run("realm=r\nalternate-server=2001:db8::1\n");
    assert_eq!(
        config.relay.alternate_server,
        Some(addr("[2001:db8::1]:3478"))
    );
    let (config, c) = run("realm=r\nalternate-server=turn.example.org\n");
    assert_eq!(config.relay.alternate_server, None);
    assert!(skip(&c, "line 2: alternate-server: ").contains("not an address"));
    // The per-transport ones point at the one rturn has.
    let (_, c) = run("realm=r\ntls-alternate-server=1.2.3.4:5349\n");
    let why = skip(&c, "line 2: tls-alternate-server: ");
    assert!(why.contains("[relay] alternate-server"), "{why}");
    assert!(!why.contains("does not redirect"), "{why}");
}

#[test]
fn certificates_under_letsencrypt_are_flagged() {
    let text = "realm=r\ncert=/etc/letsencrypt/live/t.example.org/fullchain.pem\n\
                pkey=/etc/letsencrypt/live/t.example.org/privkey.pem\n";
    let (config, c) = run(text);
    // Kept (the operator may grant access), but said: the service cannot read them.
    let tls = config.tls.unwrap();
    assert!(tls.cert.starts_with("/etc/letsencrypt"));
    let why = skip(&c, "line 2: cert: ");
    assert!(
        why.contains("root") && why.contains("systemd/rturn.service"),
        "{why}"
    );
    assert!(skip(&c, "line 3: pkey: ").contains("line 2"));
    assert!(
        c.toml
            .contains("# CHANGE ME: rturn's service cannot read /etc/letsencrypt")
    );
    // Elsewhere nothing is said.
    let (_, c) = run("realm=r\ncert=/etc/rturn/cert.pem\npkey=/etc/rturn/key.pem\n");
    assert!(
        !skipped(&c, "line 2") && !skipped(&c, "line 3"),
        "{:#?}",
        c.skipped
    );
    assert!(!c.toml.contains("CHANGE ME: rturn's service"));
}

#[test]
fn ca_file_is_explained_in_any_letters() {
    let (_, c) = run("realm=r\nCA-file=/etc/ssl/ca.pem\n");
    let why = skip(&c, "line 2: CA-file: ");
    assert!(
        why.contains("client certificate") && why.contains("fullchain"),
        "{why}"
    );
    // coturn's names are case-sensitive: coturn ignored this line; say which option it is.
    let (_, c) = run("realm=r\nca-file=/etc/ssl/ca.pem\nRealm=x\n");
    let why = skip(&c, "line 2: ca-file: ");
    assert!(
        why.contains("coturn ignored") && why.contains("CA-file"),
        "{why}"
    );
    assert!(why.contains("client certificate"), "{why}");
    assert!(!why.contains("unknown"), "{why}");
    assert!(skip(&c, "line 3: Realm: ").contains("if realm was meant"));
}

#[test]
fn newer_coturn_options_are_known() {
    let text = "realm=r\ndtls\ncli\ncpus=4\ndrain-min-allocations=5\nudp-gso\n\
                stateless-nonce\nstateless-nonce-secret=abc\nunauthorized-ratelimit\n\
                include-reason-string\nrfc5766-channel-numbers\ntlsv1\n\
                udp-alternate-server=1.2.3.4\ntcp-alternate-server=1.2.3.4\n";
    let (_, c) = run(text);
    assert!(
        !c.skipped.iter().any(|s| s.contains("unknown")),
        "{:#?}",
        c.skipped
    );
    assert!(skip(&c, "line 2: dtls: ").contains("no DTLS"));
    assert!(skip(&c, "line 8: stateless-nonce-secret: ").contains("nonce-secret"));
    assert!(
        !c.skipped.iter().any(|s| s.contains("abc")),
        "a secret is never echoed"
    );
    assert!(skip(&c, "line 11: rfc5766-channel-numbers: ").contains("already so"));
    // The DTLS note says which coturn served DTLS without being asked.
    let (_, c) = run("realm=r\ncert=/c.pem\npkey=/k.pem\n");
    assert!(skip(&c, "dtls: ").contains("before 4.17"));
}

#[test]
fn no_reason_claims_what_rturn_now_does() {
    // Statements once true and no longer: each feature now exists.
    for (name, _, why) in UNSUPPORTED {
        for stale in [
            "not served by this version",
            "does not redirect clients",
            "no web admin interface",
        ] {
            assert!(!why.contains(stale), "{name}: {why}");
        }
    }
}

#[test]
fn mobility_and_no_tcp_relay_map_to_relay_keys() {
    // coturn's defaults: TCP relays on, mobility off; so are rturn's.
    let (config, c) = run("realm=r\n");
    assert!(config.relay.tcp_allocations && !config.relay.mobility);
    assert!(!c.toml.contains("mobility") && !c.toml.contains("tcp-allocations"));
    let (config, c) = run("realm=r\nmobility\nno-tcp-relay\n");
    assert!(config.relay.mobility);
    assert!(!config.relay.tcp_allocations);
    assert!(
        c.toml.contains("mobility = true # mobility (line 2)"),
        "{}",
        c.toml
    );
    assert!(
        c.toml
            .contains("tcp-allocations = false # no-tcp-relay (line 3)")
    );
    // Neither line is reported as skipped.
    assert!(
        !c.skipped
            .iter()
            .any(|s| s.contains("mobility") || s.contains("tcp-relay"))
    );
}
