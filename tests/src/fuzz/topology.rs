//! The VIPs, backends and owned addresses every fuzz run loads into the
//! maps, written once as data: rendered as the config file the program is
//! loaded with, and read by the checker to know what is a VIP, which
//! backends are usable and what this node owns.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context, Result};
use ha_agent::{datapath::Datapath, model::Mac};

use crate::{
    packet::{TCP, UDP},
    test_run::{self, VIP4, VIP6},
};

/// An IPv4 VIP that is not owned and has no usable backend (its only
/// backend has no MAC): the documented drop path.
pub const VIP4_DROP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 101);
/// An IPv4 VIP without usable backend whose packets go to the local stack.
pub const VIP4_PASS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 102);
/// An IPv6 VIP that is not owned and has no usable backend: drop.
pub const VIP6_DROP: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x101);

/// A backend as the fuzz config declares it.
#[derive(Clone, Debug)]
pub struct BackendSpec {
    pub address: IpAddr,
    /// Configured MAC; None: unknown, so the backend is never usable.
    pub mac: Option<[u8; 6]>,
    /// 0 drains the backend: it takes no new flow.
    pub weight: u32,
}

/// A VIP as the fuzz config declares it.
#[derive(Clone, Debug)]
pub struct VipSpec {
    pub address: IpAddr,
    pub port: u16,
    /// TCP or UDP (IP protocol number).
    pub protocol: u8,
    /// One group per address: ARP/NDP ownership is per address.
    pub group: &'static str,
    /// on_no_backend = "pass" (else "drop").
    pub pass_without_backend: bool,
    pub backends: Vec<BackendSpec>,
}

/// The VIPs, backends and owned addresses every fuzz run uses: owned and
/// not owned VIPs of both families and protocols, a drained backend, and
/// VIPs without a usable backend for both `on_no_backend` settings.
#[derive(Clone, Debug)]
pub struct Topology {
    pub vips: Vec<VipSpec>,
    /// Addresses this node holds a lease on: it answers ARP/NDP for them.
    pub owned: Vec<IpAddr>,
}

fn backend(address: IpAddr, mac_last: Option<u8>, weight: u32) -> BackendSpec {
    BackendSpec {
        address,
        mac: mac_last.map(|last| [0x02, 0xbb, 0, 0, 0, last]),
        weight,
    }
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, last))
}

impl Topology {
    pub fn standard() -> Topology {
        let vip = |address: IpAddr,
                   port: u16,
                   protocol: u8,
                   group: &'static str,
                   backends: Vec<BackendSpec>| VipSpec {
            address,
            port,
            protocol,
            group,
            pass_without_backend: false,
            backends,
        };
        let mut vips = vec![
            vip(
                VIP4.into(),
                80,
                TCP,
                "four",
                vec![
                    backend(v4(21), Some(1), 1),
                    backend(v4(22), Some(2), 2),
                    backend(v4(23), Some(3), 0),
                ],
            ),
            vip(
                VIP4.into(),
                53,
                UDP,
                "four",
                vec![backend(v4(24), Some(4), 1)],
            ),
            vip(
                VIP4_DROP.into(),
                443,
                TCP,
                "four-drop",
                vec![backend(v4(25), None, 1)],
            ),
            vip(
                VIP4_PASS.into(),
                8080,
                UDP,
                "four-pass",
                vec![backend(v4(26), None, 1)],
            ),
            vip(
                VIP6.into(),
                80,
                TCP,
                "six",
                vec![backend(v6(0x21), Some(5), 1), backend(v6(0x22), Some(6), 1)],
            ),
            vip(
                VIP6.into(),
                53,
                UDP,
                "six",
                vec![backend(v6(0x23), Some(7), 1)],
            ),
            vip(
                VIP6_DROP.into(),
                443,
                TCP,
                "six-drop",
                vec![backend(v6(0x25), None, 1)],
            ),
        ];
        vips[3].pass_without_backend = true;
        Topology {
            vips,
            owned: vec![VIP4.into(), VIP6.into()],
        }
    }

    /// The config file that declares this topology.
    pub fn config_text(&self) -> String {
        let mut text = String::from(
            "[node]\nname = \"fuzz\"\ninterface = \"lo\"\n\n\
             [datapath]\nring_size = 251\nmax_flows = 4096\n",
        );
        for vip in &self.vips {
            let protocol = if vip.protocol == TCP { "tcp" } else { "udp" };
            let _ = write!(
                text,
                "\n[[vip]]\naddress = \"{}\"\nport = {}\nprotocol = \"{protocol}\"\ngroup = \"{}\"\n",
                vip.address, vip.port, vip.group
            );
            if vip.pass_without_backend {
                text.push_str("on_no_backend = \"pass\"\n");
            }
            for backend in &vip.backends {
                let _ = write!(
                    text,
                    "  [[vip.backend]]\n  address = \"{}\"\n",
                    backend.address
                );
                if let Some(mac) = backend.mac {
                    let _ = writeln!(text, "  mac = \"{}\"", Mac(mac));
                }
                let _ = writeln!(text, "  weight = {}", backend.weight);
            }
        }
        text
    }

    /// The VIP of this destination, if one is configured.
    pub fn vip(&self, address: IpAddr, port: u16, protocol: u8) -> Option<&VipSpec> {
        self.vips
            .iter()
            .find(|v| v.address == address && v.port == port && v.protocol == protocol)
    }

    /// MACs of the backends of `vip` that may take a flow: MAC known,
    /// weight above 0 (a drained backend keeps only flows it already has,
    /// and none is ever placed on one here).
    pub fn usable_macs(vip: &VipSpec) -> impl Iterator<Item = [u8; 6]> + '_ {
        vip.backends
            .iter()
            .filter(|b| b.weight > 0)
            .filter_map(|b| b.mac)
    }

    pub fn owns(&self, address: IpAddr) -> bool {
        self.owned.contains(&address)
    }

    /// The program loaded with fresh maps holding this topology.
    pub fn load(&self) -> Result<Datapath> {
        Ok(
            test_run::load(&self.config_text(), HashMap::new(), &self.owned)
                .context("load the program with the fuzz topology")?
                .datapath,
        )
    }
}
