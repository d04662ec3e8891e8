//! The fuzzer's judge: whether a verdict and output are right for a frame,
//! worked out from the frame's bytes and the fuzz topology alone. It shares
//! no code with the XDP program and re-reads every header itself, so a
//! parsing mistake of the program is not repeated here.
//!
//! - XDP_PASS: the output is the input, and the frame is none the program
//!   must act on (VIP traffic, an ARP request or a neighbour solicitation
//!   for an owned VIP that a correct program answers).
//! - XDP_TX: either VIP traffic for the node's MAC with only the two MACs
//!   changed, to a usable backend of that VIP, from the node's MAC; or the
//!   byte-exact ARP reply / neighbour advertisement for an owned VIP.
//! - XDP_DROP: only VIP traffic whose VIP has no usable backend and
//!   `on_no_backend = "drop"`.
//! - Any other verdict is wrong.
//!
//! Two things the program does not do today are accepted ahead of their
//! fixes (issue 10): a VLAN-tagged frame may always pass (point 14: a VIP
//! bound to no VLAN is for untagged frames only), and an ICMP error to a
//! VIP may be steered like the VIP's traffic (point 13).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ha_agent::model::Mac;

use super::{Topology, VipSpec, hex};
use crate::{
    packet::{
        ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_VLAN, ICMPV6, TCP, UDP, icmpv6_checksum, multicast_mac,
        solicited_node,
    },
    test_run::{NODE_MAC, XDP_DROP, XDP_PASS, XDP_TX},
};

/// IPv6 all-nodes (RFC 4291 §2.7.1): where answers to duplicate address
/// detection go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Defects the fuzzer finds in the program as it is: those of issue 10
/// point 12, and one found since. The test skips a failure of a kind it
/// lists as known while that kind's fix is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KnownDefect {
    /// An IPv6 packet to the v4-mapped form (`::ffff:a.b.c.d`) of an IPv4
    /// VIP is steered like that VIP's traffic, and a neighbour
    /// solicitation for such a target is answered.
    V4MappedAddressTakenForIpv4Vip,
    /// A neighbour solicitation with a bad ICMPv6 checksum is answered
    /// (RFC 4861 §7.1.1: silently discard).
    SolicitationWithBadChecksumAnswered,
    /// A neighbour solicitation to a multicast address without a source
    /// link-layer option gets an advertisement without the target
    /// link-layer option (RFC 4861 §7.2.4: it must be included).
    AdvertisementWithoutTargetLinkLayer,
    /// An ARP request or neighbour solicitation from a multicast or zero
    /// source hardware address is answered to that address.
    RequestFromGroupOrZeroMacAnswered,
    /// Not in issue 10, found by this fuzzer: a neighbour solicitation
    /// from a multicast IPv6 source is answered, with a solicited
    /// advertisement to that multicast group (RFC 4291 §2.7: a multicast
    /// address is never a source; RFC 4861 §7.1.2: receivers discard a
    /// solicited advertisement to a multicast destination).
    SolicitationFromMulticastSourceAnswered,
}

impl KnownDefect {
    pub fn describe(self) -> &'static str {
        match self {
            KnownDefect::V4MappedAddressTakenForIpv4Vip => {
                "issue 10 point 12: a v4-mapped IPv6 address (::ffff:a.b.c.d) is taken for the IPv4 VIP"
            }
            KnownDefect::SolicitationWithBadChecksumAnswered => {
                "issue 10 point 12: a neighbour solicitation with a bad ICMPv6 checksum is answered"
            }
            KnownDefect::AdvertisementWithoutTargetLinkLayer => {
                "issue 10 point 12: an NS to a multicast address without source link-layer option gets an NA without target link-layer option"
            }
            KnownDefect::RequestFromGroupOrZeroMacAnswered => {
                "issue 10 point 12: ARP/NS from a multicast or zero source hardware address are answered"
            }
            KnownDefect::SolicitationFromMulticastSourceAnswered => {
                "found by the fuzzer: a neighbour solicitation from a multicast IPv6 source is answered"
            }
        }
    }
}

