//! What the agent learns from the kernel over rtnetlink: the interface's
//! index and MAC, and the backends' MACs from the neighbour table. L2
//! direct server return rewrites the destination MAC, so a backend without
//! a resolved MAC cannot receive traffic.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::{
    link::{LinkAttribute, LinkFlags},
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
            .handle
            .link()
            .get()
            .match_index(self.ifindex)
            .execute()
            .try_next()
            .await
            .context("read interface state")?
            .context("interface gone")?;
        Ok(link
            .header
            .flags
            .contains(LinkFlags::Up | LinkFlags::Running))
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
