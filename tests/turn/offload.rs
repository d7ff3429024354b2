//! Black-box: the kernel fast path (`[relay] offload`, issue 18). As root (CI runs as root) on
//! loopback addresses, `auto` loads the eBPF program: a bound UDP channel is then relayed by
//! the kernel both ways, and the packets still show in `/metrics`. With `off`, the same
//! exchange goes through user space. Both must deliver every packet, intact and in order.
//! A reload that refuses the peer takes its channel out of the kernel before the reload
//! completes, and nothing more passes either way; one that revokes the user takes the
//! channel out of the kernel too, while user space goes on relaying for the allocation (as
//! `turn/offload_sync.rs` says it does).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use rturn::testkit::*;

/// Packets each way.
const PACKETS: usize = 100;

/// The sum of every sample of metric family `name` (all its labels).
fn family(server: &Server, name: &str) -> f64 {
    let samples = server.metrics();
    (samples.iter())
        .filter(|(n, _)| n == name || n.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// How long a packet that must not arrive is waited for.
const SILENCE: Duration = Duration::from_millis(500);

/// The users of [`config`] before a reload revokes alice: bob keeps the table non-empty.
const USERS: &str = "alice = \"wonderland\"\nbob = \"the-builder\"\n";

/// A loopback config with `/metrics`, the `[relay]` lines `relay` (an offload choice, peer
/// rules) and the users `users`.
fn config(relay: &str, users: &str) -> String {
    loopback_config(&format!(
        "[relay]\nrelay-ip = \"127.0.0.1\"\nallow-loopback-peers = true\n{relay}\
         [auth.users]\n{users}"
    ))
    .replace("tcp = [", "http = \"127.0.0.1:0\"\ntcp = [")
}

/// A client with channel 0x4001 bound to a peer socket on `peer_ip`.
struct Bound {
    server: Server,
    client: RawTurn,
    peer: UdpSocket,
    relay: SocketAddr,
}

impl Bound {
    /// Starts rturn on `config`, allocates as alice and binds the channel.
    fn start(config: &str, peer_ip: &str) -> Bound {
        let server = Server::start(config);
        let mut client = RawTurn::allocate(server.udp[0], "alice", "wonderland", false);
        let relay = client.relays[0];
        let peer = UdpSocket::bind((peer_ip, 0)).unwrap();
        peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        assert_eq!(client.create_permission(peer_addr), 0);
        assert_eq!(client.channel_bind(0x4001, peer_addr), 0);
        Bound {
            server,
            client,
            peer,
            relay,
        }
    }

    /// `count` packets each way, each one delivered intact, in order, from the relay.
    fn round_trips(&mut self, count: usize) {
        let mut buf = [0u8; 1500];
        for i in 0..count {
            let out = format!("to the peer {i}");
            self.client.channel_data(0x4001, out.as_bytes());
            let (n, from) = self.peer.recv_from(&mut buf).expect("the peer receives");
            assert_eq!(
                (&buf[..n], from),
                (out.as_bytes(), self.relay),
                "packet {i}"
            );
            let back = format!("to the client {i}");
            self.peer.send_to(back.as_bytes(), self.relay).unwrap();
            let got = self.client.next_relayed(TIMEOUT);
            let want = Relayed::Channel {
                channel: 0x4001,
                data: back.into_bytes(),
            };
            let log = self.server.log();
            assert_eq!(got, Some(want), "packet {i}; log:\n{log}");
        }
    }

    /// Whether a packet gets through either way within [`SILENCE`]: (to the peer, to the
    /// client).
    fn passes(&mut self, what: &str) -> (bool, bool) {
        self.client.channel_data(0x4001, what.as_bytes());
        self.peer.set_read_timeout(Some(SILENCE)).unwrap();
        let mut buf = [0u8; 1500];
        let to_peer = self.peer.recv_from(&mut buf).is_ok();
        self.peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        self.peer.send_to(what.as_bytes(), self.relay).unwrap();
        let to_client = self.client.next_relayed(SILENCE).is_some();
        (to_peer, to_client)
    }

    /// Rewrites the config file to `config` and reloads; returns once the workers applied
    /// it (rturn logs the reload after every worker answered).
    fn reload(&mut self, config: &str) {
        std::fs::write(&self.server.config_path, config).unwrap();
        let pid = Pid::from_raw(self.server.pid() as i32);
        kill(pid, Signal::SIGHUP).unwrap();
        self.server
            .wait_line(|l| l.contains("configuration reloaded"));
    }

    /// (to_peer, to_client) of `rturn_relayed_packets_total` and of
    /// `rturn_offload_packets_total`, and `rturn_offload_channels`.
    fn counts(&self) -> ((f64, f64), (f64, f64), f64) {
        let samples = self.server.metrics();
        let dir = |family: &str, direction: &str| {
            sample(&samples, &format!("{family}{{direction=\"{direction}\"}}"))
        };
        let (relayed, offloaded) = ("rturn_relayed_packets_total", "rturn_offload_packets_total");
        (
            (dir(relayed, "to_peer"), dir(relayed, "to_client")),
            (dir(offloaded, "to_peer"), dir(offloaded, "to_client")),
            sample(&samples, "rturn_offload_channels"),
        )
    }
}

/// Binds a channel to a loopback peer and exchanges [`PACKETS`] each way; returns the
/// server for its metrics.
fn exchange(offload: &str) -> Server {
    let mut bound = Bound::start(&config(offload, USERS), "127.0.0.1");
    bound.round_trips(PACKETS);
    bound.server
}

#[test]
fn a_bound_channel_is_relayed_by_the_kernel_both_ways_and_still_counted() {
    let server = exchange("offload = \"auto\"\n");
    assert_eq!(
        family(&server, "rturn_offload_active"),
        1.0,
        "{}",
        server.log()
    );
    assert_eq!(family(&server, "rturn_offload_channels"), 1.0);
    // Every packet of the exchange went through the kernel, and a scrape reads them back.
    let offloaded = family(&server, "rturn_offload_packets_total");
    assert_eq!(offloaded, (2 * PACKETS) as f64, "{:?}", server.metrics());
    assert!(family(&server, "rturn_offload_bytes_total") > 0.0);
}

#[test]
fn with_the_offload_off_the_same_exchange_goes_through_user_space() {
    let server = exchange("offload = \"off\"\n");
    assert_eq!(family(&server, "rturn_offload_active"), 0.0);
    assert_eq!(family(&server, "rturn_offload_packets_total"), 0.0);
}

/// A reload that refuses the peer (`denied-peer-ip`) ends the channel in the kernel and in
/// user space by the time it completes: the very next packets, either way, are dropped.
fn a_refused_peer_stops_receiving_at_once(offload: &str) {
    let peer_ip = "127.0.0.2";
    let mut bound = Bound::start(&config(offload, USERS), peer_ip);
    bound.round_trips(10);
    let (relayed, offloaded, channels) = bound.counts();
    assert_eq!(relayed, (10.0, 10.0));
    if offload.contains("auto") {
        assert_eq!((offloaded, channels), ((10.0, 10.0), 1.0), "in the kernel");
    }
    let deny = format!("{offload}denied-peer-ip = [\"{peer_ip}\"]\n");
    bound.reload(&config(&deny, USERS));
    assert_eq!(bound.passes("after the reload"), (false, false));
    assert_eq!(bound.counts(), (relayed, offloaded, 0.0), "nothing relayed");
}

#[test]
fn a_reload_refusing_the_peer_takes_its_channel_out_of_the_kernel_at_once() {
    a_refused_peer_stops_receiving_at_once("offload = \"auto\"\n");
}

#[test]
fn a_reload_refusing_the_peer_stops_user_space_relaying_at_once() {
    a_refused_peer_stops_receiving_at_once("offload = \"off\"\n");
}

/// A reload that removes the user takes the allocation's channel out of the kernel; user
/// space goes on relaying for the allocation until it ends, as without the offload (a
/// revoked user's allocation is not cut off, only refused a refresh).
#[test]
fn a_reload_revoking_the_user_moves_its_channel_back_to_user_space() {
    let auto = "offload = \"auto\"\n";
    let mut bound = Bound::start(&config(auto, USERS), "127.0.0.1");
    bound.round_trips(10);
    assert_eq!(bound.counts(), ((10.0, 10.0), (10.0, 10.0), 1.0));
    bound.reload(&config(auto, "bob = \"the-builder\"\n"));
    let (_, offloaded, channels) = bound.counts();
    assert_eq!(
        (offloaded, channels),
        ((10.0, 10.0), 0.0),
        "out of the kernel"
    );
    bound.round_trips(10);
    let (relayed, offloaded, channels) = bound.counts();
    assert_eq!(relayed, (20.0, 20.0), "user space relayed the second ten");
    assert_eq!((offloaded, channels), ((10.0, 10.0), 0.0), "not the kernel");
}
