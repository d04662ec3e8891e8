//! A cluster of load balancers in the lab: the VIP moves to another node
//! when its owner dies or leaves, while a client keeps asking.

use std::{
    net::{IpAddr, Ipv4Addr},
    thread::sleep,
    time::{Duration, Instant},
};

use ha_tests::{
    LongLived, RateRun, ServerProcess,
    agent::{Agent, counter, hactl},
    dsr::DsrLab,
    start_rate_client, wait_until,
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const BACKENDS: [&str; 2] = ["b1", "b2"];
/// A request every 5 ms.
const RATE: u32 = 200;
const TWO_NODES: &str = "quorum = \"two_node\"\n";
const LONG_LIVED: usize = 20;

/// Waits until `agent` reports owning the VIP group (or not).
fn wait_owner(agent: &Agent, owns: bool, timeout: Duration) {
    assert!(
        wait_until(timeout, || agent.owns("web") == owns),
        "ownership never became {owns}: {:?}\n{}",
        agent.status(),
        agent.log()
    );
}

/// Two nodes, lb1 preferred; requests every 5 ms while `fail` strikes lb1
/// (after 2 s of a 5 s run). Asserts that lb2 took over and that no request
/// failed once traffic resumed; returns the run, the outage and lb2.
fn failover(what: &str, fail: impl FnOnce(&DsrLab, &mut Agent)) -> (RateRun, Duration, Agent) {
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let mut lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    wait_owner(&lb2, false, Duration::from_secs(1));

    let long = LongLived::start(
        dsr.client(),
        dsr.target,
        LONG_LIVED,
        Duration::from_millis(10),
    )
    .expect("long-lived connections");
    let rate = start_rate_client(
        dsr.client(),
        dsr.target,
        RATE,
        Duration::from_secs(5),
        Duration::from_millis(500),
    );
    sleep(Duration::from_secs(2));
    let failed = Instant::now();
    fail(&dsr, &mut lb1);
    let run = rate.join().expect("rate client");
    let failed = failed.saturating_duration_since(run.started);
    // Every node computes the same ring: established connections keep
    // their backend through the other load balancer.
    let report = long.stop();
    let broken: Vec<_> = report
        .broken()
        .iter()
        .map(|c| (&c.backend, &c.broke))
        .collect();
    assert!(
        broken.is_empty(),
        "{what}: established connections broke: {broken:?}"
    );
    assert!(
        report.per_connection.iter().all(|c| c.exchanges > 100),
        "{what}: every established connection kept exchanging"
    );
    wait_owner(&lb2, true, Duration::from_secs(1));
    let (window, resumed) = run.longest_gap().expect("requests succeeded");
    let after = run
        .attempts
        .iter()
        .filter(|a| a.at >= resumed && a.error.is_some())
        .count();
    assert_eq!(
        after,
        0,
        "{what}: requests failed after traffic resumed: {:?}",
        run.errors()
    );
    let served = run.answered_by_after("b1", failed) + run.answered_by_after("b2", failed);
    assert!(
        served > 100,
        "{what}: traffic flows through lb2: {:?}",
        run.by_backend()
    );
    println!(
        "{what}: outage {} ms (longest time between two successful requests), {} of {} requests failed, {LONG_LIVED} established connections unbroken",
        window.as_millis(),
        run.failures(),
        run.attempts.len()
    );
    for line in lb2
        .log()
        .lines()
        .filter(|l| l.contains("VIP group") || l.contains("peer"))
    {
        println!("  lb2: {line}");
    }
    (run, window, lb2)
}

#[test]
fn two_nodes_the_vip_moves_when_the_owner_is_killed_and_cut_off() {
    failover("kill -9 + link cut of the owner", |dsr, lb1| {
        lb1.kill().expect("kill -9 lb1's agent");
        dsr.set_link("lb1", false).expect("cut lb1's link");
    });
}

#[test]
fn two_nodes_a_graceful_stop_hands_over_at_once() {
    let (_, _, lb2) = failover("graceful stop of the owner", |_, lb1| {
        let status = lb1.stop().expect("SIGTERM lb1");
        assert!(status.success(), "{status}\n{}", lb1.log());
    });
    assert!(
        lb2.log().contains("leaving=true"),
        "lb2 saw LEAVING:\n{}",
        lb2.log()
    );
}

#[test]
fn after_kill_9_only_the_new_owner_answers_arp_once_the_lease_ran_out() {
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let mut lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    let client = dsr.client();
    let resolve_vip = || {
        client
            .exec(&["ip", "neigh", "flush", "dev", "eth0"])
            .unwrap();
        let tally = dsr.connect(1);
        assert_eq!(tally.failures, 0, "{:?}", tally.first_errors);
    };
    resolve_vip();
    assert!(
        counter(&lb1.maps().unwrap(), "arp_reply") >= 1,
        "the owner answers ARP"
    );
    // Killed with its link up: its XDP program stays attached (pinned) and
    // would answer ARP for the VIP forever without the lease.
    lb1.kill().expect("kill -9 lb1's agent");
    wait_owner(&lb2, true, Duration::from_secs(2));
    let before = (
        counter(&lb1.maps().unwrap(), "arp_reply"),
        counter(&lb2.maps().unwrap(), "arp_reply"),
    );
    let client = dsr.client();
    for _ in 0..3 {
        client
            .exec(&["ip", "neigh", "flush", "dev", "eth0"])
            .unwrap();
        let tally = dsr.connect(1);
        assert_eq!(tally.failures, 0, "{:?}", tally.first_errors);
    }
    let after = (
        counter(&lb1.maps().unwrap(), "arp_reply"),
        counter(&lb2.maps().unwrap(), "arp_reply"),
    );
    assert_eq!(
        after.0, before.0,
        "the killed node answered ARP after its lease ran out"
    );
    assert!(
        after.1 >= before.1 + 3,
        "the new owner answered every ARP request: {before:?} -> {after:?}"
    );
    let neigh = client
        .exec(&["ip", "neigh", "show", &VIP.to_string()])
        .unwrap();
    let lb2_mac = dsr
        .lab
        .host("lb2")
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        neigh.contains(&lb2_mac),
        "the client resolves the VIP to lb2 ({lb2_mac}): {neigh}"
    );
    println!(
        "after kill -9: lb1 ARP replies {} -> {}, lb2 {} -> {}; client: {}",
        before.0,
        after.0,
        before.1,
        after.1,
        neigh.trim()
    );
}

