//! `cargo xtask demo`: a client, two load balancers forming a cluster and
//! three backends, each a network namespace. The real agents balance real
//! TCP connections to a VIP; the demo shows where they went, kills the
//! owner and measures the failover, drains a backend, and removes
//! everything again.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ha_tests::{agent::hactl, dsr::DsrLab, start_rate_client, wait_until};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
const ROUNDS: u32 = 5;
const PER_ROUND: u32 = 600;

fn step(text: &str) {
    println!("\n==> {text}");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) -> Result<()> {
    if !wait_until(timeout, done) {
        bail!("{what} did not happen within {timeout:?}");
    }
    Ok(())
}

fn main() -> Result<()> {
    step("building the lab: client, lb1, lb2, b1, b2, b3 (network namespaces on a bridge)");
    let dsr = DsrLab::cluster(
        VIP,
        &[("lb1", 200), ("lb2", 100)],
        &BACKENDS,
        "quorum = \"two_node\"\n",
    )
    .context("the demo needs root, iproute2 and ethtool")?;
    for name in BACKENDS {
        println!(
            "    {name} {} serves {VIP}:80 (VIP on lo, arp_ignore=1)",
            dsr.lab.host(name).ipv4
        );
    }
    step("starting ha-agent on lb1 (priority 200) and lb2 (priority 100)");
    let mut lb1 = dsr.start_agent_on("lb1", false)?;
    let lb2 = dsr.start_agent_on("lb2", false)?;
    wait_for("an owner", Duration::from_secs(10), || lb1.owns("web"))?;
    println!("    both attached their XDP program; lb1 owns the VIP and answers ARP for it");
    print!(
        "{}",
        indent(&hactl(
            &[
                "status",
                "--socket",
                &lb1.control_socket().to_string_lossy()
            ],
            false
        )?)
    );

    step(&format!(
        "client {} opens {} TCP connections to {}",
        dsr.lab.host("client").ipv4,
        ROUNDS * PER_ROUND,
        dsr.target
    ));
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = 0;
    for round in 1..=ROUNDS {
        let started = Instant::now();
        let tally = dsr.connect(PER_ROUND);
        for (name, n) in &tally.by_name {
            *total.entry(name.clone()).or_default() += n;
        }
        failed += tally.failures;
        let shares: Vec<String> = total.iter().map(|(n, c)| format!("{n} {c:>5}")).collect();
        println!(
            "    round {round}: {PER_ROUND} connections in {:>4} ms   totals: {}   failed {failed}",
            started.elapsed().as_millis(),
            shares.join("  ")
        );
    }
    let all: u64 = total.values().sum();
    step("distribution of real connections per backend");
    for (name, n) in &total {
        let share = *n as f64 * 100.0 / all.max(1) as f64;
        println!(
            "    {name}: {n:>5} ({share:4.1}%) {}",
            "#".repeat((share / 2.0) as usize)
        );
    }

    step("what lb1's datapath holds (hactl maps, read from the pinned maps)");
    print!(
        "{}",
        indent(&hactl(
            &[
                "maps",
                "--flows",
                "3",
                "--pin-dir",
                &lb1.pin_dir().to_string_lossy()
            ],
            false
        )?)
    );

    step("failover: a request every 5 ms; after 1.5 s lb1's agent is killed (-9) and its link cut");
    let rate = start_rate_client(
        dsr.client(),
        dsr.target,
        200,
        Duration::from_secs(4),
        Duration::from_millis(500),
    );
    sleep(Duration::from_millis(1500));
    lb1.kill()?;
    dsr.set_link("lb1", false)?;
    let run = rate
        .join()
        .map_err(|_| anyhow::anyhow!("rate client panicked"))?;
    let (outage, _) = run.longest_gap().context("no request succeeded")?;
    println!(
        "    {} requests, {} failed; outage (longest time without a successful request): {} ms",
        run.attempts.len(),
        run.failures(),
        outage.as_millis()
    );
    for line in lb2
        .log()
        .lines()
        .filter(|l| l.contains("VIP group taken") || l.contains("peer down"))
    {
        println!(
            "    lb2: {}",
            line.split("ha_agent::agent: ").last().unwrap_or(line)
        );
    }

    let b2 = dsr.backend_address("b2").to_string();
    let lb2_socket = lb2.control_socket().to_string_lossy().to_string();
    step(&format!(
        "draining b2 ({b2}) on lb2: no new connections, open ones stay"
    ));
    print!(
        "{}",
        indent(&hactl(
            &["--socket", &lb2_socket, "drain", "web", &b2],
            false
        )?)
    );
    let tally = dsr.connect(PER_ROUND);
    println!(
        "    {PER_ROUND} connections: {:?}, failed {}",
        tally.by_name, tally.failures
    );
    print!(
        "{}",
        indent(&hactl(
            &["--socket", &lb2_socket, "undrain", "web", &b2],
            false
        )?)
    );

    step("stopping the agents and removing the lab");
    drop(lb2);
    drop(lb1);
    drop(dsr);
    println!(
        "done: {all} balanced connections, {failed} failed; failover outage {} ms",
        outage.as_millis()
    );
    Ok(())
}
