//! The maps' capacities never stop an agent from starting (run as root):
//! the real program and maps, loaded in this process, written by the
//! agent's own writer.

use std::path::Path;

use ha_agent::{
    config::{self, Config},
    datapath::{Datapath, LoadOptions},
    desired::Knowledge,
    model::addr_bytes,
    writer::Writer,
};
use ha_common::{MAX_VIPS, OwnedLease};
use ha_tests::test_run::NODE_MAC;

fn load(config: &Config) -> Datapath {
    Datapath::load(&LoadOptions {
        ring_size: config.datapath.ring_size,
        max_flows: config.datapath.max_flows,
        node_mac: NODE_MAC,
        pin_dir: None,
        object: None,
    })
    .expect("load the XDP program (run as root)")
}

/// What the agent's lease writes rely on (ownership: removals first, then
/// inserts and renewals): in a full OWNED a lease is replaced in place, and
/// only a new address needs a free entry.
#[test]
fn a_full_lease_map_renews_in_place() {
    let mut datapath = load(&full_config(1));
    let lease = |n| OwnedLease { deadline_ns: n };
    let addr = |i: u8| addr_bytes([198, 18, 9, i].into());
    for i in 0..MAX_VIPS as u8 {
        datapath.set_owned(&addr(i), &lease(1)).expect("room");
    }
    for i in 0..MAX_VIPS as u8 {
        datapath
            .set_owned(&addr(i), &lease(2))
            .expect("a renewal in a full map");
    }
    assert!(
        datapath
            .maps()
            .owned()
            .unwrap()
            .iter()
            .all(|(_, l)| *l == lease(2))
    );
    datapath
        .set_owned(&addr(200), &lease(2))
        .expect_err("a new address in a full map");
    datapath.remove_owned(&addr(0)).unwrap();
    datapath
        .set_owned(&addr(200), &lease(2))
        .expect("room again");
}

/// As many VIPs as a config may have, 198.18.`net`.1 to .31, port 80, each
/// with one backend.
fn full_config(net: u8) -> Config {
    let mut text = String::from(
        "[node]\nname = \"capacity\"\ninterface = \"lo\"\n[datapath]\nring_size = 7\nmax_flows = 64\n",
    );
    for i in 1..MAX_VIPS {
        text += &format!(
            "[[vip]]\naddress = \"198.18.{net}.{i}\"\nport = 80\nprotocol = \"tcp\"\n  [[vip.backend]]\n  address = \"198.19.{net}.{i}\"\n"
        );
    }
    config::parse(Path::new("capacity.toml"), &text).expect("a valid config")
}

/// An agent stopped (or killed) with the maps pinned, then started with a
/// config whose VIPs are all new: the maps hold 31 VIPs whose ids the new
/// ones may not take while they are kept. Before, the start failed with
/// "no free VIP id left", at every start: a crash loop under systemd.
#[test]
fn a_start_on_maps_full_of_other_vips_replaces_them() {
    let (old, new) = (full_config(1), full_config(2));
    let datapath = load(&old);
    let knowledge = Knowledge::default();
    let mut first = Writer::adopt(datapath, &old).expect("empty maps");
    first.reconcile(&old, &knowledge).expect("write the maps");
    assert_eq!(first.datapath.maps().vips().unwrap().len(), old.vips.len());

    // The next agent adopts the same maps.
    let mut second =
        Writer::adopt(first.datapath, &new).unwrap_or_else(|e| panic!("the start failed: {e:#}"));
    second.reconcile(&new, &knowledge).expect("write the maps");
    let mut held: Vec<_> = second
        .datapath
        .maps()
        .vips()
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut wanted: Vec<_> = new.vips.iter().map(|v| v.key()).collect();
    held.sort_by_key(|k| k.addr);
    wanted.sort_by_key(|k| k.addr);
    assert_eq!(held, wanted, "the maps hold the new config's VIPs only");
    let backends = second.datapath.maps().backends().unwrap();
    assert_eq!(backends.len(), new.vips.len(), "{backends:?}");
}