#[test]
fn forged_replayed_and_foreign_heartbeats_are_dropped_and_counted() {
    use ha_agent::cluster::{Heartbeat, wire};
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));

    let key = wire::load_key(dsr.key_file().unwrap()).unwrap();
    let wrong_key = wire::Key::from_bytes(b"not the cluster's key, but long enough").unwrap();
    // lb2 claiming the group with top priority: accepted, it would take
    // the VIP from lb1.
    let forged = Heartbeat {
        cluster_id: ha_tests::dsr::CLUSTER_ID,
        node: dsr.node_name("lb2").to_string(),
        incarnation: 1,
        sequence: 1,
        sent_at_us: 0,
        priority: 255,
        eligible: true,
        claims: vec![0],
        bids: vec![],
        leaving: false,
        standby: false,
        peers: vec![],
        digest: [0; 32],
    };
    let frames = [
        ("unauthenticated", wire::encode(&forged, &wrong_key)),
        // The right key, but incarnation 1: older than lb2's, a replay.
        ("replayed", wire::encode(&forged, &key)),
        (
            "foreign_cluster",
            wire::encode(
                &Heartbeat {
                    cluster_id: 7,
                    ..forged.clone()
                },
                &key,
            ),
        ),
    ];
    let lb1_address = std::net::SocketAddr::new(
        dsr.lab.host("lb1").ipv4.into(),
        ha_agent::config::DEFAULT_CLUSTER_PORT,
    );
    // Sent from lb2's address: from any other, they are dropped unread.
    let genuine = wire::encode(&forged, &key);
    dsr.lab.host("lb2").ns.run(move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            for (_, frame) in &frames {
                socket.send_to(frame, lb1_address).unwrap();
            }
        }
    });
    dsr.client().run(move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..5 {
            socket.send_to(&genuine, lb1_address).unwrap();
        }
    });
    sleep(Duration::from_millis(300));
    let status = lb1.status().unwrap();
    let dropped = |reason: &str| {
        status["cluster"]["dropped"]
            .as_array()
            .and_then(|d| d.iter().find(|e| e[0] == reason))
            .and_then(|e| e[1].as_u64())
            .unwrap_or(0)
    };
    for reason in [
        "unauthenticated",
        "replayed",
        "foreign_cluster",
        "not_a_peer",
    ] {
        assert!(dropped(reason) >= 5, "{reason} not counted: {status}");
    }
    wait_owner(&lb1, true, Duration::from_secs(1));
    wait_owner(&lb2, false, Duration::from_secs(1));
    // The real peer's heartbeats, unlike the forged ones, were answered:
    // their echoes give a round trip (a sanity range, not a speed claim).
    let rtt_us = status["cluster"]["peers"][0]["rtt_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("no heartbeat round trip measured: {status}"));
    assert!(rtt_us > 0 && rtt_us < 1_000_000, "{status}");
    println!(
        "dropped by lb1: {}; heartbeat round trip to lb2: {rtt_us} us",
        status["cluster"]["dropped"]
    );
}

