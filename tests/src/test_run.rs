//! The real XDP program loaded into this process with real maps and not
//! attached, driven frame by frame through BPF_PROG_TEST_RUN: what the
//! datapath table tests, the event log test and the datapath benchmark
//! share. One place for the addresses and MACs their frames use and for
//! filling the maps from a config text, so they all test the same thing.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context, Result};
use ha_agent::{
    config,
    datapath::{Datapath, LoadOptions},
    desired::{Applied, Desired, Knowledge, Tables},
    ids::Ids,
    model::{Mac, addr_bytes},
};
use ha_common::OwnedLease;

/// XDP verdicts as the program returns them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// The load balancer's own MAC: frames to steer are addressed to it.
pub const NODE_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];
pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x100);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10);

/// A loaded program and what its maps hold.
pub struct Loaded {
    pub datapath: Datapath,
    /// What was written, to plan the next change against.
    pub applied: Applied,
    pub desired: Desired,
}

/// Loads the program with the ring size and flow table of `config_text`
/// and writes that config's maps, with `macs` as the learned backend MACs.
/// `owned` VIPs get a lease that never runs out, so ARP/NDP is answered.
pub fn load(config_text: &str, macs: HashMap<IpAddr, Mac>, owned: &[IpAddr]) -> Result<Loaded> {
    let config = config::parse(Path::new("test-run.toml"), config_text)?;
    let mut datapath = Datapath::load(&LoadOptions {
        ring_size: config.datapath.ring_size,
        max_flows: config.datapath.max_flows,
        node_mac: NODE_MAC,
        pin_dir: None,
        object: None,
    })
    .context("load the XDP program (run as root, after cargo xtask build-ebpf)")?;
    let known = Knowledge {
        macs,
        ..Knowledge::default()
    };
    let ids = Ids::default().assign(&config)?;
    let desired = Desired::compute(&config, &ids, &known, &mut Tables::default());
    let (writes, applied) = Applied::default().plan(&desired);
    datapath.apply(&writes).context("fill the maps")?;
    let forever = OwnedLease {
        deadline_ns: u64::MAX,
    };
    for vip in owned {
        datapath.set_owned(&addr_bytes(*vip), &forever)?;
    }
    Ok(Loaded {
        datapath,
        applied,
        desired,
    })
}
