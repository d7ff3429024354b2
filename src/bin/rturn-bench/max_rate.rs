//! `max-rate`: the highest rate a server relays with less than `--max-loss` percent lost, and
//! the latency it adds at half that rate.
//!
//! The flows are set up once; every probe is a short run of `load` on them, with its own run
//! id so that late packets of one probe do not count in the next. The search doubles the rate
//! from `--start-rate` while probes pass (up to `--max-rate`), halves it while they fail, then
//! bisects between the highest passing and the lowest failing rate until they are within
//! `--precision` of each other; `--max-probes` bounds it all. A probe fails when more than
//! `--max-loss` percent of its packets are lost or could not be sent, and a rate fails when
//! two probes in a row at it fail (one stray burst of loss should not end the search). The measurement then
//! runs for `--measure` at half the highest passing rate, with smaller batches
//! (`--latency-batch`): latency counts from the scheduled send time, so the sender's wait for
//! its batch is part of it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::flows::{self, Flows};
use crate::load::{self, Load};
use crate::procfs;
use crate::proto::Credentials;
use crate::stats::{Tally, round};

/// The search goes no lower than this many packets per second.
const MIN_RATE: u32 = 100;
/// Pause between probes, for the server to finish whatever a failed probe left queued.
const SETTLE: Duration = Duration::from_millis(100);

/// What `max-rate` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) server: SocketAddr,
    pub(crate) creds: Credentials,
    /// Where the echo peer is bound.
    pub(crate) echo: flows::EchoPeer,
    pub(crate) flows: usize,
    pub(crate) size: usize,
    pub(crate) batch: usize,
    /// First rate probed, packets per second (all flows, one way).
    pub(crate) start_rate: u32,
    /// No rate above this is probed.
    pub(crate) max_rate: u32,
    pub(crate) max_probes: usize,
    pub(crate) probe: Duration,
    pub(crate) measure: Duration,
    /// Packets per wake-up of the sender during the measurement.
    pub(crate) latency_batch: usize,
    /// Loss allowed in a passing probe, percent.
    pub(crate) max_loss: f64,
    /// Stop bisecting when the failing rate is within this fraction above the passing one.
    pub(crate) precision: f64,
}

/// One probe of the search.
struct Probe {
    rate: u32,
    loss_percent: f64,
    not_sent: u64,
    generator_dropped: u64,
    generator_bound: bool,
    passed: bool,
}

/// Sets up the flows, searches, measures at half the rate found, deletes, reports.
pub(crate) async fn run(mut params: Params) -> anyhow::Result<serde_json::Value> {
    let mut failures = Tally::default();
    let creds = params.creds.clone();
    let flows = flows::set_up(
        params.server,
        creds,
        params.flows,
        std::mem::take(&mut params.echo),
        &mut failures,
    )
    .await?;
    let ready = flows.clients.len();
    let process_cpu = procfs::process_cpu();
    let (probes, best, mut cpu) = tokio::task::block_in_place(|| search(&flows, &params))?;
    let mut at_half = serde_json::Map::new();
    if let Some(best) = best {
        let load = Load {
            rate: (best / 2).max(1),
            size: params.size,
            duration: params.measure,
            batch: params.latency_batch,
            run: u32::try_from(probes.len() + 1).unwrap_or(u32::MAX),
        };
        tokio::time::sleep(SETTLE).await;
        let outcome = tokio::task::block_in_place(|| load::run(&flows, load))?;
        cpu += outcome.cpu;
        at_half = outcome.fields();
    }
    let process_cpu = match (process_cpu, procfs::process_cpu()) {
        (Some(before), Some(after)) => Some(round((after - before).as_secs_f64(), 2)),
        _ => None,
    };
    flows.tear_down(&mut failures).await?;
    failures.report();
    // Who lost the packets at the lowest failing rate, the limit found.
    let lowest_failing = probes
        .iter()
        .filter(|p| !p.passed && best.is_none_or(|b| p.rate > b))
        .min_by_key(|p| p.rate);
    let limited_by = lowest_failing.map(|p| {
        if p.generator_bound {
            "generator"
        } else {
            "server"
        }
    });
    let probes: Vec<_> = probes
        .iter()
        .map(|p| {
            json!({
                "probe_rate": p.rate,
                "probe_loss_percent": round(p.loss_percent, 4),
                "probe_not_sent": p.not_sent,
                "probe_generator_dropped": p.generator_dropped,
                "passed": p.passed,
            })
        })
        .collect();
    Ok(json!({
        "workload": "max_rate",
        "flows": params.flows,
        "ready": ready,
        "size": params.size,
        "batch": params.batch,
        "latency_batch": params.latency_batch,
        "max_loss_percent": params.max_loss,
        "max_rate": best,
        "relayed_per_second": best.map(|b| u64::from(b) * 2),
        "limited_by": limited_by,
        "probes": probes,
        "at_half": at_half,
        "generator_engine_cpu_s": round(cpu.as_secs_f64(), 3),
        "generator_process_cpu_s": process_cpu,
        "errors": failures.total(),
    }))
}

/// The probes, the highest passing rate, and the engine's CPU time over all of them.
fn search(flows: &Flows, params: &Params) -> anyhow::Result<(Vec<Probe>, Option<u32>, Duration)> {
    let mut probes = Vec::new();
    let (mut lo, mut hi): (Option<u32>, Option<u32>) = (None, None);
    let mut rate = params
        .start_rate
        .clamp(MIN_RATE, params.max_rate.max(MIN_RATE));
    let mut cpu = Duration::ZERO;
    let mut retried = false;
    for n in 0..params.max_probes {
        if n > 0 {
            std::thread::sleep(SETTLE);
        }
        let load = Load {
            rate,
            size: params.size,
            duration: params.probe,
            batch: params.batch,
            run: u32::try_from(n + 1).unwrap_or(u32::MAX),
        };
        let outcome = load::run(flows, load)?;
        cpu += outcome.cpu;
        let passed = outcome.passes(params.max_loss);
        eprintln!(
            "rturn-bench: probe {rate}/s on {} flows: {:.3} % lost ({} in the generator), \
             {} not sent: {}",
            flows.clients.len(),
            outcome.loss_percent(),
            outcome.generator_dropped,
            outcome.not_sent,
            if passed { "pass" } else { "fail" }
        );
        probes.push(Probe {
            rate,
            loss_percent: outcome.loss_percent(),
            not_sent: outcome.not_sent,
            generator_dropped: outcome.generator_dropped,
            generator_bound: outcome.generator_bound(),
            passed,
        });
        if passed {
            lo = Some(lo.map_or(rate, |l| l.max(rate)));
        } else if !retried && n + 1 < params.max_probes {
            // One lost burst in a second fails a probe: a rate fails when it fails twice.
            retried = true;
            continue;
        } else {
            hi = Some(hi.map_or(rate, |h| h.min(rate)));
        }
        retried = false;
        rate = match (lo, hi) {
            (Some(l), None) if l < params.max_rate => l.saturating_mul(2).min(params.max_rate),
            (None, Some(h)) if h > MIN_RATE => (h / 2).max(MIN_RATE),
            (Some(l), Some(h)) if f64::from(h) > f64::from(l) * (1.0 + params.precision) => {
                l + (h - l) / 2
            }
            _ => break,
        };
    }
    Ok((probes, lo, cpu))
}
