//! Black-box: the peer rules hold against the real binary. An authenticated client with an
//! IPv4 and an IPv6 relay asks for every forbidden peer class, and every IPv6 spelling of the
//! IPv4 ones, and gets 403 for CreatePermission and ChannelBind. Where a forbidden address
//! lands on this machine (loopback, the unspecified address, the server's own listeners),
//! real sockets listen there, Send indications and ChannelData are tried, and nothing
//! arrives; `allow-loopback-peers = true` is the control showing the same sockets do receive
//! what the server relays, so the silence is the server's doing.
//!
//! Traffic goes to loopback only. Non-loopback classes are only asked for (the server
//! refuses, so nothing is sent), and data is only ever sent after the server refused both the
//! permission and the channel, so a server that relayed it would have had nothing to relay on.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rturn::client::Request;
use rturn::testkit::*;
use stun::message::METHOD_REFRESH;

/// How long a packet that must not arrive is waited for, after the server has answered a
/// request sent behind it (so it has handled everything before).
const SILENCE: Duration = Duration::from_secs(1);
/// The port of rows whose address is no socket of ours.
const ELSEWHERE: u16 = 40000;

/// Which rule refuses a row, which says what `allow-loopback-peers` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// 127.0.0.0/8 or ::1 (allowed with `allow-loopback-peers`).
    Loopback,
    /// 0.0.0.0/8 or :: (never allowed: on Linux it reaches this host).
    Unspecified,
    /// A loopback IP on one of the server's own listening ports (never a channel or Send).
    Own,
    /// Every other class (never allowed by `allow-loopback-peers`).
    Other,
}

/// One peer address to try, named for the failure message.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    peer: SocketAddr,
    class: Class,
    /// How an IPv4 address was spelled as IPv6, if it was.
    disguise: Option<&'static str>,
}

/// Every IPv6 address that carries `v4` in a way the rules must see through.
fn disguises(v4: Ipv4Addr) -> Vec<(&'static str, Ipv6Addr)> {
    let b = u128::from(v4.to_bits());
    let inverted = u128::from(!v4.to_bits());
    let v6 = Ipv6Addr::from_bits;
    vec![
        ("IPv4-mapped", v4.to_ipv6_mapped()),
        ("IPv4-compatible", v6(b)),
        ("NAT64", v6(0x0064_ff9b << 96 | b)),
        ("local-use NAT64", v6(0x0064_ff9b_0001 << 80 | b)),
        ("6to4", v6(0x2002 << 112 | b << 80)),
        (
            "6to4 with subnet",
            v6(0x2002 << 112 | b << 80 | 0xbeef << 64 | 1),
        ),
        // Teredo: server 65.54.227.120, cone flag, obfuscated port; then all zero.
        (
            "Teredo",
            v6(0x2001_0000_4136_e378_8000_63bf << 32 | inverted),
        ),
        ("Teredo, no server", v6(0x2001_0000 << 96 | inverted)),
        ("SIIT", v6(0xffff_0000 << 32 | b)),
        ("ISATAP", v6(0x2001_0db8_0000_0001_0000_5efe << 32 | b)),
        (
            "ISATAP, global",
            v6(0x2a00_1450_0000_0000_0200_5efe << 32 | b),
        ),
    ]
}

/// Where the local targets are: peer sockets on each loopback, and the server's ports.
struct Ports {
    peer4: u16,
    peer6: u16,
    udp4: u16,
    udp6: u16,
    tcp4: u16,
    tcp6: u16,
}

