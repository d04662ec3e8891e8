//! ha's XDP program. Per packet: parse (Ethernet, one 802.1Q tag, IPv4 or
//! IPv6, TCP or UDP); traffic for a configured VIP goes to a backend chosen
//! through the flow table or the VIP's Maglev ring and leaves by L2 direct
//! server return (XDP_TX); ARP requests and neighbour solicitations for the
//! VIPs this node owns are answered here. Everything else, and anything
//! malformed, is XDP_PASS with its bytes untouched: the host keeps working.
//!
//! Modules: `parse` reads headers and uses nothing else of the program;
//! the entry point below hands what it found to `lb` (VIP traffic) or
//! `neigh` (ARP/NDP), which decide a `Verdict`; a `Verdict::Report` also
//! has the entry point log a rare event through `events` (aya-log, rate
//! limited).
#![no_std]
#![no_main]

mod build_id;
mod events;
mod lb;
mod maps;
mod neigh;
mod parse;
mod stats;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use crate::{
    parse::{Frame, Payload, Reason},
    verdict::Verdict,
};

#[xdp]
pub(crate) fn ha_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let verdict = match handle(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => {
            stats::count(reason as u32, len);
            Verdict::Pass
        }
    };
    if let Verdict::Report { event, .. } = verdict {
        events::log(&ctx, event);
    }
    let (action, counter) = verdict.action();
    stats::count(counter as u32, len);
    action
}

/// Parses the frame and hands it to the handler for what it carries.
#[inline(always)]
fn handle(ctx: &XdpContext) -> Result<Verdict, Reason> {
    let Frame { eth, payload } = parse::frame(ctx)?;
    match payload {
        Payload::Transport(l4) => lb::steer(ctx, eth, &l4),
        Payload::Arp { offset } => neigh::arp(ctx, eth, offset),
        Payload::Icmpv6 { ip, offset } => neigh::ndp(ctx, eth, ip, offset),
        Payload::Other => Ok(Verdict::Pass),
    }
}

/// A trivial program for the lab and the benchmark baseline: the peer of a
/// veth that sends XDP_TX frames must run an XDP program itself, or the
/// kernel drops those frames.
#[xdp]
pub(crate) fn ha_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
