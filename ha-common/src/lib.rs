//! The contract between the XDP program (`ha-ebpf`) and the agent: map
//! names, key/value layouts and limits, and (in [`proto`]) the protocol
//! numbers of the frames both build. Both sides compile this crate, so a
//! change cannot reach only one of them.
//!
//! Every type is `#[repr(C)]` with explicit padding fields, and its size and
//! alignment are asserted at compile time: the kernel compares key and value
//! sizes byte for byte, and a silent change would make pinned maps from an
//! older agent unusable.
#![no_std]

pub mod proto;

/// Map names as they appear in the object file and under the pin directory.
pub mod map {
    pub const VIPS: &str = "VIPS";
    pub const BACKENDS: &str = "BACKENDS";
    pub const RINGS: &str = "RINGS";
    pub const FLOWS: &str = "FLOWS";
    pub const STATS: &str = "STATS";
    pub const OWNED: &str = "OWNED";
    /// Every map the agent pins, in a fixed order.
    pub const ALL: [&str; 6] = [VIPS, BACKENDS, RINGS, FLOWS, STATS, OWNED];
}

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "ha_xdp";
/// Name of the `.rodata` global holding the Maglev table size.
pub const GLOBAL_RING_SIZE: &str = "RING_SIZE";
/// Name of the `.rodata` global holding the MAC this node answers with.
pub const GLOBAL_NODE_MAC: &str = "NODE_MAC";

/// Upper bound on configured VIPs (a VIP is address + port + protocol).
/// vip_id 0 is never used, so ids run 1..MAX_VIPS.
pub const MAX_VIPS: u32 = 32;
/// Upper bound on backends over all VIPs; backend_id 0 means "unset".
pub const MAX_BACKENDS: u32 = 4096;
/// Default Maglev table size: a prime, as Maglev requires.
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// Largest accepted Maglev table size (keeps RINGS below 2^32 slots).
pub const MAX_RING_SIZE: u32 = 1_048_573;
/// Default capacity of the connection table.
pub const DEFAULT_MAX_FLOWS: u32 = 262_144;
/// How many further ring slots the datapath tries when the first choice is
/// not usable. Bounded so the verifier accepts the loop; with 8 probes a
/// flow finds a healthy backend unless more than ~90% of slots are down.
pub const MAX_PROBES: u32 = 8;
/// Generations per VIP in RINGS: the active one and the one being rebuilt.
pub const RING_GENERATIONS: u32 = 2;

/// Index of a VIP's ring slot in the flat RINGS array.
#[inline(always)]
pub const fn ring_index(vip_id: u32, generation: u32, ring_size: u32, slot: u32) -> u32 {
    (vip_id * RING_GENERATIONS + (generation & 1)) * ring_size + slot
}

/// Number of RINGS entries needed for `MAX_VIPS` VIPs at `ring_size`.
pub const fn rings_len(ring_size: u32) -> u32 {
    MAX_VIPS * RING_GENERATIONS * ring_size
}

/// IP protocol numbers the datapath balances, as `VipKey::proto` and
/// `FlowKey::proto` store them.
pub const PROTO_TCP: u8 = proto::IpProto::Tcp as u8;
pub const PROTO_UDP: u8 = proto::IpProto::Udp as u8;

/// Addresses are stored as 16 bytes; IPv4 as IPv4-mapped IPv6
/// (`::ffff:a.b.c.d`). That range belongs to the IPv4 keys alone: the
/// agent refuses an IPv4-mapped IPv6 VIP, and the datapath passes an IPv6
/// packet to such an address, or a neighbour solicitation for one, without
/// a lookup (see [`is_v4_mapped`]). So no IPv6 frame reaches an IPv4 VIP,
/// its flows or its ownership.
pub type Addr = [u8; 16];

/// Builds the stored form of an IPv4 address.
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> Addr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Whether an address is IPv4-mapped (`::ffff:0:0/96`), the stored form of
/// an IPv4 address; on the wire, in an IPv6 header, it is never valid
/// (RFC 4291 §2.5.5.2).
#[inline(always)]
pub const fn is_v4_mapped(addr: &Addr) -> bool {
    let prefix = u128::from_be_bytes(*addr) >> 32;
    prefix == 0xffff
}

/// VIPS key: one balanced service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: Addr,
    /// Destination port in network byte order, as read from the packet.
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// VIPS value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipValue {
    /// Index into RINGS and the per-VIP STATS slots; 1..MAX_VIPS.
    pub vip_id: u32,
    /// `VIP_F_*` bits.
    pub flags: u32,
    /// Active ring generation (0 or 1); flipped in one map update.
    pub ring_gen: u32,
    pub _pad: u32,
}

/// A VIP with no usable backend hands packets to the local stack instead of
/// dropping them.
pub const VIP_F_NO_BACKEND_PASS: u32 = 1 << 0;

/// BACKENDS value, indexed by backend_id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: Addr,
    pub mac: [u8; 6],
    /// `BACKEND_F_*` bits.
    pub flags: u16,
    pub weight: u32,
    /// The VIP this backend serves: with the VIPS map, it lets a restarted
    /// agent recover the ids an earlier one assigned (see `ha-agent`'s
    /// `ids`), so established flows keep their backend.
    pub vip_id: u32,
}

/// The backend may receive traffic.
pub const BACKEND_F_HEALTHY: u16 = 1 << 0;
/// Existing flows stay, new flows go elsewhere.
pub const BACKEND_F_DRAINING: u16 = 1 << 1;

