//! A lock-free latency histogram: fixed buckets of atomics, encoded as a Prometheus histogram.
//!
//! prometheus-client's own `Histogram` locks a mutex per observation; this one only does relaxed
//! `fetch_add`s on atomics owned by one shard (or by the store threads), so recording on the route
//! takes no lock. A scrape reads the buckets one by one: a count in flight may show in a bucket and
//! not yet in `_sum`, which Prometheus tolerates (`_count` is derived from the same bucket reads).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets, in seconds (`le` labels); one more bucket holds everything above.
pub const BOUNDS: [f64; 15] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0,
];

/// [`BOUNDS`] in nanoseconds (what `observe` compares with).
const BOUNDS_NS: [u64; 15] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

#[derive(Debug, Default)]
struct Inner {
    /// Non-cumulative counts: `buckets[i]` holds observations in `(BOUNDS[i-1], BOUNDS[i]]`, the
    /// last one those above `BOUNDS[14]`.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    /// Sum of all observations, in nanoseconds.
    sum_ns: AtomicU64,
}

/// A latency histogram; clones share the same buckets.
#[derive(Debug, Default, Clone)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    /// Records one duration (no lock, no allocation).
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // First bound >= ns: Prometheus buckets are `le` (less than or equal).
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder accumulates these per-bucket counts into `le` buckets itself.
        let mut buckets = [(0.0, 0u64); BOUNDS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            *slot = (bound, self.0.buckets[i].load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_agree() {
        for (s, ns) in BOUNDS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn observations_land_in_le_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(25)); // exactly on a bound: that bucket
        h.observe(Duration::from_micros(26));
        h.observe(Duration::from_secs(5)); // past the last bound: +Inf only
        assert_eq!(h.count(), 3);
        assert_eq!(h.0.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.0.buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(h.0.buckets[BOUNDS.len()].load(Ordering::Relaxed), 1);
    }
}