/// What a right verdict did with its frame: the fuzzer's coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Passed,
    Steered,
    ArpReply,
    Advertisement,
    IcmpErrorSteered,
    Dropped,
}

/// Why a verdict or output is wrong, and the known defect it is, if any.
#[derive(Clone, Debug)]
pub struct Failure {
    pub defect: Option<KnownDefect>,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        if let Some(defect) = self.defect {
            write!(f, " [{}]", defect.describe())?;
        }
        Ok(())
    }
}

fn wrong(reason: impl Into<String>) -> Failure {
    Failure {
        defect: None,
        reason: reason.into(),
    }
}

fn known(defect: KnownDefect, reason: impl Into<String>) -> Failure {
    Failure {
        defect: Some(defect),
        reason: reason.into(),
    }
}

/// Judges the program's `verdict` and `output` for `input` (at least an
/// Ethernet header: BPF_PROG_TEST_RUN takes no less).
pub fn check(
    topology: &Topology,
    input: &[u8],
    verdict: u32,
    output: &[u8],
) -> Result<Outcome, Failure> {
    let frame = Frame::read(input);
    match verdict {
        XDP_PASS => {
            if let Some(at) = first_difference(output, input) {
                return Err(wrong(format!("XDP_PASS changed the frame at byte {at}")));
            }
            match duty(topology, &frame) {
                Some(duty) => Err(wrong(format!("XDP_PASS, but {duty}"))),
                None => Ok(Outcome::Passed),
            }
        }
        XDP_TX => transmitted(topology, &frame, output),
        XDP_DROP => dropped(topology, &frame),
        other => Err(wrong(format!("verdict {other} is never right"))),
    }
}

/// A frame as the checker reads it.
struct Frame<'a> {
    bytes: &'a [u8],
    /// The EtherType after at most one 802.1Q tag; None when the tag is
    /// cut short.
    ether_type: Option<u16>,
    tagged: bool,
    /// Offset of the network header.
    l3: usize,
}

impl<'a> Frame<'a> {
    fn read(bytes: &'a [u8]) -> Frame<'a> {
        let outer = be16(&bytes[12..14]);
        if outer == ETH_VLAN {
            Frame {
                bytes,
                ether_type: bytes.get(16..18).map(be16),
                tagged: true,
                l3: 18,
            }
        } else {
            Frame {
                bytes,
                ether_type: Some(outer),
                tagged: false,
                l3: 14,
            }
        }
    }

    fn dst_mac(&self) -> [u8; 6] {
        mac(&self.bytes[0..6])
    }

    fn src_mac(&self) -> [u8; 6] {
        mac(&self.bytes[6..12])
    }

    fn network_header(&self, len: usize) -> Option<&'a [u8]> {
        self.bytes.get(self.l3..self.l3 + len)
    }
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn mac(bytes: &[u8]) -> [u8; 6] {
    bytes[..6].try_into().expect("6 bytes")
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

fn ipv6(bytes: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..16]).expect("16 bytes"))
}

