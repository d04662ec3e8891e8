//! The lab: hosts on one Ethernet segment, all in namespaces.
//!
//! Each host is a network namespace with one veth, `eth0`, whose peer is a
//! port of bridge `br0` in a "switch" namespace of its own, so nothing is
//! configured in the root namespace. Host `i` gets the number `n = 10 + i`,
//! written with the same digits in all its addresses so they read alike in
//! `ip addr` and tcpdump: 198.18.0.n/24, 2001:2::n/64, 02:00:00:00:00:n.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
};

use anyhow::{Result, bail};

use crate::{cmd, netns::Netns};

/// Host numbers stay two decimal digits, 10..=99.
const MAX_HOSTS: usize = 90;

/// A host in the lab: a namespace with one interface `eth0` on the bridge.
#[derive(Debug)]
pub struct Host {
    pub ns: Netns,
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub mac: [u8; 6],
    port: String,
}

impl Host {
    /// The name of `eth0`'s peer veth, a port of `br0` in the switch namespace.
    pub fn switch_port(&self) -> &str {
        &self.port
    }
}

/// A bridge and its hosts. Dropping it deletes every namespace it created,
/// hosts first, then the switch (fields drop in declaration order); deleting
/// a namespace removes its veths.
#[derive(Debug)]
pub struct Lab {
    hosts: Vec<Host>,
    switch: Netns,
}

impl Lab {
    /// Creates the switch namespace with bridge `br0` (up, no STP,
    /// forward_delay 0, no multicast snooping, IPv6 off) and one host per name.
    /// Duplicate address detection is off on the hosts so IPv6 works at once.
    pub fn new(host_names: &[&str]) -> Result<Lab> {
        if host_names.len() > MAX_HOSTS {
            bail!("a lab holds at most {MAX_HOSTS} hosts");
        }
        for (i, name) in host_names.iter().enumerate() {
            if host_names[..i].contains(name) {
                bail!("host name {name:?} given twice");
            }
        }
        let switch = Netns::create("switch")?;
        switch.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        #[rustfmt::skip]
        ip(&switch, &["link", "add", "br0", "type", "bridge",
                      "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"])?;
        ip(&switch, &["link", "set", "br0", "up"])?;
        let hosts = host_names
            .iter()
            .enumerate()
            .map(|(i, name)| add_host(&switch, i, name))
            .collect::<Result<_>>()?;
        Ok(Lab { hosts, switch })
    }

    /// The host called `name`; panics if there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| {
                let names: Vec<_> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                panic!("no host {name:?} in this lab (hosts: {})", names.join(", "))
            })
    }

    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// Makes `host` a direct-server-return backend for `vips`: each VIP goes
    /// on its `lo` (IPv4 /32, IPv6 /128) and the host stops answering ARP for
    /// addresses that are not on the asking interface (`arp_ignore=1`) and
    /// stops using them as the source of its own ARP requests
    /// (`arp_announce=2`), so only the load balancer owns the VIP on the wire.
    ///
    /// IPv6 needs no such setting, for two reasons. A neighbour solicitation
    /// for the VIP goes to its solicited-node group, which the host joins on
    /// `lo` only, so `eth0` drops it unheard. And one that does arrive (a
    /// unicast NUD probe, or a group shared with an `eth0` address) goes
    /// unanswered: Linux answers only for addresses on the receiving interface
    /// (`ndisc_recv_ns` looks the target up with `ipv6_get_ifaddr(.., dev,
    /// strict = 1)`; anycast and `proxy_ndp` aside, both off here). The
    /// lab_harness tests check both families, the second reason included.
    pub fn make_dsr_backend(&self, host: &str, vips: &[IpAddr]) -> Result<()> {
        let ns = &self.host(host).ns;
        for vip in vips {
            match vip {
                IpAddr::V4(_) => ip(ns, &["addr", "add", &format!("{vip}/32"), "dev", "lo"])?,
                IpAddr::V6(_) => ip(
                    ns,
                    &["addr", "add", &format!("{vip}/128"), "dev", "lo", "nodad"],
                )?,
            };
        }
        ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.eth0.arp_ignore=1",
            "net.ipv4.conf.eth0.arp_announce=2",
        ])?;
        Ok(())
    }

    /// Turns off transmit checksum offload on the host's `eth0`. veth hands
    /// packets on with the checksum left to "hardware"; once an XDP program has
    /// rewritten and forwarded them, the receiver drops them as corrupt
    /// (docs/development.md, "The lab"). Do it on every host that sends to a VIP.
    pub fn disable_tx_checksum_offload(&self, host: &str) -> Result<()> {
        self.host(host)
            .ns
            .exec(&["ethtool", "-K", "eth0", "tx", "off"])?;
        Ok(())
    }
}

fn add_host(switch: &Netns, i: usize, name: &str) -> Result<Host> {
    let n = bcd(10 + i as u8);
    let ipv4 = Ipv4Addr::new(198, 18, 0, 10 + i as u8);
    let ipv6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, n.into());
    let mac = [0x02, 0, 0, 0, 0, n];
    let port: String = format!("p{i}-{name}").chars().take(15).collect();
    let ns = Netns::create(name)?;
    ns.exec(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.all.dad_transmits=0",
        "net.ipv6.conf.default.dad_transmits=0",
    ])?;
    let mac_text = mac.map(|b| format!("{b:02x}")).join(":");
    #[rustfmt::skip]
    ip(&ns, &["link", "add", "eth0", "address", &mac_text,
              "type", "veth", "peer", "name", &port, "netns", switch.name()])?;
    ip(switch, &["link", "set", &port, "master", "br0", "up"])?;
    ip(&ns, &["link", "set", "lo", "up"])?;
    ip(&ns, &["link", "set", "eth0", "up"])?;
    let (v4, v6) = (format!("{ipv4}/24"), format!("{ipv6}/64"));
    ip(&ns, &["addr", "add", &v4, "dev", "eth0"])?;
    ip(&ns, &["addr", "add", &v6, "dev", "eth0", "nodad"])?;
    Ok(Host {
        ns,
        name: name.to_owned(),
        ipv4,
        ipv6,
        mac,
        port,
    })
}

/// 10..=99 as two hexadecimal digits that read like the decimal ones (42 -> 0x42).
fn bcd(n: u8) -> u8 {
    n / 10 * 16 + n % 10
}

/// `ip -n <ns> <args...>`: iproute2 switches namespace itself.
fn ip(ns: &Netns, args: &[&str]) -> Result<String> {
    cmd::run(Command::new("ip").args(["-n", ns.name()]).args(args))
}
