//! The fuzzer's frames. Each case starts as a valid frame (TCP or UDP over
//! IPv4 or IPv6 to VIPs and to other addresses, an ARP request, a neighbour
//! solicitation; some with an 802.1Q tag), built from pools of addresses
//! and MACs that matter to the program (owned and not owned VIPs, their
//! v4-mapped forms, multicast and zero MACs). Most are then mutated: bit
//! flips, byte values, truncation, insertion and deletion of bytes, and
//! mutations aimed at one header field (EtherType, IHL, fragment bits,
//! protocol, lengths, ports, addresses, ICMPv6 and ARP fields).
//!
//! A case is a function of (seed, index) alone, so one can be regenerated
//! to replay it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fastrand::Rng;

use super::{Topology, VIP4_DROP, VIP4_PASS, VIP6_DROP};
use crate::{
    packet::{
        ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_VLAN, ICMPV6, Solicitation, TCP, TCP_ACK, TCP_SYN, UDP,
        arp_request, icmpv6_checksum, l4_frame, multicast_mac, solicited_node, tagged,
    },
    test_run::{CLIENT_MAC, CLIENT4, CLIENT6, NODE_MAC, VIP4, VIP6},
};

/// The largest frame a case grows to (an Ethernet MTU's worth).
const MAX_FRAME: usize = 1514;
/// The smallest frame BPF_PROG_TEST_RUN takes for XDP: an Ethernet header.
const MIN_FRAME: usize = 14;

const ZERO_MAC: [u8; 6] = [0; 6];
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const OTHER_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 1];
const BACKEND_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];
const IPV4_MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];
const IPV6_MULTICAST_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const MACS: [[u8; 6]; 8] = [
    CLIENT_MAC,
    NODE_MAC,
    ZERO_MAC,
    BROADCAST_MAC,
    OTHER_MAC,
    BACKEND_MAC,
    IPV4_MULTICAST_MAC,
    IPV6_MULTICAST_MAC,
];

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10);

const V4_ADDRESSES: [Ipv4Addr; 8] = [
    VIP4,
    VIP4_DROP,
    VIP4_PASS,
    CLIENT4,
    Ipv4Addr::new(198, 18, 1, 50),
    Ipv4Addr::new(198, 18, 0, 21),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::BROADCAST,
];

fn v6_addresses() -> [Ipv6Addr; 10] {
    [
        VIP6,
        VIP6_DROP,
        VIP4.to_ipv6_mapped(),
        VIP4_DROP.to_ipv6_mapped(),
        CLIENT6,
        Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x50),
        LINK_LOCAL,
        Ipv6Addr::UNSPECIFIED,
        ALL_NODES,
        solicited_node(VIP6),
    ]
}

const PORTS: [u16; 7] = [80, 53, 443, 8080, 22, 0, 65535];
const IP_PROTOCOLS: [u8; 9] = [TCP, UDP, 1, ICMPV6, 0, 43, 44, 59, 60];
const ETHER_TYPES: [u16; 6] = [ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN, 0x88a8, 0x88cc];

