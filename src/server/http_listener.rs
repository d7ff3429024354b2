//! The HTTP and HTTPS listeners (and the admin API's own): an accept loop that admits a
//! connection only under `max-http-connections-per-ip`, `max-http-connections` and the
//! descriptor budget, all checked at accept, before any request or upgrade; then, per
//! connection, the TLS handshake within `tls-handshake-timeout` and the timed HTTP serving
//! of [`super::http_conn`]. Failed accepts back off instead of spinning. Behind a load
//! balancer (`proxy-protocol-from`), the connection's task reads its PROXY header first
//! ([`super::proxy`]); a balancer's connections take their place under
//! `max-http-connections` and the budget at accept and under `max-http-connections-per-ip`
//! as the client the header names; every other connection is admitted at accept, as itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::descriptors::{Budget, Kind, Permit};
use super::http_activity::Activity;
use super::http_conn::{self, Accepted, ConnContext, Slots};
use super::http_stats::{HttpEvent, HttpStats};
use super::proxy::{Policy, ProxyStats};
use super::tcp::{PerIp, PerIpSlot};
use super::throttle::{Backoff, Throttle, accept};
use super::tls::CertStore;
use crate::config::{Config, ProxyListener};

/// The connection caps of one group of listeners (HTTP and HTTPS share one; the admin
/// listener has its own, so a flood of the public ones cannot lock the operator out).
pub(super) struct Caps {
    total: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
}

impl Caps {
    /// `total` connections at once, `per_ip` from one address (0: no limit).
    pub(super) fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            per_ip: Arc::new(PerIp::new(per_ip)),
        })
    }
}

/// What one listener needs besides its socket.
pub(super) struct HttpListener {
    /// "http", "https" or "admin", for the log.
    pub(super) name: &'static str,
    /// Set on HTTPS.
    pub(super) tls: Option<TlsAcceptor>,
    /// `tls-handshake-timeout`.
    pub(super) handshake_timeout: Duration,
    /// The caps this listener counts against.
    pub(super) caps: Arc<Caps>,
    /// The descriptor budget, and the list of connections it may shed.
    pub(super) budget: Arc<Budget>,
    /// Shared by every HTTP connection.
    pub(super) conn: Arc<ConnContext>,
    /// Tracks connection tasks so shutdown can wait for them.
    pub(super) tasks: TaskTracker,
    /// Set when this listener sits behind a load balancer speaking the PROXY protocol.
    pub(super) proxy: Option<Arc<Policy>>,
}

/// What the HTTP listeners share, to start one.
pub(super) struct Serving<'a> {
    /// `[server]` timeouts and caps.
    pub(super) config: &'a Config,
    /// Shared with TURN over TCP/TLS.
    pub(super) budget: &'a Arc<Budget>,
    /// Shared by every HTTP listener.
    pub(super) stats: &'a Arc<HttpStats>,
    /// Where listener and connection tasks are tracked.
    pub(super) tasks: &'a TaskTracker,
    /// Fires on shutdown.
    pub(super) shutdown: &'a CancellationToken,
    /// What the PROXY protocol step counts.
    pub(super) proxy: &'a Arc<ProxyStats>,
}

impl Serving<'_> {
    /// A set of caps from `[server]`.
    pub(super) fn caps(&self) -> Arc<Caps> {
        let server = &self.config.server;
        Caps::new(
            server.max_http_connections,
            server.max_http_connections_per_ip,
        )
    }

    /// Serves `app` on `listener`, HTTPS when given a certificate store.
    pub(super) fn spawn(
        &self,
        name: &'static str,
        listener: std::net::TcpListener,
        tls: Option<&Arc<CertStore>>,
        app: axum::Router,
        caps: Arc<Caps>,
    ) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot register the {name} listener with tokio: {e}");
                return;
            }
        };
        let tls = match tls
            .map(|store| super::tls::acceptor(store, true))
            .transpose()
        {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!("cannot set up the {name} listener: {e}");
                return;
            }
        };
        super::listeners::log_bound(name, listener.local_addr(), 1);
        let server = &self.config.server;
        let kind = match name {
            "http" => Some(ProxyListener::Http),
            "https" => Some(ProxyListener::Https),
            _ => None, // the admin listener takes none
        };
        let timeout = server.tls_handshake_timeout;
        let proxy = kind
            .and_then(|kind| Policy::for_listener(&self.config.listen, kind, timeout, self.proxy));
        let conn = ConnContext {
            app,
            header_timeout: server.http_header_timeout,
            idle_timeout: server.http_idle_timeout,
            stats: Arc::clone(self.stats),
            shutdown: self.shutdown.clone(),
        };
        let ctx = HttpListener {
            name,
            tls,
            handshake_timeout: server.tls_handshake_timeout,
            caps,
            budget: Arc::clone(self.budget),
            conn: Arc::new(conn),
            tasks: self.tasks.clone(),
            proxy,
        };
        self.tasks.spawn(serve(listener, ctx));
    }
}

