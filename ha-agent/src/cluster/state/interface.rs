//! What crosses between the machine and its shell: the [`Input`]s it
//! takes, the [`Action`]s it returns (with the [`Outgoing`] heartbeat, the
//! [`OwnershipCause`] of a take or release and the [`Fault`]s it raises)
//! and the [`PeerView`]s it reports.
//!
//! Why a module of its own: the shell, the agent and the simulator speak
//! only this vocabulary; how the machine decides is the parent module's.

use std::fmt;
use std::time::Duration;

use super::micros;
use crate::cluster::{Heartbeat, NodeName, PeerReport};

/// Everything that can happen to the machine, each stamped with the time.
///
/// Why: the shell turns sockets, timers, hooks and operator commands into
/// these; tests and the simulator produce them directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passes. Call it at [`Cluster::next_timeout`](super::Cluster::next_timeout) (the safety
    /// argument counts on a quorum loss being acted on when it happens; a
    /// tick every interval acts up to an interval late); more often is
    /// harmless.
    Tick { now: Duration },
    /// A frame that passed authentication, replay and cluster-id checks.
    Heartbeat { now: Duration, hb: Heartbeat },
    /// Local eligibility: links up, datapath loaded and answering, track
    /// checks passing. A node starts ineligible until the shell says so.
    Eligibility { now: Duration, eligible: bool },
    /// This node's config/operator-state digest (all zero until set).
    Digest { now: Duration, digest: [u8; 32] },
    /// [`Quorum::TwoNode`](super::Quorum::TwoNode) with a tie-breaker: whether it answers.
    TieBreaker { now: Duration, reachable: bool },
    /// Answer to [`Action::Fence`].
    FenceDone {
        now: Duration,
        node: NodeName,
        success: bool,
    },
    /// `hactl standby` (`on`) / `hactl unstandby`.
    Standby { now: Duration, on: bool },
    /// `hactl failover`: the current owner of `group` gives it up and
    /// `to`, if given, is preferred in the election that follows. Deliver
    /// it to every node (like drains): each node then excludes the former
    /// owner for that election and none preempts back to it while the new
    /// owner holds the group. The new owner takes it after bidding for
    /// `dead_after`, or at once if it already was the heir (no `to`, or
    /// `to` is the next best). A node that never gets the command follows
    /// the normal ranking; rank settles any clash (the lower bidder steps
    /// back).
    Failover {
        now: Duration,
        group: usize,
        to: Option<NodeName>,
    },
    /// Graceful stop: release everything and say LEAVING from now on.
    Leave { now: Duration },
}

impl Input {
    pub fn now(&self) -> Duration {
        match self {
            Input::Tick { now }
            | Input::Heartbeat { now, .. }
            | Input::Eligibility { now, .. }
            | Input::Digest { now, .. }
            | Input::TieBreaker { now, .. }
            | Input::FenceDone { now, .. }
            | Input::Standby { now, .. }
            | Input::Failover { now, .. }
            | Input::Leave { now } => *now,
        }
    }
}

/// What the shell must do, in order.
///
/// Why: the machine decides, the shell acts (sockets, maps, hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this state to every peer now (the shell adds cluster id and
    /// sequence: [`Outgoing::to_heartbeat`]).
    Send(Outgoing),
    /// Mark the group OWNED, announce it (gratuitous ARP / NA), run
    /// `on_owner`.
    Take {
        group: usize,
        cause: OwnershipCause,
    },
    /// Clear OWNED, run `on_standby`.
    Release {
        group: usize,
        cause: OwnershipCause,
    },
    /// Something needs an operator: log loudly, `on_fault`, metric.
    Fault(Fault),
    /// A fault raised earlier is over.
    Recovered(Fault),
    /// Run the fencing hook against `node`; answer with
    /// [`Input::FenceDone`].
    Fence {
        node: NodeName,
    },
    PeerUp {
        node: NodeName,
    },
    PeerDown {
        node: NodeName,
        leaving: bool,
    },
}

/// This node's part of a heartbeat.
///
/// Why: the machine owns the meaning of the fields, the send time
/// included (peers echo it back to this machine); the wire sender owns
/// cluster id and sequence numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub node: NodeName,
    pub incarnation: u64,
    /// The machine's `now` when it made the frame.
    pub sent_at: Duration,
    pub priority: u8,
    /// Ready to own: locally eligible, not standby or leaving, quorate,
    /// digest agreed.
    pub eligible: bool,
    /// Groups this node owns, ascending.
    pub claims: Vec<u16>,
    /// Groups this node bids for (it is their heir), ascending.
    pub bids: Vec<u16>,
    pub leaving: bool,
    pub standby: bool,
    /// The newest frame accepted from each UP peer.
    pub peers: Vec<PeerReport>,
    pub digest: [u8; 32],
}

