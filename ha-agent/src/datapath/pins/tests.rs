use super::*;

fn record() -> PinRecord {
    PinRecord {
        layout: layout_fingerprint(),
        ring_size: 65537,
        max_flows: 262_144,
        ifindex: 7,
        interface: "eth0".into(),
        node_mac: [0x02, 0, 0, 0, 0, 0x11],
    }
}

#[test]
fn a_record_reads_back_as_written() {
    let longest = PinRecord {
        interface: "a-fifteen-chars".into(),
        ..record()
    };
    for record in [record(), longest] {
        let bytes = record.encode().expect("encodes");
        assert_eq!(PinRecord::decode(&bytes), record);
    }
    let too_long = PinRecord {
        interface: "sixteen-chars-xx".into(),
        ..record()
    };
    assert!(too_long.encode().is_err());
}

#[test]
fn the_same_configuration_matches() {
    assert!(record().differences(&record()).is_empty());
}

#[test]
fn every_difference_is_named_with_both_values() {
    let pinned = PinRecord {
        layout: 1,
        ring_size: 251,
        max_flows: 4096,
        ifindex: 3,
        interface: "eth1".into(),
        node_mac: [0x02, 0, 0, 0, 0, 0x12],
    };
    let differences = record().differences(&pinned);
    assert_eq!(
        differences,
        [
            format!(
                "map layout (another version of ha): pinned 0000000000000001, this agent {:016x}",
                layout_fingerprint()
            ),
            "ring_size: pinned 251, this agent 65537".to_string(),
            "max_flows: pinned 4096, this agent 262144".to_string(),
            "interface: pinned eth1 (index 3), this agent eth0 (index 7)".to_string(),
            "node MAC: pinned 02:00:00:00:00:12, this agent 02:00:00:00:00:11".to_string(),
        ]
    );
    // One field alone is one difference: an interface recreated under its
    // old name has another index, and its link went with it.
    let recreated = PinRecord {
        ifindex: 9,
        ..record()
    };
    assert_eq!(record().differences(&recreated).len(), 1);
}

#[test]
fn the_fingerprint_is_stable_and_covers_the_layout_version() {
    // Pinned maps outlive the agent: the same build must compute the same
    // value every time (no per-process hashing seeds).
    assert_eq!(layout_fingerprint(), layout_fingerprint());
    assert_ne!(layout_fingerprint(), 0);
}
