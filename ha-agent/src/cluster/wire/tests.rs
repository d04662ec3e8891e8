use super::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

const CLUSTER: u64 = 0x0123_4567_89ab_cdef;
const DEAD_AFTER: Duration = Duration::from_millis(200);
/// A receiver's clock when it does not matter.
const NOW: Duration = Duration::from_secs(1);

fn key() -> Key {
    Key::from_bytes(b"0123456789abcdef0123456789abcdef\n").unwrap()
}

fn full() -> Heartbeat {
    Heartbeat {
        cluster_id: CLUSTER,
        node: "lb-2.example".to_owned(),
        incarnation: 1_700_000_000_123,
        sequence: 42,
        sent_at_us: 12_345_678,
        priority: 200,
        eligible: true,
        claims: vec![0, 3, 63],
        bids: vec![9],
        leaving: true,
        standby: true,
        peers: vec![
            PeerReport {
                node: "lb-1.example".to_owned(),
                incarnation: 1_700_000_000_001,
                sequence: 7,
                age_us: 1234,
                echo_us: 9_876_543,
                priority: 100,
                claims: vec![1],
                bids: vec![],
            },
            PeerReport {
                node: "lb-3".to_owned(),
                incarnation: 5,
                sequence: u64::MAX,
                age_us: u32::MAX,
                echo_us: 0,
                priority: 0,
                claims: vec![],
                bids: vec![0, 8],
            },
        ],
        digest: std::array::from_fn(|i| i as u8 ^ 0xa5),
    }
}

