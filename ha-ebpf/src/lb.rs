//! Backend selection and L2 direct server return.
//!
//! A packet for a VIP keeps to its flow's backend while that backend is
//! healthy (draining included: existing flows stay). Otherwise the flow is
//! placed through the VIP's active Maglev ring; a slot whose backend is not
//! usable is skipped by a bounded re-probe with a second hash, which moves
//! a dead backend's flows the moment its HEALTHY bit is cleared, before any
//! ring is rebuilt. Every node runs the same hash over the same ring, so a
//! flow lands on the same backend whichever load balancer receives it.

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use ha_common::{
    BACKEND_F_DRAINING, BACKEND_F_HEALTHY, Backend, FlowKey, FlowValue, GlobalCounter,
    MAX_BACKENDS, MAX_PROBES, PROTO_UDP, UDP_FLOW_IDLE_NS, UDP_FLOW_REFRESH_NS,
    VIP_F_NO_BACKEND_PASS, VipKey, backend_stats_index, ring_index, vip_stats_index,
};
use network_types::eth::EthHdr;

use crate::{
    events::{self, Event},
    maps::{BACKENDS, FLOWS, NODE_MAC, RING_SIZE, RINGS, VIPS},
    parse::{L4, Reason},
    stats,
    verdict::Verdict,
};

#[inline(always)]
pub(crate) fn steer(ctx: &XdpContext, eth: *mut EthHdr, l4: &L4) -> Result<Verdict, Reason> {
    // A frame for another station's MAC is not ours to steer: a NIC would
    // not even have received it (veth, bridges and promiscuous mode do).
    // SAFETY: `eth` comes from parse::frame, whose ptr_at checked that the
    // Ethernet header is in the frame.
    if unsafe { (*eth).dst_addr } != NODE_MAC.load() {
        return Ok(Verdict::Pass);
    }
    let vip_key = VipKey {
        addr: l4.dst,
        port_be: l4.dport_be,
        proto: l4.proto,
        _pad: 0,
    };
    // SAFETY: HashMap::get is unsafe because another CPU or the agent may
    // change the value behind the reference; it is copied out at once, and
    // the agent replaces entries whole (one bpf() update), never in place.
    let Some(vip) = (unsafe { VIPS.get(vip_key) }).copied() else {
        return Ok(Verdict::Pass);
    };
    let flow_key = FlowKey {
        src: l4.src,
        dst: l4.dst,
        sport_be: l4.sport_be,
        dport_be: l4.dport_be,
        proto: l4.proto,
        _pad: [0; 3],
    };
    let len = (ctx.data_end() - ctx.data()) as u64;

    let backend = match existing_flow(&flow_key, vip.vip_id, l4.syn) {
        Some(found) => {
            stats::count(GlobalCounter::FlowHit as u32, len);
            found
        }
        None => {
            let Some(found) = place(&flow_key, vip.vip_id, vip.ring_gen) else {
                stats::count(GlobalCounter::NoBackend as u32, len);
                let passed = vip.flags & VIP_F_NO_BACKEND_PASS != 0;
                if events::stage_no_backend(&vip_key, passed) {
                    return Ok(Verdict::Report {
                        event: Event::NoBackend,
                        drop: !passed,
                    });
                }
                return Ok(if passed { Verdict::Pass } else { Verdict::Drop });
            };
            let value = FlowValue {
                backend_id: found.0,
                vip_id: vip.vip_id,
                // The coarse clock: a flow's age needs no better than a
                // tick, and the precise clock costs ~30 ns here.
                // SAFETY: a helper call without arguments or preconditions.
                seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
            };
            // A full table evicts the least recently used flow; an error
            // here only costs the flow its stickiness.
            let _ = FLOWS.insert(flow_key, value, 0);
            stats::count(GlobalCounter::FlowNew as u32, len);
            found
        }
    };
    let (backend_id, mac) = backend;

    // SAFETY: as above, `eth` is a checked Ethernet header of this frame.
    unsafe {
        (*eth).dst_addr = mac;
        (*eth).src_addr = NODE_MAC.load();
    }
    stats::count(vip_stats_index(vip.vip_id), len);
    stats::count(backend_stats_index(backend_id), len);
    Ok(Verdict::Tx)
}

