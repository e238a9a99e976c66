//! A histogram whose `observe` takes no lock: the client crate's own
//! `Histogram` holds a mutex, and every attempt of a queue records into the
//! same one from whichever runtime thread it ran on.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of observations per bucket and their sum, shared by its clones.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the `+Inf` bucket is the last count.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative): one more than `bounds`.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let bucket = inner.bounds.partition_point(|&bound| bound < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }

    /// `(upper bound, count in this bucket alone)`, `+Inf` last, as the
    /// client crate's encoder takes them (it sums them up); and the total,
    /// taken from the same reads so that the two agree in a scrape.
    fn buckets(&self) -> (Vec<(f64, u64)>, u64) {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        let total = buckets.iter().map(|(_, count)| count).sum();
        (buckets, total)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, count) = self.buckets();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::new(&[0.1, 1.0]);
        for value in [0.05, 0.1, 0.5, 1.0, 7.0] {
            histogram.observe(value);
        }
        let (buckets, count) = histogram.buckets();
        // A bound is inclusive (`le`), as Prometheus defines it.
        assert_eq!(buckets, [(0.1, 2), (1.0, 2), (f64::INFINITY, 1)]);
        assert_eq!(count, 5);
        assert!((histogram.sum() - 8.65).abs() < 1e-9);
    }

    #[test]
    fn the_text_format_has_cumulative_buckets() {
        let mut registry = prometheus_client::registry::Registry::default();
        let histogram = Histogram::new(&[0.1, 1.0]);
        registry.register("h", "A histogram", histogram.clone());
        for value in [0.05, 0.5, 7.0] {
            histogram.observe(value);
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "h_bucket{le=\"0.1\"} 1\n",
            "h_bucket{le=\"1\"} 2\n",
            "h_bucket{le=\"+Inf\"} 3\n",
            "h_count 3\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn clones_share_their_counts() {
        let histogram = Histogram::new(&[1.0]);
        let clone = histogram.clone();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        clone.observe(0.5);
                    }
                });
            }
        });
        assert_eq!(histogram.count(), 4000);
        assert_eq!(histogram.sum(), 2000.0);
    }
}
