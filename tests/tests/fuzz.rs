//! Packet fuzzing in CI: seeded valid and mutated frames through the real
//! XDP program with real maps (BPF_PROG_TEST_RUN), each verdict judged by
//! the independent checker of `ha_tests::fuzz`.
//!
//! Seeds: every run fuzzes the fixed seed [`FIXED_SEED`] for
//! [`FIXED_FRAMES`] frames, the same frames every time, so CI does not
//! flake; then a fresh seed taken from the clock, printed first, for
//! [`FRESH_FRAMES`] more, so that each run also tries frames no run tried
//! before. The checker is exact, so a failure of the fresh seed is a
//! defect found, not a flake: the failure prints its seed, case, frame,
//! verdict, output and the command that replays it.
//!
//! Environment: `HA_FUZZ_SEED=<n>` fuzzes that seed alone (replaying a
//! failure); `HA_FUZZ_CASE=<i>` runs that seed's cases up to i (the flow
//! table carries state from case to case) and prints case i;
//! `HA_FUZZ_FRAMES=<n>` changes how many frames each seed gets.

use std::{
    env,
    net::{Ipv4Addr, Ipv6Addr},
    time::{SystemTime, UNIX_EPOCH},
};

use ha_tests::{
    fuzz::{self, KnownDefect, Topology, VIP4_DROP, VIP4_PASS},
    packet::{
        Solicitation, TCP, TCP_SYN, UDP, arp_request, l4_frame, multicast_mac,
        neighbour_solicitation, solicited_node,
    },
    test_run::{CLIENT_MAC, CLIENT4, CLIENT6, NODE_MAC, VIP4, VIP6, XDP_DROP, XDP_PASS, XDP_TX},
};

/// Known defects whose fix is pending: a failure of one of these kinds is
/// counted and printed, not failed on. Empty: every class the fuzzer found
/// (issue 10, point 12) is fixed; an entry goes here only with an open
/// issue naming it, and comes out with the fix.
const KNOWN_DEFECTS: &[KnownDefect] = &[];

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const FIXED_SEED: u64 = 0x4841_2d46_555a_5a31;
const FIXED_FRAMES: u64 = 100_000;
const FRESH_FRAMES: u64 = 20_000;
/// Failures printed in full; the rest are counted.
const SHOWN_FAILURES: usize = 10;

