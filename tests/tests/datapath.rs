//! Table tests of the XDP program through BPF_PROG_TEST_RUN: each case
//! gives a frame and asserts the verdict and the exact bytes that come out.
//! The maps are filled through the agent's own planner and writers.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ha_agent::{
    datapath::{Datapath, monotonic_coarse_ns},
    desired::{Applied, Desired, Write},
    model::{Mac, addr_bytes},
};
use ha_common::{
    BACKEND_F_DRAINING, BACKEND_F_HEALTHY, Backend, FlowKey, FlowValue, GlobalCounter, OwnedLease,
};
use ha_tests::packet::*;
use ha_tests::test_run::{
    self, CLIENT_MAC, CLIENT4, CLIENT6, NODE_MAC, VIP4, VIP6, XDP_DROP, XDP_PASS, XDP_TX,
};

const BACKEND_MACS: [[u8; 6]; 3] = [
    [0x02, 0xbb, 0, 0, 0, 1],
    [0x02, 0xbb, 0, 0, 0, 2],
    [0x02, 0xbb, 0, 0, 0, 3],
];

const CONFIG: &str = r#"
[node]
name = "table"
interface = "lo"

[datapath]
ring_size = 251
max_flows = 4096

[[vip]]
address = "198.18.1.100"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "198.18.0.21"
  [[vip.backend]]
  address = "198.18.0.22"
  [[vip.backend]]
  address = "198.18.0.23"

[[vip]]
address = "198.18.1.100"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "198.18.0.21"

[[vip]]
address = "2001:2:0:1::100"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "2001:2::21"
  [[vip.backend]]
  address = "2001:2::22"

[[vip]]
address = "2001:2:0:1::100"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "2001:2::23"
"#;

/// A datapath loaded (not attached) with the configuration above: backend
/// ids 1-3 (v4 tcp), 4 (v4 udp), 5-6 (v6 tcp), 7 (v6 udp).
struct Table {
    datapath: Datapath,
    applied: Applied,
    desired: Desired,
}

fn backend_macs() -> HashMap<IpAddr, Mac> {
    let mut macs = HashMap::new();
    for (i, mac) in BACKEND_MACS.iter().enumerate() {
        macs.insert(
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 21 + i as u8)),
            Mac(*mac),
        );
        macs.insert(
            IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x21 + i as u16)),
            Mac(*mac),
        );
    }
    macs
}

impl Table {
    fn new() -> Table {
        let loaded = test_run::load(CONFIG, backend_macs(), &[VIP4.into(), VIP6.into()])
            .expect("load the table");
        Table {
            datapath: loaded.datapath,
            applied: loaded.applied,
            desired: loaded.desired,
        }
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.datapath.test_run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn counter(&self, which: GlobalCounter) -> u64 {
        self.datapath.maps().counters().expect("read STATS")[which as usize].packets
    }

    /// Changes one backend's flags (the instant phase of a failover).
    fn set_backend_flags(&mut self, id: u32, flags: u16) {
        let mut backend: Backend = self.desired.backends[&id];
        backend.flags = flags;
        self.desired.backends.insert(id, backend);
        let (writes, next) = self.applied.plan(&self.desired);
        assert_eq!(writes, vec![Write::Backend(id, backend)]);
        self.datapath.apply(&writes).expect("write backend");
        self.applied = next;
    }

    /// One flow's entry in FLOWS.
    fn flow(&self, key: &FlowKey) -> FlowValue {
        self.datapath
            .maps()
            .flow(key)
            .expect("the flow is in FLOWS")
    }

    /// Stages a flow entry, as an earlier config or time left it.
    fn set_flow(&mut self, key: &FlowKey, value: FlowValue) {
        self.datapath.set_flow(key, &value).expect("write FLOWS");
    }
}

/// The FLOWS key of `v4_frame(VIP4, proto, dport, sport, _)`.
fn v4_flow_key(proto: u8, dport: u16, sport: u16) -> FlowKey {
    FlowKey {
        src: addr_bytes(CLIENT4.into()),
        dst: addr_bytes(VIP4.into()),
        sport_be: sport.to_be(),
        dport_be: dport.to_be(),
        proto,
        _pad: [0; 3],
    }
}

/// Asserts XDP_TX by direct server return: only the MACs changed, the new
/// source is ours, and the destination is one of `allowed` backends.
fn assert_dsr(input: &[u8], (verdict, output): (u32, Vec<u8>), allowed: &[[u8; 6]]) -> [u8; 6] {
    assert_eq!(verdict, XDP_TX, "verdict");
    assert_eq!(output.len(), input.len(), "length");
    let dst: [u8; 6] = output[0..6].try_into().unwrap();
    assert!(
        allowed.contains(&dst),
        "destination MAC {dst:02x?} not among {allowed:02x?}"
    );
    assert_eq!(output[6..12], NODE_MAC, "source MAC");
    assert_eq!(
        output[12..],
        input[12..],
        "everything after the MACs is untouched"
    );
    dst
}

fn assert_pass_untouched(input: &[u8], (verdict, output): (u32, Vec<u8>)) {
    assert_eq!(verdict, XDP_PASS, "verdict");
    assert_eq!(output, input, "frame untouched");
}

fn v4_frame(dst: Ipv4Addr, proto: u8, dport: u16, sport: u16, flags: u8) -> Vec<u8> {
    l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT4.into(),
        dst.into(),
        proto,
        sport,
        dport,
        flags,
    )
}

