//! The agent's TOML configuration: schema, defaults and validation.
//!
//! Why this exists: the whole node (datapath sizes, VIPs, backends) comes
//! from one file, and a bad file must change nothing (DESIGN §4). So the
//! file is parsed and fully validated here, before anything is applied, and
//! every error names the file, line, column and field, e.g.
//! `/etc/ha/ha.toml:12:11: vip[1].backend[0].address: IPv6 backend for an
//! IPv4 VIP`.
//!
//! How: serde reads the text into `Raw*` structs whose values are
//! [`toml::Spanned`], so each value still knows where it came from; the
//! checks below then build the clean public [`Config`]. Errors of the TOML
//! parser and of serde carry a byte span too; the field is found by looking
//! the span up in a [`toml_edit`] parse of the same text. The module is pure
//! apart from [`load`], which only reads the file.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_common::{
    DEFAULT_MAX_FLOWS, DEFAULT_RING_SIZE, MAX_BACKENDS, MAX_RING_SIZE, MAX_VIPS, PROTO_TCP,
    PROTO_UDP,
};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::maglev::is_prime;

/// Default root of the pinned maps and link; the agent pins under
/// `<pin_dir>/<node.name>/`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ha";
/// Directory of the default control socket `<dir>/<node.name>.sock`.
pub const DEFAULT_CONTROL_DIR: &str = "/run/ha";
/// Default time between two checks of a backend.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Default time one check may take.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// Default number of consecutive successes that bring a backend up.
pub const DEFAULT_CHECK_RISE: u32 = 2;
/// Default number of consecutive failures that take a backend down.
pub const DEFAULT_CHECK_FALL: u32 = 3;
/// Default path of an http check.
pub const DEFAULT_HTTP_PATH: &str = "/";
/// Default expected status of an http check.
pub const DEFAULT_HTTP_STATUS: u16 = 200;
/// How much of an http response a check reads (status line, headers and
/// body); `expect_body` must be found within it.
pub const MAX_HTTP_RESPONSE: usize = 64 * 1024;
/// Shortest and longest check interval or timeout.
const MIN_CHECK_DURATION: Duration = Duration::from_millis(1);
const MAX_CHECK_DURATION: Duration = Duration::from_secs(3600);
/// Largest rise or fall.
const MAX_RISE_FALL: u32 = 100;
/// Longest `expect_body` or `expect` substring.
const MAX_EXPECT: usize = 1024;
/// Largest udp check payload (an IPv4 UDP datagram's maximum).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// Longest Unix socket path: `sun_path` minus the NUL.
const MAX_SOCKET_PATH: usize = 107;
/// Smallest accepted Maglev table size.
const MIN_RING_SIZE: u32 = 7;
/// Largest accepted connection-table capacity.
const MAX_FLOWS: u32 = 16_777_216;
/// Largest backend weight.
const MAX_WEIGHT: u32 = 65_535;
/// Longest node name (it names the pin directory).
const MAX_NODE_NAME: usize = 32;
/// Longest interface name: the kernel's IFNAMSIZ minus the NUL.
const MAX_INTERFACE_NAME: usize = 15;
/// Longest VIP name (a label in status output and metrics).
const MAX_VIP_NAME: usize = 64;
/// Default UDP port of the heartbeats.
pub const DEFAULT_CLUSTER_PORT: u16 = 5405;
/// Default time between two heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// A peer is down after this many heartbeat intervals without a valid
/// frame, unless `dead_after` says otherwise.
pub const DEFAULT_DEAD_INTERVALS: u32 = 4;
/// `dead_after` must be at least this many intervals: one lost heartbeat
/// must not take a peer down, and quorum counts only peers that answered
/// within the quorum window (`dead_after` less two intervals), which needs
/// a round trip.
pub const MIN_DEAD_INTERVALS: u32 = 3;
/// Default priority of a node in the election.
pub const DEFAULT_PRIORITY: u8 = 100;
/// Default time the fence command may take.
pub const DEFAULT_FENCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of gratuitous ARPs / unsolicited NAs per VIP taken.
pub const DEFAULT_ANNOUNCE_COUNT: u32 = 3;
/// Default time between two announcements of a burst.
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);
/// Default time a notify hook may take.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Most nodes in a cluster, this one included.
pub const MAX_CLUSTER_NODES: usize = 16;
/// Shortest and longest heartbeat interval.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(5);
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Longest time between two announcements of a burst.
const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);
/// Largest announcement burst.
const MAX_ANNOUNCE_COUNT: u32 = 50;
/// Version of the encoding [`digest`] hashes; bump it when the encoding
/// changes, so that nodes of different versions see that they differ.
const DIGEST_ENCODING: u32 = 1;

// A default ring is always larger than any VIP's backend count, so only an
// explicit `ring_size` needs checking against the backends.
const _: () = assert!(DEFAULT_RING_SIZE >= MAX_BACKENDS);

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub node: NodeConfig,
    pub datapath: DatapathConfig,
    pub vips: Vec<VipConfig>,
    /// `None`: a single node that owns every VIP.
    pub cluster: Option<ClusterConfig>,
    /// The VIP groups (the VIPs that move together), named, in order of
    /// first appearance in the file; [`VipConfig::group`] indexes this, and
    /// so do the claims in heartbeats.
    pub groups: Vec<String>,
    /// `None`: no metrics endpoint.
    pub metrics: Option<MetricsConfig>,
}

/// `[node]`: this load-balancer node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// Node name; also the name of its pin directory.
    pub name: String,
    /// The interface the XDP program attaches to.
    pub interface: String,
    /// MAC the node answers ARP/NDP with; `None`: the interface's own.
    #[serde(serialize_with = "serialize_mac")]
    pub mac: Option<[u8; 6]>,
    /// The control socket `hactl` talks to (absolute); default
    /// `/run/ha/<name>.sock`.
    pub control_socket: PathBuf,
}

/// `[datapath]`: sizes of the BPF maps and where they are pinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatapathConfig {
    /// Maglev table size (prime).
    pub ring_size: u32,
    /// Capacity of the connection table.
    pub max_flows: u32,
    /// Root of the pinned state (absolute).
    pub pin_dir: PathBuf,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            ring_size: DEFAULT_RING_SIZE,
            max_flows: DEFAULT_MAX_FLOWS,
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
        }
    }
}

/// `[[vip]]`: one balanced service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipConfig {
    /// Unique name; defaults to `<address>:<port>/<protocol>` (IPv6 in
    /// brackets).
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// In file order; at least one.
    pub backends: Vec<BackendConfig>,
    /// What happens to traffic for the VIP when no backend can take it.
    pub on_no_backend: NoBackend,
    /// The health check of every backend of this VIP: `[health]` merged
    /// with `[vip.check]`, validated.
    pub check: CheckConfig,
    /// Index into [`Config::groups`]: the VIPs of a group have one owner
    /// and move together. Default: a group of its own, named after the VIP.
    pub group: usize,
}

/// `on_no_backend`: the fate of a VIP's packets when none of its backends
/// is healthy (counted either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoBackend {
    /// Drop them (default).
    Drop,
    /// Hand them to the local network stack (XDP_PASS).
    Pass,
}

/// The health check of a VIP's backends. Checks go to each backend's own
/// address and `port`, never to the VIP.
///
/// Serialized like the config file: the kind's fields flattened next to a
/// `type` tag, and durations as strings (`"500ms"`, `"1s"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckConfig {
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Port on the backend; default the VIP's port.
    pub port: u16,
    /// Time between the starts of two checks (1ms..=1h).
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// Time one check may take; at most `interval`.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up (1..=100).
    pub rise: u32,
    /// Consecutive failures that take an up backend down (1..=100).
    pub fall: u32,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CheckKind {
    /// No check: the backend always counts as up.
    None,
    /// A TCP connection is accepted.
    Tcp,
    /// `GET path` answers with `expect_status` (and a body containing
    /// `expect_body`, if set).
    Http {
        /// Starts with `/`.
        path: String,
        /// The Host header; `None`: the backend's address (and port).
        host: Option<String>,
        expect_status: u16,
        expect_body: Option<String>,
    },
    /// `send` gets a reply datagram (containing `expect`, if set).
    Udp {
        send: String,
        expect: Option<String>,
    },
    /// The command (absolute path, then arguments) exits with status 0.
    Exec { command: Vec<String> },
}

impl CheckKind {
    /// The `type` this kind is written as.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::None => "none",
            CheckKind::Tcp => "tcp",
            CheckKind::Http { .. } => "http",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Exec { .. } => "exec",
        }
    }
}

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number the datapath matches.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// `[[vip.backend]]`: a real server behind a VIP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendConfig {
    /// Same address family as the VIP.
    pub address: IpAddr,
    /// 0..=65535; 0 = drained (no new flows).
    pub weight: u32,
    /// Static MAC; `None`: learned from the neighbour table.
    #[serde(serialize_with = "serialize_mac")]
    pub mac: Option<[u8; 6]>,
}

/// `[cluster]`: the load-balancer nodes that share the VIPs, and how this
/// one takes part (DESIGN §3).
///
/// Serialized like the config file, durations as strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// Identifies the cluster in heartbeats; 1 or more.
    pub id: u64,
    /// The shared heartbeat key (absolute; read at start-up).
    pub key_file: PathBuf,
    /// UDP port heartbeats are sent to and received on.
    pub port: u16,
    /// Time between two heartbeats (5ms..=10s).
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// A peer is down after this long without a valid heartbeat; at least
    /// twice `interval`.
    #[serde(serialize_with = "serialize_duration")]
    pub dead_after: Duration,
    /// This node's priority in the election (higher wins).
    pub priority: u8,
    /// Take a group back from a lower-priority owner.
    pub preempt: bool,
    /// ... only after having been eligible this long.
    #[serde(serialize_with = "serialize_duration")]
    pub preempt_delay: Duration,
    pub quorum: QuorumConfig,
    /// Two-node clusters only: the lone survivor takes VIPs only while this
    /// address answers.
    pub tie_breaker: Option<IpAddr>,
    pub fencing: FencingConfig,
    /// Absolute path and arguments; `Some` exactly when fencing is required.
    pub fence_command: Option<Vec<String>>,
    /// Time the fence command may take (only meaningful with fencing).
    #[serde(serialize_with = "serialize_duration")]
    pub fence_timeout: Duration,
    /// Gratuitous ARPs / unsolicited NAs sent per VIP when taking it.
    pub announce_count: u32,
    /// Time between two announcements of a burst.
    #[serde(serialize_with = "serialize_duration")]
    pub announce_interval: Duration,
    /// Hook run on becoming owner of a group (absolute path, arguments).
    pub on_owner: Option<Vec<String>>,
    /// Hook run on losing a group.
    pub on_standby: Option<Vec<String>>,
    /// Hook run on a fault.
    pub on_fault: Option<Vec<String>>,
    /// Time one hook may take.
    #[serde(serialize_with = "serialize_duration")]
    pub hook_timeout: Duration,
    /// Every node, this one included, in file order; unique names and
    /// addresses.
    pub nodes: Vec<ClusterNode>,
    /// Checks of local services: this node may own VIPs only while all
    /// pass (`[[cluster.track]]`).
    pub tracks: Vec<TrackConfig>,
}

/// `[[cluster.track]]`: a check this node's eligibility depends on, e.g.
/// the local service the VIPs front.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackConfig {
    /// Where to check (loopback allowed: it is a local service).
    pub address: IpAddr,
    pub check: CheckConfig,
}

/// `[[cluster.node]]`: one node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterNode {
    /// Its `[node] name`.
    pub name: String,
    /// Where its heartbeats are sent.
    pub address: IpAddr,
}

/// `[metrics]`: the Prometheus endpoint (see [`crate::metrics`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    /// Where the HTTP server listens, e.g. `127.0.0.1:9810`; never port 0
    /// (a scraper needs to know it).
    pub listen: SocketAddr,
}

/// `quorum`: when a node may own VIPs, so that a partition never leaves two
/// owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuorumConfig {
    /// While it sees more than half of the configured nodes, itself
    /// included (default).
    Majority,
    /// Two-node clusters: the survivor of the two may own VIPs alone (with
    /// a `tie_breaker`, only while that answers).
    TwoNode,
}

impl QuorumConfig {
    /// How it is written in the file.
    pub fn name(self) -> &'static str {
        match self {
            QuorumConfig::Majority => "majority",
            QuorumConfig::TwoNode => "two_node",
        }
    }
}

/// `fencing`: whether a peer that vanished without LEAVING must be fenced
/// before its VIPs are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FencingConfig {
    /// No fencing (default).
    None,
    /// `fence_command` must succeed first.
    Required,
}

impl FencingConfig {
    /// How it is written in the file.
    pub fn name(self) -> &'static str {
        match self {
            FencingConfig::None => "none",
            FencingConfig::Required => "required",
        }
    }
}

/// A configuration error at a position in a file.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {field}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path such as `vip[1].backend[0].address`; `(file)` when the
    /// file cannot be read, `(document)` when no field applies.
    pub field: String,
    pub message: String,
}

/// Reads and validates the configuration file `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_owned(),
        line: 1,
        column: 1,
        field: "(file)".to_owned(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse(file, &text)
}

/// Parses and validates `text`; `file` only appears in errors.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source { file, text };
    let document = toml_edit::ImDocument::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        source.error(offset, syntax_field(text, offset), clean(e.message()))
    })?;
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (offset, field) = serde_field(&document, e.span(), e.message());
        source.error(offset, field, clean(e.message()))
    })?;
    source.validate(raw)
}

/// SHA-256 of what every node of a cluster must agree on: the VIPs (name,
/// address, port, protocol, group, `on_no_backend`, check) with their
/// backends (address, weight), the groups in order, the ring size, and the
/// cluster's id and nodes. Node-local settings ([node], `pin_dir`,
/// `max_flows`, priority, key file, hooks, timing) are left out, so two
/// nodes' files that differ only there have the same digest. Heartbeats
/// carry it; nodes whose digests differ take no VIP.
///
/// The encoding is the JSON of a dedicated struct whose fields are in a
/// fixed order; VIPs are sorted by name, backends by address (the Maglev
/// table does not depend on their order) and nodes by name. The groups
/// keep their order: heartbeats name groups by their index.
pub fn digest(config: &Config) -> [u8; 32] {
    #[derive(Serialize)]
    struct Shared<'a> {
        encoding: u32,
        ring_size: u32,
        groups: &'a [String],
        vips: Vec<SharedVip<'a>>,
        cluster: Option<SharedCluster<'a>>,
    }
    #[derive(Serialize)]
    struct SharedVip<'a> {
        name: &'a str,
        address: IpAddr,
        port: u16,
        protocol: Protocol,
        group: &'a str,
        on_no_backend: NoBackend,
        check: &'a CheckConfig,
        backends: Vec<SharedBackend>,
    }
    #[derive(Serialize)]
    struct SharedBackend {
        address: IpAddr,
        weight: u32,
    }
    #[derive(Serialize)]
    struct SharedCluster<'a> {
        id: u64,
        nodes: Vec<&'a ClusterNode>,
    }

    let mut vips: Vec<SharedVip<'_>> = config
        .vips
        .iter()
        .map(|vip| {
            let mut backends: Vec<SharedBackend> = vip
                .backends
                .iter()
                .map(|b| SharedBackend {
                    address: b.address,
                    weight: b.weight,
                })
                .collect();
            backends.sort_by_key(|b| b.address);
            SharedVip {
                name: &vip.name,
                address: vip.address,
                port: vip.port,
                protocol: vip.protocol,
                group: &config.groups[vip.group],
                on_no_backend: vip.on_no_backend,
                check: &vip.check,
                backends,
            }
        })
        .collect();
    vips.sort_by(|a, b| a.name.cmp(b.name));
    let cluster = config.cluster.as_ref().map(|cluster| {
        let mut nodes: Vec<&ClusterNode> = cluster.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        SharedCluster {
            id: cluster.id,
            nodes,
        }
    });
    let shared = Shared {
        encoding: DIGEST_ENCODING,
        ring_size: config.datapath.ring_size,
        groups: &config.groups,
        vips,
        cluster,
    };
    let encoded = serde_json::to_vec(&shared).expect("the digest's input serializes to JSON");
    Sha256::digest(encoded).into()
}

