//! `[cluster]`: nodes, timing, quorum, fencing, announcements, hooks and
//! tracks.

use super::*;

/// BASE plus a `[cluster]` of `nodes` nodes lb1, lb2, ... at
/// 198.18.1.1, 198.18.1.2, ...: `[cluster]` is line 11, `id` line 12,
/// `key_file` line 13; `lines` start on line 14 and the nodes follow
/// them, three lines each.
fn with_cluster(lines: &str, nodes: usize) -> String {
    let mut text = format!("{BASE}[cluster]\nid = 42\nkey_file = \"/etc/ha/cluster.key\"\n{lines}");
    for i in 1..=nodes {
        text += &format!("[[cluster.node]]\nname = \"lb{i}\"\naddress = \"198.18.1.{i}\"\n");
    }
    text
}

/// The line of the first `[[cluster.node]]` of `with_cluster(lines, _)`.
fn first_node_line(lines: &str) -> usize {
    14 + lines.matches('\n').count()
}

/// A three-node cluster with every default.
fn default_cluster() -> ClusterConfig {
    ClusterConfig {
        id: 42,
        key_file: PathBuf::from("/etc/ha/cluster.key"),
        port: 5405,
        interval: Duration::from_millis(50),
        dead_after: Duration::from_millis(200),
        priority: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        quorum: QuorumConfig::Majority,
        tie_breaker: None,
        fencing: FencingConfig::None,
        fence_command: None,
        fence_timeout: Duration::from_secs(10),
        announce_count: 3,
        announce_interval: Duration::from_millis(100),
        on_owner: None,
        on_standby: None,
        on_fault: None,
        hook_timeout: Duration::from_secs(5),
        nodes: (1..=3)
            .map(|i| ClusterNode {
                name: format!("lb{i}"),
                address: IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)),
            })
            .collect(),
        tracks: Vec::new(),
    }
}

#[test]
fn config_cluster_tracks() {
    let track = "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"tcp\"\n  port = 22\n  interval = \"2s\"\n";
    let cluster = ok(&(with_cluster("", 3) + track)).cluster.unwrap();
    assert_eq!(cluster.tracks.len(), 1);
    let t = &cluster.tracks[0];
    assert_eq!(t.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        (t.check.kind.clone(), t.check.port, t.check.interval),
        (CheckKind::Tcp, 22, Duration::from_secs(2))
    );
    assert_eq!(
        (t.check.rise, t.check.fall),
        (DEFAULT_CHECK_RISE, DEFAULT_CHECK_FALL)
    );
    let base = with_cluster("", 3);
    let line = base.matches('\n').count() + 1;
    for (text, at, field, needle) in [
        (
            "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"tcp\"\n",
            (line + 3, 10),
            "cluster.track[0].check.port",
            "needs a port",
        ),
        (
            "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  port = 22\n",
            (line + 1, 11),
            "cluster.track[0].check.type",
            "needs a type",
        ),
        (
            "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"none\"\n",
            (line + 3, 10),
            "cluster.track[0].check.type",
            "must not be none",
        ),
        (
            "[[cluster.track]]\naddress = \"localhost\"\n  [cluster.track.check]\n  type = \"tcp\"\n  port = 1\n",
            (line + 1, 11),
            "cluster.track[0].address",
            "not an IPv4 or IPv6 address",
        ),
    ] {
        check(&(base.clone() + text), at.0, at.1, field, needle);
    }
}

#[test]
fn config_cluster_absent() {
    let config = ok(BASE);
    assert_eq!(config.cluster, None);
    assert_eq!(config.groups, ["198.18.0.100:80/tcp"]);
    assert_eq!(config.vips[0].group, 0);
}

#[test]
fn config_cluster_defaults() {
    assert_eq!(ok(&with_cluster("", 3)).cluster, Some(default_cluster()));
    // One node alone is a cluster too (a majority of one).
    let one = ok(&with_cluster("", 1)).cluster.unwrap();
    assert_eq!(one.nodes.len(), 1);
    assert_eq!(one.quorum, QuorumConfig::Majority);
}