fn v6_frame(dst: Ipv6Addr, proto: u8, dport: u16, sport: u16, flags: u8) -> Vec<u8> {
    l4_frame(
        (NODE_MAC, CLIENT_MAC),
        CLIENT6.into(),
        dst.into(),
        proto,
        sport,
        dport,
        flags,
    )
}

/// A frame whose IPv4 header is given whole (for fragments and IHL cases).
fn v4_raw(ihl: u8, frag: u16, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = ethernet(NODE_MAC, CLIENT_MAC, ETH_IPV4);
    f.extend(ipv4(CLIENT4, VIP4, proto, ihl, frag, l4));
    f
}

#[test]
fn vip_tcp_v4_is_forwarded_to_a_backend() {
    let mut t = Table::new();
    let f = v4_frame(VIP4, TCP, 80, 40000, TCP_SYN);
    assert_dsr(&f, t.run(&f), &BACKEND_MACS);
    assert_eq!(t.counter(GlobalCounter::Tx), 1);
    assert_eq!(t.counter(GlobalCounter::FlowNew), 1);
}

#[test]
fn vip_udp_v4_is_forwarded_to_its_only_backend() {
    let mut t = Table::new();
    let f = v4_frame(VIP4, UDP, 53, 40000, 0);
    assert_dsr(&f, t.run(&f), &[BACKEND_MACS[0]]);
}

#[test]
fn vip_tcp_v6_is_forwarded_to_a_backend() {
    let mut t = Table::new();
    let f = v6_frame(VIP6, TCP, 80, 40000, TCP_SYN);
    assert_dsr(&f, t.run(&f), &BACKEND_MACS[..2]);
}

#[test]
fn vip_udp_v6_is_forwarded_to_its_only_backend() {
    let mut t = Table::new();
    let f = v6_frame(VIP6, UDP, 53, 40000, 0);
    assert_dsr(&f, t.run(&f), &[BACKEND_MACS[2]]);
}

#[test]
fn other_destination_address_passes_untouched() {
    let mut t = Table::new();
    let f = v4_frame(Ipv4Addr::new(198, 18, 1, 101), TCP, 80, 40000, TCP_SYN);
    assert_pass_untouched(&f, t.run(&f));
    let f = v6_frame(
        Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x101),
        TCP,
        80,
        40000,
        TCP_SYN,
    );
    assert_pass_untouched(&f, t.run(&f));
    assert_eq!(t.counter(GlobalCounter::Pass), 2);
    assert_eq!(t.counter(GlobalCounter::Tx), 0);
}

#[test]
fn vip_traffic_for_another_mac_passes_untouched() {
    let mut t = Table::new();
    let mut f = v4_frame(VIP4, TCP, 80, 40000, TCP_SYN);
    f[0..6].copy_from_slice(&BACKEND_MACS[0]);
    assert_pass_untouched(&f, t.run(&f));
    assert_eq!(t.counter(GlobalCounter::Tx), 0);
}

