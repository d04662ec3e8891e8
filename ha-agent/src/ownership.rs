//! What owning a VIP group means on this node: the ARP/NDP lease in the
//! datapath (renewed while owned, left to expire or cleared when not), a
//! burst of gratuitous ARP / unsolicited NA when taken, and the notify
//! hooks. Without a cluster the node owns every group from the start (and
//! every VIP a reload adds), and announces them then.
//!
//! OWNED holds as many addresses as there can be VIPs (config checks the
//! VIPs fit); a lease write never needs more room than that: leases that
//! go are removed before new ones are written, and renewing an address
//! already in the map replaces its entry in place.

use std::{collections::BTreeSet, net::IpAddr, sync::Arc, time::Duration};

use anyhow::Result;
use ha_common::{Addr, OwnedLease};

use crate::{
    announce::{self, RawSender},
    config::Config,
    datapath::{Datapath, monotonic_ns},
    hooks::{Hook, HookQueue},
    model::addr_bytes,
};

/// Lease length and renewal period without a cluster: several renewals
/// fit in one lease.
const STANDALONE_LEASE: Duration = Duration::from_millis(1000);
const STANDALONE_RENEW: Duration = Duration::from_millis(200);

/// A hook event, as `HA_EVENT` tells the hook.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Owner,
    Standby,
    Fault,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Owner => "owner",
            Event::Standby => "standby",
            Event::Fault => "fault",
        }
    }
}

pub(crate) struct Ownership {
    owned: BTreeSet<usize>,
    /// Addresses with a lease in OWNED, as last written.
    leased: BTreeSet<Addr>,
    lease: Duration,
    renew: Duration,
    mac: [u8; 6],
    sender: Option<Arc<RawSender>>,
    hooks: HookQueue,
}

impl Ownership {
    /// `stale` are the addresses an earlier agent left leased. With a
    /// cluster, a lease lasts `dead_after` - `interval`: it runs out before
    /// the peers declare this node dead, so a killed agent's node has gone
    /// silent for its VIPs by the time another node answers for them.
    pub(crate) fn new(
        config: &Config,
        ifindex: u32,
        mac: [u8; 6],
        stale: BTreeSet<Addr>,
    ) -> Ownership {
        let (lease, renew, owned) = match &config.cluster {
            Some(c) => (
                c.dead_after.saturating_sub(c.interval),
                c.interval,
                BTreeSet::new(),
            ),
            None => (
                STANDALONE_LEASE,
                STANDALONE_RENEW,
                (0..config.groups.len()).collect(),
            ),
        };
        let sender = match RawSender::open(ifindex) {
            Ok(sender) => Some(Arc::new(sender)),
            Err(e) => {
                tracing::warn!(error = %e, "no raw socket: VIPs taken over are not announced");
                None
            }
        };
        Ownership {
            owned,
            leased: stale,
            lease,
            renew,
            mac,
            sender,
            hooks: HookQueue::start(),
        }
    }

    /// Follows a reloaded config (whose groups, in a cluster, are the same:
    /// see `reload`): a standalone node owns every group. The next
    /// `renew` leases the VIPs added to owned groups and drops the removed.
    pub(crate) fn reconfigure(&mut self, config: &Config) {
        if config.cluster.is_none() {
            self.owned = (0..config.groups.len()).collect();
        }
    }

    /// How often `renew` must run.
    pub(crate) fn renew_period(&self) -> Duration {
        self.renew
    }

    pub(crate) fn owns(&self, group: usize) -> bool {
        self.owned.contains(&group)
    }

    /// Addresses of the VIPs in `groups`.
    fn addresses(config: &Config, groups: impl Fn(usize) -> bool) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = config
            .vips
            .iter()
            .filter(|v| groups(v.group))
            .map(|v| v.address)
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Writes a fresh lease for every owned address and clears the others.
    pub(crate) fn renew(&mut self, config: &Config, datapath: &mut Datapath) -> Result<()> {
        let wanted: BTreeSet<Addr> = Self::addresses(config, |g| self.owned.contains(&g))
            .into_iter()
            .map(addr_bytes)
            .collect();
        let lease = OwnedLease {
            deadline_ns: monotonic_ns() + self.lease.as_nanos() as u64,
        };
        write_leases(datapath, &self.leased, &wanted, &lease)?;
        self.leased = wanted;
        Ok(())
    }

