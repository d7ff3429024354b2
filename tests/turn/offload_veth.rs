//! Black-box: the kernel fast path where a real deployment has it, between network namespaces
//! joined by veth pairs (client | server | peer), with the server namespace routing between
//! them. The built rturn runs in the server namespace with `offload = "auto"`; coturn's
//! `turnutils_uclient` in the client namespace relays ChannelData through it to coturn's echo
//! peer, `turnutils_peer`, in the peer namespace, over IPv4 and IPv6. Every message comes
//! back, and `/metrics` shows that the kernel relayed every one of them, both ways: none went
//! through rturn's sockets. The testkit's client does the same with rturn on the client
//! side's addresses, uclient with rturn on the wildcard addresses.
//!
//! Needs root, as CI runs; without it the test fails and says so. The namespaces (and with
//! them the veths) carry this process's ID and are removed by a guard, also while a panic
//! unwinds; their addresses (10.182.0.0/16, fd00:182::/32) cannot reach a real network.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rturn::client::Request;
use rturn::testkit::*;
use rturn::turn::attrs::FAMILY_IPV6;

/// uclient's clients, and messages each client sends (each one echoed back).
const CLIENTS: usize = 5;
const MESSAGES: usize = 200;
/// The echo peer's port (the namespace is ours alone).
const PEER_PORT: u16 = 3480;
/// Alice's password: 16 characters at least, as rturn asks beside a non-loopback listener.
const PASSWORD: &str = "through-the-wonderland";

/// (client, server client side, server peer side, peer) addresses of one family.
struct Hosts {
    client: &'static str,
    listen: &'static str,
    relay: &'static str,
    peer: &'static str,
    /// The prefix length of both subnets.
    prefix: u8,
    /// `ip`'s flag for the family.
    family: &'static str,
}

const V4: Hosts = Hosts {
    client: "10.182.1.2",
    listen: "10.182.1.1",
    relay: "10.182.2.1",
    peer: "10.182.2.2",
    prefix: 24,
    family: "-4",
};

const V6: Hosts = Hosts {
    client: "fd00:182:1::2",
    listen: "fd00:182:1::1",
    relay: "fd00:182:2::1",
    peer: "fd00:182:2::2",
    prefix: 64,
    family: "-6",
};

