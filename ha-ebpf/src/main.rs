//! ha's XDP program. Per packet: parse (Ethernet, one 802.1Q tag, IPv4 or
//! IPv6, TCP or UDP); traffic for a configured VIP goes to a backend chosen
//! through the flow table or the VIP's Maglev ring and leaves by L2 direct
//! server return (XDP_TX); ARP requests and neighbour solicitations for the
//! VIPs this node owns are answered here. Everything else, and anything
//! malformed, is XDP_PASS with its bytes untouched: the host keeps working.
#![no_std]
#![no_main]

mod lb;
mod maps;
mod neigh;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ha_common::GlobalCounter;

/// Which build of the program this is: `cargo xtask build-ebpf --build-id N`
/// compiles N in (the environment variable HA_BUILD_ID), 0 otherwise.
/// `mark_build` puts it into the instructions of `ha_xdp`, so builds with
/// different ids are different programs to the kernel (another tag), as an
/// upgrade to a fixed program would be.
const BUILD_ID: u32 = match option_env!("HA_BUILD_ID") {
    None => 0,
    Some(id) => match u32::from_str_radix(id, 10) {
        Ok(id) => id,
        Err(_) => panic!("HA_BUILD_ID must be a number (u32)"),
    },
};

/// Stores the build id into a stack slot. Called only on a path that no
/// packet takes and the verifier removes (see `lb::place`): the id is part
/// of the program's instructions, and so of its tag, at no cost per packet.
#[inline(always)]
pub fn mark_build() {
    let mut slot = 0u32;
    // SAFETY: a write to a local; volatile so that it stays in the code.
    unsafe { core::ptr::write_volatile(&mut slot, BUILD_ID) };
}

/// The verdict of one handler; `Pass` keeps the frame untouched.
#[derive(Clone, Copy)]
pub enum Verdict {
    Pass,
    Tx,
    Drop,
}

#[xdp]
pub fn ha_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (verdict, counter) = match parse::dispatch(&ctx) {
        Ok(v) => (v, None),
        Err(reason) => (Verdict::Pass, Some(reason)),
    };
    if let Some(reason) = counter {
        stats::count(reason as u32, len);
    }
    match verdict {
        Verdict::Pass => {
            stats::count(GlobalCounter::Pass as u32, len);
            xdp_action::XDP_PASS
        }
        Verdict::Tx => {
            stats::count(GlobalCounter::Tx as u32, len);
            xdp_action::XDP_TX
        }
        Verdict::Drop => {
            stats::count(GlobalCounter::Drop as u32, len);
            xdp_action::XDP_DROP
        }
    }
}

/// A trivial program for the lab and the benchmark baseline: the peer of a
/// veth that sends XDP_TX frames must run an XDP program itself, or the
/// kernel drops those frames (TOOLCHAIN.md).
#[xdp]
pub fn ha_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