#[test]
fn wrong_port_or_protocol_passes_untouched() {
    let mut t = Table::new();
    let f = v4_frame(VIP4, TCP, 81, 40000, TCP_SYN);
    assert_pass_untouched(&f, t.run(&f));
    // Port 53 is a UDP VIP, not a TCP one.
    let f = v4_frame(VIP4, TCP, 53, 40000, TCP_SYN);
    assert_pass_untouched(&f, t.run(&f));
}

#[test]
fn ipv4_fragments_pass_untouched_and_are_counted() {
    let mut t = Table::new();
    let l4 = tcp(40000, 80, TCP_SYN);
    let more_fragments = v4_raw(5, 0x2000, TCP, &l4);
    assert_pass_untouched(&more_fragments, t.run(&more_fragments));
    let later_fragment = v4_raw(5, 0x0010, TCP, &l4);
    assert_pass_untouched(&later_fragment, t.run(&later_fragment));
    assert_eq!(t.counter(GlobalCounter::Fragment), 2);
}

#[test]
fn ipv6_fragment_and_extension_headers_pass_untouched() {
    let mut t = Table::new();
    let mut fragment = vec![TCP, 0, 0, 0, 0, 0, 0, 1];
    fragment.extend(tcp(40000, 80, TCP_SYN));
    let mut f = ethernet(NODE_MAC, CLIENT_MAC, ETH_IPV6);
    f.extend(ipv6(CLIENT6, VIP6, 44, 64, &fragment));
    assert_pass_untouched(&f, t.run(&f));
    let mut hop_by_hop = vec![TCP, 0, 1, 4, 0, 0, 0, 0];
    hop_by_hop.extend(tcp(40000, 80, TCP_SYN));
    let mut f = ethernet(NODE_MAC, CLIENT_MAC, ETH_IPV6);
    f.extend(ipv6(CLIENT6, VIP6, 0, 64, &hop_by_hop));
    assert_pass_untouched(&f, t.run(&f));
}

#[test]
fn truncated_at_each_header_passes_untouched_as_malformed() {
    let mut t = Table::new();
    let v4 = v4_frame(VIP4, TCP, 80, 40000, TCP_SYN);
    let v4_udp = v4_frame(VIP4, UDP, 53, 40000, 0);
    let v6 = v6_frame(VIP6, TCP, 80, 40000, TCP_SYN);
    let tagged = {
        let mut f = vlan(NODE_MAC, CLIENT_MAC, 7, ETH_IPV4);
        f.extend_from_slice(&v4[14..]);
        f
    };
    let arp = arp_request(CLIENT_MAC, CLIENT4, VIP4);
    // Shorter than an Ethernet header never reaches XDP: the kernel
    // refuses such a test frame outright.
    assert!(t.datapath.test_run(&v4[..13]).is_err());
    let cases: [(&str, &[u8]); 6] = [
        ("vlan tag", &tagged[..17]),
        ("ipv4 header", &v4[..14 + 19]),
        ("tcp header", &v4[..14 + 20 + 19]),
        ("udp header", &v4_udp[..14 + 20 + 7]),
        ("ipv6 header", &v6[..14 + 39]),
        ("arp", &arp[..14 + 27]),
    ];
    for (i, (what, frame)) in cases.iter().enumerate() {
        let (verdict, out) = t.run(frame);
        assert_eq!(verdict, XDP_PASS, "truncated {what}");
        assert_eq!(out, *frame, "truncated {what} untouched");
        assert_eq!(
            t.counter(GlobalCounter::Malformed),
            i as u64 + 1,
            "truncated {what} counted"
        );
    }
}

#[test]
fn bad_ihl_passes_untouched_as_malformed() {
    let mut t = Table::new();
    let mut f = v4_raw(5, 0, TCP, &tcp(40000, 80, TCP_SYN));
    f[14] = 0x44; // IHL 4: shorter than the fixed header
    assert_pass_untouched(&f, t.run(&f));
    assert_eq!(t.counter(GlobalCounter::Malformed), 1);
}

