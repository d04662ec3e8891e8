//! A Prometheus histogram with fixed buckets, kept by the agent between
//! scrapes (switchover latencies) and copied into each [`super::Snapshot`].

use std::time::Duration;

#[cfg(test)]
mod tests;

/// Histogram bucket upper bounds (seconds) for switchover latencies: 1 µs
/// to 1 s in 1-2.5-5 steps. Phase 1 takes microseconds, phase 2 (a Maglev
/// table rebuild) up to milliseconds; the upper buckets catch stalls.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
];

/// A Prometheus histogram with fixed buckets: counts per bucket (rendered
/// cumulatively, as the format wants), the sum and the count of the
/// observations.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Histogram {
    /// Upper bounds, finite and strictly increasing; `+Inf` is implicit.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more than `bounds`,
    /// the last for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds).
    ///
    /// # Panics
    ///
    /// If a bound is not finite or the bounds are not strictly increasing
    /// (a programming error: they are constants).
    pub(crate) fn new(buckets: &[f64]) -> Self {
        assert!(
            buckets.iter().all(|b| b.is_finite()) && buckets.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite and strictly increasing: {buckets:?}"
        );
        Histogram {
            bounds: buckets.to_vec(),
            counts: vec![0; buckets.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation. A negative value counts as 0; NaN is
    /// ignored (it would poison the sum).
    pub(crate) fn observe(&mut self, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        let seconds = seconds.max(0.0);
        // The first bucket whose bound is >= the value (`le` is inclusive).
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        self.counts[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// Records a duration.
    pub(crate) fn observe_duration(&mut self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The upper bounds, without the implicit `+Inf`.
    pub(crate) fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Cumulative counts: for each bound, the observations `<=` it, then
    /// the `+Inf` bucket (= [`Histogram::count`]).
    pub(crate) fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0, |total, &n| {
                *total += n;
                Some(*total)
            })
            .collect()
    }

    /// Sum of the observations.
    pub(crate) fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

impl Default for Histogram {
    /// Empty, with [`LATENCY_BUCKETS`].
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}
