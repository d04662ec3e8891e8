//! What the pins under `/sys/fs/bpf/ha/<node>/` were made for. A restarted
//! agent adopts the maps and link it finds there, which is only right when
//! they have the layout this agent was built with and the sizes, interface
//! and MAC it is configured with: maps of another layout would be read and
//! written wrongly, a FLOWS or RINGS of another size does not fit the
//! program, and a link on another interface would keep forwarding there.
//! So the first agent records all of it beside the maps, in a one-element
//! ARRAY map pinned as `layout` (bpffs holds no plain files), and every
//! later agent compares before it adopts anything.

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};
use aya::maps::{Array, Map, MapData};
use ha_common::{
    Addr, Backend, Counter, FlowKey, FlowValue, MAX_BACKENDS, MAX_VIPS, OwnedLease,
    RING_GENERATIONS, STATS_LEN, VipKey, VipValue, map,
};

use super::LINK_PIN;
use crate::model::Mac;

/// File name of the record inside the pin directory.
pub const RECORD_PIN: &str = "layout";
/// Bump when the meaning of a map key or value changes without its size
/// changing (sizes and limits are part of the fingerprint by themselves).
const LAYOUT_VERSION: u64 = 1;
/// Bytes of the record as pinned.
const RECORD_LEN: usize = 64;
/// Longest interface name the kernel allows, with its NUL (IFNAMSIZ).
const IFNAMSIZ: usize = 16;
/// Where the interface name starts in the record.
const NAME_AT: usize = 26;

/// What the pinned maps and link were made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRecord {
    /// [`layout_fingerprint`] of the agent that created the maps.
    pub layout: u64,
    pub ring_size: u32,
    pub max_flows: u32,
    /// The interface the link is attached to, by index and by name.
    pub ifindex: u32,
    pub interface: String,
    pub node_mac: [u8; 6],
}

/// The map layouts this agent was built with: a version bumped by hand for
/// changes of meaning, and every key and value size and fixed map length,
/// hashed (FNV-1a, stable across builds and platforms).
pub fn layout_fingerprint() -> u64 {
    let parts = [
        LAYOUT_VERSION,
        size_of::<Addr>() as u64,
        size_of::<VipKey>() as u64,
        size_of::<VipValue>() as u64,
        size_of::<Backend>() as u64,
        size_of::<FlowKey>() as u64,
        size_of::<FlowValue>() as u64,
        size_of::<OwnedLease>() as u64,
        size_of::<Counter>() as u64,
        u64::from(MAX_VIPS),
        u64::from(MAX_BACKENDS),
        u64::from(RING_GENERATIONS),
        u64::from(STATS_LEN),
    ];
    let names = map::ALL.iter().flat_map(|name| name.bytes());
    let bytes = parts.iter().flat_map(|p| p.to_le_bytes()).chain(names);
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl PinRecord {
    fn encode(&self) -> Result<[u8; RECORD_LEN]> {
        let name = self.interface.as_bytes();
        if name.len() >= IFNAMSIZ {
            bail!("interface name {} is too long", self.interface);
        }
        let mut out = [0u8; RECORD_LEN];
        out[0..8].copy_from_slice(&self.layout.to_le_bytes());
        out[8..12].copy_from_slice(&self.ring_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.max_flows.to_le_bytes());
        out[16..20].copy_from_slice(&self.ifindex.to_le_bytes());
        out[20..26].copy_from_slice(&self.node_mac);
        out[NAME_AT..NAME_AT + name.len()].copy_from_slice(name);
        Ok(out)
    }

    fn decode(bytes: &[u8; RECORD_LEN]) -> PinRecord {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let name = &bytes[NAME_AT..NAME_AT + IFNAMSIZ];
        let name_len = name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        PinRecord {
            layout: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            ring_size: u32_at(8),
            max_flows: u32_at(12),
            ifindex: u32_at(16),
            node_mac: bytes[20..26].try_into().expect("6 bytes"),
            interface: String::from_utf8_lossy(&name[..name_len]).into_owned(),
        }
    }

    /// Every field in which `pinned` differs from `self` (this agent's),
    /// as `what: pinned X, this agent Y`; empty when they match.
    pub fn differences(&self, pinned: &PinRecord) -> Vec<String> {
        let mut out = Vec::new();
        let mut compare = |what: &str, pinned: String, ours: String| {
            if pinned != ours {
                out.push(format!("{what}: pinned {pinned}, this agent {ours}"));
            }
        };
        compare(
            "map layout (another version of ha)",
            format!("{:016x}", pinned.layout),
            format!("{:016x}", self.layout),
        );
        compare(
            "ring_size",
            pinned.ring_size.to_string(),
            self.ring_size.to_string(),
        );
        compare(
            "max_flows",
            pinned.max_flows.to_string(),
            self.max_flows.to_string(),
        );
        compare(
            "interface",
            format!("{} (index {})", pinned.interface, pinned.ifindex),
            format!("{} (index {})", self.interface, self.ifindex),
        );
        compare(
            "node MAC",
            Mac(pinned.node_mac).to_string(),
            Mac(self.node_mac).to_string(),
        );
        out
    }
}

/// Reads the record pinned in `dir`, if there is one.
pub fn read(dir: &Path) -> Result<Option<PinRecord>> {
    let path = dir.join(RECORD_PIN);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path)
        .with_context(|| format!("open pinned record {}", path.display()))?;
    let array: Array<MapData, [u8; RECORD_LEN]> = Map::from_map_data(data)?
        .try_into()
        .with_context(|| format!("{} is not a record this version reads", path.display()))?;
    let bytes = array
        .get(&0, 0)
        .with_context(|| format!("read {}", path.display()))?;
    Ok(Some(PinRecord::decode(&bytes)))
}

