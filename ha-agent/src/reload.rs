//! What a configuration reload may change, and what it changed: pure.
//!
//! Why: a reload applies entirely or changes nothing. VIPs, backends,
//! weights and checks change under traffic (ids stay with what stays, see
//! `ids`); what the running process is built around (the node, the
//! datapath's sizes and pins, the metrics listener, the cluster and, in a
//! cluster, the VIP groups that heartbeats number) needs a restart, and a
//! reload that touches it is refused naming the sections. State kept per
//! backend (health, drains) follows the backend by identity, not position.

use std::{collections::BTreeSet, fmt};

use crate::{config::Config, desired::backend_keys, ids::identity, model::BackendKey};

/// A reload that needs a restart instead.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} changed: restart the agent to apply (nothing was changed)", .sections.join(", "))]
pub(crate) struct RestartNeeded {
    pub sections: Vec<&'static str>,
}

/// What a reload changes, for the log and `hactl reload`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub vips_added: Vec<String>,
    pub vips_removed: Vec<String>,
    /// VIPs kept whose settings (check, group, on_no_backend) changed.
    pub vips_changed: Vec<String>,
    pub backends_added: usize,
    pub backends_removed: usize,
    /// Backends kept whose weight or MAC changed.
    pub backends_changed: usize,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "no change");
        }
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.vips_added),
            ("removed", &self.vips_removed),
            ("changed", &self.vips_changed),
        ] {
            if !names.is_empty() {
                parts.push(format!("VIPs {what}: {}", names.join(", ")));
            }
        }
        for (what, n) in [
            ("added", self.backends_added),
            ("removed", self.backends_removed),
            ("changed", self.backends_changed),
        ] {
            if n > 0 {
                parts.push(format!("backends {what}: {n}"));
            }
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Checks that `new` can replace `old` in a running agent, and says what
/// changes.
pub(crate) fn diff(old: &Config, new: &Config) -> Result<Changes, RestartNeeded> {
    let mut sections = Vec::new();
    if old.node != new.node {
        sections.push("[node]");
    }
    if old.datapath != new.datapath {
        sections.push("[datapath]");
    }
    if old.metrics != new.metrics {
        sections.push("[metrics]");
    }
    if old.cluster != new.cluster {
        sections.push("[cluster]");
    }
    if old.cluster.is_some() && old.groups != new.groups {
        sections.push("the VIP groups (numbered in heartbeats)");
    }
    if !sections.is_empty() {
        return Err(RestartNeeded { sections });
    }
    let mut changes = Changes::default();
    let key = |c: &Config, i: usize| c.vips[i].key();
    for (i, vip) in new.vips.iter().enumerate() {
        match (0..old.vips.len()).find(|&j| key(old, j) == key(new, i)) {
            None => changes.vips_added.push(vip.name.clone()),
            Some(j) => {
                let before = &old.vips[j];
                if before.check != vip.check
                    || old.groups[before.group] != new.groups[vip.group]
                    || before.on_no_backend != vip.on_no_backend
                {
                    changes.vips_changed.push(vip.name.clone());
                }
            }
        }
    }
    for (j, vip) in old.vips.iter().enumerate() {
        if !(0..new.vips.len()).any(|i| key(old, j) == key(new, i)) {
            changes.vips_removed.push(vip.name.clone());
        }
    }
    for k in backend_keys(new) {
        match find(old, &identity(new, k)) {
            None => changes.backends_added += 1,
            Some(o) => {
                if old.vips[o.vip].backends[o.backend] != new.vips[k.vip].backends[k.backend] {
                    changes.backends_changed += 1;
                }
            }
        }
    }
    changes.backends_removed = backend_keys(old)
        .filter(|k| find(new, &identity(old, *k)).is_none())
        .count();
    Ok(changes)
}

/// The backends of `keys` (positions in `old`) that `new` still has, at
/// their positions in `new`.
pub(crate) fn follow(
    old: &Config,
    new: &Config,
    keys: &BTreeSet<BackendKey>,
) -> BTreeSet<BackendKey> {
    keys.iter()
        .filter_map(|k| find(new, &identity(old, *k)))
        .collect()
}

fn find(config: &Config, wanted: &(ha_common::VipKey, ha_common::Addr)) -> Option<BackendKey> {
    backend_keys(config).find(|k| identity(config, *k) == *wanted)
}

#[cfg(test)]
mod tests;