fn is_group_or_zero(mac: [u8; 6]) -> bool {
    mac[0] & 1 != 0 || mac == [0; 6]
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(at) => Some(at),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

fn service(address: IpAddr, port: u16, protocol: u8) -> String {
    let name = match protocol {
        TCP => "tcp",
        UDP => "udp",
        _ => "?",
    };
    format!("{}/{name}", SocketAddr::new(address, port))
}

fn vip_name(vip: &VipSpec) -> String {
    service(vip.address, vip.port, vip.protocol)
}

/// An IPv4 header (version 4, IHL >= 5, not a fragment) or IPv6 header
/// (version 6): its protocol or next header, destination, and the offset
/// of what follows it.
fn network(frame: &Frame<'_>) -> Option<(u8, IpAddr, usize)> {
    match frame.ether_type? {
        ETH_IPV4 => {
            let ip = frame.network_header(20)?;
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let fragment = be16(&ip[6..8]) & 0x3fff != 0;
            if ip[0] >> 4 != 4 || header_len < 20 || fragment {
                return None;
            }
            Some((ip[9], ipv4(&ip[16..20]).into(), frame.l3 + header_len))
        }
        ETH_IPV6 => {
            let ip = frame.network_header(40)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            Some((ip[6], ipv6(&ip[24..40]).into(), frame.l3 + 40))
        }
        _ => None,
    }
}

/// Where a TCP or UDP packet goes: what the program must read to its ports.
struct Transport {
    dst: IpAddr,
    port: u16,
    protocol: u8,
}

fn transport(frame: &Frame<'_>) -> Option<Transport> {
    let (protocol, dst, at) = network(frame)?;
    let header_len = match protocol {
        TCP => 20,
        UDP => 8,
        _ => return None,
    };
    let header = frame.bytes.get(at..at + header_len)?;
    Some(Transport {
        dst,
        port: be16(&header[2..4]),
        protocol,
    })
}

/// The failure of treating traffic for a destination that is no VIP as if
/// it were (`what`: "steered", "dropped").
fn not_a_vip(t: &Transport, what: &str) -> Failure {
    let target = service(t.dst, t.port, t.protocol);
    match t.dst {
        IpAddr::V6(address) if address.to_ipv4_mapped().is_some() => known(
            KnownDefect::V4MappedAddressTakenForIpv4Vip,
            format!("{what} {target}: a v4-mapped IPv6 address, no VIP"),
        ),
        _ => wrong(format!("{what} {target}, which is no VIP")),
    }
}

struct ArpRequest {
    sha: [u8; 6],
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
}

/// An ARP request for an IPv4 address over Ethernet.
fn arp_request(frame: &Frame<'_>) -> Option<ArpRequest> {
    if frame.ether_type? != ETH_ARP {
        return None;
    }
    let arp = frame.network_header(28)?;
    if arp[..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] {
        return None;
    }
    Some(ArpRequest {
        sha: mac(&arp[8..14]),
        spa: ipv4(&arp[14..18]),
        tpa: ipv4(&arp[24..28]),
    })
}

/// Why a correct program must not answer this ARP request, if it must not.
fn arp_refusal(topology: &Topology, frame: &Frame<'_>, request: &ArpRequest) -> Option<Failure> {
    if request.spa == request.tpa {
        return Some(wrong("it is gratuitous (sender = target): it asks nothing"));
    }
    if !topology.owns(request.tpa.into()) {
        return Some(wrong(format!("{} is not an owned VIP", request.tpa)));
    }
    if is_group_or_zero(frame.src_mac()) || is_group_or_zero(request.sha) {
        return Some(known(
            KnownDefect::RequestFromGroupOrZeroMacAnswered,
            format!(
                "it comes from a multicast or zero hardware address (Ethernet {}, sender {})",
                Mac(frame.src_mac()),
                Mac(request.sha)
            ),
        ));
    }
    None
}

/// The options of a neighbour solicitation.
struct NdOptions {
    source_link_layer: Option<[u8; 6]>,
    /// Every option has a length above 0 and ends inside the message.
    well_formed: bool,
    /// No option other than one Ethernet source link-layer address.
    only_source_link_layer: bool,
}

fn nd_options(mut rest: &[u8]) -> NdOptions {
    let mut options = NdOptions {
        source_link_layer: None,
        well_formed: true,
        only_source_link_layer: true,
    };
    while !rest.is_empty() {
        if rest.len() < 2 || rest[1] == 0 || rest.len() < usize::from(rest[1]) * 8 {
            options.well_formed = false;
            return options;
        }
        let len = usize::from(rest[1]) * 8;
        if rest[0] == 1 && len == 8 && options.source_link_layer.is_none() {
            options.source_link_layer = Some(mac(&rest[2..8]));
        } else {
            options.only_source_link_layer = false;
        }
        rest = &rest[len..];
    }
    options
}

struct NeighbourSolicitation<'a> {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    code: u8,
    target: Ipv6Addr,
    /// The ICMPv6 message as long as the IPv6 payload length says, if that
    /// is at least a whole solicitation and inside the frame.
    message: Option<&'a [u8]>,
    options: NdOptions,
}

