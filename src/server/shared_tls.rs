//! One TLS port for `turns:`, HTTPS and WSS: when `listen.https` names a `listen.tls` address
//! ([`crate::config::ListenConfig::shared_tls`]), one listener serves both, as operators who
//! can open only 443 otherwise do with a stream proxy in front.
//!
//! Each accepted connection gets its own task ([`connection`]; a slow client never holds up
//! the accept loop), which does the TLS handshake in tokio within `tls-handshake-timeout`,
//! offering ALPN `stun.turn` and `http/1.1` ([`super::tls::shared_acceptor`]), then tells
//! the protocols apart:
//! - by ALPN when the client offered it: `stun.turn` is TURN, `http/1.1` is HTTP;
//! - without ALPN (browsers' `turns:`, most TURN clients), by the first plaintext byte, read
//!   within another `tls-handshake-timeout`: a TURN client always starts with a STUN message,
//!   whose first byte has its two top bits clear; an HTTP client starts with the ASCII
//!   letters of a method ([`classify`]). Anything else is closed.
//!
//! HTTP goes on to the HTTP listeners' serving ([`super::http_conn::serve`]) with the bytes
//! read replayed ([`Rewind`]). TURN goes to the worker its 5-tuple hashes to, with the
//! established rustls session and those bytes ([`Workers::accept_tls`]), which serves it as
//! it serves the `turns:` listener's connections.
//!
//! Caps, before the protocol is known: a connection is admitted as an HTTPS connection
//! (`max-http-connections`, `max-http-connections-per-ip`, the descriptor budget's HTTP share,
//! and the budget may shed it while it handshakes, as it sheds HTTP connections waiting for a
//! request). Refused there, it is counted as HTTP refused. Once it is known to be TURN, it
//! gives those back and takes the TURN ones instead (`max-tcp-connections`, without waiting,
//! `max-tcp-connections-per-ip`, the budget's TURN share); refused there, it is closed and
//! counted as TURN refused. So each side's counters and caps hold only its own connections,
//! and what the split decided is counted here ([`SharedStats`],
//! `rturn_shared_tls_connections_total`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::command::EstablishedTls;
use super::descriptors::Kind;
use super::http_activity::Activity;
use super::http_conn::{self, Accepted, ConnContext};
use super::http_listener::{self, Caps, HttpListener, Serving};
use super::http_stats::HttpEvent;
use super::proxy::Policy;
use super::rewind::Rewind;
use super::stats::Event;
use super::tcp::{PerIp, TcpContext};
use super::throttle::{Backoff, Throttle, accept};
use super::tls::{ALPN_STUN, CertStore};
use crate::config::ProxyListener;
use crate::metrics::{Counted, Family, Report};
use crate::turn::{FiveTuple, Transport};

/// The most plaintext read to tell the protocols apart (one read; what it got is replayed).
const FIRST_READ: usize = 1024;

/// The protocol a connection of the shared port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// STUN/TURN.
    Turn,
    /// HTTP/1.1 (and the WebSocket it may become).
    Http,
}

/// What the first plaintext byte says: a STUN message starts with its two top bits clear
/// (RFC 8489 §5; ChannelData, 0x40..=0x7F, never comes first), an HTTP request with an
/// upper-case method letter. `None`: neither.
pub(super) fn classify(first: u8) -> Option<Protocol> {
    match first {
        0x00..=0x3F => Some(Protocol::Turn),
        b'A'..=b'Z' => Some(Protocol::Http),
        _ => None,
    }
}

/// What the shared listener counts, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SharedEvent {
    /// TURN, chosen by ALPN `stun.turn`.
    TurnAlpn,
    /// TURN, told by its first bytes.
    TurnFirstBytes,
    /// HTTP, chosen by ALPN `http/1.1`.
    HttpAlpn,
    /// HTTP, told by its first bytes.
    HttpFirstBytes,
    /// Closed: its first bytes were neither STUN nor HTTP.
    Unknown,
    /// Closed: no first bytes within `tls-handshake-timeout` of the handshake, or EOF.
    Silent,
    /// The TLS handshake failed.
    HandshakeFailed,
    /// The TLS handshake did not finish within `tls-handshake-timeout`.
    HandshakeTimeout,
    /// TURN, closed by its caps (`max-tcp-connections`, per IP, descriptors).
    TurnRefused,
}

