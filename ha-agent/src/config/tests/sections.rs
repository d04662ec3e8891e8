//! `[node]`, `[datapath]`, `[[vip]]` with backends and groups, `[metrics]`.

use super::*;
use crate::cluster::digest::digest;
use ha_common::{MAX_RING_SIZE, MAX_VIPS};

#[test]
fn config_node_name() {
    for bad in ["", "lb/1", "lb 1", ".", "..", "ä", &"x".repeat(33)] {
        check(
            &base_with("\"lb1\"", &format!("\"{bad}\"")),
            2,
            8,
            "node.name",
            "must be 1..=32",
        );
    }
    for good in ["a", "lb-1.example_2", &"x".repeat(32)] {
        ok(&base_with("\"lb1\"", &format!("\"{good}\"")));
    }
}

#[test]
fn config_node_interface() {
    for bad in ["", "eth/0", "eth 0", "eth0:1", "..", &"e".repeat(16)] {
        check(
            &base_with("\"eth0\"", &format!("\"{bad}\"")),
            3,
            13,
            "node.interface",
            "must be 1..=15",
        );
    }
    ok(&base_with("\"eth0\"", "\"veth-lb1.100\""));
}

#[test]
fn config_bad_mac() {
    for bad in [
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "02-00-00-00-00-01",
        "2:0:0:0:0:1",
        "zz:00:00:00:00:01",
        "",
    ] {
        check(
            &base_with("\"eth0\"", &format!("\"eth0\"\nmac = \"{bad}\"")),
            4,
            7,
            "node.mac",
            "is not a MAC address",
        );
    }
    for bad in [
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        check(
            &base_with("\"eth0\"", &format!("\"eth0\"\nmac = \"{bad}\"")),
            4,
            7,
            "node.mac",
            "unicast",
        );
    }
    check(
        &format!("{BASE}mac = \"02:00:00:00:00\"\n"),
        11,
        7,
        "vip[0].backend[0].mac",
        "is not a MAC address",
    );
}

#[test]
fn config_datapath_values() {
    let with = |line: &str| format!("[datapath]\n{line}\n{BASE}");
    check(
        &with("ring_size = 65536"),
        2,
        13,
        "datapath.ring_size",
        "not prime",
    );
    check(
        &with("ring_size = 65536"),
        2,
        13,
        "datapath.ring_size",
        "65537",
    );
    check(
        &with("ring_size = 5"),
        2,
        13,
        "datapath.ring_size",
        "must be 7..=",
    );
    check(
        &with("ring_size = 1048583"),
        2,
        13,
        "datapath.ring_size",
        "must be 7..=",
    );
    check(
        &with("max_flows = 0"),
        2,
        13,
        "datapath.max_flows",
        "must be 1..=16777216",
    );
    check(
        &with("max_flows = 16777217"),
        2,
        13,
        "datapath.max_flows",
        "must be 1..=",
    );
    check(
        &with("pin_dir = \"bpf/ha\""),
        2,
        11,
        "datapath.pin_dir",
        "absolute",
    );
    check(
        &with("pin_dir = \"\""),
        2,
        11,
        "datapath.pin_dir",
        "absolute",
    );
    assert_eq!(ok(&with("ring_size = 7")).datapath.ring_size, 7);
    assert_eq!(
        ok(&with(&format!("ring_size = {MAX_RING_SIZE}")))
            .datapath
            .ring_size,
        MAX_RING_SIZE
    );
    assert_eq!(
        ok(&with("max_flows = 16777216")).datapath.max_flows,
        16_777_216
    );
}

#[test]
fn config_ring_size_larger_than_backends() {
    let mut text = format!("[datapath]\nring_size = 7\n{BASE}");
    for i in 12..=16 {
        text += &format!("[[vip.backend]]\naddress = \"198.18.0.{i}\"\n");
    }
    // 6 backends fit in a ring of 7, 7 do not.
    ok(&text);
    text += "[[vip.backend]]\naddress = \"198.18.0.17\"\n";
    check(
        &text,
        2,
        13,
        "datapath.ring_size",
        "larger than the 7 backends of vip[0]",
    );
}

#[test]
fn config_no_vip() {
    check(
        "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n",
        1,
        1,
        "vip",
        "at least one [[vip]]",
    );
}

#[test]
fn config_vip_needs_backend() {
    let text = BASE.replace("[[vip.backend]]\naddress = \"198.18.0.11\"\n", "");
    check(
        &text,
        5,
        1,
        "vip[0].backend",
        "at least one [[vip.backend]]",
    );
}