/// An ICMPv6 neighbour solicitation (type 135) right after the IPv6
/// header, whatever else is wrong with it.
fn solicitation<'a>(frame: &Frame<'a>) -> Option<NeighbourSolicitation<'a>> {
    if frame.ether_type? != ETH_IPV6 {
        return None;
    }
    let (next, _, at) = network(frame)?;
    let ip = frame.network_header(40)?;
    let head = frame.bytes.get(at..at + 24)?;
    if next != ICMPV6 || head[0] != 135 {
        return None;
    }
    let length = usize::from(be16(&ip[4..6]));
    let message = frame.bytes.get(at..at + length).filter(|m| m.len() >= 24);
    let options = match message {
        Some(message) => nd_options(&message[24..]),
        None => NdOptions {
            source_link_layer: None,
            well_formed: false,
            only_source_link_layer: false,
        },
    };
    Some(NeighbourSolicitation {
        src: ipv6(&ip[8..24]),
        dst: ipv6(&ip[24..40]),
        hop_limit: ip[7],
        code: head[1],
        target: ipv6(&head[8..24]),
        message,
        options,
    })
}

/// Why a correct program must not answer this solicitation, if it must
/// not (RFC 4861 §7.1.1, and what the node owns).
fn solicitation_refusal(
    topology: &Topology,
    frame: &Frame<'_>,
    ns: &NeighbourSolicitation<'_>,
) -> Option<Failure> {
    if ns.hop_limit != 255 {
        return Some(wrong(format!("its hop limit is {}, not 255", ns.hop_limit)));
    }
    if ns.code != 0 {
        return Some(wrong(format!("its ICMPv6 code is {}, not 0", ns.code)));
    }
    let Some(message) = ns.message else {
        return Some(wrong(
            "its IPv6 payload length is below 24 or past the end of the frame",
        ));
    };
    if icmpv6_checksum(ns.src, ns.dst, message) != 0 {
        return Some(known(
            KnownDefect::SolicitationWithBadChecksumAnswered,
            "its ICMPv6 checksum is wrong",
        ));
    }
    if !ns.options.well_formed {
        return Some(wrong("an option has length 0 or runs past the message"));
    }
    // Duplicate address detection (from ::) is answered to all-nodes, but
    // only when it went to the target's solicited-node group and carries
    // no source link-layer option (RFC 4861 §7.1.1).
    if ns.src.is_unspecified()
        && (ns.dst != solicited_node(ns.target) || ns.options.source_link_layer.is_some())
    {
        return Some(wrong(
            "it comes from :: but not to the solicited-node group or with a source link-layer option",
        ));
    }
    // RFC 4291 §2.5.5.2: IPv4-mapped addresses never travel as IPv6
    // sources (Linux drops such packets on input).
    if ns.src.to_ipv4_mapped().is_some() {
        return Some(wrong(format!(
            "its source address {} is IPv4-mapped",
            ns.src
        )));
    }
    if ns.src.is_multicast() {
        return Some(known(
            KnownDefect::SolicitationFromMulticastSourceAnswered,
            format!(
                "its source address {} is multicast (RFC 4291 §2.7: never a source)",
                ns.src
            ),
        ));
    }
    if !topology.owns(ns.target.into()) {
        if ns.target.to_ipv4_mapped().is_some() {
            return Some(known(
                KnownDefect::V4MappedAddressTakenForIpv4Vip,
                format!("its target {} is a v4-mapped address, no VIP", ns.target),
            ));
        }
        return Some(wrong(format!(
            "its target {} is not an owned VIP",
            ns.target
        )));
    }
    let sender_macs = [Some(frame.src_mac()), ns.options.source_link_layer];
    if sender_macs.into_iter().flatten().any(is_group_or_zero) {
        return Some(known(
            KnownDefect::RequestFromGroupOrZeroMacAnswered,
            format!(
                "it comes from a multicast or zero hardware address (Ethernet {}, option {})",
                Mac(frame.src_mac()),
                ns.options
                    .source_link_layer
                    .map_or("none".to_string(), |m| Mac(m).to_string())
            ),
        ));
    }
    None
}

