//! Frames for BPF_PROG_TEST_RUN: built byte by byte, so a test states
//! exactly what the program sees and can compare exactly what it returns.
//! The protocol numbers are ha-common's (`proto`); the message layouts
//! below are written out as literal bytes, independent of the code under
//! test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ha_common::proto::{EtherType, IpProto, ether_type};

pub const ETH_IPV4: u16 = ether_type(EtherType::Ipv4);
pub const ETH_IPV6: u16 = ether_type(EtherType::Ipv6);
pub const ETH_ARP: u16 = ether_type(EtherType::Arp);
pub const ETH_VLAN: u16 = ether_type(EtherType::Ieee8021q);
pub const TCP: u8 = ha_common::PROTO_TCP;
pub const UDP: u8 = ha_common::PROTO_UDP;
pub const ICMPV6: u8 = IpProto::Ipv6Icmp as u8;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// An 802.1Q tag: the caller's frame continues with `inner_type`.
pub fn vlan(dst: [u8; 6], src: [u8; 6], vid: u16, inner_type: u16) -> Vec<u8> {
    let mut f = ethernet(dst, src, ETH_VLAN);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&inner_type.to_be_bytes());
    f
}

/// A TCP header with the given flags (no options, zero checksum).
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    h.push(5 << 4);
    h.push(flags);
    h.extend_from_slice(&64240u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + payload.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// An IPv4 header (`ihl` in 32-bit words, options zero-filled) + payload.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ihl: u8,
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    let header_len = usize::from(ihl.max(5)) * 4;
    let mut h = vec![0u8; header_len];
    h[0] = 0x40 | (ihl & 0x0f);
    h[2..4].copy_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&h[..header_len], 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A whole TCP or UDP frame from `src`:`sport` to `dst`:`dport`.
pub fn l4_frame(
    macs: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
) -> Vec<u8> {
    let l4 = if proto == TCP {
        tcp(sport, dport, tcp_flags)
    } else {
        udp(sport, dport, b"ha")
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut f = ethernet(macs.0, macs.1, ETH_IPV4);
            f.extend(ipv4(s, d, proto, 5, 0, &l4));
            f
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut f = ethernet(macs.0, macs.1, ETH_IPV6);
            f.extend(ipv6(s, d, proto, 64, &l4));
            f
        }
        _ => panic!("mixed address families"),
    }
}

/// An ARP request: who has `target`? tell `sender`.
pub fn arp_request(src_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet([0xff; 6], src_mac, ETH_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The solicited-node multicast address of `target` (RFC 4291).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// The Ethernet multicast address of an IPv6 group (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let g = group.octets();
    [0x33, 0x33, g[12], g[13], g[14], g[15]]
}

/// A source link-layer address option for an Ethernet `mac`.
pub fn source_ll_option(mac: [u8; 6]) -> Vec<u8> {
    let mut option = vec![1, 1];
    option.extend_from_slice(&mac);
    option
}

/// A neighbour solicitation with every field a test may want wrong: any
/// destination, hop limit and source link-layer option.
#[derive(Clone, Copy, Debug)]
pub struct Solicitation {
    pub eth_dst: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The source link-layer address option, if any.
    pub source_link_layer: Option<[u8; 6]>,
    /// 255 is the only valid one (RFC 4861 §7.1.1).
    pub hop_limit: u8,
}

impl Solicitation {
    /// The frame, with a correct ICMPv6 checksum.
    pub fn frame(&self) -> Vec<u8> {
        let options = self
            .source_link_layer
            .map(source_ll_option)
            .unwrap_or_default();
        solicitation(
            (self.eth_dst, self.src_mac),
            (self.src, self.dst),
            self.target,
            &options,
            self.hop_limit,
        )
    }
}

/// A neighbour solicitation for `target` with a source link-layer option,
/// sent to the target's solicited-node multicast group.
pub fn neighbour_solicitation(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    solicitation_frame(
        (multicast_mac(dst), src_mac),
        (src, dst),
        target,
        &source_ll_option(src_mac),
    )
}

/// A neighbour solicitation for `target` between the given MACs and
/// addresses, with `options` after the message and a correct checksum.
pub fn solicitation_frame(
    macs: ([u8; 6], [u8; 6]),
    addrs: (Ipv6Addr, Ipv6Addr),
    target: Ipv6Addr,
    options: &[u8],
) -> Vec<u8> {
    solicitation(macs, addrs, target, options, 255)
}

fn solicitation(
    macs: ([u8; 6], [u8; 6]),
    (src, dst): (Ipv6Addr, Ipv6Addr),
    target: Ipv6Addr,
    options: &[u8],
    hop_limit: u8,
) -> Vec<u8> {
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(options);
    let sum = icmpv6_checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = ethernet(macs.0, macs.1, ETH_IPV6);
    f.extend(ipv6(src, dst, ICMPV6, hop_limit, &icmp));
    f
}

/// `frame` with an 802.1Q tag of `vid` inserted after the MAC addresses.
pub fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&ETH_VLAN.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// Recomputes the ICMPv6 checksum of an untagged IPv6 frame after a test
/// changed its message (up to the IPv6 payload length).
pub fn reseal_icmpv6(frame: &mut [u8]) {
    let ip = &frame[14..54];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let message = &mut frame[54..54 + len];
    message[2..4].copy_from_slice(&[0, 0]);
    let sum = icmpv6_checksum(src, dst, message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum of `data`, starting from a partial `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 checksum (pseudo header + message with its checksum field
/// as given: zero to compute, the real value to verify, where 0 means ok).
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    let partial = !checksum(&pseudo, 0);
    checksum(message, u32::from(partial))
}