#[test]
fn ipv4_options_are_skipped_to_the_ports() {
    let mut t = Table::new();
    let f = v4_raw(7, 0, TCP, &tcp(40000, 80, TCP_SYN));
    assert_dsr(&f, t.run(&f), &BACKEND_MACS);
}

#[test]
fn vlan_tagged_vip_traffic_keeps_its_tag() {
    let mut t = Table::new();
    let plain = v4_frame(VIP4, TCP, 80, 40000, TCP_SYN);
    let mut f = vlan(NODE_MAC, CLIENT_MAC, 42, ETH_IPV4);
    f.extend_from_slice(&plain[14..]);
    assert_dsr(&f, t.run(&f), &BACKEND_MACS);
}

#[test]
fn non_ip_frames_pass_untouched() {
    let mut t = Table::new();
    let mut f = ethernet([0x01, 0x80, 0xc2, 0, 0, 0x0e], CLIENT_MAC, 0x88cc);
    f.extend_from_slice(&[0u8; 46]);
    assert_pass_untouched(&f, t.run(&f));
    assert_eq!(t.counter(GlobalCounter::Malformed), 0);
}

#[test]
fn arp_request_for_an_owned_vip_is_answered() {
    let mut t = Table::new();
    let f = arp_request(CLIENT_MAC, CLIENT4, VIP4);
    let (verdict, out) = t.run(&f);
    assert_eq!(verdict, XDP_TX);
    let mut expected = ethernet(CLIENT_MAC, NODE_MAC, ETH_ARP);
    expected.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    expected.extend_from_slice(&NODE_MAC);
    expected.extend_from_slice(&VIP4.octets());
    expected.extend_from_slice(&CLIENT_MAC);
    expected.extend_from_slice(&CLIENT4.octets());
    assert_eq!(out, expected);
    assert_eq!(t.counter(GlobalCounter::ArpReply), 1);
}

#[test]
fn arp_for_other_addresses_or_gratuitous_passes_untouched() {
    let mut t = Table::new();
    let f = arp_request(CLIENT_MAC, CLIENT4, Ipv4Addr::new(198, 18, 0, 21));
    assert_pass_untouched(&f, t.run(&f));
    let gratuitous = arp_request(CLIENT_MAC, VIP4, VIP4);
    assert_pass_untouched(&gratuitous, t.run(&gratuitous));
    assert_eq!(t.counter(GlobalCounter::ArpReply), 0);
}

#[test]
fn arp_after_the_lease_ran_out_passes_untouched() {
    let mut t = Table::new();
    t.datapath
        .set_owned(&addr_bytes(VIP4.into()), &OwnedLease { deadline_ns: 1 })
        .unwrap();
    let f = arp_request(CLIENT_MAC, CLIENT4, VIP4);
    assert_pass_untouched(&f, t.run(&f));
}

#[test]
fn neighbour_solicitation_for_an_owned_vip_is_answered() {
    let mut t = Table::new();
    let f = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP6);
    let (verdict, out) = t.run(&f);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out.len(), f.len());
    assert_eq!(out[0..6], CLIENT_MAC, "to the asker");
    assert_eq!(out[6..12], NODE_MAC, "from us");
    let ip = &out[14..54];
    assert_eq!(ip[6], ICMPV6);
    assert_eq!(ip[7], 255, "hop limit");
    assert_eq!(ip[8..24], VIP6.octets(), "source is the VIP");
    assert_eq!(ip[24..40], CLIENT6.octets(), "destination is the asker");
    let na = &out[54..];
    assert_eq!(na[0], 136, "neighbour advertisement");
    assert_eq!(na[4], 0x60, "solicited + override");
    assert_eq!(na[8..24], VIP6.octets(), "target");
    assert_eq!(na[24..26], [2, 1], "target link-layer address option");
    assert_eq!(na[26..32], NODE_MAC);
    assert_eq!(icmpv6_checksum(VIP6, CLIENT6, na), 0, "valid checksum");
    assert_eq!(t.counter(GlobalCounter::NdReply), 1);
}

