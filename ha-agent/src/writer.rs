//! The one writer of the maps: the datapath handles,
//! what the maps hold, and the Maglev tables computed so far. The agent and
//! the switchover benchmark both drive it, so both measure the same code.
//!
//! A backend change is a two-phase switchover. Phase 1
//! writes the backend's BACKENDS entry and nothing else: from that write on,
//! the datapath's bounded re-probe steers the backend's flows away (or lets
//! a returning backend take new flows in the slots it still has). Phase 2
//! computes the new Maglev table, writes it into the VIP's inactive ring
//! generation and flips the generation in one VIPS update.

use std::time::{Duration, Instant};

use anyhow::Result;
use ha_common::Backend;

use crate::{
    config::Config,
    datapath::Datapath,
    desired::{Applied, Desired, Knowledge, Tables},
    ids::{Ids, IdsExhausted},
    model::BackendKey,
};

/// Times from the decision, and what phase 2 spent computing tables.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Decision -> BACKENDS entry written.
    pub phase1: Duration,
    /// Computing the desired state, Maglev tables included.
    pub compute: Duration,
    /// Writing the rings and flipping the generations.
    pub write: Duration,
    /// Decision -> ring flipped.
    pub phase2: Duration,
}

pub struct Writer {
    pub datapath: Datapath,
    applied: Applied,
    tables: Tables,
    /// The numbering of the config last given to [`Writer::renumber`].
    ids: Ids,
}

impl Writer {
    /// Takes over `datapath`, whose maps may hold an earlier agent's state
    /// (and numbering), for `config`.
    pub fn adopt(datapath: Datapath, config: &Config) -> Result<Writer> {
        let maps = datapath.maps();
        let (vips, backends) = (maps.vips()?, maps.backends()?);
        let mut writer = Writer {
            datapath,
            applied: Applied::adopt(&vips, &backends),
            tables: Tables::default(),
            ids: Ids::adopt(&vips, &backends),
        };
        if let Err(exhausted) = writer.renumber(config) {
            // The maps hold VIPs or backends this config no longer has,
            // more than fit beside its new ones while their ids are kept
            // (the earlier agent had other VIPs): remove them first, so the
            // agent starts instead of failing at every start.
            tracing::warn!(
                error = %exhausted,
                "the pinned maps hold VIPs or backends this config no longer has: removed first, their ids are reused"
            );
            writer.remove_gone(config)?;
            writer.renumber(config)?;
        }
        Ok(writer)
    }

    /// Removes from the maps what the adopted numbering has and `config`
    /// has not, and forgets their ids.
    fn remove_gone(&mut self, config: &Config) -> Result<()> {
        let kept = self.ids.kept(config);
        let writes = self.applied.forget(&kept);
        self.datapath.apply(&writes)?;
        self.ids = kept;
        Ok(())
    }

    /// Numbers a new `config` (a reload) keeping the ids of what stays;
    /// every later call must pass this config. Nothing is written yet.
    pub fn renumber(&mut self, config: &Config) -> Result<(), IdsExhausted> {
        self.ids = self.ids.assign(config)?;
        Ok(())
    }

    pub fn ids(&self) -> &Ids {
        &self.ids
    }

    /// Brings every map to the desired state; the number of writes.
    pub fn reconcile(&mut self, config: &Config, knowledge: &Knowledge) -> Result<usize> {
        let desired = Desired::compute(config, &self.ids, knowledge, &mut self.tables);
        let (writes, next) = self.applied.plan(&desired);
        self.datapath.apply(&writes)?;
        self.applied = next;
        Ok(writes.len())
    }

    /// Applies what `knowledge` now says about `key` in two phases;
    /// `decided` is when the decision was taken (a check result, an
    /// operator command).
    pub fn switch_backend(
        &mut self,
        config: &Config,
        knowledge: &Knowledge,
        key: BackendKey,
        decided: Instant,
    ) -> Result<(Backend, Timings)> {
        let entry = knowledge.backend_entry(config, &self.ids, key);
        if let Some(write) = self
            .applied
            .set_backend(self.ids.backend(config, key), entry)
        {
            self.datapath.apply(&[write])?;
        }
        let phase1 = decided.elapsed();
        let computing = Instant::now();
        let desired = Desired::compute(config, &self.ids, knowledge, &mut self.tables);
        let (writes, next) = self.applied.plan(&desired);
        let compute = computing.elapsed();
        let writing = Instant::now();
        self.datapath.apply(&writes)?;
        self.applied = next;
        Ok((
            entry,
            Timings {
                phase1,
                compute,
                write: writing.elapsed(),
                phase2: decided.elapsed(),
            },
        ))
    }
}
