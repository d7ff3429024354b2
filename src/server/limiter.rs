//! The per-source token buckets for unauthenticated requests (`[server]
//! unauthenticated-rate` and `unauthenticated-burst`). Pure: time is passed in.
//!
//! Each shard keeps its own [`SourceLimiter`] under its lock, so the data path takes no
//! lock another core takes per packet; a source whose datagrams the kernel spreads over
//! several workers (several source ports) may therefore get up to `workers` times the rate.
//! Sources are IPv4 addresses, or IPv6 /64 prefixes (one host usually holds a whole /64).
//!
//! Memory is bounded against floods of spoofed sources: at most [`MAX_SOURCES`] buckets are
//! tracked, a bucket that has refilled is forgotten by [`SourceLimiter::purge`] (nothing is
//! lost: a full bucket and no bucket behave the same), and while the table is full every
//! untracked source shares one overflow bucket, so the answers stay bounded either way.

use std::net::IpAddr;
use std::time::Instant;

use crate::client_key::client_key_bits;
use crate::turn::FastMap;

/// Sources tracked at once per shard: about 32 bytes each, so at most a few MiB.
pub(super) const MAX_SOURCES: usize = 65_536;

/// A token, in the buckets' unit: 1/1000 of a request. Refilling at `rate` requests per
/// second is then `rate` units per millisecond, exactly, in integers.
const TOKEN: u64 = 1000;

/// One source's bucket: units left, and when they were counted (ms since the base).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u64,
    at_ms: u64,
}

impl Bucket {
    /// Refills at `rate` units per ms up to `full`, then takes one token if there is one.
    fn take(&mut self, now_ms: u64, rate: u64, full: u64) -> bool {
        self.units = self.level(now_ms, rate, full);
        self.at_ms = now_ms;
        if self.units >= TOKEN {
            self.units -= TOKEN;
            true
        } else {
            false
        }
    }

    fn level(&self, now_ms: u64, rate: u64, full: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.units
            .saturating_add(elapsed.saturating_mul(rate))
            .min(full)
    }
}

/// Token buckets per source address for one shard.
#[derive(Debug)]
pub(super) struct SourceLimiter {
    /// Requests per second (= units per ms); 0 turns the limiter off.
    rate: u64,
    /// A full bucket, in units.
    full: u64,
    base: Instant,
    buckets: FastMap<u128, Bucket>,
    overflow: Bucket,
}

impl SourceLimiter {
    /// `rate` requests per second per source, `burst` at once; `rate` 0 allows everything.
    pub(super) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let mut limiter = Self {
            rate: 0,
            full: 0,
            base: now,
            buckets: FastMap::default(),
            overflow: Bucket { units: 0, at_ms: 0 },
        };
        limiter.set(rate, burst);
        limiter.overflow.units = limiter.full;
        limiter
    }

    /// New limits (config reload); buckets already tracked keep their tokens.
    pub(super) fn set(&mut self, rate: u32, burst: u32) {
        self.rate = u64::from(rate);
        self.full = u64::from(burst.max(1)) * TOKEN;
        if rate == 0 {
            self.buckets = FastMap::default();
        }
    }

    /// Whether one more unauthenticated request from `ip` may be answered at `now`.
    pub(super) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let now_ms = self.ms(now);
        let key = client_key_bits(ip);
        let (rate, full) = (self.rate, self.full);
        let bucket = if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket
        } else if self.buckets.len() < MAX_SOURCES {
            self.buckets.entry(key).or_insert(Bucket {
                units: full,
                at_ms: now_ms,
            })
        } else {
            &mut self.overflow
        };
        bucket.take(now_ms, rate, full)
    }

    /// Forgets every bucket that has refilled by `now`. Called from the shard's timer.
    pub(super) fn purge(&mut self, now: Instant) {
        let now_ms = self.ms(now);
        let (rate, full) = (self.rate, self.full);
        self.buckets
            .retain(|_, b| b.level(now_ms, rate, full) < full);
    }

    /// Sources tracked now.
    pub(super) fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn answered(l: &mut SourceLimiter, ip: IpAddr, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| l.allow(ip, now)).count()
    }

    #[test]
    fn burst_then_rate_per_source() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(10, 20, t0);
        assert_eq!(answered(&mut l, ip(1), t0, 100), 20);
        // Another source has its own bucket.
        assert_eq!(answered(&mut l, ip(2), t0, 5), 5);
        // Half a second refills 5 tokens, two seconds refill the whole burst and no more.
        assert_eq!(
            answered(&mut l, ip(1), t0 + Duration::from_millis(500), 100),
            5
        );
        assert_eq!(
            answered(&mut l, ip(1), t0 + Duration::from_secs(10), 100),
            20
        );
    }

    #[test]
    fn zero_rate_is_off() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(0, 0, t0);
        assert_eq!(answered(&mut l, ip(1), t0, 10_000), 10_000);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(1, 3, t0);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(answered(&mut l, a, t0, 2), 2);
        assert_eq!(answered(&mut l, b, t0, 5), 1);
        assert_eq!(answered(&mut l, other, t0, 5), 3);
        // The mapped form of an IPv4 address is that address.
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(answered(&mut l, v4, t0, 3), 3);
        assert!(!l.allow(mapped, t0));
        assert_ne!(
            client_key_bits(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            client_key_bits(v4)
        );
    }

    #[test]
    fn spoofed_floods_stay_bounded_and_refilled_buckets_are_purged() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(100, 5, t0);
        for n in 0..MAX_SOURCES as u32 {
            assert!(l.allow(ip(n), t0));
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        // The table is full: new sources share one bucket of the same size.
        let past: Vec<IpAddr> = (0..100).map(|n| ip(MAX_SOURCES as u32 + n)).collect();
        let shared = past.iter().filter(|&&ip| l.allow(ip, t0)).count();
        assert_eq!(shared, 5);
        assert_eq!(l.tracked(), MAX_SOURCES);
        // A source tracked before still has its own bucket.
        assert_eq!(answered(&mut l, ip(7), t0, 10), 4);
        // Not refilled yet: nothing purged. After 10 ms (one token at 100/s) every bucket
        // that gave one token is full and forgotten; the one that gave five needs 50 ms.
        l.purge(t0 + Duration::from_millis(5));
        assert_eq!(l.tracked(), MAX_SOURCES);
        l.purge(t0 + Duration::from_millis(10));
        assert_eq!(l.tracked(), 1);
        l.purge(t0 + Duration::from_millis(50));
        assert_eq!(l.tracked(), 0);
        assert!(l.allow(past[0], t0 + Duration::from_millis(50)));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn reload_changes_the_limits() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(1, 2, t0);
        assert_eq!(answered(&mut l, ip(1), t0, 5), 2);
        l.set(1000, 50);
        assert_eq!(
            answered(&mut l, ip(1), t0 + Duration::from_millis(10), 100),
            10
        );
        l.set(0, 0);
        assert_eq!(answered(&mut l, ip(1), t0, 100), 100);
    }
}
