use std::time::Duration;

use super::Backoff;

#[test]
fn pauses_double_up_to_the_cap_and_start_over_after_a_success() {
    let ms = Duration::from_millis;
    let mut backoff = Backoff::new(ms(100), ms(350));
    let pauses: Vec<Duration> = (0..4).map(|_| backoff.failed()).collect();
    assert_eq!(pauses, [ms(100), ms(200), ms(350), ms(350)]);
    backoff.succeeded();
    assert_eq!(backoff.failed(), ms(100));
    assert_eq!(backoff.failures, 5, "every failure counted");
}
