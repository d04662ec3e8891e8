//! A cluster of load balancers in the lab: the VIP moves to another node
//! when its owner dies or leaves, while a client keeps asking.

use std::{
    net::{IpAddr, Ipv4Addr},
    thread::sleep,
    time::{Duration, Instant},
};

use ha_tests::{RateRun, agent::Agent, dsr::DsrLab, start_rate_client};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const BACKENDS: [&str; 2] = ["b1", "b2"];
/// A request every 5 ms.
const RATE: u32 = 200;
const TWO_NODES: &str = "quorum = \"two_node\"\n";

/// Waits until `agent` reports owning the VIP group (or not).
fn wait_owner(agent: &Agent, owns: bool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = agent.status().expect("hactl status");
        let owned = status["cluster"]["owned"]
            .as_array()
            .is_some_and(|o| o.iter().any(|g| g == "web"));
        if owned == owns {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ownership never became {owns}: {status}\n{}",
            agent.log()
        );
        sleep(Duration::from_millis(20));
    }
}

/// The outage: the longest time between two successful requests (by start
/// time), and when it ended. Healthy, one succeeds every 5 ms.
fn outage(run: &RateRun) -> (Duration, Duration) {
    let successes: Vec<Duration> = run
        .attempts
        .iter()
        .filter(|a| a.error.is_none())
        .map(|a| a.at)
        .collect();
    successes
        .windows(2)
        .map(|w| (w[1] - w[0], w[1]))
        .max()
        .expect("requests succeeded")
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

    let rate = start_rate_client(
        dsr.client(),
        dsr.target,
        RATE,
        Duration::from_secs(5),
        Duration::from_millis(500),
    );
    sleep(Duration::from_secs(2));
    fail(&dsr, &mut lb1);
    let run = rate.join().expect("rate client");
    wait_owner(&lb2, true, Duration::from_secs(1));
    let (window, resumed) = outage(&run);
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
    let served = run.answered_by_after("b1", resumed) + run.answered_by_after("b2", resumed);
    assert!(
        served > 100,
        "{what}: traffic flows through lb2: {:?}",
        run.by_backend()
    );
    println!(
        "{what}: outage {} ms (longest time between two successful requests), {} of {} requests failed",
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
