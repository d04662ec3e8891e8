//! The two-phase switchover of one backend (DESIGN.md section 2), shared by
//! the agent and the switchover benchmark so both measure the same code.
//!
//! Phase 1 writes the backend's BACKENDS entry and nothing else: from that
//! write on, the datapath's bounded re-probe steers the backend's flows
//! away (or, for a backend coming back, lets it take new flows in the slots
//! it still has). Phase 2 computes the Maglev table of the new backend set,
//! writes it into the VIP's inactive ring generation and flips
//! the generation in one VIPS update.

use std::time::{Duration, Instant};

use anyhow::Result;
use ha_common::Backend;

use crate::{
    config::Config,
    datapath::Datapath,
    desired::{Applied, Desired, Knowledge, backend_id},
    health::BackendKey,
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

/// Applies what `knowledge` now says about `key`; `decided` is when the
/// decision was taken (a check result, an operator command).
pub fn switch_backend(
    datapath: &mut Datapath,
    applied: &mut Applied,
    config: &Config,
    knowledge: &Knowledge,
    key: BackendKey,
    decided: Instant,
) -> Result<(Backend, Timings)> {
    let entry = knowledge.backend_entry(config, key);
    if let Some(write) = applied.set_backend(backend_id(config, key), entry) {
        datapath.apply(&[write])?;
    }
    let phase1 = decided.elapsed();
    let computing = Instant::now();
    let desired = Desired::compute(config, knowledge);
    let (writes, next) = applied.plan(&desired);
    let compute = computing.elapsed();
    let writing = Instant::now();
    datapath.apply(&writes)?;
    *applied = next;
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
