//! Header parsing, a leaf: it reads a frame and says what it carries; the
//! entry point hands that to `lb` or `neigh`. Every access goes through
//! `ptr_at`, the one bounds check the verifier needs to see; an Err means
//! "pass untouched, counted as malformed or fragment".

use aya_ebpf::programs::XdpContext;
use ha_common::{GlobalCounter, PROTO_TCP, PROTO_UDP, is_v4_mapped, v4_mapped};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// IPv4 flags+fragment offset: MF bit and the 13-bit offset.
const IPV4_MF_AND_OFFSET: u16 = 0x3fff;

/// Why a frame is passed without a look at its payload.
pub(crate) type Reason = GlobalCounter;

/// A pointer to a `T` at `offset` in the frame, if the whole `T` is inside.
///
/// What makes a dereference of the result sound, for every `unsafe` block
/// that reads or writes a header through it: the `size_of::<T>()` bytes
/// lie inside the frame's buffer (the check below, which the verifier also
/// proves on every path: it rejects the program otherwise), and that buffer
/// is valid for reads and writes and touched by nothing else while the
/// program runs. The `T`s used are network-types headers and the `#[repr(C)]`
/// messages of `neigh`: byte arrays only, alignment 1, apart from the 16-bit
/// EtherType of `EthHdr` and `VlanHdr`, which sits at an even offset of a
/// frame whose start the kernel aligns. Headers taken at once by `&mut` lie
/// one after the other, never overlapping.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(GlobalCounter::Malformed);
    }
    Ok((start + offset) as *mut T)
}

/// The transport part of a packet addressed to a possible VIP.
pub(crate) struct L4 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    /// A TCP SYN without ACK: by definition a new flow.
    pub syn: bool,
}

/// What a frame carries, as far as the program cares.
pub(crate) enum Payload {
    /// TCP or UDP over IPv4 or IPv6: traffic for a possible VIP.
    Transport(L4),
    /// An ARP packet whose header starts at `offset`.
    Arp { offset: usize },
    /// An ICMPv6 message at `offset`, right after the IPv6 header `ip`.
    Icmpv6 { ip: *mut Ipv6Hdr, offset: usize },
    /// Anything else: not for this program.
    Other,
}

/// A parsed frame: its Ethernet header and what follows.
pub(crate) struct Frame {
    pub eth: *mut EthHdr,
    pub payload: Payload,
}

/// Ethernet and the optional 802.1Q tag, then what the payload is.
#[inline(always)]
pub(crate) fn frame(ctx: &XdpContext) -> Result<Frame, Reason> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let mut offset = EthHdr::LEN;
    // SAFETY: ptr_at checked that the Ethernet header is in the frame.
    let mut ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Ieee8021q as u16 {
        let vlan: *mut VlanHdr = ptr_at(ctx, offset)?;
        // SAFETY: ptr_at checked that the 802.1Q tag is in the frame.
        ether_type = unsafe { (*vlan).ether_type };
        offset += VlanHdr::LEN;
    }
    let payload = if ether_type == EtherType::Ipv4 as u16 {
        ipv4(ctx, offset)?
    } else if ether_type == EtherType::Ipv6 as u16 {
        ipv6(ctx, offset)?
    } else if ether_type == EtherType::Arp as u16 {
        Payload::Arp { offset }
    } else {
        Payload::Other
    };
    Ok(Frame { eth, payload })
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, offset: usize) -> Result<Payload, Reason> {
    let ip: *mut Ipv4Hdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked that the fixed IPv4 header is in the frame.
    let (vihl, frags, proto, src, dst) = unsafe {
        (
            (*ip).vihl,
            (*ip).frags,
            (*ip).proto,
            (*ip).src_addr,
            (*ip).dst_addr,
        )
    };
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(GlobalCounter::Malformed);
    }
    if u16::from_be_bytes(frags) & IPV4_MF_AND_OFFSET != 0 {
        return Err(GlobalCounter::Fragment);
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Ok(Payload::Other);
    }
    let l4 = transport(ctx, offset + ihl, proto, v4_mapped(src), v4_mapped(dst))?;
    Ok(Payload::Transport(l4))
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize) -> Result<Payload, Reason> {
    let ip: *mut Ipv6Hdr = ptr_at(ctx, offset)?;
    // SAFETY: ptr_at checked that the IPv6 header is in the frame.
    let (vcf0, next, src, dst) =
        unsafe { ((*ip).vcf[0], (*ip).next_hdr, (*ip).src_addr, (*ip).dst_addr) };
    if vcf0 >> 4 != 6 {
        return Err(GlobalCounter::Malformed);
    }
    let l4_offset = offset + Ipv6Hdr::LEN;
    match next {
        // An IPv4-mapped destination is invalid on the wire and is how an
        // IPv4 VIP is stored: looked up, it would reach that VIP's backends
        // and flows. Not for this program.
        PROTO_TCP | PROTO_UDP if is_v4_mapped(&dst) => Ok(Payload::Other),
        PROTO_TCP | PROTO_UDP => Ok(Payload::Transport(transport(
            ctx, l4_offset, next, src, dst,
        )?)),
        next if next == IpProto::Ipv6Icmp as u8 => Ok(Payload::Icmpv6 {
            ip,
            offset: l4_offset,
        }),
        // Extension headers (fragments included) are not followed: pass.
        _ => Ok(Payload::Other),
    }
}

#[inline(always)]
fn transport(
    ctx: &XdpContext,
    offset: usize,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
) -> Result<L4, Reason> {
    let (sport_be, dport_be, syn) = if proto == PROTO_TCP {
        let tcp: *mut TcpHdr = ptr_at(ctx, offset)?;
        // SAFETY: ptr_at checked that the TCP header is in the frame.
        let tcp = unsafe { &*tcp };
        (
            u16::from_ne_bytes(tcp.source),
            u16::from_ne_bytes(tcp.dest),
            tcp.syn() != 0 && tcp.ack() == 0,
        )
    } else {
        let udp: *mut UdpHdr = ptr_at(ctx, offset)?;
        // SAFETY: ptr_at checked that the UDP header is in the frame.
        let udp = unsafe { &*udp };
        (
            u16::from_ne_bytes(udp.src),
            u16::from_ne_bytes(udp.dst),
            false,
        )
    };
    Ok(L4 {
        src,
        dst,
        sport_be,
        dport_be,
        proto,
        syn,
    })
}