/// Three network namespaces (client, server, peer) joined by two veth pairs; deleted on drop
/// (which deletes the veths too).
struct Topology {
    client: String,
    server: String,
    peer: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in [&self.client, &self.server, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

impl Topology {
    /// Builds it: the client and the peer route through the server, which forwards. `tag`
    /// tells apart the topologies of tests running at once.
    fn new(tag: &str) -> Topology {
        if let Err(e) = rturn::offload::check_privileges() {
            panic!("this test creates network namespaces and needs root (CI runs as root): {e}");
        }
        let pid = std::process::id();
        // The guard first, so a failure half way still removes what was made.
        let t = Topology {
            client: format!("r18{tag}c{pid}"),
            server: format!("r18{tag}s{pid}"),
            peer: format!("r18{tag}p{pid}"),
        };
        let (c, s, p) = (&t.client, &t.server, &t.peer);
        for name in [c, s, p] {
            ip(&["netns", "add", name]);
        }
        let (vc, vsc, vp, vsp) = ("v18c", "v18sc", "v18p", "v18sp");
        ip(&[
            "link", "add", vc, "netns", c, "type", "veth", "peer", "name", vsc, "netns", s,
        ]);
        ip(&[
            "link", "add", vp, "netns", p, "type", "veth", "peer", "name", vsp, "netns", s,
        ]);
        for (ns, dev) in [(c, vc), (s, vsc), (s, vsp), (p, vp)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        for hosts in [&V4, &V6] {
            for (ns, dev, addr) in [
                (c, vc, hosts.client),
                (s, vsc, hosts.listen),
                (s, vsp, hosts.relay),
                (p, vp, hosts.peer),
            ] {
                let cidr = format!("{addr}/{}", hosts.prefix);
                let mut args = vec!["-n", ns, "addr", "add", &cidr, "dev", dev];
                if hosts.family == "-6" {
                    args.push("nodad"); // usable at once
                }
                ip(&args);
            }
            for (ns, via) in [(c, hosts.listen), (p, hosts.relay)] {
                ip(&[
                    "-n",
                    ns,
                    hosts.family,
                    "route",
                    "add",
                    "default",
                    "via",
                    via,
                ]);
            }
        }
        // The server routes between its two sides: what the kernel program's FIB lookup needs.
        in_netns(s, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        })
        .expect("enable forwarding in the server namespace");
        t
    }
}

/// A process killed on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// coturn's echo peer on `hosts.peer` in the peer namespace, once it echoes to the server
/// namespace. The probe also leaves the server namespace knowing the peer's MAC address,
/// which the kernel program needs to forward by itself (without it, it hands the packet to
/// rturn's sockets, which would resolve it).
fn echo_peer(t: &Topology, hosts: &'static Hosts) -> Spawned {
    let child = Command::new("ip")
        .args(["netns", "exec", &t.peer, "turnutils_peer"])
        .args(["-L", hosts.peer, "-p", &PEER_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_peer is missing: install coturn (scripts/test.sh does)");
    let peer = Spawned(child);
    let echoed = in_netns(&t.server, move || {
        let probe = UdpSocket::bind((hosts.relay, 0)).expect("bind the probe");
        let timeout = Some(Duration::from_millis(100));
        probe.set_read_timeout(timeout).expect("timeout");
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 16];
        while Instant::now() < deadline {
            probe
                .send_to(b"ping", (hosts.peer, PEER_PORT))
                .expect("send");
            if probe.recv(&mut buf).is_ok() {
                return true;
            }
        }
        false
    });
    assert!(echoed, "turnutils_peer on {} did not start", hosts.peer);
    peer
}

/// turnutils_uclient in the client namespace: [`CLIENTS`] clients each send [`MESSAGES`]
/// ChannelData messages through `server` to the echo peer at `hosts.peer`; `family` asks
/// for the relay's address family. Returns everything it printed.
fn uclient(t: &Topology, server: SocketAddr, hosts: &Hosts, family: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.client,
            "timeout",
            "60",
            "turnutils_uclient",
        ])
        .args(["-c", family, "-u", "alice", "-w", PASSWORD])
        .args(["-m", &CLIENTS.to_string(), "-n", &MESSAGES.to_string()])
        .args(["-l", "120", "-z", "5", "-p", &server.port().to_string()])
        .args(["-e", hosts.peer, "-r", &PEER_PORT.to_string()])
        .arg(server.ip().to_string())
        .output()
        .expect("turnutils_uclient is missing: install coturn (scripts/test.sh does)");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// What `/metrics` says of the relaying, scraped from the client namespace.
#[derive(Debug)]
struct Counts {
    /// (to_peer, to_client) of `rturn_relayed_packets_total`.
    relayed: (f64, f64),
    /// (to_peer, to_client) of `rturn_offload_packets_total`.
    offloaded: (f64, f64),
    /// `rturn_offload_active`.
    active: f64,
    /// `rturn_offload_channels`.
    channels: f64,
}

fn counts(t: &Topology, http: SocketAddr) -> Counts {
    let samples = in_netns(&t.client, move || scrape(http));
    let both = |family: &str| {
        let dir = |d: &str| sample(&samples, &format!("{family}{{direction=\"{d}\"}}"));
        (dir("to_peer"), dir("to_client"))
    };
    Counts {
        relayed: both("rturn_relayed_packets_total"),
        offloaded: both("rturn_offload_packets_total"),
        active: sample(&samples, "rturn_offload_active"),
        channels: sample(&samples, "rturn_offload_channels"),
    }
}

/// rturn in the server namespace, listening on both families' client-side addresses (and
/// `/metrics` there), relaying from the peer-side ones, allowing the peer's private
/// addresses, with the offload on.
/// rturn in the server namespace, its UDP listeners on the client side's addresses or, with
/// `wildcard`, on 0.0.0.0 and :: (as the packaged config does).
fn start_server(t: &Topology, wildcard: bool) -> Server {
    let (udp4, udp6) = if wildcard {
        ("0.0.0.0", "::")
    } else {
        (V4.listen, V6.listen)
    };
    let config = format!(
        "realm = \"test.local\"\n[listen]\nudp = [\"{udp4}:0\", \"[{udp6}]:0\"]\ntcp = []\n\
         http = \"{}:0\"\n[relay]\nrelay-ip = [\"{}\", \"{}\"]\n\
         allowed-peer-ip = [\"{}\", \"{}\"]\noffload = \"auto\"\n\
         [auth.users]\nalice = \"{PASSWORD}\"\n",
        V4.listen, V4.relay, V6.relay, V4.peer, V6.peer
    );
    let server = Server::start_in_netns(&t.server, &config);
    let active = counts(t, server.http_addr()).active;
    assert_eq!(active, 1.0, "the offload is on; log:\n{}", server.log());
    server
}

/// The server's UDP listener of `hosts`' family.
/// Where a client of `hosts`' family sends to: its UDP listener (at the client side's
/// address when it is a wildcard).
fn listener(server: &Server, hosts: &Hosts) -> SocketAddr {
    let v4 = hosts.family == "-4";
    let at = *(server.udp.iter())
        .find(|a| a.is_ipv4() == v4)
        .expect("a UDP listener of the family");
    let listen = hosts.listen.parse().expect("an address");
    SocketAddr::new(listen, at.port())
}

/// Packets each way through [`RawTurn`]'s channel.
const PACKETS: usize = 150;

/// A channel bound by [`RawTurn`] in the client namespace to a socket in the peer namespace
/// carries [`PACKETS`] each way, every one intact, in order and from the right address, and
/// the kernel relays every one of them: `/metrics` counts each relayed packet as offloaded.
/// Over IPv4, then IPv6.
#[test]
fn rturn_relays_channel_data_through_the_kernel_between_veth_namespaces() {
    let t = Topology::new("a");
    let server = start_server(&t, false);
    let http = server.http_addr();
    let mut want = 0.0;
    for (i, hosts) in [&V4, &V6].into_iter().enumerate() {
        let listen = listener(&server, hosts);
        let mut client = in_netns(&t.client, move || {
            let local = SocketAddr::new(hosts.client.parse().expect("an address"), 0);
            let mut allocate = Request::allocate();
            if hosts.family == "-6" {
                allocate = allocate.family(FAMILY_IPV6);
            }
            match RawTurn::try_allocate_from(local, listen, "alice", PASSWORD, &allocate) {
                Ok(client) => client,
                Err(m) => panic!("Allocate refused: {m}"),
            }
        });
        let relay = client.relays[0];
        assert_eq!(relay.ip().to_string(), hosts.relay);
        let peer = in_netns(&t.peer, move || {
            let peer = UdpSocket::bind((hosts.peer, 0)).expect("bind the peer");
            peer.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            peer
        });
        let peer_addr = peer.local_addr().expect("the peer's address");
        // The server namespace learns the peer's MAC address, which the kernel program needs
        // to forward by itself (without it, it hands the packet to rturn's sockets).
        in_netns(&t.server, move || {
            let probe = UdpSocket::bind((hosts.relay, 0)).expect("bind the probe");
            probe.send_to(b"warm", peer_addr).expect("send the probe");
        });
        let mut buf = [0u8; 1500];
        let (n, _) = peer.recv_from(&mut buf).expect("the probe arrives");
        assert_eq!(&buf[..n], b"warm");

        assert_eq!(client.create_permission(peer_addr), 0);
        assert_eq!(client.channel_bind(0x4001, peer_addr), 0);
        for i in 0..PACKETS {
            let out = noise(i as u64, 1 + (i * 41) % 1200);
            client.channel_data(0x4001, &out);
            let (n, from) = peer.recv_from(&mut buf).expect("the peer receives");
            assert_eq!(
                (&buf[..n], from),
                (&out[..], relay),
                "packet {i} to the peer"
            );
            let back = noise(!(i as u64), 1 + (i * 67) % 1200);
            peer.send_to(&back, relay).expect("the peer sends");
            let want = Relayed::Channel {
                channel: 0x4001,
                data: back,
            };
            let got = client.next_relayed(TIMEOUT);
            assert_eq!(got, Some(want), "packet {i} to the client");
        }
        want += PACKETS as f64;
        let counts = counts(&t, http);
        assert_eq!(counts.relayed, (want, want), "{counts:?}");
        assert_eq!(counts.offloaded, counts.relayed, "all by the kernel");
        assert_eq!(counts.channels, (i + 1) as f64, "one more in the kernel");
    }
}

/// coturn's `turnutils_uclient` (a client we did not write) relays ChannelData through
/// rturn between the namespaces to coturn's echo peer, over IPv4 and IPv6, losing nothing.
///
/// rturn listens on the wildcard addresses here, as the packaged config does: the kernel
/// learns from each client's ChannelData which address it sends to. Debian's uclient
/// (4.6.1) picks its channel numbers at random in 0x4000..=0x7FFF (RFC 5766's range); the
/// kernel takes all of them, so every message goes through it.
#[test]
fn uclient_relays_between_veth_namespaces_losing_nothing() {
    let t = Topology::new("b");
    let server = start_server(&t, true);
    assert!(server.udp.iter().all(|a| a.ip().is_unspecified()));
    let http = server.http_addr();
    let per_run = (CLIENTS * MESSAGES) as f64;
    let mut want = 0.0;
    for (hosts, family) in [(&V4, "-X"), (&V6, "-x")] {
        let udp = listener(&server, hosts);
        let _peer = echo_peer(&t, hosts);
        let text = uclient(&t, udp, hosts, family);
        let summary = || format!("uclient via {udp}:\n{text}\nserver log:\n{}", server.log());
        assert!(
            text.contains("Total lost packets 0 (0.000000%)"),
            "{}",
            summary()
        );
        let total = CLIENTS * MESSAGES;
        assert!(
            text.contains(&format!("tot_send_msgs={total}, tot_recv_msgs={total}")),
            "{}",
            summary()
        );
        want += per_run;
        let counts = counts(&t, http);
        assert_eq!(counts.relayed, (want, want), "{}", summary());
        assert_eq!(
            counts.offloaded,
            counts.relayed,
            "all by the kernel: {}",
            summary()
        );
    }
}