// ---------------------------------------------------------------------------
// What serde reads. Every value the checks may complain about is Spanned.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    datapath: Option<RawDatapath>,
    health: Option<RawCheck>,
    #[serde(default)]
    vip: Vec<Spanned<RawVip>>,
    cluster: Option<Spanned<RawCluster>>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    interface: Spanned<String>,
    mac: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    ring_size: Option<Spanned<u32>>,
    max_flows: Option<Spanned<u32>>,
    pin_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    name: Option<Spanned<String>>,
    address: Spanned<String>,
    port: Spanned<u16>,
    protocol: Protocol,
    #[serde(default)]
    backend: Vec<RawBackend>,
    on_no_backend: Option<NoBackend>,
    check: Option<RawCheck>,
    group: Option<Spanned<String>>,
}

/// A command: an absolute path, then arguments.
type RawCommand = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    id: Spanned<u64>,
    key_file: Spanned<String>,
    port: Option<Spanned<u16>>,
    interval: Option<Spanned<String>>,
    dead_after: Option<Spanned<String>>,
    priority: Option<u8>,
    preempt: Option<bool>,
    preempt_delay: Option<Spanned<String>>,
    quorum: Option<Spanned<QuorumConfig>>,
    tie_breaker: Option<Spanned<String>>,
    fencing: Option<Spanned<FencingConfig>>,
    fence_command: Option<RawCommand>,
    fence_timeout: Option<Spanned<String>>,
    announce_count: Option<Spanned<u32>>,
    announce_interval: Option<Spanned<String>>,
    on_owner: Option<RawCommand>,
    on_standby: Option<RawCommand>,
    on_fault: Option<RawCommand>,
    hook_timeout: Option<Spanned<String>>,
    #[serde(default)]
    node: Vec<Spanned<RawClusterNode>>,
    #[serde(default)]
    track: Vec<RawTrack>,
}

/// `[[cluster.track]]`: a local service this node's eligibility depends on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    address: Spanned<String>,
    check: RawCheck,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterNode {
    name: Spanned<String>,
    address: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

/// `[health]` and `[vip.check]`: the same shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: Option<Spanned<CheckType>>,
    port: Option<Spanned<u16>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    expect_status: Option<Spanned<u16>>,
    expect_body: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    command: Option<RawCommand>,
}

/// A check's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CheckType {
    Tcp,
    Http,
    Udp,
    Exec,
    None,
}

impl CheckType {
    fn name(self) -> &'static str {
        match self {
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Udp => "udp",
            CheckType::Exec => "exec",
            CheckType::None => "none",
        }
    }
}

/// A value of a check table after its own validation, with where it was
/// written: its offset and dotted field name.
#[derive(Clone)]
struct Written<T> {
    value: T,
    offset: usize,
    field: String,
}

/// A check table's fields, each validated on its own; `None` where not
/// written.
#[derive(Clone, Default)]
struct CheckFields {
    kind: Option<Written<CheckType>>,
    port: Option<Written<u16>>,
    interval: Option<Written<Duration>>,
    timeout: Option<Written<Duration>>,
    rise: Option<Written<u32>>,
    fall: Option<Written<u32>>,
    path: Option<Written<String>>,
    host: Option<Written<String>>,
    expect_status: Option<Written<u16>>,
    expect_body: Option<Written<String>>,
    send: Option<Written<String>>,
    expect: Option<Written<String>>,
    command: Option<Written<Vec<String>>>,
}

impl CheckFields {
    /// The type, `tcp` when not written.
    fn check_type(&self) -> CheckType {
        self.kind.as_ref().map_or(CheckType::Tcp, |k| k.value)
    }

