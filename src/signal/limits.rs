//! Rate limits of the signaling relay. Pure: the time is passed in.
//!
//! - [`Bucket`]: a token bucket, spent by every message of one connection
//!   (`messages-per-second`) and by every join of one address (`joins-per-minute-per-ip`).
//! - [`JoinLimiter`]: one join bucket per client address ([`client_key`]), shared by all of that address's
//!   connections, so reconnecting does not buy a fresh burst. Memory stays bounded: a
//!   bucket that has refilled says nothing a fresh one would not, so full buckets are
//!   purged, and at most [`MAX_JOIN_BUCKETS`] addresses are tracked at once.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::client_key::client_key;
use std::time::{Duration, Instant};

/// Addresses whose joins are tracked at once (about 4 MiB at worst). Past it, after a purge
/// of refilled buckets, joins from addresses not yet tracked are refused until some refill:
/// under a join flood from this many addresses, those already known keep their share.
pub const MAX_JOIN_BUCKETS: usize = 65_536;

/// How often refilled join buckets are purged when the table is not full.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often a full table may be swept again, so a flood cannot make every join a sweep.
const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket holding up to `burst` tokens and gaining `burst` every `period`.
#[derive(Debug, Clone)]
pub struct Bucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens that refills completely in `period`.
    pub fn new(burst: u32, period: Duration, now: Instant) -> Self {
        let burst = f64::from(burst);
        Self {
            burst,
            per_second: burst / period.as_secs_f64(),
            tokens: burst,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now`.
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
    }
}

/// `joins-per-minute-per-ip`: one [`Bucket`] per client address.
#[derive(Debug)]
pub struct JoinLimiter {
    per_minute: u32,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Instant,
}

impl JoinLimiter {
    /// A limiter allowing `per_minute` joins a minute per address, in bursts of as many.
    pub fn new(per_minute: u32, now: Instant) -> Self {
        Self {
            per_minute,
            buckets: HashMap::new(),
            last_sweep: now,
        }
    }

    /// A new rate (config reload); tracked addresses keep the tokens they have, up to it.
    pub fn set_rate(&mut self, per_minute: u32, now: Instant) {
        if per_minute == self.per_minute {
            return;
        }
        self.per_minute = per_minute;
        for bucket in self.buckets.values_mut() {
            bucket.refill(now);
            let tokens = bucket.tokens;
            *bucket = Bucket::new(per_minute, Duration::from_secs(60), now);
            bucket.tokens = tokens.min(bucket.burst);
        }
    }

    /// The joins a minute allowed per address.
    pub fn rate(&self) -> u32 {
        self.per_minute
    }

    /// Spends one join of `ip`; `false` when its bucket is empty (or, under a flood from
    /// [`MAX_JOIN_BUCKETS`] addresses, when `ip` cannot be tracked).
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = client_key(ip);
        let since = now.saturating_duration_since(self.last_sweep);
        let full = self.buckets.len() >= MAX_JOIN_BUCKETS;
        if since >= SWEEP_INTERVAL || (full && since >= FULL_SWEEP_INTERVAL) {
            self.buckets.retain(|_, b| !b.is_full(now));
            self.last_sweep = now;
        }
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(now);
        }
        if self.buckets.len() >= MAX_JOIN_BUCKETS {
            return false;
        }
        let mut bucket = Bucket::new(self.per_minute, Duration::from_secs(60), now);
        let taken = bucket.take(now);
        self.buckets.insert(key, bucket);
        taken
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5, Duration::from_secs(1), t0);
        assert_eq!((0..10).filter(|_| b.take(t0)).count(), 5);
        assert!(!b.take(t0));
        assert!(
            b.take(t0 + Duration::from_millis(200)),
            "one token after 1/5 s"
        );
        assert!(!b.take(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn joins_are_counted_per_address_and_refill_over_a_minute() {
        let t0 = Instant::now();
        let mut l = JoinLimiter::new(3, t0);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!((0..5).filter(|_| l.take(a, t0)).count(), 3);
        assert!(l.take(b, t0), "another address has its own bucket");
        assert!(!l.take(a, t0 + Duration::from_secs(19)));
        assert!(
            l.take(a, t0 + Duration::from_secs(20)),
            "3 a minute: one per 20 s"
        );
        assert!(!l.take(a, t0 + Duration::from_secs(21)));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut l = JoinLimiter::new(2, t0);
        assert!(l.take(ip("2001:db8:1:2::1"), t0));
        assert!(l.take(ip("2001:db8:1:2:ffff::9"), t0));
        assert!(!l.take(ip("2001:db8:1:2::abcd"), t0), "same /64");
        assert!(l.take(ip("2001:db8:1:3::1"), t0), "another /64");
        assert!(l.take(ip("198.51.100.7"), t0));
        assert!(l.take(ip("::ffff:198.51.100.7"), t0));
        assert!(
            !l.take(ip("198.51.100.7"), t0),
            "mapped form is the same client"
        );
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn refilled_buckets_are_purged() {
        let t0 = Instant::now();
        let mut l = JoinLimiter::new(60, t0);
        for i in 0..100u32 {
            assert!(l.take(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert_eq!(l.tracked(), 100);
        // A minute on, every one of them has refilled: the next join sweeps them away.
        let later = t0 + SWEEP_INTERVAL;
        assert!(l.take(ip("203.0.113.1"), later));
        assert_eq!(l.tracked(), 1);
        // One still short of tokens at the next sweep is kept.
        let drained = later + Duration::from_secs(30);
        while l.take(ip("203.0.113.1"), drained) {}
        assert!(l.take(ip("203.0.113.3"), later + SWEEP_INTERVAL));
        assert_eq!(l.tracked(), 2, "the half-empty bucket of .1 is not purged");
        let left = (0..100)
            .filter(|_| l.take(ip("203.0.113.1"), later + SWEEP_INTERVAL))
            .count();
        assert_eq!(left, 30, "half a minute of refill, not a fresh bucket");
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_addresses() {
        let t0 = Instant::now();
        let mut l = JoinLimiter::new(1, t0);
        let flood = MAX_JOIN_BUCKETS as u32 + 1000;
        let admitted = (0..flood)
            .filter(|i| l.take(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0))
            .count();
        assert_eq!(admitted, MAX_JOIN_BUCKETS);
        assert_eq!(l.tracked(), MAX_JOIN_BUCKETS);
        // Once the flood's buckets refill they are purged and newcomers are served again.
        let later = t0 + Duration::from_secs(61);
        assert!(l.take(ip("203.0.113.9"), later));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn a_new_rate_applies_to_tracked_addresses() {
        let t0 = Instant::now();
        let mut l = JoinLimiter::new(10, t0);
        let a = ip("192.0.2.1");
        assert!(l.take(a, t0));
        l.set_rate(2, t0);
        assert_eq!(l.rate(), 2);
        assert_eq!((0..5).filter(|_| l.take(a, t0)).count(), 2);
        l.set_rate(60, t0);
        assert!(!l.take(a, t0), "no tokens appear from a reload");
        assert!(l.take(a, t0 + Duration::from_secs(1)));
    }
}
