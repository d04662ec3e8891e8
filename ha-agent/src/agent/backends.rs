//! The agent's backends: the maps kept equal to what is known about them
//! (MACs, health verdicts, drains), each change a two-phase switchover,
//! and reloads of the configuration.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::Instant,
};

use anyhow::{Context, Result};
use ha_common::{BACKEND_F_DRAINING, BACKEND_F_HEALTHY};
use tokio::sync::mpsc;

use super::{
    Agent,
    neighbours::{Reading, Watched},
};
use crate::{
    cluster::{digest::digest, state::Input},
    config,
    desired::{Knowledge, backend_keys},
    health::{self, CheckSet, Checks, Transition},
    model::{BackendKey, Mac},
    reload,
};

/// The running health checks of one config and where their results
/// arrive. A reload replaces both, so a result of an old check (keyed by
/// the old config's positions) can never reach the new config.
pub(super) struct BackendChecks {
    _checks: Checks,
    pub(super) results: mpsc::UnboundedReceiver<Transition>,
}

impl BackendChecks {
    /// Starts `checks` (built from the config in force), down for `down`.
    pub(super) fn start(
        checks: CheckSet<BackendKey>,
        down: &BTreeSet<BackendKey>,
    ) -> BackendChecks {
        let (tx, results) = mpsc::unbounded_channel();
        BackendChecks {
            _checks: checks.spawn(down, tx),
            results,
        }
    }
}

