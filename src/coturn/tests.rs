use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::finish::{
    PLACEHOLDER_REALM, PLACEHOLDER_RELAY_IP, PUBLIC_PLACEHOLDER_RELAY_IP, key, quote,
};
use super::ranges::{Range, bits};
use super::unsupported::UNSUPPORTED;
use super::*;
use crate::Config;

/// Converts `text`, and checks the TOML passes rturn's own validation.
fn run(text: &str) -> (Config, Conversion) {
    let c = convert(text);
    let config = Config::from_toml(&c.toml).unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    assert!(
        !c.skipped.iter().any(|s| s.contains("does not pass")),
        "{:#?}",
        c.skipped
    );
    (config, c)
}

/// The skipped entry starting with `prefix`.
fn skip<'a>(c: &'a Conversion, prefix: &str) -> &'a str {
    c.skipped
        .iter()
        .find(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("nothing skipped starts with {prefix:?}: {:#?}", c.skipped))
}

fn skipped(c: &Conversion, prefix: &str) -> bool {
    c.skipped.iter().any(|s| s.starts_with(prefix))
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn nets(list: &[IpNet]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// The lines under "Needs attention" in the TOML header.
fn attention_lines(c: &Conversion) -> Vec<&str> {
    c.toml
        .lines()
        .skip_while(|l| !l.starts_with("# Needs attention"))
        .skip(1)
        .take_while(|l| l.starts_with("#   "))
        .collect()
}

#[test]
fn empty_file_is_a_stun_server_on_every_address() {
    let (config, c) = run("");
    assert_eq!(config.realm, PLACEHOLDER_REALM);
    assert!(c.toml.contains("realm = \"example.org\" # CHANGE ME"));
    assert_eq!(config.listen.udp, addrs(&["0.0.0.0:3478"]));
    assert_eq!(config.listen.tcp, addrs(&["0.0.0.0:3478"]));
    assert!(config.listen.tls.is_empty() && config.tls.is_none());
    assert!(config.relay.relay_ip.is_empty());
    assert!(config.auth.users.is_empty() && config.auth.static_auth_secret.is_empty());
    assert!(skip(&c, "realm: not set").contains("CHANGE ME"));
    assert!(skip(&c, "tls: ").contains("no TLS listener"));
    assert!(
        c.toml
            .starts_with("# rturn configuration converted from a coturn")
    );
    assert!(c.toml.contains("\"[::]:3478\""), "IPv6 hint:\n{}", c.toml);
}

#[test]
fn lines_are_read_as_coturn_reads_them() {
    let text = "  # a comment\n\n\t\n--realm=example.org\nlistening-port 4000\n\
                min-port\t=\t50000\nmax-port==50100\nno-tcp\r\nuser=\"bob:two words, sixteen+\"\n\
                use-auth-secret\nstatic-auth-secret=abc#def # not a comment at all\n";
    let (config, c) = run(text);
    assert_eq!(config.realm, "example.org");
    assert_eq!(config.listen.udp, addrs(&["0.0.0.0:4000"]));
    assert!(config.listen.tcp.is_empty(), "no-tcp");
    assert_eq!(
        (config.relay.min_port, config.relay.max_port),
        (50000, 50100)
    );
    assert_eq!(config.auth.users["bob"], "two words, sixteen+");
    assert_eq!(
        config.auth.static_auth_secret,
        ["abc#def # not a comment at all"]
    );
    // Lines 1-3 are a comment and blank lines; nothing else was skipped but what the file
    // lacks (a relay address for the user, TLS).
    assert!(
        c.skipped.iter().all(|s| !s.starts_with("line ")),
        "{:#?}",
        c.skipped
    );
}

#[test]
fn line_parsing() {
    let l = Line::parse(7, "--user = \"a:b c\"  ").unwrap();
    assert_eq!((l.number, l.name, l.value), (7, "user", "a:b c"));
    let l = Line::parse(1, "fingerprint").unwrap();
    assert_eq!((l.name, l.value), ("fingerprint", ""));
    let l = Line::parse(1, "log-file /var/log/turn.log").unwrap();
    assert_eq!((l.name, l.value), ("log-file", "/var/log/turn.log"));
    assert!(Line::parse(1, "   # realm=x").is_none());
    assert!(Line::parse(1, "   ").is_none());
}

#[test]
fn flag_values_follow_coturn() {
    for (value, on) in [
        ("", true),
        ("=1", true),
        ("=yes", true),
        ("=true", true),
        ("=on", true),
        ("=0", false),
        ("=no", false),
        ("=false", false),
        ("=off", false),
        ("=OFF", false),
    ] {
        let (config, _) = run(&format!("no-udp{value}\n"));
        assert_eq!(config.listen.udp.is_empty(), on, "no-udp{value}");
    }
    let (config, c) = run("no-udp=maybe\n");
    assert!(!config.listen.udp.is_empty());
    assert!(skip(&c, "line 1: no-udp: ").contains("not on/off"));
    // A switched-off flag rturn has nothing for is coturn's default: nothing to report.
    let (_, c) = run("realm=r\nsecure-stun=0\nno-cli=off\n");
    assert!(
        !skipped(&c, "line 2") && !skipped(&c, "line 3"),
        "{:#?}",
        c.skipped
    );
}

#[test]
fn listening_ips_and_ports() {
    let text = "realm=r\nlistening-ip=192.0.2.1\nlistening-ip=2001:db8::1\nlistening-ip=192.0.2.1\n\
                listening-port=3479\nlistening-ip=bogus\n";
    let (config, c) = run(text);
    let both = addrs(&["192.0.2.1:3479", "[2001:db8::1]:3479"]);
    assert_eq!(config.listen.udp, both);
    assert_eq!(config.listen.tcp, both);
    assert!(skip(&c, "line 4: listening-ip: ").contains("already listed on line 2"));
    assert!(skip(&c, "line 6: listening-ip: ").contains("not an IP address"));
    assert!(
        !c.toml.contains("[::]"),
        "no IPv6 hint when addresses are given"
    );
}

#[test]
fn no_udp_and_no_tcp_together_keep_tcp() {
    let (config, c) = run("realm=r\nno-udp\nno-tcp\n");
    assert!(config.listen.udp.is_empty());
    assert_eq!(config.listen.tcp, addrs(&["0.0.0.0:3478"]));
    assert!(skip(&c, "line 3: no-tcp: ").contains("TCP stays"));
}

#[test]
fn tls_listeners_need_cert_and_pkey() {
    let text = "realm=r\nlistening-ip=192.0.2.1\ntls-listening-port=443\n\
                cert=/etc/ssl/turn.pem\npkey=/etc/ssl/turn.key\n";
    let (config, c) = run(text);
    assert_eq!(config.listen.tls, addrs(&["192.0.2.1:443"]));
    let tls = config.tls.unwrap();
    assert_eq!(tls.cert.to_str(), Some("/etc/ssl/turn.pem"));
    assert_eq!(tls.key.to_str(), Some("/etc/ssl/turn.key"));
    assert!(skip(&c, "dtls: ").contains("no DTLS"));
    assert!(attention_lines(&c).iter().any(|l| l.contains("dtls: ")));

    let (config, c) = run(&format!("{text}no-dtls\n"));
    assert!(!skipped(&c, "dtls"));
    assert!(skip(&c, "line 6: no-dtls: ").contains("already so"));
    assert_eq!(config.listen.tls.len(), 1);

    let (config, c) = run(&format!("{text}no-tls\n"));
    assert!(config.listen.tls.is_empty() && config.tls.is_none());
    assert!(skip(&c, "line 3: tls-listening-port: ").contains("no-tls"));
    assert!(skip(&c, "line 4: cert: ").contains("unused"));
    assert!(skip(&c, "line 5: pkey: ").contains("unused"));

    let (config, c) = run("realm=r\ncert=/c.pem\n");
    assert!(config.listen.tls.is_empty());
    assert!(skip(&c, "line 2: cert: ").contains("without pkey"));

    let (config, c) = run("realm=r\ncert=/c.pem\npkey=/k.pem\ntls-listening-port=3478\n");
    assert!(config.listen.tls.is_empty());
    assert!(skip(&c, "line 4: tls-listening-port: ").contains("also the TCP port"));
    // Without TCP listeners the port is free for TLS.
    let (config, _) = run("realm=r\ncert=/c.pem\npkey=/k.pem\ntls-listening-port=3478\nno-tcp\n");
    assert_eq!(config.listen.tls, addrs(&["0.0.0.0:3478"]));
}

#[test]
fn relay_ip_takes_one_address_per_family() {
    let text = "realm=r\nrelay-ip=10.0.0.1\nrelay-ip=10.0.0.2\nrelay-ip=2001:db8::1\n\
                relay-ip=0.0.0.0\nrelay-ip=2001:db8::2\n";
    let (config, c) = run(text);
    let want: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
    assert_eq!(config.relay.relay_ip, want);
    assert!(skip(&c, "line 3: relay-ip: ").contains("10.0.0.1 (line 2) is kept"));
    assert!(skip(&c, "line 5: relay-ip: ").contains("cannot be a relay address"));
    assert!(skip(&c, "line 6: relay-ip: ").contains("2001:db8::1 (line 4) is kept"));
}

#[test]
fn relay_ip_comes_from_what_coturn_would_relay_from() {
    // Credentials need a relay address; coturn relays from the listening addresses.
    let users = "realm=r\nuser=alice:secret-pw-sixteen+\n";
    let (config, c) = run(&format!(
        "{users}listening-ip=0.0.0.0\nlistening-ip=192.0.2.7\n"
    ));
    assert_eq!(
        config.relay.relay_ip,
        ["192.0.2.7".parse::<IpAddr>().unwrap()]
    );
    assert!(c.toml.contains("# From listening-ip"));
    assert!(!skipped(&c, "relay-ip"));

    // Else external-ip's private address.
    let (config, _) = run(&format!("{users}external-ip=203.0.113.7/10.0.0.5\n"));
    assert_eq!(
        config.relay.relay_ip,
        ["10.0.0.5".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(config.relay.external_ip, ["203.0.113.7/10.0.0.5"]);

    // Else a loud placeholder: loopback beside loopback listeners, else one that
    // --check-config refuses as not this machine's (rturn refuses loopback there).
    let (config, _) = run(&format!("{users}listening-ip=127.0.0.1\n"));
    assert_eq!(config.relay.relay_ip, [PLACEHOLDER_RELAY_IP]);
    let (config, c) = run(users);
    assert_eq!(config.relay.relay_ip, [PUBLIC_PLACEHOLDER_RELAY_IP]);
    assert!(c.toml.contains("# CHANGE ME: this machine's address"));
    assert!(skip(&c, "relay-ip: not set").contains("CHANGE ME"));
    assert!(attention_lines(&c).iter().any(|l| l.contains("relay-ip: ")));

    // Nothing to relay for: no relay-ip at all.
    let (config, _) = run("realm=r\nlistening-ip=192.0.2.7\n");
    assert!(config.relay.relay_ip.is_empty());
}

#[test]
fn external_ip_both_forms() {
    let text = "realm=r\nrelay-ip=10.0.0.5\nrelay-ip=fd00::5\nexternal-ip=203.0.113.7\n\
                external-ip=2001:db8::7/fd00::5\nexternal-ip=203.0.113.8/10.0.0.5\n\
                external-ip=198.51.100.1/10.9.9.9\nexternal-ip=turn.example.org\n\
                external-ip=203.0.113.9/fd00::5\n";
    let (config, c) = run(text);
    assert_eq!(
        config.relay.external_ip,
        ["203.0.113.7", "2001:db8::7/fd00::5"]
    );
    let pairs = config.external_ips().unwrap();
    assert_eq!(
        pairs[0],
        ("10.0.0.5".parse().unwrap(), "203.0.113.7".parse().unwrap())
    );
    assert!(skip(&c, "line 6: external-ip: ").contains("already mapped on line 4"));
    assert!(skip(&c, "line 7: external-ip: ").contains("10.9.9.9 is not a relay-ip"));
    assert!(skip(&c, "line 8: external-ip: ").contains("not an IP address"));
    assert!(skip(&c, "line 9: external-ip: ").contains("differ in IP family"));

    // A public-only IPv6 mapping with only an IPv4 relay cannot apply.
    let (config, c) = run("realm=r\nrelay-ip=10.0.0.5\nexternal-ip=2001:db8::7\n");
    assert!(config.relay.external_ip.is_empty());
    assert!(skip(&c, "line 3: external-ip: ").contains("same IP family"));
}

#[test]
fn relay_port_range() {
    let (config, _) = run("realm=r\nmin-port=40000\nmax-port=40100\n");
    assert_eq!(
        (config.relay.min_port, config.relay.max_port),
        (40000, 40100)
    );
    let (config, c) = run("realm=r\nmin-port=6000\nmax-port=5000\n");
    assert_eq!(
        (config.relay.min_port, config.relay.max_port),
        (49152, 65535)
    );
    assert!(skip(&c, "line 2: min-port: ").contains("empty"));
    assert!(skip(&c, "line 3: max-port: ").contains("empty"));
    let (_, c) = run("realm=r\nmin-port=70000\n");
    assert!(skip(&c, "line 2: min-port: ").contains("not a port number"));
}

#[test]
fn users_plain_and_md5_keys() {
    let text = "realm=north.gov\nlt-cred-mech\nrelay-ip=192.0.2.1\n\
                user=ninefingers:0xbc807ee29df3c9ffa736523fb2c4e8ee\nuser=alice:wonderland-16-chars\n\
                user=bob:0x1234\nuser=carol\nuser=alice:looking-glass-16chars\nuser=:nobody\n\
                user=al ice:spaced-out-16-chars\n";
    let (config, c) = run(text);
    let users = &config.auth.users;
    assert_eq!(users["ninefingers"], "0xbc807ee29df3c9ffa736523fb2c4e8ee");
    assert_eq!(
        users["alice"], "looking-glass-16chars",
        "the last one counts"
    );
    assert_eq!(users["al ice"], "spaced-out-16-chars");
    assert_eq!(users.len(), 3);
    assert!(c.toml.contains("\"al ice\" = \"spaced-out-16-chars\""));
    assert!(skip(&c, "line 5: user: ").contains("again on line 8"));
    assert!(skip(&c, "line 6: user: ").contains("32 hex digits"));
    assert!(skip(&c, "line 7: user: ").contains("name:password"));
    assert!(skip(&c, "line 9: user: ").contains("empty"));
    assert!(
        !skipped(&c, "line 2"),
        "lt-cred-mech with users is converted"
    );
    // Passwords never appear in what is reported.
    assert!(
        !c.skipped
            .iter()
            .any(|s| s.contains("wonderland") || s.contains("0x1234"))
    );
}

/// rturn refuses secrets shorter than 16 characters and a loopback relay-ip beside a public
/// listener; the converter leaves them out and says so, so the file still passes.
#[test]
fn short_secrets_and_loopback_relay_ips_are_left_out_on_public_listeners() {
    let text = "realm=r\nrelay-ip=127.0.0.1\nrelay-ip=2001:db8::9\nuser=alice:short\n\
                user=bob:0xbc807ee29df3c9ffa736523fb2c4e8ee\nuse-auth-secret\n\
                static-auth-secret=tiny\n";
    let (config, c) = run(text);
    assert_eq!(
        config.relay.relay_ip,
        ["2001:db8::9".parse::<IpAddr>().unwrap()]
    );
    assert!(skip(&c, "line 2: relay-ip: ").contains("loopback"));
    assert_eq!(config.auth.users.keys().collect::<Vec<_>>(), ["bob"]);
    assert!(skip(&c, "line 4: user: ").contains("shorter than 16"));
    assert!(config.auth.static_auth_secret.is_empty());
    assert!(skip(&c, "line 7: static-auth-secret: ").contains("shorter than 16"));
    // On loopback listeners they stay.
    let (config, _) = run(&format!("{text}listening-ip=127.0.0.1\n"));
    assert_eq!(config.auth.users["alice"], "short");
    assert_eq!(config.auth.static_auth_secret, ["tiny"]);
    assert_eq!(config.relay.relay_ip[0], PLACEHOLDER_RELAY_IP);
}

#[test]
fn rest_secrets_separator_and_nonce() {
    let text = "realm=r\nrelay-ip=192.0.2.1\nuse-auth-secret\nstatic-auth-secret=first-secret-16ch\n\
                static-auth-secret=second-secret-16c\nstatic-auth-secret=first-secret-16ch\nrest-api-separator=-\n\
                stale-nonce\n";
    let (config, c) = run(text);
    assert_eq!(
        config.auth.static_auth_secret,
        ["first-secret-16ch", "second-secret-16c"]
    );
    assert_eq!(config.auth.rest_separator, '-');
    assert_eq!(config.auth.nonce_lifetime, Duration::from_secs(600));
    assert!(skip(&c, "line 6: static-auth-secret: ").contains("same secret as line 4"));
    assert!(!c.skipped.iter().any(|s| s.contains("first")));

    let (config, _) = run("realm=r\nstale-nonce=120\n");
    assert_eq!(config.auth.nonce_lifetime, Duration::from_secs(120));
    let (config, c) = run("realm=r\nstale-nonce=5\n");
    assert_eq!(config.auth.nonce_lifetime, Duration::from_secs(600));
    assert!(skip(&c, "line 2: stale-nonce: ").contains("10s"));
    let (_, c) = run("realm=r\nstale-nonce=0\n");
    assert!(skip(&c, "line 2: stale-nonce: ").contains("always expire"));
}

#[test]
fn secrets_survive_quoting_verbatim() {
    let nasty = r#"q"uo\te'd #1 \n ünï €"#;
    let text = format!(
        "realm=r\\\"x\nrelay-ip=192.0.2.1\nuse-auth-secret\nstatic-auth-secret={nasty}\n\
         user=dave:{nasty}\nrest-api-separator=\"\n"
    );
    let (config, _) = run(&text);
    assert_eq!(config.realm, r#"r\"x"#);
    assert_eq!(config.auth.static_auth_secret, [nasty]);
    assert_eq!(config.auth.users["dave"], nasty);
    // coturn strips a leading quote from a value: `rest-api-separator="` is empty to coturn.
    let (config, c) = run("realm=r\nrest-api-separator=\"\\\"\n");
    assert_eq!(config.auth.rest_separator, '\\');
    assert!(!skipped(&c, "line 2"), "{:#?}", c.skipped);
}

#[test]
fn quote_escapes_what_toml_needs() {
    for s in [
        "plain",
        "a\"b",
        "back\\slash",
        "tab\there",
        "bell\u{7}",
        "del\u{7f}",
        "é€😀",
    ] {
        let doc = format!("v = {}\n", quote(s));
        let value: toml::Table = toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!(value["v"].as_str(), Some(s));
    }
    assert_eq!(key("alice_1-x"), "alice_1-x");
    assert_eq!(key("a.b"), "\"a.b\"");
    assert_eq!(key(""), "\"\"");
}

#[test]
fn secrets_need_use_auth_secret_as_in_coturn() {
    let (config, c) = run("realm=r\nstatic-auth-secret=s3cret\n");
    assert!(config.auth.static_auth_secret.is_empty());
    assert!(skip(&c, "line 2: static-auth-secret: ").contains("without use-auth-secret"));

    let (_, c) = run("realm=r\nuse-auth-secret\n");
    assert!(skip(&c, "line 2: use-auth-secret: ").contains("database"));
    let (_, c) = run("realm=r\nlt-cred-mech\n");
    assert!(skip(&c, "line 2: lt-cred-mech: ").contains("[auth.users]"));
}

#[test]
fn user_databases_are_skipped() {
    let text = "realm=r\nuserdb=/var/lib/turn/turndb\npsql-userdb=\"host=db\"\n\
                mysql-userdb=\"host=db\"\nmongo-userdb=mongodb://db\nredis-userdb=\"ip=db\"\n";
    let (_, c) = run(text);
    for (line, name) in [
        (2, "userdb"),
        (3, "psql-userdb"),
        (4, "mysql-userdb"),
        (5, "mongo-userdb"),
        (6, "redis-userdb"),
    ] {
        let s = skip(&c, &format!("line {line}: {name}: "));
        assert!(
            s.contains("no database backends") && s.contains("[auth.users]"),
            "{s}"
        );
    }
}

#[test]
fn placeholder_secrets_are_refused_on_public_addresses() {
    let text = "realm=r\nrelay-ip=192.0.2.1\nuse-auth-secret\nstatic-auth-secret=change-me\n\
                user=alice:change-me\n";
    let (config, c) = run(text);
    assert!(config.auth.users.is_empty() && config.auth.static_auth_secret.is_empty());
    assert!(skip(&c, "line 4: static-auth-secret: ").contains("placeholder"));
    assert!(skip(&c, "line 5: user: ").contains("placeholder"));
    // On loopback rturn accepts it, so it is carried over.
    let (config, _) = run(&format!("{text}listening-ip=127.0.0.1\n"));
    assert_eq!(config.auth.users["alice"], "change-me");
}

#[test]
fn stun_only_carries_no_credentials() {
    let text = "realm=r\nstun-only\nuser=alice:pw\nuse-auth-secret\nstatic-auth-secret=s\n";
    let (config, c) = run(text);
    assert!(config.auth.users.is_empty() && config.auth.static_auth_secret.is_empty());
    assert!(config.relay.relay_ip.is_empty());
    assert!(skip(&c, "line 3: user: ").contains("stun-only"));
    assert!(skip(&c, "line 5: static-auth-secret: ").contains("stun-only"));
    assert!(c.toml.contains("# stun-only (line 2)"));
}

#[test]
fn peer_ranges_become_exact_cidr_blocks() {
    let text = "realm=r\ndenied-peer-ip=10.0.0.0-10.255.255.255\n\
                denied-peer-ip=192.168.1.10-192.168.1.20\n\
                denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n\
                denied-peer-ip=198.51.100.7\ndenied-peer-ip=172.16.0.0/12\n\
                denied-peer-ip=10.0.0.9-10.0.0.1\ndenied-peer-ip=10.0.0.1-::1\n\
                allowed-peer-ip=203.0.113.0 - 203.0.113.127\n";
    let (config, c) = run(text);
    assert_eq!(
        nets(&config.relay.denied_peer_ip),
        [
            "10.0.0.0/8",
            "192.168.1.10/31",
            "192.168.1.12/30",
            "192.168.1.16/30",
            "192.168.1.20/32",
            "fc00::/7",
            "198.51.100.7/32",
            "172.16.0.0/12",
        ]
    );
    assert_eq!(nets(&config.relay.allowed_peer_ip), ["203.0.113.0/25"]);
    assert!(skip(&c, "line 7: denied-peer-ip: ").contains("before it starts"));
    assert!(skip(&c, "line 8: denied-peer-ip: ").contains("IP family"));
    assert!(c.toml.contains("# line 3: 192.168.1.10-192.168.1.20"));
}

#[test]
fn cidr_blocks_cover_exactly_the_range() {
    // Every range inside a small window: the blocks tile it exactly, and never more blocks
    // than the 2 * bits bound of the greedy split.
    let base = 0x0a00_0000u128;
    for lo in 0..70 {
        for hi in lo..70 {
            let range = Range {
                v6: false,
                lo: base + lo,
                hi: base + hi,
            };
            let blocks = range.cidrs();
            let mut covered: Vec<u128> = blocks
                .iter()
                .flat_map(|n| bits(n.network())..=bits(n.broadcast()))
                .collect();
            let count = covered.len();
            covered.dedup();
            assert_eq!(covered.len(), count, "overlap in {blocks:?}");
            assert_eq!(
                covered,
                (base + lo..=base + hi).collect::<Vec<_>>(),
                "{blocks:?}"
            );
            assert!(blocks.len() <= 14, "{blocks:?}");
        }
    }
    let all4 = Range::parse("0.0.0.0-255.255.255.255").unwrap();
    assert_eq!(nets(&all4.cidrs()), ["0.0.0.0/0"]);
    let all6 = Range::parse(":: - ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").unwrap();
    assert_eq!(nets(&all6.cidrs()), ["::/0"]);
    let top = Range::parse("255.255.255.254-255.255.255.255").unwrap();
    assert_eq!(nets(&top.cidrs()), ["255.255.255.254/31"]);
    let odd = Range::parse("0.0.0.1-255.255.255.254").unwrap();
    assert_eq!(odd.cidrs().len(), 62);
}

#[test]
fn allowed_peers_win_over_denied_as_in_coturn() {
    // The example in coturn's turnserver.conf.
    let text = "realm=r\ndenied-peer-ip=83.166.64.0-83.166.95.255\nallowed-peer-ip=83.166.68.45\n";
    let (config, c) = run(text);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let denied = |a: &str| {
        config
            .relay
            .denied_peer_ip
            .iter()
            .any(|n| n.contains(&ip(a)))
    };
    let allowed = |a: &str| {
        config
            .relay
            .allowed_peer_ip
            .iter()
            .any(|n| n.contains(&ip(a)))
    };
    assert!(!denied("83.166.68.45") && allowed("83.166.68.45"));
    for a in [
        "83.166.64.0",
        "83.166.68.44",
        "83.166.68.46",
        "83.166.95.255",
    ] {
        assert!(denied(a), "{a}");
    }
    assert!(!denied("83.166.63.255") && !denied("83.166.96.0"));
    assert!(c.toml.contains("minus allowed-peer-ip"));

    let (config, c) =
        run("realm=r\ndenied-peer-ip=192.0.2.1\nallowed-peer-ip=192.0.2.0-192.0.2.255\n");
    assert!(config.relay.denied_peer_ip.is_empty());
    assert!(skip(&c, "line 2: denied-peer-ip: ").contains("wins over denied-peer-ip"));
}

#[test]
fn allowed_peers_never_admit_what_coturn_refuses_first() {
    let (config, c) = run("realm=r\nallowed-peer-ip=127.0.0.1\n");
    assert!(config.relay.allowed_peer_ip.is_empty());
    assert!(skip(&c, "line 2: allowed-peer-ip: ").contains("no effect"));
    let (config, _) = run("realm=r\nallow-loopback-peers\nallowed-peer-ip=127.0.0.1\n");
    assert!(config.relay.allow_loopback_peers);
    assert_eq!(nets(&config.relay.allowed_peer_ip), ["127.0.0.1/32"]);

    let (config, c) = run("realm=r\nno-multicast-peers\nallowed-peer-ip=0.0.0.0-255.255.255.255\n");
    let allowed = |a: &str| {
        let ip: IpAddr = a.parse().unwrap();
        config.relay.allowed_peer_ip.iter().any(|n| n.contains(&ip))
    };
    assert!(allowed("10.1.2.3") && allowed("126.255.255.255") && allowed("240.0.0.1"));
    assert!(!allowed("127.0.0.1") && !allowed("224.0.0.1") && !allowed("239.255.255.255"));
    assert!(skip(&c, "line 2: no-multicast-peers: ").contains("already the default"));
}

#[test]
fn lifetimes_quotas_and_workers() {
    let text = "realm=r\nmax-allocate-lifetime=300\nchannel-lifetime=600\npermission-lifetime=120\n\
                user-quota=10\ntotal-quota=1000\nrelay-threads=4\n";
    let (config, c) = run(text);
    let r = &config.relay;
    assert_eq!(r.max_allocation_lifetime, Duration::from_secs(300));
    assert_eq!(
        r.allocation_lifetime,
        Duration::from_secs(300),
        "capped by the maximum"
    );
    assert_eq!(r.channel_lifetime, Duration::from_secs(600));
    assert_eq!(r.permission_lifetime, Duration::from_secs(120));
    assert_eq!((r.user_quota, r.total_quota), (10, 1000));
    assert_eq!(config.server.workers, Some(4));
    assert!(c.toml.contains("max-allocation-lifetime = \"5m\""));
    let (bandwidth, converted) = run("realm=r\nmax-bps=125000\nbps-capacity=0\n");
    let r = &bandwidth.relay;
    assert_eq!((r.max_bps, r.bps_capacity), (125_000, 0));
    assert!(
        converted.toml.contains("max-bps = 125000"),
        "{}",
        converted.toml
    );
    let (too_low, converted) = run("realm=r\nmax-bps=10\n");
    assert_eq!(too_low.relay.max_bps, 0);
    assert!(skip(&converted, "line 2: max-bps: ").contains("at least 1000"));

    let (config, _) = run("realm=r\nmax-allocate-lifetime=7200\n");
    assert_eq!(
        config.relay.max_allocation_lifetime,
        Duration::from_secs(7200)
    );
    assert_eq!(config.relay.allocation_lifetime, Duration::from_secs(600));

    let (config, c) = run("realm=r\nrelay-threads=0\nchannel-lifetime=0\n");
    assert_eq!(config.server.workers, None);
    assert!(skip(&c, "line 2: relay-threads: ").contains("single-threaded"));
    assert!(skip(&c, "line 3: channel-lifetime: ").contains("at least 1 second"));
}

#[test]
fn options_rturn_lacks_are_skipped_with_the_reason() {
    let text = "realm=r\nlog-file=/var/log/turn.log\nsyslog\nsimple-log\nverbose\nVerbose\n\
                no-stdout-log\nprometheus\nno-cli\ncli-ip=127.0.0.1\ncli-port=5766\n\
                cli-password=qwerty\nfingerprint\nmobility\nno-software-attribute\n\
                secure-stun\npidfile=\"/var/run/turnserver.pid\"\nproc-user=turn\n\
                proc-group=turn\nno-tlsv1\nno-tlsv1_1\n\
                alt-listening-port=3479\nserver-name=turn.example.org\nno-loopback-peers\n";
    let (_, c) = run(text);
    let expect = [
        ("log-file", "logs to stderr"),
        ("syslog", "use -v/-q"),
        ("simple-log", "journald"),
        ("verbose", "-v/-q"),
        ("Verbose", "-v/-q"),
        ("no-stdout-log", "stderr"),
        ("prometheus", "/metrics is not served"),
        ("no-cli", "no telnet CLI"),
        ("cli-ip", "no telnet CLI"),
        ("cli-port", "no telnet CLI"),
        ("cli-password", "no telnet CLI"),
        ("fingerprint", "FINGERPRINT"),
        ("mobility", "mobility"),
        ("no-software-attribute", "already the default"),
        ("secure-stun", "without credentials"),
        ("pidfile", "systemd"),
        ("proc-user", "systemd"),
        ("proc-group", "systemd"),
        ("no-tlsv1", "TLS 1.2 and 1.3 only"),
        ("no-tlsv1_1", "TLS 1.2 and 1.3 only"),
        ("alt-listening-port", "RFC 5780"),
        ("server-name", "OAuth"),
        ("no-loopback-peers", "already the default"),
    ];
    for (i, (name, why)) in expect.iter().enumerate() {
        let s = skip(&c, &format!("line {}: {name}: ", i + 2));
        assert!(s.contains(why), "{s}");
    }
    assert!(!c.skipped.iter().any(|s| s.contains("qwerty")));
}

#[test]
fn unknown_options_are_reported_with_their_line() {
    let (_, c) = run("realm=r\n\n--frobnicate=yes\nlisten-port 3478\n");
    assert!(
        c.skipped
            .contains(&"line 3: frobnicate: unknown coturn option".to_owned())
    );
    assert!(
        c.skipped
            .contains(&"line 4: listen-port: unknown coturn option".to_owned())
    );
    let attention = attention_lines(&c);
    assert!(
        attention.contains(&"#   line 3: frobnicate: unknown coturn option"),
        "{attention:?}"
    );
    // A control character in a name does not break the TOML comment it is quoted in.
    let (_, c) = run("realm=r\nbad\u{1}name\n");
    assert!(skip(&c, "line 2: bad?name: ").contains("unknown"));
}

#[test]
fn repeated_single_options_keep_the_last() {
    let (config, c) = run("realm=first\nlistening-port=1000\nrealm=second\nlistening-port=2000\n");
    assert_eq!(config.realm, "second");
    assert_eq!(config.listen.udp, addrs(&["0.0.0.0:2000"]));
    assert!(skip(&c, "line 1: realm: ").contains("again on line 3"));
    assert!(skip(&c, "line 2: listening-port: ").contains("again on line 4"));
}

#[test]
fn bad_realm_gets_a_placeholder() {
    let (config, c) = run(&format!("realm={}\n", "x".repeat(200)));
    assert_eq!(config.realm, PLACEHOLDER_REALM);
    assert!(skip(&c, "line 1: realm: ").contains("CHANGE ME"));
}

#[test]
fn skipped_lines_are_sorted_and_well_formed() {
    let (_, c) = run("no-such=1\nsyslog\nuser=a:b-sixteen-chars!\nrealm=r\nuserdb=/x\n");
    let lines: Vec<usize> = c
        .skipped
        .iter()
        .filter_map(|s| s.strip_prefix("line "))
        .map(|s| s.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(lines, [1, 2, 5]);
    // What the file lacks comes last, without a line number.
    assert!(
        c.skipped.last().unwrap().starts_with("relay-ip: "),
        "{:#?}",
        c.skipped
    );
    for s in &c.skipped {
        let rest = s
            .strip_prefix("line ")
            .map_or(s.as_str(), |r| r.split_once(": ").unwrap().1);
        let (name, why) = rest.split_once(": ").unwrap();
        assert!(!name.is_empty() && !why.is_empty(), "{s}");
    }
}

#[test]
fn option_tables_name_each_option_once() {
    let mut names: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
    names.extend(UNSUPPORTED.iter().map(|(n, ..)| *n));
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "an option is in the tables twice");
}

#[test]
fn a_production_config_converts_whole() {
    let text = "\
# coturn for turn.example.org
listening-port=3478
tls-listening-port=5349
listening-ip=10.0.0.5
relay-ip=10.0.0.5
external-ip=203.0.113.7/10.0.0.5
min-port=49160
max-port=49200
fingerprint
use-auth-secret
static-auth-secret=0123456789abcdef
realm=turn.example.org
total-quota=100
stale-nonce=600
cert=/etc/letsencrypt/live/turn.example.org/fullchain.pem
pkey=/etc/letsencrypt/live/turn.example.org/privkey.pem
cipher-list=\"ECDHE-RSA-AES256-GCM-SHA512:DHE-RSA-AES256-GCM-SHA512\"
no-stdout-log
log-file=/var/log/turnserver.log
no-multicast-peers
no-cli
no-tlsv1
no-tlsv1_1
no-dtls
denied-peer-ip=0.0.0.0-0.255.255.255
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=100.64.0.0-100.127.255.255
denied-peer-ip=169.254.0.0-169.254.255.255
denied-peer-ip=172.16.0.0-172.31.255.255
denied-peer-ip=192.168.0.0-192.168.255.255
allowed-peer-ip=10.0.0.5
";
    let (config, c) = run(text);
    assert_eq!(config.realm, "turn.example.org");
    assert_eq!(config.listen.udp, addrs(&["10.0.0.5:3478"]));
    assert_eq!(config.listen.tls, addrs(&["10.0.0.5:5349"]));
    assert_eq!(
        config.relay.relay_ip,
        ["10.0.0.5".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(config.relay.external_ip, ["203.0.113.7/10.0.0.5"]);
    assert_eq!(config.auth.static_auth_secret, ["0123456789abcdef"]);
    assert_eq!(config.relay.total_quota, 100);
    assert_eq!(nets(&config.relay.allowed_peer_ip), ["10.0.0.5/32"]);
    let ten = "10.0.0.5".parse::<IpAddr>().unwrap();
    assert!(!config.relay.denied_peer_ip.iter().any(|n| n.contains(&ten)));
    assert!(
        attention_lines(&c).iter().all(|l| l.contains("nothing")),
        "{}",
        c.toml
    );
    assert!(
        c.skipped.iter().all(|s| s.starts_with("line ")),
        "{:#?}",
        c.skipped
    );
}
