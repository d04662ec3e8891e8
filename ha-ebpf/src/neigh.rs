//! ARP and IPv6 neighbour discovery for the VIPs this node owns.
//!
//! The VIP lives on no interface of the node: the program answers for it
//! while the agent's ownership lease (OWNED) has not run out, turning the
//! request into the reply in place and sending it back out (XDP_TX). A
//! crashed agent stops renewing the lease, so its node falls silent for the
//! VIP by itself. Only requests valid by RFC 826 and RFC 4861 §7.1.1, from
//! a station's MAC, are answered; the rest pass, for the kernel to handle
//! or discard.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use ha_common::{
    Addr, GlobalCounter, is_v4_mapped,
    proto::{
        ARP_HLEN_ETHERNET, ARP_HTYPE_ETHERNET, ARP_OP_REPLY, ARP_OP_REQUEST, ARP_PLEN_IPV4,
        EtherType, ICMPV6_NEIGHBOUR_ADVERTISEMENT, ICMPV6_NEIGHBOUR_SOLICITATION, IPV6_ALL_NODES,
        IPV6_ALL_NODES_MAC, IpProto, NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, ND_HOP_LIMIT,
        ND_LL_OPT_LEN, ND_LL_OPT_LEN_UNITS, ND_MESSAGE_LEN, ND_OPT_SOURCE_LL_ADDR,
        ND_OPT_TARGET_LL_ADDR, ether_type, solicited_node,
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

/// ICMPv6 payload length of an NS without options.
const NS_LEN: u16 = ND_MESSAGE_LEN as u16;
/// ICMPv6 payload length of an NS or NA with one 8-byte option: an NS with
/// its source link-layer address (or a DAD nonce), and every NA we send.
const WITH_OPTION_LEN: u16 = (ND_MESSAGE_LEN + ND_LL_OPT_LEN) as u16;

/// An NS or NA without options, as on the wire.
#[repr(C)]
struct NeighbourMsg {
    kind: u8,
    code: u8,
    checksum: [u8; 2],
    flags: [u8; 4],
    target: [u8; 16],
}

/// A link-layer address option for Ethernet; an NS's one 8-byte option,
/// whatever its type, is read through it too.
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

/// Who asked, as far as the answer's addressing goes (RFC 4861 §7.2.4).
#[derive(Clone, Copy)]
enum Asker {
    /// A node with an address: the answer goes back to it, solicited.
    Node,
    /// Duplicate address detection, from `::`: the answer goes to all
    /// nodes, not marked solicited.
    Unspecified,
}

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
    // SAFETY: `eth` comes from parse::frame, whose ptr_at checked that the
    // Ethernet header is in the frame.
    let eth_src = unsafe { (*eth).src_addr };
    if arp.htype() != ARP_HTYPE_ETHERNET
        || arp.ptype() != ether_type(EtherType::Ipv4)
        || arp.hlen != ARP_HLEN_ETHERNET
        || arp.plen != ARP_PLEN_IPV4
        || arp.oper() != ARP_OP_REQUEST
        // A gratuitous request announces the sender; it asks nothing.
        || arp.spa == arp.tpa
        // The answer would go to a group or to nobody, or the frame's
        // source is no station (IEEE 802: a group address never sends).
        || !unicast_mac(&arp.sha)
        || !unicast_mac(&eth_src)
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

/// Answers a valid neighbour solicitation for an owned VIP with a
/// neighbour advertisement that carries our MAC as its target link-layer
/// address option; anything else passes, for the kernel to handle or
/// discard (RFC 4861 §7.1.1).
#[inline(always)]
pub(crate) fn ndp(
    ctx: &XdpContext,
    eth: *mut EthHdr,
    ip: *mut Ipv6Hdr,
    offset: usize,
) -> Result<Verdict, Reason> {
    let msg: *mut NeighbourMsg = ptr_at(ctx, offset)?;
    // SAFETY: parse::frame's ptr_at checked the Ethernet and IPv6 headers,
    // ours the message after them; only read here.
    let (eth, ip, msg) = unsafe { (&*eth, &*ip, &*msg) };
    if msg.kind != ICMPV6_NEIGHBOUR_SOLICITATION {
        return Ok(Verdict::Pass);
    }
    let Some(asker) = solicitation(ctx, eth, ip, msg, offset)? else {
        return Ok(Verdict::Pass);
    };
    if let Err(verdict) = owned(&msg.target) {
        return Ok(verdict);
    }
    advertise(ctx, offset, asker)
}

/// Who asked, if the solicitation is valid (RFC 4861 §7.1.1) and one this
/// program answers: without options or with one 8-byte option (the source
/// link-layer address, or the nonce of duplicate address detection); one
/// with more options is passed too.
#[inline(always)]
fn solicitation(
    ctx: &XdpContext,
    eth: &EthHdr,
    ip: &Ipv6Hdr,
    msg: &NeighbourMsg,
    offset: usize,
) -> Result<Option<Asker>, Reason> {
    if msg.code != 0
        || ip.hop_limit != ND_HOP_LIMIT
        || msg.target[0] == 0xff
        // The stored form of an IPv4 VIP, never an IPv6 one.
        || is_v4_mapped(&msg.target)
        // No source the kernel would accept (RFC 4291 §2.7, §2.5.5.2).
        || ip.src_addr[0] == 0xff
        || is_v4_mapped(&ip.src_addr)
        || !unicast_mac(&eth.src_addr)
    {
        return Ok(None);
    }
    let payload_len = u16::from_be_bytes(ip.payload_len);
    let mut sum = pseudo_header_sum(ip) + message_sum(msg);
    let source_ll = match payload_len {
        NS_LEN => false,
        WITH_OPTION_LEN => {
            let opt: *mut LinkLayerOpt = ptr_at(ctx, offset + ND_MESSAGE_LEN)?;
            // SAFETY: ptr_at checked that the option is in the frame.
            let opt = unsafe { &*opt };
            // The one option fills the rest of the message: a length of 0
            // is invalid, a longer one runs past the message.
            if opt.len_units != ND_LL_OPT_LEN_UNITS {
                return Ok(None);
            }
            let source_ll = opt.kind == ND_OPT_SOURCE_LL_ADDR;
            if source_ll && !unicast_mac(&opt.mac) {
                return Ok(None);
            }
            sum += option_sum(opt);
            source_ll
        }
        _ => return Ok(None),
    };
    if fold(sum) != 0 {
        return Ok(None);
    }
    if ip.src_addr != [0; 16] {
        return Ok(Some(Asker::Node));
    }
    // Duplicate address detection goes to the target's solicited-node
    // group and names no link-layer address of its own.
    if source_ll || ip.dst_addr != solicited_node(&msg.target) {
        return Ok(None);
    }
    Ok(Some(Asker::Unspecified))
}

/// Turns the solicitation into our advertisement in place: one message
/// with the target link-layer address option, which RFC 4861 §7.2.4
/// requires in answers to multicast solicitations (and allows otherwise),
/// so the frame grows by the option's 8 bytes when the NS had none (and
/// loses any bytes after the message).
#[inline(always)]
fn advertise(ctx: &XdpContext, offset: usize, asker: Asker) -> Result<Verdict, Reason> {
    let frame_len = ctx.data_end() - ctx.data();
    let reply_len = offset + usize::from(WITH_OPTION_LEN);
    if frame_len != reply_len {
        let delta = reply_len as i32 - frame_len as i32;
        // SAFETY: the helper gets this program's own context; when it
        // fails, the frame is as it was.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return Ok(Verdict::Pass);
        }
    }
    // Resizing invalidates every pointer into the frame: take them anew.
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, offset - Ipv6Hdr::LEN)?;
    let msg: *mut NeighbourMsg = ptr_at(ctx, offset)?;
    let opt: *mut LinkLayerOpt = ptr_at(ctx, offset + ND_MESSAGE_LEN)?;
    // SAFETY: ptr_at checked each one; they follow one another in the
    // frame without overlapping.
    let (eth, ip, msg, opt) = unsafe { (&mut *eth, &mut *ip, &mut *msg, &mut *opt) };

    let mac = NODE_MAC.load();
    let flags = match asker {
        Asker::Node => {
            eth.dst_addr = eth.src_addr;
            ip.dst_addr = ip.src_addr;
            NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE
        }
        Asker::Unspecified => {
            eth.dst_addr = IPV6_ALL_NODES_MAC;
            ip.dst_addr = IPV6_ALL_NODES;
            NA_FLAG_OVERRIDE
        }
    };
    eth.src_addr = mac;
    ip.src_addr = msg.target;
    ip.payload_len = WITH_OPTION_LEN.to_be_bytes();
    ip.hop_limit = ND_HOP_LIMIT;
    msg.kind = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    msg.checksum = [0; 2];
    msg.flags = [flags, 0, 0, 0];
    opt.kind = ND_OPT_TARGET_LL_ADDR;
    opt.len_units = ND_LL_OPT_LEN_UNITS;
    opt.mac = mac;
    let sum = pseudo_header_sum(ip) + message_sum(msg) + option_sum(opt);
    msg.checksum = fold(sum).to_be_bytes();
    stats::count(
        GlobalCounter::NdReply as u32,
        (ctx.data_end() - ctx.data()) as u64,
    );
    Ok(Verdict::Tx)
}

/// Whether a MAC names one station: not a group (multicast, broadcast),
/// not zero. Requests from anything else are not answered.
#[inline(always)]
fn unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

/// The checksum's share of the IPv6 pseudo header: the addresses, the
/// ICMPv6 length and next header.
#[inline(always)]
fn pseudo_header_sum(ip: &Ipv6Hdr) -> u32 {
    words(&ip.src_addr)
        + words(&ip.dst_addr)
        + u32::from(u16::from_be_bytes(ip.payload_len))
        + u32::from(IpProto::Ipv6Icmp as u8)
}

/// The checksum's share of an NS or NA message, its checksum field as is.
#[inline(always)]
fn message_sum(msg: &NeighbourMsg) -> u32 {
    u32::from(u16::from_be_bytes([msg.kind, msg.code]))
        + words(&msg.checksum)
        + words(&msg.flags)
        + words(&msg.target)
}

/// The checksum's share of an 8-byte option.
#[inline(always)]
fn option_sum(opt: &LinkLayerOpt) -> u32 {
    u32::from(u16::from_be_bytes([opt.kind, opt.len_units])) + words(&opt.mac)
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