#[test]
fn three_nodes_a_cut_off_owner_releases_and_the_others_keep_one_owner() {
    let dsr = DsrLab::cluster(
        VIP,
        &[("lb1", 200), ("lb2", 150), ("lb3", 100)],
        &BACKENDS,
        "",
    )
    .expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    let lb3 = dsr.start_agent_on("lb3", false).expect("lb3");
    wait_owner(&lb1, true, Duration::from_secs(10));

    dsr.set_link("lb1", false).expect("cut lb1 off");
    let cut = Instant::now();
    // Sample the survivors for 2 s: never two owners, one owner at the end.
    let mut samples = 0;
    while cut.elapsed() < Duration::from_secs(2) {
        let (two, three) = (lb2.owns("web"), lb3.owns("web"));
        assert!(
            !(two && three),
            "two owners at {:?} after the cut",
            cut.elapsed()
        );
        samples += 1;
    }
    assert!(
        lb2.owns("web") && !lb3.owns("web"),
        "lb2 (next priority) owns the VIP"
    );
    let isolated = lb1.status().unwrap();
    assert_eq!(isolated["cluster"]["quorum"], false, "{isolated}");
    assert!(
        !lb1.owns("web"),
        "the cut-off node released the VIP: {isolated}"
    );
    let tally = dsr.connect(50);
    assert_eq!(
        tally.failures, 0,
        "traffic flows through lb2: {:?}",
        tally.first_errors
    );
    println!(
        "3 nodes, owner cut off: {samples} samples of the survivors, never two owners; lb2 owns, lb1 without quorum released"
    );
}

#[test]
fn an_owner_whose_link_goes_down_releases_and_takes_back_when_it_returns() {
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    // lb1's agent lives on: alone in a two-node cluster it would keep its
    // quorum, but a node without link is not eligible.
    dsr.set_link("lb1", false).expect("cut lb1's link");
    wait_owner(&lb1, false, Duration::from_secs(5));
    wait_owner(&lb2, true, Duration::from_secs(5));
    assert!(lb1.log().contains("eligible=false"), "{}", lb1.log());
    dsr.set_link("lb1", true).expect("restore lb1's link");
    wait_owner(&lb1, true, Duration::from_secs(10));
    wait_owner(&lb2, false, Duration::from_secs(2));
    let tally = dsr.connect(50);
    assert_eq!(tally.failures, 0, "{:?}", tally.first_errors);
}

#[test]
fn an_owner_whose_tracked_service_fails_hands_the_vip_over() {
    let track = "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"tcp\"\n  port = 8080\n  interval = \"100ms\"\n  timeout = \"100ms\"\n  rise = 1\n  fall = 2\n";
    let dsr = DsrLab::cluster(
        VIP,
        &[("lb1", 200), ("lb2", 100)],
        &BACKENDS,
        &format!("{TWO_NODES}{track}"),
    )
    .expect("lab");
    let mut service =
        ServerProcess::start(&dsr.lab.host("lb1").ns, "service", 8080).expect("lb1's service");
    let _service2 =
        ServerProcess::start(&dsr.lab.host("lb2").ns, "service", 8080).expect("lb2's service");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    service.kill();
    wait_owner(&lb1, false, Duration::from_secs(5));
    wait_owner(&lb2, true, Duration::from_secs(5));
    assert!(lb1.log().contains("tracks=false"), "{}", lb1.log());
    let _service = ServerProcess::start(&dsr.lab.host("lb1").ns, "service", 8080)
        .expect("lb1's service again");
    wait_owner(&lb1, true, Duration::from_secs(10));
    let tally = dsr.connect(20);
    assert_eq!(tally.failures, 0, "{:?}", tally.first_errors);
}

#[test]
fn standby_releases_everything_until_unstandby() {
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    let socket = lb1.control_socket().to_string_lossy().to_string();
    hactl(&["--socket", &socket, "standby"], false).expect("hactl standby");
    wait_owner(&lb1, false, Duration::from_secs(2));
    wait_owner(&lb2, true, Duration::from_secs(2));
    // Higher priority, but standing by: it must not take the VIP back.
    sleep(Duration::from_millis(500));
    assert!(!lb1.owns("web"), "a node in standby took a VIP");
    assert_eq!(dsr.connect(20).failures, 0);
    hactl(&["--socket", &socket, "unstandby"], false).expect("hactl unstandby");
    wait_owner(&lb1, true, Duration::from_secs(5));
    wait_owner(&lb2, false, Duration::from_secs(2));
    assert_eq!(dsr.connect(20).failures, 0);
}

