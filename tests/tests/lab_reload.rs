//! Configuration reload under traffic (run as root): VIPs and backends
//! added and removed with `hactl reload` and SIGHUP while a rate client
//! opens 200 connections/s and 30 long-lived connections exchange every
//! 10 ms; an invalid file in between changes nothing. And a rolling reload
//! of a two-node cluster: the owner keeps the VIP while the configs differ.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use ha_tests::{
    LongLived,
    agent::{Agent, hactl},
    connect_many,
    dsr::{DsrLab, PORT},
    start_rate_client, wait_until,
};
use serde_json::Value;

const WEB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const API: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
const CHECK: &str = "  [vip.check]\n  type = \"tcp\"\n  interval = \"200ms\"\n  timeout = \"100ms\"\n  rise = 2\n  fall = 3\n";

/// (address, VIP id) of every VIP and (VIP id, address, backend id) of
/// every backend, from the pinned maps.
type Numbering = (Vec<(String, u64)>, Vec<(u64, String, u64)>);

fn numbering(agent: &Agent) -> Numbering {
    let maps = agent.maps().expect("hactl maps");
    let rows = |name: &str| maps[name].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut vips: Vec<(String, u64)> = rows("vips")
        .iter()
        .map(|v| (text(&v["address"]), v["id"].as_u64().unwrap()))
        .collect();
    let mut backends: Vec<(u64, String, u64)> = rows("backends")
        .iter()
        .map(|b| {
            let vip = b["vip"].as_u64().unwrap();
            (vip, text(&b["address"]), b["id"].as_u64().unwrap())
        })
        .collect();
    vips.sort();
    backends.sort();
    (vips, backends)
}

fn id_of(numbering: &[(u64, String, u64)], vip: u64, address: IpAddr) -> Option<u64> {
    numbering
        .iter()
        .find(|(v, a, _)| *v == vip && *a == address.to_string())
        .map(|(_, _, id)| *id)
}

/// The `[[vip]]` table of the API VIP over `backends`, and its check.
fn api_vip(backends: &[IpAddr]) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("  [[vip.backend]]\n  address = \"{b}\"\n"))
        .collect();
    format!(
        "[[vip]]\nname = \"api\"\naddress = \"{API}\"\nport = {PORT}\nprotocol = \"tcp\"\n{list}{CHECK}"
    )
}

fn reloads_logged(agent: &Agent) -> usize {
    agent.log().matches("configuration reloaded").count()
}