#[test]
fn config_cluster_every_field() {
    let lines = r#"port = 5406
interval = "20ms"
dead_after = "100ms"
priority = 200
preempt = false
preempt_delay = "30s"
quorum = "two_node"
tie_breaker = "198.18.0.1"
fencing = "required"
fence_command = ["/usr/local/sbin/fence-node", "--hard"]
fence_timeout = "20s"
announce_count = 5
announce_interval = "0ms"
on_owner = ["/usr/local/sbin/ha-notify", "owner"]
on_standby = ["/usr/local/sbin/ha-notify", "standby"]
on_fault = ["/usr/local/sbin/ha-notify"]
hook_timeout = "1s"
"#;
    let command = |words: &[&str]| Some(words.iter().map(|w| w.to_string()).collect());
    let want = ClusterConfig {
        port: 5406,
        interval: Duration::from_millis(20),
        dead_after: Duration::from_millis(100),
        priority: 200,
        preempt: false,
        preempt_delay: Duration::from_secs(30),
        quorum: QuorumConfig::TwoNode,
        tie_breaker: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
        fencing: FencingConfig::Required,
        fence_command: command(&["/usr/local/sbin/fence-node", "--hard"]),
        fence_timeout: Duration::from_secs(20),
        announce_count: 5,
        announce_interval: Duration::ZERO,
        on_owner: command(&["/usr/local/sbin/ha-notify", "owner"]),
        on_standby: command(&["/usr/local/sbin/ha-notify", "standby"]),
        on_fault: command(&["/usr/local/sbin/ha-notify"]),
        hook_timeout: Duration::from_secs(1),
        nodes: default_cluster().nodes[..2].to_vec(),
        ..default_cluster()
    };
    assert_eq!(ok(&with_cluster(lines, 2)).cluster, Some(want));
    // IPv6 node addresses, and an inline array of tables.
    let text = format!(
        "{BASE}[cluster]\nid = 1\nkey_file = \"/k\"\nnode = [{{ name = \"lb1\", address = \"2001:2::1\" }}]\n"
    );
    assert_eq!(
        ok(&text).cluster.unwrap().nodes,
        [ClusterNode {
            name: "lb1".into(),
            address: "2001:2::1".parse().unwrap(),
        }]
    );
}

#[test]
fn config_cluster_missing_and_unknown_fields() {
    let text = with_cluster("", 3).replace("id = 42\n", "");
    check(&text, 11, 1, "cluster.id", "missing field `id`");
    let text = with_cluster("", 3).replace("key_file = \"/etc/ha/cluster.key\"\n", "");
    check(&text, 11, 1, "cluster.key_file", "missing field `key_file`");
    check(
        &with_cluster("peers = []\n", 3),
        14,
        1,
        "cluster.peers",
        "unknown field `peers`",
    );
    let text = with_cluster("", 3).replacen("name = \"lb2\"\n", "", 1);
    check(&text, 17, 1, "cluster.node[1].name", "missing field `name`");
    let text = with_cluster("", 3).replacen(
        "address = \"198.18.1.1\"\n",
        "address = \"198.18.1.1\"\nport = 1\n",
        1,
    );
    check(&text, 17, 1, "cluster.node[0].port", "unknown field `port`");
}

#[test]
fn config_cluster_id_key_file_port() {
    let text = with_cluster("", 3).replace("id = 42", "id = 0");
    check(&text, 12, 6, "cluster.id", "must be at least 1");
    let text = with_cluster("", 3).replace("id = 42", "id = -1");
    check(&text, 12, 6, "cluster.id", "-1");
    let text = with_cluster("", 3).replace("id = 42", "id = \"42\"");
    check(&text, 12, 6, "cluster.id", "invalid type");
    for relative in ["cluster.key", "./cluster.key", "", "etc/ha/cluster.key"] {
        let text =
            with_cluster("", 3).replace("\"/etc/ha/cluster.key\"", &format!("\"{relative}\""));
        check(
            &text,
            13,
            12,
            "cluster.key_file",
            "must be an absolute path",
        );
    }
    check(
        &with_cluster("port = 0\n", 3),
        14,
        8,
        "cluster.port",
        "must be 1..=65535",
    );
    check(
        &with_cluster("port = 65536\n", 3),
        14,
        8,
        "cluster.port",
        "65536",
    );
    let max_id = with_cluster("", 3).replace("id = 42", &format!("id = {}", i64::MAX));
    assert_eq!(ok(&max_id).cluster.unwrap().id, i64::MAX as u64);
}

