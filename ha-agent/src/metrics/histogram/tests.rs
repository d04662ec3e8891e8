use super::*;

#[test]
fn metrics_histogram() {
    let mut h = Histogram::new(&[0.001, 0.01, 0.1]);
    assert_eq!(h.cumulative(), [0, 0, 0, 0]);
    for seconds in [0.0, 0.001, 0.0011, 0.01, 0.05, 0.2, 7.0, -1.0, f64::NAN] {
        h.observe(seconds);
    }
    // `le` is inclusive; negative counts as 0; NaN is ignored.
    assert_eq!(h.cumulative(), [3, 5, 6, 8]);
    assert_eq!(h.count(), 8);
    assert!((h.sum() - 7.2621).abs() < 1e-9, "{}", h.sum());
    assert_eq!(h.bounds(), [0.001, 0.01, 0.1]);
    h.observe_duration(Duration::from_micros(500));
    assert_eq!(h.cumulative(), [4, 6, 7, 9]);
    // No bounds: only +Inf.
    let mut h = Histogram::new(&[]);
    h.observe(1.0);
    assert_eq!(h.cumulative(), [1]);
    // The default buckets: 1 µs .. 1 s, increasing.
    assert_eq!(Histogram::default().bounds(), LATENCY_BUCKETS);
    assert_eq!(LATENCY_BUCKETS.first(), Some(&1e-6));
    assert_eq!(LATENCY_BUCKETS.last(), Some(&1.0));
    assert!(LATENCY_BUCKETS.contains(&0.1));
}

#[test]
#[should_panic(expected = "strictly increasing")]
fn metrics_histogram_rejects_unsorted_bounds() {
    Histogram::new(&[0.1, 0.01]);
}

#[test]
#[should_panic(expected = "finite")]
fn metrics_histogram_rejects_infinite_bound() {
    Histogram::new(&[0.1, f64::INFINITY]);
}
