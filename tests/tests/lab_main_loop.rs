//! The agent's main loop never waits on slow work: an owner whose reload
//! adds a backend that never answers ARP keeps sending heartbeats on time,
//! so its peer neither declares it dead nor fences it, and a new backend
//! becomes usable when its MAC arrives. Its background loops outlive their
//! errors: the control socket serves again once file descriptors are back.
//! And one node runs one agent: a second one for it refuses to start.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    thread::sleep,
    time::Duration,
};

use ha_tests::{
    agent::{Agent, hactl},
    dsr::DsrLab,
    wait_until,
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
/// On the lab's segment, but no host has it: its MAC never resolves.
const SILENT: &str = "198.18.0.250";

/// A `[[vip.backend]]` entry as the lab's config writes it.
fn backend_entry(address: &str) -> String {
    format!("  [[vip.backend]]\n  address = \"{address}\"\n")
}

/// `hactl reload` on `agent`; its answer.
fn reload(agent: &Agent) -> String {
    let socket = agent.control_socket().to_string_lossy().to_string();
    hactl(&["--socket", &socket, "reload"], false).expect("hactl reload")
}

/// Whether `agent` knows the MAC of backend `address` of the VIP.
fn resolved(agent: &Agent, address: &str) -> Option<bool> {
    let status = agent.status().expect("hactl status");
    status["vips"][0]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address)
        .and_then(|b| b["resolved"].as_bool())
}

#[test]
fn a_reload_waiting_for_a_mac_keeps_the_owner_heartbeating_and_unfenced() {
    let marker = std::env::temp_dir().join(format!("ha-lab-fenced-{}", std::process::id()));
    let _ = fs::remove_file(&marker);
    let cluster = format!(
        "quorum = \"two_node\"\nfencing = \"required\"\n\
         fence_command = [\"/bin/sh\", \"-c\", \"echo \\\"$HA_FENCE_NODE\\\" >> {}\"]\n",
        marker.display()
    );
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, &cluster).expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    assert!(
        wait_until(Duration::from_secs(10), || lb1.owns("web")),
        "lb1 never owned the VIP:\n{}",
        lb1.log()
    );

    // b3 leaves the config and lb1 forgets its MAC...
    let b3 = dsr.backend_address("b3").to_string();
    let config = fs::read_to_string(&lb1.config).expect("lb1's config");
    let without_b3 = config.replace(&backend_entry(&b3), "");
    assert_ne!(without_b3, config, "b3 in lb1's config");
    fs::write(&lb1.config, &without_b3).unwrap();
    reload(&lb1);
    dsr.lab
        .host("lb1")
        .ns
        .exec(&["ip", "neigh", "del", &b3, "dev", "eth0"])
        .expect("forget b3's MAC");
    let peer = dsr.node_name("lb1").to_string();
    let gap_of_lb1 = || -> Option<u64> {
        let status = lb2.status().expect("lb2's status");
        status["cluster"]["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node"] == peer.as_str())
            .and_then(|p| p["longest_gap_ms"].as_u64())
    };
    let gap_before = gap_of_lb1();

    // ...and comes back with a backend nobody answers for.
    fs::write(
        &lb1.config,
        format!(
            "{without_b3}{}{}",
            backend_entry(&b3),
            backend_entry(SILENT)
        ),
    )
    .unwrap();
    let answer = reload(&lb1);
    // Long enough for the old loop's 500 ms wait and a few neighbour
    // readings that find SILENT missing.
    sleep(Duration::from_millis(1500));

    let lb2_log = lb2.log();
    let fenced = fs::read_to_string(&marker).unwrap_or_default();
    let _ = fs::remove_file(&marker);
    assert!(
        fenced.is_empty(),
        "lb2 fenced {fenced:?} during lb1's reload:\n{lb2_log}"
    );
    assert!(
        !lb2_log.contains("peer down"),
        "lb2 declared lb1 dead during its reload:\n{lb2_log}"
    );
    assert!(
        lb1.owns("web") && !lb2.owns("web"),
        "lb1 lost the VIP during its reload:\nlb1:\n{}\nlb2:\n{lb2_log}",
        lb1.log()
    );
    assert!(
        answer.contains(SILENT) && answer.contains("not known yet"),
        "the reload's answer names the backend whose MAC is pending: {answer}"
    );
    // b3 answers ARP: its MAC arrives as an event and it is used.
    assert!(
        wait_until(Duration::from_secs(5), || resolved(&lb1, &b3) == Some(true)),
        "b3's MAC never learned:\n{}",
        lb1.log()
    );
    assert_eq!(resolved(&lb1, SILENT), Some(false));
    let gap = gap_of_lb1().expect("lb2 measured lb1's heartbeat gaps");
    println!(
        "reload of the owner adding a backend whose MAC never resolves: owner kept, not fenced; \
         longest gap between lb1's heartbeats seen by lb2: {gap} ms (before the reload: {} ms; \
         heartbeat interval 50 ms, dead after 200 ms); reload answered: {}",
        gap_before.map_or("-".to_string(), |g| g.to_string()),
        answer.trim()
    );
}

/// Runs `program` with `args`; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent's soft file descriptor limit.
fn fd_limit(pid: &str) -> String {
    let soft = run(
        "prlimit",
        &[
            "--pid",
            pid,
            "--nofile",
            "--raw",
            "--noheadings",
            "-o",
            "SOFT",
        ],
    );
    soft.trim().to_string()
}

/// Sets the agent's soft file descriptor limit (the hard one stays).
fn set_fd_limit(pid: &str, limit: &str) {
    run("prlimit", &["--pid", pid, &format!("--nofile={limit}:")]);
}

#[test]
fn the_control_socket_serves_again_after_running_out_of_file_descriptors() {
    let dsr = DsrLab::new(VIP, &["b1"], "").expect("lab");
    let agent = dsr.start_agent(false).expect("agent");
    let config = agent.config.to_string_lossy().to_string();
    let pid = run(
        "pgrep",
        &["-f", "-n", &format!("ha-agent --config {config}")],
    )
    .trim()
    .to_string();
    let open = || fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    // Two more connections fit; the third accept fails with EMFILE.
    let limit = fd_limit(&pid);
    set_fd_limit(&pid, &(open() + 2).to_string());
    let socket = agent.control_socket();
    let silent: Vec<std::os::unix::net::UnixStream> = (0..4)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok())
        .collect();
    // The agent accepts what it can meanwhile.
    sleep(Duration::from_millis(500));
    drop(silent);
    set_fd_limit(&pid, &limit);
    assert!(
        wait_until(Duration::from_secs(5), || agent.status().is_ok()),
        "the control socket stopped for good after an accept error:\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains("control socket accept failed"),
        "the agent never ran out of file descriptors:\n{}",
        agent.log()
    );
    println!("control socket: accept failed with EMFILE, served again once descriptors were free");
}

#[test]
fn a_second_agent_for_the_same_node_refuses_to_start() {
    let dsr = DsrLab::new(VIP, &["b1"], "").expect("lab");
    let first = dsr.start_agent(false).expect("agent");
    let config = fs::read_to_string(&first.config).expect("its config");
    let mut second = Agent::start(&dsr.lab.host("lb").ns, &first.node, &config, true)
        .expect("start a second agent");
    let refused = second
        .wait_healthy(1, Duration::from_secs(5))
        .expect_err("the second agent ran beside the first");
    assert!(
        format!("{refused:#}").contains("another ha-agent is running for node"),
        "{refused:#}"
    );
    assert!(first.status().is_ok(), "the first agent still answers");
    println!("second agent for {}: refused", first.node);
}
