//! Reading coturn's lines and reporting what was skipped: line syntax, flags, options rturn
//! lacks or does not know, repeats, and a whole production file.

use std::net::IpAddr;

use super::{addrs, attention_lines, nets, run, skip, skipped};
use crate::coturn::OPTIONS;
use crate::coturn::finish::PLACEHOLDER_REALM;
use crate::coturn::line::Line;
use crate::coturn::unsupported::UNSUPPORTED;

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
fn options_rturn_lacks_are_skipped_with_the_reason() {
    let text = "realm=r\nlog-file=/var/log/turn.log\nsyslog\nsimple-log\nverbose\nVerbose\n\
                no-stdout-log\nprometheus\nno-cli\ncli-ip=127.0.0.1\ncli-port=5766\n\
                cli-password=qwerty\nfingerprint\ncheck-origin-consistency\nno-software-attribute\n\
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
        ("prometheus", "listen.http serves it on 127.0.0.1:9641"),
        ("no-cli", "no telnet CLI"),
        ("cli-ip", "no telnet CLI"),
        ("cli-port", "no telnet CLI"),
        ("cli-password", "no telnet CLI"),
        ("fingerprint", "FINGERPRINT"),
        ("check-origin-consistency", "ORIGIN"),
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
    // What needs attention: only that the service cannot read certbot's files.
    let attention = attention_lines(&c);
    assert_eq!(attention.len(), 2, "{}", c.toml);
    assert!(attention[0].starts_with("#   line 15: cert: /etc/letsencrypt/live/"));
    assert!(attention[1].starts_with("#   line 16: pkey: "));
    assert_eq!(config.listen.http, Some("127.0.0.1:8080".parse().unwrap()));
    assert!(
        c.skipped.iter().all(|s| s.starts_with("line ")),
        "{:#?}",
        c.skipped
    );
}
