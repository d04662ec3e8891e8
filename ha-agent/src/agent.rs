//! The daemon's main loop: load the config, load (or adopt) the datapath,
//! keep the maps equal to the desired state as backend MACs are learned,
//! renew the ownership leases, and leave cleanly on SIGTERM/SIGINT.
//!
//! Until clustering exists this node owns every configured VIP.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_common::{Addr, OwnedLease};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::{self, Config},
    datapath::{Datapath, LoadOptions, monotonic_ns},
    desired::{Applied, Desired, addr_bytes},
    netlink::{Netlink, format_mac, solicit},
};

/// How long an ownership lease lasts in the datapath without renewal.
const LEASE: Duration = Duration::from_millis(1000);
/// How often leases are renewed: several renewals fit in one lease.
const LEASE_RENEW: Duration = Duration::from_millis(200);
/// How often the neighbour table is read for new or changed backend MACs.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);
/// How long start-up waits for backend MACs before going on without them.
const INITIAL_RESOLVE: Duration = Duration::from_secs(3);

pub struct Options {
    pub config: PathBuf,
    /// Leave program, link and maps pinned on exit (traffic keeps flowing).
    pub keep_datapath: bool,
}

struct Agent {
    config: Config,
    datapath: Datapath,
    applied: Applied,
    macs: HashMap<IpAddr, [u8; 6]>,
    owned: BTreeSet<Addr>,
}

pub async fn run(options: Options) -> Result<()> {
    let config = config::load(&options.config)?;
    let netlink = Netlink::open(&config.node.interface).await?;
    let node_mac = config.node.mac.unwrap_or(netlink.mac);
    let pin_dir = config.datapath.pin_dir.join(&config.node.name);
    let datapath = Datapath::load(&LoadOptions {
        ring_size: config.datapath.ring_size,
        max_flows: config.datapath.max_flows,
        node_mac,
        pin_dir: Some(pin_dir.clone()),
    })?;
    let maps = datapath.maps();
    let applied = Applied::adopt(&maps.vips()?, &maps.backends()?);
    let stale_owned = maps.owned()?.into_iter().map(|(addr, _)| addr).collect();
    let mut agent = Agent {
        config,
        datapath,
        applied,
        macs: HashMap::new(),
        owned: stale_owned,
    };

    let backends = agent.backend_addresses();
    agent.macs = netlink.resolve(&backends, INITIAL_RESOLVE).await?;
    for addr in backends.iter().filter(|a| !agent.macs.contains_key(a)) {
        tracing::warn!(backend = %addr, "no MAC yet: backend gets no traffic until it answers ARP/NDP");
    }
    agent.reconcile("start")?;
    agent.renew_leases()?;
    let mode = agent.datapath.attach(&agent.config.node.interface)?;
    tracing::info!(
        node = %agent.config.node.name,
        interface = %agent.config.node.interface,
        mac = %format_mac(&node_mac),
        ?mode,
        pins = %pin_dir.display(),
        vips = agent.config.vips.len(),
        "datapath attached"
    );

    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut neighbour_tick = tokio::time::interval(NEIGHBOUR_REFRESH);
    loop {
        tokio::select! {
            _ = lease_tick.tick() => agent.renew_leases()?,
            _ = neighbour_tick.tick() => agent.refresh_neighbours(&netlink).await?,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    if options.keep_datapath {
        tracing::info!(pins = %pin_dir.display(), "exiting, datapath left running");
    } else {
        agent.datapath.detach_and_unpin()?;
        tracing::info!("exiting, datapath detached and unpinned");
    }
    Ok(())
}

impl Agent {
    fn backend_addresses(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self
            .config
            .vips
            .iter()
            .flat_map(|v| v.backends.iter().map(|b| b.address))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Static MACs from the config win over learned ones.
    fn known_macs(&self) -> HashMap<IpAddr, [u8; 6]> {
        let mut macs = self.macs.clone();
        for backend in self.config.vips.iter().flat_map(|v| &v.backends) {
            if let Some(mac) = backend.mac {
                macs.insert(backend.address, mac);
            }
        }
        macs
    }

    fn reconcile(&mut self, cause: &str) -> Result<()> {
        let started = Instant::now();
        let desired = Desired::compute(&self.config, &self.known_macs());
        let (writes, next) = self.applied.plan(&desired);
        if writes.is_empty() {
            return Ok(());
        }
        self.datapath.apply(&writes)?;
        self.applied = next;
        tracing::info!(
            cause,
            writes = writes.len(),
            latency_us = started.elapsed().as_micros() as u64,
            "maps reconciled"
        );
        Ok(())
    }

    /// Every configured VIP address gets a fresh lease; addresses no
    /// longer configured lose theirs.
    fn renew_leases(&mut self) -> Result<()> {
        let wanted: BTreeSet<Addr> = self
            .config
            .vips
            .iter()
            .map(|v| addr_bytes(v.address))
            .collect();
        let lease = OwnedLease {
            deadline_ns: monotonic_ns() + LEASE.as_nanos() as u64,
        };
        for addr in &wanted {
            self.datapath.set_owned(addr, &lease)?;
        }
        for addr in self.owned.difference(&wanted) {
            self.datapath.remove_owned(addr)?;
        }
        self.owned = wanted;
        Ok(())
    }

    /// Picks up backends that answered since, and MACs that changed.
    async fn refresh_neighbours(&mut self, netlink: &Netlink) -> Result<()> {
        let backends = self.backend_addresses();
        let table = netlink.neighbours().await?;
        let macs: HashMap<IpAddr, [u8; 6]> = backends
            .iter()
            .filter_map(|a| table.get(a).map(|m| (*a, *m)))
            .collect();
        for addr in backends.iter().filter(|a| !macs.contains_key(a)) {
            solicit(*addr).await;
        }
        if macs != self.macs {
            for (addr, mac) in &macs {
                if self.macs.get(addr) != Some(mac) {
                    tracing::info!(backend = %addr, mac = %format_mac(mac), "backend MAC learned");
                }
            }
            self.macs = macs;
            self.reconcile("neighbour table changed")?;
        }
        Ok(())
    }
}