/// What the program must do with this frame instead of passing it, if
/// anything.
fn duty(topology: &Topology, frame: &Frame<'_>) -> Option<String> {
    // Issue 10 point 14: a VIP bound to no VLAN is for untagged frames
    // only, and the fuzz topology binds none; so a tagged frame may pass.
    if frame.tagged {
        return None;
    }
    if let Some(t) = transport(frame) {
        if frame.dst_mac() != NODE_MAC {
            return None;
        }
        let vip = topology.vip(t.dst, t.port, t.protocol)?;
        if Topology::usable_macs(vip).next().is_some() {
            return Some(format!(
                "it is traffic of VIP {} with usable backends",
                vip_name(vip)
            ));
        }
        if !vip.pass_without_backend {
            return Some(format!(
                "VIP {} has no usable backend and on_no_backend = \"drop\"",
                vip_name(vip)
            ));
        }
        return None;
    }
    // A request sent to another station's MAC may be ignored, as a NIC
    // would not have received it.
    let dst_mac = frame.dst_mac();
    if dst_mac != NODE_MAC && dst_mac[0] & 1 == 0 {
        return None;
    }
    if let Some(request) = arp_request(frame) {
        // A sender protocol address that is a group address is a martian
        // a host may ignore.
        let martian = request.spa.is_multicast() || request.spa.is_broadcast();
        if arp_refusal(topology, frame, &request).is_none() && !martian {
            return Some(format!(
                "it is an ARP request for owned VIP {}",
                request.tpa
            ));
        }
        return None;
    }
    if let Some(ns) = solicitation(frame) {
        // The program answers in place: other options, or a multicast
        // solicitation without room for the target link-layer option,
        // may be left to the host; so may a solicitation sent to an
        // address other than the target or its solicited-node group.
        let fits = ns.options.source_link_layer.is_some() || !ns.dst.is_multicast();
        let to_target = ns.dst == ns.target || ns.dst == solicited_node(ns.target);
        if solicitation_refusal(topology, frame, &ns).is_none()
            && ns.options.only_source_link_layer
            && fits
            && to_target
        {
            return Some(format!(
                "it is a valid solicitation for owned VIP {}",
                ns.target
            ));
        }
    }
    None
}

fn transmitted(topology: &Topology, frame: &Frame<'_>, output: &[u8]) -> Result<Outcome, Failure> {
    if let Some(request) = arp_request(frame) {
        if let Some(refusal) = arp_refusal(topology, frame, &request) {
            return Err(Failure {
                reason: format!("answered an ARP request although {}", refusal.reason),
                ..refusal
            });
        }
        return arp_reply_is_right(frame, &request, output).map(|()| Outcome::ArpReply);
    }
    if let Some(ns) = solicitation(frame) {
        if let Some(refusal) = solicitation_refusal(topology, frame, &ns) {
            return Err(Failure {
                reason: format!(
                    "answered a neighbour solicitation although {}",
                    refusal.reason
                ),
                ..refusal
            });
        }
        return advertisement_is_right(frame, &ns, output).map(|()| Outcome::Advertisement);
    }
    if let Some(t) = transport(frame) {
        return steered_is_right(topology, frame, &t, output).map(|()| Outcome::Steered);
    }
    if let Some(dst) = icmp_error(frame) {
        return icmp_error_steered_is_right(topology, frame, dst, output)
            .map(|()| Outcome::IcmpErrorSteered);
    }
    Err(wrong(
        "XDP_TX of a frame that is neither TCP/UDP whole to its ports, nor an ARP request, nor a neighbour solicitation",
    ))
}

fn only_macs_changed(frame: &Frame<'_>, output: &[u8]) -> Result<(), Failure> {
    if output.len() != frame.bytes.len() {
        return Err(wrong(format!(
            "the length changed from {} to {}",
            frame.bytes.len(),
            output.len()
        )));
    }
    if output[6..12] != NODE_MAC {
        return Err(wrong(format!(
            "sent from {}, not from the node's MAC",
            Mac(mac(&output[6..12]))
        )));
    }
    if let Some(at) = first_difference(&output[12..], &frame.bytes[12..]) {
        return Err(wrong(format!("byte {} changed, after the MACs", 12 + at)));
    }
    Ok(())
}

