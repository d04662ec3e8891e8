//! What serde reads from the file: the sections as written, before any
//! check. Every value the checks may complain about is [`Spanned`], so an
//! error can name its line and column; the checks turn these into the
//! public model of the parent module.

use serde::Deserialize;
use toml::Spanned;

use super::{FencingConfig, NoBackend, QuorumConfig};
use crate::model::Protocol;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) node: RawNode,
    pub(super) datapath: Option<RawDatapath>,
    pub(super) health: Option<RawCheck>,
    #[serde(default)]
    pub(super) vip: Vec<Spanned<RawVip>>,
    pub(super) cluster: Option<Spanned<RawCluster>>,
    pub(super) metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) name: Spanned<String>,
    pub(super) interface: Spanned<String>,
    pub(super) mac: Option<Spanned<String>>,
    pub(super) control_socket: Option<Spanned<String>>,
    pub(super) announce_count: Option<Spanned<u32>>,
    pub(super) announce_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatapath {
    pub(super) ring_size: Option<Spanned<u32>>,
    pub(super) max_flows: Option<Spanned<u32>>,
    pub(super) pin_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub(super) name: Option<Spanned<String>>,
    pub(super) address: Spanned<String>,
    pub(super) port: Spanned<u16>,
    pub(super) protocol: Protocol,
    #[serde(default)]
    pub(super) backend: Vec<RawBackend>,
    pub(super) on_no_backend: Option<NoBackend>,
    pub(super) check: Option<RawCheck>,
    pub(super) group: Option<Spanned<String>>,
}

/// A command: an absolute path, then arguments.
pub(super) type RawCommand = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) id: Spanned<u64>,
    pub(super) key_file: Spanned<String>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) dead_after: Option<Spanned<String>>,
    pub(super) priority: Option<u8>,
    pub(super) preempt: Option<bool>,
    pub(super) preempt_delay: Option<Spanned<String>>,
    pub(super) quorum: Option<Spanned<QuorumConfig>>,
    pub(super) tie_breaker: Option<Spanned<String>>,
    pub(super) fencing: Option<Spanned<FencingConfig>>,
    pub(super) fence_command: Option<RawCommand>,
    pub(super) fence_timeout: Option<Spanned<String>>,
    pub(super) announce_count: Option<Spanned<u32>>,
    pub(super) announce_interval: Option<Spanned<String>>,
    pub(super) on_owner: Option<RawCommand>,
    pub(super) on_standby: Option<RawCommand>,
    pub(super) on_fault: Option<RawCommand>,
    pub(super) hook_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) node: Vec<Spanned<RawClusterNode>>,
    #[serde(default)]
    pub(super) track: Vec<RawTrack>,
}

/// `[[cluster.track]]`: a local service this node's eligibility depends on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrack {
    pub(super) address: Spanned<String>,
    pub(super) check: RawCheck,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClusterNode {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Spanned<String>,
}

/// `[health]` and `[vip.check]`: the same shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<CheckType>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) rise: Option<Spanned<u32>>,
    pub(super) fall: Option<Spanned<u32>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) expect_status: Option<Spanned<u16>>,
    pub(super) expect_body: Option<Spanned<String>>,
    pub(super) send: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<String>>,
    pub(super) command: Option<RawCommand>,
    pub(super) sni: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) verify: Option<Spanned<bool>>,
}

/// A check's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum CheckType {
    Tcp,
    Http,
    Https,
    Udp,
    Exec,
    None,
}

impl CheckType {
    pub(super) fn name(self) -> &'static str {
        match self {
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Https => "https",
            CheckType::Udp => "udp",
            CheckType::Exec => "exec",
            CheckType::None => "none",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) address: Spanned<String>,
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) mac: Option<Spanned<String>>,
}
