//! What the HTTP listeners count, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the HTTP listeners count, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HttpEvent {
    /// A connection was admitted.
    Accepted,
    /// Closed at accept: `max-http-connections` reached.
    RefusedMax,
    /// Closed at accept: its IP address holds `max-http-connections-per-ip`.
    RefusedPerIp,
    /// A request head did not arrive within `http-header-timeout`.
    HeaderTimeout,
    /// No request within `http-idle-timeout`.
    IdleTimeout,
    /// An HTTPS client did not finish its TLS handshake within `tls-handshake-timeout`.
    HandshakeTimeout,
    /// An HTTPS client's TLS handshake failed.
    HandshakeFailed,
}

impl HttpEvent {
    /// Every event, in the order they are rendered.
    pub(super) const ALL: [HttpEvent; 7] = [
        HttpEvent::Accepted,
        HttpEvent::RefusedMax,
        HttpEvent::RefusedPerIp,
        HttpEvent::HeaderTimeout,
        HttpEvent::IdleTimeout,
        HttpEvent::HandshakeTimeout,
        HttpEvent::HandshakeFailed,
    ];

    /// The `/metrics` label value.
    pub(super) fn label(self) -> &'static str {
        match self {
            HttpEvent::Accepted => "accepted",
            HttpEvent::RefusedMax => "refused_max",
            HttpEvent::RefusedPerIp => "refused_per_ip",
            HttpEvent::HeaderTimeout => "header_timeout",
            HttpEvent::IdleTimeout => "idle_timeout",
            HttpEvent::HandshakeTimeout => "handshake_timeout",
            HttpEvent::HandshakeFailed => "handshake_failed",
        }
    }
}

/// Counters of [`HttpEvent`]s over every HTTP listener.
#[derive(Debug, Default)]
pub(super) struct HttpStats([AtomicU64; HttpEvent::ALL.len()]);

impl HttpStats {
    /// Counts one event.
    pub(super) fn count(&self, event: HttpEvent) {
        self.0[event as usize].fetch_add(1, Relaxed);
    }

    /// Every counter with its label.
    pub(super) fn counts(&self) -> [(&'static str, u64); HttpEvent::ALL.len()] {
        HttpEvent::ALL.map(|e| (e.label(), self.0[e as usize].load(Relaxed)))
    }
}
