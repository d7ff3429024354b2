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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::descriptors::{Listing, Permit};
use super::http_listener::{HttpEvent, HttpStats};
use super::tcp::PerIpSlot;
use crate::http::ClientAddr;

/// hyper's read-buffer cap for a request head (request line and headers): it answers 431
/// once a head passes it, though one read may overshoot (about 128 KiB at most is held).
const MAX_HEAD: usize = 64 * 1024;
/// `head_since` when no request head has started.
const NO_HEAD: u64 = u64::MAX;

/// Why a connection was closed by its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// A request head took longer than `http-header-timeout`.
    Header,
    /// No request for `http-idle-timeout`.
    Idle,
}

/// What one connection is doing, as far as its timers care.
#[derive(Debug)]
pub(super) struct Activity {
    start: Instant,
    /// Requests being answered now.
    requests: AtomicUsize,
    /// Milliseconds after `start` of the last answer or write.
    idle_since: AtomicU64,
    /// Milliseconds after `start` of the first byte of the next request head, or [`NO_HEAD`].
    head_since: AtomicU64,
    changed: Notify,
    shed: CancellationToken,
}

impl Activity {
    /// A connection just accepted: its first request head is timed from now (see
    /// [`Activity::restart`]).
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            requests: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            changed: Notify::new(),
            shed: CancellationToken::new(),
        }
    }

    /// The TLS handshake is done: the first request head is timed from now.
    pub(super) fn restart(&self) {
        let now = self.now_ms();
        self.idle_since.store(now, Relaxed);
        self.head_since.store(now, Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// A request head arrived and is being answered until the guard is dropped.
    pub(super) fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Relaxed);
        self.head_since.store(NO_HEAD, Relaxed);
        self.changed.notify_one();
        RequestGuard(Arc::clone(self))
    }

    fn on_read(&self) {
        // The first byte of a request head starts its timer; bytes read while a request is
        // answered (pipelining) wait for the idle timer.
        if self.requests.load(Relaxed) == 0 && self.head_since.load(Relaxed) == NO_HEAD {
            self.head_since.store(self.now_ms(), Relaxed);
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        // A client reading a long answer slowly is not idle.
        self.idle_since.store(self.now_ms(), Relaxed);
    }

    /// Since when the connection has waited for a request; `None` while one is answered.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        (self.requests.load(Relaxed) == 0).then(|| self.at(self.idle_since.load(Relaxed)))
    }

    /// When the connection is closed if nothing changes, and why; `None` while a request is
    /// answered.
    pub(super) fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Expiry)> {
        if self.requests.load(Relaxed) > 0 {
            return None;
        }
        match self.head_since.load(Relaxed) {
            NO_HEAD => Some((self.at(self.idle_since.load(Relaxed)) + idle, Expiry::Idle)),
            head => Some((self.at(head) + header, Expiry::Header)),
        }
    }

    /// Asks the connection to close at once (the descriptor budget needs its slot).
    pub(super) fn shed(&self) {
        self.shed.cancel();
    }

    /// Resolves once [`Activity::shed`] was called.
    pub(super) async fn shed_requested(&self) {
        self.shed.cancelled().await;
    }
}

/// One request being answered; the connection is waiting again once it is dropped.
pub(super) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now_ms(), Relaxed);
        activity.requests.fetch_sub(1, Relaxed);
        activity.changed.notify_one();
    }
}

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
            _ = activity.changed.notified() => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_head_is_timed_from_accept_later_ones_from_their_first_byte() {
        let a = Arc::new(Activity::new());
        let (at, why) = a.deadline(HEADER, IDLE).unwrap();
        assert_eq!((at, why), (a.start + HEADER, Expiry::Header));
        // A request in progress is never timed, nor offered for shedding.
        let guard = a.request();
        assert_eq!(a.deadline(HEADER, IDLE), None);
        assert_eq!(a.waiting_since(), None);
        a.on_read(); // pipelined bytes while answering start no header timer
        drop(guard);
        let (at, why) = a.deadline(HEADER, IDLE).unwrap();
        assert_eq!(why, Expiry::Idle);
        assert!(at >= a.start + IDLE);
        assert!(a.waiting_since().is_some());
        // The next head's first byte starts the header timer.
        a.on_read();
        assert_eq!(a.deadline(HEADER, IDLE).unwrap().1, Expiry::Header);
        let _next = a.request();
        assert_eq!(a.deadline(HEADER, IDLE), None);
    }
}
