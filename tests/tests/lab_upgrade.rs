//! Upgrading the datapath alone under traffic (run as root): an agent runs
//! the built-in XDP program; the operator stops it with the datapath left
//! pinned and starts the agent again with `--xdp-object` naming another
//! build of the program, which goes onto the pinned link by an atomic link
//! update (a file that is no XDP object is refused first, and changes
//! nothing). Then the rollback: the agent is killed (-9) and started on the
//! built-in program again. Meanwhile a client opens 200 connections/s
//! through the VIP and keeps 30 long-lived ones exchanging data, and every
//! TCP segment is accounted for: each one the client sent passed one of
//! the programs and reached a backend, and the client retransmitted none.
//!
//! The other build is `cargo xtask build-ebpf --build-id 1`, which `cargo
//! xtask test` builds before the tests run.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use ha_agent::datapath::{self, Datapath, LoadOptions, ProgramInfo};
use ha_tests::{
    LongLived, Netns,
    agent::{Launch, hactl_json},
    dsr::DsrLab,
    start_rate_client,
};

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
/// No health checks: then the backends' only TCP traffic is the client's,
/// and the segments the client sends must all arrive there.
const NO_CHECKS: &str = "[vip.check]\ntype = \"none\"\n";
/// The other build of the program, where `cargo xtask test` puts it.
const OTHER_BUILD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ha-ebpf/target/ha-xdp-build-1"
);
/// Any file that is not an XDP object.
const NOT_AN_OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
const RATE: u32 = 200;
const TRAFFIC: Duration = Duration::from_secs(9);
const LONG_LIVED: usize = 30;
const EXCHANGE_EVERY: Duration = Duration::from_millis(10);

fn other_build() -> PathBuf {
    let path = Path::new(OTHER_BUILD).to_path_buf();
    assert!(
        path.is_file(),
        "{OTHER_BUILD} is missing: run `cargo xtask build-ebpf --build-id 1` (cargo xtask test does)"
    );
    path
}

/// The program of an XDP object as the kernel sees it, loaded without pins
/// or attachment (None: the built-in object).
fn program_of(object: Option<PathBuf>) -> ProgramInfo {
    let mut loaded = Datapath::load(&LoadOptions {
        ring_size: ha_common::DEFAULT_RING_SIZE,
        max_flows: 4096,
        node_mac: [0x02, 0xaa, 0, 0, 0, 1],
        pin_dir: None,
        object,
    })
    .expect("load the XDP object");
    loaded.program_info().expect("program info")
}

/// The Tcp counters of /proc/net/snmp and the TcpExt ones of
/// /proc/net/netstat inside a namespace.
fn tcp_counters(ns: &Netns) -> BTreeMap<String, u64> {
    let text = ns
        .exec(&["cat", "/proc/net/snmp", "/proc/net/netstat"])
        .expect("read TCP counters");
    let mut counters = BTreeMap::new();
    for prefix in ["Tcp:", "TcpExt:"] {
        let mut lines = text.lines().filter(|l| l.starts_with(prefix));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        for (name, value) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            // MaxConn is -1: not a counter.
            if let Ok(value) = value.parse() {
                counters.insert(name.to_string(), value);
            }
        }
    }
    counters
}

/// Packets the XDP program has forwarded to the VIP's backends (its pinned
/// counters, which every program on the link adds to).
fn forwarded(pins: &Path) -> u64 {
    let maps = hactl_json(&["maps", "--pin-dir", &pins.to_string_lossy()]).expect("hactl maps");
    maps["vips"][0]["packets"].as_u64().expect("VIP packets")
}

/// TCP segments counted by the client and by all backends together (Out
/// without retransmissions, In with them), and the segments the XDP
/// program forwarded to the VIP's backends, at one moment. The client's
/// segments cross the load balancer; the backends' answers go to the
/// client directly (DSR).
#[derive(Clone, Copy, Debug)]
struct Segments {
    client_out: u64,
    client_in: u64,
    client_retrans: u64,
    backends_in: u64,
    backends_out: u64,
    backends_retrans: u64,
    /// Retransmissions that were tail loss probes (sent when an ACK is
    /// late, lost or not).
    backends_probes: u64,
    forwarded: u64,
}