#[test]
fn reload_adds_and_removes_vips_and_backends_under_traffic() {
    let dsr = DsrLab::new(IpAddr::V4(WEB), &["b1", "b2", "b3"], CHECK).expect("build the lab");
    for b in ["b1", "b2", "b3"] {
        dsr.lab
            .make_dsr_backend(b, &[IpAddr::V4(API)])
            .expect("API VIP on the backends");
    }
    let mut agent = dsr.start_agent(false).expect("start the agent");
    let [b1, b2, b3] = ["b1", "b2", "b3"].map(|b| dsr.backend_address(b));
    let original = fs::read_to_string(&agent.config).expect("read the config");
    let b3_entry = format!("  [[vip.backend]]\n  address = \"{b3}\"\n");
    assert!(original.contains(&b3_entry), "{original}");
    let (vips0, backends0) = numbering(&agent);
    let web_id = vips0[0].1;

    let client = dsr.client();
    let web = dsr.target;
    let api = SocketAddr::new(IpAddr::V4(API), PORT);
    let long = LongLived::start(client, web, 30, Duration::from_millis(10)).expect("long-lived");
    let rate = start_rate_client(
        client,
        web,
        200,
        Duration::from_secs(7),
        Duration::from_secs(1),
    );
    let began = Instant::now();

    // 1. hactl reload: b3 leaves web, the API VIP arrives, ahead of web in
    // the file (numbered by position, web's flows would all move).
    thread::sleep(Duration::from_millis(1500));
    let web_table = "[[vip]]\nname = \"web\"";
    assert!(original.contains(web_table), "{original}");
    let first = original.replacen(&b3_entry, "", 1).replacen(
        web_table,
        &format!("{}\n{web_table}", api_vip(&[b1, b2])),
        1,
    );
    fs::write(&agent.config, &first).unwrap();
    let reload1_at = began.elapsed();
    let socket = agent.control_socket();
    let answer = hactl(&["reload", "--socket", &socket.to_string_lossy()], false)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()));
    assert_eq!(
        answer.trim(),
        "reloaded: VIPs added: api; backends added: 2; backends removed: 1",
        "{}",
        agent.log()
    );
    let api_tally = connect_many(client, api, 100, Duration::from_secs(1));
    assert_eq!(
        api_tally.failures, 0,
        "API VIP: {:?}",
        api_tally.first_errors
    );
    assert_eq!(
        api_tally.by_name.keys().collect::<Vec<_>>(),
        ["b1", "b2"],
        "API VIP balanced over b1 and b2"
    );
    let (vips1, backends1) = numbering(&agent);
    assert_eq!(vips1.len(), 2);
    assert!(vips1.contains(&(WEB.to_string(), web_id)), "{vips1:?}");
    for b in [b1, b2] {
        assert_eq!(
            id_of(&backends1, web_id, b),
            id_of(&backends0, web_id, b),
            "a staying backend keeps its id: {backends0:?} -> {backends1:?}"
        );
    }
    assert_eq!(id_of(&backends1, web_id, b3), None, "b3 left web");

    // 2. An invalid file changes nothing; the error names file, line, field.
    thread::sleep(Duration::from_millis(500));
    let broken = first.replacen(&format!("port = {PORT}"), "port = \"eighty\"", 1);
    fs::write(&agent.config, &broken).unwrap();
    let refused = hactl(&["reload", "--socket", &socket.to_string_lossy()], false)
        .expect_err("an invalid file must be refused");
    let message = format!("{refused:#}");
    let config_path = agent.config.display().to_string();
    assert!(
        message.contains(&config_path) && message.contains("port"),
        "the error names the file and field: {message}"
    );
    assert!(
        agent.log().contains("configuration reload refused"),
        "{}",
        agent.log()
    );
    assert_eq!(numbering(&agent), (vips1, backends1));

    // 3. SIGHUP: b3 comes back to web, the API VIP goes.
    thread::sleep(Duration::from_millis(500));
    let third = original;
    fs::write(&agent.config, &third).unwrap();
    let before = reloads_logged(&agent);
    let reload3_at = began.elapsed();
    agent.signal(libc::SIGHUP).expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads_logged(&agent) == before {
        assert!(
            Instant::now() < deadline,
            "no reload after SIGHUP:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let (vips3, backends3) = numbering(&agent);
    assert_eq!(vips3, [(WEB.to_string(), web_id)], "API VIP removed");
    for b in [b1, b2] {
        assert_eq!(id_of(&backends3, web_id, b), id_of(&backends0, web_id, b));
    }
    assert!(id_of(&backends3, web_id, b3).is_some(), "{backends3:?}");
    let gone = connect_many(client, api, 3, Duration::from_millis(300));
    assert_eq!(gone.failures, 3, "API VIP still answered after removal");

    let run = rate.join().expect("rate client");
    let report = long.stop();

    // Connections to the backends that stayed never broke; those to b3
    // were moved when it left.
    let broken_staying: Vec<_> = report
        .per_connection
        .iter()
        .filter(|c| c.backend != "b3" && c.broke.is_some())
        .collect();
    assert!(
        broken_staying.is_empty(),
        "{broken_staying:?}\n{}",
        agent.log()
    );
    let on_b3: Vec<_> = report
        .per_connection
        .iter()
        .filter(|c| c.backend == "b3")
        .collect();
    assert!(
        !on_b3.is_empty(),
        "no long-lived connection reached b3: {:?}",
        report.by_backend()
    );
    assert!(on_b3.iter().all(|c| c.broke.is_some()), "{on_b3:?}");

    // New connections: none failed except, at most, one that b3 had
    // accepted in the instant it was removed.
    let failed: Vec<Duration> = run
        .attempts
        .iter()
        .filter(|a| a.error.is_some())
        .map(|a| a.at)
        .collect();
    let around_removal = |t: &Duration| {
        *t + Duration::from_secs(1) >= reload1_at && *t <= reload1_at + Duration::from_millis(200)
    };
    assert!(
        failed.iter().all(around_removal),
        "failures away from b3's removal at {reload1_at:?}: {failed:?} {:?}",
        run.errors()
    );
    assert!(failed.len() <= 2, "{failed:?} {:?}", run.errors());
    let b3_between = run
        .attempts
        .iter()
        .filter(|a| a.at > reload1_at + Duration::from_millis(200) && a.at < reload3_at)
        .filter(|a| a.backend.as_deref() == Some("b3"))
        .count();
    assert_eq!(b3_between, 0, "b3 took new connections while removed");
    let b3_after = run.answered_by_after("b3", reload3_at + Duration::from_millis(500));
    assert!(
        b3_after > 0,
        "b3 took no connection after coming back: {:?}",
        run.by_backend()
    );

    println!(
        "reload under traffic: {} new connections ({:?}), {} failed {:?}; long-lived: {:?}, \
         broken: {} (all on the removed b3); API VIP: {:?}; ids kept: web {web_id}, \
         backends {:?} -> {:?}",
        run.attempts.len(),
        run.by_backend(),
        failed.len(),
        failed,
        report.by_backend(),
        report.broken().len(),
        api_tally.by_name,
        backends0,
        backends3
    );
    agent.stop().expect("stop the agent");
}

/// Waits until `check` holds, or fails with `what`.
fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    assert!(wait_until(timeout, check), "{what} not within {timeout:?}");
}