impl Agent {
    pub(super) fn backend_addresses(&self) -> Vec<IpAddr> {
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

    /// What the neighbour watch looks for: the backends, and the
    /// tie-breaker (see `tell_tie_breaker`).
    pub(super) fn watched_addresses(&self) -> Watched {
        Watched {
            missing: self.backend_addresses(),
            always: self
                .config
                .cluster
                .as_ref()
                .and_then(|c| c.tie_breaker)
                .into_iter()
                .collect(),
        }
    }

    /// Brings every map to the desired state (phase 2 of a switchover).
    pub(super) fn reconcile(&mut self, cause: &str) -> Result<()> {
        let started = Instant::now();
        let writes = self.writer.reconcile(&self.config, &self.knowledge)?;
        if writes == 0 {
            return Ok(());
        }
        tracing::info!(
            cause,
            writes,
            latency_us = started.elapsed().as_micros() as u64,
            "maps reconciled"
        );
        Ok(())
    }

    /// A backend's knowledge changed: switch it over in two phases and log
    /// the cause with the time from the decision to each phase done.
    pub(super) fn switch_backend(
        &mut self,
        key: BackendKey,
        cause: &str,
        decided: Instant,
    ) -> Result<()> {
        let (entry, timings) =
            self.writer
                .switch_backend(&self.config, &self.knowledge, key, decided)?;
        self.phase1.observe_duration(timings.phase1);
        self.phase2.observe_duration(timings.phase2);
        let vip = &self.config.vips[key.vip];
        tracing::info!(
            vip = %vip.name,
            backend = %vip.backends[key.backend].address,
            healthy = entry.flags & BACKEND_F_HEALTHY != 0,
            draining = entry.flags & BACKEND_F_DRAINING != 0,
            cause,
            phase1_us = timings.phase1.as_micros() as u64,
            phase2_us = timings.phase2.as_micros() as u64,
            table_us = timings.compute.as_micros() as u64,
            "backend switched"
        );
        Ok(())
    }

    pub(super) async fn on_health(&mut self, transition: Transition) -> Result<()> {
        let changed = if transition.up {
            self.own_down.remove(&transition.key)
        } else {
            self.own_down.insert(transition.key)
        };
        if !changed {
            return Ok(());
        }
        self.health_sequence += 1;
        self.send_health().await;
        let cause = format!(
            "health check {}: {}",
            if transition.up { "up" } else { "down" },
            transition.cause
        );
        self.sync_health(&cause, transition.at)
    }

    /// Reads the config file again and applies it, or changes nothing: an
    /// invalid file or a change that needs a restart is an error (logged,
    /// and returned to `hactl reload`). Health and drains follow each
    /// backend that stays; ids stay, so established flows keep theirs.
    /// Applied at once with the MACs known: a new backend whose MAC is not
    /// known yet gets traffic when it is learned, and the answer says so.
    pub(super) async fn reload(&mut self) -> Result<String> {
        crate::systemd::reloading();
        let outcome = self.try_reload().await;
        let last = match &outcome {
            Ok(changes) => {
                tracing::info!(%changes, "configuration reloaded");
                "reloaded"
            }
            Err(e) => {
                tracing::error!(
                    error = %format!("{e:#}"),
                    "configuration reload refused: running config unchanged"
                );
                "reload refused, running the previous config"
            }
        };
        crate::systemd::ready(&format!(
            "{} VIPs on {}, {last}",
            self.config.vips.len(),
            self.config.node.interface
        ));
        outcome.map(|changes| {
            let pending: Vec<String> = self
                .backend_addresses()
                .into_iter()
                .filter(|a| !self.knowledge.macs.contains_key(a))
                .map(|a| a.to_string())
                .collect();
            if pending.is_empty() {
                format!("reloaded: {changes}")
            } else {
                format!(
                    "reloaded: {changes}; MAC not known yet of {} (each gets traffic once it answers ARP/NDP)",
                    pending.join(", ")
                )
            }
        })
    }

    pub(super) async fn try_reload(&mut self) -> Result<reload::Changes> {
        let new = config::load(&self.config_path)?;
        let changes = reload::diff(&self.config, &new)?;
        if new == self.config {
            return Ok(changes);
        }
        // Before anything changes: a check that cannot be built (an https
        // check's CA file) refuses the reload.
        let checks = health::backend_checks(&new)?;
        self.writer.renumber(&new)?;
        let old = std::mem::replace(&mut self.config, new);
        self.own_down = reload::follow(&old, &self.config, &self.own_down);
        self.knowledge.down = reload::follow(&old, &self.config, &self.knowledge.down);
        self.knowledge.drained = self.operator_drains();
        self.checks = BackendChecks::start(checks, &self.own_down);
        self.ownership.reconfigure(&self.config);
        let digest = digest(&self.config);
        self.cluster_input(|now| Input::Digest { now, digest })
            .await?;
        // New backends' MACs arrive as neighbour readings: nothing here
        // waits for them.
        self.neighbours.want(self.watched_addresses());
        self.reconcile("reload")?;
        self.renew_leases()?;
        self.ownership.announce_standalone(&self.config, Some(&old));
        self.sync_health("reload", Instant::now())?;
        Ok(changes)
    }

    /// Drains are operator state: changed here, applied here and on every
    /// peer (which may have been typed on any node).
    pub(super) async fn set_drained(
        &mut self,
        vip: &str,
        backend: IpAddr,
        drained: bool,
    ) -> Result<String> {
        let key = self.find_backend(vip, backend)?;
        let entry = (self.config.vips[key.vip].name.clone(), backend);
        let verb = if drained { "drained" } else { "undrained" };
        if self.operator.drained.contains(&entry) == drained {
            return Ok(format!("{backend} of {vip} was already {verb}"));
        }
        let me = self.config.node.name.clone();
        self.operator.change(&me, |state| {
            if drained {
                state.drained.insert(entry);
            } else {
                state.drained.remove(&entry);
            }
        });
        self.apply_operator().await?;
        self.send_operator().await;
        Ok(format!("{backend} of {vip} {verb}"))
    }

    /// The backends the operator state drains, in this config.
    pub(super) fn operator_drains(&self) -> BTreeSet<BackendKey> {
        self.operator
            .drained
            .iter()
            .filter_map(|(vip, addr)| self.find_backend(vip, *addr).ok())
            .collect()
    }

    /// Backends by (VIP name, address), the form peers understand.
    pub(super) fn named(&self, keys: &BTreeSet<BackendKey>) -> BTreeSet<(String, IpAddr)> {
        keys.iter()
            .map(|k| {
                let vip = &self.config.vips[k.vip];
                (vip.name.clone(), vip.backends[k.backend].address)
            })
            .collect()
    }

    /// The health the maps follow: for a group this node owns (or that no
    /// peer claims) its own checks; for a group a peer owns, that owner's
    /// view, so every node holds the owner's ring and a failover keeps
    /// every flow on its backend.
    pub(super) fn effective_down(&self) -> BTreeSet<BackendKey> {
        if self.cluster.is_none() {
            return self.own_down.clone();
        }
        let owners: Vec<Option<String>> = (0..self.config.groups.len())
            .map(|g| self.owner(g))
            .collect();
        backend_keys(&self.config)
            .filter(|key| {
                let vip = &self.config.vips[key.vip];
                let owners_view = owners[vip.group]
                    .as_ref()
                    .filter(|owner| **owner != self.config.node.name)
                    .and_then(|owner| self.peer_views.get(owner));
                match owners_view {
                    Some(view) => view
                        .down
                        .contains(&(vip.name.clone(), vip.backends[key.backend].address)),
                    None => self.own_down.contains(key),
                }
            })
            .collect()
    }

    /// Switches the backends whose effective health changed.
    pub(super) fn sync_health(&mut self, cause: &str, decided: Instant) -> Result<()> {
        let wanted = self.effective_down();
        self.switch_set(|k| &mut k.down, wanted, cause, decided)
    }

    /// Replaces one of the backend sets the maps follow (`down`,
    /// `drained`) and switches every backend that entered or left it.
    pub(super) fn switch_set(
        &mut self,
        set: fn(&mut Knowledge) -> &mut BTreeSet<BackendKey>,
        wanted: BTreeSet<BackendKey>,
        cause: &str,
        decided: Instant,
    ) -> Result<()> {
        let current = set(&mut self.knowledge);
        let changed: Vec<BackendKey> = wanted.symmetric_difference(current).copied().collect();
        *current = wanted;
        for key in changed {
            self.switch_backend(key, cause, decided)?;
        }
        Ok(())
    }

    /// A VIP by name or address (when only one VIP has it), then one of its
    /// backends by address.
    pub(super) fn find_backend(&self, vip: &str, backend: IpAddr) -> Result<BackendKey> {
        let by_name = self.config.vips.iter().position(|v| v.name == vip);
        let index = match by_name {
            Some(index) => index,
            None => {
                let address: IpAddr = vip
                    .parse()
                    .map_err(|_| anyhow::anyhow!("no VIP named {vip}"))?;
                let matching: Vec<usize> = (0..self.config.vips.len())
                    .filter(|&i| self.config.vips[i].address == address)
                    .collect();
                match matching.as_slice() {
                    [one] => *one,
                    [] => anyhow::bail!("no VIP with address {vip}"),
                    _ => anyhow::bail!("several VIPs have address {vip}: name one"),
                }
            }
        };
        let vip = &self.config.vips[index];
        let position = vip
            .backends
            .iter()
            .position(|b| b.address == backend)
            .with_context(|| format!("{backend} is not a backend of {}", vip.name))?;
        Ok(BackendKey {
            vip: index,
            backend: position,
        })
    }

    /// A reading of the neighbour table and the link: picks up backends
    /// that answered since and MACs that changed, then tells the cluster
    /// about the link and the tie-breaker.
    pub(super) async fn on_neighbours(&mut self, reading: Reading) -> Result<()> {
        self.learn_macs(&reading.table)?;
        if reading.link_up != self.link_up {
            self.link_up = reading.link_up;
            self.check_eligibility().await?;
        }
        self.tell_tie_breaker(&reading.table).await
    }

    fn learn_macs(&mut self, table: &HashMap<IpAddr, Mac>) -> Result<()> {
        let macs: HashMap<IpAddr, Mac> = self
            .backend_addresses()
            .iter()
            .filter_map(|a| table.get(a).map(|m| (*a, *m)))
            .collect();
        if macs != self.knowledge.macs {
            for (addr, mac) in &macs {
                if self.knowledge.macs.get(addr) != Some(mac) {
                    tracing::info!(backend = %addr, %mac, "backend MAC learned");
                }
            }
            self.knowledge.macs = macs;
            self.reconcile("neighbour table changed")?;
        }
        Ok(())
    }
}