impl Segments {
    fn now(dsr: &DsrLab, agent_pins: &Path) -> Segments {
        let client = tcp_counters(dsr.client());
        let backends: Vec<_> = BACKENDS
            .iter()
            .map(|b| tcp_counters(&dsr.lab.host(b).ns))
            .collect();
        let sum = |name: &str| backends.iter().map(|b| b[name]).sum();
        Segments {
            client_out: client["OutSegs"],
            client_in: client["InSegs"],
            client_retrans: client["RetransSegs"],
            backends_in: sum("InSegs"),
            backends_out: sum("OutSegs"),
            backends_retrans: sum("RetransSegs"),
            backends_probes: sum("TCPLossProbes"),
            forwarded: forwarded(agent_pins),
        }
    }

    fn since(self, before: Segments) -> Segments {
        Segments {
            client_out: self.client_out - before.client_out,
            client_in: self.client_in - before.client_in,
            client_retrans: self.client_retrans - before.client_retrans,
            backends_in: self.backends_in - before.backends_in,
            backends_out: self.backends_out - before.backends_out,
            backends_retrans: self.backends_retrans - before.backends_retrans,
            backends_probes: self.backends_probes - before.backends_probes,
            forwarded: self.forwarded - before.forwarded,
        }
    }
}

/// Starts the agent on another XDP object.
fn xdp_object(path: &Path) -> Launch {
    Launch {
        args: vec!["--xdp-object".into(), path.into()],
        ..Launch::default()
    }
}

/// Removes the node's pins however the test ends (the agents here leave
/// them on purpose).
struct UnpinOnDrop(PathBuf);

impl Drop for UnpinOnDrop {
    fn drop(&mut self) {
        let _ = datapath::unpin_dir(&self.0);
    }
}

/// Checks the swap: same link, another program, the expected build.
fn swapped(pins: &Path, link: u32, before: &ProgramInfo, expected: &ProgramInfo) -> ProgramInfo {
    let (now_link, now) = datapath::pinned_link(pins).expect("pinned link");
    assert_eq!(now_link, link, "the pinned link was replaced, not updated");
    assert_ne!(now.id, before.id, "the program was not replaced");
    assert_eq!(
        now.tag, expected.tag,
        "the attached program is not the expected build"
    );
    // What the operator sees.
    let maps = hactl_json(&["maps", "--pin-dir", &pins.to_string_lossy()]).expect("hactl maps");
    assert_eq!(
        maps["program"]["tag"],
        format!("{:016x}", expected.tag),
        "{maps}"
    );
    now
}