impl Outgoing {
    pub fn to_heartbeat(&self, cluster_id: u64, sequence: u64) -> Heartbeat {
        Heartbeat {
            cluster_id,
            node: self.node.clone(),
            incarnation: self.incarnation,
            sequence,
            sent_at_us: micros(self.sent_at),
            priority: self.priority,
            eligible: self.eligible,
            claims: self.claims.clone(),
            bids: self.bids.clone(),
            leaving: self.leaving,
            standby: self.standby,
            peers: self.peers.clone(),
            digest: self.digest,
        }
    }

    /// Whether this says anything `other` does not: all but the send time
    /// and the reports' sequences, ages and echoes, which change with
    /// every frame.
    pub(super) fn differs(&self, other: &Outgoing) -> bool {
        type Own<'a> = (&'a str, u64, u8, bool, &'a [u16], &'a [u16], bool, bool);
        fn own(o: &Outgoing) -> Own<'_> {
            let (claims, bids) = (&o.claims, &o.bids);
            (
                &o.node,
                o.incarnation,
                o.priority,
                o.eligible,
                claims,
                bids,
                o.leaving,
                o.standby,
            )
        }
        fn report(r: &PeerReport) -> (&str, u64, u8, &[u16], &[u16]) {
            (&r.node, r.incarnation, r.priority, &r.claims, &r.bids)
        }
        own(self) != own(other)
            || self.digest != other.digest
            || !self
                .peers
                .iter()
                .map(report)
                .eq(other.peers.iter().map(report))
    }
}

/// Why a group was taken or released: one log line per decision, and the
/// `HA_REASON` of the `on_owner`/`on_standby` hooks. (Why a frame was
/// dropped is another matter: `wire::DropReason`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnershipCause {
    /// Taken: best candidate and nobody held it as far as this node knows.
    Elected,
    /// Taken from a peer that went silent for `dead_after`.
    OwnerDown(NodeName),
    /// Taken from a peer that said LEAVING.
    OwnerLeft(NodeName),
    /// Taken after the peer that held it released it.
    OwnerReleased(NodeName),
    /// Released: quorum lost.
    QuorumLost,
    /// Released: local eligibility lost.
    Ineligible,
    Standby,
    Leaving,
    /// Not ready: this node's digest disagrees with the cluster. It keeps
    /// what it holds and takes nothing, so this is never a release cause.
    DigestMismatch,
    /// Released: a higher node claims it too.
    Yielded(NodeName),
    /// Released: a lower node kept claiming it for `dead_after`; it
    /// evidently does not hear this node.
    Unanswered(NodeName),
    /// Released to a better candidate.
    Preempted(NodeName),
    /// Released by `hactl failover`.
    Failover,
}

impl fmt::Display for OwnershipCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnershipCause::Elected => write!(f, "elected"),
            OwnershipCause::OwnerDown(n) => write!(f, "owner {n} is down"),
            OwnershipCause::OwnerLeft(n) => write!(f, "owner {n} left"),
            OwnershipCause::OwnerReleased(n) => write!(f, "owner {n} released it"),
            OwnershipCause::QuorumLost => write!(f, "quorum lost"),
            OwnershipCause::Ineligible => write!(f, "not eligible"),
            OwnershipCause::Standby => write!(f, "standby"),
            OwnershipCause::Leaving => write!(f, "leaving"),
            OwnershipCause::DigestMismatch => write!(f, "digest differs from the cluster's"),
            OwnershipCause::Yielded(n) => write!(f, "yielded to higher claimant {n}"),
            OwnershipCause::Unanswered(n) => {
                write!(f, "{n} keeps claiming it and does not hear us")
            }
            OwnershipCause::Preempted(n) => write!(f, "preempted by {n}"),
            OwnershipCause::Failover => write!(f, "failover requested"),
        }
    }
}

/// Conditions that need an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Quorum was held and is gone: everything released.
    QuorumLost,
    /// This node's digest differs from the cluster's: it takes nothing.
    DigestMismatch,
    /// The fencing hook failed against that node; retried every
    /// `dead_after` while needed.
    FenceFailed(NodeName),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::QuorumLost => write!(f, "quorum lost"),
            Fault::DigestMismatch => {
                write!(f, "config/operator digest differs from the cluster's")
            }
            Fault::FenceFailed(n) => write!(f, "fencing {n} failed"),
        }
    }
}

/// One peer as this node sees it (for `hactl status` and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub node: NodeName,
    pub up: bool,
    /// Time of the last accepted frame.
    pub last_heard: Option<Duration>,
    pub incarnation: Option<u64>,
    pub priority: u8,
    /// The peer's `eligible` bit: ready to own.
    pub eligible: bool,
    pub standby: bool,
    /// The groups it owns, as far as this node knows (from its own frames
    /// or a peer's report, while that knowledge is live).
    pub claims: Vec<u16>,
    pub digest_matches: bool,
    /// Must be fenced before this node takes anything.
    pub needs_fencing: bool,
    /// Round-trip time, smoothed (7/8 old, 1/8 new sample, as TCP's SRTT);
    /// `None` until its frames echo ours.
    pub rtt: Option<Duration>,
    /// The latest round-trip sample.
    pub rtt_sample: Option<Duration>,
}
