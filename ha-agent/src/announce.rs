//! Gratuitous ARP and unsolicited neighbour advertisements.
//!
//! Why: when a node takes a VIP, the switches must move the VIP's MAC to
//! the new owner's port and the clients and routers on the link must update
//! their neighbour caches at once, not when their entries expire. Like
//! keepalived, the new owner announces every VIP it took with a
//! short burst: a gratuitous ARP for an IPv4 VIP, an unsolicited neighbour
//! advertisement (RFC 4861 §7.2.6) for an IPv6 VIP.
//!
//! How: pure frame builders ([`gratuitous_arp`], [`unsolicited_na`],
//! [`announcement`]) and a thin sender of raw Ethernet frames out of one
//! interface ([`RawSender`], an `AF_PACKET` socket; needs `CAP_NET_RAW`).
//! [`announce`] sends the burst.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, bail};
use ha_common::proto::{
    ARP_HLEN_ETHERNET, ARP_HTYPE_ETHERNET, ARP_OP_REQUEST, ARP_PLEN_IPV4, EthHdr, EtherType,
    ICMPV6_NEIGHBOUR_ADVERTISEMENT, IPV6_ALL_NODES, IPV6_ALL_NODES_MAC, IpProto, Ipv6Hdr,
    NA_FLAG_OVERRIDE, ND_HOP_LIMIT, ND_LL_OPT_LEN, ND_LL_OPT_LEN_UNITS, ND_MESSAGE_LEN,
    ND_OPT_TARGET_LL_ADDR, ether_type,
};
use nix::{
    libc,
    sys::socket::{
        AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, bind, sendto, socket,
    },
};

/// Length of an Ethernet header (no VLAN tag).
const ETH_HEADER_LEN: usize = EthHdr::LEN;
/// Shortest Ethernet frame, less the FCS; shorter frames are padded.
const ETH_MIN_FRAME_LEN: usize = 60;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const IPPROTO_ICMPV6: u8 = IpProto::Ipv6Icmp as u8;
/// A neighbour advertisement with one link-layer address option.
const NA_LEN: usize = ND_MESSAGE_LEN + ND_LL_OPT_LEN;

/// Length of a [`gratuitous_arp`] frame: 42 bytes of headers, padded.
pub(crate) const ARP_FRAME_LEN: usize = ETH_MIN_FRAME_LEN;
/// Length of an [`unsolicited_na`] frame.
pub(crate) const NA_FRAME_LEN: usize = ETH_HEADER_LEN + Ipv6Hdr::LEN + NA_LEN;

/// A gratuitous ARP for `vip` from `mac`: an ARP request (op 1) with
/// sender = target = vip, broadcast destination (as keepalived/arping -U
/// send). The target hardware address is the broadcast address too, as
/// keepalived writes it; the frame is padded with zeros to the Ethernet
/// minimum of 60 bytes.
pub(crate) fn gratuitous_arp(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ARP_FRAME_LEN);
    ethernet_header(&mut frame, BROADCAST_MAC, mac, EtherType::Arp);
    frame.extend_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    frame.extend_from_slice(&ether_type(EtherType::Ipv4).to_be_bytes());
    frame.push(ARP_HLEN_ETHERNET);
    frame.push(ARP_PLEN_IPV4);
    frame.extend_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    frame.extend_from_slice(&mac); // sender hardware address
    frame.extend_from_slice(&vip.octets()); // sender protocol address
    frame.extend_from_slice(&BROADCAST_MAC); // target hardware address
    frame.extend_from_slice(&vip.octets()); // target protocol address
    frame.resize(ARP_FRAME_LEN, 0);
    frame
}

/// An unsolicited neighbour advertisement for `vip` to all-nodes (ff02::1,
/// 33:33:00:00:00:01), override flag set, solicited clear, with a target
/// link-layer address option, hop limit 255, correct ICMPv6 checksum.
///
/// Its IPv6 source is the VIP itself: RFC 4861 asks for an address
/// assigned to the interface, and the VIP is the address this node answers
/// for there. The router flag is clear.
pub(crate) fn unsolicited_na(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(NA_FRAME_LEN);
    ethernet_header(&mut frame, IPV6_ALL_NODES_MAC, mac, EtherType::Ipv6);
    // IPv6 header: version 6, traffic class 0, flow label 0.
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(NA_LEN as u16).to_be_bytes());
    frame.push(IPPROTO_ICMPV6);
    frame.push(ND_HOP_LIMIT);
    frame.extend_from_slice(&vip.octets());
    frame.extend_from_slice(&IPV6_ALL_NODES);
    // ICMPv6 neighbour advertisement.
    let icmp = frame.len();
    frame.push(ICMPV6_NEIGHBOUR_ADVERTISEMENT);
    frame.push(0); // code
    frame.extend_from_slice(&[0, 0]); // checksum, below
    frame.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]);
    frame.extend_from_slice(&vip.octets()); // target address
    frame.push(ND_OPT_TARGET_LL_ADDR);
    frame.push(ND_LL_OPT_LEN_UNITS);
    frame.extend_from_slice(&mac);
    let checksum = icmpv6_checksum(vip, Ipv6Addr::from(IPV6_ALL_NODES), &frame[icmp..]);
    frame[icmp + 2..icmp + 4].copy_from_slice(&checksum.to_be_bytes());
    debug_assert_eq!(frame.len(), NA_FRAME_LEN);
    frame
}