#[test]
fn another_build_replaces_the_program_under_traffic_without_losing_a_packet() {
    let builtin = program_of(None);
    let other = program_of(Some(other_build()));
    assert_ne!(
        builtin.tag, other.tag,
        "the other build is the same program"
    );
    // The build id sits on a path the verifier removes: both builds run
    // the same instructions.
    assert_eq!(
        (builtin.translated_bytes, builtin.jited_bytes),
        (other.translated_bytes, other.jited_bytes)
    );

    let dsr = DsrLab::new(IpAddr::V4(VIP4), &BACKENDS, NO_CHECKS).expect("build the lab");
    let mut first = dsr.start_agent(true).expect("start the agent");
    let pins = first.pin_dir();
    let _cleanup = UnpinOnDrop(pins.clone());
    let (link, running) = datapath::pinned_link(&pins).expect("pinned link");
    assert_eq!(
        running.tag, builtin.tag,
        "the agent runs the built-in program"
    );

    let before = Segments::now(&dsr, &pins);
    let long = LongLived::start(dsr.client(), dsr.target, LONG_LIVED, EXCHANGE_EVERY)
        .expect("long-lived connections");
    let rate = start_rate_client(
        dsr.client(),
        dsr.target,
        RATE,
        TRAFFIC,
        Duration::from_secs(1),
    );
    let traffic_started = Instant::now();
    thread::sleep(Duration::from_secs(2));

    // Upgrade: stop the agent, the datapath stays; start it on the other
    // build, which it swaps onto the pinned link.
    let upgrade_at = traffic_started.elapsed();
    let status = first.stop().expect("stop the agent");
    assert!(status.success(), "{status}\n{}", first.log());
    // A file that is no XDP object is refused before anything changes.
    let refused = dsr
        .start_agent_with("lb", true, &xdp_object(Path::new(NOT_AN_OBJECT)))
        .err()
        .expect("an agent started on a file that is no XDP object");
    assert!(
        format!("{refused:#}").contains("load the XDP object"),
        "{refused:#}"
    );
    assert_eq!(
        datapath::pinned_link(&pins).expect("pinned link"),
        (link, running)
    );
    let other_build = other_build();
    let mut second = dsr
        .start_agent_with("lb", true, &xdp_object(&other_build))
        .expect("start the agent on the other build");
    let upgraded_in = traffic_started.elapsed() - upgrade_at;
    assert!(second.log().contains("Replaced"), "{}", second.log());
    let upgraded = swapped(&pins, link, &running, &other);
    let upgraded_forwarded = forwarded(&pins);
    thread::sleep(Duration::from_secs(2));
    // Only the other build was attached in between.
    let by_other_build = forwarded(&pins) - upgraded_forwarded;

    // Rollback the hard way: kill -9, start on the built-in program.
    let rollback_at = traffic_started.elapsed();
    second.kill().expect("kill -9");
    let third = dsr.start_agent(true).expect("start the agent again");
    let rolled_back_in = traffic_started.elapsed() - rollback_at;
    assert!(third.log().contains("Replaced"), "{}", third.log());
    let rolled_back = swapped(&pins, link, &upgraded, &builtin);

    let run = rate.join().expect("rate client");
    let report = long.stop();
    // Let the last closes (FIN, ACK) arrive before counting.
    thread::sleep(Duration::from_millis(500));
    let segments = Segments::now(&dsr, &pins).since(before);

    let exchanges: u64 = report.per_connection.iter().map(|c| c.exchanges).sum();
    println!(
        "datapath upgrade under traffic: link {link}: program {} (tag {:016x}) -> {} (tag \
         {:016x}) at {upgrade_at:.1?}, new agent attached {upgraded_in:.0?} after the stop, \
         {by_other_build} segments forwarded while only it was attached; kill -9 -> {} (tag {:016x}) at \
         {rollback_at:.1?}, new agent attached {rolled_back_in:.0?} after the kill",
        running.id, running.tag, upgraded.id, upgraded.tag, rolled_back.id, rolled_back.tag
    );
    println!(
        "  {} connections at {RATE}/s, {} failed, longest gap {:.1?}; {} long-lived, {} broken, \
         {exchanges} exchanges; TCP segments through the load balancer: client sent {}, XDP \
         forwarded {}, backends got {}, client retransmitted {}; back (direct): backends sent {} \
         ({} retransmitted, {} of them loss probes), client got {}",
        run.attempts.len(),
        run.failures(),
        run.longest_gap().map(|(gap, _)| gap).unwrap_or_default(),
        report.per_connection.len(),
        report.broken().len(),
        segments.client_out,
        segments.forwarded,
        segments.backends_in,
        segments.client_retrans,
        segments.backends_out,
        segments.backends_retrans,
        segments.backends_probes,
        segments.client_in,
    );

    assert_eq!(run.failures(), 0, "failed connections: {:?}", run.errors());
    assert!(
        report.broken().is_empty(),
        "broken long-lived connections: {:?}",
        report.broken()
    );
    assert_eq!(report.per_connection.len(), LONG_LIVED);
    assert!(by_other_build > 0, "the other build forwarded nothing");
    // Not one segment lost: each the client sent went through one of the
    // programs and reached a backend, and none had to be sent again.
    assert_eq!(
        segments.forwarded,
        segments.client_out + segments.client_retrans,
        "{segments:?}"
    );
    assert_eq!(segments.backends_in, segments.forwarded, "{segments:?}");
    assert_eq!(segments.client_retrans, 0, "{segments:?}");
    // The answers, for completeness: all arrived. A backend's tail loss
    // probe (sent when an ACK is a few ms late on this busy machine) is a
    // duplicate that arrives too; OutSegs does not count retransmissions.
    assert_eq!(
        segments.client_in,
        segments.backends_out + segments.backends_retrans,
        "{segments:?}"
    );
}