impl SharedEvent {
    const ALL: [SharedEvent; 9] = [
        SharedEvent::TurnAlpn,
        SharedEvent::TurnFirstBytes,
        SharedEvent::HttpAlpn,
        SharedEvent::HttpFirstBytes,
        SharedEvent::Unknown,
        SharedEvent::Silent,
        SharedEvent::HandshakeFailed,
        SharedEvent::HandshakeTimeout,
        SharedEvent::TurnRefused,
    ];

    fn label(self) -> &'static str {
        match self {
            SharedEvent::TurnAlpn => "turn_alpn",
            SharedEvent::TurnFirstBytes => "turn_first_bytes",
            SharedEvent::HttpAlpn => "http_alpn",
            SharedEvent::HttpFirstBytes => "http_first_bytes",
            SharedEvent::Unknown => "unknown",
            SharedEvent::Silent => "silent",
            SharedEvent::HandshakeFailed => "handshake_failed",
            SharedEvent::HandshakeTimeout => "handshake_timeout",
            SharedEvent::TurnRefused => "turn_refused",
        }
    }
}

static SHARED_TLS: Family = Family::counter(
    "shared_tls_connections_total",
    "Connections of the TLS port shared by turns: and HTTPS, by outcome: the protocol chosen \
     and how (ALPN or the first bytes), or why it was closed first.",
);

/// Counters of [`SharedEvent`]s.
#[derive(Debug, Default)]
pub(super) struct SharedStats([AtomicU64; SharedEvent::ALL.len()]);

impl SharedStats {
    fn count(&self, event: SharedEvent) {
        self.0[event as usize].fetch_add(1, Relaxed);
    }
}

impl Counted for SharedStats {
    fn report(&self, report: &mut Report) {
        let counts = SharedEvent::ALL.map(|e| (e.label(), self.0[e as usize].load(Relaxed)));
        report.each(&SHARED_TLS, "outcome", counts);
    }
}

/// What every connection of the shared port needs.
pub(super) struct SharedTls {
    /// Offers ALPN `stun.turn` and `http/1.1`.
    acceptor: TlsAcceptor,
    /// The HTTP side: its caps, serving, handshake timeout and tasks.
    http: HttpListener,
    /// The TURN side: its caps, workers and counters (its `tls` is unused).
    turn: TcpContext,
    stats: Arc<SharedStats>,
}

/// Starts the shared listener on `listener`: HTTP connections get `app` under `caps` (the
/// HTTP listeners' shared caps), TURN connections go to `turn`'s workers under its caps.
pub(super) fn spawn(
    serving: &Serving<'_>,
    listener: std::net::TcpListener,
    store: &Arc<CertStore>,
    (app, caps): (axum::Router, Arc<Caps>),
    turn: TcpContext,
    stats: Arc<SharedStats>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot register the shared tls/https listener with tokio: {e}");
            return;
        }
    };
    let acceptor = match super::tls::shared_acceptor(store) {
        Ok(acceptor) => acceptor,
        Err(e) => {
            tracing::error!("cannot set up the shared tls/https listener: {e}");
            return;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            tracing::info!("listening on tls {addr} (shared with https)");
            tracing::info!("listening on https {addr} (shared with tls)");
        }
        Err(e) => tracing::warn!("listening on tls and https, address unknown: {e}"),
    }
    let server = &serving.config.server;
    let conn = ConnContext {
        app,
        header_timeout: server.http_header_timeout,
        idle_timeout: server.http_idle_timeout,
        stats: Arc::clone(serving.stats),
        shutdown: serving.shutdown.clone(),
    };
    let http = HttpListener {
        name: "https",
        tls: None,
        handshake_timeout: server.tls_handshake_timeout,
        caps,
        budget: Arc::clone(serving.budget),
        conn: Arc::new(conn),
        tasks: serving.tasks.clone(),
        // The port is both listeners: a PROXY header is read when either is listed in
        // proxy-protocol-listeners (before the TLS handshake, as on each of them).
        proxy: [ProxyListener::Tls, ProxyListener::Https]
            .into_iter()
            .find_map(|kind| {
                let listen = &serving.config.listen;
                Policy::for_listener(listen, kind, server.tls_handshake_timeout, serving.proxy)
            }),
    };
    let ctx = Arc::new(SharedTls {
        acceptor,
        http,
        turn,
        stats,
    });
    serving.tasks.spawn(serve(listener, ctx));
}

