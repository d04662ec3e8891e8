//! What the agent reports at one scrape: plain data, filled by the agent
//! from its own state and rendered by [`super::render`].

use std::net::IpAddr;

use super::Histogram;
use crate::model::Protocol;

/// What the agent reports at one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// This node's name (`[node] name`).
    pub node: String,
    pub vips: Vec<VipSample>,
    pub backends: Vec<BackendSample>,
    /// The datapath's global counters by name (`GlobalCounter::name`):
    /// (name, packets, bytes).
    pub globals: Vec<(&'static str, u64, u64)>,
    /// `None` without a `[cluster]`.
    pub cluster: Option<ClusterSample>,
    /// Backend switchovers: decision to phase 2 done, in seconds.
    pub decisions: Histogram,
    /// Backend switchovers: decision to phase 1 done, in seconds.
    pub phase1: Histogram,
}

/// One VIP.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VipSample {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub packets: u64,
    pub bytes: u64,
    /// This node answers for it (owns its group).
    pub owned: bool,
}

/// One backend of one VIP.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BackendSample {
    /// The VIP's name.
    pub vip: String,
    pub address: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    /// Its health check passes.
    pub up: bool,
    /// Takes no new flows.
    pub draining: bool,
}

/// This node's view of the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ClusterSample {
    pub quorum: bool,
    pub peers: Vec<PeerSample>,
    /// Heartbeats dropped, by reason (`DropReason::name`).
    pub dropped: Vec<(&'static str, u64)>,
    /// Shared frames dropped, by kind (`shared::Kind::name`) and reason.
    pub shared_dropped: Vec<(&'static str, &'static str, u64)>,
}

/// One other node of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PeerSample {
    pub node: String,
    pub up: bool,
    /// Time since its last valid heartbeat; `None`: never heard.
    pub last_heard_seconds: Option<f64>,
    /// Smoothed heartbeat round trip; `None`: not measured yet.
    pub rtt_seconds: Option<f64>,
    /// Longest time between two of its heartbeats; `None`: fewer than two.
    pub longest_gap_seconds: Option<f64>,
}
