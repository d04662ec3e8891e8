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

/// keepalived's version line (`keepalived --version` prints to stderr).
fn keepalived_version() -> Result<String> {
    let out = Command::new(keepalived_binary())
        .arg("--version")
        .output()
        .context("run keepalived --version (apt-get install keepalived)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .context("keepalived --version printed nothing")
}

fn keepalived_binary() -> &'static str {
    if Path::new("/usr/sbin/keepalived").is_file() {
        "/usr/sbin/keepalived"
    } else {
        "keepalived"
    }
}

/// The keepalived configuration of one LB: one VRRPv3 instance for the
/// VIP on eth0, unicast to the peer, preempting (the default);
/// `max_auto_priority` lets keepalived raise itself to real-time
/// scheduling when its timers run late (its own start-up notice
/// recommends it for performance).
fn keepalived_config(name: &str, priority: u8, me: Ipv4Addr, peer: Ipv4Addr) -> String {
    format!(
        "global_defs {{
    router_id {name}
    vrrp_version 3
    max_auto_priority
}}

vrrp_instance web {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {KEEPALIVED_ADVERT}
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
}}
"
    )
}

/// keepalived's VRRP process as a child inside a lab namespace; killed
/// (SIGKILL, both its processes) on `kill` and on drop.
struct Keepalived {
    child: Option<Child>,
    /// The VRRP process (a real pid, > 1), once it has written its pidfile.
    vrrp_pid: Option<i32>,
    log: PathBuf,
}

