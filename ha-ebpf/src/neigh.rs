//! ARP and IPv6 neighbour discovery for the VIPs this node owns.
//!
//! The VIP lives on no interface of the node: the program answers for it
//! while the agent's ownership lease (OWNED) has not run out, turning the
//! request into the reply in place and sending it back out (XDP_TX). A
//! crashed agent stops renewing the lease, so its node falls silent for the
//! VIP by itself.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use ha_common::{
    Addr, GlobalCounter,
    proto::{
        ARP_HLEN_ETHERNET, ARP_HTYPE_ETHERNET, ARP_OP_REPLY, ARP_OP_REQUEST, ARP_PLEN_IPV4,
        EtherType, ICMPV6_NEIGHBOUR_ADVERTISEMENT, ICMPV6_NEIGHBOUR_SOLICITATION, IpProto,
        NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, ND_HOP_LIMIT, ND_LL_OPT_LEN, ND_LL_OPT_LEN_UNITS,
        ND_MESSAGE_LEN, ND_OPT_SOURCE_LL_ADDR, ND_OPT_TARGET_LL_ADDR, ether_type,
    },
    v4_mapped,
};
use network_types::{arp::ArpHdr, eth::EthHdr, ip::Ipv6Hdr};

use crate::{
    events::{self, Event},
    maps::{NODE_MAC, OWNED},
    parse::{Reason, ptr_at},
    stats,
    verdict::Verdict,
};

/// The flags of our advertisements: an answer, replacing cached entries.
const NA_FLAGS: u8 = NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
/// ICMPv6 payload length of an NS without options.
const NS_LEN: u16 = ND_MESSAGE_LEN as u16;
/// ICMPv6 payload length of an NS with one source link-layer address option.
const NS_WITH_SLLA_LEN: u16 = (ND_MESSAGE_LEN + ND_LL_OPT_LEN) as u16;

/// An NS or NA without options, as on the wire.
#[repr(C)]
struct NeighbourMsg {
    kind: u8,
    code: u8,
    checksum: [u8; 2],
    flags: [u8; 4],
    target: [u8; 16],
}

/// A link-layer address option for Ethernet.
#[repr(C)]
struct LinkLayerOpt {
    kind: u8,
    len_units: u8,
    mac: [u8; 6],
}

// The wire layouts, byte arrays only (alignment 1, as `ptr_at` requires).
const _: () = {
    assert!(size_of::<NeighbourMsg>() == ND_MESSAGE_LEN);
    assert!(size_of::<LinkLayerOpt>() == ND_LL_OPT_LEN);
    assert!(align_of::<NeighbourMsg>() == 1);
    assert!(align_of::<LinkLayerOpt>() == 1);
};

/// Ok if this node holds an unexpired lease on `addr`; otherwise the
/// verdict for the request: pass. A lease that ran out is also an event to
/// report: the agent releases the VIPs it gives up by removing their
/// leases, so one that expired was left by an agent that stopped renewing.
#[inline(always)]
fn owned(addr: &Addr) -> Result<(), Verdict> {
    // SAFETY: HashMap::get is unsafe because the agent may update the
    // value behind the reference; it is read once, as a plain integer.
    let Some(deadline_ns) = (unsafe { OWNED.get(addr) }).map(|lease| lease.deadline_ns) else {
        return Err(Verdict::Pass);
    };
    // SAFETY: a helper call without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if deadline_ns > now {
        return Ok(());
    }
    if events::stage_lease_expired(addr, now - deadline_ns) {
        return Err(Verdict::Report {
            event: Event::LeaseExpired,
            drop: false,
        });
    }
    Err(Verdict::Pass)
}