/// The flow's backend if the flow is known, still this VIP's, not idle
/// for too long (UDP) and its backend still healthy. A SYN always starts a
/// new flow (a reused 5-tuple must not stick to a backend that was right
/// for the previous connection).
#[inline(always)]
fn existing_flow(key: &FlowKey, vip_id: u32, syn: bool) -> Option<(u32, [u8; 6])> {
    if syn {
        return None;
    }
    let flow = FLOWS.get_ptr_mut(key)?;
    // SAFETY: a non-null value pointer from the lookup, valid while the
    // program runs (an LRU eviction meanwhile leaves it readable); a racing
    // update can only give an older or newer id, which the checks below
    // handle like any other.
    let (backend_id, flow_vip_id) = unsafe { ((*flow).backend_id, (*flow).vip_id) };
    if flow_vip_id != vip_id {
        return None;
    }
    if key.proto == PROTO_UDP && !udp_flow_active(flow) {
        return None;
    }
    let backend = backend(backend_id)?;
    // A reload may give a removed backend's id to a backend of another
    // VIP: a flow must never follow its id there.
    if backend.vip_id != vip_id || backend.flags & BACKEND_F_HEALTHY == 0 {
        return None;
    }
    Some((backend_id, backend.mac))
}

/// Whether a UDP flow saw a packet within `UDP_FLOW_IDLE_NS`; if so, this
/// packet counts as seen. TCP hits never get here and write nothing: idle
/// TCP flows age out of the LRU table by themselves.
#[inline(always)]
fn udp_flow_active(flow: *mut FlowValue) -> bool {
    // SAFETY: a helper call without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: as in `existing_flow`: a valid value pointer of this lookup.
    let seen_ns = unsafe { (*flow).seen_ns };
    let idle_ns = now.saturating_sub(seen_ns);
    if idle_ns >= UDP_FLOW_IDLE_NS {
        return false;
    }
    // A write at most once per flow and refresh interval, not per packet:
    // the value's cache line stays shared between CPUs meanwhile.
    if idle_ns >= UDP_FLOW_REFRESH_NS {
        // SAFETY: as above; a plain store into the map value, which a
        // racing store from another CPU can only replace by its own `now`.
        unsafe { (*flow).seen_ns = now };
    }
    true
}

/// Chooses a backend for a new flow from the VIP's active ring.
#[inline(always)]
fn place(key: &FlowKey, vip_id: u32, ring_gen: u32) -> Option<(u32, [u8; 6])> {
    let ring_size = RING_SIZE.load();
    if ring_size < 2 {
        // Never taken: the agent loads a RING_SIZE of at least 7 into the
        // frozen .rodata, so the verifier knows the value and removes this
        // branch. That makes it the free place for the build's mark.
        crate::build_id::mark();
        return None;
    }
    let base = ring_index(vip_id, ring_gen, ring_size, 0);
    let hash = flow_hash(key);
    let mut slot = hash % ring_size;
    // The probe stride, never 0, from a second, independent hash.
    let skip = fmix32(hash ^ 0x7f4a_7c15) % (ring_size - 1) + 1;
    for _ in 0..=MAX_PROBES {
        if let Some(found) = usable(base + slot) {
            return Some(found);
        }
        slot = (slot + skip) % ring_size;
    }
    None
}

/// The backend in a ring slot, if it may take a new flow.
#[inline(always)]
fn usable(index: u32) -> Option<(u32, [u8; 6])> {
    let backend_id = *RINGS.get(index)?;
    let backend = backend(backend_id)?;
    if backend.flags & (BACKEND_F_HEALTHY | BACKEND_F_DRAINING) != BACKEND_F_HEALTHY {
        return None;
    }
    Some((backend_id, backend.mac))
}

#[inline(always)]
fn backend(backend_id: u32) -> Option<&'static Backend> {
    if backend_id == 0 || backend_id >= MAX_BACKENDS {
        return None;
    }
    BACKENDS.get(backend_id)
}

/// MurmurHash3 (x86_32) over the 5-tuple: well mixed, cheap, and the same
/// on every node for the same flow.
#[inline(always)]
fn flow_hash(key: &FlowKey) -> u32 {
    // SAFETY: FlowKey is #[repr(C)], 40 bytes with every padding byte an
    // explicit field (asserted in ha-common), so all 40 bytes are
    // initialised; [u8; 40] has alignment 1 and the borrow lives no longer
    // than `key`.
    let bytes: &[u8; 40] = unsafe { &*(key as *const FlowKey as *const [u8; 40]) };
    let mut h: u32 = 0x6861_6861; // seed "haha"
    let mut i = 0;
    while i < 40 {
        let mut k = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        k = k
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        h = (h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
        i += 4;
    }
    fmix32(h ^ 40)
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
