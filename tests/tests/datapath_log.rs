//! The XDP program's rare events reach the agent's log, rate limited in
//! the kernel: a flood of packets for a VIP without a usable backend, and
//! ARP/NDP requests for a VIP whose lease ran out, through
//! BPF_PROG_TEST_RUN on the real program. The datapath is loaded inside a
//! tokio runtime, as in the agent, so it forwards the program's log into
//! `tracing`; a subscriber here records every line.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use ha_agent::{datapath::Datapath, model::addr_bytes};
use ha_common::{LOG_EVENTS_PER_SECOND, OwnedLease};
use ha_tests::packet::*;
use ha_tests::test_run::{
    self, CLIENT_MAC, CLIENT4, CLIENT6, NODE_MAC, VIP4, VIP6, XDP_DROP, XDP_PASS,
};

/// One UDP VIP whose only backend has no known MAC: never usable.
const CONFIG: &str = r#"
[node]
name = "events"
interface = "lo"

[datapath]
ring_size = 251
max_flows = 4096

[[vip]]
address = "198.18.1.100"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "198.18.0.21"
"#;

/// Everything logged in this process, as text.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        log
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The logged lines that contain `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    let log = log().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Waits (up to 5 s, letting the runtime forward the log) until `count`
/// lines contain `needle`; returns all such lines.
async fn wait_for_lines(needle: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = lines_with(needle);
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps this thread on the CPU it runs on: BPF_PROG_TEST_RUN runs the
/// program on the caller's CPU, and the rate limit is per CPU.
fn stay_on_this_cpu() {
    // SAFETY: sched_getcpu has no preconditions; a cpu_set_t of zeros is
    // a valid empty set, CPU_SET writes inside it (the index is a CPU
    // number the kernel gave), and sched_setaffinity reads exactly
    // size_of::<cpu_set_t>() bytes of it.
    let pinned = unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu failed");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(pinned, 0, "sched_setaffinity failed");
}

/// The program loaded with CONFIG's maps, inside the current runtime.
fn datapath() -> Datapath {
    test_run::load(CONFIG, HashMap::new(), &[])
        .expect("load the program")
        .datapath
}

/// The number in "(N more since the last report)".
fn suppressed(line: &str) -> u64 {
    let (_, rest) = line.split_once('(').expect("a count in parentheses");
    let (count, _) = rest.split_once(' ').expect("a count");
    count.parse().expect("a number")
}

#[tokio::test]
async fn no_backend_reaches_the_log_at_most_at_the_rate_limit() {
    log();
    stay_on_this_cpu();
    let mut datapath = datapath();
    let needle = "no usable backend for VIP 198.18.1.100 port 53/udp";
    let frame = l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT4.into(),
        VIP4.into(),
        UDP,
        40000,
        53,
        0,
    );

    // A flood: far more packets than the limit lets through.
    const FLOOD: u64 = 1000;
    let started = Instant::now();
    for _ in 0..FLOOD {
        let (verdict, _) = datapath.test_run(&frame).expect("BPF_PROG_TEST_RUN");
        assert_eq!(verdict, XDP_DROP);
    }
    let flood_took = started.elapsed();
    let first = wait_for_lines(needle, 1).await;
    assert!(!first.is_empty(), "no log line for the flood");
    let line = &first[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("ha_xdp::events"), "{line}");
    assert!(
        line.ends_with("no usable backend for VIP 198.18.1.100 port 53/udp: packet dropped (0 more since the last report)"),
        "{line}"
    );

    // After the window, one more packet: its line tells how many of the
    // flood were held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let during_flood = lines_with(needle).len() as u64;
    let (verdict, _) = datapath.test_run(&frame).expect("BPF_PROG_TEST_RUN");
    assert_eq!(verdict, XDP_DROP);
    let lines = wait_for_lines(needle, during_flood as usize + 1).await;
    assert_eq!(lines.len() as u64, during_flood + 1, "{lines:#?}");

    // One window per started second of the flood, LOG_EVENTS_PER_SECOND
    // in each (all on this CPU), and never fewer than the first window's.
    let windows = flood_took.as_secs() + 1;
    let limit = u64::from(LOG_EVENTS_PER_SECOND);
    assert!(
        (limit..=limit * windows).contains(&during_flood),
        "{during_flood} lines for {FLOOD} packets in {flood_took:?}: {lines:#?}"
    );
    // Every packet is either logged or counted in the next line logged.
    let counted: u64 = lines.iter().map(|line| suppressed(line)).sum();
    assert_eq!(lines.len() as u64 + counted, FLOOD + 1, "{lines:#?}");
}

#[tokio::test]
async fn requests_for_a_vip_whose_lease_ran_out_reach_the_log() {
    log();
    stay_on_this_cpu();
    let mut datapath = datapath();
    let expired = OwnedLease { deadline_ns: 1 };
    for vip in [VIP4.into(), VIP6.into()] {
        datapath
            .set_owned(&addr_bytes(vip), &expired)
            .expect("lease");
    }

    let arp = arp_request(CLIENT_MAC, CLIENT4, VIP4);
    let (verdict, out) = datapath.test_run(&arp).expect("BPF_PROG_TEST_RUN");
    assert_eq!((verdict, &out), (XDP_PASS, &arp), "not answered, untouched");
    let solicitation = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP6);
    let (verdict, out) = datapath.test_run(&solicitation).expect("BPF_PROG_TEST_RUN");
    assert_eq!(
        (verdict, &out),
        (XDP_PASS, &solicitation),
        "not answered, untouched"
    );

    for vip in ["198.18.1.100", "2001:2:0:1::100"] {
        let needle = format!("ARP/NDP request for VIP {vip} not answered");
        let lines = wait_for_lines(&needle, 1).await;
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(
            lines[0].contains("this node's lease on it ran out")
                && lines[0]
                    .ends_with("ms ago; is the agent running? (0 more since the last report)"),
            "{}",
            lines[0]
        );
    }
}