    /// These fields as defaults, overridden field by field by `local`.
    /// Type-specific fields (`path`, `send`, `command`, ...) are only
    /// inherited when the result has the type they were written for.
    fn merged(&self, local: CheckFields) -> CheckFields {
        fn or<T: Clone>(
            local: Option<Written<T>>,
            global: &Option<Written<T>>,
        ) -> Option<Written<T>> {
            local.or_else(|| global.clone())
        }
        let kind = or(local.kind, &self.kind);
        let same_type = kind.as_ref().map_or(CheckType::Tcp, |k| k.value) == self.check_type();
        let specific = |local: Option<Written<String>>, global: &Option<Written<String>>| {
            if same_type { or(local, global) } else { local }
        };
        CheckFields {
            kind,
            port: or(local.port, &self.port),
            interval: or(local.interval, &self.interval),
            timeout: or(local.timeout, &self.timeout),
            rise: or(local.rise, &self.rise),
            fall: or(local.fall, &self.fall),
            path: specific(local.path, &self.path),
            host: specific(local.host, &self.host),
            expect_status: if same_type {
                or(local.expect_status, &self.expect_status)
            } else {
                local.expect_status
            },
            expect_body: specific(local.expect_body, &self.expect_body),
            send: specific(local.send, &self.send),
            expect: specific(local.expect, &self.expect),
            command: if same_type {
                or(local.command, &self.command)
            } else {
                local.command
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
    mac: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Validation.

/// The text being parsed, for turning byte offsets into errors.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the value `at`.
    fn at<T>(
        &self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(at.span().start, field, message)
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let node = self.node(raw.node)?;
        let (datapath, explicit_ring_size) = self.datapath(raw.datapath)?;
        // [health] is validated on its own (values, and fields that belong
        // to its type); what depends on the merge with [vip.check] is
        // validated per VIP.
        let health = match &raw.health {
            Some(health) => {
                let fields = self.check_fields(health, "health")?;
                self.check_applies(&fields)?;
                fields
            }
            None => CheckFields::default(),
        };
        if raw.vip.is_empty() {
            return Err(self.error(0, "vip", "at least one [[vip]] is required"));
        }

        let mut vips: Vec<VipConfig> = Vec::with_capacity(raw.vip.len());
        // (address, port, protocol) and name -> index of the first VIP.
        let mut services: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<String> = Vec::new();
        let mut total_backends = 0;
        for (v, raw_vip) in raw.vip.iter().enumerate() {
            let path = format!("vip[{v}]");
            if v >= MAX_VIPS as usize - 1 {
                return Err(self.at(
                    raw_vip,
                    &path,
                    format!("at most {} VIPs are supported", MAX_VIPS - 1),
                ));
            }
            let vip = self.vip(raw_vip, &path, &health, &mut total_backends, &mut groups)?;
            let raw_vip = raw_vip.get_ref();
            if let Some(first) = services.insert((vip.address, vip.port, vip.protocol), v) {
                return Err(self.at(
                    &raw_vip.address,
                    format!("{path}.address"),
                    format!(
                        "duplicate VIP {}/{} (also vip[{first}])",
                        SocketAddr::new(vip.address, vip.port),
                        vip.protocol
                    ),
                ));
            }
            if let Some(first) = names.insert(vip.name.clone(), v) {
                // Point at the name, or at the address it was made from.
                let message = format!("duplicate VIP name `{}` (also vip[{first}])", vip.name);
                return Err(match &raw_vip.name {
                    Some(name) => self.at(name, format!("{path}.name"), message),
                    None => self.at(&raw_vip.address, format!("{path}.address"), message),
                });
            }
            vips.push(vip);
        }

        if let Some(ring_size) = explicit_ring_size {
            let too_small = vips
                .iter()
                .enumerate()
                .find(|(_, vip)| vip.backends.len() >= datapath.ring_size as usize);
            if let Some((v, vip)) = too_small {
                return Err(self.at(
                    &ring_size,
                    "datapath.ring_size",
                    format!(
                        "must be larger than the {} backends of vip[{v}] `{}`",
                        vip.backends.len(),
                        vip.name
                    ),
                ));
            }
        }
        let cluster = match &raw.cluster {
            Some(cluster) => Some(self.cluster(cluster, &node, &vips)?),
            None => None,
        };
        let metrics = match &raw.metrics {
            Some(metrics) => Some(self.metrics(metrics)?),
            None => None,
        };
        Ok(Config {
            node,
            datapath,
            vips,
            cluster,
            groups,
            metrics,
        })
    }

    /// `[metrics]`: a socket address the HTTP server can listen on.
    fn metrics(&self, raw: &RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let text = raw.listen.get_ref();
        let listen: SocketAddr = text.parse().map_err(|_| {
            self.at(
                &raw.listen,
                "metrics.listen",
                format!(
                    "`{text}` is not a socket address (an IP address and a port, e.g. 127.0.0.1:9810 or [::1]:9810)"
                ),
            )
        })?;
        let problem = match listen.ip() {
            _ if listen.port() == 0 => Some("port 0 is not allowed: a scraper needs a fixed port"),
            IpAddr::V4(a) if a.is_broadcast() => {
                Some("the broadcast address cannot be listened on")
            }
            a if a.is_multicast() => Some("a multicast address cannot be listened on"),
            _ => None,
        };
        match problem {
            Some(problem) => Err(self.at(
                &raw.listen,
                "metrics.listen",
                format!("{listen}: {problem}"),
            )),
            None => Ok(MetricsConfig { listen }),
        }
    }

    /// One `[[vip]]` on its own, with the check defaults of `[health]`;
    /// `total_backends` counts backends over all VIPs so far, and `groups`
    /// collects the group names in order of first appearance.
    fn vip(
        &self,
        spanned: &Spanned<RawVip>,
        path: &str,
        health: &CheckFields,
        total_backends: &mut usize,
        groups: &mut Vec<String>,
    ) -> Result<VipConfig, ConfigError> {
        let raw = spanned.get_ref();
        let address = self.address(&raw.address, &format!("{path}.address"))?;
        let port = *raw.port.get_ref();
        if port == 0 {
            return Err(self.at(&raw.port, format!("{path}.port"), "must be 1..=65535"));
        }
        let name = match &raw.name {
            Some(name) => {
                check_vip_name(name.get_ref())
                    .map_err(|m| self.at(name, format!("{path}.name"), m))?;
                name.get_ref().clone()
            }
            None => format!("{}/{}", SocketAddr::new(address, port), raw.protocol),
        };
        if raw.backend.is_empty() {
            return Err(self.at(
                spanned,
                format!("{path}.backend"),
                "a VIP needs at least one [[vip.backend]]",
            ));
        }

        let mut backends: Vec<BackendConfig> = Vec::with_capacity(raw.backend.len());
        // Backend address -> index of its first occurrence.
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (b, raw_backend) in raw.backend.iter().enumerate() {
            let backend_path = format!("{path}.backend[{b}]");
            let address_field = format!("{backend_path}.address");
            *total_backends += 1;
            if *total_backends > MAX_BACKENDS as usize - 1 {
                return Err(self.at(
                    &raw_backend.address,
                    address_field,
                    format!(
                        "at most {} backends are supported over all VIPs",
                        MAX_BACKENDS - 1
                    ),
                ));
            }
            let backend = self.backend(raw_backend, &backend_path)?;
            if backend.address.is_ipv4() != address.is_ipv4() {
                return Err(self.at(
                    &raw_backend.address,
                    address_field,
                    format!(
                        "{} backend for an {} VIP",
                        family(backend.address),
                        family(address)
                    ),
                ));
            }
            if let Some(first) = seen.insert(backend.address, b) {
                return Err(self.at(
                    &raw_backend.address,
                    address_field,
                    format!(
                        "duplicate backend {} (also {path}.backend[{first}])",
                        backend.address
                    ),
                ));
            }
            backends.push(backend);
        }
        let local = match &raw.check {
            Some(check) => self.check_fields(check, &format!("{path}.check"))?,
            None => CheckFields::default(),
        };
        let check = self.check(health.merged(local), port, path)?;
        let group_name = match &raw.group {
            Some(group) => {
                check_vip_name(group.get_ref())
                    .map_err(|m| self.at(group, format!("{path}.group"), m))?;
                group.get_ref()
            }
            None => &name,
        };
        let group = match groups.iter().position(|g| g == group_name) {
            Some(group) => group,
            None => {
                groups.push(group_name.clone());
                groups.len() - 1
            }
        };
        Ok(VipConfig {
            name,
            address,
            port,
            protocol: raw.protocol,
            backends,
            on_no_backend: raw.on_no_backend.unwrap_or(NoBackend::Drop),
            check,
            group,
        })
    }

    /// The fields of a `[health]` or `[vip.check]` table (`section`), each
    /// validated on its own.
    fn check_fields(&self, raw: &RawCheck, section: &str) -> Result<CheckFields, ConfigError> {
        let field = |name: &str| format!("{section}.{name}");
        let written = |at: Range<usize>, name: &str| (at.start, field(name));
        let mut fields = CheckFields::default();
        if let Some(kind) = &raw.kind {
            fields.kind = Some(Written::new(*kind.get_ref(), written(kind.span(), "type")));
        }
        if let Some(port) = &raw.port {
            if *port.get_ref() == 0 {
                return Err(self.at(port, field("port"), "must be 1..=65535"));
            }
            fields.port = Some(Written::new(*port.get_ref(), written(port.span(), "port")));
        }
        for (raw, name, out) in [
            (&raw.interval, "interval", &mut fields.interval),
            (&raw.timeout, "timeout", &mut fields.timeout),
        ] {
            if let Some(raw) = raw {
                let value = self.duration(raw, &field(name))?;
                *out = Some(Written::new(value, written(raw.span(), name)));
            }
        }
        for (raw, name, out) in [
            (&raw.rise, "rise", &mut fields.rise),
            (&raw.fall, "fall", &mut fields.fall),
        ] {
            if let Some(raw) = raw {
                if !(1..=MAX_RISE_FALL).contains(raw.get_ref()) {
                    return Err(self.at(raw, field(name), format!("must be 1..={MAX_RISE_FALL}")));
                }
                *out = Some(Written::new(*raw.get_ref(), written(raw.span(), name)));
            }
        }
        if let Some(path) = &raw.path {
            let text = path.get_ref();
            if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.at(
                    path,
                    field("path"),
                    "must start with `/` and have no whitespace or control characters (percent-encode them)",
                ));
            }
            fields.path = Some(Written::new(text.clone(), written(path.span(), "path")));
        }
        if let Some(host) = &raw.host {
            let text = host.get_ref();
            if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.at(
                    host,
                    field("host"),
                    "must be a host name or address without whitespace or control characters",
                ));
            }
            fields.host = Some(Written::new(text.clone(), written(host.span(), "host")));
        }
        if let Some(status) = &raw.expect_status {
            if !(100..=599).contains(status.get_ref()) {
                return Err(self.at(status, field("expect_status"), "must be 100..=599"));
            }
            fields.expect_status = Some(Written::new(
                *status.get_ref(),
                written(status.span(), "expect_status"),
            ));
        }
        // An empty substring would match anything: leave it out instead.
        for (raw, name, out) in [
            (&raw.expect_body, "expect_body", &mut fields.expect_body),
            (&raw.expect, "expect", &mut fields.expect),
        ] {
            if let Some(raw) = raw {
                let text = raw.get_ref();
                if text.is_empty() || text.len() > MAX_EXPECT {
                    return Err(self.at(
                        raw,
                        field(name),
                        format!(
                            "must be 1..={MAX_EXPECT} bytes (leave it out to accept any answer)"
                        ),
                    ));
                }
                *out = Some(Written::new(text.clone(), written(raw.span(), name)));
            }
        }
        if let Some(send) = &raw.send {
            if send.get_ref().len() > MAX_UDP_PAYLOAD {
                return Err(self.at(
                    send,
                    field("send"),
                    format!("must be at most {MAX_UDP_PAYLOAD} bytes (one datagram)"),
                ));
            }
            fields.send = Some(Written::new(
                send.get_ref().clone(),
                written(send.span(), "send"),
            ));
        }
        if let Some(command) = &raw.command {
            fields.command = Some(Written::new(
                self.command(command, &field("command"))?,
                written(command.span(), "command"),
            ));
        }
        Ok(fields)
    }

    /// A command to run: an absolute path, then arguments (no shell).
    fn command(&self, raw: &RawCommand, field: &str) -> Result<Vec<String>, ConfigError> {
        let words = raw.get_ref();
        let Some(program) = words.first() else {
            return Err(self.at(
                raw,
                field,
                "must name a program (an absolute path) and its arguments",
            ));
        };
        if !Path::new(program.get_ref()).is_absolute() {
            return Err(self.at(
                program,
                format!("{field}[0]"),
                format!(
                    "`{}` must be an absolute path (commands run without a shell or PATH)",
                    program.get_ref()
                ),
            ));
        }
        if let Some((i, word)) = words
            .iter()
            .enumerate()
            .find(|(_, w)| w.get_ref().contains('\0'))
        {
            return Err(self.at(word, format!("{field}[{i}]"), "must not contain NUL"));
        }
        Ok(words.iter().map(|w| w.get_ref().clone()).collect())
    }

    /// Rejects fields that do not belong to the check's type.
    fn check_applies(&self, fields: &CheckFields) -> Result<(), ConfigError> {
        fn at<T>(w: &Option<Written<T>>) -> Option<(usize, &str)> {
            w.as_ref().map(|w| (w.offset, w.field.as_str()))
        }
        let check_type = fields.check_type();
        let specific = [
            ("path", CheckType::Http, at(&fields.path)),
            ("host", CheckType::Http, at(&fields.host)),
            ("expect_status", CheckType::Http, at(&fields.expect_status)),
            ("expect_body", CheckType::Http, at(&fields.expect_body)),
            ("send", CheckType::Udp, at(&fields.send)),
            ("expect", CheckType::Udp, at(&fields.expect)),
            ("command", CheckType::Exec, at(&fields.command)),
        ];
        for (name, owner, written) in specific {
            if let (Some((offset, field)), true) = (written, owner != check_type) {
                let of = match &fields.kind {
                    Some(kind) => format!("{} ({})", kind.value.name(), kind.field),
                    None => "tcp (the default)".to_owned(),
                };
                return Err(self.error(
                    offset,
                    field,
                    format!(
                        "`{name}` only applies to {} checks; this check's type is {of}",
                        owner.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The check of the VIP at `vip_path` from its merged fields.
    fn check(
        &self,
        fields: CheckFields,
        vip_port: u16,
        vip_path: &str,
    ) -> Result<CheckConfig, ConfigError> {
        self.check_applies(&fields)?;
        // Where the problem is not written in this VIP, say which VIP has it.
        let for_vip = |field: &str| {
            if field.starts_with(&format!("{vip_path}.")) {
                String::new()
            } else {
                format!(" (for {vip_path})")
            }
        };
        let interval = fields
            .interval
            .as_ref()
            .map_or(DEFAULT_CHECK_INTERVAL, |w| w.value);
        let timeout = fields
            .timeout
            .as_ref()
            .map_or(DEFAULT_CHECK_TIMEOUT, |w| w.value);
        if timeout > interval {
            // Point at the more specific of the two; the defaults alone
            // are consistent, so at least one of them was written.
            let section =
                |w: &Written<Duration>| w.field.rsplit_once('.').map(|(s, _)| s.to_owned());
            let origin = |other: &Option<Written<Duration>>, this: &Written<Duration>| match other {
                None => " (default)".to_owned(),
                Some(o) if section(o) == section(this) => String::new(),
                Some(o) => format!(" ({})", o.field),
            };
            let rank = |w: &Written<Duration>| if for_vip(&w.field).is_empty() { 2 } else { 1 };
            return Err(match (&fields.timeout, &fields.interval) {
                (Some(t), Some(i)) if rank(i) > rank(t) => self.error(
                    i.offset,
                    &i.field,
                    format!(
                        "interval {} is shorter than the timeout {}{}, which must not exceed it{}",
                        format_duration(interval),
                        format_duration(timeout),
                        origin(&fields.timeout, i),
                        for_vip(&i.field),
                    ),
                ),
                (Some(t), _) => self.error(
                    t.offset,
                    &t.field,
                    format!(
                        "timeout {} must not exceed the interval {}{}{}",
                        format_duration(timeout),
                        format_duration(interval),
                        origin(&fields.interval, t),
                        for_vip(&t.field),
                    ),
                ),
                (None, Some(i)) => self.error(
                    i.offset,
                    &i.field,
                    format!(
                        "interval {} is shorter than the timeout {} (default), which must not exceed it{}",
                        format_duration(interval),
                        format_duration(timeout),
                        for_vip(&i.field),
                    ),
                ),
                (None, None) => unreachable!("the default timeout fits the default interval"),
            });
        }
        let kind = match fields.check_type() {
            CheckType::None => CheckKind::None,
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http => CheckKind::Http {
                path: fields
                    .path
                    .map_or_else(|| DEFAULT_HTTP_PATH.to_owned(), |w| w.value),
                host: fields.host.map(|w| w.value),
                expect_status: fields
                    .expect_status
                    .map_or(DEFAULT_HTTP_STATUS, |w| w.value),
                expect_body: fields.expect_body.map(|w| w.value),
            },
            CheckType::Udp => CheckKind::Udp {
                send: fields.send.map(|w| w.value).unwrap_or_default(),
                expect: fields.expect.map(|w| w.value),
            },
            CheckType::Exec => match (fields.command, &fields.kind) {
                (Some(command), _) => CheckKind::Exec {
                    command: command.value,
                },
                (None, kind) => {
                    // `exec` was written somewhere: the default is tcp.
                    let (offset, field) = kind
                        .as_ref()
                        .map_or((0, "(document)"), |k| (k.offset, k.field.as_str()));
                    return Err(self.error(
                        offset,
                        field,
                        format!(
                            "an exec check needs `command`, e.g. command = [\"/usr/local/bin/check\", \"--quick\"]{}",
                            for_vip(field)
                        ),
                    ));
                }
            },
        };
        Ok(CheckConfig {
            kind,
            port: fields.port.map_or(vip_port, |w| w.value),
            interval,
            timeout,
            rise: fields.rise.map_or(DEFAULT_CHECK_RISE, |w| w.value),
            fall: fields.fall.map_or(DEFAULT_CHECK_FALL, |w| w.value),
        })
    }

    /// A check interval or timeout: `<n>ms` or `<n>s`, 1ms..=1h.
    fn duration(&self, raw: &Spanned<String>, field: &str) -> Result<Duration, ConfigError> {
        self.duration_in(raw, field, MIN_CHECK_DURATION..=MAX_CHECK_DURATION)
    }

    /// A duration, `<n>ms` or `<n>s`, within `range`.
    fn duration_in(
        &self,
        raw: &Spanned<String>,
        field: &str,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let text = raw.get_ref();
        let duration = parse_duration(text).ok_or_else(|| {
            self.at(
                raw,
                field,
                format!("`{text}` is not a duration; write e.g. \"500ms\" or \"2s\""),
            )
        })?;
        if !range.contains(&duration) {
            return Err(self.at(
                raw,
                field,
                format!(
                    "must be {}..={}",
                    format_duration(*range.start()),
                    format_duration(*range.end())
                ),
            ));
        }
        Ok(duration)
    }

    fn node(&self, raw: RawNode) -> Result<NodeConfig, ConfigError> {
        let name = raw.name.get_ref();
        check_node_name(name).map_err(|m| self.at(&raw.name, "node.name", m))?;
        // The kernel's dev_valid_name().
        let interface = raw.interface.get_ref();
        let interface_ok = (1..=MAX_INTERFACE_NAME).contains(&interface.len())
            && !interface
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
            && interface != "."
            && interface != "..";
        if !interface_ok {
            return Err(self.at(
                &raw.interface,
                "node.interface",
                format!(
                    "must be 1..={MAX_INTERFACE_NAME} bytes without `/`, `:` or whitespace (not `.` or `..`)"
                ),
            ));
        }
        let mac = self.mac(raw.mac.as_ref(), "node.mac")?;
        let control_socket = match &raw.control_socket {
            Some(socket) => {
                let text = socket.get_ref();
                if !Path::new(text).is_absolute()
                    || text.len() > MAX_SOCKET_PATH
                    || text.contains('\0')
                {
                    return Err(self.at(
                        socket,
                        "node.control_socket",
                        format!(
                            "must be an absolute path of at most {MAX_SOCKET_PATH} bytes (a Unix socket)"
                        ),
                    ));
                }
                PathBuf::from(text)
            }
            None => PathBuf::from(format!("{DEFAULT_CONTROL_DIR}/{name}.sock")),
        };
        Ok(NodeConfig {
            name: name.clone(),
            interface: interface.clone(),
            mac,
            control_socket,
        })
    }

    /// The datapath section, and the explicit `ring_size` if one was given.
    fn datapath(
        &self,
        raw: Option<RawDatapath>,
    ) -> Result<(DatapathConfig, Option<Spanned<u32>>), ConfigError> {
        let mut datapath = DatapathConfig::default();
        let Some(raw) = raw else {
            return Ok((datapath, None));
        };
        if let Some(ring_size) = &raw.ring_size {
            let size = *ring_size.get_ref();
            if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&size) {
                return Err(self.at(
                    ring_size,
                    "datapath.ring_size",
                    format!("must be {MIN_RING_SIZE}..={MAX_RING_SIZE}"),
                ));
            }
            if !is_prime(size) {
                let next = (size..=MAX_RING_SIZE)
                    .find(|&n| is_prime(n))
                    .unwrap_or(MAX_RING_SIZE);
                return Err(self.at(
                    ring_size,
                    "datapath.ring_size",
                    format!(
                        "{size} is not prime (Maglev needs a prime size; the next prime is {next})"
                    ),
                ));
            }
            datapath.ring_size = size;
        }
        if let Some(max_flows) = &raw.max_flows {
            let flows = *max_flows.get_ref();
            if !(1..=MAX_FLOWS).contains(&flows) {
                return Err(self.at(
                    max_flows,
                    "datapath.max_flows",
                    format!("must be 1..={MAX_FLOWS}"),
                ));
            }
            datapath.max_flows = flows;
        }
        if let Some(pin_dir) = &raw.pin_dir {
            let path = Path::new(pin_dir.get_ref());
            if !path.is_absolute() {
                return Err(self.at(pin_dir, "datapath.pin_dir", "must be an absolute path"));
            }
            datapath.pin_dir = path.to_owned();
        }
        Ok((datapath, raw.ring_size))
    }

    /// `[cluster]`, checked against this node and the VIPs.
    fn cluster(
        &self,
        spanned: &Spanned<RawCluster>,
        node: &NodeConfig,
        vips: &[VipConfig],
    ) -> Result<ClusterConfig, ConfigError> {
        let raw = spanned.get_ref();
        if *raw.id.get_ref() == 0 {
            return Err(self.at(&raw.id, "cluster.id", "must be at least 1"));
        }
        let key_file = raw.key_file.get_ref();
        if !Path::new(key_file).is_absolute() || key_file.contains('\0') {
            return Err(self.at(
                &raw.key_file,
                "cluster.key_file",
                "must be an absolute path",
            ));
        }
        let port = match &raw.port {
            Some(port) if *port.get_ref() == 0 => {
                return Err(self.at(port, "cluster.port", "must be 1..=65535"));
            }
            Some(port) => *port.get_ref(),
            None => DEFAULT_CLUSTER_PORT,
        };
        let duration = |raw: &Option<Spanned<String>>,
                        name: &str,
                        range: RangeInclusive<Duration>,
                        default: Duration| match raw {
            Some(raw) => self.duration_in(raw, &format!("cluster.{name}"), range),
            None => Ok(default),
        };
        let interval = duration(
            &raw.interval,
            "interval",
            MIN_HEARTBEAT_INTERVAL..=MAX_HEARTBEAT_INTERVAL,
            DEFAULT_HEARTBEAT_INTERVAL,
        )?;
        let dead_after = match &raw.dead_after {
            Some(written) => {
                let dead_after = self.duration(written, "cluster.dead_after")?;
                let least = interval * MIN_DEAD_INTERVALS;
                if dead_after < least {
                    let of = if raw.interval.is_some() {
                        ""
                    } else {
                        " (default)"
                    };
                    return Err(self.at(
                        written,
                        "cluster.dead_after",
                        format!(
                            "{} must be at least {MIN_DEAD_INTERVALS} x the interval {}{of}, {}, so that one lost heartbeat does not take a peer down and quorum has time for a round trip",
                            format_duration(dead_after),
                            format_duration(interval),
                            format_duration(least),
                        ),
                    ));
                }
                dead_after
            }
            None => interval * DEFAULT_DEAD_INTERVALS,
        };
        let preempt_delay = duration(
            &raw.preempt_delay,
            "preempt_delay",
            Duration::ZERO..=MAX_CHECK_DURATION,
            Duration::ZERO,
        )?;
        let tie_breaker = match &raw.tie_breaker {
            Some(address) => Some(self.address(address, "cluster.tie_breaker")?),
            None => None,
        };
        let fence_command = match &raw.fence_command {
            Some(command) => Some(self.command(command, "cluster.fence_command")?),
            None => None,
        };
        let fence_timeout = duration(
            &raw.fence_timeout,
            "fence_timeout",
            MIN_CHECK_DURATION..=MAX_CHECK_DURATION,
            DEFAULT_FENCE_TIMEOUT,
        )?;
        let announce_count = match &raw.announce_count {
            Some(count) if !(1..=MAX_ANNOUNCE_COUNT).contains(count.get_ref()) => {
                return Err(self.at(
                    count,
                    "cluster.announce_count",
                    format!("must be 1..={MAX_ANNOUNCE_COUNT}"),
                ));
            }
            Some(count) => *count.get_ref(),
            None => DEFAULT_ANNOUNCE_COUNT,
        };
        let announce_interval = duration(
            &raw.announce_interval,
            "announce_interval",
            Duration::ZERO..=MAX_ANNOUNCE_INTERVAL,
            DEFAULT_ANNOUNCE_INTERVAL,
        )?;
        let mut hooks = [None, None, None];
        for ((raw, name), out) in [
            (&raw.on_owner, "on_owner"),
            (&raw.on_standby, "on_standby"),
            (&raw.on_fault, "on_fault"),
        ]
        .into_iter()
        .zip(&mut hooks)
        {
            if let Some(command) = raw {
                *out = Some(self.command(command, &format!("cluster.{name}"))?);
            }
        }
        let [on_owner, on_standby, on_fault] = hooks;
        let hook_timeout = duration(
            &raw.hook_timeout,
            "hook_timeout",
            MIN_CHECK_DURATION..=MAX_CHECK_DURATION,
            DEFAULT_HOOK_TIMEOUT,
        )?;

        // The nodes.
        if raw.node.is_empty() {
            return Err(self.at(
                spanned,
                "cluster.node",
                "a cluster needs a [[cluster.node]] for every node, this one included",
            ));
        }
        let mut nodes: Vec<ClusterNode> = Vec::with_capacity(raw.node.len());
        for (i, raw_node) in raw.node.iter().enumerate() {
            let path = format!("cluster.node[{i}]");
            if i >= MAX_CLUSTER_NODES {
                return Err(self.at(
                    raw_node,
                    path,
                    format!("at most {MAX_CLUSTER_NODES} nodes are supported"),
                ));
            }
            let raw_node = raw_node.get_ref();
            let name = raw_node.name.get_ref();
            check_node_name(name)
                .map_err(|m| self.at(&raw_node.name, format!("{path}.name"), m))?;
            let address_field = format!("{path}.address");
            let address = self.address(&raw_node.address, &address_field)?;
            if let Some(first) = nodes.iter().position(|n| n.name == *name) {
                return Err(self.at(
                    &raw_node.name,
                    format!("{path}.name"),
                    format!("duplicate node name `{name}` (also cluster.node[{first}])"),
                ));
            }
            if let Some(first) = nodes.iter().position(|n| n.address == address) {
                return Err(self.at(
                    &raw_node.address,
                    address_field,
                    format!("duplicate node address {address} (also cluster.node[{first}])"),
                ));
            }
            if let Some((v, vip)) = vips.iter().enumerate().find(|(_, v)| v.address == address) {
                return Err(self.at(
                    &raw_node.address,
                    address_field,
                    format!(
                        "{address} is the address of vip[{v}] `{}`; heartbeats go to a node's own address",
                        vip.name
                    ),
                ));
            }
            nodes.push(ClusterNode {
                name: name.clone(),
                address,
            });
        }
        if !nodes.iter().any(|n| n.name == node.name) {
            return Err(self.at(
                spanned,
                "cluster.node",
                format!(
                    "this node `{}` (node.name) is not one of the cluster's nodes; list every node, this one included",
                    node.name
                ),
            ));
        }

        // What depends on the number of nodes.
        let quorum = raw
            .quorum
            .as_ref()
            .map_or(QuorumConfig::Majority, |q| *q.get_ref());
        match (quorum, &raw.quorum) {
            (QuorumConfig::TwoNode, Some(written)) if nodes.len() != 2 => {
                return Err(self.at(
                    written,
                    "cluster.quorum",
                    format!(
                        "quorum = \"two_node\" needs exactly 2 nodes; this cluster has {} (use \"majority\")",
                        nodes.len()
                    ),
                ));
            }
            (QuorumConfig::Majority, written) if nodes.len() == 2 => {
                let message = "a majority of 2 nodes is both of them, so either one failing would stop the other; set quorum = \"two_node\" (optionally with a tie_breaker)";
                return Err(match written {
                    Some(written) => self.at(written, "cluster.quorum", message),
                    None => self.at(spanned, "cluster.quorum", message),
                });
            }
            _ => {}
        }
        if let (Some(address), Some(written)) = (tie_breaker, &raw.tie_breaker) {
            if quorum != QuorumConfig::TwoNode {
                let of = if raw.quorum.is_some() {
                    " (cluster.quorum)"
                } else {
                    " (the default)"
                };
                return Err(self.at(
                    written,
                    "cluster.tie_breaker",
                    format!(
                        "only applies to quorum = \"two_node\"; this cluster's quorum is {}{of}",
                        quorum.name()
                    ),
                ));
            }
            if let Some(i) = nodes.iter().position(|n| n.address == address) {
                return Err(self.at(
                    written,
                    "cluster.tie_breaker",
                    format!(
                        "{address} is the address of cluster.node[{i}]; the tie-breaker must be a third party (e.g. the default gateway)"
                    ),
                ));
            }
            if let Some((v, _)) = vips.iter().enumerate().find(|(_, v)| v.address == address) {
                return Err(self.at(
                    written,
                    "cluster.tie_breaker",
                    format!(
                        "{address} is the address of vip[{v}]; the tie-breaker must be a third party (e.g. the default gateway)"
                    ),
                ));
            }
        }

        // Fencing.
        let fencing = raw
            .fencing
            .as_ref()
            .map_or(FencingConfig::None, |f| *f.get_ref());
        match (fencing, &raw.fencing) {
            (FencingConfig::Required, Some(written)) if fence_command.is_none() => {
                return Err(self.at(
                    written,
                    "cluster.fencing",
                    "fencing = \"required\" needs `fence_command`, e.g. fence_command = [\"/usr/local/sbin/fence-node\"]",
                ));
            }
            (FencingConfig::None, written) => {
                let of = if written.is_some() {
                    " (cluster.fencing)"
                } else {
                    " (the default)"
                };
                let fence_fields = [
                    (
                        "fence_command",
                        raw.fence_command.as_ref().map(|c| c.span().start),
                    ),
                    (
                        "fence_timeout",
                        raw.fence_timeout.as_ref().map(|t| t.span().start),
                    ),
                ];
                if let Some((name, Some(offset))) =
                    fence_fields.into_iter().find(|(_, o)| o.is_some())
                {
                    return Err(self.error(
                        offset,
                        format!("cluster.{name}"),
                        format!(
                            "`{name}` only applies with fencing = \"required\"; fencing is none{of}"
                        ),
                    ));
                }
            }
            _ => {}
        }

        Ok(ClusterConfig {
            id: *raw.id.get_ref(),
            key_file: PathBuf::from(key_file),
            port,
            interval,
            dead_after,
            priority: raw.priority.unwrap_or(DEFAULT_PRIORITY),
            preempt: raw.preempt.unwrap_or(true),
            preempt_delay,
            quorum,
            tie_breaker,
            fencing,
            fence_command,
            fence_timeout,
            announce_count,
            announce_interval,
            on_owner,
            on_standby,
            on_fault,
            hook_timeout,
            nodes,
            tracks: self.tracks(&raw.track)?,
        })
    }

    /// `[[cluster.track]]`: each a check with its own address; the check
    /// table takes no defaults from `[health]` (a local service is not a
    /// backend) and needs a `type` and, but for exec, a `port`.
    fn tracks(&self, raw: &[RawTrack]) -> Result<Vec<TrackConfig>, ConfigError> {
        let mut tracks = Vec::new();
        for (i, track) in raw.iter().enumerate() {
            let path = format!("cluster.track[{i}]");
            let address = track.address.get_ref().parse::<IpAddr>().map_err(|_| {
                self.at(
                    &track.address,
                    format!("{path}.address"),
                    format!(
                        "`{}` is not an IPv4 or IPv6 address",
                        track.address.get_ref()
                    ),
                )
            })?;
            let fields = self.check_fields(&track.check, &format!("{path}.check"))?;
            let check = self.check(CheckFields::default().merged(fields), 0, &path)?;
            let kind = match &track.check.kind {
                Some(kind) => kind,
                None => {
                    return Err(self.at(
                        &track.address,
                        format!("{path}.check.type"),
                        "a track check needs a type",
                    ));
                }
            };
            match check.kind {
                CheckKind::None => {
                    return Err(self.at(kind, format!("{path}.check.type"), "must not be none"));
                }
                CheckKind::Exec { .. } => {}
                _ if check.port == 0 => {
                    return Err(self.at(
                        kind,
                        format!("{path}.check.port"),
                        "a track check needs a port",
                    ));
                }
                _ => {}
            }
            tracks.push(TrackConfig { address, check });
        }
        Ok(tracks)
    }

    fn backend(&self, raw: &RawBackend, path: &str) -> Result<BackendConfig, ConfigError> {
        let address = self.address(&raw.address, &format!("{path}.address"))?;
        let weight = match &raw.weight {
            Some(weight) if *weight.get_ref() > MAX_WEIGHT => {
                return Err(self.at(
                    weight,
                    format!("{path}.weight"),
                    format!("must be 0..={MAX_WEIGHT}"),
                ));
            }
            Some(weight) => *weight.get_ref(),
            None => 1,
        };
        Ok(BackendConfig {
            address,
            weight,
            mac: self.mac(raw.mac.as_ref(), &format!("{path}.mac"))?,
        })
    }

    /// A VIP or backend address: a unicast IPv4 or IPv6 address.
    fn address(&self, raw: &Spanned<String>, field: &str) -> Result<IpAddr, ConfigError> {
        let text = raw.get_ref();
        let address: IpAddr = text.parse().map_err(|_| {
            self.at(
                raw,
                field,
                format!("`{text}` is not an IPv4 or IPv6 address"),
            )
        })?;
        let problem = match address {
            IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
            IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
                Some("an IPv4-mapped IPv6 address (write the IPv4 address)")
            }
            a if a.is_unspecified() => Some("the unspecified address"),
            a if a.is_loopback() => Some("a loopback address"),
            a if a.is_multicast() => Some("a multicast address"),
            _ => None,
        };
        match problem {
            Some(problem) => Err(self.at(
                raw,
                field,
                format!("{address} is {problem}; a unicast address is needed"),
            )),
            None => Ok(address),
        }
    }

    fn mac(
        &self,
        raw: Option<&Spanned<String>>,
        field: &str,
    ) -> Result<Option<[u8; 6]>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mac = parse_mac(raw.get_ref()).ok_or_else(|| {
            self.at(
                raw,
                field,
                format!(
                    "`{}` is not a MAC address (six hex octets separated by `:`, e.g. 02:00:00:00:00:01)",
                    raw.get_ref()
                ),
            )
        })?;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(self.at(raw, field, "must be a unicast MAC address, not zero"));
        }
        Ok(Some(mac))
    }
}

/// Checks a node name: it names the pin directory and goes in heartbeats.
fn check_node_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NODE_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1..={MAX_NODE_NAME} characters of A-Z a-z 0-9 _ . - (not `.` or `..`)"
        ))
    }
}

