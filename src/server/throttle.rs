//! Keeps a repeating socket error from flooding the log: at most one line per interval.

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

#[cfg(test)]
mod tests {
    use super::*;

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