fn env_u64(name: &str) -> Option<u64> {
    let text = env::var(name).ok()?;
    let value = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(value.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

#[test]
fn fuzzed_frames_get_only_documented_verdicts() {
    let case = env_u64("HA_FUZZ_CASE");
    let frames =
        |default: u64| case.map_or(env_u64("HA_FUZZ_FRAMES").unwrap_or(default), |i| i + 1);
    let runs = match env_u64("HA_FUZZ_SEED") {
        Some(seed) => vec![(seed, frames(FIXED_FRAMES))],
        None => {
            let fresh = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos() as u64;
            println!("fuzz: fixed seed {FIXED_SEED}, fresh seed {fresh}");
            vec![
                (FIXED_SEED, frames(FIXED_FRAMES)),
                (fresh, frames(FRESH_FRAMES)),
            ]
        }
    };
    let mut failures = 0;
    for (seed, frames) in runs {
        let report =
            fuzz::run(seed, frames, KNOWN_DEFECTS, case, SHOWN_FAILURES).expect("run the fuzzer");
        println!("{report}");
        for failure in report.failures.iter().take(SHOWN_FAILURES) {
            println!("{failure}");
        }
        if let Some(shown) = &report.shown {
            println!("{shown}");
        }
        failures += report.failures.len();
    }
    assert_eq!(
        failures, 0,
        "fuzz failures (printed above with their replay commands)"
    );
}

/// The checker is no rubber stamp: right outputs of the real program pass
/// it, and each of them made wrong in one field fails it.
#[test]
fn the_checker_rejects_wrong_verdicts_and_outputs() {
    let topology = Topology::standard();
    let mut datapath = topology.load().expect("load the program");
    let judge =
        |frame: &[u8], verdict: u32, output: &[u8]| fuzz::check(&topology, frame, verdict, output);
    let edited = |bytes: &[u8], at: usize, value: u8| {
        let mut bytes = bytes.to_vec();
        bytes[at] = value;
        bytes
    };

    // VIP traffic: steered to a usable backend of its VIP, nowhere else.
    let syn = l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT4.into(),
        VIP4.into(),
        TCP,
        40000,
        80,
        TCP_SYN,
    );
    let (verdict, out) = datapath.test_run(&syn).unwrap();
    assert_eq!(verdict, XDP_TX);
    judge(&syn, verdict, &out).expect("the program's own steering");
    let drained_backend = [0x02, 0xbb, 0, 0, 0, 3];
    let other_vips_backend = [0x02, 0xbb, 0, 0, 0, 4];
    for backend in [drained_backend, other_vips_backend, CLIENT_MAC] {
        let mut wrong = out.clone();
        wrong[0..6].copy_from_slice(&backend);
        assert!(judge(&syn, XDP_TX, &wrong).is_err(), "to {backend:02x?}");
    }
    assert!(
        judge(&syn, XDP_TX, &edited(&out, 6, 0x02 ^ 4)).is_err(),
        "source MAC"
    );
    assert!(
        judge(&syn, XDP_TX, &edited(&out, 40, 0xee)).is_err(),
        "payload"
    );
    assert!(judge(&syn, XDP_PASS, &syn).is_err(), "VIP traffic passed");
    assert!(judge(&syn, XDP_DROP, &syn).is_err(), "VIP traffic dropped");
    for never in [0, 4] {
        assert!(judge(&syn, never, &syn).is_err(), "verdict {never}");
    }
    let other = l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT4.into(),
        Ipv4Addr::new(198, 18, 1, 50).into(),
        TCP,
        40000,
        80,
        TCP_SYN,
    );
    judge(&other, XDP_PASS, &other).expect("other traffic passes");
    assert!(
        judge(&other, XDP_PASS, &edited(&other, 20, 0xee)).is_err(),
        "changed"
    );
    assert!(
        judge(&other, XDP_TX, &out).is_err(),
        "other traffic steered"
    );

    // The no-backend path: drop, or pass where configured.
    let to_drop = l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT4.into(),
        VIP4_DROP.into(),
        TCP,
        40000,
        443,
        TCP_SYN,
    );
    judge(&to_drop, XDP_DROP, &to_drop).expect("no backend: drop");
    assert!(
        judge(&to_drop, XDP_PASS, &to_drop).is_err(),
        "drop VIP passed"
    );
    let to_pass = l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT4.into(),
        VIP4_PASS.into(),
        UDP,
        40000,
        8080,
        0,
    );
    judge(&to_pass, XDP_PASS, &to_pass).expect("no backend: pass");
    assert!(
        judge(&to_pass, XDP_DROP, &to_pass).is_err(),
        "pass VIP dropped"
    );

    // ARP: the exact reply, only for an owned VIP.
    let request = arp_request(CLIENT_MAC, CLIENT4, VIP4);
    let (verdict, reply) = datapath.test_run(&request).unwrap();
    assert_eq!(verdict, XDP_TX);
    judge(&request, verdict, &reply).expect("the program's own ARP reply");
    assert!(
        judge(&request, XDP_PASS, &request).is_err(),
        "request passed"
    );
    for at in [0, 6, 14 + 7, 14 + 8, 14 + 17, 14 + 18, 14 + 27] {
        let value = reply[at] ^ 1;
        assert!(
            judge(&request, XDP_TX, &edited(&reply, at, value)).is_err(),
            "ARP byte {at}"
        );
    }
    let not_owned = arp_request(CLIENT_MAC, CLIENT4, VIP4_DROP);
    assert!(
        judge(&not_owned, XDP_TX, &reply).is_err(),
        "not owned answered"
    );

    // NDP: every field of the advertisement.
    let solicitation = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP6);
    let (verdict, advert) = datapath.test_run(&solicitation).unwrap();
    assert_eq!(verdict, XDP_TX);
    judge(&solicitation, verdict, &advert).expect("the program's own advertisement");
    assert!(
        judge(&solicitation, XDP_PASS, &solicitation).is_err(),
        "NS passed"
    );
    let na = 14 + 40;
    // Destination MAC, hop limit, source address, type, checksum, R flag,
    // target, option type, option MAC.
    for at in [
        0,
        14 + 7,
        14 + 8,
        na,
        na + 2,
        na + 4,
        na + 8,
        na + 24,
        na + 26,
    ] {
        let value = advert[at] ^ 0x80;
        let wrong = edited(&advert, at, value);
        assert!(
            judge(&solicitation, XDP_TX, &wrong).is_err(),
            "NA byte {at}"
        );
    }
}

/// What the fixes of point 12 will do passes the checker: the frames of
/// each known defect passed untouched, and an advertisement that grows to
/// carry the target link-layer option.
#[test]
fn the_checker_accepts_the_fixes_of_the_known_defects() {
    let topology = Topology::standard();
    let mut datapath = topology.load().expect("load the program");
    let passes = |frame: &[u8]| fuzz::check(&topology, frame, XDP_PASS, frame);

    let mapped = l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT6.into(),
        VIP4.to_ipv6_mapped().into(),
        TCP,
        40000,
        80,
        TCP_SYN,
    );
    passes(&mapped).expect("v4-mapped destination");
    let mapped_target = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP4.to_ipv6_mapped());
    passes(&mapped_target).expect("v4-mapped target");
    let mut bad_checksum = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP6);
    bad_checksum[14 + 40 + 2] ^= 1;
    passes(&bad_checksum).expect("bad checksum");
    let from_group = arp_request([0x01, 0x00, 0x5e, 0, 0, 1], CLIENT4, VIP4);
    passes(&from_group).expect("ARP from a group MAC");
    let from_zero = neighbour_solicitation([0; 6], CLIENT6, VIP6);
    passes(&from_zero).expect("NS from a zero MAC");
    let from_multicast = neighbour_solicitation(CLIENT_MAC, ALL_NODES, VIP6);
    passes(&from_multicast).expect("NS from a multicast source");

    // A multicast NS without source link-layer option: passed, or answered
    // with the option (the frame grows by it).
    let dst = solicited_node(VIP6);
    let without_option = Solicitation {
        eth_dst: multicast_mac(dst),
        src_mac: CLIENT_MAC,
        src: CLIENT6,
        dst,
        target: VIP6,
        source_link_layer: None,
        hop_limit: 255,
    }
    .frame();
    passes(&without_option).expect("multicast NS without option");
    let (verdict, advert) = datapath.test_run(&without_option).unwrap();
    assert_eq!(verdict, XDP_TX);
    fuzz::check(&topology, &without_option, XDP_TX, &advert)
        .expect("the advertisement grown by the target link-layer option");
}
