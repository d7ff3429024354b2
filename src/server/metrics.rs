//! `/metrics` in the Prometheus text format: counters added up over every shard and worker
//! at scrape time, with no per-user labels.

use std::sync::Arc;

use super::descriptors::Budget;
use super::http_stats::HttpStats;
use super::report::{BuildInfo, Held};
use super::shard::Shared;
use super::stats::Stats;
use crate::metrics::Counted;
use crate::signal::hub::Hub;
use crate::turn::metrics::TurnMetrics;

/// What a scrape reads.
pub(super) struct Sources {
    pub(super) shared: Arc<Shared>,
    pub(super) stats: Arc<Stats>,
    pub(super) hub: Option<Arc<Hub>>,
    pub(super) port_range: usize,
    pub(super) budget: Arc<Budget>,
    pub(super) http: Arc<HttpStats>,
}

/// Renders every metric: one table of sources, each reporting its own families.
pub(super) fn render(src: &Sources) -> String {
    let mut turn = TurnMetrics::default();
    let mut held = Held {
        port_range: src.port_range,
        ..Held::default()
    };
    for shard in 0..src.shared.shard_count() {
        let guard = src.shared.lock(shard);
        turn.add(guard.manager.metrics());
        for (total, n) in
            (held.by_transport.iter_mut()).zip(guard.manager.allocations_by_transport())
        {
            *total += n;
        }
        held.ports += guard.manager.binder().in_use();
        held.limited_sources += guard.limiter.tracked();
    }
    // Reserved ports are shared by every shard: counted once.
    held.reserved = src.shared.lock(0).manager.binder().reserved();
    let stats = src.stats.snapshot();
    let mut table: Vec<&dyn Counted> = vec![
        &BuildInfo,
        &held,
        &turn,
        &stats,
        src.budget.as_ref(),
        src.http.as_ref(),
    ];
    if let Some(hub) = &src.hub {
        table.push(hub.as_ref());
    }
    crate::metrics::render(&table)
}
