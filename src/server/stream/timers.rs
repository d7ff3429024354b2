//! A stream connection's timers as data: when it must next be looked at
//! ([`Timers::deadline`]) and what to do then ([`Timers::on_timeout`]). No clock is read
//! here; every instant is passed in, so each rule is tested in virtual time.
//!
//! The rules are those of the tokio connection tasks (`tcp.rs`):
//! - a TLS client has `tls-handshake-timeout` from accept to finish its handshake; the
//!   other timers start when it has;
//! - `tcp-idle-timeout` after the last read, a connection without an allocation is closed
//!   (one with an allocation is looked at again a timeout later);
//! - every `tcp-allocation-timeout` from the start, a connection without an allocation is
//!   closed, however chatty; an allocation that ends is noticed within one more timeout;
//! - bytes waiting to be written that the socket takes none of for `tcp-idle-timeout`
//!   close the connection (the writer's timeout).

use std::time::{Duration, Instant};

use super::close::Close;

/// The timeouts of one connection, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// `tcp-idle-timeout`.
    pub(crate) idle: Duration,
    /// `tcp-allocation-timeout`.
    pub(crate) allocation: Duration,
    /// `tls-handshake-timeout`.
    pub(crate) handshake: Duration,
}

/// The timer state of one connection.
#[derive(Debug)]
pub(crate) struct Timers {
    timeouts: Timeouts,
    /// Set while the TLS handshake is under way: when it must be done by.
    handshake_by: Option<Instant>,
    /// The last read (or idle check that found an allocation).
    idle_from: Instant,
    /// When to check next that the connection holds an allocation.
    allocation_check: Instant,
    /// Set while bytes wait to be written: the last time the socket took some.
    write_from: Option<Instant>,
}

impl Timers {
    /// Timers for a connection accepted at `now`; `handshaking` for TLS.
    pub(crate) fn new(timeouts: Timeouts, now: Instant, handshaking: bool) -> Self {
        Self {
            timeouts,
            handshake_by: handshaking.then(|| now + timeouts.handshake),
            idle_from: now,
            allocation_check: now + timeouts.allocation,
            write_from: None,
        }
    }

    /// The TLS handshake finished at `now`: the connection's timers start.
    pub(crate) fn established(&mut self, now: Instant) {
        if self.handshake_by.take().is_some() {
            self.idle_from = now;
            self.allocation_check = now + self.timeouts.allocation;
        }
    }

    /// Bytes were read at `now`.
    pub(crate) fn read(&mut self, now: Instant) {
        self.idle_from = self.idle_from.max(now);
    }

    /// A write was tried at `now`: `progress` if the socket took bytes, `pending` if
    /// some still wait.
    pub(crate) fn wrote(&mut self, now: Instant, progress: bool, pending: bool) {
        self.write_from = match (pending, self.write_from) {
            (false, _) => None,
            (true, Some(from)) if !progress => Some(from),
            (true, _) => Some(now),
        };
    }

    /// When [`Timers::on_timeout`] must next be called. It can move later after a read or
    /// a write, and earlier only when a TLS handshake finishes.
    pub(crate) fn deadline(&self) -> Instant {
        if let Some(by) = self.handshake_by {
            return by;
        }
        let idle = self.idle_from + self.timeouts.idle;
        let write = self.write_from.map(|from| from + self.timeouts.idle);
        write
            .map_or(idle, |w| w.min(idle))
            .min(self.allocation_check)
    }