/// The matrix: every forbidden class, IPv4 ones also in every disguise.
fn rows(p: &Ports) -> Vec<Row> {
    let v4: &[(&str, Class, &str, u16)] = &[
        ("loopback", Class::Loopback, "127.0.0.1", p.peer4),
        ("loopback", Class::Loopback, "127.255.255.254", p.peer4),
        ("unspecified", Class::Unspecified, "0.0.0.0", p.peer4),
        ("unspecified", Class::Unspecified, "0.1.2.3", p.peer4),
        ("own udp port", Class::Own, "127.0.0.1", p.udp4),
        ("own tcp port", Class::Own, "127.0.0.1", p.tcp4),
        (
            "unspecified, own udp port",
            Class::Unspecified,
            "0.0.0.0",
            p.udp4,
        ),
        (
            "unspecified, own tcp port",
            Class::Unspecified,
            "0.0.0.0",
            p.tcp4,
        ),
        ("private", Class::Other, "10.0.0.1", ELSEWHERE),
        ("private", Class::Other, "10.255.255.254", ELSEWHERE),
        ("private", Class::Other, "172.16.0.1", ELSEWHERE),
        ("private", Class::Other, "172.31.255.254", ELSEWHERE),
        ("private", Class::Other, "192.168.0.1", ELSEWHERE),
        ("private", Class::Other, "192.168.255.254", ELSEWHERE),
        ("CGNAT", Class::Other, "100.64.0.1", ELSEWHERE),
        ("CGNAT", Class::Other, "100.127.255.254", ELSEWHERE),
        ("cloud metadata", Class::Other, "169.254.169.254", 80),
        ("link-local", Class::Other, "169.254.0.1", ELSEWHERE),
        ("multicast", Class::Other, "224.0.0.1", ELSEWHERE),
        ("multicast", Class::Other, "239.255.255.250", 1900),
        ("broadcast", Class::Other, "255.255.255.255", ELSEWHERE),
        ("reserved", Class::Other, "240.0.0.1", ELSEWHERE),
        ("reserved", Class::Other, "192.0.0.1", ELSEWHERE),
        ("benchmarking", Class::Other, "198.18.0.1", ELSEWHERE),
        ("benchmarking", Class::Other, "198.19.255.254", ELSEWHERE),
    ];
    let v6: &[(&str, Class, &str, u16)] = &[
        ("loopback", Class::Loopback, "::1", p.peer6),
        ("unspecified", Class::Unspecified, "::", p.peer6),
        ("own udp port", Class::Own, "::1", p.udp6),
        ("own tcp port", Class::Own, "::1", p.tcp6),
        (
            "unspecified, own udp port",
            Class::Unspecified,
            "::",
            p.udp6,
        ),
        ("unique-local", Class::Other, "fc00::1", ELSEWHERE),
        ("unique-local", Class::Other, "fdff:ffff:ffff::1", ELSEWHERE),
        ("link-local", Class::Other, "fe80::1", ELSEWHERE),
        ("link-local", Class::Other, "febf:ffff::1", ELSEWHERE),
        ("site-local", Class::Other, "fec0::1", ELSEWHERE),
        ("site-local", Class::Other, "feff:ffff::1", ELSEWHERE),
        ("multicast", Class::Other, "ff02::1", ELSEWHERE),
        ("multicast", Class::Other, "ff0e::1", ELSEWHERE),
        ("multicast", Class::Other, "ff05::1:3", 547),
        ("discard-only", Class::Other, "100::1", ELSEWHERE),
        ("local-use NAT64", Class::Other, "64:ff9b:1::1", ELSEWHERE),
    ];
    let mut rows = Vec::new();
    for &(class_name, class, ip, port) in v4 {
        let ip: Ipv4Addr = ip.parse().unwrap();
        let peer = SocketAddr::new(ip.into(), port);
        rows.push(Row {
            name: format!("{class_name} {peer}"),
            peer,
            class,
            disguise: None,
        });
        for (disguise, v6) in disguises(ip) {
            let peer = SocketAddr::new(v6.into(), port);
            rows.push(Row {
                name: format!("{class_name} {ip} as {disguise} {peer}"),
                peer,
                class,
                disguise: Some(disguise),
            });
        }
    }
    for &(class_name, class, ip, port) in v6 {
        let peer = SocketAddr::new(ip.parse().unwrap(), port);
        rows.push(Row {
            name: format!("{class_name} {peer}"),
            peer,
            class,
            disguise: None,
        });
    }
    rows
}

/// A server listening on both loopbacks with an IPv4 and an IPv6 relay, and /metrics.
fn start(allow_loopback: bool) -> Server {
    Server::start(&format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
         tcp = [\"127.0.0.1:0\", \"[::1]:0\"]\nhttp = \"127.0.0.1:0\"\n\
         [relay]\nrelay-ip = [\"127.0.0.1\", \"::1\"]\nallow-loopback-peers = {allow_loopback}\n\
         [auth.users]\nalice = \"wonderland\"\n"
    ))
}

