//! Latencies in a fixed-size log-linear histogram, and failures counted by kind.
//!
//! The histogram keeps exact microseconds below 128 µs and 64 sub-buckets per power of two
//! above (under 1.6 % relative error), in a few thousand counters whatever the run length, so
//! memory stays bounded and merging the clients' histograms is a vector sum.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::proto::Failure;

/// Values below this many microseconds have a bucket each.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`] (a power of two itself).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above [`LINEAR`]: 2^7 µs to 2^40 µs (about 12 days).
const OCTAVES: u64 = 33;
const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

/// Latency histogram in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = bucket(micros).min(BUCKETS - 1);
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
            self.total += 1;
        }
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0 < q ≤ 1) in milliseconds, `None` when nothing was recorded.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        // The smallest value with at least ceil(q × total) values at or below it.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(midpoint(index) / 1000.0);
            }
        }
        None
    }
}

/// The bucket of a value in microseconds.
fn bucket(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let octave = u64::from(63 - micros.leading_zeros()); // 7 and up
    let shift = octave - u64::from(SUB_BITS);
    let sub = (micros >> shift) - SUB;
    (LINEAR + (octave - 7) * SUB + sub) as usize
}

/// The middle of a bucket, in microseconds.
fn midpoint(index: usize) -> f64 {
    let index = index as u64;
    if index < LINEAR {
        return index as f64;
    }
    let octave = (index - LINEAR) / SUB + 7;
    let sub = (index - LINEAR) % SUB;
    let shift = octave - u64::from(SUB_BITS);
    let low = (SUB + sub) << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
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
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for micros in (0..5_000_000).step_by(7) {
            let b = bucket(micros);
            assert!(b >= last, "{micros}");
            last = b;
            let mid = midpoint(b);
            let err = (mid - micros as f64).abs() / (micros.max(1) as f64);
            assert!(err < 0.016, "{micros} -> {mid}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).expect("recorded");
        let p99 = h.quantile_ms(0.99).expect("recorded");
        assert!((p50 - 50.0).abs() < 1.0, "{p50}");
        assert!((p99 - 99.0).abs() < 2.0, "{p99}");
    }
}
