use super::*;
use std::collections::BTreeSet;

fn key(text: &str) -> Key {
    Key::from_bytes(format!("{text} .............................").as_bytes()).unwrap()
}

/// Frame 9 of lb2's life 5.
fn stamp() -> Stamp {
    Stamp {
        sender: "lb2".into(),
        incarnation: 5,
        sequence: 9,
    }
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
    let frame = seal(OPERATOR_MAGIC, &stamp(), &state, &k, 42).unwrap();
    assert!(is_shared_frame(&frame));
    assert_eq!(open(&frame, &k, 42), Ok((stamp(), Shared::Operator(state))));
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
    let frame = seal(HEALTH_MAGIC, &stamp(), &view, &k, 42).unwrap();
    assert_eq!(
        open(&frame, &k, 42),
        Ok((stamp(), Shared::Health(view.clone())))
    );
    // A health view is its sender's own.
    let other = Stamp {
        sender: "lb3".into(),
        ..stamp()
    };
    let frame = seal(HEALTH_MAGIC, &other, &view, &k, 42).unwrap();
    assert_eq!(open(&frame, &k, 42), Err(DropReason::Malformed));
    // A frame of version 1 (nodes of the two versions do not share).
    let mut old = seal(HEALTH_MAGIC, &stamp(), &view, &k, 42).unwrap();
    old[2] = 1;
    assert_eq!(open(&old, &k, 42), Err(DropReason::Version));
}

/// Pins the bytes of both frame kinds: magic, version, cluster id,
/// incarnation, sequence, sender, the JSON content and the tag (the tags
/// checked independently with Python's hmac/hashlib over the same bytes).
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
    let frame = seal(OPERATOR_MAGIC, &stamp(), &state, &k, 0x0123_4567_89ab_cdef).unwrap();
    let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
    let header = HEADER_LEN + 4; // and the name: length 3, "lb2"
    assert_eq!(
        hex(&body[..header]),
        "484f020123456789abcdef00000000000000050000000000000009036c6232"
    );
    assert_eq!(
        std::str::from_utf8(&body[header..]).unwrap(),
        concat!(
            r#"{"version":7,"origin":"lb1","drained":[["web","198.18.0.11"]],"#,
            r#""failover":{"id":3,"group":"web","to":"lb2","issued_at_ms":1700000000000}}"#
        )
    );
    assert_eq!(
        hex(tag),
        "b7ad40d3ec9a6c0b88cabf440e59ff5b30ce3387041ee07cf893e6f7b7f4b1f8"
    );

    let view = HealthView {
        node: "lb2".into(),
        sequence: 3,
        down: state.drained,
    };
    let frame = seal(HEALTH_MAGIC, &stamp(), &view, &k, 42).unwrap();
    let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
    assert_eq!(
        hex(&body[..header]),
        "485602000000000000002a00000000000000050000000000000009036c6232"
    );
    assert_eq!(
        std::str::from_utf8(&body[header..]).unwrap(),
        r#"{"node":"lb2","sequence":3,"down":[["web","198.18.0.11"]]}"#
    );
    assert_eq!(
        hex(tag),
        "58122d879b162d3b868b24dca46796faeab0a93119146af06613babbb98f1f4e"
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
    let overhead = seal(OPERATOR_MAGIC, &stamp(), &origin_for(0), &k, 42)
        .unwrap()
        .len();
    let largest = origin_for(MAX_FRAME_LEN - overhead);
    let frame = seal(OPERATOR_MAGIC, &stamp(), &largest, &k, 42).unwrap();
    assert_eq!(frame.len(), MAX_FRAME_LEN);
    assert_eq!(
        open(&frame, &k, 42),
        Ok((stamp(), Shared::Operator(largest)))
    );
    let too_large = origin_for(MAX_FRAME_LEN - overhead + 1);
    assert_eq!(
        seal(OPERATOR_MAGIC, &stamp(), &too_large, &k, 42),
        Err(TooLarge {
            len: MAX_FRAME_LEN + 1
        })
    );
}

const INTERVAL: Duration = Duration::from_millis(50);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The owner lb1 (life 7) as the standby lb2 hears it live.
fn lb1_live(node: &str) -> Option<u64> {
    (node == "lb1").then_some(7)
}

/// Two health views of the owner lb1, in the order it sent them: one
/// backend down, then none.
fn two_views_of_lb1() -> (Vec<u8>, Vec<u8>) {
    let mut owner = SharedSender::new(key("cluster"), 42, "lb1", 7);
    let mut view = HealthView {
        node: "lb1".into(),
        sequence: 1,
        down: drained(1, "x").drained,
    };
    let a = owner.seal(HEALTH_MAGIC, &view).unwrap();
    (view.sequence, view.down) = (2, BTreeSet::new());
    let b = owner.seal(HEALTH_MAGIC, &view).unwrap();
    (a, b)
}

