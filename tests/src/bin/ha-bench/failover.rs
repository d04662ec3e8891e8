//! `cargo xtask bench failover`: how long the VIP is unreachable when its
//! owner fails, for ha with its default timing, ha with 10 ms heartbeats,
//! and keepalived (VRRPv3 at its fastest advert interval) in the same lab.
//!
//! Every variant runs in a lab of its own made by `DsrLab::cluster`: a
//! client, two load balancers lb1 (priority 200) and lb2 (100) and, for ha,
//! two backends. One round: the client opens a new TCP connection to the
//! VIP every 5 ms for a few seconds; after 1 s the owner lb1 fails (kill -9
//! of its agent / its keepalived, then its link cut); the outage is the
//! time between the last successful request before the cut and the next
//! one (the longest gap between two). Then lb1 is restored
//! (leftovers cleared as a reboot would, link up, daemon restarted), takes
//! the VIP back (preempt) and the next round starts. keepalived only floats
//! the VIP, so there the LB hosts themselves serve port 80.

use std::{
    fs,
    io::Write,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use ha_tests::{
    Netns, RateRun, ServerProcess,
    agent::Agent,
    dsr::{DsrLab, PORT},
    start_rate_client, wait_until,
};
use plotters::prelude::*;

use crate::{percentile, record};

mod keepalived;
mod report;

use keepalived::{keepalived_rounds, keepalived_version};
use report::{disturbances, markdown, millis, plot, ratios, table};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const BACKENDS: [&str; 2] = ["b1", "b2"];
/// lb1 is preferred and is the one that fails.
const LBS: [(&str, u8); 2] = [("lb1", 200), ("lb2", 100)];
/// A new request every 5 ms.
const RATE: u32 = 200;
/// Measured failovers per variant.
const ROUNDS: usize = 20;
/// Rounds a variant may use in all, when one measured nothing (bounded).
const MAX_ATTEMPTS: usize = 25;
/// One round's client run, and when in it the owner fails.
const RUN: Duration = Duration::from_millis(2500);
const FAIL_AT: Duration = Duration::from_millis(1000);
/// Connect and answer of one request; a lost SYN is retried by TCP only
/// after 1 s, so a request sent into the outage fails.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// The plot, next to docs/benchmarks.md.
const PLOT: &str = "../docs/failover.png";
/// The font the plot's text is drawn with (Debian fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The smallest advert interval keepalived 2.2.7 accepts (VRRPv3 counts in
/// centiseconds; `keepalived -t` rejects 0.005: "outside range [0.010000,
/// 255.000000]").
const KEEPALIVED_ADVERT: &str = "0.01";

/// One failover.
struct Round {
    outage: Duration,
    /// Requests that failed during the outage.
    failed: usize,
    /// Requests that failed outside it (none expected).
    failed_before: usize,
    /// The longest time between two successful requests outside the
    /// outage (about 5 ms expected).
    longest_other: Duration,
    /// From the kill to the link being down.
    cut: Duration,
}

struct Variant {
    label: &'static str,
    rounds: Vec<Round>,
    /// Rounds that measured nothing, and why.
    discarded: Vec<String>,
    /// Rounds before which the client still sent to the other LB (see
    /// `settle`), with the MAC address it used.
    stale_neighbours: Vec<String>,
}

pub(crate) fn run() -> Result<()> {
    let started = Instant::now();
    let keepalived_version = keepalived_version()?;
    let font = fs::read(FONT).with_context(|| {
        format!("read the plot's font {FONT} (apt-get install fonts-dejavu-core)")
    })?;
    let mut variants = Vec::new();
    for (label, extra) in [
        ("ha, interval 50 ms, dead_after 200 ms", ""),
        (
            "ha, interval 10 ms, dead_after 40 ms",
            "interval = \"10ms\"\n",
        ),
    ] {
        println!("{label}: {ROUNDS} failovers");
        variants.push(measure(label, |on_round| ha_rounds(extra, on_round))?);
    }
    let label = "keepalived, VRRPv3 advert_int 0.01 s";
    println!("{label} ({keepalived_version}): {ROUNDS} failovers");
    let root_before = root_namespace();
    variants.push(measure(label, keepalived_rounds)?);
    let root_untouched = root_namespace() == root_before;
    if !root_untouched {
        println!(
            "WARNING: the root namespace's addresses or routes changed during the keepalived runs"
        );
    }

    let plot_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PLOT);
    plot(&plot_path, &variants, font)?;
    println!("plot: {}", plot_path.display());

    let table = table(&variants);
    println!("\n{table}");
    let ratios = ratios(&variants);
    println!("{ratios}");
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    let discarded: Vec<String> = variants
        .iter()
        .flat_map(|v| v.discarded.iter().map(move |d| format!("{}: {d}", v.label)))
        .collect();
    for d in &discarded {
        println!("discarded: {d}");
    }
    let stale: Vec<String> = variants
        .iter()
        .flat_map(|v| {
            v.stale_neighbours
                .iter()
                .map(move |d| format!("{}: {d}", v.label))
        })
        .collect();
    for s in &stale {
        println!("stale neighbour entry: {s}");
    }
    record(
        "failover",
        &markdown(
            &table,
            &ratios,
            &keepalived_version,
            &discarded,
            &stale,
            root_untouched,
            &disturbances(&variants),
        ),
    )
}