#[test]
fn config_cluster_interval() {
    for bad in ["4ms", "0s", "11s", "10001ms"] {
        check(
            &with_cluster(&format!("interval = \"{bad}\"\n"), 3),
            14,
            12,
            "cluster.interval",
            "must be 5ms..=10s",
        );
    }
    check(
        &with_cluster("interval = \"50\"\n", 3),
        14,
        12,
        "cluster.interval",
        "is not a duration",
    );
    for (good, ms) in [("5ms", 5), ("10s", 10_000), ("1s", 1000)] {
        let cluster = ok(&with_cluster(&format!("interval = \"{good}\"\n"), 3))
            .cluster
            .unwrap();
        assert_eq!(cluster.interval, Duration::from_millis(ms));
    }
}

#[test]
fn config_cluster_dead_after() {
    // Default: 4 x interval, whatever the interval.
    let cluster = ok(&with_cluster("interval = \"10ms\"\n", 3))
        .cluster
        .unwrap();
    assert_eq!(cluster.dead_after, Duration::from_millis(40));
    let cluster = ok(&with_cluster("interval = \"10s\"\n", 3))
        .cluster
        .unwrap();
    assert_eq!(cluster.dead_after, Duration::from_secs(40));
    // At least 3 x interval.
    check(
        &with_cluster("dead_after = \"149ms\"\n", 3),
        14,
        14,
        "cluster.dead_after",
        "149ms must be at least 3 x the interval 50ms (default), 150ms",
    );
    check(
        &with_cluster("interval = \"1s\"\ndead_after = \"2500ms\"\n", 3),
        15,
        14,
        "cluster.dead_after",
        "2500ms must be at least 3 x the interval 1s, 3s, so that one lost heartbeat",
    );
    let cluster = ok(&with_cluster("dead_after = \"150ms\"\n", 3))
        .cluster
        .unwrap();
    assert_eq!(cluster.dead_after, Duration::from_millis(150));
    let cluster = ok(&with_cluster("dead_after = \"3s\"\n", 3))
        .cluster
        .unwrap();
    assert_eq!(cluster.dead_after, Duration::from_secs(3));
    check(
        &with_cluster("dead_after = \"3601s\"\n", 3),
        14,
        14,
        "cluster.dead_after",
        "must be 1ms..=3600s",
    );
}

#[test]
fn config_cluster_priority_preempt() {
    let cluster = ok(&with_cluster(
        "priority = 0\npreempt = false\npreempt_delay = \"5s\"\n",
        3,
    ))
    .cluster
    .unwrap();
    assert_eq!((cluster.priority, cluster.preempt), (0, false));
    assert_eq!(cluster.preempt_delay, Duration::from_secs(5));
    let cluster = ok(&with_cluster("priority = 255\n", 3)).cluster.unwrap();
    assert_eq!(cluster.priority, 255);
    check(
        &with_cluster("priority = 256\n", 3),
        14,
        12,
        "cluster.priority",
        "256",
    );
    check(
        &with_cluster("priority = -1\n", 3),
        14,
        12,
        "cluster.priority",
        "-1",
    );
    check(
        &with_cluster("preempt = \"yes\"\n", 3),
        14,
        11,
        "cluster.preempt",
        "invalid type",
    );
    check(
        &with_cluster("preempt_delay = \"3601s\"\n", 3),
        14,
        17,
        "cluster.preempt_delay",
        "must be 0ms..=3600s",
    );
}

#[test]
fn config_cluster_quorum() {
    // two_node: exactly two nodes.
    let cluster = ok(&with_cluster("quorum = \"two_node\"\n", 2))
        .cluster
        .unwrap();
    assert_eq!(cluster.quorum, QuorumConfig::TwoNode);
    for nodes in [1, 3] {
        check(
            &with_cluster("quorum = \"two_node\"\n", nodes),
            14,
            10,
            "cluster.quorum",
            &format!("quorum = \"two_node\" needs exactly 2 nodes; this cluster has {nodes}"),
        );
    }
    // A majority of two is both: an error that suggests two_node,
    // written or by default.
    check(
        &with_cluster("quorum = \"majority\"\n", 2),
        14,
        10,
        "cluster.quorum",
        "set quorum = \"two_node\"",
    );
    check(
        &with_cluster("", 2),
        11,
        1,
        "cluster.quorum",
        "a majority of 2 nodes is both of them",
    );
    let cluster = ok(&with_cluster("quorum = \"majority\"\n", 3))
        .cluster
        .unwrap();
    assert_eq!(cluster.quorum, QuorumConfig::Majority);
    check(
        &with_cluster("quorum = \"twonode\"\n", 2),
        14,
        10,
        "cluster.quorum",
        "unknown variant `twonode`",
    );
    assert_eq!(QuorumConfig::TwoNode.name(), "two_node");
}

