//! Gathering `/metrics` (the route is in `http/`): one snapshot command per worker, added up,
//! and every subsystem's [`Counted`] source rendered from one table. No per-user labels.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::descriptors::Budget;
use super::http_stats::HttpStats;
use super::offload::OffloadStatus;
use super::proxy::ProxyStats;
use super::redis_auth::RedisAuthStatus;
use super::report::{BuildInfo, PortRange};
use super::shared_tls::SharedStats;
use super::stats::Stats;
use super::workers::Workers;
use crate::metrics::Counted;
use crate::signal::hub::Hub;

/// What a scrape reads.
pub(super) struct Sources {
    pub(super) workers: Arc<Workers>,
    pub(super) stats: Arc<Stats>,
    pub(super) hub: Option<Arc<Hub>>,
    pub(super) port_range: usize,
    pub(super) budget: Arc<Budget>,
    pub(super) http: Arc<HttpStats>,
    pub(super) proxy: Arc<ProxyStats>,
    /// Set when `turns:` and HTTPS share a port.
    pub(super) shared_tls: Option<Arc<SharedStats>>,
    /// Whether the kernel relays bound channels.
    pub(super) offload: OffloadStatus,
    /// The `[auth] redis` polling, when configured.
    pub(super) redis_auth: Option<Arc<RedisAuthStatus>>,
}

/// The `/metrics` handler for [`crate::http::HttpState`].
pub(super) fn handler(
    sources: Sources,
) -> Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync> {
    let sources = Arc::new(sources);
    Arc::new(move || {
        let sources = Arc::clone(&sources);
        Box::pin(async move { render(&sources).await })
    })
}

/// Renders every metric: one table of sources, each reporting its own families.
pub(super) async fn render(src: &Sources) -> String {
    let workers = src.workers.snapshot().await;
    let range = PortRange(src.port_range);
    let stats = src.stats.snapshot();
    let mut table: Vec<&dyn Counted> = vec![
        &BuildInfo,
        &workers,
        &range,
        &stats,
        src.budget.as_ref(),
        src.http.as_ref(),
        src.proxy.as_ref(),
        &src.offload,
    ];
    if let Some(shared) = &src.shared_tls {
        table.push(shared.as_ref());
    }
    if let Some(redis) = &src.redis_auth {
        table.push(redis.as_ref());
    }
    if let Some(hub) = &src.hub {
        table.push(hub.as_ref());
    }
    crate::metrics::render(&table)
}