#[test]
fn neighbour_solicitation_for_another_address_passes_untouched() {
    let mut t = Table::new();
    let f = neighbour_solicitation(
        CLIENT_MAC,
        CLIENT6,
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x21),
    );
    assert_pass_untouched(&f, t.run(&f));
}

/// The IPv4 VIP's address in the IPv4-mapped IPv6 form its keys are
/// stored in.
fn vip4_mapped() -> Ipv6Addr {
    VIP4.to_ipv6_mapped()
}

#[test]
fn ipv6_to_the_v4_mapped_form_of_a_vip_passes_untouched() {
    let mut t = Table::new();
    let tcp = v6_frame(vip4_mapped(), TCP, 80, 40000, TCP_SYN);
    assert_pass_untouched(&tcp, t.run(&tcp));
    let udp = v6_frame(vip4_mapped(), UDP, 53, 40000, 0);
    assert_pass_untouched(&udp, t.run(&udp));
    assert_eq!(t.counter(GlobalCounter::Tx), 0);
}

#[test]
fn neighbour_solicitation_for_the_v4_mapped_form_of_a_vip_passes_untouched() {
    let mut t = Table::new();
    let f = neighbour_solicitation(CLIENT_MAC, CLIENT6, vip4_mapped());
    assert_pass_untouched(&f, t.run(&f));
    assert_eq!(t.counter(GlobalCounter::NdReply), 0);
}

#[test]
fn neighbour_solicitation_with_a_bad_checksum_passes_untouched() {
    let mut t = Table::new();
    let mut f = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP6);
    f[54 + 2] ^= 0x01;
    assert_pass_untouched(&f, t.run(&f));
    assert_eq!(t.counter(GlobalCounter::NdReply), 0);
}

#[test]
fn invalid_neighbour_solicitations_pass_untouched() {
    let mut t = Table::new();
    let valid = neighbour_solicitation(CLIENT_MAC, CLIENT6, VIP6);
    let changed = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut f = valid.clone();
        change(&mut f);
        reseal_icmpv6(&mut f);
        f
    };
    let cases: [(&str, Vec<u8>); 8] = [
        ("hop limit 64", changed(&|f| f[14 + 7] = 64)),
        ("code 1", changed(&|f| f[54 + 1] = 1)),
        (
            "shorter than 24 bytes",
            changed(&|f| f[14 + 4..14 + 6].copy_from_slice(&16u16.to_be_bytes())),
        ),
        ("option of length 0", changed(&|f| f[54 + 25] = 0)),
        (
            "multicast target",
            solicitation_frame(
                (multicast_mac(solicited_node(VIP6)), CLIENT_MAC),
                (CLIENT6, solicited_node(VIP6)),
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                &source_ll_option(CLIENT_MAC),
            ),
        ),
        (
            "from a multicast address",
            changed(&|f| f[14 + 8..14 + 24].copy_from_slice(&solicited_node(CLIENT6).octets())),
        ),
        (
            "from an IPv4-mapped address",
            changed(&|f| f[14 + 8..14 + 24].copy_from_slice(&CLIENT4.to_ipv6_mapped().octets())),
        ),
        (
            "from :: with a source link-layer option",
            solicitation_frame(
                (multicast_mac(solicited_node(VIP6)), CLIENT_MAC),
                (Ipv6Addr::UNSPECIFIED, solicited_node(VIP6)),
                VIP6,
                &source_ll_option(CLIENT_MAC),
            ),
        ),
    ];
    for (what, f) in &cases {
        let (verdict, out) = t.run(f);
        assert_eq!(verdict, XDP_PASS, "{what}");
        assert_eq!(&out, f, "{what}: untouched");
    }
    assert_eq!(t.counter(GlobalCounter::NdReply), 0);
}