fn steered_is_right(
    topology: &Topology,
    frame: &Frame<'_>,
    t: &Transport,
    output: &[u8],
) -> Result<(), Failure> {
    if frame.dst_mac() != NODE_MAC {
        return Err(wrong(format!(
            "steered a frame addressed to {}, not to the node",
            Mac(frame.dst_mac())
        )));
    }
    let Some(vip) = topology.vip(t.dst, t.port, t.protocol) else {
        return Err(not_a_vip(t, "steered"));
    };
    only_macs_changed(frame, output)?;
    let to = mac(&output[0..6]);
    if !Topology::usable_macs(vip).any(|m| m == to) {
        return Err(wrong(format!(
            "steered traffic of VIP {} to {}, not a usable backend of it",
            vip_name(vip),
            Mac(to)
        )));
    }
    Ok(())
}

/// The destination of an ICMP error message (IPv4 destination
/// unreachable, source quench, time exceeded, parameter problem; ICMPv6
/// types below 128).
fn icmp_error(frame: &Frame<'_>) -> Option<IpAddr> {
    let (protocol, dst, at) = network(frame)?;
    let kind = *frame.bytes.get(at)?;
    let error = match dst {
        IpAddr::V4(_) => protocol == 1 && matches!(kind, 3 | 4 | 11 | 12),
        IpAddr::V6(_) => protocol == ICMPV6 && kind < 128,
    };
    error.then_some(dst)
}

/// Issue 10 point 13: an ICMP error about a VIP's flow goes to the backend
/// of that flow. Accepted when it goes to a usable backend of a VIP at the
/// error's destination, changing only the MACs.
fn icmp_error_steered_is_right(
    topology: &Topology,
    frame: &Frame<'_>,
    dst: IpAddr,
    output: &[u8],
) -> Result<(), Failure> {
    if frame.dst_mac() != NODE_MAC {
        return Err(wrong(format!(
            "steered an ICMP error addressed to {}, not to the node",
            Mac(frame.dst_mac())
        )));
    }
    only_macs_changed(frame, output)?;
    let to = mac(&output[0..6]);
    let usable = topology
        .vips
        .iter()
        .filter(|v| v.address == dst)
        .any(|v| Topology::usable_macs(v).any(|m| m == to));
    if !usable {
        return Err(wrong(format!(
            "steered an ICMP error for {dst} to {}, no usable backend of a VIP there",
            Mac(to)
        )));
    }
    Ok(())
}

fn arp_reply_is_right(
    frame: &Frame<'_>,
    request: &ArpRequest,
    output: &[u8],
) -> Result<(), Failure> {
    let l3 = frame.l3;
    let mut expected = frame.bytes.to_vec();
    expected[0..6].copy_from_slice(&request.sha);
    expected[6..12].copy_from_slice(&NODE_MAC);
    let arp = &mut expected[l3..l3 + 28];
    arp[6..8].copy_from_slice(&[0, 2]);
    arp[8..14].copy_from_slice(&NODE_MAC);
    arp[14..18].copy_from_slice(&request.tpa.octets());
    arp[18..24].copy_from_slice(&request.sha);
    arp[24..28].copy_from_slice(&request.spa.octets());
    match first_difference(output, &expected) {
        Some(at) => Err(wrong(format!(
            "the ARP reply differs at byte {at} from the expected {}",
            hex(&expected)
        ))),
        None => Ok(()),
    }
}