fn drained_on(agent: &Agent, backend: &str) -> bool {
    agent.status().expect("hactl status")["vips"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .any(|b| b["address"] == backend && b["draining"] == true)
}

#[test]
fn a_drain_typed_on_any_node_applies_on_every_node() {
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    let b2 = dsr.backend_address("b2").to_string();
    // Typed on the standby node; the owner, which carries the traffic, must apply it.
    let lb2_socket = lb2.control_socket().to_string_lossy().to_string();
    hactl(&["--socket", &lb2_socket, "drain", "web", &b2], false).expect("hactl drain on lb2");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !drained_on(&lb1, &b2) {
        assert!(
            Instant::now() < deadline,
            "the owner never applied the drain:\n{}",
            lb1.log()
        );
        sleep(Duration::from_millis(20));
    }
    let tally = dsr.connect(100);
    assert_eq!(tally.failures, 0, "{:?}", tally.first_errors);
    assert_eq!(
        tally.by_name.get("b2"),
        None,
        "new connections reached the drained backend: {:?}",
        tally.by_name
    );
    // Undone on the other node.
    let lb1_socket = lb1.control_socket().to_string_lossy().to_string();
    hactl(&["--socket", &lb1_socket, "undrain", "web", &b2], false).expect("hactl undrain on lb1");
    let deadline = Instant::now() + Duration::from_secs(2);
    while drained_on(&lb2, &b2) {
        assert!(
            Instant::now() < deadline,
            "lb2 never saw the undrain:\n{}",
            lb2.log()
        );
        sleep(Duration::from_millis(20));
    }
    let tally = dsr.connect(100);
    assert!(
        tally.by_name.get("b2").is_some_and(|n| *n > 0),
        "{:?}",
        tally.by_name
    );
}

#[test]
fn hactl_failover_typed_on_any_node_moves_the_vip() {
    let dsr =
        DsrLab::cluster(VIP, &[("lb1", 200), ("lb2", 100)], &BACKENDS, TWO_NODES).expect("lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    let lb2_socket = lb2.control_socket().to_string_lossy().to_string();
    hactl(&["--socket", &lb2_socket, "failover", "web"], false).expect("hactl failover on lb2");
    wait_owner(&lb2, true, Duration::from_secs(3));
    wait_owner(&lb1, false, Duration::from_secs(1));
    // Preempt does not take it straight back from the new owner.
    sleep(Duration::from_millis(700));
    assert!(
        lb2.owns("web") && !lb1.owns("web"),
        "the VIP went back to lb1"
    );
    assert_eq!(dsr.connect(20).failures, 0);
    assert!(
        lb1.log().contains("failover requested"),
        "lb1 got the request from lb2:\n{}",
        lb1.log()
    );
}

fn backend_healthy(agent: &Agent, address: &str) -> bool {
    agent.maps().expect("hactl maps")["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .any(|b| b["address"] == address && b["flags"].to_string().contains("healthy"))
}

#[test]
fn standbys_follow_the_owners_health_view_until_they_own() {
    let check = "[vip.check]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 2\n";
    let dsr = DsrLab::cluster_with_check(
        VIP,
        &[("lb1", 200), ("lb2", 100)],
        &BACKENDS,
        TWO_NODES,
        check,
    )
    .expect("lab");
    let mut lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_owner(&lb1, true, Duration::from_secs(10));
    let b1 = dsr.backend_address("b1").to_string();
    // lb2 alone loses its path to b1: its own checks fail...
    dsr.lab
        .host("lb2")
        .ns
        .exec(&["ip", "route", "add", "blackhole", &format!("{b1}/32")])
        .unwrap();
    sleep(Duration::from_millis(1500));
    // ...but it holds the owner's view: the same ring as lb1.
    assert!(
        backend_healthy(&lb2, &b1),
        "the standby followed its own view:\n{}",
        lb2.log()
    );
    assert!(backend_healthy(&lb1, &b1));
    // Once it owns the VIP, its own checks rule.
    lb1.stop().expect("stop lb1");
    wait_owner(&lb2, true, Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(2);
    while backend_healthy(&lb2, &b1) {
        assert!(
            Instant::now() < deadline,
            "the new owner kept b1 despite its own checks:\n{}",
            lb2.log()
        );
        sleep(Duration::from_millis(20));
    }
}
