//! The agent's TOML configuration: schema, defaults and validation.
//!
//! Why this exists: the whole node (datapath sizes, VIPs, backends) comes
//! from one file, and a bad file must change nothing. So the file is parsed
//! and fully validated here, before anything is applied, and every error
//! names the file, line, column and field, e.g.
//! `/etc/ha/ha.toml:12:11: vip[1].backend[0].address: IPv6 backend for an
//! IPv4 VIP`.
//!
//! How: serde reads the text into `Raw*` structs (`raw`) whose values are
//! [`toml::Spanned`], so each value still knows where it came from; the
//! checks (`validate`, `check`, `cluster`) then build the clean public
//! [`Config`] defined here. Errors of the TOML parser and of serde carry a
//! byte span too, and serde's carry the path to the field it was reading
//! (`error`). The module is pure apart from [`load`], which only reads the
//! file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_common::{DEFAULT_MAX_FLOWS, DEFAULT_RING_SIZE, MAX_BACKENDS, VipKey};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{Mac, Protocol, vip_key};

mod check;
mod cluster;
mod error;
mod raw;
#[cfg(test)]
pub(crate) mod tests;
mod validate;

pub use error::ConfigError;
use error::Source;
use raw::RawConfig;

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
/// Default path of an http or https check.
pub const DEFAULT_HTTP_PATH: &str = "/";
/// Default expected status of an http or https check.
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
// `[cluster]`. The heartbeat interval's default, `dead_after`'s default and
// least number of intervals, and the most nodes belong to the state machine
// (its safety argument and the heartbeat frame depend on them):
// `cluster::state::{DEFAULT_INTERVAL, DEFAULT_DEAD_INTERVALS,
// MIN_DEAD_INTERVALS, MAX_NODES}`.
/// Default UDP port of the heartbeats.
pub const DEFAULT_CLUSTER_PORT: u16 = 5405;
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
/// Shortest and longest heartbeat interval.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(5);
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Longest time between two announcements of a burst.
const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);
/// Largest announcement burst.
const MAX_ANNOUNCE_COUNT: u32 = 50;

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
    pub mac: Option<Mac>,
    /// The control socket `hactl` talks to (absolute); default
    /// `/run/ha/<name>.sock`.
    pub control_socket: PathBuf,
    /// Gratuitous ARPs / unsolicited NAs sent per VIP when this node starts
    /// answering for it: without `[cluster]` at start and for each VIP a
    /// reload adds; in a cluster the default of `cluster.announce_count`.
    pub announce_count: u32,
    /// Time between two announcements of a burst (the default of
    /// `cluster.announce_interval`).
    #[serde(serialize_with = "serialize_duration")]
    pub announce_interval: Duration,
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
    /// and move together. Default: the group of the first VIP before it
    /// with the same address, else a group of its own, named after the
    /// VIP. VIPs sharing an address are always in one group (ARP/NDP
    /// answers for an address, so two owners would both answer).
    pub group: usize,
}

impl VipConfig {
    /// The VIP's key in the VIPS map.
    pub fn key(&self) -> VipKey {
        vip_key(self.address, self.port, self.protocol)
    }
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
    /// `GET path` over TLS (rustls), same expectations as `Http`.
    Https {
        path: String,
        host: Option<String>,
        expect_status: u16,
        expect_body: Option<String>,
        /// Server name sent as SNI and verified against the certificate;
        /// default: `host` when that is a DNS name, else none (the
        /// certificate must then name the backend's IP address).
        sni: Option<String>,
        /// PEM file with the CA certificates to trust; default: the
        /// system's trust store.
        ca_file: Option<PathBuf>,
        /// false: accept any certificate (like keepalived's SSL_GET).
        verify: bool,
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
            CheckKind::Https { .. } => "https",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Exec { .. } => "exec",
        }
    }
}

/// `[[vip.backend]]`: a real server behind a VIP.
///
/// Never a VIP, nor a `[[cluster.node]]` address: a frame forwarded to a
/// load balancer is steered again by its XDP program, and a flow could
/// bounce between two of them forever. What is not caught: this node
/// without `[cluster]` (the file names none of its addresses) and a load
/// balancer under another of its addresses; list only real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendConfig {
    /// Same address family as the VIP.
    pub address: IpAddr,
    /// 0..=65535; 0 = drained (no new flows).
    pub weight: u32,
    /// Static MAC; `None`: learned from the neighbour table.
    pub mac: Option<Mac>,
}

/// `[cluster]`: the load-balancer nodes that share the VIPs, and how this
/// one takes part.
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

/// The config check of `ha-agent --check` and `hactl check-config`: `file`
/// validated by [`load`], exactly as at start-up and on reload, and what to
/// print when it is valid, `<file>: ok`.
pub fn check(file: &Path) -> Result<String, ConfigError> {
    load(file).map(|_| format!("{}: ok", file.display()))
}

/// Parses and validates `text`; `file` only appears in errors.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source { file, text };
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| source.deserialize_error(&e))?;
    source.validate(raw)
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
