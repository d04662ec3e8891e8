//! Tests of the lab harness itself (run as root): the lab connects its hosts
//! over IPv4 and IPv6, cleans up after itself even on panic, never touches
//! the root namespace, carries TCP, and a DSR backend keeps quiet about its
//! VIPs on the wire.

use std::{
    net::{IpAddr, SocketAddr},
    panic::{self, AssertUnwindSafe},
    process::Command,
    time::{Duration, Instant},
};

use ha_tests::{Lab, NameServer, Netns, connect_many};

fn netns_list() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run `ip netns list`");
    String::from_utf8(out.stdout).unwrap()
}

fn root_ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` in the root namespace");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_gone(names: &[String]) {
    let listed = netns_list();
    for name in names {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "namespace {name} still exists:\n{listed}"
        );
    }
}

fn lab_namespaces(lab: &Lab, hosts: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = hosts
        .iter()
        .map(|h| lab.host(h).ns.name().to_owned())
        .collect();
    names.push(lab.switch().name().to_owned());
    names
}

#[test]
fn hosts_reach_each_other_and_everything_goes_away() {
    let link_before = root_ip(&["-o", "link"]);
    let addr_before = root_ip(&["-o", "addr"]);
    let hosts = ["a", "b", "c"];
    let lab = Lab::new(&hosts).unwrap();
    let names = lab_namespaces(&lab, &hosts);
    let listed = netns_list();
    for name in &names {
        assert!(
            listed.contains(name.as_str()),
            "{name} missing from:\n{listed}"
        );
    }
    for from in hosts {
        for to in hosts.iter().filter(|&&to| to != from) {
            let (from, to) = (lab.host(from), lab.host(to));
            for target in [to.ipv4.to_string(), to.ipv6.to_string()] {
                from.ns.exec(&["ping", "-c1", "-W1", &target]).unwrap();
            }
        }
    }

    let a = lab.host("a");
    assert_eq!(
        (a.ipv4.to_string(), a.ipv6.to_string()),
        ("198.18.0.10".into(), "2001:2::10".into())
    );
    let c = lab.host("c");
    let link = c.ns.exec(&["ip", "-o", "link", "show", "eth0"]).unwrap();
    assert!(link.contains("02:00:00:00:00:12"), "{link}");
    let ports = lab
        .switch()
        .exec(&["ip", "-o", "link", "show", "master", "br0"])
        .unwrap();
    assert!(ports.contains(c.switch_port()), "{ports}");
    let switch_v6 = lab.switch().exec(&["ip", "-6", "-o", "addr"]).unwrap();
    assert_eq!(switch_v6, "", "the switch should have no IPv6 addresses");

    // `command` enters the network namespace only: same mounts as the caller.
    let output = |cmd: &mut Command| String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    let inside = output(a.ns.command("ip").args(["-o", "addr", "show", "eth0"]));
    assert!(inside.contains("198.18.0.10/24"), "{inside}");
    let mnt = |cmd: &mut Command| output(cmd.args(["-n", "/proc/self/ns/mnt"]));
    assert_eq!(
        mnt(&mut a.ns.command("readlink")),
        mnt(&mut Command::new("readlink"))
    );

    drop(lab);
    assert_gone(&names);
    assert_eq!(
        root_ip(&["-o", "link"]),
        link_before,
        "root namespace links changed"
    );
    assert_eq!(
        root_ip(&["-o", "addr"]),
        addr_before,
        "root namespace addresses changed"
    );
}

#[test]
fn namespaces_go_away_on_panic() {
    let mut names = Vec::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new(&["x", "y"]).unwrap();
        names = lab_namespaces(&lab, &["x", "y"]);
        lab.host("x").ns.run(|| panic!("boom inside the lab"));
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 3);
    assert_gone(&names);
}

#[test]
fn name_server_answers_every_connection() {
    let lab = Lab::new(&["a", "b"]).unwrap();
    let b = lab.host("b");
    let server = NameServer::start(&b.ns, SocketAddr::new(b.ipv4.into(), 8080), "b").unwrap();
    let started = Instant::now();
    let tally = connect_many(
        &lab.host("a").ns,
        SocketAddr::new(b.ipv4.into(), 8080),
        50,
        Duration::from_secs(2),
    );
    eprintln!("50 connections in {:?}", started.elapsed());
    assert_eq!(tally.failures, 0, "{:?}", tally.first_errors);
    assert_eq!(
        tally.by_name.into_iter().collect::<Vec<_>>(),
        [("b".to_owned(), 50)]
    );
    assert_eq!(server.accepted(), 50);

    let v6 = SocketAddr::new(b.ipv6.into(), 8080);
    let _server6 = NameServer::start(&b.ns, v6, "b6").unwrap();
    let tally = connect_many(&lab.host("a").ns, v6, 5, Duration::from_secs(2));
    assert_eq!(tally.by_name.get("b6"), Some(&5), "{tally:?}");
}

/// The absolute value of one kernel counter in a namespace.
fn nstat(ns: &Netns, counter: &str) -> u64 {
    let out = ns.exec(&["nstat", "-asz", counter]).unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with(counter))
        .unwrap_or_else(|| panic!("{out}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn dsr_backend_does_not_answer_arp_or_nd_for_its_vips() {
    let lab = Lab::new(&["a", "b"]).unwrap();
    let (a, b) = (&lab.host("a").ns, &lab.host("b").ns);
    let vip4: IpAddr = "198.18.1.100".parse().unwrap();
    let vip6: IpAddr = "2001:2::100".parse().unwrap();
    lab.make_dsr_backend("b", &[vip4, vip6]).unwrap();
    lab.disable_tx_checksum_offload("a").unwrap();
    let features = a.exec(&["ethtool", "-k", "eth0"]).unwrap();
    assert!(features.contains("tx-checksumming: off"), "{features}");
    // The IPv4 VIP is outside a's /24: put it on the link, as a router would.
    a.exec(&["ip", "route", "add", "198.18.1.100/32", "dev", "eth0"])
        .unwrap();
    // Let b hear the solicitations for the IPv6 VIP: an eth0 address that
    // shares its solicited-node group (ff02::1:ff00:100). Without it eth0
    // drops them before neighbour discovery even looks.
    b.exec(&[
        "ip",
        "addr",
        "add",
        "2001:2:0:1::100/64",
        "dev",
        "eth0",
        "nodad",
    ])
    .unwrap();

    let servers =
        [vip4, vip6].map(|vip| NameServer::start(b, SocketAddr::new(vip, 80), "b").unwrap());
    let short = Duration::from_millis(300);
    for vip in [vip4, vip6] {
        // b serves the VIP to itself...
        let local = connect_many(b, SocketAddr::new(vip, 80), 1, short);
        assert_eq!(local.by_name.get("b"), Some(&1), "{local:?}");
        // ...but a cannot resolve it: b answers neither ARP nor NS for it.
        let tally = connect_many(a, SocketAddr::new(vip, 80), 3, short);
        assert_eq!(tally.failures, 3, "{vip} answered: {tally:?}");
        let neigh = a.exec(&["ip", "neigh", "show", &vip.to_string()]).unwrap();
        assert!(!neigh.contains("lladdr"), "{vip} resolved: {neigh}");
    }
    assert_eq!(servers.iter().map(NameServer::accepted).sum::<u64>(), 2);
    assert!(
        nstat(b, "Icmp6InNeighborSolicits") > 0,
        "no solicitation reached b"
    );
    assert_eq!(
        nstat(b, "Icmp6OutNeighborAdvertisements"),
        0,
        "b advertised a VIP"
    );

    // Control: without arp_ignore b answers ARP for its lo address, so the
    // IPv4 failure above came from arp_ignore and not from the lab.
    b.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.arp_ignore=0",
        "net.ipv4.conf.eth0.arp_ignore=0",
    ])
    .unwrap();
    a.exec(&["ip", "neigh", "flush", "dev", "eth0"]).unwrap();
    let tally = connect_many(a, SocketAddr::new(vip4, 80), 3, Duration::from_secs(2));
    assert_eq!(tally.by_name.get("b"), Some(&3), "{tally:?}");
}
