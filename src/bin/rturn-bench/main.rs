//! `rturn-bench`: a load generator for STUN/TURN servers, rturn and coturn alike.
//!
//! Each subcommand drives one workload against a server on the loopback interface and prints
//! exactly one JSON object with the measured figures on stdout; diagnostics go to stderr. Only
//! standard RFC 8489 / RFC 8656 (RFC 5766) behaviour is used: the realm and nonce come from
//! the 401, a 438 brings a new nonce, requests carry MESSAGE-INTEGRITY (HMAC-SHA1) and
//! FINGERPRINT, and channel numbers start at 0x4000.
//!
//! Every loop is bounded twice: by a count and by time (`--duration`, plus a hard timeout on
//! every receive), and every target address must be a loopback address.
//!
//! # Layout
//!
//! - `proto`: request building, response decoding, one transaction with retransmissions.
//! - `stats`: a fixed-size latency histogram (constant memory, whatever the run length).
//! - `alloc_rate`, `binding_rate`, `hold`, `relay_rate`: the workloads.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

mod alloc_rate;
mod binding_rate;
mod hold;
mod proto;
mod relay_rate;
mod stats;

/// Load generator for STUN/TURN servers on the loopback interface.
#[derive(Parser, Debug)]
#[command(name = "rturn-bench", version)]
struct Cli {
    /// Worker threads of the load generator's runtime (leave cores for the server).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// ChannelData at a fixed rate through each client's allocation to an echo peer and
    /// back: loss and round-trip latency.
    RelayRate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        creds: Credentials,
        /// Concurrent clients, each with its own allocation and echo peer.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Packets per second sent, all clients together (the server relays twice as many).
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// ChannelData payload bytes.
        #[arg(long, default_value_t = 160)]
        size: usize,
        /// How long to send (at most 240 s: no refreshes are sent).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

/// The server under test.
#[derive(Args, Debug)]
struct Target {
    /// STUN/TURN server address (UDP); must be a loopback address.
    #[arg(long)]
    server: SocketAddr,
}

/// Long-term credentials (RFC 8489 §9.2).
#[derive(Args, Debug)]
struct Credentials {
    /// Username.
    #[arg(long)]
    user: String,
    /// Password.
    #[arg(long)]
    pass: String,
}

/// Caps that keep a mistyped option from running for hours or opening the world.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_CLIENTS: usize = 10_000;
const MAX_WINDOW: usize = 1024;
const MAX_HOLD_COUNT: usize = 1_000_000;
/// Permissions last 300 s and relay-rate sends no refreshes.
const MAX_RELAY_DURATION: Duration = Duration::from_secs(240);
const MAX_RATE: u32 = 10_000_000;
const MAX_SIZE: usize = 1200;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the one JSON report line to stdout and flushes it at once: a driver script may be
/// waiting for it while this process keeps running (`hold`).
fn print_report(report: &serde_json::Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{report}")
        .and_then(|()| stdout.flush())
        .context("writing the report to stdout")
}

/// Runs the chosen workload; each prints its own report.
fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.threads == 0 || cli.threads > 64 {
        bail!("--threads must be between 1 and 64");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::AllocRate {
            target,
            creds,
            clients,
            duration,
            reuse_socket,
        } => {
            let server = loopback(target.server)?;
            check_duration(duration, "--duration")?;
            check_range(clients, 1, MAX_CLIENTS, "--clients")?;
            let params = alloc_rate::Params {
                server,
                user: creds.user,
                pass: creds.pass,
                clients,
                duration,
                reuse_socket,
            };
            print_report(&runtime.block_on(alloc_rate::run(params))?)
        }
        Command::BindingRate {
            target,
            clients,
            window,
            duration,
        } => {
            let server = loopback(target.server)?;
            check_duration(duration, "--duration")?;
            check_range(clients, 1, MAX_CLIENTS, "--clients")?;
            check_range(window, 1, MAX_WINDOW, "--window")?;
            let params = binding_rate::Params {
                server,
                clients,
                window,
                duration,
            };
            print_report(&runtime.block_on(binding_rate::run(params))?)
        }
        Command::Hold {
            target,
            creds,
            count,
            hold,
            in_flight,
            setup_timeout,
        } => {
            let server = loopback(target.server)?;
            check_range(count, 1, MAX_HOLD_COUNT, "--count")?;
            check_range(in_flight, 1, MAX_CLIENTS, "--in-flight")?;
            check_duration(hold, "--hold")?;
            check_duration(setup_timeout, "--setup-timeout")?;
            let params = hold::Params {
                server,
                user: creds.user,
                pass: creds.pass,
                count,
                hold,
                in_flight,
                setup_timeout,
            };
            // Prints its report itself, between the set-up and the holding phase.
            runtime.block_on(hold::run(params))
        }
        Command::RelayRate {
            target,
            creds,
            clients,
            rate,
            size,
            duration,
        } => {
            let server = loopback(target.server)?;
            check_duration(duration, "--duration")?;
            if duration > MAX_RELAY_DURATION {
                bail!("--duration must be at most {MAX_RELAY_DURATION:?} for relay-rate");
            }
            check_range(clients, 1, MAX_CLIENTS, "--clients")?;
            check_range(size, relay_rate::MIN_SIZE, MAX_SIZE, "--size")?;
            if rate == 0 || rate > MAX_RATE {
                bail!("--rate must be between 1 and {MAX_RATE}, not {rate}");
            }
            let params = relay_rate::Params {
                server,
                user: creds.user,
                pass: creds.pass,
                clients,
                rate,
                size,
                duration,
            };
            print_report(&runtime.block_on(relay_rate::run(params))?)
        }
    }
}

/// Refuses any target that is not on the loopback interface: this tool floods what it hits.
fn loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !addr.ip().to_canonical().is_loopback() {
        bail!("refusing non-loopback target {addr}: rturn-bench only sends to 127.0.0.0/8 or ::1");
    }
    Ok(addr)
}

fn check_duration(d: Duration, name: &str) -> anyhow::Result<()> {
    if d.is_zero() || d > MAX_DURATION {
        bail!("{name} must be more than 0 and at most {MAX_DURATION:?}");
    }
    Ok(())
}

fn check_range(n: usize, min: usize, max: usize, name: &str) -> anyhow::Result<()> {
    if !(min..=max).contains(&n) {
        bail!("{name} must be between {min} and {max}, not {n}");
    }
    Ok(())
}