    /// Applies the timers due at `now`: why to close, or `None` to keep the connection
    /// (then [`Timers::deadline`] has moved on). `has_allocation` is asked only when a
    /// rule depends on it; calling this early does nothing.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        has_allocation: impl FnOnce() -> bool,
    ) -> Option<Close> {
        if let Some(by) = self.handshake_by {
            return (now >= by).then_some(Close::TlsHandshakeTimeout);
        }
        if self
            .write_from
            .is_some_and(|from| now >= from + self.timeouts.idle)
        {
            return Some(Close::WriteTimeout);
        }
        let idle_due = now >= self.idle_from + self.timeouts.idle;
        let allocation_due = now >= self.allocation_check;
        if !idle_due && !allocation_due {
            return None;
        }
        if !has_allocation() {
            // The allocation check first: when both are due, the rule that is never
            // relaxed by traffic is the one that names the cause.
            return Some(if allocation_due {
                Close::AllocationTimeout
            } else {
                Close::IdleTimeout
            });
        }
        if idle_due {
            self.idle_from = now;
        }
        if allocation_due {
            self.allocation_check += self.timeouts.allocation;
            if self.allocation_check <= now {
                // The loop was late by more than a timeout: look again a timeout from now.
                self.allocation_check = now + self.timeouts.allocation;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        idle: Duration::from_secs(60),
        allocation: Duration::from_secs(30),
        handshake: Duration::from_secs(10),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn no_allocation_closes_after_the_allocation_timeout_however_chatty() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TIMEOUTS, t0, false);
        assert_eq!(timers.deadline(), t0 + secs(30));
        for s in 1..30 {
            timers.read(t0 + secs(s));
            assert_eq!(timers.on_timeout(t0 + secs(s), || false), None, "early");
        }
        assert_eq!(
            timers.on_timeout(t0 + secs(30), || false),
            Some(Close::AllocationTimeout)
        );
    }

    #[test]
    fn an_allocation_is_checked_again_every_timeout() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TIMEOUTS, t0, false);
        timers.read(t0 + secs(29));
        assert_eq!(timers.on_timeout(t0 + secs(30), || true), None);
        assert_eq!(timers.deadline(), t0 + secs(60));
        timers.read(t0 + secs(59));
        assert_eq!(timers.on_timeout(t0 + secs(60), || true), None);
        assert_eq!(timers.deadline(), t0 + secs(90));
        // The allocation ended (the client sent a zero-lifetime Refresh): closed within
        // one more timeout, chatty or not.
        timers.read(t0 + secs(89));
        assert_eq!(
            timers.on_timeout(t0 + secs(90), || false),
            Some(Close::AllocationTimeout)
        );
    }

    #[test]
    fn silence_closes_only_a_connection_without_an_allocation() {
        let timeouts = Timeouts {
            idle: secs(5),
            ..TIMEOUTS
        };
        let t0 = Instant::now();
        let mut timers = Timers::new(timeouts, t0, false);
        timers.read(t0 + secs(3));
        assert_eq!(timers.deadline(), t0 + secs(8), "idle from the last read");
        assert_eq!(timers.on_timeout(t0 + secs(7), || false), None);
        assert_eq!(
            timers.on_timeout(t0 + secs(8), || false),
            Some(Close::IdleTimeout)
        );
        // With an allocation, silence is fine: looked at again a timeout later.
        let mut timers = Timers::new(timeouts, t0, false);
        assert_eq!(timers.on_timeout(t0 + secs(5), || true), None);
        assert_eq!(timers.deadline(), t0 + secs(10));
    }

    #[test]
    fn allocation_is_asked_only_when_a_rule_needs_it() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TIMEOUTS, t0, false);
        let asked = std::cell::Cell::new(false);
        let ask = || {
            asked.set(true);
            false
        };
        assert_eq!(timers.on_timeout(t0 + secs(1), ask), None);
        assert!(!asked.get());
    }

    #[test]
    fn tls_handshake_has_its_own_timeout_then_the_timers_start() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TIMEOUTS, t0, true);
        assert_eq!(timers.deadline(), t0 + secs(10));
        // Reads during the handshake do not extend it; allocations do not matter yet.
        timers.read(t0 + secs(9));
        assert_eq!(timers.on_timeout(t0 + secs(9), || false), None);
        assert_eq!(
            timers.on_timeout(t0 + secs(10), || true),
            Some(Close::TlsHandshakeTimeout)
        );
        let mut timers = Timers::new(TIMEOUTS, t0, true);
        timers.established(t0 + secs(4));
        assert_eq!(
            timers.deadline(),
            t0 + secs(34),
            "allocation timeout from the handshake"
        );
        assert_eq!(timers.on_timeout(t0 + secs(10), || false), None);
    }

    #[test]
    fn a_socket_that_takes_nothing_closes_after_the_idle_timeout() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TIMEOUTS, t0, false);
        timers.wrote(t0, false, true);
        timers.read(t0 + secs(20));
        assert_eq!(timers.on_timeout(t0 + secs(30), || true), None);
        timers.wrote(t0 + secs(40), false, true);
        assert_eq!(
            timers.deadline(),
            t0 + secs(60),
            "no progress: still from t0"
        );
        assert_eq!(
            timers.on_timeout(t0 + secs(60), || true),
            Some(Close::WriteTimeout)
        );
        // Progress, or nothing left to write, stops the clock.
        let mut timers = Timers::new(TIMEOUTS, t0, false);
        timers.wrote(t0, false, true);
        timers.wrote(t0 + secs(50), true, true);
        timers.read(t0 + secs(100));
        assert_eq!(timers.on_timeout(t0 + secs(100), || true), None);
        timers.wrote(t0 + secs(105), true, false);
        timers.read(t0 + secs(200));
        assert_eq!(timers.on_timeout(t0 + secs(200), || true), None);
    }

    #[test]
    fn a_late_loop_does_not_check_in_a_burst() {
        let t0 = Instant::now();
        let mut timers = Timers::new(TIMEOUTS, t0, false);
        assert_eq!(timers.on_timeout(t0 + secs(1000), || true), None);
        assert_eq!(timers.deadline(), t0 + secs(1030));
    }
}
