//! Where rturn listens and relays: listening-ip and ports, TLS listeners, relay-ip,
//! external-ip, the relay port range, and the lifetimes, quotas and workers.

use std::net::IpAddr;
use std::time::Duration;

use super::{addrs, attention_lines, run, skip, skipped};
use crate::coturn::finish::{PLACEHOLDER_RELAY_IP, PUBLIC_PLACEHOLDER_RELAY_IP};

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