/// The captured views, replayed alternately at 1000/s for 2 s to a
/// standby that heard them live, change nothing: all 2000 are dropped as
/// replayed and counted (the old receiver took every one that differed
/// from the view before: 2000 view changes, each a ring rebuild).
#[test]
fn replayed_health_views_change_nothing_and_are_counted() {
    let (a, b) = two_views_of_lb1();
    let mut standby = SharedReceiver::new(key("cluster"), 42, "lb2", INTERVAL);
    assert!(standby.receive(&a, ms(0), lb1_live).is_ok());
    assert!(standby.receive(&b, ms(1000), lb1_live).is_ok());
    let mut changes = 0;
    for i in 0..2000u64 {
        let frame = if i % 2 == 0 { &a } else { &b };
        match standby.receive(frame, ms(1001 + i), lb1_live) {
            Ok(_) => changes += 1,
            Err(reason) => assert_eq!(reason, DropReason::Replayed),
        }
    }
    let replayed = standby.rejected(Kind::Health)[DropReason::Replayed.index()];
    println!("2000 replays: {changes} view changes, {replayed} dropped as replayed");
    assert_eq!((changes, replayed), (0, 2000));
    assert_eq!(
        standby.rejected(Kind::Operator),
        &[0; DropReason::ALL.len()]
    );
}

/// A standby that never saw them takes the first, then the newer one once
/// (held back until an interval after the first change), then nothing.
#[test]
fn health_view_changes_are_rate_limited_per_sender() {
    let (a, b) = two_views_of_lb1();
    let mut standby = SharedReceiver::new(key("cluster"), 42, "lb2", INTERVAL);
    let mut changed_at = Vec::new();
    for i in 0..2000u64 {
        let frame = if i % 2 == 0 { &a } else { &b };
        if standby.receive(frame, ms(i), lb1_live).is_ok() {
            changed_at.push(i);
        }
    }
    // a at 0; b first at 51 (odd), the first instant an interval after.
    assert_eq!(changed_at, [0, 51]);
    let counts = standby.rejected(Kind::Health);
    assert_eq!(counts[DropReason::RateLimited.index()], 25);
    assert_eq!(counts[DropReason::Replayed.index()], 2000 - 2 - 25);
    // Another sender has its own allowance.
    let mut lb3 = SharedSender::new(key("cluster"), 42, "lb3", 3);
    let view = HealthView {
        node: "lb3".into(),
        sequence: 1,
        down: BTreeSet::new(),
    };
    let frame = lb3.seal(HEALTH_MAGIC, &view).unwrap();
    let live = |node: &str| (node == "lb3").then_some(3);
    assert!(standby.receive(&frame, ms(1999), live).is_ok());
}

/// Shared state is taken only from the life of its sender heard live:
/// not before its heartbeats were, not from an earlier life, not from our
/// own name; operator state and views are numbered and counted apart.
#[test]
fn shared_frames_come_only_from_a_live_incarnation() {
    let k = key("cluster");
    let mut lb1 = SharedSender::new(k.clone(), 42, "lb1", 7);
    let state = drained(1, "lb1");
    let first = lb1.seal(OPERATOR_MAGIC, &state).unwrap();
    let second = lb1.seal(OPERATOR_MAGIC, &state).unwrap();
    let mut rx = SharedReceiver::new(k.clone(), 42, "lb2", INTERVAL);
    let reason = |rx: &mut SharedReceiver, frame: &[u8], live: fn(&str) -> Option<u64>| {
        rx.receive(frame, ms(0), live).err()
    };
    // Heartbeats of lb1 not heard yet, or only of another life.
    assert_eq!(
        reason(&mut rx, &first, |_| None),
        Some(DropReason::Unproven)
    );
    assert_eq!(
        reason(&mut rx, &first, |_| Some(6)),
        Some(DropReason::Unproven)
    );
    assert_eq!(
        reason(&mut rx, &first, |_| Some(8)),
        Some(DropReason::Replayed)
    );
    // Its life heard live: taken once, in order.
    assert_eq!(reason(&mut rx, &second, lb1_live), None);
    assert_eq!(
        reason(&mut rx, &first, lb1_live),
        Some(DropReason::Replayed)
    );
    assert_eq!(
        reason(&mut rx, &second, lb1_live),
        Some(DropReason::Replayed)
    );
    // A frame with our own name.
    let mut me = SharedSender::new(k, 42, "lb2", 1);
    let own = me.seal(OPERATOR_MAGIC, &state).unwrap();
    assert_eq!(
        reason(&mut rx, &own, |_| Some(1)),
        Some(DropReason::FromSelf)
    );
    let counts = rx.rejected(Kind::Operator);
    let at = |r: DropReason| counts[r.index()];
    assert_eq!(
        (
            at(DropReason::Unproven),
            at(DropReason::Replayed),
            at(DropReason::FromSelf)
        ),
        (2, 3, 1)
    );
    assert_eq!(rx.rejected(Kind::Health), &[0; DropReason::ALL.len()]);
}
