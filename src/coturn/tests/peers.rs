//! allowed-peer-ip and denied-peer-ip: coturn's ranges as exact CIDR blocks, and which wins.

use std::net::IpAddr;

use super::{nets, run, skip};
use crate::coturn::ranges::{Range, bits};

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
