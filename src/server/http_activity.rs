//! What one HTTP connection is doing, as far as its timers and the descriptor budget care:
//! when its request head started, since when it is idle, whether it is being shed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

    pub(super) fn on_read(&self) {
        // The first byte of a request head starts its timer; bytes read while a request is
        // answered (pipelining) wait for the idle timer.
        if self.requests.load(Relaxed) == 0 && self.head_since.load(Relaxed) == NO_HEAD {
            self.head_since.store(self.now_ms(), Relaxed);
            self.changed.notify_one();
        }
    }

    pub(super) fn on_write(&self) {
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

    /// Resolves at the next change of what the timers look at.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
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
