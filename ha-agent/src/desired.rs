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
    health::BackendKey,
    ids::Ids,
    maglev::{MaglevBackend, build_table},
    model::{Mac, addr_bytes},
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
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    const CONFIG: &str = r#"
[node]
name = "lb1"
interface = "eth0"

[datapath]
ring_size = 13

[[vip]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"
  [[vip.backend]]
  address = "198.18.0.13"
  weight = 0

[[vip]]
address = "2001:2::100"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "2001:2::11"
"#;

    fn ids(config: &Config) -> Ids {
        Ids::default().assign(config).expect("ids")
    }

    fn compute(config: &Config, knowledge: &Knowledge) -> Desired {
        Desired::compute(config, &ids(config), knowledge, &mut Tables::default())
    }

    fn config() -> Config {
        config::parse(Path::new("test.toml"), CONFIG).expect("valid config")
    }

    fn macs(addrs: &[&str]) -> Knowledge {
        Knowledge {
            macs: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| (a.parse().unwrap(), Mac([2, 0, 0, 0, 0, i as u8 + 1])))
                .collect(),
            ..Knowledge::default()
        }
    }

    #[test]
    fn ids_flags_and_tables_follow_the_config() {
        let d = compute(
            &config(),
            &macs(&["198.18.0.11", "198.18.0.12", "198.18.0.13", "2001:2::11"]),
        );
        assert_eq!(d.vips.len(), 2);
        assert_eq!(d.vips[0].vip_id, 1);
        assert_eq!(d.vips[0].key.port_be, 80u16.to_be());
        assert_eq!(d.vips[1].key.proto, ha_common::PROTO_UDP);
        assert_eq!(
            d.vips[1].key.addr,
            "2001:2::100"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(d.backends.len(), 4);
        assert_eq!(d.backends[&3].flags, BACKEND_F_HEALTHY | BACKEND_F_DRAINING);
        // The drained backend (id 3) gets no slot; the other two share all.
        let t = &d.vips[0].table;
        assert_eq!(t.len(), 13);
        assert!(t.iter().all(|&id| id == 1 || id == 2));
        assert!(t.contains(&1) && t.contains(&2));
        assert!(d.vips[1].table.iter().all(|&id| id == 4));
    }

    #[test]
    fn a_backend_without_mac_is_unhealthy_and_out_of_the_ring() {
        let d = compute(&config(), &macs(&["198.18.0.11"]));
        assert_eq!(d.backends[&2].flags, 0);
        assert!(d.vips[0].table.iter().all(|&id| id == 1));
        // No backend at all: every slot empty.
        assert!(d.vips[1].table.iter().all(|&id| id == 0));
    }

    #[test]
    fn first_plan_writes_everything_in_order_and_second_nothing() {
        let d = compute(&config(), &macs(&["198.18.0.11", "198.18.0.12"]));
        let (writes, applied) = Applied::default().plan(&d);
        let kinds: Vec<u8> = writes
            .iter()
            .map(|w| match w {
                Write::Backend(..) => 0,
                Write::Ring { .. } => 1,
                Write::Vip(..) => 2,
                Write::RemoveVip(..) => 3,
                Write::ClearCounters(..) => 4,
            })
            .collect();
        assert_eq!(kinds, [4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 1, 2, 1, 2]);
        let (again, same) = applied.plan(&d);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(same, applied);
    }

    #[test]
    fn a_table_change_fills_the_inactive_generation_then_flips() {
        let before = compute(&config(), &macs(&["198.18.0.11", "198.18.0.12"]));
        let (_, applied) = Applied::default().plan(&before);
        let after = compute(&config(), &macs(&["198.18.0.11"]));
        let (writes, next) = applied.plan(&after);
        assert_eq!(writes.len(), 3, "{writes:?}");
        assert!(matches!(writes[0], Write::Backend(2, b) if b.flags == 0));
        assert!(matches!(
            &writes[1],
            Write::Ring {
                vip_id: 1,
                generation: 1,
                ..
            }
        ));
        assert!(matches!(writes[2], Write::Vip(_, v) if v.ring_gen == 1));
        // And back: generation 0 again.
        let (writes, _) = next.plan(&before);
        assert!(matches!(
            &writes[1],
            Write::Ring {
                vip_id: 1,
                generation: 0,
                ..
            }
        ));
    }

    #[test]
    fn adopted_maps_get_rings_rewritten_into_the_inactive_generation() {
        let d = compute(&config(), &macs(&["198.18.0.11", "198.18.0.12"]));
        let (_, applied) = Applied::default().plan(&d);
        let stale_key = VipKey {
            addr: [9; 16],
            port_be: 1,
            proto: 6,
            _pad: 0,
        };
        let vips = vec![
            (
                d.vips[0].key,
                VipValue {
                    vip_id: 1,
                    flags: 0,
                    ring_gen: 1,
                    _pad: 0,
                },
            ),
            (
                stale_key,
                VipValue {
                    vip_id: 7,
                    flags: 0,
                    ring_gen: 0,
                    _pad: 0,
                },
            ),
        ];
        let backends: Vec<(u32, Backend)> =
            applied.backends.iter().map(|(k, v)| (*k, *v)).collect();
        let (writes, _) = Applied::adopt(&vips, &backends).plan(&d);
        assert!(writes.contains(&Write::Ring {
            vip_id: 1,
            generation: 0,
            table: d.vips[0].table.clone()
        }));
        assert!(writes.contains(&Write::RemoveVip(stale_key)));
        assert!(!writes.iter().any(|w| matches!(w, Write::Backend(..))));
    }

    #[test]
    fn failed_checks_and_drains_take_backends_out_of_the_ring() {
        let config = config();
        let mut known = macs(&["198.18.0.11", "198.18.0.12", "198.18.0.13"]);
        known.down.insert(BackendKey { vip: 0, backend: 0 });
        let d = compute(&config, &known);
        assert_eq!(d.backends[&1].flags, 0, "down: not HEALTHY");
        assert!(d.vips[0].table.iter().all(|&id| id == 2));
        known.down.clear();
        known.drained.insert(BackendKey { vip: 0, backend: 1 });
        let d = compute(&config, &known);
        assert_eq!(d.backends[&2].flags, BACKEND_F_HEALTHY | BACKEND_F_DRAINING);
        assert!(d.vips[0].table.iter().all(|&id| id == 1));
    }

    #[test]
    fn ids_new_to_the_maps_get_their_counters_cleared_first() {
        let config = config();
        let d = compute(&config, &macs(&["198.18.0.11"]));
        let (_, applied) = Applied::default().plan(&d);
        // The second VIP and its backend go, then come back under new ids.
        let mut fewer = config.clone();
        fewer.vips.truncate(1);
        let old = ids(&config);
        let gone = old.assign(&fewer).unwrap();
        let (_, applied) = applied.plan(&Desired::compute(
            &fewer,
            &gone,
            &Knowledge::default(),
            &mut Tables::default(),
        ));
        let back = gone.assign(&config).unwrap();
        assert_eq!((back.vip(&config, 1), old.vip(&config, 1)), (2, 2));
        let (writes, _) = applied.plan(&Desired::compute(
            &config,
            &back,
            &Knowledge::default(),
            &mut Tables::default(),
        ));
        assert_eq!(
            writes[..2],
            [
                Write::ClearCounters(backend_stats_index(4)),
                Write::ClearCounters(vip_stats_index(2)),
            ]
        );
        assert_eq!(
            writes
                .iter()
                .filter(|w| matches!(w, Write::ClearCounters(_)))
                .count(),
            2
        );
    }

    #[test]
    fn the_instant_phase_writes_one_backend_and_the_plan_then_only_rings() {
        let config = config();
        let mut known = macs(&["198.18.0.11", "198.18.0.12"]);
        let (_, mut applied) = Applied::default().plan(&compute(&config, &known));
        let key = BackendKey { vip: 0, backend: 1 };
        known.down.insert(key);
        let entry = known.backend_entry(&config, &ids(&config), key);
        assert_eq!(
            applied.set_backend(2, entry),
            Some(Write::Backend(2, entry))
        );
        assert_eq!(applied.set_backend(2, entry), None, "recorded");
        let (writes, _) = applied.plan(&compute(&config, &known));
        assert!(matches!(
            &writes[0],
            Write::Ring {
                vip_id: 1,
                generation: 1,
                ..
            }
        ));
        assert_eq!(writes.len(), 2, "{writes:?}");
    }

    #[test]
    fn on_no_backend_pass_sets_the_vip_flag() {
        let text = CONFIG.replacen(
            "protocol = \"udp\"",
            "protocol = \"udp\"\non_no_backend = \"pass\"",
            1,
        );
        let config = config::parse(Path::new("test.toml"), &text).expect("valid config");
        let d = compute(&config, &Knowledge::default());
        assert_eq!(d.vips[0].flags, 0);
        assert_eq!(d.vips[1].flags, VIP_F_NO_BACKEND_PASS);
    }

    #[test]
    fn only_the_changed_vips_table_is_recomputed() {
        let config = config();
        let mut known = macs(&["198.18.0.11", "198.18.0.12", "2001:2::11"]);
        let mut tables = Tables::default();
        let ids = ids(&config);
        let before = Desired::compute(&config, &ids, &known, &mut tables);
        known.down.insert(BackendKey { vip: 0, backend: 0 });
        let after = Desired::compute(&config, &ids, &known, &mut tables);
        assert!(!Arc::ptr_eq(&before.vips[0].table, &after.vips[0].table));
        assert!(
            Arc::ptr_eq(&before.vips[1].table, &after.vips[1].table),
            "unchanged VIP: same table, not recomputed"
        );
        assert_eq!(after, compute(&config, &known), "the cache changes nothing");
    }
}