/// A group set's bytes on the wire.
fn set_bytes(groups: &[u16]) -> Vec<u8> {
    let mut bytes = Vec::new();
    GroupSet::of(groups).encode(&mut bytes);
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `body` (a frame without its tag) with a valid tag under `key()`.
fn tagged(body: &[u8]) -> Vec<u8> {
    let mut f = body.to_vec();
    let tag: [u8; 32] = key()
        .mac()
        .chain_update(body)
        .finalize()
        .into_bytes()
        .into();
    f.extend_from_slice(&tag);
    f
}

fn body(frame: &[u8]) -> Vec<u8> {
    frame[..frame.len() - TAG_LEN].to_vec()
}

#[test]
fn wire_round_trip_full_heartbeat() {
    let hb = full();
    let frame = encode(&hb, &key());
    assert_eq!(frame.len(), 210);
    assert_eq!(frame.len(), frame_len(&hb));
    assert_eq!(decode(&frame, &key(), CLUSTER), Ok(hb));
}

/// A report of `name` (of `len` bytes) with every field at its widest.
fn widest_report(name: String) -> PeerReport {
    PeerReport {
        node: name,
        incarnation: u64::MAX,
        sequence: u64::MAX,
        age_us: u32::MAX,
        echo_us: u64::MAX,
        priority: u8::MAX,
        claims: (0..MAX_GROUPS as u16).collect(),
        bids: (0..MAX_GROUPS as u16).collect(),
    }
}

#[test]
fn wire_round_trip_extremes_and_sizes() {
    let mut hb = full();
    for (eligible, leaving, standby) in [(false, false, false), (true, false, false)] {
        hb.eligible = eligible;
        hb.leaving = leaving;
        hb.standby = standby;
        hb.node = "a".to_owned();
        hb.claims.clear();
        hb.bids.clear();
        hb.peers.clear();
        let frame = encode(&hb, &key());
        assert_eq!(frame.len(), MIN_FRAME_LEN);
        assert_eq!(decode(&frame, &key(), CLUSTER).as_ref(), Ok(&hb));
    }
    hb.node = "é".repeat(16); // 32 bytes of UTF-8
    hb.claims = (0..MAX_GROUPS as u16).collect();
    hb.bids = hb.claims.clone();
    hb.peers = (0..MAX_REPORTS)
        .map(|i| widest_report(format!("{i:0>32}")))
        .collect();
    hb.sequence = u64::MAX;
    hb.sent_at_us = u64::MAX;
    hb.priority = u8::MAX;
    let frame = encode(&hb, &key());
    assert_eq!(frame.len(), MAX_FRAME_LEN);
    assert_eq!(decode(&frame, &key(), CLUSTER), Ok(hb));
}

/// A group set's bitmap ends at its highest group, and every set of
/// groups decodes to itself, ascending.
#[test]
fn wire_group_sets() {
    assert_eq!(set_bytes(&[]), [0]);
    assert_eq!(set_bytes(&[0]), [1, 0x01]);
    assert_eq!(set_bytes(&[7, 8]), [2, 0x80, 0x01]);
    assert_eq!(set_bytes(&[63]), [8, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    let mut hb = full();
    for groups in [vec![], vec![5], vec![1, 2, 3, 62], vec![8, 16, 24, 32, 40]] {
        hb.claims = groups.clone();
        hb.bids = groups.iter().map(|g| 63 - g).rev().collect();
        hb.peers[0].claims = groups.clone();
        let got = decode(&encode(&hb, &key()), &key(), CLUSTER).unwrap();
        assert_eq!(got, hb, "{groups:?}");
    }
}

/// Pins the byte layout and the tag (computed independently with
/// Python's hmac/hashlib over the same bytes, built from the module
/// doc's table).
#[test]
fn wire_golden_frame() {
    let frame = encode(&full(), &key());
    let expected_body = concat!(
        "4841",                       // magic
        "02",                         // version
        "07",                         // flags
        "0123456789abcdef",           // cluster id
        "0000018bcfe5687b",           // incarnation
        "000000000000002a",           // sequence
        "0000000000bc614e",           // sent_at_us
        "c8",                         // priority
        "0c6c622d322e6578616d706c65", // name
        "080900000000000080",         // claims 0, 3, 63
        "020002",                     // bids 9
        "02",                         // 2 reports
        "0c6c622d312e6578616d706c65", // report: name
        "0000018bcfe56801",           // incarnation
        "0000000000000007",           // sequence
        "000004d2",                   // age_us
        "000000000096b43f",           // echo_us
        "64",                         // priority
        "0102",                       // claims 1
        "00",                         // no bids
        "046c622d33",                 // report: name
        "0000000000000005",           // incarnation
        "ffffffffffffffff",           // sequence
        "ffffffff",                   // age_us
        "0000000000000000",           // echo_us
        "00",                         // priority
        "00",                         // no claims
        "020101",                     // bids 0, 8
        "a5a4a7a6a1a0a3a2adacafaea9a8abaab5b4b7b6b1b0b3b2bdbcbfbeb9b8bbba",
    );
    assert_eq!(hex(&body(&frame)), expected_body);
    assert_eq!(
        hex(&frame[frame.len() - TAG_LEN..]),
        "a8950bcce58961c80fb38743edc1692f6a8d32f0cb9d6ceb4ca4ad9114d551fb"
    );
}

/// A sender stamps its own cluster id, incarnation and sequence into the
/// same bytes as [`wire_golden_frame`]'s.
#[test]
fn wire_golden_frame_sealed() {
    let mut hb = full();
    (hb.cluster_id, hb.incarnation, hb.sequence) = (1, 2, 3);
    let mut tx = Sender::new(key(), CLUSTER, full().incarnation);
    let sealed: Vec<Vec<u8>> = (0..full().sequence).map(|_| tx.seal(&hb)).collect();
    assert_eq!(sealed.last(), Some(&encode(&full(), &key())));
}

#[test]
fn wire_every_bit_flip_rejected() {
    let frame = encode(&full(), &key());
    for bit in 0..frame.len() * 8 {
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let got = decode(&bad, &key(), CLUSTER);
        let want = match bit / 8 {
            0 | 1 => DropReason::Malformed,
            OFF_VERSION => DropReason::Version,
            _ => DropReason::Unauthenticated,
        };
        assert_eq!(got, Err(want), "bit {bit} flipped");
    }
}

#[test]
fn wire_truncated_at_every_length_rejected() {
    let frame = encode(&full(), &key());
    for len in 0..frame.len() {
        let got = decode(&frame[..len], &key(), CLUSTER);
        let want = if len <= OFF_FLAGS || len < MIN_FRAME_LEN {
            DropReason::Malformed
        } else {
            DropReason::Unauthenticated
        };
        assert_eq!(got, Err(want), "truncated to {len} bytes");
    }
    // Bytes appended: the tag is read from the wrong place.
    let mut long = frame.clone();
    long.push(0);
    assert_eq!(
        decode(&long, &key(), CLUSTER),
        Err(DropReason::Unauthenticated)
    );
    // Longer than any valid frame: dropped before the HMAC.
    let mut huge = frame;
    huge.resize(MAX_FRAME_LEN + 1, 0);
    assert_eq!(decode(&huge, &key(), CLUSTER), Err(DropReason::Malformed));
}

/// Below the tag check, the codec fails cleanly wherever the bytes end.
#[test]
fn wire_codec_cut_anywhere_is_an_error() {
    let body = body(&encode(&full(), &key()));
    for len in 0..body.len() {
        let got = Heartbeat::decode(&mut &body[..len]);
        assert_eq!(got, Err(DecodeError), "cut to {len} bytes");
    }
    assert_eq!(Heartbeat::decode(&mut &body[..]), Ok(full()));
}

#[test]
fn wire_wrong_key_rejected() {
    let frame = encode(&full(), &key());
    let other = Key::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
    assert_eq!(
        decode(&frame, &other, CLUSTER),
        Err(DropReason::Unauthenticated)
    );
    // Authentication comes before the cluster id.
    assert_eq!(
        decode(&frame, &other, CLUSTER + 1),
        Err(DropReason::Unauthenticated)
    );
}

#[test]
fn wire_foreign_cluster_rejected_after_auth() {
    let frame = encode(&full(), &key());
    assert_eq!(
        decode(&frame, &key(), CLUSTER + 1),
        Err(DropReason::ForeignCluster)
    );
}

#[test]
fn wire_version_checked_before_auth_and_length() {
    let mut frame = encode(&full(), &key());
    frame[OFF_VERSION] = 1;
    assert_eq!(decode(&frame, &key(), CLUSTER), Err(DropReason::Version));
    assert_eq!(
        decode(b"HA\x01\x00", &key(), CLUSTER),
        Err(DropReason::Version)
    );
    assert_eq!(
        decode(b"HA\x03\x00", &key(), CLUSTER),
        Err(DropReason::Version)
    );
    assert_eq!(
        decode(b"HA\x02\x00", &key(), CLUSTER),
        Err(DropReason::Malformed)
    );
    assert_eq!(
        decode(b"XA\x02\x00", &key(), CLUSTER),
        Err(DropReason::Malformed)
    );
}

/// A report of `name` with zero numbers and empty sets.
fn raw_report(name: &[u8]) -> Vec<u8> {
    let mut r = vec![name.len() as u8];
    r.extend_from_slice(name);
    r.extend_from_slice(&[0; REPORT_FIXED_LEN - 1]);
    r
}

/// Authenticated but inconsistent frames (a buggy or malicious key
/// holder) are Malformed, not accepted and not a panic.
#[test]
fn wire_authenticated_garbage_is_malformed() {
    let good = body(&encode(&full(), &key()));
    let name_end = OFF_NAME + "lb-2.example".len();
    let bids_at = name_end + 1 + 8; // after the claims: 0, 3, 63
    let count_at = bids_at + 1 + 2; // after the bids: 9
    let digest = &good[good.len() - DIGEST_LEN..];
    let with_reports = |count: u8, reports: &[Vec<u8>]| {
        let mut b = good[..count_at].to_vec();
        b.push(count);
        reports.iter().for_each(|r| b.extend_from_slice(r));
        b.extend_from_slice(digest);
        b
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut b = good.clone();
    b[OFF_FLAGS] |= 0x08;
    cases.push(("unknown flag bit", b));

    let mut b = good.clone();
    b[OFF_NAME] = 0xff;
    cases.push(("name not UTF-8", b));

    let mut b = good.clone();
    b[OFF_NAME_LEN] = 0;
    cases.push(("empty name", b));

    let mut b = good.clone();
    b[OFF_NAME_LEN] = 33; // and 33 bytes of name: otherwise consistent
    b.splice(name_end..name_end, [b'x'; 21]);
    cases.push(("name too long", b));

    let mut b = good.clone();
    b[OFF_NAME_LEN] += 1;
    cases.push(("name length past its bytes", b));

    let mut b = good.clone();
    b[name_end] = 9; // and a ninth byte: otherwise consistent
    b.insert(bids_at, 1);
    cases.push(("group set longer than 8 bytes", b));

    let mut b = good.clone();
    b[bids_at] = 3;
    b.insert(count_at, 0);
    cases.push(("group set ending in a zero byte", b));

    let mut b = good.clone();
    b[bids_at] = 8;
    cases.push(("group set past the data", b));

    let mut b = good.clone();
    b[count_at] = 3;
    cases.push(("report count past the data", b));

    let mut b = good.clone();
    b[count_at] = 1;
    cases.push(("report count short: trailing bytes", b));

    let many: Vec<Vec<u8>> = (b'a'..=b'p').map(|n| raw_report(&[n])).collect();
    let b = with_reports(16, &many);
    assert!(b.len() + TAG_LEN <= MAX_FRAME_LEN);
    cases.push(("16 reports", b));

    cases.push(("report about the sender", {
        with_reports(1, &[raw_report(b"lb-2.example")])
    }));
    cases.push(("two reports about one node", {
        with_reports(2, &[raw_report(b"x"), raw_report(b"x")])
    }));
    cases.push(("report name empty", with_reports(1, &[raw_report(b"")])));
    cases.push(("report name not UTF-8", {
        with_reports(1, &[raw_report(b"\xff")])
    }));
    cases.push(("report name too long", {
        with_reports(1, &[raw_report(&[b'x'; 33])])
    }));

    let mut b = good.clone();
    b.push(0);
    cases.push(("trailing byte", b));

    let mut b = good.clone();
    b.pop();
    cases.push(("digest short", b));

    for (what, body) in cases {
        let frame = tagged(&body);
        assert_eq!(
            decode(&frame, &key(), CLUSTER),
            Err(DropReason::Malformed),
            "{what}"
        );
    }
    // The report builder itself makes valid reports.
    let fine = with_reports(2, &[raw_report(b"x"), raw_report(b"y")]);
    assert!(decode(&tagged(&fine), &key(), CLUSTER).is_ok());
}

#[test]
fn replay_duplicate_rejected() {
    let mut g = ReplayGuard::new();
    assert_eq!(g.accept("b", 1, 10), Ok(()));
    assert_eq!(g.accept("b", 1, 10), Err(DropReason::Replayed));
    assert_eq!(g.accept("b", 1, 11), Ok(()));
    assert_eq!(g.accept("b", 1, 11), Err(DropReason::Replayed));
    assert_eq!(g.accept("b", 1, 10), Err(DropReason::Replayed));
    // Per node: another sender's numbers are its own.
    assert_eq!(g.accept("c", 1, 10), Ok(()));
}

#[test]
fn replay_reordered_within_window_accepted_once() {
    let mut g = ReplayGuard::new();
    assert_eq!(g.accept("b", 1, 100), Ok(()));
    assert_eq!(g.accept("b", 1, 105), Ok(()));
    for seq in [103, 101, 104, 102] {
        assert_eq!(g.accept("b", 1, seq), Ok(()), "{seq}");
    }
    for seq in 100..=105 {
        assert_eq!(g.accept("b", 1, seq), Err(DropReason::Replayed), "{seq}");
    }
    // The oldest sequence the window still holds.
    assert_eq!(g.accept("b", 1, 105 - (REPLAY_WINDOW - 1)), Ok(()));
    // Sliding keeps the bits of what was seen.
    assert_eq!(g.accept("b", 1, 110), Ok(()));
    for seq in 100..=105 {
        assert_eq!(g.accept("b", 1, seq), Err(DropReason::Replayed), "{seq}");
    }
    for seq in 106..110 {
        assert_eq!(g.accept("b", 1, seq), Ok(()), "{seq}");
    }
}

#[test]
fn replay_older_than_window_rejected() {
    let mut g = ReplayGuard::new();
    assert_eq!(g.accept("b", 1, 1000), Ok(()));
    assert_eq!(
        g.accept("b", 1, 1000 - REPLAY_WINDOW),
        Err(DropReason::Replayed)
    );
    assert_eq!(g.accept("b", 1, 0), Err(DropReason::Replayed));
    // A jump of a whole window or more forgets everything below.
    assert_eq!(g.accept("b", 1, 1000 + REPLAY_WINDOW), Ok(()));
    assert_eq!(g.accept("b", 1, 1000), Err(DropReason::Replayed));
    assert_eq!(g.accept("b", 1, 1001), Ok(()));
    assert_eq!(g.accept("b", 1, u64::MAX), Ok(()));
    assert_eq!(g.accept("b", 1, u64::MAX), Err(DropReason::Replayed));
}

#[test]
fn replay_new_incarnation_resets_window() {
    let mut g = ReplayGuard::new();
    assert_eq!(g.accept("b", 5, 1_000_000), Ok(()));
    // Restarted: numbering starts over.
    assert_eq!(g.accept("b", 6, 1), Ok(()));
    assert_eq!(g.accept("b", 6, 1), Err(DropReason::Replayed));
    assert_eq!(g.accept("b", 6, 2), Ok(()));
    // The old run's frames are replays now, however high their sequence.
    assert_eq!(g.accept("b", 5, 1_000_001), Err(DropReason::Replayed));
}

#[test]
fn replay_older_incarnation_rejected() {
    let mut g = ReplayGuard::new();
    assert_eq!(g.accept("b", 7, 3), Ok(()));
    assert_eq!(g.accept("b", 6, 4), Err(DropReason::Replayed));
    assert_eq!(g.accept("b", 0, u64::MAX), Err(DropReason::Replayed));
    assert_eq!(g.accept("b", 7, 4), Ok(()));
}

#[test]
fn receiver_rejects_from_self() {
    let mut me = Sender::new(key(), CLUSTER, 1);
    let frame = me.seal(&full());
    let mut rx = Receiver::new(key(), CLUSTER, "lb-2.example", 1, DEAD_AFTER);
    assert_eq!(rx.receive(&frame, NOW), Err(DropReason::FromSelf));
    let mut other = Receiver::new(key(), CLUSTER, "lb-1.example", 1, DEAD_AFTER);
    assert!(other.receive(&frame, NOW).is_ok());
}

#[test]
fn receiver_counts_each_reason() {
    let mut tx = Sender::new(key(), CLUSTER, 9);
    let mut rx = Receiver::new(key(), CLUSTER, "me", 9, DEAD_AFTER);
    let f1 = tx.seal(&full());
    let f2 = tx.seal(&full());
    let mut own = full();
    own.node = "me".to_owned();
    let own = tx.seal(&own);
    let mut versioned = f1.clone();
    versioned[OFF_VERSION] = 9;
    let mut forged = f1.clone();
    forged[OFF_PRIORITY] ^= 1;
    let foreign = Sender::new(key(), CLUSTER + 1, 9).seal(&full());

    assert_eq!(rx.receive(&f2, NOW).map(|hb| hb.sequence), Ok(2));
    assert_eq!(rx.receive(&f1, NOW).map(|hb| hb.sequence), Ok(1)); // reordered
    let rejections = [
        (&f1[..3], DropReason::Malformed),
        (&versioned[..], DropReason::Version),
        (&forged[..], DropReason::Unauthenticated),
        (&forged[..], DropReason::Unauthenticated),
        (&foreign[..], DropReason::ForeignCluster),
        (&f1[..], DropReason::Replayed),
        (&f2[..], DropReason::Replayed),
        (&f2[..], DropReason::Replayed),
        (&own[..], DropReason::FromSelf),
    ];
    for (frame, reason) in rejections {
        assert_eq!(rx.receive(frame, NOW), Err(reason));
    }
    assert_eq!(rx.accepted, 2);
    assert_eq!(rx.rejected, [1, 1, 2, 1, 3, 1, 0, 0]);
    for (i, reason) in DropReason::ALL.into_iter().enumerate() {
        assert_eq!(reason.index(), i);
    }
    let names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "version",
            "unauthenticated",
            "foreign_cluster",
            "replayed",
            "from_self",
            "unproven",
            "rate_limited"
        ]
    );
}

#[test]
fn sender_stamps_cluster_incarnation_and_sequence() {
    let mut tx = Sender::new(key(), CLUSTER, 77);
    let mut hb = full();
    hb.cluster_id = 1;
    hb.incarnation = 2;
    hb.sequence = 3;
    assert_eq!(tx.sequence(), 0);
    for want in 1..=3 {
        let got = decode(&tx.seal(&hb), &key(), CLUSTER).unwrap();
        assert_eq!(
            (got.cluster_id, got.incarnation, got.sequence),
            (CLUSTER, 77, want)
        );
        assert_eq!(got.node, hb.node);
        assert_eq!(got.claims, hb.claims);
    }
    assert_eq!((tx.incarnation(), tx.sequence()), (77, 3));
}

#[test]
#[should_panic(expected = "1..=32")]
fn encode_refuses_long_name() {
    let mut hb = full();
    hb.node = "x".repeat(33);
    encode(&hb, &key());
}

#[test]
#[should_panic(expected = "groups 0..64")]
fn encode_refuses_group_64() {
    let mut hb = full();
    hb.peers[1].bids.push(64);
    encode(&hb, &key());
}

#[test]
#[should_panic(expected = "twice or about itself")]
fn encode_refuses_a_report_about_the_sender() {
    let mut hb = full();
    hb.peers[0].node = hb.node.clone();
    encode(&hb, &key());
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A key file in the temp dir, removed on drop.
struct TempKey(PathBuf);

impl TempKey {
    fn new(contents: &[u8], mode: u32) -> TempKey {
        let path = std::env::temp_dir().join(format!(
            "ha-wire-test-{}-{}.key",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        TempKey(path)
    }
}

impl Drop for TempKey {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

const MATERIAL: &[u8] = b"0123456789abcdef0123456789abcdef\n";

#[test]
fn key_file_mode_0600_ok() {
    let file = TempKey::new(MATERIAL, 0o600);
    let loaded = load_key(&file.0).unwrap();
    assert_eq!(loaded.0, key().0);
    let file = TempKey::new(MATERIAL, 0o400);
    assert_eq!(load_key(&file.0).unwrap().0, key().0);
}

#[test]
fn key_file_group_or_world_access_refused() {
    for (mode, shown) in [
        (0o640, "0640"),
        (0o604, "0604"),
        (0o620, "0620"),
        (0o644, "0644"),
    ] {
        let file = TempKey::new(MATERIAL, mode);
        let err = format!("{:#}", load_key(&file.0).unwrap_err());
        assert!(err.contains(&file.0.display().to_string()), "{err}");
        assert!(err.contains(&format!("mode {shown}")), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
    }
}

#[test]
fn key_file_short_refused() {
    let file = TempKey::new(&MATERIAL[..31], 0o600);
    let err = format!("{}", load_key(&file.0).unwrap_err());
    assert!(err.contains(&file.0.display().to_string()), "{err}");
    assert!(err.contains("31 bytes"), "{err}");
    let file = TempKey::new(b"", 0o600);
    assert!(load_key(&file.0).is_err());
    assert_eq!(
        Key::from_bytes(&[0; 31]).unwrap_err(),
        KeyError::TooShort { len: 31 }
    );
    assert!(Key::from_bytes(&[0; 32]).is_ok());
}

#[test]
fn key_file_missing_or_not_a_file_refused() {
    let path =
        std::env::temp_dir().join(format!("ha-wire-test-{}-missing.key", std::process::id()));
    let err = format!("{:#}", load_key(&path).unwrap_err());
    assert!(err.contains(&path.display().to_string()), "{err}");
    let dir = std::env::temp_dir();
    let err = format!("{:#}", load_key(&dir).unwrap_err());
    assert!(err.contains(&dir.display().to_string()), "{err}");
}

#[test]
fn key_derivation_golden() {
    // SHA-256 of the label followed by the 33 bytes
    // "0123456789abcdef0123456789abcdef\n" (computed with Python's
    // hashlib): the newline is part of the key material.
    assert_eq!(
        hex(&key().0),
        "76ad9c91c2492a526e4d2e9a526258aad61576b69dc37930990de196e1696bc5"
    );
    assert_ne!(
        key().0,
        Key::from_bytes(&MATERIAL[..32]).unwrap().0,
        "no trimming"
    );
    assert_eq!(format!("{:?}", key()), "Key(..)");
}

/// This node (lb1) started at 1,000,000 ms; its previous life at 900,000.
const MY_LIFE: u64 = 1_000_000;
const MY_LAST_LIFE: u64 = 900_000;

/// Frame `sequence` of lb-2.example's life `incarnation`, reporting lb1's
/// life `echoed_life` with an echo of lb1's frame sent at `echo`.
fn frame_of_lb2(incarnation: u64, sequence: u64, echoed_life: u64, echo: Duration) -> Vec<u8> {
    let mut hb = full();
    (hb.incarnation, hb.sequence, hb.leaving) = (incarnation, sequence, false);
    hb.peers[0].node = "lb1".to_owned();
    hb.peers[0].incarnation = echoed_life;
    hb.peers[0].echo_us = echo.as_micros() as u64;
    encode(&hb, &key())
}

/// After lb1 restarts, a recording of a dead peer's frames (made while
/// lb1's previous life ran, so echoing that life) makes nothing look
/// alive: the peer started long before lb1's new life and never heard it.
#[test]
fn receiver_a_recording_of_a_dead_peer_stays_dead_after_a_restart() {
    let recording: Vec<Vec<u8>> = (1..=100)
        .map(|seq| frame_of_lb2(500_000, seq, MY_LAST_LIFE, NOW))
        .collect();
    let mut restarted = Receiver::new(key(), CLUSTER, "lb1", MY_LIFE, DEAD_AFTER);
    for (i, frame) in recording.iter().enumerate() {
        let now = NOW + Duration::from_millis(50 * i as u64);
        assert_eq!(restarted.receive(frame, now), Err(DropReason::Unproven));
    }
    assert_eq!(restarted.accepted, 0);
    assert_eq!(restarted.rejected[DropReason::Unproven.index()], 100);
    assert_eq!(restarted.live_incarnation("lb-2.example"), None);
}

/// A new incarnation is proven by a recent echo of this life, or by having
/// started no more than dead_after before this node; once heard live, its
/// frames need no echo.
#[test]
fn receiver_a_new_incarnation_needs_proof_of_life() {
    let mut rx = Receiver::new(key(), CLUSTER, "lb1", MY_LIFE, DEAD_AFTER);
    let early = 500_000;
    // An echo of this life, but sent dead_after ago or more (or one from
    // the future): a recording of a frame that answered us then.
    let stale = frame_of_lb2(early, 1, MY_LIFE, NOW - DEAD_AFTER);
    assert_eq!(rx.receive(&stale, NOW), Err(DropReason::Unproven));
    let future = frame_of_lb2(early, 2, MY_LIFE, NOW + Duration::from_millis(1));
    assert_eq!(rx.receive(&future, NOW), Err(DropReason::Unproven));
    // A fresh echo of this life: live.
    let fresh = frame_of_lb2(early, 3, MY_LIFE, NOW - DEAD_AFTER / 2);
    assert_eq!(rx.receive(&fresh, NOW).map(|hb| hb.sequence), Ok(3));
    assert_eq!(rx.live_incarnation("lb-2.example"), Some(early));
    // From then on its frames pass the replay window alone.
    let plain = frame_of_lb2(early, 4, MY_LAST_LIFE, Duration::ZERO);
    assert_eq!(rx.receive(&plain, NOW).map(|hb| hb.sequence), Ok(4));
    // It restarts after us: its new life needs no echo.
    let restarted = frame_of_lb2(MY_LIFE + 5_000, 1, MY_LAST_LIFE, Duration::ZERO);
    assert_eq!(rx.receive(&restarted, NOW).map(|hb| hb.sequence), Ok(1));
    // Another peer that started within dead_after before us: no echo needed.
    let grace = DEAD_AFTER.as_millis() as u64;
    let mut lb3 = full();
    (lb3.node, lb3.incarnation, lb3.peers) = ("lb3".into(), MY_LIFE - grace, vec![]);
    assert!(rx.receive(&encode(&lb3, &key()), NOW).is_ok());
    let mut lb4 = lb3;
    (lb4.node, lb4.incarnation) = ("lb4".into(), MY_LIFE - grace - 1);
    assert_eq!(
        rx.receive(&encode(&lb4, &key()), NOW),
        Err(DropReason::Unproven)
    );
}

/// lb2 ran as life 2,000,000 (started after us), then restarted with its
/// clock stepped back and its incarnation file lost: life 1,500,000. Its
/// frames are replays while its old life may still speak; once it has
/// been silent for dead_after, a fresh echo of this life makes it live
/// again, and the old life is given up for good.
#[test]
fn receiver_forgets_a_peer_silent_for_dead_after() {
    let mut rx = Receiver::new(key(), CLUSTER, "lb1", MY_LIFE, DEAD_AFTER);
    let (old, new) = (2_000_000, 1_500_000);
    let heard = NOW;
    assert!(rx.receive(&frame_of_lb2(old, 10, 0, NOW), heard).is_ok());
    let echo = |at: Duration| frame_of_lb2(new, 1, MY_LIFE, at - DEAD_AFTER / 4);
    // Not silent for dead_after yet, or no fresh echo: replays.
    let soon = heard + DEAD_AFTER / 2;
    assert_eq!(rx.receive(&echo(soon), soon), Err(DropReason::Replayed));
    let later = heard + DEAD_AFTER;
    let no_echo = frame_of_lb2(new, 2, MY_LAST_LIFE, later);
    assert_eq!(rx.receive(&no_echo, later), Err(DropReason::Replayed));
    // Silent for dead_after, with a fresh echo: live again.
    let frame = frame_of_lb2(new, 3, MY_LIFE, later - DEAD_AFTER / 4);
    assert_eq!(rx.receive(&frame, later).map(|hb| hb.sequence), Ok(3));
    assert_eq!(rx.live_incarnation("lb-2.example"), Some(new));
    let plain = frame_of_lb2(new, 4, MY_LAST_LIFE, Duration::ZERO);
    assert!(rx.receive(&plain, later).is_ok());
    // The old life, replayed, and any life up to it: given up.
    for incarnation in [old, new + 1] {
        let replay = frame_of_lb2(incarnation, 11, MY_LIFE, later);
        assert_eq!(rx.receive(&replay, later), Err(DropReason::Replayed));
    }
    // A later restart with a sound clock is a new life as usual.
    let restart = frame_of_lb2(old + 1, 1, MY_LAST_LIFE, Duration::ZERO);
    assert!(rx.receive(&restart, later).is_ok());
}
