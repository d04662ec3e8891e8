//! Packet fuzzing of the real XDP program: seeded frames (generate),
//! judged by an independent model of what a correct program may do with
//! each (check), run through BPF_PROG_TEST_RUN on the program loaded with
//! real maps filled from the fuzz topology (topology). This module runs
//! them and reports; a failure names its seed and case and the command
//! that replays it.

mod check;
mod generate;
mod topology;

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

pub use check::{Failure, KnownDefect, Outcome, check};
pub use topology::{BackendSpec, Topology, VIP4_DROP, VIP4_PASS, VIP6_DROP, VipSpec};

use crate::test_run::{XDP_DROP, XDP_PASS, XDP_TX};

/// Bytes as lowercase hex, two digits each, no separator.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One frame that got a verdict the checker rejects.
#[derive(Clone, Debug)]
pub struct Case {
    pub seed: u64,
    pub index: u64,
    pub frame: Vec<u8>,
    pub verdict: u32,
    pub output: Vec<u8>,
    /// Why it is wrong (a known defect too); None for a right case shown
    /// on request (replay).
    pub failure: Option<Failure>,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Some(failure) => writeln!(f, "fuzz failure: {failure}")?,
            None => writeln!(f, "fuzz case: right")?,
        }
        writeln!(f, "  seed {} case {}", self.seed, self.index)?;
        writeln!(
            f,
            "  frame ({} bytes): {}",
            self.frame.len(),
            hex(&self.frame)
        )?;
        writeln!(
            f,
            "  verdict: {} ({})",
            verdict_name(self.verdict),
            self.verdict
        )?;
        writeln!(
            f,
            "  output ({} bytes): {}",
            self.output.len(),
            hex(&self.output)
        )?;
        write!(
            f,
            "  replay: HA_FUZZ_SEED={} HA_FUZZ_CASE={} cargo nextest run -p ha-tests --test fuzz --no-capture",
            self.seed, self.index
        )
    }
}

fn verdict_name(verdict: u32) -> &'static str {
    match verdict {
        0 => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "unknown",
    }
}

/// What one seed's run saw.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub frames: u64,
    /// Frames per verdict.
    pub verdicts: BTreeMap<u32, u64>,
    /// Right frames per outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Failures skipped as known defects: how many, and the first case.
    pub known: BTreeMap<KnownDefect, (u64, u64)>,
    pub failures: Vec<Case>,
    /// The case asked for by HA_FUZZ_CASE, whatever its outcome.
    pub shown: Option<Case>,
    pub wall: Duration,
    /// Of `wall`, the time spent in BPF_PROG_TEST_RUN calls.
    pub in_program: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_second = self.frames as f64 / self.wall.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "fuzz seed {}: {} frames in {:.2?} ({per_second:.0} frames/s; {:.2?} in BPF_PROG_TEST_RUN)",
            self.seed, self.frames, self.wall, self.in_program
        )?;
        let verdicts: Vec<String> = self
            .verdicts
            .iter()
            .map(|(v, n)| format!("{} {n}", verdict_name(*v)))
            .collect();
        writeln!(f, "  verdicts: {}", verdicts.join(", "))?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome:?} {n}"))
            .collect();
        writeln!(f, "  right: {}", outcomes.join(", "))?;
        for (defect, (count, first)) in &self.known {
            writeln!(
                f,
                "  known defect skipped {count} times (first case {first}): {}",
                defect.describe()
            )?;
        }
        write!(f, "  failures: {}", self.failures.len())
    }
}

/// Runs cases 0..`frames` of `seed` through a freshly loaded program, in
/// order (the flow table carries state from one case to the next, so a
/// replay runs every case before the one it shows). Failures whose defect
/// is in `allowed` are counted, not reported; at most `keep` failures are
/// kept in full.
pub fn run(
    seed: u64,
    frames: u64,
    allowed: &[KnownDefect],
    show: Option<u64>,
    keep: usize,
) -> Result<Report> {
    let topology = Topology::standard();
    let mut datapath = topology.load()?;
    let mut report = Report {
        seed,
        frames,
        verdicts: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        known: BTreeMap::new(),
        failures: Vec::new(),
        shown: None,
        wall: Duration::ZERO,
        in_program: Duration::ZERO,
    };
    let started = Instant::now();
    for index in 0..frames {
        let frame = generate::case(&topology, seed, index);
        let before = Instant::now();
        let (verdict, output) = datapath
            .test_run(&frame)
            .with_context(|| format!("BPF_PROG_TEST_RUN of seed {seed} case {index}"))?;
        report.in_program += before.elapsed();
        *report.verdicts.entry(verdict).or_default() += 1;
        let judged = match check(&topology, &frame, verdict, &output) {
            Ok(outcome) => {
                *report.outcomes.entry(outcome).or_default() += 1;
                None
            }
            Err(failure) => Some(failure),
        };
        let failure = match &judged {
            Some(failure) => match failure.defect {
                Some(defect) if allowed.contains(&defect) => {
                    report.known.entry(defect).or_insert((0, index)).0 += 1;
                    None
                }
                _ => Some(failure.clone()),
            },
            None => None,
        };
        let shown = show == Some(index);
        if failure.is_none() && !shown {
            continue;
        }
        let case = Case {
            seed,
            index,
            frame,
            verdict,
            output,
            failure: judged,
        };
        if failure.is_some() {
            report.failures.push(if report.failures.len() < keep {
                case.clone()
            } else {
                // Counted, not kept in full.
                Case {
                    frame: Vec::new(),
                    output: Vec::new(),
                    ..case.clone()
                }
            });
        }
        if shown {
            report.shown = Some(case);
        }
    }
    report.wall = started.elapsed();
    Ok(report)
}
