//! Control of a running server: reload and drain commands (from SIGHUP, SIGUSR1/systemd and
//! the admin API), the drain deadline, and the orderly shutdown that follows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth_store::AuthStore;
use super::ports::Pools;
use super::reload::{self, AdminToken, HttpLive, Live};
use super::stats::{Snapshot, Stats};
use super::systemd;
use super::tls::CertStore;
use super::workers::Workers;
use crate::config::Config;
use crate::turn::quota::Quotas;

/// How long shutdown waits for open connections to finish their current message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Asks a running server to change course.
#[derive(Debug)]
pub enum Control {
    /// Apply this (already validated) configuration: credentials, peer rules, quotas,
    /// lifetimes, signaling limits, origins, the admin token, `[ice]` and the certificate,
    /// without dropping anything; what only a restart applies is named (see `reload.rs`).
    Reload(Box<Config>),
    /// Refuse new allocations and exit when the last one ends (or `drain-timeout`).
    Drain,
}

/// A server that is up: what the control loop and shutdown act on.
pub(super) struct Running<'a> {
    pub(super) config: &'a Config,
    pub(super) shutdown: CancellationToken,
    pub(super) control: mpsc::Receiver<Control>,
    pub(super) admin_rx: mpsc::Receiver<Control>,
    pub(super) workers: Arc<Workers>,
    pub(super) quotas: Arc<Quotas>,
    pub(super) auth: Arc<AuthStore>,
    pub(super) pools: Arc<Pools>,
    pub(super) http: Option<HttpLive>,
    pub(super) certs: Option<Arc<CertStore>>,
    pub(super) admin_token: Arc<AdminToken>,
    pub(super) own: Vec<SocketAddr>,
    pub(super) nonce_secret: Vec<u8>,
    pub(super) tasks: TaskTracker,
    pub(super) stats: Arc<Stats>,
}

impl Running<'_> {
    /// Applies reloads and drains until `shutdown` is cancelled, then stops everything and
    /// returns what was counted.
    pub(super) async fn serve(self) -> Snapshot {
        let Running {
            config,
            shutdown,
            mut control,
            mut admin_rx,
            workers,
            quotas,
            auth,
            pools,
            http: http_handles,
            certs: store,
            admin_token,
            own,
            nonce_secret,
            tasks,
            stats,
        } = self;
        systemd::ready();
        tasks.spawn(systemd::watchdog(shutdown.clone()));
        let mut current = config.clone();
        let mut drain_deadline: Option<Instant> = None;
        let mut drain_check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let command = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(command) = control.recv() => command,
                Some(command) = admin_rx.recv() => command,
                _ = drain_check.tick(), if drain_deadline.is_some() => {
                    let held = workers.snapshot().await.allocations();
                    if held == 0 || drain_deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::info!(allocations = held, "drained");
                        shutdown.cancel();
                    }
                    continue;
                }
            };
            match command {
                Control::Reload(new) => {
                    let live = Live {
                        workers: &workers,
                        quotas: &quotas,
                        auth: &auth,
                        pools: &pools,
                        http: http_handles.as_ref(),
                        certs: store.as_ref(),
                        admin: &admin_token,
                        started: config,
                    };
                    let draining = drain_deadline.is_some();
                    reload::reload(&new, &live, &own, &nonce_secret, draining).await;
                    current = *new;
                }
                Control::Drain => {
                    workers.drain(current.relay.alternate_server).await;
                    drain_deadline.get_or_insert(Instant::now() + current.server.drain_timeout);
                    tracing::info!(
                        timeout = ?current.server.drain_timeout,
                        "draining: new allocations refused, existing ones live on"
                    );
                }
            }
        }
        systemd::stopping();
        tracing::info!("shutting down");
        // Relay sockets stop with their allocations.
        let allocations = workers.clear().await;
        let stopping = Arc::clone(&workers);
        if tokio::task::spawn_blocking(move || stopping.stop())
            .await
            .is_err()
        {
            tracing::error!("the udp event loops did not stop cleanly");
        }
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within {SHUTDOWN_GRACE:?}");
        }
        let s = stats.snapshot();
        tracing::info!(
            received = s.received,
            replied = s.replied,
            relayed = s.relayed,
            malformed = s.malformed,
            ignored = s.ignored,
            io_errors = s.io_errors,
            tcp_accepted = s.tcp_accepted,
            tcp_broken = s.tcp_broken,
            rate_limited = s.rate_limited,
            allocations,
            "stopped"
        );
        s
    }
}
