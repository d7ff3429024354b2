//! The command line of `rturn-bench`: one subcommand per workload.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for STUN/TURN servers on the loopback interface.
#[derive(Parser, Debug)]
#[command(name = "rturn-bench", version)]
pub(crate) struct Cli {
    /// Worker threads of the load generator's runtime (leave cores for the server).
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) threads: usize,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Closed loop of Allocate (401, then authenticated), ChannelBind, Refresh 0.
    AllocRate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        creds: Credentials,
        /// Concurrent clients, each with its own UDP socket.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// How long to run.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Run every cycle of a client on the same socket (same 5-tuple) instead of a new
        /// socket per cycle. coturn keeps a deleted allocation's 5-tuple for about a second
        /// and answers 437 meanwhile, so this suits rturn only.
        #[arg(long)]
        reuse_socket: bool,
    },
    /// Closed loop of STUN Binding requests, a window of requests in flight per client.
    BindingRate {
        #[command(flatten)]
        target: Target,
        /// Concurrent clients, each with its own UDP socket.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Requests in flight per client.
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// How long to run.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Sets up `--count` allocations (one socket each, with a permission and a channel),
    /// reports once they are ready, then holds them without traffic for `--hold`.
    Hold {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        creds: Credentials,
        /// Allocations to create; needs about as many open files (`ulimit -n`).
        #[arg(long)]
        count: usize,
        /// How long to keep them after they are all set up.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        hold: Duration,
        /// Allocations being set up at once.
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Give up on the set-up phase after this long.
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        setup_timeout: Duration,
    },
    /// ChannelData at a fixed rate over every flow to the echo peer and back: loss, and
    /// latency from the scheduled send time.
    RelayRate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        creds: Credentials,
        #[command(flatten)]
        echo: EchoPeer,
        /// Flows: allocations, each with a channel to the echo peer.
        #[arg(long, alias = "clients", default_value_t = 16)]
        flows: usize,
        /// Packets per second sent, all flows together (the server relays twice as many).
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// ChannelData payload bytes.
        #[arg(long, default_value_t = 160)]
        size: usize,
        /// How long to send (at most 240 s: no refreshes are sent).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Packets sent per wake-up of the sender, about (it sleeps at most 1 ms).
        #[arg(long, default_value_t = 16)]
        batch: usize,
    },
    /// The highest ChannelData rate relayed with less than --max-loss percent lost (doubling,
    /// then bisection, one short probe each), then the latency at half that rate.
    MaxRate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        creds: Credentials,
        #[command(flatten)]
        echo: EchoPeer,
        /// Flows: allocations, each with a channel to the echo peer.
        #[arg(long, default_value_t = 1)]
        flows: usize,
        /// ChannelData payload bytes.
        #[arg(long, default_value_t = 160)]
        size: usize,
        /// Packets sent per wake-up of the sender, about (it sleeps at most 1 ms).
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// The first rate probed, packets per second (all flows, one way).
        #[arg(long, default_value_t = 10_000)]
        start_rate: u32,
        /// No rate above this is probed.
        #[arg(long, default_value_t = 2_000_000)]
        max_rate: u32,
        /// Probes at most.
        #[arg(long, default_value_t = 12)]
        max_probes: usize,
        /// How long each probe sends.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        probe: Duration,
        /// How long the latency is measured at half the rate found.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        measure: Duration,
        /// Packets per wake-up during the latency measurement: fewer than --batch, so that
        /// the sender's own wait (counted, from the scheduled time) stays small.
        #[arg(long, default_value_t = 4)]
        latency_batch: usize,
        /// Loss a passing probe may have, percent.
        #[arg(long, default_value_t = 0.1)]
        max_loss: f64,
        /// Bisection stops when the failing rate is within this fraction of the passing one.
        #[arg(long, default_value_t = 0.1)]
        precision: f64,
    },
    /// WebSocket clients in signaling rooms exchanging offers, answers and candidates:
    /// relay latency, lost messages, errors, and the server's RSS.
    Signal {
        /// The server's HTTP listener (`[listen] http`); must be a loopback address. Give it
        /// once per node of a cluster: each room's members are spread over the nodes.
        #[arg(long, required = true)]
        server: Vec<SocketAddr>,
        /// The WebSocket route.
        #[arg(long, default_value = "/ws")]
        path: String,
        /// Concurrent clients, one WebSocket each; needs as many open files.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Rooms; client i joins room i mod rooms.
        #[arg(long, default_value_t = 1_000)]
        rooms: usize,
        /// Messages per second each client sends.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// How long the exchange lasts, after every client has joined.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Clients connecting and joining at once.
        #[arg(long, default_value_t = 100)]
        in_flight: usize,
        /// Give up on connecting and joining after this long.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        setup_timeout: Duration,
        /// Bytes of SDP in each offer and answer.
        #[arg(long, default_value_t = 500)]
        sdp_size: usize,
        /// The server's process id, to sample its RSS (VmRSS) at the plateau; once per node
        /// of a cluster for their sum.
        #[arg(long)]
        server_pid: Vec<u32>,
    },
}

/// The server under test.
#[derive(Args, Debug)]
pub(crate) struct Target {
    /// STUN/TURN server address (UDP); must be a loopback address (relay-rate and max-rate:
    /// any address when rturn-bench runs in a network namespace of its own, `ip netns exec`).
    #[arg(long)]
    pub(crate) server: SocketAddr,
}

/// Where the relay workloads bind their echo peer.
#[derive(Args, Debug)]
pub(crate) struct EchoPeer {
    /// The echo peer's address, one this host (or --peer-netns) holds.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    pub(crate) peer_ip: Ipv4Addr,
    /// Bind the echo peer inside this network namespace (a name `ip netns` lists), as the
    /// veth topology of `scripts/bench.sh --only veth` does: client, server and peer each in
    /// their own.
    #[arg(long)]
    pub(crate) peer_netns: Option<String>,
}

/// Long-term credentials (RFC 8489 §9.2).
#[derive(Args, Debug)]
pub(crate) struct Credentials {
    /// Username.
    #[arg(long)]
    pub(crate) user: String,
    /// Password.
    #[arg(long)]
    pub(crate) pass: String,
}