/// The announcement of `vip` from `mac`: a gratuitous ARP for an IPv4
/// address, an unsolicited neighbour advertisement for an IPv6 one.
pub(crate) fn announcement(mac: [u8; 6], vip: IpAddr) -> Vec<u8> {
    match vip {
        IpAddr::V4(vip) => gratuitous_arp(mac, vip),
        IpAddr::V6(vip) => unsolicited_na(mac, vip),
    }
}

fn ethernet_header(frame: &mut Vec<u8>, destination: [u8; 6], source: [u8; 6], kind: EtherType) {
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ether_type(kind).to_be_bytes());
}

/// The ICMPv6 checksum of `message` (its checksum field zero) from `source`
/// to `destination`: the one's complement of the one's-complement sum over
/// the pseudo header (RFC 8200 §8.1) and the message.
fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let length = u32::try_from(message.len()).expect("an ICMPv6 message fits in u32");
    let mut sum = 0u64;
    for part in [
        &source.octets()[..],
        &destination.octets()[..],
        &length.to_be_bytes()[..],
        &[0, 0, 0, IPPROTO_ICMPV6][..],
        message,
    ] {
        // Every part but the message has an even length.
        for pair in part.chunks(2) {
            sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends raw frames out of one interface (AF_PACKET, SOCK_RAW, bound to
/// ifindex) — needs CAP_NET_RAW.
///
/// The socket's protocol is 0, so it receives nothing: it only sends. A
/// send never blocks; a full queue is an error.
#[derive(Debug)]
pub(crate) struct RawSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl RawSender {
    /// Opens a sender on the interface with index `ifindex`.
    pub(crate) fn open(ifindex: u32) -> anyhow::Result<RawSender> {
        if ifindex == 0 || i32::try_from(ifindex).is_err() {
            bail!("{ifindex} is not an interface index");
        }
        // No protocol: the socket receives nothing.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io::Error::from)
        .context("cannot open an AF_PACKET socket (needs CAP_NET_RAW)")?;
        bind(fd.as_raw_fd(), &link_address(ifindex, 0, [0; 6]))
            .map_err(io::Error::from)
            .with_context(|| {
                format!("cannot bind an AF_PACKET socket to interface index {ifindex}")
            })?;
        Ok(RawSender { fd, ifindex })
    }

    /// Sends one complete Ethernet frame (destination, source, ethertype,
    /// payload) out of the interface.
    pub(crate) fn send(&self, frame: &[u8]) -> anyhow::Result<()> {
        if frame.len() < ETH_HEADER_LEN {
            bail!(
                "a frame of {} bytes has no Ethernet header ({ETH_HEADER_LEN} bytes)",
                frame.len()
            );
        }
        let destination: [u8; 6] = frame[..6].try_into().expect("six bytes");
        // The ethertype, in network byte order as the kernel wants it.
        let protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        let address = link_address(self.ifindex, protocol, destination);
        let sent = sendto(self.fd.as_raw_fd(), frame, &address, MsgFlags::MSG_DONTWAIT)
            .map_err(io::Error::from)
            .with_context(|| {
                format!(
                    "cannot send a frame of {} bytes out of interface index {}",
                    frame.len(),
                    self.ifindex
                )
            })?;
        if sent != frame.len() {
            bail!(
                "sent {sent} of the {} bytes of a frame out of interface index {}",
                frame.len(),
                self.ifindex
            );
        }
        Ok(())
    }
}

/// The link-layer address of interface `ifindex` for `destination`;
/// `protocol` in network byte order.
///
/// libc's `sockaddr_ll` because nix has no constructor for a [`LinkAddr`]:
/// it only reads one from raw memory.
fn link_address(ifindex: u32, protocol: u16, destination: [u8; 6]) -> LinkAddr {
    let mut sll_addr = [0; 8];
    sll_addr[..6].copy_from_slice(&destination);
    let address = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: protocol,
        sll_ifindex: ifindex as libc::c_int, // checked in open()
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr,
    };
    let len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `address` is a fully initialised sockaddr_ll, live for the
    // call, and `len` is its size; from_raw copies it out.
    unsafe { LinkAddr::from_raw((&raw const address).cast(), Some(len)) }
        .expect("an AF_PACKET address of sockaddr_ll's size")
}

/// Sends `count` announcements for every address in `vips`, `interval`
/// apart (tokio::time::sleep between rounds).
///
/// A frame that cannot be sent does not stop the burst: every frame is
/// tried, and the error then says how many failed and why the first did.
pub(crate) async fn announce(
    sender: &RawSender,
    mac: [u8; 6],
    vips: &[IpAddr],
    count: u32,
    interval: Duration,
) -> anyhow::Result<()> {
    let frames: Vec<Vec<u8>> = vips.iter().map(|&vip| announcement(mac, vip)).collect();
    send_rounds(|frame| sender.send(frame), &frames, count, interval).await
}

/// [`announce`] with the sending abstracted, for the tests.
async fn send_rounds(
    mut send: impl FnMut(&[u8]) -> anyhow::Result<()>,
    frames: &[Vec<u8>],
    count: u32,
    interval: Duration,
) -> anyhow::Result<()> {
    if frames.is_empty() {
        return Ok(());
    }
    let mut failed = 0usize;
    let mut first_error = None;
    for round in 0..count {
        if round > 0 {
            tokio::time::sleep(interval).await;
        }
        for frame in frames {
            if let Err(e) = send(frame) {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e.context(format!(
            "{failed} of {} announcements could not be sent",
            frames.len() * count as usize
        ))),
    }
}

#[cfg(test)]
mod tests;
