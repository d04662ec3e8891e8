//! `cargo xtask bench datapath`: nanoseconds per packet through the XDP
//! program (BPF_PROG_TEST_RUN), beside a trivial XDP_PASS program measured
//! in the same run, printed and written to docs/benchmarks.md.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Result, bail};
use ha_agent::{
    datapath::{Datapath, bench::PassProgram},
    model::Mac,
};
use ha_tests::packet::{TCP, TCP_ACK, TCP_SYN, arp_request, l4_frame};
use ha_tests::test_run::{self, CLIENT_MAC, CLIENT4 as CLIENT, NODE_MAC, VIP4 as VIP, XDP_TX};

/// Single runs whose median is reported.
const SINGLE_RUNS: u32 = 10_000;
/// Runs of one BPF_PROG_TEST_RUN call whose average is reported.
const REPEAT: u32 = 1_000_000;
const BACKENDS: u8 = 10;

/// Interleaved rounds; SINGLE_RUNS are spread over them.
const ROUNDS: u32 = 5;

#[derive(Clone, Copy)]
enum Case {
    Baseline,
    NonVip,
    NewFlow,
    Established,
    Arp,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::Baseline,
        Case::NonVip,
        Case::NewFlow,
        Case::Established,
        Case::Arp,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::Baseline => "baseline: trivial XDP_PASS program",
            Case::NonVip => "non-VIP packet (XDP_PASS)",
            Case::NewFlow => "VIP new flow: TCP SYN (ring + flow insert, XDP_TX)",
            Case::Established => "VIP established flow: TCP ACK (flow hit, XDP_TX)",
            Case::Arp => "ARP request for an owned VIP (reply, XDP_TX)",
        }
    }

    /// With repeat > 1 the kernel reruns the program on its own output:
    /// an ARP request becomes a reply after the first run.
    fn repeatable(self) -> bool {
        !matches!(self, Case::Arp)
    }
}

struct Bench {
    datapath: Datapath,
    baseline: PassProgram,
    other: Vec<u8>,
    established: Vec<u8>,
    arp: Vec<u8>,
    /// Source port of the next single-run SYN: every one is a new flow.
    next_port: u16,
}

impl Bench {
    fn run(&mut self, case: Case, repeat: u32) -> Result<Duration> {
        match case {
            Case::Baseline => self.baseline.time_run(&self.other, repeat),
            Case::NonVip => self.datapath.time_run(&self.other, repeat),
            Case::NewFlow => {
                let port = if repeat == 1 { self.next_port } else { 9_999 };
                self.next_port += u16::from(repeat == 1);
                let syn = frame(VIP, port, TCP_SYN);
                self.datapath.time_run(&syn, repeat)
            }
            Case::Established => self.datapath.time_run(&self.established, repeat),
            Case::Arp => self.datapath.time_run(&self.arp, repeat),
        }
    }
}

fn frame(dst: Ipv4Addr, sport: u16, flags: u8) -> Vec<u8> {
    l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT.into(),
        dst.into(),
        TCP,
        sport,
        80,
        flags,
    )
}

struct Row {
    case: &'static str,
    median_ns: f64,
    /// Best and worst round's average per run with repeat = REPEAT.
    repeat_ns: Option<f64>,
    repeat_max_ns: Option<f64>,
}

pub(crate) fn run() -> Result<()> {
    let backends: String = (0..BACKENDS)
        .map(|i| format!("  [[vip.backend]]\n  address = \"198.18.0.{}\"\n", 20 + i))
        .collect();
    let text = format!(
        "[node]\nname = \"bench\"\ninterface = \"lo\"\n\n[[vip]]\naddress = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\n{backends}"
    );
    // Every backend has the node's MAC: with repeat > 1 the kernel runs
    // the program again on its own output, whose destination is then the
    // node again, so every run is steered (with real backend MACs all runs
    // but the first would pass a frame not addressed to the node).
    let macs: HashMap<IpAddr, Mac> = (0..BACKENDS)
        .map(|i| (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20 + i)), Mac(NODE_MAC)))
        .collect();
    let datapath = test_run::load(&text, macs, &[VIP.into()])?.datapath;
    let mut bench = Bench {
        datapath,
        baseline: PassProgram::load()?,
        other: frame(Ipv4Addr::new(198, 18, 1, 200), 40000, TCP_SYN),
        established: frame(VIP, 40001, TCP_ACK),
        arp: arp_request(CLIENT_MAC, CLIENT, VIP),
        next_port: 10_000,
    };
    let (verdict, _) = bench.datapath.test_run(&frame(VIP, 40001, TCP_SYN))?;
    if verdict != XDP_TX {
        bail!("the SYN that opens the established flow was not forwarded (verdict {verdict})");
    }
    // What repeat > 1 runs: the output of each run is forwarded again.
    for (name, input) in [
        ("SYN", frame(VIP, 9_999, TCP_SYN)),
        ("ACK", bench.established.clone()),
    ] {
        let (_, output) = bench.datapath.test_run(&input)?;
        let (verdict, _) = bench.datapath.test_run(&output)?;
        if verdict != XDP_TX {
            bail!(
                "a forwarded {name} is not forwarded again (verdict {verdict}): repeat would time another path"
            );
        }
    }

    // Rounds interleave the cases, so a noisy neighbour on this shared
    // machine hits all of them alike; the best round's average is kept.
    let mut singles: Vec<Vec<Duration>> = vec![Vec::new(); Case::ALL.len()];
    let mut repeats: Vec<Vec<f64>> = vec![Vec::new(); Case::ALL.len()];
    for _ in 0..ROUNDS {
        for (i, case) in Case::ALL.iter().enumerate() {
            for _ in 0..SINGLE_RUNS / ROUNDS {
                singles[i].push(bench.run(*case, 1)?);
            }
            if case.repeatable() {
                repeats[i].push(bench.run(*case, REPEAT)?.as_nanos() as f64);
            }
        }
    }
    let rows: Vec<Row> = Case::ALL
        .iter()
        .zip(singles.into_iter().zip(repeats))
        .map(|(case, (mut single, repeat))| Row {
            case: case.name(),
            median_ns: crate::median(&mut single).as_nanos() as f64,
            repeat_ns: repeat.iter().copied().reduce(f64::min),
            repeat_max_ns: repeat.iter().copied().reduce(f64::max),
        })
        .collect();
    let report = render(&rows);
    print!("{report}");
    crate::record("datapath", &report)
}

fn render(rows: &[Row]) -> String {
    let base = &rows[0];
    let mut out = format!(
        "Nanoseconds per packet through BPF_PROG_TEST_RUN, this machine ({} cores), \
         median of {SINGLE_RUNS} single runs and the average per run of one call with \
         repeat = {REPEAT} (best of {ROUNDS} interleaved rounds, worst in brackets). \
         \"net\" subtracts the trivial program measured in the same run. Single runs \
         include the syscall's fixed cost; every single-run SYN is a new flow.\n\n\
         | case | median, 1 run | net | avg, repeat 1M | net | x baseline (repeat) |\n\
         |---|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for row in rows {
        let (repeat, net_repeat, ratio) = match (row.repeat_ns, base.repeat_ns) {
            (Some(r), Some(b)) => (
                format!("{r:.1} ({:.0})", row.repeat_max_ns.unwrap_or(r)),
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