/// Runs `rounds` (which calls back once per failover with the client's run
/// and the moment the owner failed, and gets back whether to go on) until
/// `ROUNDS` failovers are measured, at most `MAX_ATTEMPTS` rounds.
fn measure(
    label: &'static str,
    rounds: impl FnOnce(&mut dyn FnMut(RateRun, Failure, bool) -> bool) -> Result<()>,
) -> Result<Variant> {
    let mut variant = Variant {
        label,
        rounds: Vec::new(),
        discarded: Vec::new(),
        stale_neighbours: Vec::new(),
    };
    let mut attempts = 0;
    rounds(&mut |run, failure, took_over| {
        attempts += 1;
        if let Some(mac) = &failure.stale_neighbour {
            println!(
                "  round {attempts:2}: note: the client's neighbour entry for the VIP was {mac}, not lb1's: flushed"
            );
            variant
                .stale_neighbours
                .push(format!("round {attempts}: {mac}"));
        }
        let failed = (
            failure.start.saturating_duration_since(run.started),
            failure.done.saturating_duration_since(run.started),
        );
        match outage(&run, failed, took_over) {
            Ok(round) => {
                println!(
                    "  round {attempts:2}: outage {:4.0} ms, {:3} of {} requests failed (kill to link down: {:.1} ms; outside the outage: {} failed, longest gap {} ms)",
                    millis(round.outage),
                    round.failed,
                    run.attempts.len(),
                    millis(failed.1 - failed.0),
                    round.failed_before,
                    round.longest_other.as_millis(),
                );
                variant.rounds.push(round);
            }
            Err(e) => {
                println!("  round {attempts:2}: discarded: {e}");
                variant.discarded.push(format!("round {attempts}: {e}"));
            }
        }
        variant.rounds.len() < ROUNDS && attempts < MAX_ATTEMPTS
    })?;
    if variant.rounds.len() < ROUNDS {
        bail!(
            "{label}: only {} of {attempts} rounds measured a failover: {:?}",
            variant.rounds.len(),
            variant.discarded
        );
    }
    Ok(variant)
}