/// Accepts connections until shutdown, each served by its own task.
async fn serve(listener: TcpListener, ctx: Arc<SharedTls>) {
    let shutdown = ctx.http.conn.shutdown.clone();
    let (mut backoff, mut warn) = (Backoff::default(), Throttle::default());
    loop {
        let pacing = (&mut backoff, &mut warn);
        let Some((stream, peer)) = accept(&listener, &shutdown, pacing, |e, warn| {
            ctx.http.budget.accept_error(Kind::Http);
            warn.warn(|| tracing::warn!("shared tls/https accept failed: {e}"));
        })
        .await
        else {
            return;
        };
        let Some(policy) = ctx.http.proxy.clone() else {
            ctx.http
                .tasks
                .spawn(connection(stream, peer, Arc::clone(&ctx)));
            continue;
        };
        // Behind a load balancer: the client its PROXY header names, read by the
        // connection's own task; every cap after that counts that client.
        let conn_ctx = Arc::clone(&ctx);
        ctx.http.tasks.spawn(async move {
            let mut stream = stream;
            let client = tokio::select! {
                _ = conn_ctx.http.conn.shutdown.cancelled() => return,
                client = policy.client(&mut stream, peer) => client,
            };
            if let Some(client) = client {
                connection(stream, client, conn_ctx).await;
            }
        });
    }
}

/// One connection of the shared port, from `client` (the socket's peer, or the address a
/// trusted proxy gave): admitted under the HTTP caps, handshaken, told apart, then served
/// as HTTP here or handed to a worker as TURN. Refused connections are closed at once.
pub(super) async fn connection(stream: TcpStream, client: SocketAddr, ctx: Arc<SharedTls>) {
    let Some(slots) = http_listener::admit(&ctx.http, client).await else {
        return;
    };
    let activity = Arc::new(Activity::new());
    let listing = ctx.http.budget.list(Arc::clone(&activity));
    let _ = stream.set_nodelay(true);
    let Some((tls, event, prefix)) = ctx.split(stream, client, &activity).await else {
        return;
    };
    ctx.stats.count(event);
    if matches!(event, SharedEvent::TurnAlpn | SharedEvent::TurnFirstBytes) {
        drop((listing, slots));
        return ctx.to_worker(tls, client, prefix).await;
    }
    activity.restart();
    ctx.http.conn.stats.count(HttpEvent::Accepted);
    let accepted = Accepted {
        client,
        slots,
        activity,
        listing,
    };
    http_conn::serve(Rewind::new(prefix, tls), accepted, &ctx.http.conn).await;
}