    /// Without a cluster nothing is ever taken: the node owns its VIPs from
    /// the start, and a VIP from the reload that adds it. Announces the
    /// addresses of `config` that `before` (the config a reload replaced;
    /// `None` at start) did not have, as `take` does in a cluster.
    pub(crate) fn announce_standalone(&self, config: &Config, before: Option<&Config>) {
        if config.cluster.is_some() {
            return;
        }
        let known = before.map_or_else(Vec::new, |b| Self::addresses(b, |_| true));
        let added: Vec<IpAddr> = Self::addresses(config, |_| true)
            .into_iter()
            .filter(|a| !known.contains(a))
            .collect();
        self.announce(config, added);
    }

    /// Sends the announcement burst for `addrs` in the background, with the
    /// count and interval of `[cluster]` or, without one, of `[node]`.
    fn announce(&self, config: &Config, addrs: Vec<IpAddr>) {
        let Some(sender) = &self.sender else {
            return;
        };
        if addrs.is_empty() {
            return;
        }
        let (count, interval) = match &config.cluster {
            Some(cluster) => (cluster.announce_count, cluster.announce_interval),
            None => (config.node.announce_count, config.node.announce_interval),
        };
        let (sender, mac) = (sender.clone(), self.mac);
        tokio::spawn(async move {
            if let Err(e) = announce::announce(&sender, mac, &addrs, count, interval).await {
                tracing::warn!(error = %e, "announcement incomplete");
            }
        });
    }

    /// Takes a group: lease at once, announce, `on_owner`.
    pub(crate) fn take(
        &mut self,
        config: &Config,
        datapath: &mut Datapath,
        group: usize,
        reason: &str,
    ) -> Result<()> {
        if !self.owned.insert(group) {
            return Ok(());
        }
        self.renew(config, datapath)?;
        self.announce(config, Self::addresses(config, |g| g == group));
        self.hook(config, Event::Owner, Some(group), reason);
        Ok(())
    }

    /// Releases a group: lease cleared at once, `on_standby`.
    pub(crate) fn release(
        &mut self,
        config: &Config,
        datapath: &mut Datapath,
        group: usize,
        reason: &str,
    ) -> Result<()> {
        if !self.owned.remove(&group) {
            return Ok(());
        }
        self.renew(config, datapath)?;
        self.hook(config, Event::Standby, Some(group), reason);
        Ok(())
    }

    /// Queues the hook configured for `event`, if any.
    pub(crate) fn hook(&self, config: &Config, event: Event, group: Option<usize>, reason: &str) {
        let Some(cluster) = &config.cluster else {
            return;
        };
        let command = match event {
            Event::Owner => &cluster.on_owner,
            Event::Standby => &cluster.on_standby,
            Event::Fault => &cluster.on_fault,
        };
        let Some(command) = command else {
            return;
        };
        let vips = group.map_or(String::new(), |g| {
            Self::addresses(config, |x| x == g)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        });
        self.hooks.push(Hook {
            command: command.clone(),
            env: vec![
                ("HA_EVENT".into(), event.name().into()),
                ("HA_NODE".into(), config.node.name.clone()),
                (
                    "HA_GROUP".into(),
                    group.map_or(String::new(), |g| config.groups[g].clone()),
                ),
                ("HA_VIPS".into(), vips),
                ("HA_REASON".into(), reason.to_string()),
            ],
            timeout: cluster.hook_timeout,
        });
    }
}

/// Where leases are written: OWNED in the datapath (a fixed-size hash map),
/// a map of the same behaviour in the tests.
pub(crate) trait LeaseMap {
    /// Inserts or replaces the lease of `addr`.
    fn set_owned(&mut self, addr: &Addr, lease: &OwnedLease) -> Result<()>;
    fn remove_owned(&mut self, addr: &Addr) -> Result<()>;
}

impl LeaseMap for Datapath {
    fn set_owned(&mut self, addr: &Addr, lease: &OwnedLease) -> Result<()> {
        Datapath::set_owned(self, addr, lease)
    }

    fn remove_owned(&mut self, addr: &Addr) -> Result<()> {
        Datapath::remove_owned(self, addr)
    }
}

/// Takes the lease map from holding `leased` to holding `wanted`, each
/// with `lease`. Removals come first: a full map (an earlier agent's
/// leases, a reload that replaces VIPs) has room for every new address
/// once the old ones are gone, and a renewal replaces an entry in place.
fn write_leases(
    map: &mut impl LeaseMap,
    leased: &BTreeSet<Addr>,
    wanted: &BTreeSet<Addr>,
    lease: &OwnedLease,
) -> Result<()> {
    for addr in leased.difference(wanted) {
        map.remove_owned(addr)?;
    }
    for addr in wanted {
        map.set_owned(addr, lease)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