/// The outage of one round: from the last successful request that started
/// before the link was down (`failed`: from the kill to the link down,
/// since the run's start) to the next successful one; with no other
/// disturbance that is the longest time between two successful requests.
/// An error if the standby never took over, traffic never resumed, or
/// requests failed after it resumed.
fn outage(run: &RateRun, failed: (Duration, Duration), took_over: bool) -> Result<Round> {
    if !took_over {
        bail!("the standby did not take the VIP over");
    }
    let successes: Vec<Duration> = run
        .attempts
        .iter()
        .filter(|a| a.error.is_none())
        .map(|a| a.at)
        .collect();
    let from = *successes
        .iter()
        .rev()
        .find(|t| **t <= failed.1)
        .context("no request succeeded before the failure")?;
    let to = *successes
        .iter()
        .find(|t| **t > from)
        .context("no request succeeded after the failure")?;
    let after = run.failures_after(to);
    if after > 0 {
        bail!(
            "{after} requests failed after traffic resumed at {} ms: {:?}",
            to.as_millis(),
            run.errors()
        );
    }
    let failed_inside = run
        .attempts
        .iter()
        .filter(|a| a.error.is_some() && a.at > from && a.at < to)
        .count();
    if failed_inside == 0 {
        bail!(
            "no request failed ({} ms between successes): the client's traffic did not pass the failed node",
            (to - from).as_millis()
        );
    }
    let longest_other = successes
        .windows(2)
        .filter(|w| w[0] != from)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    Ok(Round {
        outage: to - from,
        failed: failed_inside,
        failed_before: run.failures() - failed_inside,
        longest_other,
        cut: failed.1.saturating_sub(failed.0),
    })
}