#[test]
fn config_vip_address() {
    for (bad, needle) in [
        ("198.18.0.300", "is not an IPv4 or IPv6 address"),
        ("198.18.0.100:80", "is not an IPv4 or IPv6 address"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("224.0.0.18", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("::ffff:198.18.0.100", "IPv4-mapped"),
    ] {
        check(
            &base_with("\"198.18.0.100\"", &format!("\"{bad}\"")),
            6,
            11,
            "vip[0].address",
            needle,
        );
    }
    check(
        &format!("{BASE}[[vip.backend]]\naddress = \"::1\"\n"),
        12,
        11,
        "vip[0].backend[1].address",
        "loopback",
    );
}

#[test]
fn config_port_zero() {
    check(
        &base_with("port = 80", "port = 0"),
        7,
        8,
        "vip[0].port",
        "must be 1..=65535",
    );
}

#[test]
fn config_duplicate_vip() {
    check(
        &second_vip("198.18.0.100", 80, "tcp", ""),
        12,
        11,
        "vip[1].address",
        "duplicate VIP 198.18.0.100:80/tcp (also vip[0])",
    );
    // Another port or protocol is another service.
    assert_eq!(ok(&second_vip("198.18.0.100", 80, "udp", "")).vips.len(), 2);
    assert_eq!(
        ok(&second_vip("198.18.0.100", 443, "tcp", "")).vips.len(),
        2
    );
}

#[test]
fn config_duplicate_vip_name() {
    let named = base_with("[[vip]]\n", "[[vip]]\nname = \"web\"\n");
    let text = format!(
        "{named}[[vip]]\nname = \"web\"\naddress = \"198.18.0.101\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
    );
    check(
        &text,
        13,
        8,
        "vip[1].name",
        "duplicate VIP name `web` (also vip[0])",
    );
    // An explicit name may not take another VIP's default name.
    let text = second_vip(
        "198.18.0.101",
        80,
        "tcp",
        "name = \"198.18.0.100:80/tcp\"\n",
    );
    check(&text, 12, 8, "vip[1].name", "duplicate VIP name");
    check(
        &base_with("[[vip]]\n", "[[vip]]\nname = \"a b\"\n"),
        6,
        8,
        "vip[0].name",
        "whitespace",
    );
    check(
        &base_with("[[vip]]\n", "[[vip]]\nname = \"\"\n"),
        6,
        8,
        "vip[0].name",
        "1..=64",
    );
}

#[test]
fn config_too_many_vips() {
    let max = (MAX_VIPS - 1) as usize;
    let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
    for port in 1..=max {
        text += &format!(
            "[[vip]]\naddress = \"198.18.0.100\"\nport = {port}\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
        );
    }
    assert_eq!(ok(&text).vips.len(), max);
    text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 9999\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n";
    check(
        &text,
        4 + 6 * max,
        1,
        &format!("vip[{max}]"),
        &format!("at most {max} VIPs"),
    );
}

#[test]
fn config_too_many_backends() {
    let max = (MAX_BACKENDS - 1) as usize;
    let backend = |i: usize| {
        format!(
            "[[vip.backend]]\naddress = \"198.18.{}.{}\"\n",
            i / 250,
            i % 250 + 1
        )
    };
    // All but 10 backends in the first VIP, the rest in a second one; the
    // VIP's address is none of theirs (a backend may not be a VIP).
    let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
    text += "[[vip]]\naddress = \"198.19.0.100\"\nport = 80\nprotocol = \"tcp\"\n";
    for i in 0..max - 10 {
        text += &backend(i);
    }
    text += "[[vip]]\naddress = \"198.19.0.100\"\nport = 81\nprotocol = \"tcp\"\n";
    for i in 0..10 {
        text += &backend(i);
    }
    let config = ok(&text);
    assert_eq!(
        config.vips.iter().map(|v| v.backends.len()).sum::<usize>(),
        max
    );
    text += &backend(10);
    let line = 3 + 4 + 2 * (max - 10) + 4 + 2 * 10 + 2;
    check(
        &text,
        line,
        11,
        "vip[1].backend[10].address",
        &format!("at most {max} backends"),
    );
}

#[test]
fn config_duplicate_backend() {
    check(
        &format!("{BASE}[[vip.backend]]\naddress = \"198.18.0.11\"\n"),
        12,
        11,
        "vip[0].backend[1].address",
        "duplicate backend 198.18.0.11 (also vip[0].backend[0])",
    );
    // The same backend behind two VIPs is fine.
    assert_eq!(ok(&second_vip("198.18.0.101", 80, "tcp", "")).vips.len(), 2);
}

#[test]
fn config_family_mismatch() {
    check(
        &format!("{BASE}[[vip.backend]]\naddress = \"2001:2::11\"\n"),
        12,
        11,
        "vip[0].backend[1].address",
        "IPv6 backend for an IPv4 VIP",
    );
    let text = second_vip("2001:2::100", 80, "tcp", "");
    check(
        &text,
        16,
        11,
        "vip[1].backend[0].address",
        "IPv4 backend for an IPv6 VIP",
    );
}

#[test]
fn config_weight() {
    check(
        &format!("{BASE}weight = 65536\n"),
        11,
        10,
        "vip[0].backend[0].weight",
        "must be 0..=65535",
    );
    let config = ok(&format!("{BASE}weight = 65535\n"));
    assert_eq!(config.vips[0].backends[0].weight, 65535);
}

#[test]
fn config_on_no_backend() {
    let with = |value: &str| base_with("port = 80", &format!("port = 80\non_no_backend = {value}"));
    assert_eq!(ok(&with("\"pass\"")).vips[0].on_no_backend, NoBackend::Pass);
    assert_eq!(ok(&with("\"drop\"")).vips[0].on_no_backend, NoBackend::Drop);
    check(
        &with("\"reject\""),
        8,
        17,
        "vip[0].on_no_backend",
        "unknown variant `reject`",
    );
    check(
        &with("\"Drop\""),
        8,
        17,
        "vip[0].on_no_backend",
        "unknown variant `Drop`",
    );
    check(
        &with("true"),
        8,
        17,
        "vip[0].on_no_backend",
        "wanted string",
    );
}

#[test]
fn config_control_socket() {
    let with = |value: &str| {
        base_with(
            "\"eth0\"",
            &format!("\"eth0\"\ncontrol_socket = \"{value}\""),
        )
    };
    assert_eq!(
        ok(&with("/run/ha.sock")).node.control_socket,
        Path::new("/run/ha.sock")
    );
    let longest = format!("/{}", "s".repeat(106));
    assert_eq!(ok(&with(&longest)).node.control_socket, Path::new(&longest));
    for bad in [
        "run/ha.sock",
        "",
        "./ha.sock",
        &format!("/{}", "s".repeat(107)),
    ] {
        check(
            &with(bad),
            4,
            18,
            "node.control_socket",
            "must be an absolute path",
        );
    }
    // The default follows the node's name.
    let config = ok(&base_with("\"lb1\"", "\"lb-2\""));
    assert_eq!(config.node.control_socket, Path::new("/run/ha/lb-2.sock"));
}

#[test]
fn config_vip_groups() {
    // Same group: same index; no group: a group of its own, named after
    // the VIP; indices in order of first appearance.
    let text = with_vips(["group = \"web\"\n", "name = \"api\"\n", "group = \"web\"\n"]);
    let config = ok(&text);
    assert_eq!(config.groups, ["198.18.0.100:80/tcp", "web", "api"]);
    let groups: Vec<usize> = config.vips.iter().map(|v| v.group).collect();
    assert_eq!(groups, [0, 1, 2, 1]);
    // A group may be named after a VIP: it joins that VIP's group.
    let text = with_vips(["group = \"198.18.0.100:80/tcp\"\n", "", ""]);
    let config = ok(&text);
    assert_eq!(config.vips[1].group, 0);
    assert_eq!(config.groups.len(), 3);
    // Named like VIPs.
    for bad in ["", "a b", "tab\\t", &"g".repeat(65)] {
        check(
            &with_vips([&format!("group = \"{bad}\"\n"), "", ""]),
            12,
            9,
            "vip[1].group",
            "must be 1..=64 bytes without whitespace or control characters",
        );
    }
    ok(&with_vips([
        &format!("group = \"{}\"\n", "g".repeat(64)),
        "",
        "",
    ]));
    check(
        &with_vips(["group = 1\n", "", ""]),
        12,
        9,
        "vip[1].group",
        "invalid type",
    );
}

/// BASE plus `[metrics]` (line 11) with `lines` from line 12.
fn with_metrics(lines: &str) -> String {
    format!("{BASE}[metrics]\n{lines}")
}

#[test]
fn config_metrics() {
    assert_eq!(ok(BASE).metrics, None);
    let config = ok(&with_metrics("listen = \"127.0.0.1:9810\"\n"));
    assert_eq!(
        config.metrics,
        Some(MetricsConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9810)),
        })
    );
    let metrics = ok(&with_metrics("listen = \"[::]:9100\"\n"))
        .metrics
        .unwrap();
    assert_eq!(
        metrics.listen,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9100))
    );
    // Inline, and before the other tables.
    let config = ok(&format!(
        "metrics = {{ listen = \"0.0.0.0:9810\" }}\n{BASE}"
    ));
    assert_eq!(config.metrics.unwrap().listen.to_string(), "0.0.0.0:9810");
    // Node-local: the cluster's digest does not depend on it.
    assert_eq!(
        digest(&ok(BASE)),
        digest(&ok(&with_metrics("listen = \"127.0.0.1:9810\"\n")))
    );
    let json = serde_json::to_value(ok(&with_metrics("listen = \"127.0.0.1:9810\"\n"))).unwrap();
    assert_eq!(json["metrics"]["listen"], "127.0.0.1:9810");
    assert_eq!(
        serde_json::to_value(ok(BASE)).unwrap()["metrics"],
        serde_json::Value::Null
    );
}

