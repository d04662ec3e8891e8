//! Lease writes against a map as full as OWNED can get.

use std::collections::BTreeMap;

use anyhow::bail;
use ha_common::MAX_VIPS;

use super::*;

/// A fixed-size hash map as the kernel keeps one: replacing a key's value
/// always works, a new key needs a free entry (else E2BIG).
struct BoundedMap {
    entries: BTreeMap<Addr, OwnedLease>,
    capacity: usize,
}

impl LeaseMap for BoundedMap {
    fn set_owned(&mut self, addr: &Addr, lease: &OwnedLease) -> Result<()> {
        if !self.entries.contains_key(addr) && self.entries.len() == self.capacity {
            bail!("update OWNED: E2BIG");
        }
        self.entries.insert(*addr, *lease);
        Ok(())
    }

    fn remove_owned(&mut self, addr: &Addr) -> Result<()> {
        match self.entries.remove(addr) {
            Some(_) => Ok(()),
            None => bail!("remove from OWNED: ENOENT"),
        }
    }
}

/// `n` distinct addresses, the `set`th such set.
fn addresses(set: u8, n: u32) -> BTreeSet<Addr> {
    (0..n)
        .map(|i| addr_bytes(IpAddr::from([198, 18, set, i as u8])))
        .collect()
}

const LEASE: OwnedLease = OwnedLease { deadline_ns: 7 };

/// OWNED as OWNED is sized (ha-ebpf: MAX_VIPS entries), full.
fn full_map(leased: &BTreeSet<Addr>) -> BoundedMap {
    assert_eq!(leased.len(), MAX_VIPS as usize);
    BoundedMap {
        entries: leased.iter().map(|a| (*a, OwnedLease::default())).collect(),
        capacity: MAX_VIPS as usize,
    }
}

#[test]
fn renewing_a_full_map_replaces_in_place() {
    let leased = addresses(1, MAX_VIPS);
    let mut map = full_map(&leased);
    write_leases(&mut map, &leased, &leased, &LEASE).expect("a renewal never needs room");
    assert!(map.entries.values().all(|l| *l == LEASE));
}

/// An earlier agent's leases fill the map and the config has as many VIP
/// addresses as a config may, all new: before, the new leases were written
/// first, the first one failed with E2BIG, and the agent exited at every
/// start (a crash loop). The same for a reload that replaces the VIPs.
#[test]
fn new_addresses_fit_once_the_old_leases_are_gone() {
    let stale = addresses(1, MAX_VIPS);
    let wanted = addresses(2, MAX_VIPS - 1);
    let mut map = full_map(&stale);
    write_leases(&mut map, &stale, &wanted, &LEASE).expect("room after the removals");
    assert_eq!(map.entries.keys().copied().collect::<BTreeSet<_>>(), wanted);
    // Half replaced, half renewed.
    let mixed: BTreeSet<Addr> = addresses(2, 15)
        .into_iter()
        .chain(addresses(3, 16))
        .collect();
    write_leases(&mut map, &wanted, &mixed, &LEASE).expect("room after the removals");
    assert_eq!(map.entries.keys().copied().collect::<BTreeSet<_>>(), mixed);
}