/// FLOWS key: the 5-tuple as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// FLOWS value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub backend_id: u32,
    pub vip_id: u32,
    /// When the flow was placed (bpf_ktime_get_coarse_ns,
    /// CLOCK_MONOTONIC_COARSE); for UDP also moved forward while packets
    /// come, at most once per `UDP_FLOW_REFRESH_NS`.
    pub seen_ns: u64,
}

/// How long a UDP flow keeps its backend without a packet; then the next
/// packet is placed again, like a new flow. UDP has no end of connection
/// to see, so without it a draining backend would keep a busy client's
/// flow as long as the table does. 30 s, as conntrack's timeout for UDP
/// without replies (`nf_conntrack_udp_timeout`). TCP flows do not age:
/// a SYN starts a new flow anyway, and the table evicts the oldest.
pub const UDP_FLOW_IDLE_NS: u64 = 30_000_000_000;
/// How stale a UDP flow's `seen_ns` may get before a packet writes it:
/// one write per flow and second at most, not one per packet.
pub const UDP_FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// OWNED value, keyed by VIP address: this node answers ARP/NDP for the
/// address until `deadline_ns` (bpf_ktime_get_ns clock). The agent renews
/// the lease; an agent that dies stops claiming the address by itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnedLease {
    pub deadline_ns: u64,
}

/// STATS value (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Global counters: the first slots of STATS.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalCounter {
    /// Handed to the kernel stack untouched (not for a VIP).
    Pass = 0,
    /// Forwarded to a backend with XDP_TX.
    Tx = 1,
    /// Dropped (VIP without a usable backend).
    Drop = 2,
    /// ARP replies sent for owned VIPs.
    ArpReply = 3,
    /// Neighbour advertisements sent for owned VIPs.
    NdReply = 4,
    /// Truncated or malformed headers (also counted in Pass).
    Malformed = 5,
    /// IP fragments (also counted in Pass).
    Fragment = 6,
    /// VIP traffic with no usable backend (also in Drop or Pass).
    NoBackend = 7,
    /// Packets that matched an existing flow.
    FlowHit = 8,
    /// New flows placed through the ring.
    FlowNew = 9,
}

impl GlobalCounter {
    pub const ALL: [GlobalCounter; 10] = [
        Self::Pass,
        Self::Tx,
        Self::Drop,
        Self::ArpReply,
        Self::NdReply,
        Self::Malformed,
        Self::Fragment,
        Self::NoBackend,
        Self::FlowHit,
        Self::FlowNew,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Tx => "tx",
            Self::Drop => "drop",
            Self::ArpReply => "arp_reply",
            Self::NdReply => "nd_reply",
            Self::Malformed => "malformed",
            Self::Fragment => "fragment",
            Self::NoBackend => "no_backend",
            Self::FlowHit => "flow_hit",
            Self::FlowNew => "flow_new",
        }
    }
}

/// Rate limit of the XDP program's log events (a VIP without a usable
/// backend, a lease that ran out): at most this many of each kind per CPU
/// per second reach the agent's log; the program counts the rest and says
/// how many with the next one it sends.
pub const LOG_EVENTS_PER_SECOND: u32 = 5;

/// Slots reserved for global counters at the start of STATS.
pub const GLOBAL_COUNTERS: u32 = 16;
/// STATS slot of a VIP's counter.
#[inline(always)]
pub const fn vip_stats_index(vip_id: u32) -> u32 {
    GLOBAL_COUNTERS + vip_id
}
/// STATS slot of a backend's counter.
#[inline(always)]
pub const fn backend_stats_index(backend_id: u32) -> u32 {
    GLOBAL_COUNTERS + MAX_VIPS + backend_id
}
/// Length of STATS.
pub const STATS_LEN: u32 = GLOBAL_COUNTERS + MAX_VIPS + MAX_BACKENDS;

const _: () = {
    assert!(GlobalCounter::ALL.len() as u32 <= GLOBAL_COUNTERS);
    assert!(size_of::<VipKey>() == 20 && align_of::<VipKey>() == 2);
    assert!(size_of::<VipValue>() == 16 && align_of::<VipValue>() == 4);
    assert!(size_of::<Backend>() == 32 && align_of::<Backend>() == 4);
    assert!(size_of::<FlowKey>() == 40 && align_of::<FlowKey>() == 2);
    assert!(size_of::<FlowValue>() == 16 && align_of::<FlowValue>() == 8);
    assert!(size_of::<OwnedLease>() == 8);
    assert!(size_of::<Counter>() == 16);
    // RINGS must stay addressable with u32 indices.
    assert!(
        (MAX_VIPS as u64) * (RING_GENERATIONS as u64) * (MAX_RING_SIZE as u64) < u32::MAX as u64
    );
};

#[cfg(feature = "user")]
mod pod {
    use super::*;

    /// `aya::Pod` for map types: aya copies them to and from the kernel as
    /// raw bytes.
    macro_rules! pod {
        ($($map_type:ty),+) => {$(
            // SAFETY: the type is #[repr(C)], made only of integers and byte
            // arrays, with every padding byte an explicit field (sizes and
            // alignments asserted above): any bit pattern is a valid value
            // and no byte is uninitialised.
            unsafe impl aya::Pod for $map_type {}
        )+};
    }

    pod!(
        VipKey, VipValue, Backend, FlowKey, FlowValue, OwnedLease, Counter
    );
}
