//! Latencies in an HDR histogram, and failures counted by kind.
//!
//! The histogram ([`hdrhistogram`]) keeps nanoseconds from 1 ns to an hour with two
//! significant digits (under 0.8 % relative error) in about 36 KB, whatever the run length, so
//! memory stays bounded and merging the clients' histograms is a vector sum.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::proto::Failure;

/// The longest latency told apart from longer ones: an hour, in nanoseconds.
const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Significant digits kept of every value.
const SIGNIFICANT_DIGITS: u8 = 2;

/// Latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    inner: hdrhistogram::Histogram<u64>,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        let inner = hdrhistogram::Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("constant bounds are valid");
        Histogram { inner }
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        self.record_ns(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records a latency in nanoseconds; longer than an hour counts as an hour.
    pub(crate) fn record_ns(&mut self, nanos: u64) {
        self.inner.saturating_record(nanos.max(1));
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        // Both have the same bounds, so every value of `other` fits: no error to handle.
        let _ = self.inner.add(&other.inner);
    }

    pub(crate) fn count(&self) -> u64 {
        self.inner.len()
    }

    /// The `q` quantile (0 < q ≤ 1) in milliseconds, `None` when nothing was recorded.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.inner.is_empty() {
            return None;
        }
        Some(self.inner.value_at_quantile(q) as f64 / 1e6)
    }
}

/// Failures counted by step and kind.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    counts: BTreeMap<Failure, u64>,
}

impl Tally {
    pub(crate) fn add(&mut self, failure: Failure) {
        *self.counts.entry(failure).or_default() += 1;
    }

    pub(crate) fn merge(&mut self, other: &Tally) {
        for (&failure, &n) in &other.counts {
            *self.counts.entry(failure).or_default() += n;
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// One line per kind on stderr, so the JSON on stdout stays one object.
    pub(crate) fn report(&self) {
        for (failure, n) in &self.counts {
            eprintln!("rturn-bench: {n} × {failure}");
        }
    }
}

/// Rounds to `digits` decimals for the report.
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).expect("recorded");
        let p99 = h.quantile_ms(0.99).expect("recorded");
        assert!((p50 - 50.0).abs() < 0.5, "{p50}");
        assert!((p99 - 99.0).abs() < 1.0, "{p99}");
    }

    #[test]
    fn merge_adds_counts_and_keeps_microseconds() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record_ns(20_000);
        b.record_ns(30_000);
        b.record(Duration::from_secs(7200));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        let p50 = a.quantile_ms(0.5).expect("recorded");
        assert!((p50 - 0.030).abs() < 0.0003, "{p50}");
    }
}