/// Accepts connections until shutdown.
async fn serve(listener: TcpListener, ctx: HttpListener) {
    let shutdown = ctx.conn.shutdown.clone();
    let (mut backoff, mut warn) = (Backoff::default(), Throttle::default());
    let ctx = Arc::new(ctx);
    loop {
        let pacing = (&mut backoff, &mut warn);
        let Some((stream, peer)) = accept(&listener, &shutdown, pacing, |e, warn| {
            ctx.budget.accept_error(Kind::Http);
            warn.warn(|| tracing::warn!("{} accept failed: {e}", ctx.name));
        })
        .await
        else {
            return;
        };
        if let Some(policy) = ctx.proxy.clone().filter(|p| p.trusts(peer)) {
            // Under the total cap and the budget now; per IP as the client its header
            // names, once its own task has read it.
            let Some((total, budget)) = room(&ctx).await else {
                continue;
            };
            let conn_ctx = Arc::clone(&ctx);
            ctx.tasks.spawn(async move {
                let mut stream = stream;
                let client = tokio::select! {
                    _ = conn_ctx.conn.shutdown.cancelled() => return,
                    client = policy.client(&mut stream, peer) => client,
                };
                let Some(client) = client else { return };
                let Some(per_ip) = per_ip(&conn_ctx, client) else {
                    return;
                };
                let slots = Slots {
                    budget,
                    total,
                    per_ip,
                };
                connection(stream, accepted(&conn_ctx, client, slots), &conn_ctx).await;
            });
            continue;
        }
        // Refused connections are closed at once: the client sees EOF or a reset.
        let Some(slots) = admit(&ctx, peer).await else {
            continue;
        };
        let accepted = accepted(&ctx, peer, slots);
        let conn_ctx = Arc::clone(&ctx);
        ctx.tasks.spawn(async move {
            let mut stream = stream;
            // A PROXY header from an untrusted address is refused.
            if let Some(policy) = &conn_ctx.proxy {
                let refused = tokio::select! {
                    _ = conn_ctx.conn.shutdown.cancelled() => true,
                    client = policy.client(&mut stream, peer) => client.is_none(),
                };
                if refused {
                    return;
                }
            }
            connection(stream, accepted, &conn_ctx).await;
        });
    }
}

/// An admitted connection of `client`, counted, with its timers and its place on the
/// shedding list.
fn accepted(ctx: &HttpListener, client: SocketAddr, slots: Slots) -> Accepted {
    ctx.conn.stats.count(HttpEvent::Accepted);
    let activity = Arc::new(Activity::new());
    Accepted {
        client,
        slots,
        listing: ctx.budget.list(Arc::clone(&activity)),
        activity,
    }
}

/// The caps, then the descriptor budget (which may shed an idle connection to make room).
pub(super) async fn admit(ctx: &HttpListener, peer: SocketAddr) -> Option<Slots> {
    let per_ip = per_ip(ctx, peer)?;
    let (total, budget) = room(ctx).await?;
    Some(Slots {
        budget,
        total,
        per_ip,
    })
}

/// A place under `max-http-connections-per-ip` for `client` (refusals counted).
fn per_ip(ctx: &HttpListener, client: SocketAddr) -> Option<PerIpSlot> {
    let slot = PerIp::acquire(&ctx.caps.per_ip, client.ip());
    if slot.is_none() {
        ctx.conn.stats.count(HttpEvent::RefusedPerIp);
    }
    slot
}

/// A place under `max-http-connections`, then in the descriptor budget (refusals counted).
async fn room(ctx: &HttpListener) -> Option<(OwnedSemaphorePermit, Permit)> {
    let Ok(total) = Arc::clone(&ctx.caps.total).try_acquire_owned() else {
        ctx.conn.stats.count(HttpEvent::RefusedMax);
        return None;
    };
    // Counted by the budget when refused.
    let budget = ctx.budget.acquire(Kind::Http).await?;
    Some((total, budget))
}

/// One admitted connection: the TLS handshake first on HTTPS (shed like a connection
/// waiting for a request).
async fn connection(stream: TcpStream, accepted: Accepted, ctx: &HttpListener) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = &ctx.tls else {
        return http_conn::serve(stream, accepted, &ctx.conn).await;
    };
    let handshake = tokio::select! {
        _ = ctx.conn.shutdown.cancelled() => return,
        _ = accepted.activity.shed_requested() => return,
        r = tokio::time::timeout(ctx.handshake_timeout, acceptor.accept(stream)) => r,
    };
    match handshake {
        Ok(Ok(tls)) => {
            accepted.activity.restart();
            http_conn::serve(tls, accepted, &ctx.conn).await;
        }
        Ok(Err(e)) => {
            let client = accepted.client;
            tracing::debug!(%client, "https handshake failed: {e}");
            ctx.conn.stats.count(HttpEvent::HandshakeFailed);
        }
        Err(_) => ctx.conn.stats.count(HttpEvent::HandshakeTimeout),
    }
}
