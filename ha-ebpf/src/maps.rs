//! The maps and load-time globals; layouts come from ha-common.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use ha_common::{
    Addr, Backend, Counter, DEFAULT_MAX_FLOWS, DEFAULT_RING_SIZE, FlowKey, FlowValue, MAX_BACKENDS,
    MAX_VIPS, OwnedLease, STATS_LEN, VipKey, VipValue, rings_len,
};

/// Maglev table size; set by the agent at load time.
#[unsafe(no_mangle)]
pub(crate) static RING_SIZE: Global<u32> = Global::new(DEFAULT_RING_SIZE);

/// The MAC this node answers ARP/NDP with and sends forwarded frames from.
#[unsafe(no_mangle)]
pub(crate) static NODE_MAC: Global<[u8; 6]> = Global::new([0; 6]);

/// BPF_F_NO_COMMON_LRU: a per-CPU LRU list, no cross-CPU lock on insert.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
/// BPF_F_MMAPABLE: the agent writes whole rings through mmap.
const BPF_F_MMAPABLE: u32 = 1 << 10;

#[map(name = "VIPS")]
pub(crate) static VIPS: HashMap<VipKey, VipValue> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map(name = "BACKENDS")]
pub(crate) static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// max_entries is replaced by the agent to match RING_SIZE.
#[map(name = "RINGS")]
pub(crate) static RINGS: Array<u32> =
    Array::with_max_entries(rings_len(DEFAULT_RING_SIZE), BPF_F_MMAPABLE);

#[map(name = "FLOWS")]
pub(crate) static FLOWS: LruHashMap<FlowKey, FlowValue> =
    LruHashMap::with_max_entries(DEFAULT_MAX_FLOWS, BPF_F_NO_COMMON_LRU);

#[map(name = "STATS")]
pub(crate) static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_LEN, 0);

#[map(name = "OWNED")]
pub(crate) static OWNED: HashMap<Addr, OwnedLease> = HashMap::with_max_entries(MAX_VIPS, 0);
