use super::*;

fn key(text: &str) -> Key {
    Key::from_bytes(format!("{text} .............................").as_bytes()).unwrap()
}

fn drained(version: u64, origin: &str) -> OperatorState {
    let mut state = OperatorState {
        version,
        origin: origin.into(),
        ..OperatorState::default()
    };
    state
        .drained
        .insert(("web".into(), "198.18.0.11".parse().unwrap()));
    state
}

#[test]
fn the_newer_version_wins_and_ties_go_by_origin() {
    let mut mine = OperatorState::default();
    assert!(mine.adopt(drained(1, "lb2")));
    assert!(
        !mine.adopt(drained(1, "lb2")),
        "the same copy again changes nothing"
    );
    assert!(
        !mine.adopt(drained(1, "lb1")),
        "equal version, lower origin"
    );
    assert!(mine.adopt(drained(1, "lb3")));
    let v = mine.change("lb1", |s| {
        s.drained.clear();
    });
    assert_eq!((v, mine.origin.as_str()), (2, "lb1"));
    assert!(!mine.adopt(drained(1, "lb9")), "an older version loses");
}

#[test]
fn frames_round_trip_and_bad_ones_are_rejected() {
    let k = key("cluster");
    let state = drained(7, "lb1");
    let frame = seal(OPERATOR_MAGIC, &state, &k, 42);
    assert!(is_shared_frame(&frame));
    assert_eq!(open(&frame, &k, 42), Ok(Shared::Operator(state)));
    assert_eq!(
        open(&frame, &key("other"), 42),
        Err(Reject::Unauthenticated)
    );
    assert_eq!(open(&frame, &k, 43), Err(Reject::ForeignCluster));
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x01;
        assert!(open(&bad, &k, 42).is_err(), "flipped byte {i} accepted");
    }
    assert_eq!(open(&frame[..10], &k, 42), Err(Reject::Malformed));
    let view = HealthView {
        node: "lb2".into(),
        sequence: 3,
        down: drained(1, "x").drained,
    };
    let frame = seal(HEALTH_MAGIC, &view, &k, 42);
    assert_eq!(open(&frame, &k, 42), Ok(Shared::Health(view)));
}
