//! `rturn-bench`: a load generator for STUN/TURN servers, rturn and coturn alike.
//!
//! Each subcommand drives one workload against a server on the loopback interface and prints
//! exactly one JSON object with the measured figures on stdout; diagnostics go to stderr. Only
//! standard RFC 8489 / RFC 8656 (RFC 5766) behaviour is used: the realm and nonce come from
//! the 401, a 438 brings a new nonce, requests carry MESSAGE-INTEGRITY (HMAC-SHA1) and
//! FINGERPRINT, and channel numbers start at 0x4000.
//!
//! Every loop is bounded twice: by a count and by time (`--duration`, plus a hard timeout on
//! every receive), and every target address must be a loopback address, but for the relay
//! workloads run inside a network namespace of their own (`netns`).
//!
//! # Layout
//!
//! - `cli`: the subcommands and their options.
//! - `proto`: request building, response decoding, one transaction with retransmissions.
//! - `stats`: HDR latency histograms (constant memory, whatever the run length), failures.
//! - `procfs`: open-files limit, CPU time and a server's RSS, from `/proc`.
//! - `flows`, `load`, `receiver`: allocations with channels to one echo peer, and the batched
//!   two-thread engine that offers ChannelData over them at a fixed rate.
//! - `netns`: the echo peer in another network namespace (the benchmark's veth topology).
//! - `alloc_rate`, `binding_rate`, `hold`, `relay_rate`, `max_rate`, `signal`: the workloads.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::cli::{Cli, Command};

mod alloc_rate;
mod binding_rate;
mod cli;
mod flows;
mod hold;
mod load;
mod max_rate;
mod netns;
mod procfs;
mod proto;
mod receiver;
mod relay_rate;
mod signal;
mod stats;

/// Caps that keep a mistyped option from running for hours or opening the world.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_CLIENTS: usize = 10_000;
const MAX_WINDOW: usize = 1024;
const MAX_HOLD_COUNT: usize = 1_000_000;
/// Permissions last 300 s and relay-rate sends no refreshes.
const MAX_RELAY_DURATION: Duration = Duration::from_secs(240);
const MAX_RATE: u32 = 10_000_000;
const MAX_SIZE: usize = 1200;
const MAX_PROBES: usize = 64;
const MAX_SIGNAL_CLIENTS: usize = 100_000;
const MAX_SIGNAL_RATE: f64 = 100.0;
/// Below the server's default `max-message-size` (64 KiB) with room for the JSON around it.
const MAX_SDP: usize = 60_000;

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
            echo,
            flows,
            rate,
            size,
            duration,
            batch,
        } => {
            let server = netns::check_target(target.server)?;
            let echo = echo_peer(echo)?;
            check_relay_time(duration, "--duration")?;
            check_flows(flows, size, batch)?;
            if rate == 0 || rate > MAX_RATE {
                bail!("--rate must be between 1 and {MAX_RATE}, not {rate}");
            }
            let params = relay_rate::Params {
                server,
                creds: proto::Credentials {
                    user: creds.user,
                    pass: creds.pass,
                },
                echo,
                flows,
                rate,
                size,
                duration,
                batch,
            };
            print_report(&runtime.block_on(relay_rate::run(params))?)
        }
        Command::MaxRate {
            target,
            creds,
            echo,
            flows,
            size,
            batch,
            start_rate,
            max_rate,
            max_probes,
            probe,
            measure,
            latency_batch,
            max_loss,
            precision,
        } => {
            let server = netns::check_target(target.server)?;
            let echo = echo_peer(echo)?;
            check_flows(flows, size, batch)?;
            check_range(latency_batch, 1, MAX_WINDOW, "--latency-batch")?;
            check_range(max_probes, 1, MAX_PROBES, "--max-probes")?;
            if max_rate == 0 || max_rate > MAX_RATE || start_rate == 0 || start_rate > max_rate {
                bail!("need 1 ≤ --start-rate ≤ --max-rate ≤ {MAX_RATE}");
            }
            let in_range = |x: f64, max: f64| x > 0.0 && x <= max;
            if !in_range(max_loss, 100.0) || !in_range(precision, 1.0) {
                bail!("--max-loss must be in (0, 100] percent and --precision in (0, 1]");
            }
            check_duration(probe, "--probe")?;
            check_duration(measure, "--measure")?;
            // Every probe also waits for the drain; the whole search must end before the
            // permissions do.
            let per_probe = probe + load::DRAIN + Duration::from_millis(200);
            let probes = u32::try_from(max_probes).unwrap_or(u32::MAX);
            check_relay_time(
                per_probe * probes + measure,
                "--max-probes × --probe + --measure",
            )?;
            let params = max_rate::Params {
                server,
                creds: proto::Credentials {
                    user: creds.user,
                    pass: creds.pass,
                },
                echo,
                flows,
                size,
                batch,
                start_rate,
                max_rate,
                max_probes,
                probe,
                measure,
                latency_batch,
                max_loss,
                precision,
            };
            print_report(&runtime.block_on(max_rate::run(params))?)
        }
        Command::Signal {
            server,
            path,
            clients,
            rooms,
            rate,
            duration,
            in_flight,
            setup_timeout,
            sdp_size,
            server_pid,
        } => {
            let servers = (server.into_iter())
                .map(loopback)
                .collect::<anyhow::Result<Vec<_>>>()?;
            if !path.starts_with("/ws") {
                bail!("--path must be the signaling route, /ws or /ws/<namespace>, not {path:?}");
            }
            check_range(clients, 1, MAX_SIGNAL_CLIENTS, "--clients")?;
            check_range(rooms, 1, clients, "--rooms")?;
            check_range(in_flight, 1, MAX_CLIENTS, "--in-flight")?;
            check_range(sdp_size, 4, MAX_SDP, "--sdp-size")?;
            if rate.is_nan() || rate <= 0.0 || rate > MAX_SIGNAL_RATE {
                bail!("--rate must be more than 0 and at most {MAX_SIGNAL_RATE} per second");
            }
            check_duration(duration, "--duration")?;
            check_duration(setup_timeout, "--setup-timeout")?;
            let params = signal::Params {
                servers,
                path,
                clients,
                rooms,
                rate,
                duration,
                in_flight,
                setup_timeout,
                sdp_size,
                server_pids: server_pid,
            };
            print_report(&runtime.block_on(signal::run(params))?)
        }
    }
}

/// The echo peer the options name, its namespace opened.
fn echo_peer(options: cli::EchoPeer) -> anyhow::Result<flows::EchoPeer> {
    Ok(flows::EchoPeer {
        ip: options.peer_ip,
        netns: options
            .peer_netns
            .as_deref()
            .map(netns::Netns::open)
            .transpose()?,
    })
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

/// Relay workloads send no refreshes: they must end before the permissions (300 s) do.
fn check_relay_time(d: Duration, name: &str) -> anyhow::Result<()> {
    check_duration(d, name)?;
    if d > MAX_RELAY_DURATION {
        bail!("{name} must be at most {MAX_RELAY_DURATION:?} (no refreshes are sent)");
    }
    Ok(())
}

fn check_flows(flows: usize, size: usize, batch: usize) -> anyhow::Result<()> {
    check_range(flows, 1, MAX_CLIENTS, "--flows")?;
    check_range(size, load::MIN_SIZE, MAX_SIZE, "--size")?;
    check_range(batch, 1, MAX_WINDOW, "--batch")?;
    procfs::check_fd_limit(flows + 1, &format!("--flows {flows}"))
}
