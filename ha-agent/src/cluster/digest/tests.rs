//! The cluster digest: what nodes must agree on, and only that.

use super::*;
use crate::config::tests::{BASE, base_with, ok, with_vips};

/// A cluster's file as one of its nodes has it: `[node]` and `[datapath]`
/// from `local`, `[cluster]` settings from `cluster`, the nodes in the
/// order of `nodes` (names of lb1..lb3), backends in the order given.
fn node_file(local: &str, cluster: &str, nodes: [usize; 3], backends: [&str; 2]) -> String {
    let mut text =
        format!("{local}[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n");
    for backend in backends {
        text += &format!("[[vip.backend]]\n{backend}\n");
    }
    text += &format!("[cluster]\nid = 42\n{cluster}");
    for i in nodes {
        text += &format!("[[cluster.node]]\nname = \"lb{i}\"\naddress = \"198.18.1.{i}\"\n");
    }
    text
}

#[test]
fn config_digest() {
    let lb1_local = "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n";
    let lb1_cluster = "key_file = \"/etc/ha/cluster.key\"\n";
    let backends = ["address = \"198.18.0.11\"", "address = \"198.18.0.12\""];
    let lb1 = ok(&node_file(lb1_local, lb1_cluster, [1, 2, 3], backends));
    // The same cluster as lb2 has it: every node-local setting differs,
    // and nodes and backends are listed in another order.
    let lb2 = ok(&node_file(
        "[node]\nname = \"lb2\"\ninterface = \"ens1\"\nmac = \"02:00:00:00:00:02\"\ncontrol_socket = \"/run/x.sock\"\n[datapath]\nmax_flows = 99\npin_dir = \"/run/bpf\"\n",
        "key_file = \"/var/lib/ha/key\"\npriority = 50\npreempt = false\npreempt_delay = \"1s\"\ninterval = \"20ms\"\ndead_after = \"1s\"\nport = 6000\nannounce_count = 1\nannounce_interval = \"1ms\"\non_owner = [\"/bin/true\"]\non_standby = [\"/bin/true\"]\non_fault = [\"/bin/true\"]\nhook_timeout = \"1s\"\nfencing = \"required\"\nfence_command = [\"/bin/fence\"]\nfence_timeout = \"1s\"\n",
        [3, 2, 1],
        [
            backends[1],
            "address = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"",
        ],
    ));
    assert_ne!(lb1.node, lb2.node);
    assert_ne!(lb1.cluster, lb2.cluster);
    assert_eq!(digest(&lb1), digest(&lb2));
    assert_eq!(digest(&lb1), digest(&lb1.clone()));

    // What the nodes must agree on changes it.
    let changed = |from: &str, to: &str| {
        let text = node_file(lb1_local, lb1_cluster, [1, 2, 3], backends);
        assert!(text.contains(from), "{from}");
        let other = ok(&text.replacen(from, to, 1));
        assert_ne!(digest(&lb1), digest(&other), "{from} -> {to}");
    };
    changed("\"198.18.0.12\"", "\"198.18.0.12\"\nweight = 2");
    changed("\"198.18.0.12\"", "\"198.18.0.13\"");
    changed("\"198.18.0.100\"", "\"198.18.0.101\"");
    changed("port = 80", "port = 81");
    changed("protocol = \"tcp\"", "protocol = \"udp\"");
    changed("[[vip]]\n", "[[vip]]\nname = \"web\"\n");
    changed("[[vip]]\n", "[[vip]]\ngroup = \"g\"\n");
    changed("[[vip]]\n", "[[vip]]\non_no_backend = \"pass\"\n");
    changed("[cluster]\n", "[vip.check]\nrise = 1\n[cluster]\n");
    changed("[[vip]]\n", "[health]\ntype = \"none\"\n[[vip]]\n");
    changed("[[vip]]\n", "[datapath]\nring_size = 251\n[[vip]]\n");
    changed("id = 42", "id = 43");
    changed("198.18.1.3", "198.18.1.4");
    changed("\"lb3\"", "\"lb4\"");
    // Another VIP.
    let text = node_file(lb1_local, lb1_cluster, [1, 2, 3], backends);
    let vip = "[[vip]]\naddress = \"198.18.0.101\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n";
    let more = ok(&text.replace("[cluster]", &format!("{vip}[cluster]")));
    assert_ne!(digest(&lb1), digest(&more));
    // The order of the groups (heartbeats name them by index).
    let a = ok(&with_vips(["group = \"a\"\n", "group = \"b\"\n", ""]));
    let b = ok(&with_vips(["group = \"b\"\n", "group = \"a\"\n", ""]));
    assert_ne!(digest(&a), digest(&b));
    // Without [cluster]: a digest of the VIPs alone.
    assert_ne!(digest(&ok(BASE)), digest(&lb1));
    assert_eq!(
        digest(&ok(BASE)),
        digest(&ok(&base_with("\"eth0\"", "\"eth1\"")))
    );
}