/// Before anything is adopted from `dir`: with maps or a link pinned
/// there, checks that the record matches `ours` and refuses with every
/// difference otherwise (or when there is no readable record: such pins
/// cannot be checked); with nothing to adopt (an empty directory, or only
/// the record of a start that failed before its maps were made), records
/// `ours`, before the maps are created.
pub fn claim(dir: &Path, ours: &PinRecord) -> Result<()> {
    let unpin = format!(
        "to start afresh, remove it with `hactl unpin --pin-dir {}` (this detaches the \
         program: traffic through this node stops until an agent runs again)",
        dir.display()
    );
    let adoptable = map::ALL
        .iter()
        .chain(std::iter::once(&LINK_PIN))
        .filter(|name| dir.join(name).exists())
        .copied()
        .collect::<Vec<_>>();
    let record = read(dir);
    if adoptable.is_empty() {
        if !matches!(&record, Ok(Some(pinned)) if ours.differences(pinned).is_empty()) {
            remove_record(dir)?;
            write(dir, ours)?;
        }
        return Ok(());
    }
    match record {
        Ok(Some(pinned)) => {
            let differences = ours.differences(&pinned);
            if differences.is_empty() {
                return Ok(());
            }
            bail!(
                "the datapath pinned at {} was made for another configuration and is not \
                 adopted: {}; {unpin}",
                dir.display(),
                differences.join("; ")
            );
        }
        Ok(None) => bail!(
            "{} holds pins ({}) without a record of what they were made for (left by an older \
             agent?): they cannot be checked and are not adopted; {unpin}",
            dir.display(),
            adoptable.join(", ")
        ),
        Err(e) => bail!(
            "the datapath pinned at {} has an unreadable record ({e:#}); {unpin}",
            dir.display()
        ),
    }
}

fn remove_record(dir: &Path) -> Result<()> {
    let path = dir.join(RECORD_PIN);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn write(dir: &Path, record: &PinRecord) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create pin directory {}", dir.display()))?;
    let path = dir.join(RECORD_PIN);
    let mut array =
        Array::<MapData, [u8; RECORD_LEN]>::create(1, 0).context("create the pin record map")?;
    array
        .set(0, record.encode()?, 0)
        .context("write the pin record")?;
    array
        .pin(&path)
        .with_context(|| format!("pin {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
