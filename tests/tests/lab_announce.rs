//! A standalone load balancer (no `[cluster]`) announces its VIPs: a
//! client that still holds another MAC for a VIP (the load balancer this
//! one replaces) learns the new node's MAC from the gratuitous ARP /
//! unsolicited NA sent when the agent starts, and when a reload adds a VIP.
//! Seen from the client's side: its neighbour table (run as root).

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ha_tests::{
    agent::hactl,
    dsr::{DsrLab, PORT},
    wait_until,
};

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// A VIP a reload adds.
const ADDED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
/// The MAC of the load balancer that was replaced.
const OLD_MAC: &str = "02:00:00:00:00:99";
/// How long the client may take to learn the new MAC: the announcement
/// burst is 3 frames 100 ms apart, and a stale entry never refreshes by
/// itself while unused.
const LEARN_WITHIN: Duration = Duration::from_secs(3);

/// The client's neighbour entry for `vip`, as `ip neigh` prints it.
fn neighbour(dsr: &DsrLab, vip: IpAddr) -> String {
    dsr.client()
        .exec(&["ip", "neigh", "show", &vip.to_string(), "dev", "eth0"])
        .unwrap_or_default()
}

/// The client caches `OLD_MAC` for `vip`, as it would after talking to the
/// previous load balancer (stale: not in use, not probed).
fn cache_old_mac(dsr: &DsrLab, vip: IpAddr) {
    dsr.client()
        .exec(&[
            "ip",
            "neigh",
            "replace",
            &vip.to_string(),
            "lladdr",
            OLD_MAC,
            "dev",
            "eth0",
            "nud",
            "stale",
        ])
        .expect("ip neigh replace");
    assert!(
        neighbour(dsr, vip).contains(OLD_MAC),
        "{}",
        neighbour(dsr, vip)
    );
}

fn lb_mac(dsr: &DsrLab) -> String {
    let mac = dsr.lab.host("lb").mac;
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Waits until the client's entry for `vip` names the load balancer.
fn assert_learned(dsr: &DsrLab, vip: IpAddr, what: &str, log: &str) {
    let mac = lb_mac(dsr);
    assert!(
        wait_until(LEARN_WITHIN, || neighbour(dsr, vip).contains(&mac)),
        "{what}: the client still has `{}` for {vip}, not the load balancer's {mac}\n{log}",
        neighbour(dsr, vip).trim()
    );
}

fn announced_at_start(vip: IpAddr) {
    let dsr = DsrLab::new(vip, &["b1"], "").expect("build the lab");
    cache_old_mac(&dsr, vip);
    let agent = dsr.start_agent(false).expect("start the agent");
    assert_learned(&dsr, vip, "after the start", &agent.log());
    // And the VIP answers through the new node.
    let tally = dsr.connect(20);
    assert_eq!(
        tally.failures,
        0,
        "{:?}\n{}",
        tally.first_errors,
        agent.log()
    );
}

#[test]
fn a_standalone_node_announces_its_ipv4_vip_at_start() {
    announced_at_start(IpAddr::V4(VIP4));
}

#[test]
fn a_standalone_node_announces_its_ipv6_vip_at_start() {
    announced_at_start(IpAddr::V6(VIP6));
}

#[test]
fn a_standalone_node_announces_a_vip_a_reload_adds() {
    let dsr = DsrLab::new(IpAddr::V4(VIP4), &["b1"], "").expect("build the lab");
    let agent = dsr.start_agent(false).expect("start the agent");
    let added = IpAddr::V4(ADDED4);
    cache_old_mac(&dsr, added);
    let config = fs::read_to_string(&agent.config).expect("read the config");
    let backend = dsr.backend_address("b1");
    fs::write(
        &agent.config,
        format!(
            "{config}[[vip]]\nname = \"api\"\naddress = \"{added}\"\nport = {PORT}\nprotocol = \"tcp\"\n  [[vip.backend]]\n  address = \"{backend}\"\n"
        ),
    )
    .expect("write the config");
    let socket = agent.control_socket();
    let answer = hactl(&["reload", "--socket", &socket.to_string_lossy()], false)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()));
    assert!(answer.contains("VIPs added: api"), "{answer}");
    assert_learned(&dsr, added, "after the reload", &agent.log());
}
