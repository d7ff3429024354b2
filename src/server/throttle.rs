//! Keeps a repeating socket error from flooding the log (at most one line per interval) and
//! an accept loop from spinning on one (an exponential pause).

use std::time::{Duration, Instant};

/// How often a repeating warning may be logged.
const INTERVAL: Duration = Duration::from_secs(10);

/// Remembers when a warning was last logged.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// Runs `log` unless it ran less than [`INTERVAL`] ago.
    pub(super) fn warn(&mut self, log: impl FnOnce()) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= INTERVAL)
        {
            self.last = Some(now);
            log();
        }
    }
}

/// The first pause after a failed accept.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause: EMFILE lasts until a connection closes, which may be a while.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long an accept loop pauses after a failure (EMFILE, ENFILE, ENOBUFS...): 10 ms,
/// doubling up to 1 s while failures repeat, back to 10 ms after a success.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The pause after one more failure.
    pub(super) fn next(&mut self) -> Duration {
        let pause = self.next.unwrap_or(BACKOFF_MIN);
        self.next = Some((pause * 2).min(BACKOFF_MAX));
        pause
    }

    /// An accept succeeded.
    pub(super) fn reset(&mut self) {
        self.next = None;
    }
}

/// Accepts the next connection. A failed accept (EMFILE, ENFILE…) is handed to `failed`, with
/// the log line it may write throttled, and pauses the listener by `backoff`. `None` on
/// shutdown.
pub(super) async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &tokio_util::sync::CancellationToken,
    (backoff, warn): (&mut Backoff, &mut Throttle),
    mut failed: impl FnMut(&std::io::Error, &mut Throttle),
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(a) => {
                backoff.reset();
                return Some(a);
            }
            Err(e) => {
                failed(&e, warn);
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff.next()) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(10));
    }

    #[test]
    fn logs_once_per_interval() {
        let mut t = Throttle::default();
        let mut n = 0;
        for _ in 0..100 {
            t.warn(|| n += 1);
        }
        assert_eq!(n, 1);
    }
}
