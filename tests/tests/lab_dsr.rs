//! End to end in the lab: a client, one load balancer running the real
//! agent, three backends holding the VIP on lo. Real TCP connections to the
//! VIP are balanced by the XDP program and answered by the backends
//! directly (L2 direct server return).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ha_tests::{
    Lab,
    agent::{Agent, counter, hactl},
    dsr::{DsrLab, PORT},
};

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];
const CONNECTIONS: u32 = 3000;

/// Reads one interface counter of `eth0` inside a host.
fn rx_packets(lab: &Lab, host: &str) -> u64 {
    lab.host(host)
        .ns
        .exec(&["cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .expect("read rx_packets")
        .trim()
        .parse()
        .expect("a number")
}

fn dsr_lab(vip: IpAddr) -> DsrLab {
    DsrLab::new(vip, &BACKENDS, "").expect("build the lab")
}

fn start_agent(dsr: &DsrLab, keep_datapath: bool) -> Agent {
    dsr.start_agent(keep_datapath).expect("start the agent")
}

fn balanced_connections(vip: IpAddr) {
    let dsr = dsr_lab(vip);
    let mut agent = start_agent(&dsr, false);
    let lb_rx_before = rx_packets(&dsr.lab, "lb");

    let tally = dsr.connect(CONNECTIONS);
    assert_eq!(
        tally.failures,
        0,
        "failed connections: {:?}\n{}",
        tally.first_errors,
        agent.log()
    );
    let third = CONNECTIONS as f64 / 3.0;
    for name in BACKENDS {
        let got = tally.by_name.get(name).copied().unwrap_or(0) as f64;
        assert!(
            (got - third).abs() <= third * 0.10,
            "{name} answered {got} of {CONNECTIONS} connections, not within 10% of a third: {:?}",
            tally.by_name
        );
    }
    // Every client packet went out again by XDP_TX; the lb received none
    // of the replies (they go backend -> client directly): what the lb
    // received beyond the forwarded packets is a handful of ARP/NDP frames.
    let maps = agent.maps().unwrap();
    let tx = counter(&maps, "tx");
    let lb_rx = rx_packets(&dsr.lab, "lb") - lb_rx_before;
    assert!(
        tx >= u64::from(CONNECTIONS) * 3,
        "at least SYN, ACK, FIN per connection went through XDP_TX: {tx}"
    );
    assert!(
        lb_rx <= tx + 50,
        "the lb saw reply traffic: {lb_rx} packets received, {tx} forwarded"
    );
    let resolver = if vip.is_ipv4() {
        "arp_reply"
    } else {
        "nd_reply"
    };
    assert!(
        counter(&maps, resolver) >= 1,
        "the XDP program answered the client's {resolver}"
    );
    // XDP_TX also carries the ARP/NDP replies; the rest is VIP traffic.
    let forwarded = tx - counter(&maps, "arp_reply") - counter(&maps, "nd_reply");
    let vip_packets = maps["vips"][0]["packets"].as_u64().unwrap();
    assert_eq!(
        vip_packets, forwarded,
        "per-VIP counter matches forwarded packets"
    );
    let per_backend: u64 = maps["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_backend, forwarded,
        "per-backend counters add up to forwarded packets"
    );

    // The human status names the VIP as a socket address would be written
    // (IPv6 in brackets).
    let text = hactl(
        &[
            "status",
            "--socket",
            &agent.control_socket().to_string_lossy(),
        ],
        false,
    )
    .expect("hactl status");
    let service = format!("({}/tcp)", SocketAddr::new(vip, PORT));
    assert!(text.contains(&service), "{service} in:\n{text}");

    let pins = agent.pin_dir();
    let status = agent.stop().unwrap();
    assert!(status.success(), "agent exit: {status}\n{}", agent.log());
    assert!(!pins.exists(), "SIGTERM unpins {}", pins.display());
    println!(
        "{} connections to {vip}: {:?}, lb forwarded {tx} packets, received {lb_rx}",
        CONNECTIONS, tally.by_name
    );
}

#[test]
fn ipv4_vip_balances_real_tcp_connections_by_direct_server_return() {
    balanced_connections(IpAddr::V4(VIP4));
}

#[test]
fn ipv6_vip_balances_real_tcp_connections_by_direct_server_return() {
    balanced_connections(IpAddr::V6(VIP6));
}

/// Removes a node's pins when the test ends, however it ends: an agent
/// started with --keep-datapath leaves them behind on purpose.
struct UnpinOnDrop(std::path::PathBuf);

impl Drop for UnpinOnDrop {
    fn drop(&mut self) {
        let _ = ha_agent::datapath::unpin_dir(&self.0);
    }
}

#[test]
fn keep_datapath_leaves_traffic_flowing_and_the_next_agent_adopts_it() {
    let dsr = dsr_lab(IpAddr::V4(VIP4));
    let mut first = start_agent(&dsr, true);
    let _cleanup = UnpinOnDrop(first.pin_dir());
    assert_eq!(dsr.connect(300).failures, 0, "{}", first.log());

    let status = first.stop().unwrap();
    assert!(status.success(), "{status}\n{}", first.log());
    assert!(
        first.pin_dir().join("link").exists(),
        "--keep-datapath leaves the link pinned"
    );
    // No agent now: the program keeps forwarding (the client still has the
    // VIP's MAC cached), and hactl reads the maps without one.
    let tally = dsr.connect(300);
    assert_eq!(
        tally.failures, 0,
        "without the agent: {:?}",
        tally.first_errors
    );
    let maps = first.maps().unwrap();
    assert!(counter(&maps, "tx") >= 300 * 3 * 2, "{maps}");

    // The next agent adopts the pinned maps and switches the pinned link
    // over to its own program.
    let mut second = start_agent(&dsr, false);
    assert!(second.log().contains("Replaced"), "{}", second.log());
    let tally = dsr.connect(300);
    assert_eq!(
        tally.failures,
        0,
        "after adoption: {:?}\n{}",
        tally.first_errors,
        second.log()
    );
    let status = second.stop().unwrap();
    assert!(status.success(), "{status}\n{}", second.log());
    assert!(
        !second.pin_dir().exists(),
        "the second agent unpins on SIGTERM"
    );
}

#[test]
fn prometheus_metrics_expose_counters_health_and_ownership() {
    let metrics = "[metrics]\nlisten = \"127.0.0.1:9810\"\n";
    let dsr = DsrLab::new(IpAddr::V4(VIP4), &BACKENDS, metrics).expect("build the lab");
    let agent = start_agent(&dsr, false);
    assert_eq!(dsr.connect(300).failures, 0);
    // A late segment of the connections above may still arrive: the
    // scrape must fall between two readings of the maps.
    let vip_packets = |maps: &serde_json::Value| maps["vips"][0]["packets"].as_u64().unwrap();
    let before = vip_packets(&agent.maps().unwrap());
    let scrape = dsr.lab.host("lb").ns.run(|| {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect("127.0.0.1:9810").expect("connect to the metrics port");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: lb\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    });
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    let value = |prefix: &str| -> u64 {
        scrape
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{scrape}"))
    };
    let maps = agent.maps().unwrap();
    let after = vip_packets(&maps);
    assert!(before >= 900, "{maps}");
    let scraped = value("ha_vip_packets_total{vip=\"web\"");
    assert!(
        (before..=after).contains(&scraped),
        "scraped {scraped} packets, maps said {before} before and {after} after"
    );
    assert_eq!(value("ha_vip_owned{vip=\"web\"}"), 1);
    for b in BACKENDS {
        let address = dsr.backend_address(b);
        assert_eq!(
            value(&format!(
                "ha_backend_up{{vip=\"web\",backend=\"{address}\"}}"
            )),
            1
        );
    }
    assert_eq!(
        value("ha_datapath_packets_total{counter=\"tx\"}"),
        counter(&maps, "tx")
    );
    assert!(
        scrape.contains("ha_switchover_phase1_seconds_bucket"),
        "{scrape}"
    );
}

#[test]
fn kill_9_and_restart_of_the_agent_under_traffic_fails_no_connection() {
    let dsr = dsr_lab(IpAddr::V4(VIP4));
    let mut first = start_agent(&dsr, true);
    let rate = ha_tests::start_rate_client(
        dsr.client(),
        dsr.target,
        200,
        std::time::Duration::from_secs(6),
        std::time::Duration::from_secs(1),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    // A crash: no cleanup at all. The pinned program keeps forwarding.
    first.kill().expect("kill -9");
    std::thread::sleep(std::time::Duration::from_secs(2));
    // The next agent adopts the pins and swaps in its own program on the
    // pinned link atomically.
    let second = start_agent(&dsr, false);
    let run = rate.join().expect("rate client");
    assert!(second.log().contains("Replaced"), "{}", second.log());
    assert_eq!(
        run.failures(),
        0,
        "connections failed across the crash and restart: {:?}",
        run.errors()
    );
    println!(
        "kill -9 + restart under 200 connections/s: {} connections, {} failed, longest gap {:?}",
        run.attempts.len(),
        run.failures(),
        run.longest_gap().map(|(gap, _)| gap)
    );
}