impl Keepalived {
    fn start(
        ns: &Netns,
        dir: &Path,
        name: &str,
        priority: u8,
        me: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<Keepalived> {
        let config = dir.join(format!("{name}.conf"));
        let pid = dir.join(format!("{name}.pid"));
        let vrrp_pid = dir.join(format!("{name}-vrrp.pid"));
        let log = dir.join(format!("{name}.log"));
        fs::write(&config, keepalived_config(name, priority, me, peer))?;
        let _ = fs::remove_file(&vrrp_pid);
        let _ = fs::remove_file(&pid);
        let test = ns
            .command(keepalived_binary())
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .context("keepalived -t")?;
        if !test.status.success() {
            bail!(
                "keepalived rejects {}: {}",
                config.display(),
                String::from_utf8_lossy(&test.stderr)
            );
        }
        let log_file = fs::File::options().create(true).append(true).open(&log)?;
        let mut command = ns.command(keepalived_binary());
        command
            .args([
                "--dont-fork",
                "--log-console",
                "--no-syslog",
                "--vrrp",
                "-f",
            ])
            .arg(&config)
            .arg("-p")
            .arg(&pid)
            .arg("-r")
            .arg(&vrrp_pid);
        // A process group of its own: kill -9 reaches the parent and its
        // VRRP child in one kill(2).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // SAFETY: prctl(2) only, async-signal-safe. If the bench dies
        // without its destructors (SIGKILL), keepalived goes with it.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start keepalived")?;
        let mut keepalived = Keepalived {
            child: Some(child),
            vrrp_pid: None,
            log,
        };
        let mut pid = None;
        wait_until(Duration::from_secs(5), || {
            pid = fs::read_to_string(&vrrp_pid)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .filter(|p| *p > 1);
            pid.is_some()
        });
        keepalived.vrrp_pid = Some(pid.with_context(|| {
            format!(
                "keepalived on {name} started no VRRP process:\n{}",
                keepalived.log()
            )
        })?);
        Ok(keepalived)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9 of the VRRP process, then of its parent's process group
    /// (the parent and anything else it started). VRRP first: a parent
    /// killed first would have its VRRP child stopped gracefully (SIGTERM,
    /// a priority-0 advert), a faster handover than a crash.
    fn signal(&self) {
        let Some(child) = &self.child else {
            return;
        };
        // Never 0 or -1 (our own group, every process): only real pids.
        let group = i32::try_from(child.id()).ok().filter(|p| *p > 1);
        for target in [self.vrrp_pid, group.map(|g| -g)].into_iter().flatten() {
            // SAFETY: kill(2) on the VRRP process we started (not reaped
            // yet, so its pid is not reused) and on our child's group.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
    }

    /// `signal`, then reaps both processes (the orphaned VRRP process is
    /// ours: the bench is a child subreaper).
    fn kill(&mut self) {
        self.signal();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.wait();
        if let Some(pid) = self.vrrp_pid {
            // SAFETY: waitpid(2) on a pid that is our child (or it fails
            // with ECHILD); it was sent SIGKILL, so this ends.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether host `lb` has the VIP on eth0.
fn holds_vip(dsr: &DsrLab, lb: &str) -> bool {
    dsr.lab
        .host(lb)
        .ns
        .exec(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .is_ok_and(|out| out.contains(&format!(" {VIP}/")))
}

/// keepalived in the same lab: no ha-agent, no backends; each LB serves
/// port 80 itself and keepalived moves the VIP between them.
fn keepalived_rounds(on_round: &mut dyn FnMut(RateRun, Failure, bool) -> bool) -> Result<()> {
    // Orphans (keepalived's VRRP process once its parent is killed) are
    // handed to us to reap, not to pid 1.
    // SAFETY: prctl(2) with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dsr = DsrLab::cluster(IpAddr::V4(VIP), &LBS, &[], "")?;
    let dir = std::env::temp_dir().join(format!("ha-bench-{}", dsr.lab.switch().name()));
    fs::create_dir_all(&dir)?;
    let result = keepalived_lab(&dsr, &dir, on_round);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn keepalived_lab(
    dsr: &DsrLab,
    dir: &Path,
    on_round: &mut dyn FnMut(RateRun, Failure, bool) -> bool,
) -> Result<()> {
    let host = |lb: &str| dsr.lab.host(lb);
    let _servers = [
        ServerProcess::start(&host("lb1").ns, "lb1", PORT)?,
        ServerProcess::start(&host("lb2").ns, "lb2", PORT)?,
    ];
    let start = |lb: &str, priority: u8, peer: &str| {
        Keepalived::start(
            &host(lb).ns,
            dir,
            lb,
            priority,
            host(lb).ipv4,
            host(peer).ipv4,
        )
    };
    let mut lb1 = start("lb1", LBS[0].1, "lb2")?;
    let lb2 = start("lb2", LBS[1].1, "lb1")?;
    loop {
        if !wait_until(Duration::from_secs(10), || {
            holds_vip(dsr, "lb1") && !holds_vip(dsr, "lb2")
        }) {
            bail!(
                "lb1 did not (re)take the VIP:\nlb1:\n{}\nlb2:\n{}",
                lb1.log(),
                lb2.log()
            );
        }
        let (run, failure) = round(dsr, "lb1", || {
            lb1.signal();
            Ok(())
        })?;
        let took_over = wait_until(Duration::from_secs(2), || holds_vip(dsr, "lb2"));
        lb1.kill();
        // Restore lb1 as after a reboot: a killed keepalived leaves the VIP
        // configured; the address goes, the link comes back, keepalived
        // starts again.
        host("lb1").ns.exec(&[
            "ip",
            "addr",
            "flush",
            "dev",
            "eth0",
            "to",
            &format!("{VIP}/32"),
        ])?;
        dsr.set_link("lb1", true)?;
        let go_on = on_round(run, failure, took_over);
        lb1 = start("lb1", LBS[0].1, "lb2")?;
        if !go_on {
            return Ok(());
        }
    }
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

/// Outside the outages: the longest gap between two successful requests
/// and how many requests failed, over all rounds.
fn disturbances(variants: &[Variant]) -> String {
    let rounds = variants.iter().flat_map(|v| &v.rounds);
    let longest = rounds
        .clone()
        .map(|r| r.longest_other)
        .max()
        .unwrap_or_default();
    let failed: usize = rounds.map(|r| r.failed_before).sum();
    format!(
        "this run: at most {} ms, and {failed} requests failed outside the outages",
        longest.as_millis()
    )
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn outages(variant: &Variant) -> Vec<Duration> {
    variant.rounds.iter().map(|r| r.outage).collect()
}

fn table(variants: &[Variant]) -> String {
    let mut out = String::from(
        "| variant | rounds | min (ms) | p50 | p90 | max | failed requests per round (min / p50 / max) | kill to link down, p50 (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for v in variants {
        let mut o = outages(v);
        let mut failed: Vec<Duration> = v
            .rounds
            .iter()
            .map(|r| Duration::from_millis(r.failed as u64))
            .collect();
        let mut cuts: Vec<Duration> = v.rounds.iter().map(|r| r.cut).collect();
        out += &format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} / {} / {} | {:.1} |\n",
            v.label,
            v.rounds.len(),
            millis(percentile(&mut o, 0.0)),
            millis(percentile(&mut o, 50.0)),
            millis(percentile(&mut o, 90.0)),
            millis(percentile(&mut o, 100.0)),
            percentile(&mut failed, 0.0).as_millis(),
            percentile(&mut failed, 50.0).as_millis(),
            percentile(&mut failed, 100.0).as_millis(),
            millis(percentile(&mut cuts, 50.0)),
        );
    }
    out
}

/// The median outage of each ha variant over keepalived's (the last).
fn ratios(variants: &[Variant]) -> String {
    let Some((keepalived, ha)) = variants.split_last() else {
        return String::new();
    };
    let reference = millis(percentile(&mut outages(keepalived), 50.0));
    ha.iter()
        .map(|v| {
            let median = millis(percentile(&mut outages(v), 50.0));
            format!(
                "Median outage ratio ha/keepalived, {}: {:.0} / {:.0} ms = {:.2}\n",
                v.label,
                median,
                reference,
                median / reference
            )
        })
        .collect()
}

fn markdown(
    table: &str,
    ratios: &str,
    keepalived_version: &str,
    discarded: &[String],
    stale: &[String],
    root_untouched: bool,
    others: &str,
) -> String {
    let ratios: String = ratios.lines().map(|l| format!("- {l}\n")).collect();
    let discarded = if discarded.is_empty() {
        "Every round measured a failover (none discarded).".to_string()
    } else {
        format!(
            "Rounds discarded (no failover measured), replaced by further rounds: {}.",
            discarded.join("; ")
        )
    };
    let stale = if stale.is_empty() {
        "Before every round the client's neighbour entry for the VIP named lb1.".to_string()
    } else {
        format!(
            "Before {} rounds the client's neighbour entry for the VIP still named another MAC address than lb1's, \
             although lb1 had taken the VIP back: such a round would have measured nothing (the client never used lb1), \
             so the entry was flushed and the client resolved the VIP again (to lb1) before the round: {}.",
            stale.len(),
            stale.join("; ")
        )
    };
    format!(
        "Outage window in milliseconds when the VIP's owner fails, {ROUNDS} failovers per variant, this machine ({} cores), all variants in one run.\n\n\
{table}\n{ratios}\n\
![failover](failover.png)\n\n\
Each dot is one failover; the box spans p25 to p75, the bar is the median, the whiskers reach min and max.\n\n\
Method. Each variant gets its own lab from the harness (`DsrLab::cluster`: namespaces on one bridge, 198.18.0.0/24): a client, \
lb1 (priority 200) and lb2 (priority 100); for ha also two DSR backends. A round: the client opens a new TCP connection to the \
VIP every 5 ms for {:.1} s (each must connect and read the server's name line within {} ms); {:.1} s in, lb1, the owner, fails: \
kill -9 of its agent (ha) or of both keepalived processes (keepalived), immediately followed by cutting its link \
(`link set eth0 down` written to an `ip -n <lb1> -batch -` started before the round, so the cut follows the signal within \
a few ms, last column; starting `ip netns exec` at that moment took 12-28 ms, as long as a 10 ms-variant failover, while the \
owner goes on forwarding). The outage is the time from the start of the last successful request begun before the link was \
down to the start of the next successful one: with no other disturbance, the longest time between two successful requests \
(the longest gap elsewhere in the rounds is printed by the bench; {}). A round is discarded if the standby did not take the \
VIP within 2 s, no request failed, or any request failed after traffic resumed. Failed requests: those begun during the outage (each fails on \
its 500 ms timeout: a lost SYN is retried only after 1 s). Then lb1 is restored as after a reboot (ha: the killed agent's pins \
removed; keepalived: the VIP it left on eth0 removed), its link comes up, its daemon restarts and takes the VIP back \
(preempt, on in both), and the next round starts once the client reaches the VIP again.\n\n\
ha: `quorum = \"two_node\"`, defaults otherwise (3 gratuitous ARPs 100 ms apart on takeover); interval 50 ms with \
dead_after 200 ms (default, 4 intervals), and `interval = \"10ms\"` with dead_after 40 ms (its default).\n\n\
keepalived: {keepalived_version} from Debian, VRRP only (`keepalived --dont-fork --log-console --no-syslog --vrrp -f <conf> -p <pid> -r <vrrp pid>`), \
started as a child inside each LB's namespace (nothing in the root namespace; its addresses and routes were {} during the run). \
`global_defs` with `vrrp_version 3` and `max_auto_priority` (real-time scheduling when its timers run late, which keepalived's start-up notice recommends), and per LB one `vrrp_instance` with `advert_int {KEEPALIVED_ADVERT}` (10 ms, the smallest it accepts: \
`keepalived -t` rejects 0.005 as \"outside range [0.010000, 255.000000]\"), `state BACKUP` on both, priority 200 / 100, \
preempt (the default, as ha's), `unicast_src_ip` + `unicast_peer` to the other LB (unicast, like ha's heartbeats; VRRPv3 has \
no authentication, ha's heartbeats carry an HMAC), `virtual_ipaddress {{ {VIP}/32 dev eth0 }}`, gratuitous ARP defaults \
(5 at once on becoming master). The backup declares the master down after 3 x advert_int + skew = 30 + 6 ms. keepalived \
does not balance: the LB that holds the VIP answers the requests itself (each LB runs the lab's server on port 80).\n\n\
{discarded} {stale}\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        RUN.as_secs_f64(),
        REQUEST_TIMEOUT.as_millis(),
        FAIL_AT.as_secs_f64(),
        others,
        if root_untouched {
            "unchanged"
        } else {
            "CHANGED (see the run's output)"
        },
    )
}

/// Box-and-strip chart of the outages, one row per variant.
fn plot(path: &Path, variants: &[Variant], font: Vec<u8>) -> Result<()> {
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{FONT} is not a usable font"))?;
    let all: Vec<f64> = variants
        .iter()
        .flat_map(|v| v.rounds.iter().map(|r| millis(r.outage)))
        .collect();
    let hi = (all.iter().copied().fold(0.0, f64::max) * 1.15).max(10.0);
    let rows = variants.len();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = BitMapBackend::new(path, (1000, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Failover outage, {ROUNDS} kill -9 + link cut per variant"),
                ("sans-serif", 24),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(300)
            .build_cartesian_2d(0f64..hi, -0.5f64..(rows as f64 - 0.5))?;
        let names: Vec<&str> = variants.iter().map(|v| v.label).collect();
        let row_of = |i: usize| (rows - 1 - i) as f64;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows)
            .y_label_formatter(&|y| {
                let r = y.round();
                if (y - r).abs() < 0.01 && r >= 0.0 && (r as usize) < rows {
                    names[rows - 1 - r as usize].to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("outage (ms): longest time between two successful requests, one every 5 ms")
            .x_labels(12)
            .light_line_style(RGBColor(235, 235, 235))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        let colors = [
            RGBColor(31, 90, 200),
            RGBColor(20, 150, 60),
            RGBColor(210, 40, 40),
        ];
        for (i, v) in variants.iter().enumerate() {
            let y = row_of(i);
            let color = colors[i % colors.len()];
            let mut o = outages(v);
            let q = |o: &mut Vec<Duration>, p: f64| millis(percentile(o, p));
            let (min, p25, p50, p75, max) = (
                q(&mut o, 0.0),
                q(&mut o, 25.0),
                q(&mut o, 50.0),
                q(&mut o, 75.0),
                q(&mut o, 100.0),
            );
            let stroke = color.stroke_width(2);
            chart.draw_series([
                PathElement::new(vec![(min, y), (p25, y)], stroke),
                PathElement::new(vec![(p75, y), (max, y)], stroke),
                PathElement::new(vec![(min, y - 0.1), (min, y + 0.1)], stroke),
                PathElement::new(vec![(max, y - 0.1), (max, y + 0.1)], stroke),
                PathElement::new(vec![(p50, y - 0.3), (p50, y + 0.3)], color.stroke_width(4)),
            ])?;
            chart.draw_series([Rectangle::new([(p25, y - 0.22), (p75, y + 0.22)], stroke)])?;
            chart.draw_series(v.rounds.iter().enumerate().map(|(k, r)| {
                // Spread the dots vertically (golden-ratio sequence) so
                // equal outages stay visible.
                let jitter = ((k as f64 * 0.618_034).fract() - 0.5) * 0.36;
                Circle::new((millis(r.outage), y + jitter), 4, color.mix(0.55).filled())
            }))?;
            chart.draw_series([Text::new(
                format!("p50 {p50:.0} ms"),
                (p50 + hi * 0.006, y + 0.42),
                ("sans-serif", 15).into_font().color(&BLACK),
            )])?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("draw {}: {e}", path.display()))
}
