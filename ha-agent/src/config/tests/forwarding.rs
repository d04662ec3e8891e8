//! Configurations that would loop frames or split one address between two
//! owners: a backend that is a VIP or a load-balancer node, one VIP
//! address in two groups.

use super::*;

/// BASE plus a three-node `[cluster]` whose node `lb1` is this node, at
/// 198.18.1.1, 198.18.1.2 and 198.18.1.3.
fn with_nodes(text: &str) -> String {
    let mut text = format!("{text}[cluster]\nid = 42\nkey_file = \"/etc/ha/cluster.key\"\n");
    for i in 1..=3 {
        text += &format!("[[cluster.node]]\nname = \"lb{i}\"\naddress = \"198.18.1.{i}\"\n");
    }
    text
}

#[test]
fn config_backend_is_a_vip() {
    // Its own VIP.
    check(
        &format!("{BASE}[[vip.backend]]\naddress = \"198.18.0.100\"\n"),
        12,
        11,
        "vip[0].backend[1].address",
        "198.18.0.100 is the address of vip[0] `198.18.0.100:80/tcp`: a backend must be a real server",
    );
    // Another VIP, written before or after it.
    check(
        &second_vip("198.18.0.101", 80, "tcp", "").replacen(
            "address = \"198.18.0.11\"\n",
            "address = \"198.18.0.101\"\n",
            1,
        ),
        10,
        11,
        "vip[0].backend[0].address",
        "198.18.0.101 is the address of vip[1]",
    );
    // The IPv6 VIP's backend is that VIP itself.
    let text = second_vip("2001:2::100", 80, "tcp", "");
    let at = text.rfind("address = \"198.18.0.11\"").unwrap();
    let text = format!("{}address = \"2001:2::100\"\n", &text[..at]);
    check(
        &text,
        16,
        11,
        "vip[1].backend[0].address",
        "2001:2::100 is the address of vip[1]",
    );
    // A backend on another port of a VIP address is the VIP all the same.
    check(
        &second_vip("198.18.0.101", 443, "tcp", "").replacen(
            "address = \"198.18.0.11\"\n",
            "address = \"198.18.0.101\"\n",
            1,
        ),
        10,
        11,
        "vip[0].backend[0].address",
        "is the address of vip[1]",
    );
    // Real servers are fine.
    ok(&second_vip("198.18.0.101", 80, "tcp", ""));
}

#[test]
fn config_backend_is_a_cluster_node() {
    ok(&with_nodes(BASE));
    check(
        &with_nodes(&base_with("\"198.18.0.11\"", "\"198.18.1.1\"")),
        10,
        11,
        "vip[0].backend[0].address",
        "198.18.1.1 is the address of cluster.node[0] `lb1` (this node): a load balancer cannot be a backend",
    );
    check(
        &with_nodes(&base_with("\"198.18.0.11\"", "\"198.18.1.3\"")),
        10,
        11,
        "vip[0].backend[0].address",
        "198.18.1.3 is the address of cluster.node[2] `lb3` (a peer)",
    );
    // Without [cluster] the file names no address of this node: nothing to
    // compare with (see the error's documentation).
    ok(&base_with("\"198.18.0.11\"", "\"198.18.1.1\""));
}

#[test]
fn config_vip_address_in_one_group() {
    // VIPs sharing an address share a group by default: the first one's.
    let config = ok(&second_vip("198.18.0.100", 443, "tcp", ""));
    assert_eq!(config.groups, ["198.18.0.100:80/tcp"]);
    assert_eq!((config.vips[0].group, config.vips[1].group), (0, 0));
    let config = ok(&second_vip("198.18.0.100", 80, "udp", "name = \"dns\"\n"));
    assert_eq!(config.groups.len(), 1);
    // ... or an explicit one, written on the first.
    let named = base_with("[[vip]]\n", "[[vip]]\ngroup = \"edge\"\n");
    let config = ok(&format!(
        "{named}[[vip]]\naddress = \"198.18.0.100\"\nport = 443\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
    ));
    assert_eq!(config.groups, ["edge"]);
    assert_eq!(config.vips[1].group, 0);
    // Another group for the same address: two owners would answer ARP/NDP.
    check(
        &second_vip("198.18.0.100", 443, "tcp", "group = \"other\"\n"),
        12,
        9,
        "vip[1].group",
        "198.18.0.100 is also the address of vip[0] `198.18.0.100:80/tcp` in group `198.18.0.100:80/tcp`; VIPs that share an address must be in one group",
    );
    // Other addresses may be in other groups.
    assert_eq!(ok(&with_vips(["", "", ""])).groups.len(), 4);
}