#[test]
fn config_metrics_bad_listen() {
    for (bad, needle) in [
        ("127.0.0.1", "`127.0.0.1` is not a socket address"),
        ("localhost:9810", "`localhost:9810` is not a socket address"),
        ("::1:9810", "is not a socket address"),
        ("127.0.0.1:65536", "is not a socket address"),
        ("", "is not a socket address"),
        ("127.0.0.1:0", "127.0.0.1:0: port 0 is not allowed"),
        ("255.255.255.255:9810", "broadcast"),
        ("[ff02::1]:9810", "multicast"),
    ] {
        check(
            &with_metrics(&format!("listen = \"{bad}\"\n")),
            12,
            10,
            "metrics.listen",
            needle,
        );
    }
    check(
        &with_metrics("listen = 9810\n"),
        12,
        10,
        "metrics.listen",
        "invalid type",
    );
    check(
        &with_metrics("listen = \"127.0.0.1:9810\"\nport = 9810\n"),
        13,
        1,
        "metrics.port",
        "unknown field `port`",
    );
    check(
        &with_metrics(""),
        11,
        1,
        "metrics.listen",
        "missing field `listen`",
    );
    let e = err(&with_metrics("listen = \"127.0.0.1\"\n"));
    assert_eq!(
        e.to_string(),
        "/etc/ha/ha.toml:12:10: metrics.listen: `127.0.0.1` is not a socket address (an IP address and a port, e.g. 127.0.0.1:9810 or [::1]:9810)"
    );
}

