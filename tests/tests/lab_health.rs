//! Backend failures in the lab, with real traffic: new connections at a
//! bounded rate and long-lived connections exchanging data every 10 ms,
//! while a backend's server is killed, its link is cut, or it is drained.

use std::{
    net::{IpAddr, Ipv4Addr},
    thread::sleep,
    time::{Duration, Instant},
};

use ha_tests::{
    LongLived, RateRun, agent::hactl, dsr::DsrLab, start_rate_client, traffic::LongLivedReport,
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(100);
const RISE: u32 = 2;
const FALL: u32 = 3;
const CHECK: &str = "  [vip.check]\n  type = \"tcp\"\n  interval = \"200ms\"\n  timeout = \"100ms\"\n  rise = 2\n  fall = 3\n";
/// New connections per second, and for how long.
const RATE: u32 = 200;
const RUN: Duration = Duration::from_secs(10);
const LONG_LIVED: usize = 20;
const EXCHANGE_PERIOD: Duration = Duration::from_millis(10);
/// Scheduling slack on a loaded 2-core machine: check tasks, the agent's
/// loop and the rate client all share two cores.
const SLACK: Duration = Duration::from_millis(400);

/// From the failure until the datapath has switched: `fall` failed checks,
/// one interval apart, the last one waiting out its timeout.
fn detection() -> Duration {
    INTERVAL * FALL + TIMEOUT + SLACK
}

/// From the backend's return until it is up again: `rise` passing checks.
fn recovery() -> Duration {
    INTERVAL * RISE + SLACK
}

struct Scenario {
    dsr: DsrLab,
    agent: ha_tests::agent::Agent,
}

impl Scenario {
    fn new() -> Scenario {
        let dsr = DsrLab::new(VIP, &BACKENDS, CHECK).expect("build the lab");
        let agent = dsr.start_agent(false).expect("start the agent");
        Scenario { dsr, agent }
    }

    /// Runs the traffic for RUN, calling `fail` after 2 s and `restore`
    /// after 5 s; returns the runs and when each action happened relative
    /// to the rate client's start.
    fn run(
        &mut self,
        fail: impl FnOnce(&mut DsrLab),
        restore: impl FnOnce(&mut DsrLab),
    ) -> (RateRun, LongLivedReport, Duration, Duration) {
        let long = LongLived::start(
            self.dsr.client(),
            self.dsr.target,
            LONG_LIVED,
            EXCHANGE_PERIOD,
        )
        .expect("long-lived connections");
        let rate = start_rate_client(
            self.dsr.client(),
            self.dsr.target,
            RATE,
            RUN,
            Duration::from_secs(1),
        );
        sleep(Duration::from_secs(2));
        let failed = Instant::now();
        fail(&mut self.dsr);
        sleep(Duration::from_secs(3));
        let restored = Instant::now();
        restore(&mut self.dsr);
        let run = rate.join().expect("rate client");
        let report = long.stop();
        let failed = failed.saturating_duration_since(run.started);
        let restored = restored.saturating_duration_since(run.started);
        (run, report, failed, restored)
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Asserts the failure scenario's promises and prints what was measured.
fn check_failover(
    what: &str,
    scenario: &Scenario,
    victim: &str,
    result: (RateRun, LongLivedReport, Duration, Duration),
) {
    let (run, report, failed, restored) = result;
    let log = scenario.agent.log();
    let after = run.failures_after(failed + detection());
    assert_eq!(
        after,
        0,
        "{what}: {after} new connections failed after detection ({} ms after the failure): {:?}\n{log}",
        ms(detection()),
        run.errors()
    );
    let broken = report.broken_on_other_backends(victim);
    assert!(
        broken.is_empty(),
        "{what}: long-lived connections to other backends broke: {:?}",
        broken
            .iter()
            .map(|c| (&c.backend, &c.broke))
            .collect::<Vec<_>>()
    );
    assert!(
        report
            .per_connection
            .iter()
            .any(|c| c.backend != victim && c.exchanges > 100),
        "{what}: long-lived connections exchanged data throughout"
    );
    let back = run.answered_by_after(victim, restored + recovery());
    assert!(
        back > 0,
        "{what}: {victim} got no new connection after it came back: {:?}\n{log}",
        run.by_backend()
    );
    assert!(
        log.contains("backend switched") && log.contains("phase1_us"),
        "{what}: decisions logged with their latency:\n{log}"
    );
    let last = run.last_failure().map(|t| t.saturating_sub(failed));
    println!(
        "{what}: {} attempts, {} failed (last {:?} ms after the failure, detection bound {} ms); \
         long-lived: {} connections, {} broken, all on {victim}; {victim} answered {back} after its return",
        run.attempts.len(),
        run.failures(),
        last.map(ms),
        ms(detection()),
        report.per_connection.len(),
        report.broken().len(),
    );
    for line in log.lines().filter(|l| l.contains("backend switched")) {
        println!("  agent: {line}");
    }
}

#[test]
fn a_killed_backend_costs_new_connections_only_until_detection() {
    let mut scenario = Scenario::new();
    let result = scenario.run(
        |dsr| dsr.kill_server("b1"),
        |dsr| dsr.restart_server("b1").expect("restart b1"),
    );
    check_failover("server killed", &scenario, "b1", result);
}

#[test]
fn a_cut_link_costs_new_connections_only_until_detection() {
    let mut scenario = Scenario::new();
    let result = scenario.run(
        |dsr| dsr.set_link("b2", false).expect("cut b2's link"),
        |dsr| dsr.set_link("b2", true).expect("restore b2's link"),
    );
    check_failover("link cut", &scenario, "b2", result);
}

#[test]
fn a_drained_backend_gets_no_new_connections_and_keeps_its_open_ones() {
    let mut scenario = Scenario::new();
    let socket = scenario.agent.control_socket();
    let socket = socket.to_string_lossy().to_string();
    let b3 = scenario.dsr.backend_address("b3").to_string();
    let (run, report, drained, undrained) = scenario.run(
        |_| {
            hactl(&["--socket", &socket, "drain", "web", &b3], false).expect("hactl drain");
        },
        |_| {
            hactl(&["--socket", &socket, "undrain", "web", &b3], false).expect("hactl undrain");
        },
    );
    // Attempts already in flight when the drain landed may still reach b3.
    let in_flight = Duration::from_millis(100);
    let during = run.attempts.iter().filter(|a| {
        a.at >= drained + in_flight && a.at < undrained && a.backend.as_deref() == Some("b3")
    });
    assert_eq!(
        during.count(),
        0,
        "new connections reached the drained backend: {:?}",
        run.by_backend()
    );
    assert_eq!(
        run.failures(),
        0,
        "draining fails no connection: {:?}",
        run.errors()
    );
    assert!(
        report.broken().is_empty(),
        "open connections finish normally: {:?}",
        report
            .broken()
            .iter()
            .map(|c| (&c.backend, &c.broke))
            .collect::<Vec<_>>()
    );
    let on_b3 = report
        .per_connection
        .iter()
        .filter(|c| c.backend == "b3")
        .count();
    assert!(
        run.answered_by_after("b3", undrained + in_flight) > 0,
        "undrained b3 gets new connections again"
    );
    println!(
        "drain: {} attempts, 0 failed, none reached b3 while drained; {on_b3} long-lived connections on b3 kept going and closed cleanly",
        run.attempts.len()
    );
}