#[test]
fn config_cluster_tie_breaker() {
    let two = "quorum = \"two_node\"\n";
    let cluster = ok(&with_cluster(
        &format!("{two}tie_breaker = \"2001:2::1\"\n"),
        2,
    ))
    .cluster
    .unwrap();
    assert_eq!(cluster.tie_breaker, Some("2001:2::1".parse().unwrap()));
    check(
        &with_cluster("tie_breaker = \"198.18.0.1\"\n", 3),
        14,
        15,
        "cluster.tie_breaker",
        "only applies to quorum = \"two_node\"; this cluster's quorum is majority (the default)",
    );
    check(
        &with_cluster("quorum = \"majority\"\ntie_breaker = \"198.18.0.1\"\n", 3),
        15,
        15,
        "cluster.tie_breaker",
        "this cluster's quorum is majority (cluster.quorum)",
    );
    for (bad, needle) in [
        ("198.18.0", "is not an IPv4 or IPv6 address"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        (
            "198.18.1.2",
            "is the address of cluster.node[1]; the tie-breaker must be a third party",
        ),
        ("198.18.0.100", "is the address of vip[0]"),
    ] {
        check(
            &with_cluster(&format!("{two}tie_breaker = \"{bad}\"\n"), 2),
            15,
            15,
            "cluster.tie_breaker",
            needle,
        );
    }
}

#[test]
fn config_cluster_fencing() {
    let cluster = ok(&with_cluster(
        "fencing = \"required\"\nfence_command = [\"/usr/local/sbin/fence-node\"]\n",
        3,
    ))
    .cluster
    .unwrap();
    assert_eq!(cluster.fencing, FencingConfig::Required);
    assert_eq!(
        cluster.fence_command,
        Some(vec!["/usr/local/sbin/fence-node".into()])
    );
    assert_eq!(cluster.fence_timeout, Duration::from_secs(10));
    check(
        &with_cluster("fencing = \"required\"\n", 3),
        14,
        11,
        "cluster.fencing",
        "fencing = \"required\" needs `fence_command`, e.g. fence_command = [\"/usr/local/sbin/fence-node\"]",
    );
    check(
        &with_cluster("fence_command = [\"/usr/local/sbin/fence-node\"]\n", 3),
        14,
        17,
        "cluster.fence_command",
        "`fence_command` only applies with fencing = \"required\"; fencing is none (the default)",
    );
    check(
        &with_cluster("fencing = \"none\"\nfence_timeout = \"1s\"\n", 3),
        15,
        17,
        "cluster.fence_timeout",
        "`fence_timeout` only applies with fencing = \"required\"; fencing is none (cluster.fencing)",
    );
    let required = "fencing = \"required\"\n";
    check(
        &with_cluster(&format!("{required}fence_command = [\"fence-node\"]\n"), 3),
        15,
        18,
        "cluster.fence_command[0]",
        "`fence-node` must be an absolute path",
    );
    check(
        &with_cluster(&format!("{required}fence_command = []\n"), 3),
        15,
        17,
        "cluster.fence_command",
        "must name a program",
    );
    check(
        &with_cluster(
            &format!("{required}fence_command = [\"/f\"]\nfence_timeout = \"0s\"\n"),
            3,
        ),
        16,
        17,
        "cluster.fence_timeout",
        "must be 1ms..=3600s",
    );
    check(
        &with_cluster("fencing = \"always\"\n", 3),
        14,
        11,
        "cluster.fencing",
        "unknown variant `always`",
    );
    assert_eq!(FencingConfig::Required.name(), "required");
}

#[test]
fn config_cluster_announce() {
    for bad in [0, 51] {
        check(
            &with_cluster(&format!("announce_count = {bad}\n"), 3),
            14,
            18,
            "cluster.announce_count",
            "must be 1..=50",
        );
    }
    check(
        &with_cluster("announce_interval = \"10001ms\"\n", 3),
        14,
        21,
        "cluster.announce_interval",
        "must be 0ms..=10s",
    );
    let cluster = ok(&with_cluster(
        "announce_count = 50\nannounce_interval = \"10s\"\n",
        3,
    ))
    .cluster
    .unwrap();
    assert_eq!(cluster.announce_count, 50);
    assert_eq!(cluster.announce_interval, Duration::from_secs(10));
}

#[test]
fn config_cluster_hooks() {
    for hook in ["on_owner", "on_standby", "on_fault"] {
        let column = hook.len() + 5;
        check(
            &with_cluster(&format!("{hook} = [\"ha-notify\"]\n"), 3),
            14,
            column,
            &format!("cluster.{hook}[0]"),
            "`ha-notify` must be an absolute path",
        );
        check(
            &with_cluster(&format!("{hook} = []\n"), 3),
            14,
            column - 1,
            &format!("cluster.{hook}"),
            "must name a program",
        );
        check(
            &with_cluster(&format!("{hook} = \"/bin/true\"\n"), 3),
            14,
            column - 1,
            &format!("cluster.{hook}"),
            "invalid type",
        );
    }
    check(
        &with_cluster("hook_timeout = \"0ms\"\n", 3),
        14,
        16,
        "cluster.hook_timeout",
        "must be 1ms..=3600s",
    );
}

#[test]
fn config_cluster_nodes() {
    // This node must be among them.
    let text = with_cluster("", 3).replace("name = \"lb1\"\naddress", "name = \"lb9\"\naddress");
    check(
        &text,
        11,
        1,
        "cluster.node",
        "this node `lb1` (node.name) is not one of the cluster's nodes",
    );
    check(
        &with_cluster("", 0),
        11,
        1,
        "cluster.node",
        "a cluster needs a [[cluster.node]]",
    );
    // Unique names and addresses.
    let line = first_node_line("");
    let text = with_cluster("", 3).replace("\"lb3\"", "\"lb2\"");
    check(
        &text,
        line + 7,
        8,
        "cluster.node[2].name",
        "duplicate node name `lb2` (also cluster.node[1])",
    );
    let text = with_cluster("", 3).replace("198.18.1.3", "198.18.1.1");
    check(
        &text,
        line + 8,
        11,
        "cluster.node[2].address",
        "duplicate node address 198.18.1.1 (also cluster.node[0])",
    );
    // Names like [node].name; unicast addresses other than a VIP's.
    let text = with_cluster("", 3).replace("\"lb2\"", "\"lb 2\"");
    check(
        &text,
        line + 4,
        8,
        "cluster.node[1].name",
        "must be 1..=32 characters",
    );
    for (bad, needle) in [
        ("lb2.example.org", "is not an IPv4 or IPv6 address"),
        ("ff02::1", "multicast"),
        ("127.0.0.2", "loopback"),
        (
            "198.18.0.100",
            "is the address of vip[0] `198.18.0.100:80/tcp`",
        ),
    ] {
        let text = with_cluster("", 3).replace("198.18.1.2", bad);
        check(&text, line + 5, 11, "cluster.node[1].address", needle);
    }
    // At most 16.
    let cluster = ok(&with_cluster("", 16)).cluster.unwrap();
    assert_eq!(cluster.nodes.len(), 16);
    check(
        &with_cluster("", 17),
        line + 3 * 16,
        1,
        "cluster.node[16]",
        "at most 16 nodes",
    );
}

#[test]
fn config_cluster_serializes_to_json() {
    let json = serde_json::to_value(ok(&with_cluster("", 3))).unwrap();
    let cluster = &json["cluster"];
    assert_eq!(cluster["interval"], "50ms");
    assert_eq!(cluster["dead_after"], "200ms");
    assert_eq!(cluster["preempt_delay"], "0ms");
    assert_eq!(cluster["quorum"], "majority");
    assert_eq!(cluster["fencing"], "none");
    assert_eq!(cluster["key_file"], "/etc/ha/cluster.key");
    assert_eq!(
        cluster["nodes"][1],
        serde_json::json!({ "name": "lb2", "address": "198.18.1.2" })
    );
    assert_eq!(json["groups"], serde_json::json!(["198.18.0.100:80/tcp"]));
    assert_eq!(json["vips"][0]["group"], 0);
    let json = serde_json::to_value(ok(&with_cluster("quorum = \"two_node\"\n", 2))).unwrap();
    assert_eq!(json["cluster"]["quorum"], "two_node");
}