/// The client reaches the VIP (5 requests in a row answer).
fn reach(dsr: &DsrLab) -> Result<()> {
    for _ in 0..20 {
        let tally = dsr.connect(5);
        if tally.failures == 0 {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    bail!("the client does not reach the VIP before the round")
}

/// The MAC address the client's neighbour table has for the VIP.
fn client_neighbour(dsr: &DsrLab) -> Result<Option<String>> {
    let out = dsr
        .client()
        .exec(&["ip", "neigh", "show", "to", &VIP.to_string()])?;
    let mut words = out.split_whitespace();
    Ok(words
        .by_ref()
        .find(|w| *w == "lladdr")
        .and(words.next())
        .map(str::to_string))
}

/// Before a round: the client reaches the VIP through `owner`. If its
/// neighbour entry for the VIP still names another host (the owner took
/// the VIP back, but the client did not follow), the round would measure
/// nothing: the entry is flushed, and what it named is returned.
fn settle(dsr: &DsrLab, owner: &str) -> Result<Option<String>> {
    reach(dsr)?;
    let want = dsr
        .lab
        .host(owner)
        .mac
        .map(|b| format!("{b:02x}"))
        .join(":");
    let had = client_neighbour(dsr)?;
    if had.as_deref() == Some(want.as_str()) {
        return Ok(None);
    }
    dsr.client()
        .exec(&["ip", "neigh", "flush", "to", &VIP.to_string()])?;
    reach(dsr)?;
    let now = client_neighbour(dsr)?;
    if now.as_deref() != Some(want.as_str()) {
        bail!("the client resolves the VIP to {now:?}, not to {owner} ({want})");
    }
    Ok(Some(had.unwrap_or_else(|| "no entry".into())))
}

/// When the owner failed: from the kill to the link being down (the
/// `ip link set` takes a few ms; the owner forwards until it is done).
#[derive(Clone)]
struct Failure {
    start: Instant,
    done: Instant,
    /// Before the round, the client's neighbour entry for the VIP named
    /// this MAC address instead of the owner's (and was flushed).
    stale_neighbour: Option<String>,
}

/// `ip -n <lb> -batch -`, started before the round, so that cutting the
/// link right after the kill costs one write to a process that is already
/// in the namespace: `DsrLab::set_link` (`ip netns exec`) takes 12-28 ms
/// here, as long as a whole 10 ms-variant failover, and the owner goes on
/// forwarding meanwhile.
struct LinkCutter {
    child: Option<Child>,
}

impl LinkCutter {
    fn ready(ns: &Netns) -> Result<LinkCutter> {
        let child = Command::new("ip")
            .args(["-n", ns.name(), "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start ip -batch")?;
        Ok(LinkCutter { child: Some(child) })
    }

    /// Takes eth0 down and waits until ip is done.
    fn cut(&mut self) -> Result<()> {
        let mut child = self.child.take().context("link already cut")?;
        let mut stdin = child.stdin.take().context("ip's stdin")?;
        stdin.write_all(b"link set dev eth0 down\n")?;
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip link set eth0 down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for LinkCutter {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One client run; `FAIL_AT` into it the owner `lb` fails: `kill`, then
/// its link cut.
fn round(dsr: &DsrLab, lb: &str, kill: impl FnOnce() -> Result<()>) -> Result<(RateRun, Failure)> {
    let stale_neighbour = settle(dsr, lb)?;
    let mut cutter = LinkCutter::ready(&dsr.lab.host(lb).ns)?;
    let client = start_rate_client(dsr.client(), dsr.target, RATE, RUN, REQUEST_TIMEOUT);
    sleep(FAIL_AT);
    let start = Instant::now();
    kill()?;
    cutter.cut()?;
    let failure = Failure {
        start,
        done: Instant::now(),
        stale_neighbour,
    };
    let run = client
        .join()
        .map_err(|_| anyhow!("the rate client panicked"))?;
    Ok((run, failure))
}

fn ha_owns(agent: &Agent) -> bool {
    agent.status().is_ok_and(|s| {
        s["cluster"]["owned"]
            .as_array()
            .is_some_and(|o| o.iter().any(|g| g == "web"))
    })
}

/// ha: two nodes, `quorum = "two_node"`, `extra` in `[cluster]`.
fn ha_rounds(extra: &str, on_round: &mut dyn FnMut(RateRun, Failure, bool) -> bool) -> Result<()> {
    let dsr = DsrLab::cluster(
        IpAddr::V4(VIP),
        &LBS,
        &BACKENDS,
        &format!("quorum = \"two_node\"\n{extra}"),
    )?;
    let mut lb1 = Some(dsr.start_agent_on("lb1", false)?);
    let lb2 = dsr.start_agent_on("lb2", false)?;
    loop {
        let owner = lb1.as_ref().context("lb1 runs")?;
        if !wait_until(Duration::from_secs(10), || ha_owns(owner) && !ha_owns(&lb2)) {
            bail!("lb1 did not (re)take the VIP:\n{}", owner.log());
        }
        // Agent::kill waits for the exit (about 10 ms here, the agent
        // tears down its maps): SIGKILL by pid first, so that the link is
        // cut right after as with keepalived; Agent::kill then reaps.
        let pid = agent_pid(owner)?;
        let (run, failure) = round(&dsr, "lb1", || {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Ok(())
        })?;
        let took_over = wait_until(Duration::from_secs(2), || ha_owns(&lb2));
        // Restore lb1 as after a reboot: the killed agent is reaped and its
        // pins go (the Agent's drop), the link comes back, a new agent
        // starts.
        let mut killed = lb1.take().context("lb1 runs")?;
        killed.kill()?;
        drop(killed);
        dsr.set_link("lb1", true)?;
        let go_on = on_round(run, failure, took_over);
        lb1 = Some(dsr.start_agent_on("lb1", false)?);
        if !go_on {
            return Ok(());
        }
    }
}

/// The pid of the ha-agent running on `agent.config` (unique per lab
/// host), from /proc.
fn agent_pid(agent: &Agent) -> Result<i32> {
    let config = agent.config.as_os_str().as_encoded_bytes();
    for entry in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0);
        let is_agent = args
            .next()
            .is_some_and(|argv0| argv0.ends_with(b"/ha-agent"));
        if is_agent && args.any(|a| a == config) {
            return Ok(pid);
        }
    }
    bail!("no ha-agent process runs on {}", agent.config.display())
}

/// The root namespace's addresses and routes, to check that nothing
/// touched them.
fn root_namespace() -> String {
    let run = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    run(&["-o", "addr", "show"]) + &run(&["route", "show", "table", "all"])
}
