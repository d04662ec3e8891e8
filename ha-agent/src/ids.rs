//! Map ids of VIPs and backends that stay put across reloads and restarts.
//!
//! Why: a flow entry remembers (vip_id, backend_id). Ids numbered by config
//! position would shift when a VIP or backend is added or removed before
//! another, and every established flow of the shifted ones would be
//! re-placed. So an id, once given, stays with its VIP (address, port,
//! protocol) or backend (VIP, address) until that goes away; a restarted
//! agent recovers them from the pinned VIPS and BACKENDS maps.
//!
//! A new entry gets the lowest id that neither the old nor the new
//! numbering uses, so a slot is never handed over within one change (the
//! removed entry's ring and counters are gone before the id comes back).

use std::collections::{BTreeSet, HashMap};

use ha_common::{Addr, Backend, MAX_BACKENDS, MAX_VIPS, VipKey, VipValue};

use crate::{
    config::{Config, VipConfig},
    desired::backend_keys,
    model::{BackendKey, addr_bytes},
};

/// A backend's identity: its VIP and its address.
type BackendIdentity = (VipKey, Addr);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    vips: HashMap<VipKey, u32>,
    backends: HashMap<BackendIdentity, u32>,
}

/// A configuration that needs more ids than the maps have.
#[derive(Debug, thiserror::Error)]
#[error("no free {what} id left (the maps hold {max}): too many {what}s at once")]
pub struct IdsExhausted {
    what: &'static str,
    max: u32,
}

impl Ids {
    /// The numbering an earlier agent left in the maps. Backend entries
    /// whose VIP is gone (written as empty) are ignored.
    pub fn adopt(vips: &[(VipKey, VipValue)], backends: &[(u32, Backend)]) -> Ids {
        let by_id: HashMap<u32, VipKey> = vips.iter().map(|(k, v)| (v.vip_id, *k)).collect();
        Ids {
            vips: vips.iter().map(|(k, v)| (*k, v.vip_id)).collect(),
            backends: backends
                .iter()
                .filter_map(|(id, b)| by_id.get(&b.vip_id).map(|vip| ((*vip, b.addr), *id)))
                .collect(),
        }
    }

    /// The numbering of `config`: known VIPs and backends keep their ids,
    /// new ones get fresh ids in config order.
    pub fn assign(&self, config: &Config) -> Result<Ids, IdsExhausted> {
        let vip_keys: Vec<VipKey> = config.vips.iter().map(VipConfig::key).collect();
        let backend_keys: Vec<BackendIdentity> = config
            .vips
            .iter()
            .zip(&vip_keys)
            .flat_map(|(vip, key)| vip.backends.iter().map(|b| (*key, addr_bytes(b.address))))
            .collect();
        Ok(Ids {
            vips: renumber(&self.vips, &vip_keys, "VIP", MAX_VIPS)?,
            backends: renumber(&self.backends, &backend_keys, "backend", MAX_BACKENDS)?,
        })
    }

    /// This numbering without the VIPs and backends `config` does not have.
    pub fn kept(&self, config: &Config) -> Ids {
        let vip_keys: Vec<VipKey> = config.vips.iter().map(VipConfig::key).collect();
        let backend_keys: Vec<BackendIdentity> = backend_keys(config)
            .map(|key| identity(config, key))
            .collect();
        Ids {
            vips: self
                .vips
                .iter()
                .filter(|(k, _)| vip_keys.contains(k))
                .map(|(k, id)| (*k, *id))
                .collect(),
            backends: self
                .backends
                .iter()
                .filter(|(k, _)| backend_keys.contains(k))
                .map(|(k, id)| (*k, *id))
                .collect(),
        }
    }

    /// Whether VIP `key` is numbered.
    pub fn has_vip(&self, key: &VipKey) -> bool {
        self.vips.contains_key(key)
    }

    /// Whether backend id `id` is given.
    pub fn has_backend_id(&self, id: u32) -> bool {
        self.backends.values().any(|&given| given == id)
    }

    /// The id of the `index`th configured VIP (the numbering must be of
    /// this config).
    pub fn vip(&self, config: &Config, index: usize) -> u32 {
        self.vips[&config.vips[index].key()]
    }

    pub fn backend(&self, config: &Config, key: BackendKey) -> u32 {
        self.backends[&identity(config, key)]
    }
}

/// What a backend is, independent of its position in the config: the key
/// that carries its state across a reload.
pub fn identity(config: &Config, key: BackendKey) -> BackendIdentity {
    let vip = &config.vips[key.vip];
    (vip.key(), addr_bytes(vip.backends[key.backend].address))
}

/// Ids 1..max for `wanted`: `known` ones kept, the others the lowest free.
fn renumber<K: Copy + Eq + std::hash::Hash>(
    known: &HashMap<K, u32>,
    wanted: &[K],
    what: &'static str,
    max: u32,
) -> Result<HashMap<K, u32>, IdsExhausted> {
    let mut ids: HashMap<K, u32> = wanted
        .iter()
        .filter_map(|k| known.get(k).map(|id| (*k, *id)))
        .collect();
    let mut taken: BTreeSet<u32> = known.values().chain(ids.values()).copied().collect();
    let mut candidate = 1;
    for key in wanted {
        if ids.contains_key(key) {
            continue;
        }
        while taken.contains(&candidate) {
            candidate += 1;
        }
        if candidate >= max {
            return Err(IdsExhausted { what, max: max - 1 });
        }
        taken.insert(candidate);
        ids.insert(*key, candidate);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
