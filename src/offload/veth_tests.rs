//! The kernel program between network namespaces joined by veth pairs (client | server | peer):
//! the path a real deployment takes, where the program redirects to another interface's egress.
//!
//! Needs root, as CI runs; without it the test fails and says so. One interface is hooked with
//! TCX and the other with a `clsact` filter, so both ways of attaching carry traffic. The namespaces are named after
//! this process and removed by a guard, also while a panic unwinds (removing a namespace removes
//! its veths and with them the program's attachments).

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use super::tests::{assert_empty, recv};
use super::{ChannelEntry, Hook, Offload, OffloadCounts, check_privileges};
use crate::testkit::in_netns;

const PACKETS: usize = 100;

/// Three namespaces: client, server, peer; deleted on drop.
struct Topology {
    names: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

fn bind(at: &str) -> UdpSocket {
    let s = UdpSocket::bind((at, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().expect("local address")
}

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = channel.to_be_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn payload(i: usize) -> Vec<u8> {
    (0..(i * 41) % 1400).map(|j| (i ^ j) as u8).collect()
}

#[test]
fn relays_between_veth_namespaces() {
    if let Err(e) = check_privileges() {
        panic!("this test creates network namespaces and needs root (CI runs as root): {e}");
    }
    let pid = std::process::id();
    let (c, s, p) = (
        format!("rtc{pid}"),
        format!("rts{pid}"),
        format!("rtp{pid}"),
    );
    let (vc, vsc, vp, vsp) = (
        format!("vc{pid}"),
        format!("vsc{pid}"),
        format!("vp{pid}"),
        format!("vsp{pid}"),
    );
    let topology = Topology {
        names: vec![c.clone(), s.clone(), p.clone()],
    };
    for name in &topology.names {
        ip(&["netns", "add", name]);
    }
    ip(&[
        "link", "add", &vc, "netns", &c, "type", "veth", "peer", "name", &vsc, "netns", &s,
    ]);
    ip(&[
        "link", "add", &vp, "netns", &p, "type", "veth", "peer", "name", &vsp, "netns", &s,
    ]);
    for (ns, dev, v4, v6) in [
        (&c, &vc, "10.181.1.2/24", "fd00:181:1::2/64"),
        (&s, &vsc, "10.181.1.1/24", "fd00:181:1::1/64"),
        (&s, &vsp, "10.181.2.1/24", "fd00:181:2::1/64"),
        (&p, &vp, "10.181.2.2/24", "fd00:181:2::2/64"),
    ] {
        ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
        ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&["-n", &c, "route", "add", "default", "via", "10.181.1.1"]);
    ip(&["-n", &p, "route", "add", "default", "via", "10.181.2.1"]);
    ip(&[
        "-n",
        &c,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:181:1::1",
    ]);
    ip(&[
        "-n",
        &p,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:181:2::1",
    ]);
    // bpf_fib_lookup answers only where the namespace forwards.
    in_netns(&s, || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
    })
    .expect("enable forwarding");

    // Client -> peer arrives through a TCX link, peer -> client through a clsact filter (the
    // hook of kernels before 6.6).
    let (vsc2, vsp2) = (vsc.clone(), vsp.clone());
    let mut offload = in_netns(&s, move || {
        let mut offload = Offload::load().unwrap_or_else(|e| panic!("{e}"));
        offload
            .attach_as(&vsc2, Hook::Tcx)
            .unwrap_or_else(|e| panic!("{e}"));
        offload
            .attach_as(&vsp2, Hook::Clsact)
            .unwrap_or_else(|e| panic!("{e}"));
        offload
    });
    assert!(qdiscs(&s, &vsp).contains("clsact"), "clsact added to {vsp}");
    let hosts = [
        ["10.181.1.2", "10.181.1.1", "10.181.2.1", "10.181.2.2"],
        [
            "fd00:181:1::2",
            "fd00:181:1::1",
            "fd00:181:2::1",
            "fd00:181:2::2",
        ],
    ];
    for [client, listen, relay, peer] in hosts {
        let client = in_netns(&c, move || bind(client));
        let peer = in_netns(&p, move || bind(peer));
        let (listen, relay) = in_netns(&s, move || (bind(listen), bind(relay)));
        relay_both_ways(&mut offload, &client, &listen, &relay, &peer);
    }
    // Dropped where it was attached (netlink is per namespace): filter and qdisc gone.
    in_netns(&s, move || drop(offload));
    assert!(
        !qdiscs(&s, &vsp).contains("clsact"),
        "clsact removed from {vsp}"
    );
    drop(topology);
}

/// The qdiscs of `dev` in namespace `ns`, as `tc` lists them.
fn qdiscs(ns: &str, dev: &str) -> String {
    let out = Command::new("tc")
        .args(["-n", ns, "qdisc", "show", "dev", dev])
        .output()
        .expect("run tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 100 packets each way through the program between sockets in the three namespaces.
fn relay_both_ways(
    offload: &mut Offload,
    client: &UdpSocket,
    listen: &UdpSocket,
    relay: &UdpSocket,
    peer: &UdpSocket,
) {
    let entry = ChannelEntry {
        client: addr(client),
        listen: addr(listen),
        channel: 0x4abc,
        relay: addr(relay),
        peer: addr(peer),
    };
    // User space first: this also resolves the neighbours the program needs.
    relay.send_to(b"warm", entry.peer).expect("send");
    assert_eq!(recv(peer, "peer"), (b"warm".to_vec(), entry.relay));
    listen.send_to(b"warm", entry.client).expect("send");
    assert_eq!(recv(client, "client"), (b"warm".to_vec(), entry.listen));
    offload.maps().insert(&entry).expect("insert");

    let mut bytes = 0;
    for i in 0..PACKETS {
        let p = payload(i);
        bytes += p.len() as u64;
        client
            .send_to(&channel_data(0x4abc, &p), entry.listen)
            .expect("client send");
        let want = (p, entry.relay);
        assert_eq!(
            recv(peer, "peer"),
            want,
            "{}: packet {i} to the peer",
            entry.peer
        );
    }
    for i in 0..PACKETS {
        let p = payload(PACKETS - 1 - i);
        peer.send_to(&p, entry.relay).expect("peer send");
        let want = (channel_data(0x4abc, &p), entry.listen);
        assert_eq!(
            recv(client, "client"),
            want,
            "{}: packet {i} to the client",
            entry.client
        );
    }
    assert_empty(listen, "the listen socket");
    assert_empty(relay, "the relay socket");
    let want = OffloadCounts {
        to_peer_packets: PACKETS as u64,
        to_peer_bytes: bytes,
        to_client_packets: PACKETS as u64,
        to_client_bytes: bytes,
    };
    assert_eq!(offload.maps().counts(&entry), Some(want));
    offload.maps().remove(&entry);
}
