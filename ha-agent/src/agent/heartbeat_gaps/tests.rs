use std::time::Duration;

use super::HeartbeatGaps;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn the_longest_gap_between_two_heartbeats_per_peer() {
    let mut gaps = HeartbeatGaps::default();
    gaps.heard("b", ms(1000));
    assert_eq!(gaps.longest("b"), None, "one heartbeat is no gap");
    gaps.heard("b", ms(1050));
    gaps.heard("c", ms(1060));
    gaps.heard("b", ms(1400));
    gaps.heard("b", ms(1450));
    assert_eq!(gaps.longest("b"), Some(ms(350)));
    assert_eq!(gaps.longest("c"), None);
    assert_eq!(gaps.longest("d"), None);
}