impl SharedTls {
    /// The handshake, then the protocol: the TLS stream, how it was chosen (a `Turn*` or
    /// `Http*` event) and the plaintext read to choose. `None` (counted) when it ended first.
    async fn split(
        &self,
        stream: TcpStream,
        client: SocketAddr,
        activity: &Activity,
    ) -> Option<(TlsStream<TcpStream>, SharedEvent, Vec<u8>)> {
        let (timeout, shutdown) = (self.http.handshake_timeout, &self.http.conn.shutdown);
        let handshake = tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = activity.shed_requested() => return None,
            r = tokio::time::timeout(timeout, self.acceptor.accept(stream)) => r,
        };
        let mut tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%client, "tls handshake failed: {e}");
                self.stats.count(SharedEvent::HandshakeFailed);
                return None;
            }
            Err(_) => {
                self.stats.count(SharedEvent::HandshakeTimeout);
                return None;
            }
        };
        match tls.get_ref().1.alpn_protocol() {
            Some(ALPN_STUN) => return Some((tls, SharedEvent::TurnAlpn, Vec::new())),
            // http/1.1, the only other protocol offered.
            Some(_) => return Some((tls, SharedEvent::HttpAlpn, Vec::new())),
            None => {}
        }
        let mut first = vec![0; FIRST_READ];
        let read = tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = activity.shed_requested() => return None,
            r = tokio::time::timeout(timeout, tls.read(&mut first)) => r,
        };
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            _ => {
                self.stats.count(SharedEvent::Silent);
                return None;
            }
        };
        first.truncate(n);
        let event = match first.first().copied().and_then(classify) {
            Some(Protocol::Turn) => SharedEvent::TurnFirstBytes,
            Some(Protocol::Http) => SharedEvent::HttpFirstBytes,
            None => {
                tracing::debug!(%client, "shared tls port: neither STUN nor HTTP");
                self.stats.count(SharedEvent::Unknown);
                return None;
            }
        };
        Some((tls, event, first))
    }

    /// A TURN connection: its TURN caps, then off tokio, onto the worker its 5-tuple hashes
    /// to, with its TLS session and the plaintext already read.
    async fn to_worker(&self, tls: TlsStream<TcpStream>, client: SocketAddr, prefix: Vec<u8>) {
        let turn = &self.turn;
        let Some(slot) = PerIp::acquire(&turn.per_ip, client.ip()) else {
            turn.counters.count(Event::TcpRefusedPerIp);
            self.stats.count(SharedEvent::TurnRefused);
            return;
        };
        let Ok(permit) = Arc::clone(&turn.permits).try_acquire_owned() else {
            self.stats.count(SharedEvent::TurnRefused);
            return;
        };
        // Counted by the budget when refused.
        let Some(descriptor) = turn.budget.acquire(Kind::Turn).await else {
            self.stats.count(SharedEvent::TurnRefused);
            return;
        };
        let (tcp, session) = tls.into_inner();
        let (Ok(server), Ok(stream)) = (tcp.local_addr(), tcp.into_std()) else {
            return;
        };
        turn.counters.count(Event::TcpAccepted);
        let tls = EstablishedTls {
            stream,
            tuple: FiveTuple {
                transport: Transport::Tls,
                client,
                server,
            },
            session: Box::new(session),
            prefix,
            guards: Box::new((slot, permit, descriptor)),
        };
        turn.workers.accept_tls(tls).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_tells_stun_from_http() {
        // A Binding or Allocate request (0x0001, 0x0003) and every STUN type's first byte.
        for first in [0x00, 0x01, 0x3F] {
            assert_eq!(classify(first), Some(Protocol::Turn), "{first:#x}");
        }
        for method in ["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"] {
            assert_eq!(classify(method.as_bytes()[0]), Some(Protocol::Http));
        }
        // ChannelData never comes first; lower case, JSON and high bytes are neither.
        for first in [0x40, 0x7F, b'g', b'{', 0x80, 0xFF] {
            assert_eq!(classify(first), None, "{first:#x}");
        }
    }

    #[test]
    fn every_event_has_its_own_label() {
        let stats = SharedStats::default();
        for event in SharedEvent::ALL {
            stats.count(event);
        }
        let text = crate::metrics::render(&[&stats]);
        for event in SharedEvent::ALL {
            let line = format!(
                "rturn_shared_tls_connections_total{{outcome=\"{}\"}} 1",
                event.label()
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
