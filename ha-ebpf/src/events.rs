//! Datapath events an operator wants to see, sent to the agent's log
//! through aya-log: a packet for a VIP with no usable backend, and an ARP
//! request or neighbour solicitation for a VIP whose ownership lease ran
//! out (the agent that should renew it is dead or hung).
//!
//! Both are rare by nature but come in floods when they come: a VIP whose
//! backends all died still receives its clients' traffic. So each kind is
//! rate limited here, in the kernel: at most `LOG_EVENTS_PER_SECOND` per
//! kind and CPU in each one-second window; the ones over the limit are
//! counted, and the next one logged says how many there were. Per-CPU
//! windows need no atomics and share no cache line between CPUs.
//!
//! Two steps, so that forwarding never pays and the program stays within
//! the verifier's limits: a handler that meets an event `stage`s it (the
//! rate limit, and the details into this CPU's slot: a few instructions,
//! only on the rare branch) and returns `Verdict::Report`; the entry point
//! then `log`s it. The log call is large (aya-log writes the record field
//! by field), and it exists once in the program, inlined into the entry
//! point's rare arm: called from the handlers, whose code the compiler
//! duplicates per path, it would become a BPF-to-BPF call, whose stack the
//! verifier adds to the program's (over 400 bytes already) against its
//! limit of 512.

use aya_ebpf::{
    helpers::bpf_ktime_get_coarse_ns, macros::map, maps::PerCpuArray, programs::XdpContext,
};
use aya_log_ebpf::warn;
use ha_common::{Addr, LOG_EVENTS_PER_SECOND, PROTO_TCP, VipKey};

/// The kinds of event, each with its own rate limit and slot.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    /// A packet for a VIP found no usable backend.
    NoBackend = 0,
    /// A neighbour request asked for a VIP whose lease ran out.
    LeaseExpired = 1,
}
const EVENT_KINDS: u32 = 2;

const NS_PER_SECOND: u64 = 1_000_000_000;

/// One kind's rate-limit window on one CPU, and its staged event.
#[repr(C)]
struct Slot {
    /// Start of the current window (coarse monotonic clock).
    window_start_ns: u64,
    /// Events staged in the current window.
    staged: u32,
    /// Events over the limit since the last one staged.
    suppressed: u32,
    /// The staged event: how many were suppressed before it,
    suppressed_before: u32,
    /// the packet's fate (NoBackend: 1 if passed to the local stack),
    passed: u32,
    /// the VIP (LeaseExpired: only the address),
    vip: VipKey,
    /// and how long ago the lease ran out (LeaseExpired).
    ago_ns: u64,
}

#[map(name = "EVENT_SLOTS")]
static EVENT_SLOTS: PerCpuArray<Slot> = PerCpuArray::with_max_entries(EVENT_KINDS, 0);

/// This CPU's slot for `event`, if the window's budget allows another one
/// to be logged; otherwise counts it as suppressed.
#[inline(always)]
fn admit(event: Event) -> Option<&'static mut Slot> {
    let slot = EVENT_SLOTS.get_ptr_mut(event as u32)?;
    // SAFETY: a non-null pointer to this CPU's slot of a per-CPU array:
    // valid for the program's run, and only this CPU uses it (XDP runs with
    // migration disabled, one program at a time per CPU).
    let slot = unsafe { &mut *slot };
    // SAFETY: a helper call without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // A zeroed slot starts its first window here: the clock is past 1 s.
    if now.wrapping_sub(slot.window_start_ns) >= NS_PER_SECOND {
        slot.window_start_ns = now;
        slot.staged = 0;
    }
    if slot.staged >= LOG_EVENTS_PER_SECOND {
        slot.suppressed = slot.suppressed.saturating_add(1);
        return None;
    }
    slot.staged += 1;
    slot.suppressed_before = slot.suppressed;
    slot.suppressed = 0;
    Some(slot)
}

/// Stages "no usable backend for `vip`"; `passed`: the packet goes to the
/// local stack (the VIP's policy) rather than being dropped. False when
/// the rate limit holds it back: then there is nothing to log.
#[inline(always)]
pub(crate) fn stage_no_backend(vip: &VipKey, passed: bool) -> bool {
    let Some(slot) = admit(Event::NoBackend) else {
        return false;
    };
    slot.vip = *vip;
    slot.passed = u32::from(passed);
    true
}

/// Stages "a neighbour request for `addr`, whose lease ran out `ago_ns`
/// ago, was not answered". False when the rate limit holds it back.
#[inline(always)]
pub(crate) fn stage_lease_expired(addr: &Addr, ago_ns: u64) -> bool {
    let Some(slot) = admit(Event::LeaseExpired) else {
        return false;
    };
    slot.vip.addr = *addr;
    slot.ago_ns = ago_ns;
    true
}

/// Logs the `event` staged on this CPU; called once, by the entry point.
#[inline(always)]
pub(crate) fn log(ctx: &XdpContext, event: Event) {
    let Some(slot) = EVENT_SLOTS.get_ptr(event as u32) else {
        return;
    };
    // SAFETY: as in `admit`: this CPU's slot, used by this CPU only.
    let slot = unsafe { &*slot };
    match event {
        Event::NoBackend => {
            let protocol = if slot.vip.proto == PROTO_TCP {
                "tcp"
            } else {
                "udp"
            };
            let fate = if slot.passed != 0 {
                "passed to the local stack"
            } else {
                "dropped"
            };
            warn!(
                ctx,
                "no usable backend for VIP {:i} port {}/{}: packet {} ({} more since the last report)",
                ip(&slot.vip.addr),
                u16::from_be(slot.vip.port_be),
                protocol,
                fate,
                slot.suppressed_before
            );
        }
        Event::LeaseExpired => warn!(
            ctx,
            "ARP/NDP request for VIP {:i} not answered: this node's lease on it ran out {} ms ago; is the agent running? ({} more since the last report)",
            ip(&slot.vip.addr),
            slot.ago_ns / 1_000_000,
            slot.suppressed_before
        ),
    }
}

/// The stored form of an address back as an IP address: IPv4-mapped ones
/// as IPv4.
#[inline(always)]
fn ip(addr: &Addr) -> core::net::IpAddr {
    let v6 = core::net::Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => core::net::IpAddr::V4(v4),
        None => core::net::IpAddr::V6(v6),
    }
}
