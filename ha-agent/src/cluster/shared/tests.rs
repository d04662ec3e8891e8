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
    let frame = seal(OPERATOR_MAGIC, &state, &k, 42).unwrap();
    assert!(is_shared_frame(&frame));
    assert_eq!(open(&frame, &k, 42), Ok(Shared::Operator(state)));
    assert_eq!(
        open(&frame, &key("other"), 42),
        Err(DropReason::Unauthenticated)
    );
    assert_eq!(open(&frame, &k, 43), Err(DropReason::ForeignCluster));
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x01;
        assert!(open(&bad, &k, 42).is_err(), "flipped byte {i} accepted");
    }
    assert_eq!(open(&frame[..10], &k, 42), Err(DropReason::Malformed));
    let view = HealthView {
        node: "lb2".into(),
        sequence: 3,
        down: drained(1, "x").drained,
    };
    let frame = seal(HEALTH_MAGIC, &view, &k, 42).unwrap();
    assert_eq!(open(&frame, &k, 42), Ok(Shared::Health(view)));
}

/// Pins the bytes of both frame kinds: magic, version, cluster id, the
/// JSON content and the tag (the tags checked independently with Python's
/// hmac/hashlib over the same bytes).
#[test]
fn shared_golden_frames() {
    let k = key("cluster");
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let mut state = drained(7, "lb1");
    state.failover = Some(FailoverRequest {
        id: 3,
        group: "web".into(),
        to: Some("lb2".into()),
        issued_at_ms: 1_700_000_000_000,
    });
    let frame = seal(OPERATOR_MAGIC, &state, &k, 0x0123_4567_89ab_cdef).unwrap();
    let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
    assert_eq!(hex(&body[..HEADER_LEN]), "484f010123456789abcdef");
    assert_eq!(
        std::str::from_utf8(&body[HEADER_LEN..]).unwrap(),
        concat!(
            r#"{"version":7,"origin":"lb1","drained":[["web","198.18.0.11"]],"#,
            r#""failover":{"id":3,"group":"web","to":"lb2","issued_at_ms":1700000000000}}"#
        )
    );
    assert_eq!(
        hex(tag),
        "177fe6b418a1e931cbbf233d0083f5d044ab0a5adffdbecfd54900084c0fd23b"
    );

    let view = HealthView {
        node: "lb2".into(),
        sequence: 3,
        down: state.drained,
    };
    let frame = seal(HEALTH_MAGIC, &view, &k, 42).unwrap();
    let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
    assert_eq!(hex(&body[..HEADER_LEN]), "485601000000000000002a");
    assert_eq!(
        std::str::from_utf8(&body[HEADER_LEN..]).unwrap(),
        r#"{"node":"lb2","sequence":3,"down":[["web","198.18.0.11"]]}"#
    );
    assert_eq!(
        hex(tag),
        "ad48b92a28e837f6c9629043d13ff5fbbd3a70721f99660ff4a8125015cdc76a"
    );
}

/// A frame is never sent larger than a receiver can take in: the largest
/// one that fits a datagram opens, one byte more is refused at the sender.
#[test]
fn a_frame_larger_than_one_datagram_is_not_sealed() {
    let k = key("cluster");
    let origin_for = |len: usize| OperatorState {
        origin: "x".repeat(len),
        ..OperatorState::default()
    };
    let overhead = seal(OPERATOR_MAGIC, &origin_for(0), &k, 42).unwrap().len();
    let largest = origin_for(MAX_FRAME_LEN - overhead);
    let frame = seal(OPERATOR_MAGIC, &largest, &k, 42).unwrap();
    assert_eq!(frame.len(), MAX_FRAME_LEN);
    assert_eq!(open(&frame, &k, 42), Ok(Shared::Operator(largest)));
    let too_large = origin_for(MAX_FRAME_LEN - overhead + 1);
    assert_eq!(
        seal(OPERATOR_MAGIC, &too_large, &k, 42),
        Err(TooLarge {
            len: MAX_FRAME_LEN + 1
        })
    );
}