#[inline(always)]
pub(crate) fn arp(ctx: &XdpContext, eth: *mut EthHdr, offset: usize) -> Result<Verdict, Reason> {
    let arp: *mut ArpHdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked that the whole ARP header is in the frame; it
    // follows the Ethernet header, so the two do not overlap.
    let arp = unsafe { &mut *arp };
    if arp.htype() != ARP_HTYPE_ETHERNET
        || arp.ptype() != ether_type(EtherType::Ipv4)
        || arp.hlen != ARP_HLEN_ETHERNET
        || arp.plen != ARP_PLEN_IPV4
        || arp.oper() != ARP_OP_REQUEST
        // A gratuitous request announces the sender; it asks nothing.
        || arp.spa == arp.tpa
    {
        return Ok(Verdict::Pass);
    }
    if let Err(verdict) = owned(&v4_mapped(arp.tpa)) {
        return Ok(verdict);
    }
    let mac = NODE_MAC.load();
    let vip = arp.tpa;
    arp.set_oper(ARP_OP_REPLY);
    arp.tha = arp.sha;
    arp.tpa = arp.spa;
    arp.sha = mac;
    arp.spa = vip;
    // SAFETY: `eth` comes from parse::frame, whose ptr_at checked that the
    // Ethernet header is in the frame.
    unsafe {
        (*eth).dst_addr = arp.tha;
        (*eth).src_addr = mac;
    }
    stats::count(
        GlobalCounter::ArpReply as u32,
        (ctx.data_end() - ctx.data()) as u64,
    );
    Ok(Verdict::Tx)
}

#[inline(always)]
pub(crate) fn ndp(
    ctx: &XdpContext,
    eth: *mut EthHdr,
    ip: *mut Ipv6Hdr,
    offset: usize,
) -> Result<Verdict, Reason> {
    let msg: *mut NeighbourMsg = ptr_at(ctx, offset)?;
    // SAFETY: parse::frame's ptr_at checked the IPv6 header, ours the
    // message after it; they do not overlap.
    let (ip, msg) = unsafe { (&mut *ip, &mut *msg) };
    if msg.kind != ICMPV6_NEIGHBOUR_SOLICITATION || msg.code != 0 || ip.hop_limit != ND_HOP_LIMIT {
        return Ok(Verdict::Pass);
    }
    let payload_len = u16::from_be_bytes(ip.payload_len);
    // Duplicate address detection comes from `::` and wants a multicast
    // answer; the agent's unsolicited advertisements cover that case.
    if ip.src_addr == [0; 16] {
        return Ok(Verdict::Pass);
    }
    if let Err(verdict) = owned(&msg.target) {
        return Ok(verdict);
    }
    let option = match payload_len {
        NS_LEN => None,
        NS_WITH_SLLA_LEN => {
            let opt: *mut LinkLayerOpt = ptr_at(ctx, offset + NS_LEN as usize)?;
            // SAFETY: ptr_at checked that the option is in the frame; it
            // follows the message, overlapping neither header.
            let opt = unsafe { &mut *opt };
            if opt.kind != ND_OPT_SOURCE_LL_ADDR || opt.len_units != ND_LL_OPT_LEN_UNITS {
                return Ok(Verdict::Pass);
            }
            Some(opt)
        }
        _ => return Ok(Verdict::Pass),
    };

    let mac = NODE_MAC.load();
    let target = msg.target;
    let asker = ip.src_addr;
    ip.src_addr = target;
    ip.dst_addr = asker;
    ip.hop_limit = ND_HOP_LIMIT;
    msg.kind = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    msg.flags = [NA_FLAGS, 0, 0, 0];

    // The checksum covers the pseudo header and the message; every word of
    // the reply is known here, so it is summed from locals, not re-read.
    let mut sum = words(&target) * 2 + words(&asker);
    sum += u32::from(payload_len) + u32::from(IpProto::Ipv6Icmp as u8);
    sum += u32::from(ICMPV6_NEIGHBOUR_ADVERTISEMENT) << 8;
    sum += u32::from(NA_FLAGS) << 8;
    if let Some(opt) = option {
        opt.kind = ND_OPT_TARGET_LL_ADDR;
        opt.mac = mac;
        sum +=
            (u32::from(ND_OPT_TARGET_LL_ADDR) << 8) + u32::from(ND_LL_OPT_LEN_UNITS) + words(&mac);
    }
    msg.checksum = fold(sum).to_be_bytes();
    // SAFETY: `eth` comes from parse::frame, whose ptr_at checked that the
    // Ethernet header is in the frame.
    unsafe {
        (*eth).dst_addr = (*eth).src_addr;
        (*eth).src_addr = mac;
    }
    stats::count(
        GlobalCounter::NdReply as u32,
        (ctx.data_end() - ctx.data()) as u64,
    );
    Ok(Verdict::Tx)
}

/// Sum of the big-endian 16-bit words of `bytes` (an even length).
#[inline(always)]
fn words<const N: usize>(bytes: &[u8; N]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// One's complement of the folded one's complement sum.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