/// Checks an explicit VIP name; it is a label in status output and metrics.
fn check_vip_name(name: &str) -> Result<(), String> {
    if (1..=MAX_VIP_NAME).contains(&name.len())
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Ok(())
    } else {
        Err(format!(
            "must be 1..={MAX_VIP_NAME} bytes without whitespace or control characters"
        ))
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Parses `aa:bb:cc:dd:ee:ff` (hex digits in either case).
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl<T> Written<T> {
    fn new(value: T, (offset, field): (usize, String)) -> Written<T> {
        Written {
            value,
            offset,
            field,
        }
    }
}

/// Parses a check duration, `<n>ms` or `<n>s` (`n` decimal digits).
fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit_ms) = match text.strip_suffix("ms") {
        Some(digits) => (digits, 1),
        None => (text.strip_suffix('s')?, 1000),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

/// Writes a duration the way it is configured: `2s`, or `1500ms` when not
/// whole seconds (sub-millisecond parts are dropped).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

/// Writes a MAC the way it is configured, `02:00:00:00:00:01`.
fn serialize_mac<S: Serializer>(mac: &Option<[u8; 6]>, serializer: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(m) => serializer.serialize_some(&format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )),
        None => serializer.serialize_none(),
    }
}

// ---------------------------------------------------------------------------
// Positions and field names for errors of the TOML parser and of serde.

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The toml crate's messages may span lines; errors are one line.
fn clean(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A table, key or value of the document: where it is and its dotted path
/// (`""` for the root table).
struct Node {
    span: Range<usize>,
    path: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The root, a `[table]` or an element of an `[[array]]`.
    Table,
    InlineTable,
    Key,
    Value,
}

/// Every table, key and value of `document`.
fn nodes(document: &toml_edit::ImDocument<&str>) -> Vec<Node> {
    let mut out = Vec::new();
    collect_table(document.as_table(), "", &mut out);
    out
}

/// The position and field of a serde error with byte span `span`.
fn serde_field(
    document: &toml_edit::ImDocument<&str>,
    span: Option<Range<usize>>,
    message: &str,
) -> (usize, String) {
    let nodes = nodes(document);
    // "missing field `x`" points at the whole table that lacks it.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        let table = span
            .as_ref()
            .and_then(|s| {
                nodes
                    .iter()
                    .find(|n| n.kind != Kind::Key && n.kind != Kind::Value && n.span == *s)
            })
            .map_or("", |n| n.path.as_str());
        return (span.map_or(0, |s| s.start), join(table, missing));
    }
    let Some(span) = span else {
        return (0, DOCUMENT.to_owned());
    };
    // The smallest key, value or table around the error is the field.
    let field = nodes
        .iter()
        .filter(|n| n.span.start <= span.start && span.start < n.span.end.max(n.span.start + 1))
        .min_by_key(|n| n.span.end - n.span.start)
        .map_or("", |n| n.path.as_str());
    (span.start, or_document(field))
}

/// Best guess at the field of a syntax error at `offset`: the key being
/// written on that line inside the last table opened before it.
fn syntax_field(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim_start();
    if line.starts_with('[') {
        // A broken table header: name what it seems to open.
        let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
        return or_document(name.trim());
    }
    let Ok(before) = toml_edit::ImDocument::parse(&text[..line_start]) else {
        return DOCUMENT.to_owned();
    };
    let nodes = nodes(&before);
    let table = nodes
        .iter()
        .filter(|n| n.kind == Kind::Table)
        .max_by_key(|n| n.span.start)
        .map_or("", |n| n.path.as_str());
    // The key being written: up to `=`, or the first word.
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim(),
        None => line.split_whitespace().next().unwrap_or(""),
    };
    if key.is_empty() {
        or_document(table)
    } else {
        join(table, key)
    }
}

/// The field of errors that concern no particular field.
const DOCUMENT: &str = "(document)";

fn or_document(path: &str) -> String {
    if path.is_empty() { DOCUMENT } else { path }.to_owned()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn collect_table(table: &toml_edit::Table, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = table.span() {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: Kind::Table,
        });
    }
    for (key, item) in table.iter() {
        let path = join(path, key);
        collect_key(table.key(key), &path, out);
        match item {
            toml_edit::Item::Value(value) => collect_value(value, &path, out),
            toml_edit::Item::Table(t) => collect_table(t, &path, out),
            toml_edit::Item::ArrayOfTables(array) => {
                for (i, t) in array.iter().enumerate() {
                    collect_table(t, &format!("{path}[{i}]"), out);
                }
            }
            toml_edit::Item::None => {}
        }
    }
}

fn collect_key(key: Option<&toml_edit::Key>, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = key.and_then(toml_edit::Key::span) {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: Kind::Key,
        });
    }
}

