use super::*;
use crate::config::tests::ok;

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
    ok(CONFIG)
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
    let backends: Vec<(u32, Backend)> = applied.backends.iter().map(|(k, v)| (*k, *v)).collect();
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
    let config = ok(&text);
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