/// Asserts a neighbour advertisement for VIP6 with our MAC as its target
/// link-layer address option, from us to `to`.
fn assert_advertisement((verdict, out): (u32, Vec<u8>), to: ([u8; 6], Ipv6Addr), flags: u8) {
    assert_eq!(verdict, XDP_TX, "verdict");
    assert_eq!(out.len(), 14 + 40 + 32, "one message and one option");
    assert_eq!(out[0..6], to.0, "destination MAC");
    assert_eq!(out[6..12], NODE_MAC, "from us");
    let ip = &out[14..54];
    assert_eq!(ip[4..6], [0, 32], "payload length");
    assert_eq!(ip[6], ICMPV6);
    assert_eq!(ip[7], 255, "hop limit");
    assert_eq!(ip[8..24], VIP6.octets(), "source is the VIP");
    assert_eq!(ip[24..40], to.1.octets(), "destination address");
    let na = &out[54..];
    assert_eq!(na[0..2], [136, 0], "neighbour advertisement");
    assert_eq!(na[4..8], [flags, 0, 0, 0], "flags");
    assert_eq!(na[8..24], VIP6.octets(), "target");
    assert_eq!(na[24..26], [2, 1], "target link-layer address option");
    assert_eq!(na[26..32], NODE_MAC);
    assert_eq!(icmpv6_checksum(VIP6, to.1, na), 0, "valid checksum");
}

#[test]
fn multicast_solicitation_without_source_option_gets_our_mac_in_the_answer() {
    let mut t = Table::new();
    let group = solicited_node(VIP6);
    let f = solicitation_frame(
        (multicast_mac(group), CLIENT_MAC),
        (CLIENT6, group),
        VIP6,
        &[],
    );
    assert_advertisement(t.run(&f), (CLIENT_MAC, CLIENT6), 0x60);
    assert_eq!(t.counter(GlobalCounter::NdReply), 1);
}

#[test]
fn unicast_solicitation_is_answered_with_our_mac() {
    let mut t = Table::new();
    let with_option = solicitation_frame(
        (NODE_MAC, CLIENT_MAC),
        (CLIENT6, VIP6),
        VIP6,
        &source_ll_option(CLIENT_MAC),
    );
    assert_advertisement(t.run(&with_option), (CLIENT_MAC, CLIENT6), 0x60);
    let without = solicitation_frame((NODE_MAC, CLIENT_MAC), (CLIENT6, VIP6), VIP6, &[]);
    assert_advertisement(t.run(&without), (CLIENT_MAC, CLIENT6), 0x60);
}

#[test]
fn duplicate_address_detection_is_answered_to_all_nodes() {
    let mut t = Table::new();
    let group = solicited_node(VIP6);
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    // Linux sends a nonce option (RFC 7527) unless enhanced_dad is off.
    let nonce = [14, 1, 1, 2, 3, 4, 5, 6];
    for options in [&[][..], &nonce[..]] {
        let f = solicitation_frame(
            (multicast_mac(group), CLIENT_MAC),
            (Ipv6Addr::UNSPECIFIED, group),
            VIP6,
            options,
        );
        // Not solicited, override: RFC 4861 7.2.4.
        assert_advertisement(t.run(&f), ([0x33, 0x33, 0, 0, 0, 1], all_nodes), 0x20);
    }
    // From :: to another group is not duplicate address detection.
    let f = solicitation_frame(
        (multicast_mac(all_nodes), CLIENT_MAC),
        (Ipv6Addr::UNSPECIFIED, all_nodes),
        VIP6,
        &[],
    );
    assert_pass_untouched(&f, t.run(&f));
}

#[test]
fn requests_from_a_group_or_zero_mac_pass_untouched() {
    let mut t = Table::new();
    for mac in [[0xff; 6], [0x01, 0x00, 0x5e, 0, 0, 1], [0; 6]] {
        let arp = arp_request(mac, CLIENT4, VIP4);
        assert_pass_untouched(&arp, t.run(&arp));
        let ns = neighbour_solicitation(mac, CLIENT6, VIP6);
        assert_pass_untouched(&ns, t.run(&ns));
    }
    assert_eq!(t.counter(GlobalCounter::ArpReply), 0);
    assert_eq!(t.counter(GlobalCounter::NdReply), 0);
}

#[test]
fn a_flow_sticks_to_its_backend() {
    let mut t = Table::new();
    let syn = v4_frame(VIP4, TCP, 80, 41000, TCP_SYN);
    let first = assert_dsr(&syn, t.run(&syn), &BACKEND_MACS);
    for _ in 0..5 {
        let ack = v4_frame(VIP4, TCP, 80, 41000, TCP_ACK);
        assert_eq!(assert_dsr(&ack, t.run(&ack), &BACKEND_MACS), first);
    }
    assert_eq!(t.counter(GlobalCounter::FlowHit), 5);
}

