//! One HTTP connection served by hyper with the axum routes, timed: its first request head
//! must arrive within `http-header-timeout` of accept, each later one within that of its
//! first byte, and a connection waiting for a request closes after `http-idle-timeout` of
//! silence. A request being answered is never timed; a connection upgraded to a WebSocket
//! leaves these timers (the signaling heartbeat takes over) but keeps its [`Slots`].
//!
//! [`Activity`] is the clock: the socket wrapper ([`Tracked`]) reports bytes, the service
//! wrapper reports requests, and the connection's task sleeps until the deadline they imply.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::descriptors::{Listing, Permit};
use super::http_activity::{Activity, Expiry};
use super::http_stats::{HttpEvent, HttpStats};
use super::tcp::PerIpSlot;
use crate::http::ClientAddr;

/// hyper's read-buffer cap for a request head (request line and headers): it answers 431
/// once a head passes it, though one read may overshoot (about 128 KiB at most is held).
const MAX_HEAD: usize = 64 * 1024;
/// What an HTTP connection holds from accept until its socket closes, WebSocket included.
/// Never read: each gives its place back when dropped.
#[expect(dead_code, reason = "held for their Drop")]
pub(super) struct Slots {
    /// Its share of the descriptor budget.
    pub(super) budget: Permit,
    /// Its place under `max-http-connections`.
    pub(super) total: tokio::sync::OwnedSemaphorePermit,
    /// Its place under `max-http-connections-per-ip`.
    pub(super) per_ip: PerIpSlot,
}

/// The socket, reporting bytes to the connection's [`Activity`] and holding its [`Slots`].
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    _slots: Slots,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The axum routes for one connection: the client address added to each request (for
/// `ConnectInfo<ClientAddr>`), each request reported to the [`Activity`].
#[derive(Clone)]
struct Service {
    app: TowerToHyperService<axum::Router>,
    client: ClientAddr,
    activity: Arc<Activity>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.client));
        let guard = self.activity.request();
        let answer = self.app.call(request);
        Box::pin(async move {
            let response = answer.await;
            drop(guard);
            response
        })
    }
}

/// What every connection of the HTTP listeners shares.
pub(super) struct ConnContext {
    /// The routes.
    pub(super) app: axum::Router,
    /// `http-header-timeout`.
    pub(super) header_timeout: Duration,
    /// `http-idle-timeout`.
    pub(super) idle_timeout: Duration,
    /// Timeouts are counted here.
    pub(super) stats: Arc<HttpStats>,
    /// Fires on shutdown.
    pub(super) shutdown: CancellationToken,
}

/// One accepted connection: where it is counted and how it is timed.
pub(super) struct Accepted {
    /// The client.
    pub(super) client: SocketAddr,
    /// Its places under the caps and the budget.
    pub(super) slots: Slots,
    /// Its timers.
    pub(super) activity: Arc<Activity>,
    /// Its place on the shedding list, until it closes or is upgraded.
    pub(super) listing: Listing,
}

/// Serves one connection (after its TLS handshake, if any) until it closes, times out, is
/// shed, or is upgraded to a WebSocket.
pub(super) async fn serve<S>(io: S, accepted: Accepted, ctx: &ConnContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        client,
        slots,
        activity,
        listing,
    } = accepted;
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: Arc::clone(&activity),
        _slots: slots,
    });
    let service = Service {
        app: TowerToHyperService::new(ctx.app.clone()),
        client: ClientAddr(client),
        activity: Arc::clone(&activity),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    let expired = loop {
        let deadline = activity.deadline(ctx.header_timeout, ctx.idle_timeout);
        let timer = async move {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => break None,
            _ = activity.changed() => {}
            _ = activity.shed_requested() => break None,
            _ = ctx.shutdown.cancelled(), if !stopping => {
                if activity.waiting_since().is_some() {
                    break None;
                }
                // Let the answer in progress finish; hyper closes after it.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = timer => {
                let now = Instant::now();
                match activity.deadline(ctx.header_timeout, ctx.idle_timeout) {
                    Some((at, why)) if at <= now => break Some(why),
                    _ => {}
                }
            }
        }
    };
    drop(listing);
    match expired {
        Some(Expiry::Header) => ctx.stats.count(HttpEvent::HeaderTimeout),
        Some(Expiry::Idle) => ctx.stats.count(HttpEvent::IdleTimeout),
        None => {}
    }
}