fn collect_value(value: &toml_edit::Value, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = value.span() {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: if value.is_inline_table() {
                Kind::InlineTable
            } else {
                Kind::Value
            },
        });
    }
    match value {
        toml_edit::Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                collect_value(v, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(table) => {
            for (key, v) in table.iter() {
                let path = join(path, key);
                collect_key(table.key(key), &path, out);
                collect_value(v, &path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Minimal valid file; line numbers matter to the tests below:
    /// 1 [node], 2 name, 3 interface, 5 [[vip]], 6 address, 7 port,
    /// 8 protocol, 9 [[vip.backend]], 10 address.
    const BASE: &str = r#"[node]
name = "lb1"
interface = "eth0"

[[vip]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
[[vip.backend]]
address = "198.18.0.11"
"#;

    fn file() -> &'static Path {
        Path::new("/etc/ha/ha.toml")
    }

    fn ok(text: &str) -> Config {
        parse(file(), text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse(file(), text) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error's position and field, and that its message
    /// contains `needle`.
    #[track_caller]
    fn check(text: &str, line: usize, column: usize, field: &str, needle: &str) {
        let e = err(text);
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, column, field),
            "{e}"
        );
        assert!(e.message.contains(needle), "{e}");
        assert_eq!(e.file, file());
    }

    /// BASE with the first occurrence of `from` replaced by `to`.
    fn base_with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn config_full_example() {
        let text = r#"# an example with every field
[node]
name = "lb1"
interface = "eth0"
mac = "02:00:00:00:00:0A"
control_socket = "/run/ha-lb1/control.sock"

[datapath]
ring_size = 251
max_flows = 1024
pin_dir = "/run/ha/bpf"

[health]
type = "http"
interval = "2s"
timeout = "1500ms"
rise = 1
fall = 5
path = "/healthz"
expect_body = "ok"

[[vip]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "tcp"
on_no_backend = "pass"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"
  weight = 3
  mac = "02:00:00:00:00:12"
  [vip.check]
  port = 8080
  host = "www.example.org"
  expect_status = 204

[[vip]]
address = "2001:2::100"
port = 53
protocol = "udp"
  [vip.check]
  type = "udp"
  send = "ping"
  expect = "pong"
  [[vip.backend]]
  address = "2001:2::11"
  weight = 0
"#;
        let want = Config {
            node: NodeConfig {
                name: "lb1".into(),
                interface: "eth0".into(),
                mac: Some([2, 0, 0, 0, 0, 0x0a]),
                control_socket: PathBuf::from("/run/ha-lb1/control.sock"),
            },
            datapath: DatapathConfig {
                ring_size: 251,
                max_flows: 1024,
                pin_dir: PathBuf::from("/run/ha/bpf"),
            },
            vips: vec![
                VipConfig {
                    name: "web".into(),
                    address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                    port: 80,
                    protocol: Protocol::Tcp,
                    backends: vec![
                        BackendConfig {
                            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
                            weight: 1,
                            mac: None,
                        },
                        BackendConfig {
                            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 12)),
                            weight: 3,
                            mac: Some([2, 0, 0, 0, 0, 0x12]),
                        },
                    ],
                    on_no_backend: NoBackend::Pass,
                    check: CheckConfig {
                        kind: CheckKind::Http {
                            path: "/healthz".into(),
                            host: Some("www.example.org".into()),
                            expect_status: 204,
                            expect_body: Some("ok".into()),
                        },
                        port: 8080,
                        interval: Duration::from_secs(2),
                        timeout: Duration::from_millis(1500),
                        rise: 1,
                        fall: 5,
                    },
                    group: 0,
                },
                VipConfig {
                    name: "[2001:2::100]:53/udp".into(),
                    address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100)),
                    port: 53,
                    protocol: Protocol::Udp,
                    backends: vec![BackendConfig {
                        address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11)),
                        weight: 0,
                        mac: None,
                    }],
                    on_no_backend: NoBackend::Drop,
                    // http options of [health] do not apply to a udp check.
                    check: CheckConfig {
                        kind: CheckKind::Udp {
                            send: "ping".into(),
                            expect: Some("pong".into()),
                        },
                        port: 53,
                        interval: Duration::from_secs(2),
                        timeout: Duration::from_millis(1500),
                        rise: 1,
                        fall: 5,
                    },
                    group: 1,
                },
            ],
            cluster: None,
            groups: vec!["web".into(), "[2001:2::100]:53/udp".into()],
            metrics: None,
        };
        assert_eq!(ok(text), want);
    }

    #[test]
    fn config_defaults() {
        let config = ok(BASE);
        assert_eq!(config.node.mac, None);
        assert_eq!(config.datapath, DatapathConfig::default());
        assert_eq!(config.datapath.ring_size, DEFAULT_RING_SIZE);
        assert_eq!(config.datapath.max_flows, DEFAULT_MAX_FLOWS);
        assert_eq!(config.datapath.pin_dir, Path::new("/sys/fs/bpf/ha"));
        assert_eq!(config.vips[0].name, "198.18.0.100:80/tcp");
        assert_eq!(config.vips[0].backends[0].weight, 1);
        assert_eq!(config.vips[0].backends[0].mac, None);
        // An empty [datapath] table keeps the defaults too.
        let config = ok(&format!("[datapath]\n{BASE}"));
        assert_eq!(config.datapath, DatapathConfig::default());
    }

    #[test]
    fn config_inline_tables() {
        let text = r#"node = { name = "lb1", interface = "eth0" }
vip = [{ address = "198.18.0.100", port = 80, protocol = "tcp", backend = [{ address = "198.18.0.11" }] }]
"#;
        assert_eq!(ok(text), ok(BASE));
        check(
            "node = { name = \"lb1\" }\n",
            1,
            8,
            "node.interface",
            "missing field",
        );
    }

    #[test]
    fn config_protocol() {
        assert_eq!(Protocol::Tcp.number(), PROTO_TCP);
        assert_eq!(Protocol::Udp.number(), PROTO_UDP);
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
        assert_eq!(Protocol::Udp.to_string(), "udp");
        let config = ok(&base_with("\"tcp\"", "\"udp\""));
        assert_eq!(config.vips[0].protocol, Protocol::Udp);
        assert_eq!(config.vips[0].name, "198.18.0.100:80/udp");
    }

    #[test]
    fn config_display() {
        let e = err(&base_with("port = 80", "port = 0"));
        assert_eq!(
            e.to_string(),
            "/etc/ha/ha.toml:7:8: vip[0].port: must be 1..=65535"
        );
    }

    #[test]
    fn config_serializes_to_json() {
        let config = ok(&base_with("eth0\"", "eth0\"\nmac = \"02:AB:00:00:00:01\""));
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["node"]["mac"], "02:ab:00:00:00:01");
        assert_eq!(json["vips"][0]["protocol"], "tcp");
        assert_eq!(json["vips"][0]["address"], "198.18.0.100");
        assert_eq!(
            json["vips"][0]["backends"][0]["mac"],
            serde_json::Value::Null
        );
        assert_eq!(json["datapath"]["pin_dir"], "/sys/fs/bpf/ha");
    }

    #[test]
    fn config_syntax_error() {
        check(
            &base_with("name = \"lb1\"", "name = \"lb1"),
            2,
            12,
            "node.name",
            "",
        );
        check(
            &base_with("port = 80", "port = = 80"),
            7,
            8,
            "vip[0].port",
            "",
        );
        check(&base_with("[[vip]]", "[[vip]"), 5, 6, "vip", "");
        // A key with characters a bare key may not have.
        check(
            &base_with("port = 80", "pört = 80"),
            7,
            2,
            "vip[0].pört",
            "",
        );
        check("[node\n", 1, 6, "node", "");
    }

    #[test]
    fn config_duplicate_key_is_a_syntax_error() {
        let e = err(&base_with("port = 80", "port = 80\nport = 81"));
        assert_eq!((e.line, e.field.as_str()), (8, "vip[0].port"), "{e}");
    }

    #[test]
    fn config_unknown_field() {
        check(
            &base_with("interface", "interfase"),
            3,
            1,
            "node.interfase",
            "unknown field `interfase`",
        );
        check(
            &base_with("port = 80", "port = 80\nmode = \"dsr\""),
            8,
            1,
            "vip[0].mode",
            "unknown field `mode`",
        );
        check(
            &format!("{BASE}weigth = 2\n"),
            11,
            1,
            "vip[0].backend[0].weigth",
            "unknown field",
        );
        check(
            &format!("[clusters]\npeers = []\n{BASE}"),
            1,
            2,
            "clusters",
            "unknown field `clusters`",
        );
        check(
            &format!("[cluster]\npeers = []\n{BASE}"),
            2,
            1,
            "cluster.peers",
            "unknown field `peers`",
        );
    }

    #[test]
    fn config_missing_field() {
        check(
            &base_with("name = \"lb1\"\n", ""),
            1,
            1,
            "node.name",
            "missing field `name`",
        );
        check(
            &base_with("protocol = \"tcp\"\n", ""),
            5,
            1,
            "vip[0].protocol",
            "missing field `protocol`",
        );
        check(
            &base_with("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n", ""),
            1,
            1,
            "node",
            "missing field `node`",
        );
    }

    #[test]
    fn config_wrong_type() {
        check(
            &base_with("port = 80", "port = \"80\""),
            7,
            8,
            "vip[0].port",
            "invalid type",
        );
        check(
            &base_with("name = \"lb1\"", "name = 1"),
            2,
            8,
            "node.name",
            "invalid type",
        );
        check(
            &base_with("port = 80", "port = 65536"),
            7,
            8,
            "vip[0].port",
            "65536",
        );
        check(
            &format!("{BASE}weight = -1\n"),
            11,
            10,
            "vip[0].backend[0].weight",
            "-1",
        );
        check(
            &base_with("\"tcp\"", "\"sctp\""),
            8,
            12,
            "vip[0].protocol",
            "unknown variant `sctp`",
        );
        check(
            &BASE.replace(
                "[[vip.backend]]\naddress = \"198.18.0.11\"\n",
                "backend = 3\n",
            ),
            9,
            11,
            "vip[0].backend",
            "invalid type",
        );
    }

    #[test]
    fn config_node_name() {
        for bad in ["", "lb/1", "lb 1", ".", "..", "ä", &"x".repeat(33)] {
            check(
                &base_with("\"lb1\"", &format!("\"{bad}\"")),
                2,
                8,
                "node.name",
                "must be 1..=32",
            );
        }
        for good in ["a", "lb-1.example_2", &"x".repeat(32)] {
            ok(&base_with("\"lb1\"", &format!("\"{good}\"")));
        }
    }

    #[test]
    fn config_node_interface() {
        for bad in ["", "eth/0", "eth 0", "eth0:1", "..", &"e".repeat(16)] {
            check(
                &base_with("\"eth0\"", &format!("\"{bad}\"")),
                3,
                13,
                "node.interface",
                "must be 1..=15",
            );
        }
        ok(&base_with("\"eth0\"", "\"veth-lb1.100\""));
    }

    #[test]
    fn config_bad_mac() {
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02-00-00-00-00-01",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
            "",
        ] {
            check(
                &base_with("\"eth0\"", &format!("\"eth0\"\nmac = \"{bad}\"")),
                4,
                7,
                "node.mac",
                "is not a MAC address",
            );
        }
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            check(
                &base_with("\"eth0\"", &format!("\"eth0\"\nmac = \"{bad}\"")),
                4,
                7,
                "node.mac",
                "unicast",
            );
        }
        check(
            &format!("{BASE}mac = \"02:00:00:00:00\"\n"),
            11,
            7,
            "vip[0].backend[0].mac",
            "is not a MAC address",
        );
    }

    #[test]
    fn config_datapath_values() {
        let with = |line: &str| format!("[datapath]\n{line}\n{BASE}");
        check(
            &with("ring_size = 65536"),
            2,
            13,
            "datapath.ring_size",
            "not prime",
        );
        check(
            &with("ring_size = 65536"),
            2,
            13,
            "datapath.ring_size",
            "65537",
        );
        check(
            &with("ring_size = 5"),
            2,
            13,
            "datapath.ring_size",
            "must be 7..=",
        );
        check(
            &with("ring_size = 1048583"),
            2,
            13,
            "datapath.ring_size",
            "must be 7..=",
        );
        check(
            &with("max_flows = 0"),
            2,
            13,
            "datapath.max_flows",
            "must be 1..=16777216",
        );
        check(
            &with("max_flows = 16777217"),
            2,
            13,
            "datapath.max_flows",
            "must be 1..=",
        );
        check(
            &with("pin_dir = \"bpf/ha\""),
            2,
            11,
            "datapath.pin_dir",
            "absolute",
        );
        check(
            &with("pin_dir = \"\""),
            2,
            11,
            "datapath.pin_dir",
            "absolute",
        );
        assert_eq!(ok(&with("ring_size = 7")).datapath.ring_size, 7);
        assert_eq!(
            ok(&with(&format!("ring_size = {MAX_RING_SIZE}")))
                .datapath
                .ring_size,
            MAX_RING_SIZE
        );
        assert_eq!(
            ok(&with("max_flows = 16777216")).datapath.max_flows,
            16_777_216
        );
    }

    #[test]
    fn config_ring_size_larger_than_backends() {
        let mut text = format!("[datapath]\nring_size = 7\n{BASE}");
        for i in 12..=16 {
            text += &format!("[[vip.backend]]\naddress = \"198.18.0.{i}\"\n");
        }
        // 6 backends fit in a ring of 7, 7 do not.
        ok(&text);
        text += "[[vip.backend]]\naddress = \"198.18.0.17\"\n";
        check(
            &text,
            2,
            13,
            "datapath.ring_size",
            "larger than the 7 backends of vip[0]",
        );
    }

    #[test]
    fn config_no_vip() {
        check(
            "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n",
            1,
            1,
            "vip",
            "at least one [[vip]]",
        );
    }

    #[test]
    fn config_vip_needs_backend() {
        let text = BASE.replace("[[vip.backend]]\naddress = \"198.18.0.11\"\n", "");
        check(
            &text,
            5,
            1,
            "vip[0].backend",
            "at least one [[vip.backend]]",
        );
    }

    #[test]
    fn config_vip_address() {
        for (bad, needle) in [
            ("198.18.0.300", "is not an IPv4 or IPv6 address"),
            ("198.18.0.100:80", "is not an IPv4 or IPv6 address"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("224.0.0.18", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:198.18.0.100", "IPv4-mapped"),
        ] {
            check(
                &base_with("\"198.18.0.100\"", &format!("\"{bad}\"")),
                6,
                11,
                "vip[0].address",
                needle,
            );
        }
        check(
            &format!("{BASE}[[vip.backend]]\naddress = \"::1\"\n"),
            12,
            11,
            "vip[0].backend[1].address",
            "loopback",
        );
    }

    #[test]
    fn config_port_zero() {
        check(
            &base_with("port = 80", "port = 0"),
            7,
            8,
            "vip[0].port",
            "must be 1..=65535",
        );
    }

    /// A second VIP appended to BASE; it starts on line 11.
    fn second_vip(address: &str, port: u16, protocol: &str, extra: &str) -> String {
        format!(
            "{BASE}[[vip]]\n{extra}address = \"{address}\"\nport = {port}\nprotocol = \"{protocol}\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
        )
    }

    #[test]
    fn config_duplicate_vip() {
        check(
            &second_vip("198.18.0.100", 80, "tcp", ""),
            12,
            11,
            "vip[1].address",
            "duplicate VIP 198.18.0.100:80/tcp (also vip[0])",
        );
        // Another port or protocol is another service.
        assert_eq!(ok(&second_vip("198.18.0.100", 80, "udp", "")).vips.len(), 2);
        assert_eq!(
            ok(&second_vip("198.18.0.100", 443, "tcp", "")).vips.len(),
            2
        );
    }

    #[test]
    fn config_duplicate_vip_name() {
        let named = base_with("[[vip]]\n", "[[vip]]\nname = \"web\"\n");
        let text = format!(
            "{named}[[vip]]\nname = \"web\"\naddress = \"198.18.0.101\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
        );
        check(
            &text,
            13,
            8,
            "vip[1].name",
            "duplicate VIP name `web` (also vip[0])",
        );
        // An explicit name may not take another VIP's default name.
        let text = second_vip(
            "198.18.0.101",
            80,
            "tcp",
            "name = \"198.18.0.100:80/tcp\"\n",
        );
        check(&text, 12, 8, "vip[1].name", "duplicate VIP name");
        check(
            &base_with("[[vip]]\n", "[[vip]]\nname = \"a b\"\n"),
            6,
            8,
            "vip[0].name",
            "whitespace",
        );
        check(
            &base_with("[[vip]]\n", "[[vip]]\nname = \"\"\n"),
            6,
            8,
            "vip[0].name",
            "1..=64",
        );
    }

    #[test]
    fn config_too_many_vips() {
        let max = (MAX_VIPS - 1) as usize;
        let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
        for port in 1..=max {
            text += &format!(
                "[[vip]]\naddress = \"198.18.0.100\"\nport = {port}\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
            );
        }
        assert_eq!(ok(&text).vips.len(), max);
        text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 9999\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n";
        check(
            &text,
            4 + 6 * max,
            1,
            &format!("vip[{max}]"),
            &format!("at most {max} VIPs"),
        );
    }

    #[test]
    fn config_too_many_backends() {
        let max = (MAX_BACKENDS - 1) as usize;
        let backend = |i: usize| {
            format!(
                "[[vip.backend]]\naddress = \"198.18.{}.{}\"\n",
                i / 250,
                i % 250 + 1
            )
        };
        // All but 10 backends in the first VIP, the rest in a second one.
        let mut text = String::from("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n");
        text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n";
        for i in 0..max - 10 {
            text += &backend(i);
        }
        text += "[[vip]]\naddress = \"198.18.0.100\"\nport = 81\nprotocol = \"tcp\"\n";
        for i in 0..10 {
            text += &backend(i);
        }
        let config = ok(&text);
        assert_eq!(
            config.vips.iter().map(|v| v.backends.len()).sum::<usize>(),
            max
        );
        text += &backend(10);
        let line = 3 + 4 + 2 * (max - 10) + 4 + 2 * 10 + 2;
        check(
            &text,
            line,
            11,
            "vip[1].backend[10].address",
            &format!("at most {max} backends"),
        );
    }

    #[test]
    fn config_duplicate_backend() {
        check(
            &format!("{BASE}[[vip.backend]]\naddress = \"198.18.0.11\"\n"),
            12,
            11,
            "vip[0].backend[1].address",
            "duplicate backend 198.18.0.11 (also vip[0].backend[0])",
        );
        // The same backend behind two VIPs is fine.
        assert_eq!(ok(&second_vip("198.18.0.101", 80, "tcp", "")).vips.len(), 2);
    }

    #[test]
    fn config_family_mismatch() {
        check(
            &format!("{BASE}[[vip.backend]]\naddress = \"2001:2::11\"\n"),
            12,
            11,
            "vip[0].backend[1].address",
            "IPv6 backend for an IPv4 VIP",
        );
        let text = second_vip("2001:2::100", 80, "tcp", "");
        check(
            &text,
            16,
            11,
            "vip[1].backend[0].address",
            "IPv4 backend for an IPv6 VIP",
        );
    }

    #[test]
    fn config_weight() {
        check(
            &format!("{BASE}weight = 65536\n"),
            11,
            10,
            "vip[0].backend[0].weight",
            "must be 0..=65535",
        );
        let config = ok(&format!("{BASE}weight = 65535\n"));
        assert_eq!(config.vips[0].backends[0].weight, 65535);
    }

    #[test]
    fn config_columns_count_characters() {
        // "é" is two bytes but one column.
        let text = BASE.replace(
            "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n",
            "node = { name = \"lb1\", interface = \"é\", mac = \"x\" }\n",
        );
        check(&text, 1, 47, "node.mac", "is not a MAC address");
        assert_eq!(line_column("aé\nbc", 3), (1, 3));
        assert_eq!(line_column("aé\nbc", 5), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    /// BASE plus a `[vip.check]` of the VIP; its first line is line 12.
    fn with_check(lines: &str) -> String {
        format!("{BASE}[vip.check]\n{lines}")
    }

    /// BASE plus a `[health]` table; its first line is line 12.
    fn with_health(lines: &str) -> String {
        format!("{BASE}[health]\n{lines}")
    }

    #[test]
    fn config_check_defaults() {
        let config = ok(BASE);
        let vip = &config.vips[0];
        assert_eq!(
            vip.check,
            CheckConfig {
                kind: CheckKind::Tcp,
                port: 80,
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                rise: 2,
                fall: 3,
            }
        );
        assert_eq!(vip.on_no_backend, NoBackend::Drop);
        assert_eq!(config.node.control_socket, Path::new("/run/ha/lb1.sock"));
        // Empty tables change nothing.
        assert_eq!(ok(&with_check("")).vips[0].check, vip.check);
        assert_eq!(ok(&with_health("")).vips[0].check, vip.check);
        // The defaults of each kind's fields.
        let http = ok(&with_check("type = \"http\"\n")).vips[0]
            .check
            .kind
            .clone();
        assert_eq!(
            http,
            CheckKind::Http {
                path: "/".into(),
                host: None,
                expect_status: 200,
                expect_body: None,
            }
        );
        let udp = ok(&with_check("type = \"udp\"\n")).vips[0]
            .check
            .kind
            .clone();
        assert_eq!(
            udp,
            CheckKind::Udp {
                send: String::new(),
                expect: None,
            }
        );
        let none = ok(&with_check("type = \"none\"\n")).vips[0].check.clone();
        assert_eq!(
            none,
            CheckConfig {
                kind: CheckKind::None,
                ..vip.check.clone()
            }
        );
        // The port follows the VIP's.
        let config = ok(&base_with("port = 80", "port = 443"));
        assert_eq!(config.vips[0].check.port, 443);
    }

    #[test]
    fn config_check_merges_health_with_vip_check() {
        let health = "[health]\ntype = \"http\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\npath = \"/healthz\"\nhost = \"www.example.org\"\n";
        // vip[0] overrides some fields; vip[1] takes [health] as it is;
        // vip[2] switches to tcp, which leaves [health]'s http fields out.
        let text = format!(
            "{health}{}[vip.check]\nport = 8080\nexpect_status = 204\nexpect_body = \"ok\"\nrise = 1\n{}{}[vip.check]\ntype = \"tcp\"\n",
            BASE,
            second_vip("198.18.0.101", 80, "tcp", "").trim_start_matches(BASE),
            second_vip("198.18.0.102", 80, "tcp", "").trim_start_matches(BASE),
        );
        let config = ok(&text);
        let http = |expect_status, expect_body: Option<&str>| CheckKind::Http {
            path: "/healthz".into(),
            host: Some("www.example.org".into()),
            expect_status,
            expect_body: expect_body.map(str::to_owned),
        };
        let merged = |kind, port, rise| CheckConfig {
            kind,
            port,
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(100),
            rise,
            fall: 2,
        };
        assert_eq!(config.vips[0].check, merged(http(204, Some("ok")), 8080, 1));
        assert_eq!(config.vips[1].check, merged(http(200, None), 80, 2));
        assert_eq!(config.vips[2].check, merged(CheckKind::Tcp, 80, 2));

        // [vip.check] may come before the backends, and the same type
        // keeps [health]'s type-specific fields.
        let text = format!(
            "{health}{}",
            base_with(
                "[[vip.backend]]",
                "[vip.check]\ntype = \"http\"\nexpect_status = 503\n[[vip.backend]]"
            )
        );
        assert_eq!(ok(&text).vips[0].check, merged(http(503, None), 80, 2));
    }

    #[test]
    fn config_check_timeout_exceeds_interval() {
        check(
            &with_check("interval = \"200ms\"\ntimeout = \"300ms\"\n"),
            13,
            11,
            "vip[0].check.timeout",
            "timeout 300ms must not exceed the interval 200ms",
        );
        // The interval's default.
        check(
            &with_check("timeout = \"2s\"\n"),
            12,
            11,
            "vip[0].check.timeout",
            "timeout 2s must not exceed the interval 1s (default)",
        );
        // The timeout's default.
        check(
            &with_check("interval = \"200ms\"\n"),
            12,
            12,
            "vip[0].check.interval",
            "interval 200ms is shorter than the timeout 500ms (default)",
        );
        // A VIP's interval against [health]'s timeout: the VIP's value is
        // the one to blame.
        let text = format!(
            "{}[health]\ntimeout = \"800ms\"\n",
            with_check("interval = \"500ms\"\n")
        );
        check(
            &text,
            12,
            12,
            "vip[0].check.interval",
            "shorter than the timeout 800ms (health.timeout)",
        );
        let text = format!(
            "{}[health]\ninterval = \"500ms\"\n",
            with_check("timeout = \"800ms\"\n")
        );
        check(
            &text,
            12,
            11,
            "vip[0].check.timeout",
            "timeout 800ms must not exceed the interval 500ms (health.interval)",
        );
        // [health] alone: the VIP that inherits it is named.
        check(
            &with_health("timeout = \"3s\"\ninterval = \"2s\"\n"),
            12,
            11,
            "health.timeout",
            "timeout 3s must not exceed the interval 2s (for vip[0])",
        );
        // Equal is fine, and a VIP may repair [health]'s defaults.
        let config = ok(&with_check("interval = \"200ms\"\ntimeout = \"200ms\"\n"));
        assert_eq!(config.vips[0].check.timeout, Duration::from_millis(200));
        let text = format!(
            "{}[health]\ntimeout = \"3s\"\n",
            with_check("interval = \"5s\"\n")
        );
        assert_eq!(ok(&text).vips[0].check.timeout, Duration::from_secs(3));
    }

    #[test]
    fn config_check_rise_fall() {
        for (line, field) in [
            ("rise = 0", "rise"),
            ("fall = 0", "fall"),
            ("rise = 101", "rise"),
            ("fall = 101", "fall"),
        ] {
            check(
                &with_check(&format!("{line}\n")),
                12,
                8,
                &format!("vip[0].check.{field}"),
                "must be 1..=100",
            );
            check(
                &with_health(&format!("{line}\n")),
                12,
                8,
                &format!("health.{field}"),
                "must be 1..=100",
            );
        }
        check(&with_check("rise = -1\n"), 12, 8, "vip[0].check.rise", "-1");
        let check = ok(&with_check("rise = 100\nfall = 1\n")).vips[0]
            .check
            .clone();
        assert_eq!((check.rise, check.fall), (100, 1));
    }

    #[test]
    fn config_check_unknown_type() {
        check(
            &with_check("type = \"grpc\"\n"),
            12,
            8,
            "vip[0].check.type",
            "unknown variant `grpc`",
        );
        check(
            &with_health("type = \"ping\"\n"),
            12,
            8,
            "health.type",
            "unknown variant `ping`",
        );
        check(
            &with_check("kind = \"tcp\"\n"),
            12,
            1,
            "vip[0].check.kind",
            "unknown field `kind`",
        );
    }

    #[test]
    fn config_check_field_of_another_type() {
        check(
            &with_check("path = \"/healthz\"\n"),
            12,
            8,
            "vip[0].check.path",
            "`path` only applies to http checks; this check's type is tcp (the default)",
        );
        check(
            &with_check("type = \"tcp\"\nhost = \"a\"\n"),
            13,
            8,
            "vip[0].check.host",
            "`host` only applies to http checks; this check's type is tcp (vip[0].check.type)",
        );
        check(
            &with_check("type = \"http\"\nsend = \"x\"\n"),
            13,
            8,
            "vip[0].check.send",
            "`send` only applies to udp checks",
        );
        check(
            &with_check("type = \"udp\"\ncommand = [\"/bin/true\"]\n"),
            13,
            11,
            "vip[0].check.command",
            "`command` only applies to exec checks",
        );
        check(
            &with_check("type = \"none\"\nexpect = \"x\"\n"),
            13,
            10,
            "vip[0].check.expect",
            "`expect` only applies to udp checks",
        );
        // In [health], against its own type.
        check(
            &with_health("expect_status = 200\n"),
            12,
            17,
            "health.expect_status",
            "`expect_status` only applies to http checks",
        );
        // A VIP that inherits [health]'s type may set that type's fields.
        let text = format!("{}[health]\ntype = \"udp\"\n", with_check("path = \"/\"\n"));
        check(
            &text,
            12,
            8,
            "vip[0].check.path",
            "this check's type is udp (health.type)",
        );
        let text = format!("{}[health]\ntype = \"udp\"\n", with_check("send = \"x\"\n"));
        assert_eq!(
            ok(&text).vips[0].check.kind,
            CheckKind::Udp {
                send: "x".into(),
                expect: None
            }
        );
    }

    #[test]
    fn config_check_exec() {
        let config = ok(&with_check(
            "type = \"exec\"\ncommand = [\"/usr/local/bin/check-db\", \"--quick\"]\n",
        ));
        assert_eq!(
            config.vips[0].check.kind,
            CheckKind::Exec {
                command: vec!["/usr/local/bin/check-db".into(), "--quick".into()]
            }
        );
        check(
            &with_check("type = \"exec\"\n"),
            12,
            8,
            "vip[0].check.type",
            "an exec check needs `command`",
        );
        // From [health]: its type is the place, the VIP is named.
        check(
            &with_health("type = \"exec\"\n"),
            12,
            8,
            "health.type",
            "an exec check needs `command`, e.g. command = [\"/usr/local/bin/check\", \"--quick\"] (for vip[0])",
        );
        // ... unless the VIP gives one.
        let text = format!(
            "{}[health]\ntype = \"exec\"\n",
            with_check("command = [\"/bin/true\"]\n")
        );
        assert_eq!(
            ok(&text).vips[0].check.kind,
            CheckKind::Exec {
                command: vec!["/bin/true".into()]
            }
        );
        check(
            &with_check("type = \"exec\"\ncommand = [\"check-db\", \"--quick\"]\n"),
            13,
            12,
            "vip[0].check.command[0]",
            "`check-db` must be an absolute path",
        );
        check(
            &with_check("type = \"exec\"\ncommand = [\"\"]\n"),
            13,
            12,
            "vip[0].check.command[0]",
            "must be an absolute path",
        );
        check(
            &with_check("type = \"exec\"\ncommand = []\n"),
            13,
            11,
            "vip[0].check.command",
            "must name a program",
        );
        check(
            &with_check("type = \"exec\"\ncommand = [\"/bin/x\", \"a\\u0000b\"]\n"),
            13,
            22,
            "vip[0].check.command[1]",
            "NUL",
        );
        check(
            &with_check("type = \"exec\"\ncommand = \"/bin/true\"\n"),
            13,
            11,
            "vip[0].check.command",
            "invalid type",
        );
    }

    #[test]
    fn config_check_durations() {
        for bad in [
            "1",
            "1 s",
            "1m",
            "1h",
            "s",
            "ms",
            "-1s",
            "+1s",
            "1.5s",
            "",
            "1S",
            "99999999999999999999ms",
            "18446744073709551615s",
        ] {
            check(
                &with_check(&format!("interval = \"{bad}\"\n")),
                12,
                12,
                "vip[0].check.interval",
                "is not a duration; write e.g. \"500ms\" or \"2s\"",
            );
            check(
                &with_health(&format!("timeout = \"{bad}\"\n")),
                12,
                11,
                "health.timeout",
                "is not a duration",
            );
        }
        for out_of_range in ["0ms", "0s", "3601s", "3600001ms"] {
            check(
                &with_check(&format!("interval = \"{out_of_range}\"\n")),
                12,
                12,
                "vip[0].check.interval",
                "must be 1ms..=3600s",
            );
        }
        check(
            &with_check("interval = 5\n"),
            12,
            12,
            "vip[0].check.interval",
            "invalid type",
        );
        let check = ok(&with_check("interval = \"3600s\"\ntimeout = \"1ms\"\n")).vips[0]
            .check
            .clone();
        assert_eq!(check.interval, Duration::from_secs(3600));
        assert_eq!(check.timeout, Duration::from_millis(1));
        let check = ok(&with_check("interval = \"0250ms\"\ntimeout = \"10ms\"\n"));
        assert_eq!(check.vips[0].check.interval, Duration::from_millis(250));

        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn config_check_values() {
        check(
            &with_check("port = 0\n"),
            12,
            8,
            "vip[0].check.port",
            "must be 1..=65535",
        );
        check(
            &with_health("port = 0\n"),
            12,
            8,
            "health.port",
            "must be 1..=65535",
        );
        check(
            &with_check("port = 65536\n"),
            12,
            8,
            "vip[0].check.port",
            "65536",
        );
        let http = |line: &str| with_check(&format!("type = \"http\"\n{line}\n"));
        for bad in ["healthz", "", "/a b", "/a\\r\\nX: y"] {
            check(
                &http(&format!("path = \"{bad}\"")),
                13,
                8,
                "vip[0].check.path",
                "must start with `/`",
            );
        }
        for bad in ["", "a b", "a\\r\\nX-Injected: 1"] {
            check(
                &http(&format!("host = \"{bad}\"")),
                13,
                8,
                "vip[0].check.host",
                "host name",
            );
        }
        for bad in [99, 600, 0] {
            check(
                &http(&format!("expect_status = {bad}")),
                13,
                17,
                "vip[0].check.expect_status",
                "must be 100..=599",
            );
        }
        check(
            &http("expect_body = \"\""),
            13,
            15,
            "vip[0].check.expect_body",
            "must be 1..=1024 bytes",
        );
        let long = "x".repeat(1025);
        check(
            &http(&format!("expect_body = \"{long}\"")),
            13,
            15,
            "vip[0].check.expect_body",
            "1..=1024",
        );
        let udp = |line: &str| with_check(&format!("type = \"udp\"\n{line}\n"));
        check(
            &udp("expect = \"\""),
            13,
            10,
            "vip[0].check.expect",
            "must be 1..=1024 bytes",
        );
        let long = "x".repeat(65_508);
        check(
            &udp(&format!("send = \"{long}\"")),
            13,
            8,
            "vip[0].check.send",
            "at most 65507 bytes",
        );
        // Good values.
        let config = ok(&http(
            "path = \"/health?full=1\"\nhost = \"[2001:db8::1]:8080\"\nexpect_status = 599",
        ));
        assert_eq!(
            config.vips[0].check.kind,
            CheckKind::Http {
                path: "/health?full=1".into(),
                host: Some("[2001:db8::1]:8080".into()),
                expect_status: 599,
                expect_body: None,
            }
        );
        assert_eq!(
            ok(&udp("send = \"\"")).vips[0].check.kind,
            CheckKind::Udp {
                send: String::new(),
                expect: None
            }
        );
    }

    #[test]
    fn config_on_no_backend() {
        let with =
            |value: &str| base_with("port = 80", &format!("port = 80\non_no_backend = {value}"));
        assert_eq!(ok(&with("\"pass\"")).vips[0].on_no_backend, NoBackend::Pass);
        assert_eq!(ok(&with("\"drop\"")).vips[0].on_no_backend, NoBackend::Drop);
        check(
            &with("\"reject\""),
            8,
            17,
            "vip[0].on_no_backend",
            "unknown variant `reject`",
        );
        check(
            &with("\"Drop\""),
            8,
            17,
            "vip[0].on_no_backend",
            "unknown variant `Drop`",
        );
        check(
            &with("true"),
            8,
            17,
            "vip[0].on_no_backend",
            "wanted string",
        );
    }

    #[test]
    fn config_control_socket() {
        let with = |value: &str| {
            base_with(
                "\"eth0\"",
                &format!("\"eth0\"\ncontrol_socket = \"{value}\""),
            )
        };
        assert_eq!(
            ok(&with("/run/ha.sock")).node.control_socket,
            Path::new("/run/ha.sock")
        );
        let longest = format!("/{}", "s".repeat(106));
        assert_eq!(ok(&with(&longest)).node.control_socket, Path::new(&longest));
        for bad in [
            "run/ha.sock",
            "",
            "./ha.sock",
            &format!("/{}", "s".repeat(107)),
        ] {
            check(
                &with(bad),
                4,
                18,
                "node.control_socket",
                "must be an absolute path",
            );
        }
        // The default follows the node's name.
        let config = ok(&base_with("\"lb1\"", "\"lb-2\""));
        assert_eq!(config.node.control_socket, Path::new("/run/ha/lb-2.sock"));
    }

    #[test]
    fn config_check_serializes_to_json() {
        let config = ok(&with_check(
            "type = \"http\"\ninterval = \"1500ms\"\nexpect_body = \"ok\"\n",
        ));
        let json = serde_json::to_value(&config).unwrap();
        let vip = &json["vips"][0];
        assert_eq!(vip["on_no_backend"], "drop");
        assert_eq!(
            vip["check"],
            serde_json::json!({
                "type": "http",
                "path": "/",
                "host": null,
                "expect_status": 200,
                "expect_body": "ok",
                "port": 80,
                "interval": "1500ms",
                "timeout": "500ms",
                "rise": 2,
                "fall": 3,
            })
        );
        assert_eq!(json["node"]["control_socket"], "/run/ha/lb1.sock");
        let json = serde_json::to_value(ok(&with_check("type = \"none\"\n"))).unwrap();
        assert_eq!(json["vips"][0]["check"]["type"], "none");
        let json = serde_json::to_value(ok(&with_check(
            "type = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )))
        .unwrap();
        assert_eq!(
            json["vips"][0]["check"]["command"],
            serde_json::json!(["/bin/true"])
        );
        assert_eq!(CheckKind::Tcp.name(), "tcp");
    }

    #[test]
    fn config_load() {
        let missing = Path::new("/nonexistent/ha.toml");
        let e = load(missing).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line, e.column, e.field.as_str()),
            (missing, 1, 1, "(file)")
        );
        assert!(e.message.contains("cannot read"), "{e}");

        let path = std::env::temp_dir().join(format!("ha-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, BASE).unwrap();
        let loaded = load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap(), ok(BASE));
    }

    /// BASE plus `[metrics]` (line 11) with `lines` from line 12.
    fn with_metrics(lines: &str) -> String {
        format!("{BASE}[metrics]\n{lines}")
    }

    #[test]
    fn config_metrics() {
        assert_eq!(ok(BASE).metrics, None);
        let config = ok(&with_metrics("listen = \"127.0.0.1:9810\"\n"));
        assert_eq!(
            config.metrics,
            Some(MetricsConfig {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9810)),
            })
        );
        let metrics = ok(&with_metrics("listen = \"[::]:9100\"\n"))
            .metrics
            .unwrap();
        assert_eq!(
            metrics.listen,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9100))
        );
        // Inline, and before the other tables.
        let config = ok(&format!(
            "metrics = {{ listen = \"0.0.0.0:9810\" }}\n{BASE}"
        ));
        assert_eq!(config.metrics.unwrap().listen.to_string(), "0.0.0.0:9810");
        // Node-local: the cluster's digest does not depend on it.
        assert_eq!(
            digest(&ok(BASE)),
            digest(&ok(&with_metrics("listen = \"127.0.0.1:9810\"\n")))
        );
        let json =
            serde_json::to_value(ok(&with_metrics("listen = \"127.0.0.1:9810\"\n"))).unwrap();
        assert_eq!(json["metrics"]["listen"], "127.0.0.1:9810");
        assert_eq!(
            serde_json::to_value(ok(BASE)).unwrap()["metrics"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn config_metrics_bad_listen() {
        for (bad, needle) in [
            ("127.0.0.1", "`127.0.0.1` is not a socket address"),
            ("localhost:9810", "`localhost:9810` is not a socket address"),
            ("::1:9810", "is not a socket address"),
            ("127.0.0.1:65536", "is not a socket address"),
            ("", "is not a socket address"),
            ("127.0.0.1:0", "127.0.0.1:0: port 0 is not allowed"),
            ("255.255.255.255:9810", "broadcast"),
            ("[ff02::1]:9810", "multicast"),
        ] {
            check(
                &with_metrics(&format!("listen = \"{bad}\"\n")),
                12,
                10,
                "metrics.listen",
                needle,
            );
        }
        check(
            &with_metrics("listen = 9810\n"),
            12,
            10,
            "metrics.listen",
            "invalid type",
        );
        check(
            &with_metrics("listen = \"127.0.0.1:9810\"\nport = 9810\n"),
            13,
            1,
            "metrics.port",
            "unknown field `port`",
        );
        check(
            &with_metrics(""),
            11,
            1,
            "metrics.listen",
            "missing field `listen`",
        );
        let e = err(&with_metrics("listen = \"127.0.0.1\"\n"));
        assert_eq!(
            e.to_string(),
            "/etc/ha/ha.toml:12:10: metrics.listen: `127.0.0.1` is not a socket address (an IP address and a port, e.g. 127.0.0.1:9810 or [::1]:9810)"
        );
    }

    /// BASE plus a `[cluster]` of `nodes` nodes lb1, lb2, ... at
    /// 198.18.1.1, 198.18.1.2, ...: `[cluster]` is line 11, `id` line 12,
    /// `key_file` line 13; `lines` start on line 14 and the nodes follow
    /// them, three lines each.
    fn with_cluster(lines: &str, nodes: usize) -> String {
        let mut text =
            format!("{BASE}[cluster]\nid = 42\nkey_file = \"/etc/ha/cluster.key\"\n{lines}");
        for i in 1..=nodes {
            text += &format!("[[cluster.node]]\nname = \"lb{i}\"\naddress = \"198.18.1.{i}\"\n");
        }
        text
    }

    /// The line of the first `[[cluster.node]]` of `with_cluster(lines, _)`.
    fn first_node_line(lines: &str) -> usize {
        14 + lines.matches('\n').count()
    }

    /// A three-node cluster with every default.
    fn default_cluster() -> ClusterConfig {
        ClusterConfig {
            id: 42,
            key_file: PathBuf::from("/etc/ha/cluster.key"),
            port: 5405,
            interval: Duration::from_millis(50),
            dead_after: Duration::from_millis(200),
            priority: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            quorum: QuorumConfig::Majority,
            tie_breaker: None,
            fencing: FencingConfig::None,
            fence_command: None,
            fence_timeout: Duration::from_secs(10),
            announce_count: 3,
            announce_interval: Duration::from_millis(100),
            on_owner: None,
            on_standby: None,
            on_fault: None,
            hook_timeout: Duration::from_secs(5),
            nodes: (1..=3)
                .map(|i| ClusterNode {
                    name: format!("lb{i}"),
                    address: IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)),
                })
                .collect(),
            tracks: Vec::new(),
        }
    }

    #[test]
    fn config_cluster_tracks() {
        let track = "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"tcp\"\n  port = 22\n  interval = \"2s\"\n";
        let cluster = ok(&(with_cluster("", 3) + track)).cluster.unwrap();
        assert_eq!(cluster.tracks.len(), 1);
        let t = &cluster.tracks[0];
        assert_eq!(t.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            (t.check.kind.clone(), t.check.port, t.check.interval),
            (CheckKind::Tcp, 22, Duration::from_secs(2))
        );
        assert_eq!(
            (t.check.rise, t.check.fall),
            (DEFAULT_CHECK_RISE, DEFAULT_CHECK_FALL)
        );
        let base = with_cluster("", 3);
        let line = base.matches('\n').count() + 1;
        for (text, at, field, needle) in [
            (
                "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"tcp\"\n",
                (line + 3, 10),
                "cluster.track[0].check.port",
                "needs a port",
            ),
            (
                "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  port = 22\n",
                (line + 1, 11),
                "cluster.track[0].check.type",
                "needs a type",
            ),
            (
                "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"none\"\n",
                (line + 3, 10),
                "cluster.track[0].check.type",
                "must not be none",
            ),
            (
                "[[cluster.track]]\naddress = \"localhost\"\n  [cluster.track.check]\n  type = \"tcp\"\n  port = 1\n",
                (line + 1, 11),
                "cluster.track[0].address",
                "not an IPv4 or IPv6 address",
            ),
        ] {
            check(&(base.clone() + text), at.0, at.1, field, needle);
        }
    }

    #[test]
    fn config_cluster_absent() {
        let config = ok(BASE);
        assert_eq!(config.cluster, None);
        assert_eq!(config.groups, ["198.18.0.100:80/tcp"]);
        assert_eq!(config.vips[0].group, 0);
    }

    #[test]
    fn config_cluster_defaults() {
        assert_eq!(ok(&with_cluster("", 3)).cluster, Some(default_cluster()));
        // One node alone is a cluster too (a majority of one).
        let one = ok(&with_cluster("", 1)).cluster.unwrap();
        assert_eq!(one.nodes.len(), 1);
        assert_eq!(one.quorum, QuorumConfig::Majority);
    }

    #[test]
    fn config_cluster_every_field() {
        let lines = r#"port = 5406
interval = "20ms"
dead_after = "100ms"
priority = 200
preempt = false
preempt_delay = "30s"
quorum = "two_node"
tie_breaker = "198.18.0.1"
fencing = "required"
fence_command = ["/usr/local/sbin/fence-node", "--hard"]
fence_timeout = "20s"
announce_count = 5
announce_interval = "0ms"
on_owner = ["/usr/local/sbin/ha-notify", "owner"]
on_standby = ["/usr/local/sbin/ha-notify", "standby"]
on_fault = ["/usr/local/sbin/ha-notify"]
hook_timeout = "1s"
"#;
        let command = |words: &[&str]| Some(words.iter().map(|w| w.to_string()).collect());
        let want = ClusterConfig {
            port: 5406,
            interval: Duration::from_millis(20),
            dead_after: Duration::from_millis(100),
            priority: 200,
            preempt: false,
            preempt_delay: Duration::from_secs(30),
            quorum: QuorumConfig::TwoNode,
            tie_breaker: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
            fencing: FencingConfig::Required,
            fence_command: command(&["/usr/local/sbin/fence-node", "--hard"]),
            fence_timeout: Duration::from_secs(20),
            announce_count: 5,
            announce_interval: Duration::ZERO,
            on_owner: command(&["/usr/local/sbin/ha-notify", "owner"]),
            on_standby: command(&["/usr/local/sbin/ha-notify", "standby"]),
            on_fault: command(&["/usr/local/sbin/ha-notify"]),
            hook_timeout: Duration::from_secs(1),
            nodes: default_cluster().nodes[..2].to_vec(),
            ..default_cluster()
        };
        assert_eq!(ok(&with_cluster(lines, 2)).cluster, Some(want));
        // IPv6 node addresses, and an inline array of tables.
        let text = format!(
            "{BASE}[cluster]\nid = 1\nkey_file = \"/k\"\nnode = [{{ name = \"lb1\", address = \"2001:2::1\" }}]\n"
        );
        assert_eq!(
            ok(&text).cluster.unwrap().nodes,
            [ClusterNode {
                name: "lb1".into(),
                address: "2001:2::1".parse().unwrap(),
            }]
        );
    }

    #[test]
    fn config_cluster_missing_and_unknown_fields() {
        let text = with_cluster("", 3).replace("id = 42\n", "");
        check(&text, 11, 1, "cluster.id", "missing field `id`");
        let text = with_cluster("", 3).replace("key_file = \"/etc/ha/cluster.key\"\n", "");
        check(&text, 11, 1, "cluster.key_file", "missing field `key_file`");
        check(
            &with_cluster("peers = []\n", 3),
            14,
            1,
            "cluster.peers",
            "unknown field `peers`",
        );
        let text = with_cluster("", 3).replacen("name = \"lb2\"\n", "", 1);
        check(&text, 17, 1, "cluster.node[1].name", "missing field `name`");
        let text = with_cluster("", 3).replacen(
            "address = \"198.18.1.1\"\n",
            "address = \"198.18.1.1\"\nport = 1\n",
            1,
        );
        check(&text, 17, 1, "cluster.node[0].port", "unknown field `port`");
    }

    #[test]
    fn config_cluster_id_key_file_port() {
        let text = with_cluster("", 3).replace("id = 42", "id = 0");
        check(&text, 12, 6, "cluster.id", "must be at least 1");
        let text = with_cluster("", 3).replace("id = 42", "id = -1");
        check(&text, 12, 6, "cluster.id", "-1");
        let text = with_cluster("", 3).replace("id = 42", "id = \"42\"");
        check(&text, 12, 6, "cluster.id", "invalid type");
        for relative in ["cluster.key", "./cluster.key", "", "etc/ha/cluster.key"] {
            let text =
                with_cluster("", 3).replace("\"/etc/ha/cluster.key\"", &format!("\"{relative}\""));
            check(
                &text,
                13,
                12,
                "cluster.key_file",
                "must be an absolute path",
            );
        }
        check(
            &with_cluster("port = 0\n", 3),
            14,
            8,
            "cluster.port",
            "must be 1..=65535",
        );
        check(
            &with_cluster("port = 65536\n", 3),
            14,
            8,
            "cluster.port",
            "65536",
        );
        let max_id = with_cluster("", 3).replace("id = 42", &format!("id = {}", i64::MAX));
        assert_eq!(ok(&max_id).cluster.unwrap().id, i64::MAX as u64);
    }

    #[test]
    fn config_cluster_interval() {
        for bad in ["4ms", "0s", "11s", "10001ms"] {
            check(
                &with_cluster(&format!("interval = \"{bad}\"\n"), 3),
                14,
                12,
                "cluster.interval",
                "must be 5ms..=10s",
            );
        }
        check(
            &with_cluster("interval = \"50\"\n", 3),
            14,
            12,
            "cluster.interval",
            "is not a duration",
        );
        for (good, ms) in [("5ms", 5), ("10s", 10_000), ("1s", 1000)] {
            let cluster = ok(&with_cluster(&format!("interval = \"{good}\"\n"), 3))
                .cluster
                .unwrap();
            assert_eq!(cluster.interval, Duration::from_millis(ms));
        }
    }

    #[test]
    fn config_cluster_dead_after() {
        // Default: 4 x interval, whatever the interval.
        let cluster = ok(&with_cluster("interval = \"10ms\"\n", 3))
            .cluster
            .unwrap();
        assert_eq!(cluster.dead_after, Duration::from_millis(40));
        let cluster = ok(&with_cluster("interval = \"10s\"\n", 3))
            .cluster
            .unwrap();
        assert_eq!(cluster.dead_after, Duration::from_secs(40));
        // At least 3 x interval.
        check(
            &with_cluster("dead_after = \"149ms\"\n", 3),
            14,
            14,
            "cluster.dead_after",
            "149ms must be at least 3 x the interval 50ms (default), 150ms",
        );
        check(
            &with_cluster("interval = \"1s\"\ndead_after = \"2500ms\"\n", 3),
            15,
            14,
            "cluster.dead_after",
            "2500ms must be at least 3 x the interval 1s, 3s, so that one lost heartbeat",
        );
        let cluster = ok(&with_cluster("dead_after = \"150ms\"\n", 3))
            .cluster
            .unwrap();
        assert_eq!(cluster.dead_after, Duration::from_millis(150));
        let cluster = ok(&with_cluster("dead_after = \"3s\"\n", 3))
            .cluster
            .unwrap();
        assert_eq!(cluster.dead_after, Duration::from_secs(3));
        check(
            &with_cluster("dead_after = \"3601s\"\n", 3),
            14,
            14,
            "cluster.dead_after",
            "must be 1ms..=3600s",
        );
    }

    #[test]
    fn config_cluster_priority_preempt() {
        let cluster = ok(&with_cluster(
            "priority = 0\npreempt = false\npreempt_delay = \"5s\"\n",
            3,
        ))
        .cluster
        .unwrap();
        assert_eq!((cluster.priority, cluster.preempt), (0, false));
        assert_eq!(cluster.preempt_delay, Duration::from_secs(5));
        let cluster = ok(&with_cluster("priority = 255\n", 3)).cluster.unwrap();
        assert_eq!(cluster.priority, 255);
        check(
            &with_cluster("priority = 256\n", 3),
            14,
            12,
            "cluster.priority",
            "256",
        );
        check(
            &with_cluster("priority = -1\n", 3),
            14,
            12,
            "cluster.priority",
            "-1",
        );
        check(
            &with_cluster("preempt = \"yes\"\n", 3),
            14,
            11,
            "cluster.preempt",
            "invalid type",
        );
        check(
            &with_cluster("preempt_delay = \"3601s\"\n", 3),
            14,
            17,
            "cluster.preempt_delay",
            "must be 0ms..=3600s",
        );
    }

    #[test]
    fn config_cluster_quorum() {
        // two_node: exactly two nodes.
        let cluster = ok(&with_cluster("quorum = \"two_node\"\n", 2))
            .cluster
            .unwrap();
        assert_eq!(cluster.quorum, QuorumConfig::TwoNode);
        for nodes in [1, 3] {
            check(
                &with_cluster("quorum = \"two_node\"\n", nodes),
                14,
                10,
                "cluster.quorum",
                &format!("quorum = \"two_node\" needs exactly 2 nodes; this cluster has {nodes}"),
            );
        }
        // A majority of two is both: an error that suggests two_node,
        // written or by default.
        check(
            &with_cluster("quorum = \"majority\"\n", 2),
            14,
            10,
            "cluster.quorum",
            "set quorum = \"two_node\"",
        );
        check(
            &with_cluster("", 2),
            11,
            1,
            "cluster.quorum",
            "a majority of 2 nodes is both of them",
        );
        let cluster = ok(&with_cluster("quorum = \"majority\"\n", 3))
            .cluster
            .unwrap();
        assert_eq!(cluster.quorum, QuorumConfig::Majority);
        check(
            &with_cluster("quorum = \"twonode\"\n", 2),
            14,
            10,
            "cluster.quorum",
            "unknown variant `twonode`",
        );
        assert_eq!(QuorumConfig::TwoNode.name(), "two_node");
    }

    #[test]
    fn config_cluster_tie_breaker() {
        let two = "quorum = \"two_node\"\n";
        let cluster = ok(&with_cluster(
            &format!("{two}tie_breaker = \"2001:2::1\"\n"),
            2,
        ))
        .cluster
        .unwrap();
        assert_eq!(cluster.tie_breaker, Some("2001:2::1".parse().unwrap()));
        check(
            &with_cluster("tie_breaker = \"198.18.0.1\"\n", 3),
            14,
            15,
            "cluster.tie_breaker",
            "only applies to quorum = \"two_node\"; this cluster's quorum is majority (the default)",
        );
        check(
            &with_cluster("quorum = \"majority\"\ntie_breaker = \"198.18.0.1\"\n", 3),
            15,
            15,
            "cluster.tie_breaker",
            "this cluster's quorum is majority (cluster.quorum)",
        );
        for (bad, needle) in [
            ("198.18.0", "is not an IPv4 or IPv6 address"),
            ("127.0.0.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            (
                "198.18.1.2",
                "is the address of cluster.node[1]; the tie-breaker must be a third party",
            ),
            ("198.18.0.100", "is the address of vip[0]"),
        ] {
            check(
                &with_cluster(&format!("{two}tie_breaker = \"{bad}\"\n"), 2),
                15,
                15,
                "cluster.tie_breaker",
                needle,
            );
        }
    }

    #[test]
    fn config_cluster_fencing() {
        let cluster = ok(&with_cluster(
            "fencing = \"required\"\nfence_command = [\"/usr/local/sbin/fence-node\"]\n",
            3,
        ))
        .cluster
        .unwrap();
        assert_eq!(cluster.fencing, FencingConfig::Required);
        assert_eq!(
            cluster.fence_command,
            Some(vec!["/usr/local/sbin/fence-node".into()])
        );
        assert_eq!(cluster.fence_timeout, Duration::from_secs(10));
        check(
            &with_cluster("fencing = \"required\"\n", 3),
            14,
            11,
            "cluster.fencing",
            "fencing = \"required\" needs `fence_command`, e.g. fence_command = [\"/usr/local/sbin/fence-node\"]",
        );
        check(
            &with_cluster("fence_command = [\"/usr/local/sbin/fence-node\"]\n", 3),
            14,
            17,
            "cluster.fence_command",
            "`fence_command` only applies with fencing = \"required\"; fencing is none (the default)",
        );
        check(
            &with_cluster("fencing = \"none\"\nfence_timeout = \"1s\"\n", 3),
            15,
            17,
            "cluster.fence_timeout",
            "`fence_timeout` only applies with fencing = \"required\"; fencing is none (cluster.fencing)",
        );
        let required = "fencing = \"required\"\n";
        check(
            &with_cluster(&format!("{required}fence_command = [\"fence-node\"]\n"), 3),
            15,
            18,
            "cluster.fence_command[0]",
            "`fence-node` must be an absolute path",
        );
        check(
            &with_cluster(&format!("{required}fence_command = []\n"), 3),
            15,
            17,
            "cluster.fence_command",
            "must name a program",
        );
        check(
            &with_cluster(
                &format!("{required}fence_command = [\"/f\"]\nfence_timeout = \"0s\"\n"),
                3,
            ),
            16,
            17,
            "cluster.fence_timeout",
            "must be 1ms..=3600s",
        );
        check(
            &with_cluster("fencing = \"always\"\n", 3),
            14,
            11,
            "cluster.fencing",
            "unknown variant `always`",
        );
        assert_eq!(FencingConfig::Required.name(), "required");
    }

    #[test]
    fn config_cluster_announce() {
        for bad in [0, 51] {
            check(
                &with_cluster(&format!("announce_count = {bad}\n"), 3),
                14,
                18,
                "cluster.announce_count",
                "must be 1..=50",
            );
        }
        check(
            &with_cluster("announce_interval = \"10001ms\"\n", 3),
            14,
            21,
            "cluster.announce_interval",
            "must be 0ms..=10s",
        );
        let cluster = ok(&with_cluster(
            "announce_count = 50\nannounce_interval = \"10s\"\n",
            3,
        ))
        .cluster
        .unwrap();
        assert_eq!(cluster.announce_count, 50);
        assert_eq!(cluster.announce_interval, Duration::from_secs(10));
    }

    #[test]
    fn config_cluster_hooks() {
        for hook in ["on_owner", "on_standby", "on_fault"] {
            let column = hook.len() + 5;
            check(
                &with_cluster(&format!("{hook} = [\"ha-notify\"]\n"), 3),
                14,
                column,
                &format!("cluster.{hook}[0]"),
                "`ha-notify` must be an absolute path",
            );
            check(
                &with_cluster(&format!("{hook} = []\n"), 3),
                14,
                column - 1,
                &format!("cluster.{hook}"),
                "must name a program",
            );
            check(
                &with_cluster(&format!("{hook} = \"/bin/true\"\n"), 3),
                14,
                column - 1,
                &format!("cluster.{hook}"),
                "invalid type",
            );
        }
        check(
            &with_cluster("hook_timeout = \"0ms\"\n", 3),
            14,
            16,
            "cluster.hook_timeout",
            "must be 1ms..=3600s",
        );
    }

    #[test]
    fn config_cluster_nodes() {
        // This node must be among them.
        let text =
            with_cluster("", 3).replace("name = \"lb1\"\naddress", "name = \"lb9\"\naddress");
        check(
            &text,
            11,
            1,
            "cluster.node",
            "this node `lb1` (node.name) is not one of the cluster's nodes",
        );
        check(
            &with_cluster("", 0),
            11,
            1,
            "cluster.node",
            "a cluster needs a [[cluster.node]]",
        );
        // Unique names and addresses.
        let line = first_node_line("");
        let text = with_cluster("", 3).replace("\"lb3\"", "\"lb2\"");
        check(
            &text,
            line + 7,
            8,
            "cluster.node[2].name",
            "duplicate node name `lb2` (also cluster.node[1])",
        );
        let text = with_cluster("", 3).replace("198.18.1.3", "198.18.1.1");
        check(
            &text,
            line + 8,
            11,
            "cluster.node[2].address",
            "duplicate node address 198.18.1.1 (also cluster.node[0])",
        );
        // Names like [node].name; unicast addresses other than a VIP's.
        let text = with_cluster("", 3).replace("\"lb2\"", "\"lb 2\"");
        check(
            &text,
            line + 4,
            8,
            "cluster.node[1].name",
            "must be 1..=32 characters",
        );
        for (bad, needle) in [
            ("lb2.example.org", "is not an IPv4 or IPv6 address"),
            ("ff02::1", "multicast"),
            ("127.0.0.2", "loopback"),
            (
                "198.18.0.100",
                "is the address of vip[0] `198.18.0.100:80/tcp`",
            ),
        ] {
            let text = with_cluster("", 3).replace("198.18.1.2", bad);
            check(&text, line + 5, 11, "cluster.node[1].address", needle);
        }
        // At most 16.
        let cluster = ok(&with_cluster("", 16)).cluster.unwrap();
        assert_eq!(cluster.nodes.len(), 16);
        check(
            &with_cluster("", 17),
            line + 3 * 16,
            1,
            "cluster.node[16]",
            "at most 16 nodes",
        );
    }

    #[test]
    fn config_cluster_serializes_to_json() {
        let json = serde_json::to_value(ok(&with_cluster("", 3))).unwrap();
        let cluster = &json["cluster"];
        assert_eq!(cluster["interval"], "50ms");
        assert_eq!(cluster["dead_after"], "200ms");
        assert_eq!(cluster["preempt_delay"], "0ms");
        assert_eq!(cluster["quorum"], "majority");
        assert_eq!(cluster["fencing"], "none");
        assert_eq!(cluster["key_file"], "/etc/ha/cluster.key");
        assert_eq!(
            cluster["nodes"][1],
            serde_json::json!({ "name": "lb2", "address": "198.18.1.2" })
        );
        assert_eq!(json["groups"], serde_json::json!(["198.18.0.100:80/tcp"]));
        assert_eq!(json["vips"][0]["group"], 0);
        let json = serde_json::to_value(ok(&with_cluster("quorum = \"two_node\"\n", 2))).unwrap();
        assert_eq!(json["cluster"]["quorum"], "two_node");
    }

    /// BASE plus VIPs 1 to 3 (lines 11, 17 and 23) with `extra` lines
    /// each (after `[[vip]]`).
    fn with_vips(extra: [&str; 3]) -> String {
        let mut text = BASE.to_owned();
        for (i, extra) in extra.iter().enumerate() {
            text += &second_vip(&format!("198.18.0.{}", 101 + i), 80, "tcp", extra)[BASE.len()..];
        }
        text
    }

    #[test]
    fn config_vip_groups() {
        // Same group: same index; no group: a group of its own, named after
        // the VIP; indices in order of first appearance.
        let text = with_vips(["group = \"web\"\n", "name = \"api\"\n", "group = \"web\"\n"]);
        let config = ok(&text);
        assert_eq!(config.groups, ["198.18.0.100:80/tcp", "web", "api"]);
        let groups: Vec<usize> = config.vips.iter().map(|v| v.group).collect();
        assert_eq!(groups, [0, 1, 2, 1]);
        // A group may be named after a VIP: it joins that VIP's group.
        let text = with_vips(["group = \"198.18.0.100:80/tcp\"\n", "", ""]);
        let config = ok(&text);
        assert_eq!(config.vips[1].group, 0);
        assert_eq!(config.groups.len(), 3);
        // Named like VIPs.
        for bad in ["", "a b", "tab\\t", &"g".repeat(65)] {
            check(
                &with_vips([&format!("group = \"{bad}\"\n"), "", ""]),
                12,
                9,
                "vip[1].group",
                "must be 1..=64 bytes without whitespace or control characters",
            );
        }
        ok(&with_vips([
            &format!("group = \"{}\"\n", "g".repeat(64)),
            "",
            "",
        ]));
        check(
            &with_vips(["group = 1\n", "", ""]),
            12,
            9,
            "vip[1].group",
            "invalid type",
        );
    }

    /// A cluster's file as one of its nodes has it: `[node]` and `[datapath]`
    /// from `local`, `[cluster]` settings from `cluster`, the nodes in the
    /// order of `nodes` (names of lb1..lb3), backends in the order given.
    fn node_file(local: &str, cluster: &str, nodes: [usize; 3], backends: [&str; 2]) -> String {
        let mut text =
            format!("{local}[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n");
        for backend in backends {
            text += &format!("[[vip.backend]]\n{backend}\n");
        }
        text += &format!("[cluster]\nid = 42\n{cluster}");
        for i in nodes {
            text += &format!("[[cluster.node]]\nname = \"lb{i}\"\naddress = \"198.18.1.{i}\"\n");
        }
        text
    }

    #[test]
    fn config_digest() {
        let lb1_local = "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n";
        let lb1_cluster = "key_file = \"/etc/ha/cluster.key\"\n";
        let backends = ["address = \"198.18.0.11\"", "address = \"198.18.0.12\""];
        let lb1 = ok(&node_file(lb1_local, lb1_cluster, [1, 2, 3], backends));
        // The same cluster as lb2 has it: every node-local setting differs,
        // and nodes and backends are listed in another order.
        let lb2 = ok(&node_file(
            "[node]\nname = \"lb2\"\ninterface = \"ens1\"\nmac = \"02:00:00:00:00:02\"\ncontrol_socket = \"/run/x.sock\"\n[datapath]\nmax_flows = 99\npin_dir = \"/run/bpf\"\n",
            "key_file = \"/var/lib/ha/key\"\npriority = 50\npreempt = false\npreempt_delay = \"1s\"\ninterval = \"20ms\"\ndead_after = \"1s\"\nport = 6000\nannounce_count = 1\nannounce_interval = \"1ms\"\non_owner = [\"/bin/true\"]\non_standby = [\"/bin/true\"]\non_fault = [\"/bin/true\"]\nhook_timeout = \"1s\"\nfencing = \"required\"\nfence_command = [\"/bin/fence\"]\nfence_timeout = \"1s\"\n",
            [3, 2, 1],
            [
                backends[1],
                "address = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"",
            ],
        ));
        assert_ne!(lb1.node, lb2.node);
        assert_ne!(lb1.cluster, lb2.cluster);
        assert_eq!(digest(&lb1), digest(&lb2));
        assert_eq!(digest(&lb1), digest(&lb1.clone()));

        // What the nodes must agree on changes it.
        let changed = |from: &str, to: &str| {
            let text = node_file(lb1_local, lb1_cluster, [1, 2, 3], backends);
            assert!(text.contains(from), "{from}");
            let other = ok(&text.replacen(from, to, 1));
            assert_ne!(digest(&lb1), digest(&other), "{from} -> {to}");
        };
        changed("\"198.18.0.12\"", "\"198.18.0.12\"\nweight = 2");
        changed("\"198.18.0.12\"", "\"198.18.0.13\"");
        changed("\"198.18.0.100\"", "\"198.18.0.101\"");
        changed("port = 80", "port = 81");
        changed("protocol = \"tcp\"", "protocol = \"udp\"");
        changed("[[vip]]\n", "[[vip]]\nname = \"web\"\n");
        changed("[[vip]]\n", "[[vip]]\ngroup = \"g\"\n");
        changed("[[vip]]\n", "[[vip]]\non_no_backend = \"pass\"\n");
        changed("[cluster]\n", "[vip.check]\nrise = 1\n[cluster]\n");
        changed("[[vip]]\n", "[health]\ntype = \"none\"\n[[vip]]\n");
        changed("[[vip]]\n", "[datapath]\nring_size = 251\n[[vip]]\n");
        changed("id = 42", "id = 43");
        changed("198.18.1.3", "198.18.1.4");
        changed("\"lb3\"", "\"lb4\"");
        // Another VIP.
        let text = node_file(lb1_local, lb1_cluster, [1, 2, 3], backends);
        let vip = "[[vip]]\naddress = \"198.18.0.101\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n";
        let more = ok(&text.replace("[cluster]", &format!("{vip}[cluster]")));
        assert_ne!(digest(&lb1), digest(&more));
        // The order of the groups (heartbeats name them by index).
        let a = ok(&with_vips(["group = \"a\"\n", "group = \"b\"\n", ""]));
        let b = ok(&with_vips(["group = \"b\"\n", "group = \"a\"\n", ""]));
        assert_ne!(digest(&a), digest(&b));
        // Without [cluster]: a digest of the VIPs alone.
        assert_ne!(digest(&ok(BASE)), digest(&lb1));
        assert_eq!(
            digest(&ok(BASE)),
            digest(&ok(&base_with("\"eth0\"", "\"eth1\"")))
        );
    }
}

#[cfg(test)]
mod packaged_example {
    /// The example shipped in packaging/ must stay valid.
    #[test]
    fn packaged_example_config_is_valid() {
        let path =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/ha.toml"));
        let config = super::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.vips.len(), 2);
        assert_eq!(config.vips[0].backends[1].weight, 2);
        let (web, web6) = (&config.vips[0].check, &config.vips[1].check);
        assert_eq!(
            (web.kind.name(), web.port, web.rise, web.fall),
            ("http", 8080, 2, 3)
        );
        assert_eq!(web.interval, std::time::Duration::from_millis(200));
        assert_eq!((web6.kind.name(), web6.port), ("tcp", 80));
    }

    /// The commented-out [cluster] example, uncommented, is valid too.
    #[test]
    fn packaged_example_cluster_is_valid() {
        use super::*;
        let path =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/ha.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("\n# [cluster]\n").expect("a [cluster] example") + 1;
        let mut uncommented = text.clone();
        for line in text[start..].lines() {
            let line = match line {
                "#" => "",
                line => line.strip_prefix("# ").expect("a commented line"),
            };
            uncommented += line;
            uncommented += "\n";
        }
        let config = super::parse(path, &uncommented).unwrap_or_else(|e| panic!("{e}"));
        let cluster = config.cluster.expect("a cluster");
        assert_eq!(cluster.id, 42);
        assert_eq!(cluster.quorum, super::QuorumConfig::TwoNode);
        assert_eq!(cluster.nodes.len(), 2);
        assert_eq!(cluster.nodes[0].name, config.node.name);
        assert!(cluster.on_owner.is_some() && cluster.on_fault.is_some());
        // The values written in the example are the defaults, but for the
        // choices an example has to make.
        assert_eq!(cluster.port, DEFAULT_CLUSTER_PORT);
        assert_eq!(cluster.interval, DEFAULT_HEARTBEAT_INTERVAL);
        assert_eq!(
            cluster.dead_after,
            DEFAULT_HEARTBEAT_INTERVAL * DEFAULT_DEAD_INTERVALS
        );
        assert_eq!(
            (cluster.priority, cluster.preempt),
            (DEFAULT_PRIORITY, true)
        );
        assert_eq!(cluster.preempt_delay, Duration::ZERO);
        assert_eq!(cluster.fencing, FencingConfig::None);
        assert_eq!(cluster.announce_count, DEFAULT_ANNOUNCE_COUNT);
        assert_eq!(cluster.announce_interval, DEFAULT_ANNOUNCE_INTERVAL);
        assert_eq!(cluster.hook_timeout, DEFAULT_HOOK_TIMEOUT);
    }
}