/// Real UDP sockets wherever a forbidden row could land on this machine: a peer on each
/// loopback, and one on the port number of each of the server's TCP listeners (UDP sent there
/// would reach it). The server's UDP listeners are the server itself: see [`probe`].
struct Targets {
    sockets: Vec<(&'static str, UdpSocket)>,
}

impl Targets {
    /// A server started by [`start`] and its targets. The port number of a TCP listener may
    /// be held for UDP by another process on this machine (a relay port of a server in a
    /// parallel test): then the server is started again on other ports, a few times at most.
    fn with_server(allow_loopback: bool) -> (Server, Targets) {
        for _ in 0..5 {
            let server = start(allow_loopback);
            if let Some(targets) = Targets::try_bind(&server) {
                return (server, targets);
            }
        }
        panic!("the TCP listeners' port numbers kept being taken for UDP");
    }

    /// The targets, or `None` when a TCP listener's port number is taken for UDP.
    fn try_bind(server: &Server) -> Option<Targets> {
        let tcp = |v4: bool| {
            server
                .tcp
                .iter()
                .find(|a| a.is_ipv4() == v4)
                .unwrap()
                .port()
        };
        let sockets = [
            ("peer on 127.0.0.1", SocketAddr::from(([127, 0, 0, 1], 0))),
            ("peer on ::1", SocketAddr::from((Ipv6Addr::LOCALHOST, 0))),
            (
                "tcp port 127.0.0.1",
                SocketAddr::from(([127, 0, 0, 1], tcp(true))),
            ),
            (
                "tcp port ::1",
                SocketAddr::from((Ipv6Addr::LOCALHOST, tcp(false))),
            ),
        ]
        .into_iter()
        .map(|(name, addr)| {
            let s = UdpSocket::bind(addr).ok()?;
            s.set_nonblocking(true).unwrap();
            Some((name, s))
        })
        .collect::<Option<_>>()?;
        Some(Targets { sockets })
    }

    fn ports(&self, server: &Server) -> Ports {
        let port = |i: usize| self.sockets[i].1.local_addr().unwrap().port();
        let udp = |v4: bool| {
            server
                .udp
                .iter()
                .find(|a| a.is_ipv4() == v4)
                .unwrap()
                .port()
        };
        Ports {
            peer4: port(0),
            peer6: port(1),
            udp4: udp(true),
            udp6: udp(false),
            tcp4: port(2),
            tcp6: port(3),
        }
    }

