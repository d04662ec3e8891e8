//! Desired-state reconciliation, pure: (config, what is known about the
//! backends) -> the complete content the maps should hold -> the minimal
//! writes from what they hold now. Restarting the agent converges to the
//! same maps, and a ring is only rewritten when its table changes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
};

use ha_common::{
    Addr, BACKEND_F_DRAINING, BACKEND_F_HEALTHY, Backend, VIP_F_NO_BACKEND_PASS, VipKey, VipValue,
    backend_stats_index, vip_stats_index,
};

use crate::{
    config::{Config, NoBackend},
    ids::Ids,
    maglev::{MaglevBackend, build_table},
    model::{BackendKey, Mac, addr_bytes},
};

/// One VIP as the maps should hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredVip {
    pub key: VipKey,
    pub vip_id: u32,
    pub flags: u32,
    /// Backend id per ring slot; 0 where no backend can take traffic.
    pub table: Table,
}

/// A Maglev table of backend ids, shared rather than copied (256 KiB at
/// the default size).
pub type Table = Arc<[u32]>;

/// Maglev tables remembered by their inputs, so a change of one backend
/// recomputes only its VIP's table (about 1.3 ms each at M = 65537).
#[derive(Default)]
pub struct Tables {
    by_vip: HashMap<VipKey, (Vec<Member>, Table)>,
}

/// A backend in a VIP's table: id, address (the Maglev key) and weight.
type Member = (u32, Addr, u32);

impl Tables {
    /// The table of `members` (id, address, weight), computed only when
    /// they differ from the last call for this VIP.
    fn table(&self, vip: &VipKey, members: &[Member], ring_size: u32) -> Table {
        if let Some((known, table)) = self.by_vip.get(vip) {
            if known == members && table.len() == ring_size as usize {
                return table.clone();
            }
        }
        let maglev: Vec<MaglevBackend<'_>> = members
            .iter()
            .map(|(_, addr, weight)| MaglevBackend {
                key: addr,
                weight: *weight,
            })
            .collect();
        let slots = build_table(&maglev, ring_size);
        if slots.is_empty() {
            vec![0; ring_size as usize].into()
        } else {
            slots.iter().map(|&i| members[i as usize].0).collect()
        }
    }
}

/// The complete content of VIPS, BACKENDS and RINGS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub vips: Vec<DesiredVip>,
    pub backends: BTreeMap<u32, Backend>,
}

/// What the agent knows about backends beyond the config: learned MACs,
/// health check verdicts and operator drains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Knowledge {
    pub macs: HashMap<IpAddr, Mac>,
    /// Backends whose checks failed; all others count as up.
    pub down: BTreeSet<BackendKey>,
    /// Backends an operator drained (hactl drain).
    pub drained: BTreeSet<BackendKey>,
}

/// Every backend of every VIP, in id order.
pub fn backend_keys(config: &Config) -> impl Iterator<Item = BackendKey> + '_ {
    config
        .vips
        .iter()
        .enumerate()
        .flat_map(|(vip, v)| (0..v.backends.len()).map(move |backend| BackendKey { vip, backend }))
}

impl Knowledge {
    /// A configured MAC wins over a learned one.
    pub fn mac(&self, config: &Config, key: BackendKey) -> Option<Mac> {
        let backend = &config.vips[key.vip].backends[key.backend];
        backend
            .mac
            .or_else(|| self.macs.get(&backend.address).copied())
    }

    /// The BACKENDS entry of one backend: HEALTHY when its MAC is known and
    /// its checks pass, DRAINING when its weight is 0 or it was drained.
    pub fn backend_entry(&self, config: &Config, ids: &Ids, key: BackendKey) -> Backend {
        let backend = &config.vips[key.vip].backends[key.backend];
        let mac = self.mac(config, key);
        let mut flags = 0;
        if mac.is_some() && !self.down.contains(&key) {
            flags |= BACKEND_F_HEALTHY;
        }
        if backend.weight == 0 || self.drained.contains(&key) {
            flags |= BACKEND_F_DRAINING;
        }
        Backend {
            addr: addr_bytes(backend.address),
            mac: mac.map_or([0; 6], |m| m.0),
            flags,
            weight: backend.weight,
            vip_id: ids.vip(config, key.vip),
        }
    }
}

impl Desired {
    /// The maps for `config` numbered by `ids` (of this config). A backend
    /// is in its VIP's Maglev table when it is HEALTHY and not DRAINING.
    pub fn compute(
        config: &Config,
        ids: &Ids,
        knowledge: &Knowledge,
        tables: &mut Tables,
    ) -> Desired {
        let ring_size = config.datapath.ring_size;
        let mut desired = Desired::default();
        let mut computed = HashMap::new();
        for (index, vip) in config.vips.iter().enumerate() {
            let mut members = Vec::new();
            for key in backend_keys(config).filter(|k| k.vip == index) {
                let id = ids.backend(config, key);
                let entry = knowledge.backend_entry(config, ids, key);
                desired.backends.insert(id, entry);
                if entry.flags == BACKEND_F_HEALTHY {
                    members.push((id, entry.addr, entry.weight));
                }
            }
            let key = vip.key();
            let table = tables.table(&key, &members, ring_size);
            computed.insert(key, (members, table.clone()));
            let flags = match vip.on_no_backend {
                NoBackend::Drop => 0,
                NoBackend::Pass => VIP_F_NO_BACKEND_PASS,
            };
            desired.vips.push(DesiredVip {
                key,
                vip_id: ids.vip(config, index),
                flags,
                table,
            });
        }
        tables.by_vip = computed;
        desired
    }
}