fn digest_matches(agent: &Agent) -> bool {
    agent.status().expect("hactl status")["cluster"]["peers"][0]["digest_matches"] == true
}

#[test]
fn a_rolling_reload_of_a_cluster_keeps_the_owner_and_its_connections() {
    let dsr = DsrLab::cluster(
        IpAddr::V4(WEB),
        &[("lb1", 200), ("lb2", 100)],
        &["b1", "b2", "b3"],
        "quorum = \"two_node\"\n",
    )
    .expect("build the lab");
    let lb1 = dsr.start_agent_on("lb1", false).expect("lb1");
    let lb2 = dsr.start_agent_on("lb2", false).expect("lb2");
    wait_for("lb1 owning the VIP", Duration::from_secs(10), || {
        lb1.owns("web")
    });
    assert!(digest_matches(&lb1) && digest_matches(&lb2));
    let b3 = dsr.backend_address("b3");
    let b3_entry = format!("  [[vip.backend]]\n  address = \"{b3}\"\n");

    let client = dsr.client();
    let long =
        LongLived::start(client, dsr.target, 20, Duration::from_millis(10)).expect("long-lived");
    let rate = start_rate_client(
        client,
        dsr.target,
        200,
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    let began = Instant::now();
    thread::sleep(Duration::from_millis(1000));

    // The owner first: b3 leaves. The two configs differ: both say so,
    // and the owner keeps the VIP.
    let reload = |agent: &Agent| {
        let text = fs::read_to_string(&agent.config).unwrap();
        assert!(text.contains(&b3_entry), "{text}");
        fs::write(&agent.config, text.replacen(&b3_entry, "", 1)).unwrap();
        let socket = agent.control_socket();
        hactl(&["reload", "--socket", &socket.to_string_lossy()], false)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()))
    };
    let removed_at = began.elapsed();
    assert_eq!(reload(&lb1).trim(), "reloaded: backends removed: 1");
    wait_for("lb2 seeing another config", Duration::from_secs(2), || {
        !digest_matches(&lb2)
    });
    assert!(!digest_matches(&lb1));
    thread::sleep(Duration::from_millis(500));
    assert!(lb1.owns("web") && !lb2.owns("web"));

    // Then the other node: they agree again.
    assert_eq!(reload(&lb2).trim(), "reloaded: backends removed: 1");
    wait_for("the configs agreeing again", Duration::from_secs(2), || {
        digest_matches(&lb1) && digest_matches(&lb2)
    });
    assert!(lb1.owns("web") && !lb2.owns("web"));

    let run = rate.join().expect("rate client");
    let report = long.stop();
    assert!(
        !lb2.log().contains("VIP group taken") && !lb1.log().contains("VIP group released"),
        "the VIP moved:\nlb1:\n{}\nlb2:\n{}",
        lb1.log(),
        lb2.log()
    );
    let broken: Vec<_> = report
        .per_connection
        .iter()
        .filter(|c| c.backend != "b3" && c.broke.is_some())
        .collect();
    assert!(broken.is_empty(), "{broken:?}");
    let late: Vec<Duration> = run
        .attempts
        .iter()
        .filter(|a| a.error.is_some() && a.at > removed_at + Duration::from_millis(200))
        .map(|a| a.at)
        .collect();
    assert!(
        late.is_empty(),
        "failures after b3 left: {late:?} {:?}",
        run.errors()
    );
    println!(
        "rolling reload of two nodes: {} new connections ({:?}), {} failed; long-lived {:?}, \
         broken {} (on the removed b3 only); the VIP stayed on lb1",
        run.attempts.len(),
        run.by_backend(),
        run.failures(),
        report.by_backend(),
        report.broken().len()
    );
}