    /// The first datagram on target `i` within [`TIMEOUT`]: (source, bytes).
    fn collect_one(&self, i: usize) -> Option<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.sockets[i].1.recv_from(&mut buf) {
                return Some((from, buf[..n].to_vec()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Everything that arrived on any target within `wait`: (target, source, bytes).
    fn collect(&self, wait: Duration) -> Vec<(&'static str, SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            for (name, socket) in &self.sockets {
                while let Ok((n, from)) = socket.recv_from(&mut buf) {
                    got.push((*name, from, buf[..n].to_vec()));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    }
}

/// A Binding request: relayed to one of the server's own UDP listeners, it would be answered
/// to the relay, which would hand the answer to the client as a Data indication.
fn probe() -> stun::message::Message {
    binding_request(&[], true)
}

/// The answers (0 = success) a row must get: (CreatePermission, ChannelBind).
fn expected(row: &Row, allow_loopback: bool) -> (u16, u16) {
    if row.disguise == Some("local-use NAT64") {
        // 64:ff9b:1::/48 is a private range in its own right, whatever it carries.
        return (403, 403);
    }
    match (allow_loopback, row.class) {
        (true, Class::Loopback) => (0, 0),
        // The permission is for an IP, and a loopback IP is allowed; the port is not.
        (true, Class::Own) => (0, 403),
        _ => (403, 403),
    }
}

/// Runs CreatePermission and ChannelBind (channel 0x4000 + index) for every row; returns the
/// failure messages and the rows that got what they should.
fn ask_all<'r>(
    client: &mut RawTurn,
    rows: &'r [Row],
    allow_loopback: bool,
) -> (Vec<String>, Vec<(u16, &'r Row)>) {
    let mut failures = Vec::new();
    let mut answered = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let channel = 0x4000 + u16::try_from(i).unwrap();
        let got = (
            client.create_permission(row.peer),
            client.channel_bind(channel, row.peer),
        );
        let want = expected(row, allow_loopback);
        if got == want {
            answered.push((channel, row));
        } else {
            failures.push(format!(
                "{}: CreatePermission, ChannelBind answered {got:?}, want {want:?} (0 = success)",
                row.name
            ));
        }
    }
    (failures, answered)
}

/// Sends a Send indication and ChannelData to `row` on `channel`, payload a probe (for the
/// server's own UDP ports) or the row's name; returns the probe's transaction ID.
fn try_to_relay(client: &RawTurn, row: &Row, channel: u16, own_udp: &[u16]) -> Option<[u8; 12]> {
    let (payload, id) = if own_udp.contains(&row.peer.port()) {
        let p = probe();
        (p.raw.clone(), Some(p.transaction_id.0))
    } else {
        (row.name.as_bytes().to_vec(), None)
    };
    client.send_indication(row.peer, &payload);
    client.channel_data(channel, &payload);
    id
}

/// Describes whatever reached a target or the client: a non-empty list is a leak.
fn leaks(
    targets: &Targets,
    client: &mut RawTurn,
    probes: &HashMap<[u8; 12], String>,
) -> Vec<String> {
    // The server handles one client's datagrams in order: once it answered this, it has
    // handled (and, had it wrongly relayed them, sent) everything before.
    let marker = client.request(&Request::new(METHOD_REFRESH));
    assert_eq!(marker.code(), 0, "Refresh: {marker:?}");
    let mut leaks: Vec<String> = (targets.collect(SILENCE).into_iter())
        .map(|(target, from, bytes)| {
            format!(
                "{target} received {:?} from {from}",
                String::from_utf8_lossy(&bytes)
            )
        })
        .collect();
    while let Some(relayed) = client.next_relayed(Duration::from_millis(100)) {
        let row = match &relayed {
            Relayed::Data { data, .. } => data
                .get(8..20)
                .and_then(|id| probes.get(id))
                .map_or("no probe of ours", String::as_str),
            Relayed::Channel { .. } => "a channel",
        };
        leaks.push(format!("the client got {relayed:?}: answered ({row})"));
    }
    leaks
}

#[test]
fn default_rules_refuse_every_class_and_disguise() {
    let (server, targets) = Targets::with_server(false);
    let rows = rows(&targets.ports(&server));
    let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", true);
    assert_eq!(
        client.relays.len(),
        2,
        "an IPv4 and an IPv6 relay: {:?}",
        client.relays
    );

    let (failures, refused) = ask_all(&mut client, &rows, false);
    let http = server.http_addr();
    let m = scrape(http);
    assert_eq!(
        sample(&m, "rturn_requests_refused_total{code=\"403\"}"),
        2.0 * refused.len() as f64,
        "every refusal is counted as a 403"
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows not refused:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert!(rows.len() > 200, "the matrix lost rows: {}", rows.len());
}

#[test]
fn refused_local_peers_receive_nothing() {
    let (server, targets) = Targets::with_server(false);
    let ports = targets.ports(&server);
    let rows = rows(&ports);
    let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", true);

    // Only rows that land on this machine, and only once both requests were refused.
    let local: Vec<Row> = rows
        .into_iter()
        .filter(|r| r.class != Class::Other)
        .collect();
    let (failures, refused) = ask_all(&mut client, &local, false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mut probes = HashMap::new();
    for &(channel, row) in &refused {
        if let Some(id) = try_to_relay(&client, row, channel, &[ports.udp4, ports.udp6]) {
            probes.insert(id, row.name.clone());
        }
    }
    let leaks = leaks(&targets, &mut client, &probes);
    assert!(
        leaks.is_empty(),
        "relayed to a forbidden peer:\n{}",
        leaks.join("\n")
    );
    let m = scrape(server.http_addr());
    assert_eq!(
        sample(&m, "rturn_relayed_packets_total{direction=\"to_peer\"}"),
        0.0,
        "the server counts packets it relayed"
    );
    assert!(refused.len() > 60, "rows tried: {}", refused.len());
}

#[test]
fn allow_loopback_peers_opens_loopback_and_nothing_else() {
    let (server, targets) = Targets::with_server(true);
    let ports = targets.ports(&server);
    let rows = rows(&ports);
    let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", true);

    let (failures, answered) = ask_all(&mut client, &rows, true);
    assert!(
        failures.is_empty(),
        "{} of {} rows:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // The control: the loopback peers do receive what the server relays, from the relay.
    let mut relayed = 0;
    for (channel, row) in answered.iter().filter(|(_, r)| r.class == Class::Loopback) {
        let target = match row.peer {
            p if p == SocketAddr::from(([127, 0, 0, 1], ports.peer4)) => 0,
            p if p == SocketAddr::from((Ipv6Addr::LOCALHOST, ports.peer6)) => 1,
            _ => continue, // a disguise: not an address to send to
        };
        let relay = *client
            .relays
            .iter()
            .find(|r| r.is_ipv4() == row.peer.is_ipv4())
            .unwrap();
        for (how, payload) in [
            ("Send", "by Send indication"),
            ("ChannelData", "on a channel"),
        ] {
            if how == "Send" {
                client.send_indication(row.peer, payload.as_bytes());
            } else {
                client.channel_data(*channel, payload.as_bytes());
            }
            let got = targets.collect_one(target);
            assert_eq!(
                got,
                Some((relay, payload.as_bytes().to_vec())),
                "control {how} to {}: the peer must receive it from the relay",
                row.name
            );
            relayed += 1;
        }
        // And back: the relay hands the peer's answer to the client on the channel. (The
        // probes of the server's own UDP ports below rely on this way back.)
        let (_, socket) = &targets.sockets[target];
        socket.send_to(b"answer", relay).unwrap();
        assert_eq!(
            client.next_relayed(TIMEOUT),
            Some(Relayed::Channel {
                channel: *channel,
                data: b"answer".to_vec()
            }),
            "control: {} answers through {relay}",
            row.name
        );
    }
    assert_eq!(relayed, 4, "one control each way on each loopback");

    // The control of the probe: another server's listener answers it through the relay.
    let other_server = start(false);
    let other = other_server.udp[0];
    let probe = probe();
    assert_eq!(client.create_permission(other), 0);
    client.send_indication(other, &probe.raw);
    match client.next_relayed(TIMEOUT) {
        Some(Relayed::Data { peer, data }) => {
            assert_eq!(peer, other);
            assert_eq!(
                &data[8..20],
                &probe.transaction_id.0,
                "the answer to the probe"
            );
        }
        got => panic!("the probe of another server came back as {got:?}"),
    }

    // Still refused: the unspecified address and the server's own ports, spelled plainly or
    // IPv4-mapped (the other disguises are not loopback addresses to the kernel, and the
    // server allows them here as loopback: nothing is sent to them).
    let mut probes = HashMap::new();
    for &(channel, row) in &answered {
        let plain = matches!(row.disguise, None | Some("IPv4-mapped"));
        if plain
            && matches!(row.class, Class::Unspecified | Class::Own)
            && let Some(id) = try_to_relay(&client, row, channel, &[ports.udp4, ports.udp6])
        {
            probes.insert(id, row.name.clone());
        }
    }
    assert!(
        probes.len() >= 4,
        "probes of the own UDP ports: {}",
        probes.len()
    );
    let leaks = leaks(&targets, &mut client, &probes);
    assert!(
        leaks.is_empty(),
        "relayed to a forbidden peer:\n{}",
        leaks.join("\n")
    );
    let m = scrape(server.http_addr());
    assert_eq!(
        sample(&m, "rturn_relayed_packets_total{direction=\"to_peer\"}"),
        f64::from(relayed + 1),
        "nothing but the controls left the relays"
    );
}
