use super::*;
use crate::config;
use std::path::Path;

fn config(vips: &[(&str, &[&str])]) -> Config {
    let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
    for (vip, backends) in vips {
        text += &format!("[[vip]]\naddress = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\n");
        for b in *backends {
            text += &format!("  [[vip.backend]]\n  address = \"{b}\"\n");
        }
    }
    config::parse(Path::new("ids.toml"), &text).expect("valid config")
}

fn backend_ids(ids: &Ids, config: &Config) -> Vec<Vec<u32>> {
    (0..config.vips.len())
        .map(|vip| {
            (0..config.vips[vip].backends.len())
                .map(|backend| ids.backend(config, BackendKey { vip, backend }))
                .collect()
        })
        .collect()
}

#[test]
fn a_fresh_numbering_follows_config_order() {
    let c = config(&[
        ("198.18.0.100", &["198.18.0.11", "198.18.0.12"]),
        ("198.18.0.101", &["198.18.0.11"]),
    ]);
    let ids = Ids::default().assign(&c).unwrap();
    assert_eq!((ids.vip(&c, 0), ids.vip(&c, 1)), (1, 2));
    assert_eq!(backend_ids(&ids, &c), [vec![1, 2], vec![3]]);
}

#[test]
fn removing_and_adding_keeps_every_other_id() {
    let before = config(&[
        (
            "198.18.0.100",
            &["198.18.0.11", "198.18.0.12", "198.18.0.13"],
        ),
        ("198.18.0.101", &["198.18.0.21"]),
    ]);
    let old = Ids::default().assign(&before).unwrap();
    // The first VIP and a backend go; a VIP and a backend come.
    let after = config(&[
        ("198.18.0.102", &["198.18.0.31"]),
        ("198.18.0.101", &["198.18.0.22", "198.18.0.21"]),
    ]);
    let new = old.assign(&after).unwrap();
    assert_eq!(new.vip(&after, 1), 2, "kept VIP keeps its id");
    assert_eq!(new.backend(&after, BackendKey { vip: 1, backend: 1 }), 4);
    // New entries skip the ids the old numbering still uses.
    assert_eq!(new.vip(&after, 0), 3);
    assert_eq!(backend_ids(&new, &after), [vec![5], vec![6, 4]]);
    // Once the old ones are gone, their ids are free again.
    let later = config(&[
        ("198.18.0.102", &["198.18.0.31"]),
        ("198.18.0.101", &["198.18.0.22", "198.18.0.21"]),
        ("198.18.0.103", &["198.18.0.41"]),
    ]);
    let newer = new.assign(&later).unwrap();
    assert_eq!(newer.vip(&later, 2), 1);
    assert_eq!(newer.backend(&later, BackendKey { vip: 2, backend: 0 }), 1);
}

#[test]
fn the_numbering_survives_a_restart_through_the_maps() {
    let c = config(&[
        ("198.18.0.100", &["198.18.0.11"]),
        ("198.18.0.101", &["198.18.0.11", "198.18.0.12"]),
    ]);
    let shuffled = Ids::default()
        .assign(&config(&[("198.18.0.101", &["198.18.0.12"])]))
        .unwrap()
        .assign(&c)
        .unwrap();
    let vips: Vec<(VipKey, VipValue)> = (0..2)
        .map(|i| {
            let value = VipValue {
                vip_id: shuffled.vip(&c, i),
                ..VipValue::default()
            };
            (c.vips[i].key(), value)
        })
        .collect();
    let backends: Vec<(u32, Backend)> = [(0, 0), (1, 0), (1, 1)]
        .into_iter()
        .map(|(vip, backend)| {
            let key = BackendKey { vip, backend };
            let entry = Backend {
                addr: identity(&c, key).1,
                vip_id: shuffled.vip(&c, vip),
                ..Backend::default()
            };
            (shuffled.backend(&c, key), entry)
        })
        .collect();
    let adopted = Ids::adopt(&vips, &backends);
    assert_eq!(adopted.assign(&c).unwrap(), shuffled);
}

#[test]
fn too_many_at_once_is_an_error_not_a_reuse() {
    let addrs: Vec<String> = (0..MAX_VIPS - 1).map(|i| format!("198.18.1.{i}")).collect();
    let vips: Vec<(&str, &[&str])> = addrs
        .iter()
        .map(|a| (a.as_str(), &["198.18.0.11"][..]))
        .collect();
    let full = Ids::default().assign(&config(&vips)).unwrap();
    let others: Vec<String> = (0..MAX_VIPS - 1).map(|i| format!("198.18.2.{i}")).collect();
    let vips: Vec<(&str, &[&str])> = others
        .iter()
        .map(|a| (a.as_str(), &["198.18.0.11"][..]))
        .collect();
    let err = full.assign(&config(&vips)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free VIP id left (the maps hold 31): too many VIPs at once"
    );
}