/// The advertisement must answer `ns` from the VIP to the asker: every
/// field checked, the target link-layer option required when the
/// solicitation went to a multicast address (RFC 4861 §7.2.4).
fn advertisement_is_right(
    frame: &Frame<'_>,
    ns: &NeighbourSolicitation<'_>,
    output: &[u8],
) -> Result<(), Failure> {
    let l3 = frame.l3;
    let at = l3 + 40;
    let Some(ip) = output.get(l3..at) else {
        return Err(wrong("the advertisement is cut short"));
    };
    // An answer to duplicate address detection (from ::) goes to all-nodes
    // and is not solicited (RFC 4861 §7.2.4); any other to the asker.
    let dad = ns.src.is_unspecified();
    let (to_mac, to_ip, flags) = if dad {
        (multicast_mac(ALL_NODES), ALL_NODES, [0x20, 0, 0, 0])
    } else {
        (frame.src_mac(), ns.src, [0x60, 0, 0, 0])
    };
    let problem = if output[0..6] != to_mac {
        Some("not sent to the asker's MAC (all-nodes for duplicate address detection)")
    } else if output[6..12] != NODE_MAC {
        Some("not sent from the node's MAC")
    } else if output[12..l3] != frame.bytes[12..l3] {
        Some("EtherType or 802.1Q tag changed")
    } else if ip[0..4] != frame.bytes[l3..l3 + 4] && ip[0..4] != [0x60, 0, 0, 0] {
        Some("version, traffic class or flow label neither kept nor reset")
    } else if ip[6] != ICMPV6 {
        Some("next header is not ICMPv6")
    } else if ip[7] != 255 {
        Some("hop limit is not 255")
    } else if ipv6(&ip[8..24]) != ns.target {
        Some("IPv6 source is not the target")
    } else if ipv6(&ip[24..40]) != to_ip {
        Some("IPv6 destination is not the asker (all-nodes for duplicate address detection)")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(wrong(format!("advertisement: {problem}")));
    }
    let length = usize::from(be16(&ip[4..6]));
    let Some(na) = output.get(at..at + length).filter(|na| na.len() >= 24) else {
        return Err(wrong(format!(
            "advertisement: payload length {length} is short of a message or past the frame"
        )));
    };
    let problem = if na[0] != 136 || na[1] != 0 {
        Some("not ICMPv6 type 136 code 0")
    } else if na[4..8] != flags {
        Some(
            "flags are not exactly solicited + override (override alone for duplicate address detection)",
        )
    } else if ipv6(&na[8..24]) != ns.target {
        Some("target is not the solicited one")
    } else if icmpv6_checksum(ns.target, to_ip, na) != 0 {
        Some("ICMPv6 checksum is wrong")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(wrong(format!("advertisement: {problem}")));
    }
    let mut target_option = vec![2, 1];
    target_option.extend_from_slice(&NODE_MAC);
    let options = &na[24..];
    if options.is_empty() && ns.dst.is_multicast() {
        let reason = format!(
            "advertisement answering a solicitation to multicast {} has no target link-layer option",
            ns.dst
        );
        return Err(match ns.options.source_link_layer {
            None => known(KnownDefect::AdvertisementWithoutTargetLinkLayer, reason),
            Some(_) => wrong(reason),
        });
    }
    if !options.is_empty() && options != target_option {
        return Err(wrong(format!(
            "advertisement options {} are not one target link-layer option with the node's MAC",
            hex(options)
        )));
    }
    let end = at + length;
    if output.len() == frame.bytes.len() && output[end..] != frame.bytes[end..] {
        return Err(wrong("advertisement: bytes after the IPv6 payload changed"));
    }
    Ok(())
}

fn dropped(topology: &Topology, frame: &Frame<'_>) -> Result<Outcome, Failure> {
    let Some(t) = transport(frame) else {
        return Err(wrong(
            "XDP_DROP of a frame that is not TCP/UDP whole to its ports",
        ));
    };
    if frame.dst_mac() != NODE_MAC {
        return Err(wrong(format!(
            "dropped a frame addressed to {}, not to the node",
            Mac(frame.dst_mac())
        )));
    }
    let Some(vip) = topology.vip(t.dst, t.port, t.protocol) else {
        return Err(not_a_vip(&t, "dropped"));
    };
    if Topology::usable_macs(vip).next().is_some() {
        return Err(wrong(format!(
            "dropped traffic of VIP {}, which has usable backends",
            vip_name(vip)
        )));
    }
    if vip.pass_without_backend {
        return Err(wrong(format!(
            "dropped traffic of VIP {}, whose on_no_backend is \"pass\"",
            vip_name(vip)
        )));
    }
    Ok(Outcome::Dropped)
}