/// One map write, in the order they must happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Backend(u32, Backend),
    /// Fill one generation of a VIP's ring (the inactive one).
    Ring {
        vip_id: u32,
        generation: u32,
        table: Table,
    },
    /// Insert or replace a VIP; a new `ring_gen` flips to the new table.
    Vip(VipKey, VipValue),
    RemoveVip(VipKey),
    /// Zero one STATS slot: an id new to the maps starts counting afresh.
    ClearCounters(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct AppliedVip {
    value: VipValue,
    /// The active table, None when adopted from maps we did not write.
    table: Option<Table>,
}

/// What the maps hold now, as far as this agent knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    vips: HashMap<VipKey, AppliedVip>,
    backends: BTreeMap<u32, Backend>,
}

impl Applied {
    /// The state found in maps pinned by an earlier agent (`backends`
    /// without the empty entries). Their rings are
    /// not trusted (rewritten into the inactive generation, then flipped),
    /// so traffic keeps flowing on the old ring meanwhile.
    pub fn adopt(vips: &[(VipKey, VipValue)], backends: &[(u32, Backend)]) -> Applied {
        Applied {
            vips: vips
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        AppliedVip {
                            value: *v,
                            table: None,
                        },
                    )
                })
                .collect(),
            backends: backends.iter().copied().collect(),
        }
    }

    /// Forgets the VIPs and backend ids `ids` does not number, and returns
    /// the writes that remove them from the maps.
    pub fn forget(&mut self, ids: &Ids) -> Vec<Write> {
        let mut writes = Vec::new();
        self.vips.retain(|key, _| {
            let kept = ids.has_vip(key);
            if !kept {
                writes.push(Write::RemoveVip(*key));
            }
            kept
        });
        self.backends.retain(|id, _| {
            let kept = ids.has_backend_id(*id);
            if !kept {
                writes.push(Write::Backend(*id, Backend::default()));
            }
            kept
        });
        writes
    }

    /// Records one backend entry ahead of a full plan (the instant phase of
    /// a switchover) and returns the write, if the entry changed.
    pub fn set_backend(&mut self, id: u32, backend: Backend) -> Option<Write> {
        (self.backends.insert(id, backend) != Some(backend)).then_some(Write::Backend(id, backend))
    }

    /// The writes that turn the maps into `desired`, and the state after
    /// them. Backends are written first (a ring must never name a backend
    /// the map does not hold yet), then rings, then the VIP flips; what
    /// went away is removed last.
    pub fn plan(&self, desired: &Desired) -> (Vec<Write>, Applied) {
        let mut writes = Vec::new();
        let mut next = Applied {
            vips: HashMap::new(),
            backends: desired.backends.clone(),
        };
        // Ids new to the maps start counting from zero.
        for id in desired.backends.keys() {
            if !self.backends.contains_key(id) {
                writes.push(Write::ClearCounters(backend_stats_index(*id)));
            }
        }
        for vip in &desired.vips {
            if self
                .vips
                .get(&vip.key)
                .is_none_or(|c| c.value.vip_id != vip.vip_id)
            {
                writes.push(Write::ClearCounters(vip_stats_index(vip.vip_id)));
            }
        }
        for (id, backend) in &desired.backends {
            if self.backends.get(id) != Some(backend) {
                writes.push(Write::Backend(*id, *backend));
            }
        }
        for vip in &desired.vips {
            let current = self.vips.get(&vip.key);
            let same_id = current.filter(|c| c.value.vip_id == vip.vip_id);
            let table_unchanged = same_id.and_then(|c| c.table.as_ref()) == Some(&vip.table);
            let ring_gen = match same_id {
                Some(c) if table_unchanged => c.value.ring_gen,
                Some(c) => c.value.ring_gen ^ 1,
                None => 0,
            };
            if !table_unchanged {
                writes.push(Write::Ring {
                    vip_id: vip.vip_id,
                    generation: ring_gen,
                    table: vip.table.clone(),
                });
            }
            let value = VipValue {
                vip_id: vip.vip_id,
                flags: vip.flags,
                ring_gen,
                _pad: 0,
            };
            if current.map(|c| c.value) != Some(value) {
                writes.push(Write::Vip(vip.key, value));
            }
            next.vips.insert(
                vip.key,
                AppliedVip {
                    value,
                    table: Some(vip.table.clone()),
                },
            );
        }
        for key in self.vips.keys() {
            if !next.vips.contains_key(key) {
                writes.push(Write::RemoveVip(*key));
            }
        }
        for id in self.backends.keys() {
            if !desired.backends.contains_key(id) {
                writes.push(Write::Backend(*id, Backend::default()));
            }
        }
        (writes, next)
    }
}

#[cfg(test)]
mod tests;