/// The frame of case `index` of `seed`.
pub(super) fn case(topology: &Topology, seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::with_seed(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut frame = valid_frame(&mut rng, topology);
    // One in five stays valid: the paths that must answer or steer.
    if rng.u8(0..5) != 0 {
        for _ in 0..rng.u8(1..=3) {
            if rng.bool() {
                mutate_field(&mut rng, &mut frame);
            } else {
                mutate_bytes(&mut rng, &mut frame);
            }
        }
    }
    frame.truncate(MAX_FRAME);
    frame.resize(frame.len().max(MIN_FRAME), 0);
    frame
}

fn pick<T: Copy>(rng: &mut Rng, pool: &[T]) -> T {
    pool[rng.usize(0..pool.len())]
}

/// Mostly the client's MAC, sometimes any of the pool.
fn sender_mac(rng: &mut Rng) -> [u8; 6] {
    if rng.u8(0..5) == 0 {
        pick(rng, &MACS)
    } else {
        CLIENT_MAC
    }
}

fn valid_frame(rng: &mut Rng, topology: &Topology) -> Vec<u8> {
    let frame = match rng.u8(0..8) {
        0..=2 => transport(rng, topology, false),
        3..=5 => transport(rng, topology, true),
        6 => arp(rng),
        _ => solicitation(rng),
    };
    if rng.u8(0..5) == 0 {
        tagged(&frame, pick(rng, &[1, 42, 4095, 0]))
    } else {
        frame
    }
}

/// TCP or UDP, mostly to a configured VIP's address, port and protocol.
fn transport(rng: &mut Rng, topology: &Topology, ipv6: bool) -> Vec<u8> {
    let vips: Vec<_> = topology
        .vips
        .iter()
        .filter(|v| v.address.is_ipv6() == ipv6)
        .collect();
    let (dst, port, protocol) = if rng.u8(0..10) < 7 {
        let vip = pick(rng, &vips);
        (vip.address, vip.port, vip.protocol)
    } else {
        let dst = if ipv6 {
            IpAddr::V6(pick(rng, &v6_addresses()))
        } else {
            IpAddr::V4(pick(rng, &V4_ADDRESSES))
        };
        (dst, pick(rng, &PORTS), pick(rng, &[TCP, UDP]))
    };
    let src = if ipv6 {
        IpAddr::V6(pick(rng, &[CLIENT6, LINK_LOCAL]))
    } else {
        IpAddr::V4(pick(rng, &[CLIENT4, Ipv4Addr::new(198, 18, 0, 11)]))
    };
    let eth_dst = if rng.u8(0..8) == 0 {
        pick(rng, &MACS)
    } else {
        NODE_MAC
    };
    // Few source ports, so that flows repeat and hit the flow table.
    let sport = 40000 + rng.u16(0..64);
    let flags = pick(
        rng,
        &[TCP_SYN, TCP_ACK, TCP_SYN | TCP_ACK, 0x11, 0x04, 0x18],
    );
    l4_frame(
        (eth_dst, sender_mac(rng)),
        src,
        dst,
        protocol,
        sport,
        port,
        flags,
    )
}

fn arp(rng: &mut Rng) -> Vec<u8> {
    let target = pick(rng, &V4_ADDRESSES[..6]);
    let sender = match rng.u8(0..8) {
        0 => Ipv4Addr::UNSPECIFIED,
        1 => target,
        _ => CLIENT4,
    };
    let mut frame = arp_request(sender_mac(rng), sender, target);
    if rng.u8(0..8) == 0 {
        // A sender hardware address other than the Ethernet source.
        frame[22..28].copy_from_slice(&pick(rng, &MACS));
    }
    if rng.u8(0..8) == 0 {
        frame[0..6].copy_from_slice(&NODE_MAC);
    }
    frame
}

fn solicitation(rng: &mut Rng) -> Vec<u8> {
    let target = match rng.u8(0..8) {
        0..=3 => VIP6,
        4 => VIP6_DROP,
        5 => VIP4.to_ipv6_mapped(),
        _ => pick(rng, &v6_addresses()),
    };
    let src = match rng.u8(0..10) {
        0 => LINK_LOCAL,
        1 => Ipv6Addr::UNSPECIFIED,
        2 => ALL_NODES,
        _ => CLIENT6,
    };
    let dst = match rng.u8(0..4) {
        0 => target,
        1 => ALL_NODES,
        _ => solicited_node(target),
    };
    let src_mac = sender_mac(rng);
    let source_link_layer = match rng.u8(0..8) {
        0 | 1 => None,
        2 => Some(pick(rng, &MACS)),
        _ => Some(src_mac),
    };
    let eth_dst = if dst.is_multicast() {
        multicast_mac(dst)
    } else {
        NODE_MAC
    };
    Solicitation {
        eth_dst,
        src_mac,
        src,
        dst,
        target,
        source_link_layer,
        hop_limit: if rng.u8(0..10) == 0 {
            pick(rng, &[64, 254, 0])
        } else {
            255
        },
    }
    .frame()
}

/// Where the network header starts: after the MACs, the EtherType and, if
/// the EtherType is 802.1Q, the tag. Also the EtherType's own offset.
fn network_offset(frame: &[u8]) -> (usize, usize) {
    if frame.len() >= 14 && u16::from_be_bytes([frame[12], frame[13]]) == ETH_VLAN {
        (18, 16)
    } else {
        (14, 12)
    }
}

fn ether_type(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
}

/// Writes `bytes` at `at` if they fit in the frame; else nothing.
fn put(frame: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(place) = frame.get_mut(at..at + bytes.len()) {
        place.copy_from_slice(bytes);
    }
}

/// One mutation aimed at a header field, found from the frame's current
/// bytes (earlier mutations may have moved or changed the headers).
fn mutate_field(rng: &mut Rng, frame: &mut Vec<u8>) {
    let (l3, type_at) = network_offset(frame);
    let ether = ether_type(frame, type_at);
    let ipv4 = ether == Some(ETH_IPV4);
    let ipv6 = ether == Some(ETH_IPV6);
    let transport_at = if ipv4 {
        frame.get(l3).map(|b| l3 + usize::from(b & 0x0f) * 4)
    } else {
        Some(l3 + 40)
    };
    match rng.u8(0..17) {
        0 => put(frame, type_at, &pick(rng, &ETHER_TYPES).to_be_bytes()),
        1 => put(frame, 0, &pick(rng, &MACS)),
        2 => put(frame, 6, &pick(rng, &MACS)),
        3 if ipv4 => {
            let version = pick(rng, &[4u8, 4, 6, 0, 15]);
            put(frame, l3, &[version << 4 | rng.u8(0..16)]);
        }
        4 if ipv4 => {
            let bits = pick(rng, &[0x4000u16, 0x2000, 0x0001, 0x8000, 0x1fff, 0x3fff]);
            put(frame, l3 + 6, &bits.to_be_bytes());
        }
        5 => {
            let at = if ipv4 { l3 + 9 } else { l3 + 6 };
            put(frame, at, &[pick(rng, &IP_PROTOCOLS)]);
        }
        6 => {
            // IPv4 total length or IPv6 payload length.
            let at = if ipv4 { l3 + 2 } else { l3 + 4 };
            let value = if rng.bool() {
                rng.u16(..)
            } else {
                rng.u16(0..128)
            };
            put(frame, at, &value.to_be_bytes());
        }
        7 => {
            if let Some(at) = transport_at {
                let which = pick(rng, &[0usize, 2]);
                put(frame, at + which, &pick(rng, &PORTS).to_be_bytes());
            }
        }
        8 | 9 => {
            // A destination or source address from the pool.
            let destination = rng.bool();
            if ipv4 {
                let at = if destination { l3 + 16 } else { l3 + 12 };
                put(frame, at, &pick(rng, &V4_ADDRESSES).octets());
            } else {
                let at = if destination { l3 + 24 } else { l3 + 8 };
                put(frame, at, &pick(rng, &v6_addresses()).octets());
            }
        }
        10 if ipv6 => put(frame, l3 + 7, &[pick(rng, &[255u8, 64, 0, 254])]),
        11 => {
            if let Some(at) = transport_at {
                put(frame, at + 13, &[rng.u8(..)]);
            }
        }
        12 if ipv6 => {
            let kind = pick(rng, &[135u8, 136, 1, 2, 3, 4, 128, 133]);
            put(frame, l3 + 40, &[kind]);
            if rng.u8(0..4) == 0 {
                put(frame, l3 + 41, &[rng.u8(..)]);
            }
        }
        13 if ipv6 => {
            // NS target or option.
            if rng.bool() {
                put(frame, l3 + 48, &pick(rng, &v6_addresses()).octets());
            } else {
                put(
                    frame,
                    l3 + 64,
                    &pick(rng, &[[1u8, 1], [2, 1], [1, 0], [1, 2], [14, 1]]),
                );
            }
        }
        14 if ether == Some(ETH_ARP) => match rng.u8(0..4) {
            0 => put(
                frame,
                l3 + 6,
                &pick(rng, &[1u16, 2, 3, 0, 256]).to_be_bytes(),
            ),
            1 => put(frame, l3, &pick(rng, &[1u16, 6, 0]).to_be_bytes()),
            2 => put(
                frame,
                l3 + 2,
                &pick(rng, &[ETH_IPV4, ETH_IPV6]).to_be_bytes(),
            ),
            _ => put(frame, l3 + 4, &[rng.u8(0..8), rng.u8(0..8)]),
        },
        15 if ether == Some(ETH_ARP) => {
            // sha, spa, tha or tpa.
            match rng.u8(0..4) {
                0 => put(frame, l3 + 8, &pick(rng, &MACS)),
                1 => put(frame, l3 + 14, &pick(rng, &V4_ADDRESSES).octets()),
                2 => put(frame, l3 + 18, &pick(rng, &MACS)),
                _ => put(frame, l3 + 24, &pick(rng, &V4_ADDRESSES).octets()),
            }
        }
        16 => {
            // Add or remove an 802.1Q tag.
            if type_at == 16 && frame.len() >= 16 {
                frame.drain(12..16);
            } else {
                *frame = tagged(frame, rng.u16(0..4096));
            }
        }
        // A field this frame does not have.
        _ => mutate_bytes(rng, frame),
    }
    // Field mutations of an IPv6 frame keep its ICMPv6 checksum right half
    // the time, so that they reach past the checksum check.
    if ipv6 {
        fix_icmpv6_checksum(rng, frame, l3);
    }
}

/// Recomputes the ICMPv6 checksum over the IPv6 payload length, half the
/// time, when the frame holds that much.
fn fix_icmpv6_checksum(rng: &mut Rng, frame: &mut [u8], l3: usize) {
    if rng.bool() {
        return;
    }
    let Some(ip) = frame.get(l3..l3 + 40) else {
        return;
    };
    if ip[6] != ICMPV6 {
        return;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).expect("16 bytes"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16 bytes"));
    let length = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let at = l3 + 40;
    if length < 4 || frame.len() < at + length {
        return;
    }
    frame[at + 2..at + 4].copy_from_slice(&[0, 0]);
    let sum = icmpv6_checksum(src, dst, &frame[at..at + length]);
    frame[at + 2..at + 4].copy_from_slice(&sum.to_be_bytes());
}

/// One mutation blind to the headers.
fn mutate_bytes(rng: &mut Rng, frame: &mut Vec<u8>) {
    let len = frame.len();
    match rng.u8(0..6) {
        0 => {
            for _ in 0..rng.u8(1..=4) {
                let at = rng.usize(0..len);
                frame[at] ^= 1 << rng.u8(0..8);
            }
        }
        1 => {
            let at = rng.usize(0..len);
            let any = rng.u8(..);
            frame[at] = pick(rng, &[0u8, 0xff, 0x80, 0x7f, 0x01, any]);
        }
        2 if len > MIN_FRAME => frame.truncate(rng.usize(MIN_FRAME..len)),
        3 => {
            let at = rng.usize(0..=len);
            let bytes: Vec<u8> = (0..rng.usize(1..=8)).map(|_| rng.u8(..)).collect();
            frame.splice(at..at, bytes);
        }
        4 if len > MIN_FRAME => {
            let at = rng.usize(0..len);
            let end = (at + rng.usize(1..=8)).min(len);
            let end = end.min(at + (len - MIN_FRAME));
            frame.drain(at..end);
        }
        _ => {
            // Trailing bytes, as Ethernet padding would add.
            frame.extend((0..rng.usize(1..=64)).map(|_| rng.u8(..)));
        }
    }
}
