//! What the agent learns from the kernel over rtnetlink: the interface's
//! index and MAC, and the backends' MACs from the neighbour table. L2
//! direct server return rewrites the destination MAC, so a backend without
//! a resolved MAC cannot receive traffic. Also whether the frames the XDP
//! program sends back out can leave at all (a veth needs its peer's help).

use std::{collections::HashMap, net::IpAddr, time::Duration};

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::{
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp, XdpAttached},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
};

use crate::model::Mac;

/// UDP discard port: a datagram there makes the kernel resolve the
/// neighbour and is otherwise ignored by the backend.
const DISCARD_PORT: u16 = 9;
/// How often a missing neighbour is solicited again while resolving.
const RESOLVE_RETRY: Duration = Duration::from_millis(100);

/// A netlink handle bound to one interface (clones share the connection).
#[derive(Clone)]
pub(crate) struct Netlink {
    handle: rtnetlink::Handle,
    pub ifindex: u32,
    pub mac: Mac,
}

impl Netlink {
    /// Opens a netlink connection (driven on the tokio runtime) and looks
    /// up `interface`.
    pub(crate) async fn open(interface: &str) -> Result<Netlink> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("open rtnetlink socket")?;
        tokio::spawn(connection);
        let link = handle
            .link()
            .get()
            .match_name(interface.to_string())
            .execute()
            .try_next()
            .await
            .with_context(|| format!("interface {interface} not found"))?
            .with_context(|| format!("interface {interface} not found"))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => {
                    <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Mac)
                }
                _ => None,
            })
            .with_context(|| format!("interface {interface} has no Ethernet address"))?;
        Ok(Netlink {
            handle,
            ifindex: link.header.index,
            mac,
        })
    }

    /// Whether our interface is up with a carrier (IFF_UP and IFF_RUNNING):
    /// a node whose link is down must not own VIPs.
    pub(crate) async fn link_up(&self) -> Result<bool> {
        let link = self
            .link(self.ifindex, None)
            .await
            .context("read interface state")?;
        Ok(link
            .header
            .flags
            .contains(LinkFlags::Up | LinkFlags::Running))
    }

    /// The link with index `index`, in the network namespace with id
    /// `netns_id` as our namespace numbers it (None: ours).
    async fn link(&self, index: u32, netns_id: Option<i32>) -> Result<LinkMessage> {
        let mut request = self.handle.link().get().match_index(index);
        if let Some(id) = netns_id {
            request
                .message_mut()
                .attributes
                .push(LinkAttribute::IfNetnsId(id));
        }
        request
            .execute()
            .try_next()
            .await?
            .with_context(|| format!("no interface with index {index}"))
    }

    /// Why frames the XDP program sends back out (XDP_TX) may not leave
    /// `interface`, if that is so. A native XDP program on a veth hands
    /// them straight to the peer's NAPI, which runs only while the peer has
    /// an XDP program of its own (or GRO on, Linux 5.13 and later);
    /// otherwise the kernel drops them, silently, after the program counted
    /// them as sent. In generic mode they take the normal transmit path.
    pub(crate) async fn xdp_tx_hazard(&self, interface: &str) -> Result<Option<String>> {
        let ours = self.link(self.ifindex, None).await?;
        let is_veth = ours.attributes.iter().any(|a| {
            matches!(a, LinkAttribute::LinkInfo(info)
                if info.contains(&LinkInfo::Kind(InfoKind::Veth)))
        });
        if !is_veth || !has_native_xdp(&ours) {
            return Ok(None);
        }
        let fix = "attach an XDP program to the peer (one that returns XDP_PASS is enough, \
                   e.g. `ip link set dev PEER xdp obj xdp-pass.o`), or turn GRO on there \
                   (`ethtool -K PEER gro on`, Linux 5.13 and later)";
        let dropped = "the frames this node sends back out by XDP_TX (every forwarded packet, \
                       every ARP and NDP answer) are dropped by the kernel while the `tx` \
                       counter still counts them";
        let Some(peer) = ours.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(index) => Some(*index),
            _ => None,
        }) else {
            return Ok(Some(format!(
                "{interface} is a veth whose peer is unknown, so it cannot be checked whether \
                 the peer has an XDP program; without one {dropped}: {fix}"
            )));
        };
        let netns_id = ours.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkNetNsId(id) => Some(*id),
            _ => None,
        });
        let place = match netns_id {
            Some(id) => format!("index {peer} in network namespace id {id}"),
            None => format!("index {peer}"),
        };
        match self.link(peer, netns_id).await {
            Ok(link) if has_native_xdp(&link) => Ok(None),
            Ok(link) => {
                let name = link
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name.as_str()),
                        _ => None,
                    })
                    .unwrap_or("?");
                Ok(Some(format!(
                    "{interface} is a veth whose peer {name} ({place}) has no XDP program \
                     (unless GRO is on there): {dropped}; {fix}"
                )))
            }
            Err(e) => Ok(Some(format!(
                "{interface} is a veth whose peer ({place}) cannot be read ({e:#}), so it \
                 cannot be checked whether the peer has an XDP program; without one {dropped}: \
                 {fix}"
            ))),
        }
    }

    /// Usable neighbour entries on our interface.
    pub(crate) async fn neighbours(&self) -> Result<HashMap<IpAddr, Mac>> {
        let mut entries = self.handle.neighbours().get().execute();
        let mut found = HashMap::new();
        while let Some(msg) = entries.try_next().await.context("dump neighbour table")? {
            if msg.header.ifindex != self.ifindex
                || matches!(
                    msg.header.state,
                    NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
                )
            {
                continue;
            }
            let mut addr = None;
            let mut mac = None;
            for attribute in &msg.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        addr = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        addr = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Mac)
                    }
                    _ => {}
                }
            }
            if let (Some(addr), Some(mac)) = (addr, mac) {
                found.insert(addr, mac);
            }
        }
        Ok(found)
    }

    /// Resolves `addrs`, soliciting the missing ones until `timeout`.
    /// Returns what it found; the caller decides about the rest.
    pub(crate) async fn resolve(
        &self,
        addrs: &[IpAddr],
        timeout: Duration,
    ) -> Result<HashMap<IpAddr, Mac>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let known = self.neighbours().await?;
            let missing: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !known.contains_key(a))
                .collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(known);
            }
            for addr in missing {
                solicit(addr).await;
            }
            tokio::time::sleep(RESOLVE_RETRY).await;
        }
    }
}

/// Whether a native (driver mode) XDP program is attached to `link`.
fn has_native_xdp(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().any(|x| {
            matches!(
                x,
                LinkXdp::Attached(XdpAttached::Driver) | LinkXdp::DrvProgId(_)
            )
        }),
        _ => false,
    })
}

/// Makes the kernel resolve `addr` by sending it an empty datagram.
pub(crate) async fn solicit(addr: IpAddr) {
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sent = async {
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        socket.send_to(&[], (addr, DISCARD_PORT)).await
    }
    .await;
    if let Err(e) = sent {
        tracing::debug!(%addr, error = %e, "neighbour solicitation failed");
    }
}