#[test]
fn a_flow_whose_backend_id_now_serves_another_vip_is_placed_again() {
    let mut t = Table::new();
    // VIP4:80/tcp is VIP 1 with backends 1-3; backend 7 serves VIP 4 (the
    // IPv6 UDP one), as after a reload that reused a removed backend's id.
    assert_ne!(t.desired.backends[&7].vip_id, 1);
    let key = v4_flow_key(TCP, 80, 45000);
    let stale = FlowValue {
        backend_id: 7,
        vip_id: 1,
        seen_ns: monotonic_coarse_ns(),
    };
    t.set_flow(&key, stale);
    let ack = v4_frame(VIP4, TCP, 80, 45000, TCP_ACK);
    assert_dsr(&ack, t.run(&ack), &BACKEND_MACS);
    assert_eq!(t.counter(GlobalCounter::FlowHit), 0, "not a hit");
    assert_eq!(t.counter(GlobalCounter::FlowNew), 1, "placed again");
    let placed = t.flow(&key);
    assert!((1..=3).contains(&placed.backend_id), "{placed:?}");
}

#[test]
fn an_idle_udp_flow_is_placed_again_and_a_busy_one_refreshed() {
    let mut t = Table::new();
    // VIP4:53/udp is VIP 2 with backend 4.
    let key = v4_flow_key(UDP, 53, 46000);
    let packet = v4_frame(VIP4, UDP, 53, 46000, 0);
    let seen = |ago_ns: u64| FlowValue {
        backend_id: 4,
        vip_id: 2,
        seen_ns: monotonic_coarse_ns() - ago_ns,
    };
    let second = 1_000_000_000;

    t.set_flow(&key, seen(31 * second));
    let before = monotonic_coarse_ns();
    assert_dsr(&packet, t.run(&packet), &[BACKEND_MACS[0]]);
    assert_eq!(
        t.counter(GlobalCounter::FlowNew),
        1,
        "idle 31 s: placed again"
    );
    assert_eq!(t.counter(GlobalCounter::FlowHit), 0);
    assert!(t.flow(&key).seen_ns >= before, "a new entry");

    t.set_flow(&key, seen(5 * second));
    let before = monotonic_coarse_ns();
    assert_dsr(&packet, t.run(&packet), &[BACKEND_MACS[0]]);
    assert_eq!(t.counter(GlobalCounter::FlowHit), 1, "idle 5 s: a hit");
    assert!(t.flow(&key).seen_ns >= before, "seen again");

    // Seen within the last second: a hit that writes nothing.
    let recent = seen(second / 2);
    t.set_flow(&key, recent);
    assert_dsr(&packet, t.run(&packet), &[BACKEND_MACS[0]]);
    assert_eq!(t.counter(GlobalCounter::FlowHit), 2);
    assert_eq!(t.flow(&key), recent, "not written");
    assert_eq!(t.counter(GlobalCounter::FlowNew), 1);
}

#[test]
fn a_tcp_flow_does_not_age() {
    let mut t = Table::new();
    let syn = v4_frame(VIP4, TCP, 80, 47000, TCP_SYN);
    let first = assert_dsr(&syn, t.run(&syn), &BACKEND_MACS);
    let key = v4_flow_key(TCP, 80, 47000);
    let placed = FlowValue {
        seen_ns: monotonic_coarse_ns() - 3_600_000_000_000,
        ..t.flow(&key)
    };
    t.set_flow(&key, placed);
    let ack = v4_frame(VIP4, TCP, 80, 47000, TCP_ACK);
    assert_eq!(assert_dsr(&ack, t.run(&ack), &BACKEND_MACS), first);
    assert_eq!(t.counter(GlobalCounter::FlowHit), 1);
    assert_eq!(t.flow(&key), placed, "a TCP hit writes nothing");
}

