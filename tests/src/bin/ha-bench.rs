//! `cargo xtask bench datapath`: nanoseconds per packet through the XDP
//! program (BPF_PROG_TEST_RUN), beside a trivial XDP_PASS program measured
//! in the same run, printed and written to docs/benchmarks.md.

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ha_agent::{
    config,
    datapath::{Datapath, LoadOptions, PassProgram},
    desired::{Applied, Desired, addr_bytes},
};
use ha_common::OwnedLease;
use ha_tests::packet::{TCP, TCP_ACK, TCP_SYN, arp_request, l4_frame};

/// Single runs whose median is reported.
const SINGLE_RUNS: u32 = 10_000;
/// Runs of one BPF_PROG_TEST_RUN call whose average is reported.
const REPEAT: u32 = 1_000_000;
const NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const BACKENDS: u8 = 10;

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("datapath") => datapath(),
        other => bail!("unknown benchmark {other:?}; known: datapath"),
    }
}

struct Row {
    case: &'static str,
    median_ns: f64,
    repeat_ns: Option<f64>,
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_nanos() as f64
}

fn datapath() -> Result<()> {
    let backends: String = (0..BACKENDS)
        .map(|i| format!("  [[vip.backend]]\n  address = \"198.18.0.{}\"\n", 20 + i))
        .collect();
    let text = format!(
        "[node]\nname = \"bench\"\ninterface = \"lo\"\n\n[[vip]]\naddress = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\n{backends}"
    );
    let config = config::parse(Path::new("bench.toml"), &text)?;
    let macs: HashMap<IpAddr, [u8; 6]> = (0..BACKENDS)
        .map(|i| {
            (
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20 + i)),
                [2, 0xbb, 0, 0, 0, i],
            )
        })
        .collect();
    let mut datapath = Datapath::load(&LoadOptions {
        ring_size: config.datapath.ring_size,
        max_flows: config.datapath.max_flows,
        node_mac: NODE_MAC,
        pin_dir: None,
    })
    .context("load the XDP program (root needed)")?;
    let (writes, _) = Applied::default().plan(&Desired::compute(&config, &macs));
    datapath.apply(&writes)?;
    datapath.set_owned(
        &addr_bytes(VIP.into()),
        &OwnedLease {
            deadline_ns: u64::MAX,
        },
    )?;
    let mut baseline = PassProgram::load()?;

    let frame = |dst: Ipv4Addr, sport: u16, flags: u8| {
        l4_frame(
            (NODE_MAC, CLIENT_MAC),
            CLIENT.into(),
            dst.into(),
            TCP,
            sport,
            80,
            flags,
        )
    };
    let other = frame(Ipv4Addr::new(198, 18, 1, 200), 40000, TCP_SYN);
    let established = frame(VIP, 40001, TCP_ACK);
    let (verdict, _) = datapath.test_run(&frame(VIP, 40001, TCP_SYN))?;
    if verdict != 3 {
        bail!("the SYN that opens the established flow was not forwarded (verdict {verdict})");
    }
    let arp = arp_request(CLIENT_MAC, CLIENT, VIP);

    let mut rows = Vec::new();
    let single = |run: &mut dyn FnMut(u32) -> Result<Duration>| -> Result<f64> {
        let samples = (0..SINGLE_RUNS)
            .map(&mut *run)
            .collect::<Result<Vec<_>>>()?;
        Ok(median(samples))
    };
    rows.push(Row {
        case: "baseline: trivial XDP_PASS program",
        median_ns: single(&mut |_| baseline.time_run(&other, 1))?,
        repeat_ns: Some(baseline.time_run(&other, REPEAT)?.as_nanos() as f64),
    });
    rows.push(Row {
        case: "non-VIP packet (XDP_PASS)",
        median_ns: single(&mut |_| datapath.time_run(&other, 1))?,
        repeat_ns: Some(datapath.time_run(&other, REPEAT)?.as_nanos() as f64),
    });
    // Every single run is a distinct new flow (its own source port).
    rows.push(Row {
        case: "VIP new flow: TCP SYN (ring + flow insert, XDP_TX)",
        median_ns: single(&mut |i| datapath.time_run(&frame(VIP, 10_000 + i as u16, TCP_SYN), 1))?,
        repeat_ns: Some(
            datapath
                .time_run(&frame(VIP, 9_999, TCP_SYN), REPEAT)?
                .as_nanos() as f64,
        ),
    });
    rows.push(Row {
        case: "VIP established flow: TCP ACK (flow hit, XDP_TX)",
        median_ns: single(&mut |_| datapath.time_run(&established, 1))?,
        repeat_ns: Some(datapath.time_run(&established, REPEAT)?.as_nanos() as f64),
    });
    // With repeat > 1 the kernel reruns the program on its own output: the
    // request becomes a reply after the first run, so only single runs count.
    rows.push(Row {
        case: "ARP request for an owned VIP (reply, XDP_TX)",
        median_ns: single(&mut |_| datapath.time_run(&arp, 1))?,
        repeat_ns: None,
    });

    let report = render(&rows);
    print!("{report}");
    record("datapath", &report)
}

fn render(rows: &[Row]) -> String {
    let base = &rows[0];
    let mut out = format!(
        "Nanoseconds per packet through BPF_PROG_TEST_RUN, this machine ({} cores), \
         median of {SINGLE_RUNS} single runs and average of one run with repeat = {REPEAT}. \
         \"net\" subtracts the trivial program measured in the same run.\n\n\
         | case | median, 1 run | net | avg, repeat 1M | net | x baseline (repeat) |\n\
         |---|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for row in rows {
        let (repeat, net_repeat, ratio) = match (row.repeat_ns, base.repeat_ns) {
            (Some(r), Some(b)) => (
                format!("{r:.1}"),
                format!("{:.1}", r - b),
                format!("{:.2}", r / b),
            ),
            _ => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        out += &format!(
            "| {} | {:.0} | {:.0} | {repeat} | {net_repeat} | {ratio} |\n",
            row.case,
            row.median_ns,
            row.median_ns - base.median_ns
        );
    }
    out += "\nARP has no repeat figure: with repeat > 1 the kernel runs the program again on \
            its own output, which after the first run is a reply, not a request.\n";
    out
}

/// Replaces this benchmark's section of docs/benchmarks.md (between its
/// markers), keeping the other benchmarks' sections.
fn record(name: &str, body: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    let begin = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let section = format!("{begin}\n## {name}\n\n{body}{end}\n");
    let current = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) => format!(
            "{}{section}{}",
            &current[..b],
            current[e + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{current}\n{section}"),
    };
    fs::write(&path, updated).with_context(|| format!("write {}", path.display()))?;
    println!("recorded in {}", path.display());
    Ok(())
}
