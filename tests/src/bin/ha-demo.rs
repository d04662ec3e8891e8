//! `cargo xtask demo`: a client, one load balancer and three backends, each
//! a network namespace; the real agent balances real TCP connections to a
//! VIP, and the demo shows where they went. Everything is removed at the end.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_agent::datapath::PassProgram;
use ha_tests::{
    Lab, NameServer,
    agent::{Agent, hactl},
    connect_many,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const PORT: u16 = 80;
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
const ROUNDS: u32 = 5;
const PER_ROUND: u32 = 600;

fn step(text: &str) {
    println!("==> {text}");
}

fn main() -> Result<()> {
    step("building the lab: client, lb, b1, b2, b3 (network namespaces on a bridge)");
    let mut hosts = vec!["client", "lb"];
    hosts.extend(BACKENDS);
    let lab = Lab::new(&hosts).context("the demo needs root, iproute2 and ethtool")?;
    lab.disable_tx_checksum_offload("client")?;
    let lb_port = lab.host("lb").switch_port().to_string();
    let _pass = lab.switch().run(move || -> Result<PassProgram> {
        let mut pass = PassProgram::load()?;
        pass.attach(&lb_port)?;
        Ok(pass)
    })?;
    let target = SocketAddr::new(IpAddr::V4(VIP), PORT);
    let mut servers = Vec::new();
    for name in BACKENDS {
        lab.make_dsr_backend(name, &[IpAddr::V4(VIP)])?;
        servers.push(NameServer::start(&lab.host(name).ns, target, name)?);
        println!(
            "    {name} {} serves {target} (VIP on lo, arp_ignore=1)",
            lab.host(name).ipv4
        );
    }

    let lb = lab.host("lb");
    let node = lb.ns.name().to_string();
    let backends: String = BACKENDS
        .iter()
        .map(|b| format!("  [[vip.backend]]\n  address = \"{}\"\n", lab.host(b).ipv4))
        .collect();
    let config = format!(
        "[node]\nname = \"{node}\"\ninterface = \"eth0\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"{VIP}\"\nport = {PORT}\nprotocol = \"tcp\"\n{backends}"
    );
    step(&format!(
        "starting ha-agent on lb ({}) with this config:",
        lb.ipv4
    ));
    println!(
        "{}",
        config
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut agent = Agent::start(&lb.ns, &node, &config, false)?;
    agent.wait_healthy(BACKENDS.len(), Duration::from_secs(15))?;
    println!("    XDP program attached to lb/eth0, backend MACs learned");

    step(&format!(
        "client {} opens {} TCP connections to {target}",
        lab.host("client").ipv4,
        ROUNDS * PER_ROUND
    ));
    let mut total = std::collections::BTreeMap::new();
    let mut failures = 0;
    for round in 1..=ROUNDS {
        let started = Instant::now();
        let tally = connect_many(
            &lab.host("client").ns,
            target,
            PER_ROUND,
            Duration::from_secs(2),
        );
        for (name, n) in &tally.by_name {
            *total.entry(name.clone()).or_insert(0u64) += n;
        }
        failures += tally.failures;
        let shares: Vec<String> = total.iter().map(|(n, c)| format!("{n} {c:>5}")).collect();
        println!(
            "    round {round}: {PER_ROUND} connections in {:>4} ms   totals: {}   failed {failures}",
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

    step("what the datapath holds (hactl maps, read from the pinned maps)");
    let pins = agent.pin_dir();
    let maps = hactl(
        &["maps", "--flows", "5", "--pin-dir", &pins.to_string_lossy()],
        false,
    )?;
    println!(
        "{}",
        maps.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    step("stopping the agent (SIGTERM detaches and unpins) and removing the lab");
    let status = agent.stop()?;
    println!("    agent exited: {status}");
    drop(servers);
    drop(lab);
    println!("done: {all} connections, {failures} failed");
    Ok(())
}