#[test]
fn unhealthy_backend_loses_its_flows_at_once_and_draining_keeps_them() {
    let mut t = Table::new();
    // Flows on every backend.
    let mut by_backend: HashMap<[u8; 6], u16> = HashMap::new();
    for sport in 42000..42100 {
        let syn = v4_frame(VIP4, TCP, 80, sport, TCP_SYN);
        by_backend
            .entry(assert_dsr(&syn, t.run(&syn), &BACKEND_MACS))
            .or_insert(sport);
    }
    assert_eq!(by_backend.len(), 3, "100 flows reach all three backends");
    // Draining backend 1: its flow stays, no new flow goes there.
    t.set_backend_flags(1, BACKEND_F_HEALTHY | BACKEND_F_DRAINING);
    let on_first = by_backend[&BACKEND_MACS[0]];
    let ack = v4_frame(VIP4, TCP, 80, on_first, TCP_ACK);
    assert_eq!(
        assert_dsr(&ack, t.run(&ack), &BACKEND_MACS),
        BACKEND_MACS[0]
    );
    for sport in 43000..43100 {
        let syn = v4_frame(VIP4, TCP, 80, sport, TCP_SYN);
        assert_dsr(&syn, t.run(&syn), &BACKEND_MACS[1..]);
    }
    // Backend 2 fails: its flow moves by the re-probe, before any ring
    // rebuild; flows of backend 3 stay where they are.
    t.set_backend_flags(2, 0);
    let on_second = by_backend[&BACKEND_MACS[1]];
    let ack = v4_frame(VIP4, TCP, 80, on_second, TCP_ACK);
    assert_eq!(
        assert_dsr(&ack, t.run(&ack), &BACKEND_MACS),
        BACKEND_MACS[2]
    );
    let on_third = by_backend[&BACKEND_MACS[2]];
    let ack = v4_frame(VIP4, TCP, 80, on_third, TCP_ACK);
    assert_eq!(
        assert_dsr(&ack, t.run(&ack), &BACKEND_MACS),
        BACKEND_MACS[2]
    );
}

#[test]
fn no_usable_backend_drops_and_counts() {
    let mut t = Table::new();
    t.set_backend_flags(4, 0);
    let f = v4_frame(VIP4, UDP, 53, 40000, 0);
    let (verdict, out) = t.run(&f);
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(out, f);
    assert_eq!(t.counter(GlobalCounter::NoBackend), 1);
    assert_eq!(t.counter(GlobalCounter::Drop), 1);
}

#[test]
fn new_flows_spread_evenly_over_equal_backends() {
    let mut t = Table::new();
    let mut counts: HashMap<[u8; 6], u32> = HashMap::new();
    for sport in 10000..13000 {
        let syn = v4_frame(VIP4, TCP, 80, sport, TCP_SYN);
        *counts
            .entry(assert_dsr(&syn, t.run(&syn), &BACKEND_MACS))
            .or_default() += 1;
    }
    for mac in BACKEND_MACS {
        let n = counts.get(&mac).copied().unwrap_or(0);
        assert!(
            (900..=1100).contains(&n),
            "backend {mac:02x?} got {n} of 3000: {counts:?}"
        );
    }
}

#[test]
fn the_ring_switch_is_one_generation_flip() {
    let mut t = Table::new();
    let before = t.datapath.read_ring(1, 0);
    assert!(before.iter().all(|id| (1..=3).contains(id)));
    // Backend 3 leaves the ring: written into generation 1, then flipped.
    t.desired.vips[0].table = before
        .iter()
        .map(|&id| if id == 3 { 1 } else { id })
        .collect();
    let (writes, _) = t.applied.plan(&t.desired);
    assert!(matches!(
        &writes[0],
        Write::Ring {
            vip_id: 1,
            generation: 1,
            ..
        }
    ));
    assert!(matches!(writes[1], Write::Vip(_, v) if v.ring_gen == 1));
    t.datapath.apply(&writes).unwrap();
    assert_eq!(
        t.datapath.read_ring(1, 0),
        before,
        "the old generation is untouched"
    );
    for sport in 44000..44300 {
        let syn = v4_frame(VIP4, TCP, 80, sport, TCP_SYN);
        assert_dsr(&syn, t.run(&syn), &BACKEND_MACS[..2]);
    }
}
