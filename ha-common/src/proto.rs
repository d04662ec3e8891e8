//! Protocol numbers of the frames the XDP program answers (ARP requests,
//! neighbour solicitations) and the agent's announcer sends (gratuitous
//! ARP, unsolicited neighbour advertisements): defined once, for both.
//! What network-types already names (EtherTypes, IP protocol numbers,
//! header types and lengths) is re-exported from it, not repeated.

pub use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv6Hdr},
};

/// An EtherType in host byte order, as `ArpHdr::ptype` returns it and
/// `u16::to_be_bytes` writes it (network-types stores them in network byte
/// order, ready to compare with the raw header field).
#[inline(always)]
pub const fn ether_type(ether_type: EtherType) -> u16 {
    u16::from_be(ether_type as u16)
}

/// ARP (RFC 826): hardware type Ethernet.
pub const ARP_HTYPE_ETHERNET: u16 = 1;
/// ARP: length of an Ethernet hardware address.
pub const ARP_HLEN_ETHERNET: u8 = 6;
/// ARP: length of an IPv4 protocol address.
pub const ARP_PLEN_IPV4: u8 = 4;
/// ARP operation: request.
pub const ARP_OP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_OP_REPLY: u16 = 2;

/// ICMPv6 type of a neighbour solicitation (RFC 4861 §4.3).
pub const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a neighbour advertisement (RFC 4861 §4.4).
pub const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// Neighbour discovery is only valid on the local link: sent with, and
/// accepted only with, hop limit 255 (RFC 4861 §7.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// A neighbour solicitation or advertisement without options: type, code,
/// checksum (4 bytes), reserved or flags (4), target address (16).
pub const ND_MESSAGE_LEN: usize = 24;
/// The all-nodes multicast address ff02::1 (RFC 4291 §2.7.1): where the
/// answer to duplicate address detection and unsolicited advertisements go.
pub const IPV6_ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// Its Ethernet multicast address (RFC 2464 §7).
pub const IPV6_ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The solicited-node multicast address of `target`, ff02::1:ffXX:XXXX
/// with its last 3 bytes (RFC 4291 §2.7.1): where a node doing duplicate
/// address detection for `target` sends its solicitation.
#[inline(always)]
pub const fn solicited_node(target: &[u8; 16]) -> [u8; 16] {
    [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, target[13], target[14], target[15],
    ]
}
/// Neighbour advertisement flag: a reply to a solicitation (§4.4).
pub const NA_FLAG_SOLICITED: u8 = 0x40;
/// Neighbour advertisement flag: replace a cached link-layer address.
pub const NA_FLAG_OVERRIDE: u8 = 0x20;
/// ND option type: source link-layer address (§4.6.1).
pub const ND_OPT_SOURCE_LL_ADDR: u8 = 1;
/// ND option type: target link-layer address (§4.6.1).
pub const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// Length field of a link-layer address option for Ethernet, in units of
/// 8 bytes: type, length, 6-byte MAC.
pub const ND_LL_OPT_LEN_UNITS: u8 = 1;
/// Length in bytes of a link-layer address option for Ethernet.
pub const ND_LL_OPT_LEN: usize = 8 * ND_LL_OPT_LEN_UNITS as usize;

// network-types keeps EtherTypes in network byte order; `ether_type` must
// give the numbers the standards write.
const _: () = {
    assert!(ether_type(EtherType::Ipv4) == 0x0800);
    assert!(ether_type(EtherType::Arp) == 0x0806);
    assert!(ether_type(EtherType::Ipv6) == 0x86dd);
};