#[test]
fn config_node_announce() {
    // Defaults: the same as a cluster's.
    let node = ok(BASE).node;
    assert_eq!(
        (node.announce_count, node.announce_interval),
        (DEFAULT_ANNOUNCE_COUNT, DEFAULT_ANNOUNCE_INTERVAL)
    );
    let with = |lines: &str| base_with("\"eth0\"\n", &format!("\"eth0\"\n{lines}"));
    let node = ok(&with("announce_count = 5\nannounce_interval = \"1s\"\n")).node;
    assert_eq!(
        (node.announce_count, node.announce_interval),
        (5, Duration::from_secs(1))
    );
    for bad in [0, 51] {
        check(
            &with(&format!("announce_count = {bad}\n")),
            4,
            18,
            "node.announce_count",
            "must be 1..=50",
        );
    }
    check(
        &with("announce_interval = \"11s\"\n"),
        4,
        21,
        "node.announce_interval",
        "must be 0ms..=10s",
    );
    // A cluster takes the node's settings unless it sets its own.
    let cluster = |node: &str, cluster: &str| {
        let text = format!(
            "{}[cluster]\nid = 1\nkey_file = \"/k\"\n{cluster}[[cluster.node]]\nname = \"lb1\"\naddress = \"198.18.1.1\"\n",
            with(node)
        );
        let cluster = ok(&text).cluster.unwrap();
        (cluster.announce_count, cluster.announce_interval)
    };
    assert_eq!(
        cluster("announce_count = 7\n", ""),
        (7, DEFAULT_ANNOUNCE_INTERVAL)
    );
    assert_eq!(
        cluster("announce_count = 7\n", "announce_count = 2\n"),
        (2, DEFAULT_ANNOUNCE_INTERVAL)
    );
    assert_eq!(
        cluster("", "announce_interval = \"0ms\"\n"),
        (DEFAULT_ANNOUNCE_COUNT, Duration::ZERO)
    );
}
