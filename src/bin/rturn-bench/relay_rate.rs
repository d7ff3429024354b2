//! `relay-rate`: ChannelData relayed at a fixed rate, with loss and latency.
//!
//! Sets up the flows (allocations with a channel to the echo peer, see `flows`), offers the
//! rate once for the duration (see `load` for the schedule, the payload and what is timed),
//! deletes the allocations and reports.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::flows;
use crate::load::{self, Load};
use crate::proto::Credentials;
use crate::stats::Tally;

/// What `relay-rate` was asked to do.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) server: SocketAddr,
    pub(crate) creds: Credentials,
    /// Where the echo peer is bound.
    pub(crate) echo: flows::EchoPeer,
    /// Allocations, each with a channel to the echo peer.
    pub(crate) flows: usize,
    /// Packets per second, all flows together, one way.
    pub(crate) rate: u32,
    /// ChannelData payload bytes.
    pub(crate) size: usize,
    pub(crate) duration: Duration,
    /// Packets per wake-up of the sender, about.
    pub(crate) batch: usize,
}

/// Sets up the flows, relays for the duration, deletes the allocations, reports.
pub(crate) async fn run(params: Params) -> anyhow::Result<serde_json::Value> {
    let mut failures = Tally::default();
    let flows = flows::set_up(
        params.server,
        params.creds,
        params.flows,
        params.echo,
        &mut failures,
    )
    .await?;
    let ready = flows.clients.len();
    let load = Load {
        rate: params.rate,
        size: params.size,
        duration: params.duration,
        batch: params.batch,
        run: 1,
    };
    let outcome = tokio::task::block_in_place(|| load::run(&flows, load))?;
    flows.tear_down(&mut failures).await?;
    failures.report();
    let mut report = json!({
        "workload": "relay_rate",
        "flows": params.flows,
        "ready": ready,
        "size": params.size,
        "batch": params.batch,
        "errors": failures.total(),
    });
    if let Some(report) = report.as_object_mut() {
        report.extend(outcome.fields());
    }
    Ok(report)
}
