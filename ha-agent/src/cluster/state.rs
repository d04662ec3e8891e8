//! Membership, failure detection and per-group election: a pure state
//! machine (sans-IO, like quinn-proto).
//!
//! Why: the decisions that keep a VIP on exactly one node must be testable
//! without sockets or clocks. [`Cluster`] takes [`Input`]s stamped with the
//! current time (`now`, a [`Duration`] since any fixed epoch; the machine
//! never reads a clock) and returns [`Action`]s for the shell: send a
//! heartbeat, take or release a group, run the fencing hook, raise a fault.
//! The UDP shell, timers, hooks and map writes live elsewhere; the seeded
//! simulator in `tests/cluster_sim.rs` drives many of these machines
//! through crashes, partitions, loss, delay and reordering.
//!
//! # Rules
//!
//! With `i` = interval and `D` = dead_after:
//! - Membership: a peer is UP from a valid frame until `D` passes without
//!   a newer one, or until it says LEAVING. Frames older than the freshest
//!   (incarnation, sequence) seen are ignored, so reordering and
//!   duplication never roll a peer back.
//! - Quorum ([`Quorum`]): by default a majority of the configured nodes,
//!   counting this node and the peers heard within the quorum window
//!   `D - 2i` ([`ClusterParams::quorum_window`]).
//! - Ready (sent as the frame's `eligible` bit): locally eligible, not in
//!   standby, not leaving, quorate, and the digest agrees with a quorum of
//!   the nodes it sees. Candidates for a group are this node if ready and
//!   the UP peers that are ready, not in standby and have this digest.
//!   Rank: (priority, name), highest first; a `hactl failover` in progress
//!   excludes the former owner and puts its target first.
//! - Succession: a group's *heir* is the best candidate that does not
//!   claim it. A node takes a group when nobody UP claims it and it has
//!   been the heir continuously for `D` ([`ClusterParams::succession_hold`]).
//!   The heir of a held group is established long before its owner fails,
//!   so it takes over the moment the owner is DOWN (`D` after its last
//!   frame), LEAVING or releasing. A node that only just became the heir
//!   (it started, became eligible, regained quorum, was named by a
//!   failover) waits `D`: every stale view in the cluster has expired by
//!   then and its readiness has been heard. This is also the startup
//!   choice: after a full-cluster restart the groups come up about one
//!   interval (hearing each other) plus `D` after the nodes; a single
//!   restarted node costs no outage (the others hold its groups, and a
//!   preempting node gets them back by a handover). A node that is heir
//!   only because of a failover its peers may not know of claims the group
//!   (in its frames) during the hold, so that a peer that ranks itself
//!   first sees the claim; if both claim, rank decides.
//! - Release: everything at once when no longer ready; a group when an UP
//!   peer with a higher rank claims it too (the lower yields at once), when
//!   a lower peer keeps claiming it for `D` (it does not hear this node:
//!   give way rather than keep two owners), on a failover, and on
//!   preemption: with `preempt`, to a better candidate that has been one
//!   for `max(preempt_delay, D)` (by then it may take: the handover costs
//!   one delivery delay). With `preempt = false` the owner keeps the group
//!   while it stays ready.
//! - Fencing ([`Fencing::Required`]): before taking anything, every peer
//!   that went DOWN without LEAVING is fenced; a failure raises a fault and
//!   blocks the take (retried every `D`).
//!
//! # Safety (Majority quorum)
//!
//! Claim: no two nodes own a group while both see a quorum, provided frames
//! within a partition side arrive within Δ < 2i/3 (duplicated and
//! reordered at will), partitions are symmetric (a node hears the nodes of
//! its own side only) and change at most once per `D`, and the shell ticks
//! at [`Cluster::next_timeout`]. Two owners need two takes that did not
//! see each other's claim:
//! - a take over a DOWN owner X happens `D` after the last frame from X;
//!   if X still owned, it was cut off from this node's (majority) side, so
//!   its last frame from that side is at most `i + Δ` newer, and it lost
//!   quorum `D - 2i` after that: before the take. (A frame that ends a
//!   silence is answered at once, so that a short heal between two cuts
//!   does not let X hear the majority while the majority misses X.)
//! - any other take comes from a node that has been the heir for `D`. A
//!   rival that took meanwhile either did so more than Δ before the end of
//!   that hold, and its claim was heard (no take), or it decided on a view
//!   older than the heir's readiness, and both views were cut apart by a
//!   partition: the minority one's quorum lapses `D - 2i + Δ` after the
//!   cut, before the hold ends. Views that differ for good (a failover
//!   some node missed) are covered by the claim during the hold.
//! - simultaneous claims that both arrive are resolved by rank.
//!
//! The simulator checks this claim after every event of thousands of
//! random schedules in such a network (with partitions that also change
//! faster). Partitions flapping between two configurations faster than the
//! quorum window can make a and c take turns hearing b without ever
//! hearing each other: that is the case below.
//!
//! Connectivity that is not symmetric and transitive defeats any rule on
//! one-hop heartbeats: if a hears b and c hears b but a and c do not hear
//! each other, a and c both see a quorum and neither can learn the other's
//! claim (b does not relay it). The simulator measures that case; closing
//! it needs frames that echo what the sender hears and relay the claims it
//! sees.

use std::fmt;
use std::time::Duration;

use super::{Heartbeat, NodeName};

/// Default heartbeat interval (DESIGN §3).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);
/// A peer is DOWN after this many intervals without a valid frame.
pub const DEFAULT_DEAD_INTERVALS: u32 = 4;
/// Group indices travel as u16 in heartbeats.
pub const MAX_GROUPS: usize = u16::MAX as usize + 1;

/// Who may act without hearing the rest of the cluster.
///
/// Why: a node must not take a VIP that a partitioned peer may still hold;
/// a majority cannot exist on both sides of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// A strict majority of the configured nodes, counting this node and
    /// the peers heard within [`ClusterParams::quorum_window`].
    Majority,
    /// Two-node clusters (like corosync's `two_node`): with the peer UP
    /// there is quorum; alone, a node has quorum only if
    /// - `tie_breaker`: the tie-breaker answers (reported through
    ///   [`Input::TieBreaker`]; unreachable until reported). It protects a
    ///   node cut off from the network, NOT a split between two nodes that
    ///   both still reach the tie-breaker: require fencing for that.
    /// - no tie-breaker: it has seen its peer UP at least once since it
    ///   started (corosync's `wait_for_all`): two nodes booted into a
    ///   partition do not both take everything.
    TwoNode { tie_breaker: bool },
    /// Always quorate: single-node setups and tests. Offers no split-brain
    /// protection at all.
    Disabled,
}

/// Whether a node must fence a peer before taking over from it.
///
/// Why: a peer that stopped talking without LEAVING may still be alive and
/// answering for its VIPs (a frozen VM, a cut link); STONITH makes sure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fencing {
    None,
    /// Before taking any group, every peer that went DOWN without LEAVING
    /// (and every peer never heard since this node started, as Pacemaker's
    /// startup fencing) must have been fenced successfully since.
    Required,
}

/// Timing and policy of one node's view of the cluster.
///
/// Why: one place for everything the election depends on; built from the
/// config, identical on every node except `me` and `priority`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterParams {
    pub me: NodeName,
    pub priority: u8,
    /// Every configured node, `me` included: the base of the quorum.
    pub nodes: Vec<NodeName>,
    /// VIP groups `0..groups` (a group is a set of VIPs that move together).
    pub groups: usize,
    /// Heartbeat interval.
    pub interval: Duration,
    /// A peer silent this long is DOWN. At least 2 intervals; 4 (the
    /// default) or more for the full safety margin of
    /// [`ClusterParams::quorum_window`].
    pub dead_after: Duration,
    /// Whether an owner gives a group up to a better candidate.
    pub preempt: bool,
    /// How long a better candidate must have been one before the owner
    /// gives way to it.
    pub preempt_delay: Duration,
    pub quorum: Quorum,
    pub fencing: Fencing,
}

impl ClusterParams {
    /// Defaults of DESIGN §3: 50 ms interval, DOWN after 4 intervals,
    /// preempt without delay, majority quorum, no fencing.
    pub fn new(me: &str, priority: u8, nodes: &[&str], groups: usize) -> ClusterParams {
        ClusterParams {
            me: me.to_string(),
            priority,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            groups,
            interval: DEFAULT_INTERVAL,
            dead_after: DEFAULT_INTERVAL * DEFAULT_DEAD_INTERVALS,
            preempt: true,
            preempt_delay: Duration::ZERO,
            quorum: Quorum::Majority,
            fencing: Fencing::None,
        }
    }

    /// How recently a majority must have been heard for this node to see a
    /// quorum: `dead_after` - 2 intervals. An owner cut off from the
    /// majority thus lets go of its groups before the majority declares it
    /// DOWN: the majority counts `dead_after` from the last frame it got
    /// from the owner, which can be one lost frame (an interval) plus the
    /// delivery delay older than the last one the owner got from the
    /// majority. Never below 1.5 intervals (a quorum must survive the
    /// jitter between two heartbeats), so with `dead_after` under 4
    /// intervals the margin shrinks to `dead_after` - 1.5 intervals.
    pub fn quorum_window(&self) -> Duration {
        let floor = self.interval * 3 / 2;
        self.dead_after
            .saturating_sub(2 * self.interval)
            .max(floor)
            .min(self.dead_after)
    }

    /// How long a node must have been a group's heir before it takes the
    /// group: `dead_after` (see the module documentation).
    pub fn succession_hold(&self) -> Duration {
        self.dead_after
    }

    pub fn validate(&self) -> Result<(), ParamsError> {
        if !self.nodes.contains(&self.me) {
            return Err(ParamsError::NotAMember(self.me.clone()));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self.nodes[..i].contains(n) {
                return Err(ParamsError::Duplicate(n.clone()));
            }
        }
        if self.groups > MAX_GROUPS {
            return Err(ParamsError::TooManyGroups(self.groups));
        }
        if self.interval.is_zero() {
            return Err(ParamsError::ZeroInterval);
        }
        if self.dead_after < 2 * self.interval {
            return Err(ParamsError::DeadAfterTooShort {
                dead_after: self.dead_after,
                interval: self.interval,
            });
        }
        if matches!(self.quorum, Quorum::TwoNode { .. }) && self.nodes.len() != 2 {
            return Err(ParamsError::TwoNodeSize(self.nodes.len()));
        }
        Ok(())
    }
}

/// Why [`ClusterParams`] cannot run (the config validation should have
/// caught it first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("node `{0}` is not in the configured node list")]
    NotAMember(NodeName),
    #[error("node `{0}` is listed twice")]
    Duplicate(NodeName),
    #[error("{0} VIP groups; at most {MAX_GROUPS} fit in a heartbeat")]
    TooManyGroups(usize),
    #[error("the heartbeat interval must be longer than zero")]
    ZeroInterval,
    #[error("dead_after ({dead_after:?}) must be at least 2 intervals ({interval:?} each)")]
    DeadAfterTooShort {
        dead_after: Duration,
        interval: Duration,
    },
    #[error("two_node needs exactly 2 configured nodes, not {0}")]
    TwoNodeSize(usize),
}

/// Everything that can happen to the machine, each stamped with the time.
///
/// Why: the shell turns sockets, timers, hooks and operator commands into
/// these; tests and the simulator produce them directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passes. Call it at [`Cluster::next_timeout`] (the safety
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
    /// [`Quorum::TwoNode`] with a tie-breaker: whether it answers.
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
    /// owner holds the group. The new owner takes it after its succession
    /// hold (`dead_after` without an owner), or at once if it already was
    /// the heir (no `to`, or `to` is the next best). A node that never gets
    /// the command follows the normal ranking; rank settles any clash.
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
    /// Send this state to every peer now (the shell adds cluster id,
    /// sequence and time: [`Outgoing::to_heartbeat`]).
    Send(Outgoing),
    /// Mark the group OWNED, announce it (gratuitous ARP / NA), run
    /// `on_owner`.
    Take {
        group: usize,
        reason: Reason,
    },
    /// Clear OWNED, run `on_standby`.
    Release {
        group: usize,
        reason: Reason,
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
/// Why: the machine owns the meaning of the fields; the wire sender owns
/// cluster id, sequence numbers and the send time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub node: NodeName,
    pub incarnation: u64,
    pub priority: u8,
    /// Ready to own: locally eligible, not standby or leaving, quorate,
    /// digest agreed.
    pub eligible: bool,
    /// Groups this node owns, ascending, and a group it claims ahead of
    /// owning it (a failover target during its hold).
    pub claims: Vec<u16>,
    pub leaving: bool,
    pub standby: bool,
    pub digest: [u8; 32],
}

impl Outgoing {
    pub fn to_heartbeat(&self, cluster_id: u64, sequence: u64, sent_at_ms: u64) -> Heartbeat {
        Heartbeat {
            cluster_id,
            node: self.node.clone(),
            incarnation: self.incarnation,
            sequence,
            sent_at_ms,
            priority: self.priority,
            eligible: self.eligible,
            claims: self.claims.clone(),
            leaving: self.leaving,
            standby: self.standby,
            digest: self.digest,
        }
    }
}

/// Why a group was taken or released: one log line per decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
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
    /// Released: this node's digest disagrees with the cluster.
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

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Elected => write!(f, "elected"),
            Reason::OwnerDown(n) => write!(f, "owner {n} is down"),
            Reason::OwnerLeft(n) => write!(f, "owner {n} left"),
            Reason::OwnerReleased(n) => write!(f, "owner {n} released it"),
            Reason::QuorumLost => write!(f, "quorum lost"),
            Reason::Ineligible => write!(f, "not eligible"),
            Reason::Standby => write!(f, "standby"),
            Reason::Leaving => write!(f, "leaving"),
            Reason::DigestMismatch => write!(f, "digest differs from the cluster's"),
            Reason::Yielded(n) => write!(f, "yielded to higher claimant {n}"),
            Reason::Unanswered(n) => write!(f, "{n} keeps claiming it and does not hear us"),
            Reason::Preempted(n) => write!(f, "preempted by {n}"),
            Reason::Failover => write!(f, "failover requested"),
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
    pub claims: Vec<u16>,
    pub digest_matches: bool,
    /// Must be fenced before this node takes anything.
    pub needs_fencing: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FenceState {
    /// Heard since it last went down, or left cleanly.
    Clean,
    Needed,
    /// Fence emitted, waiting for FenceDone.
    Pending,
    Done,
    Failed {
        retry_at: Duration,
    },
}

#[derive(Clone, Debug)]
struct Peer {
    name: NodeName,
    /// Freshest accepted (incarnation, sequence).
    last: Option<(u64, u64)>,
    heard_at: Option<Duration>,
    up: bool,
    /// Said LEAVING in its current incarnation.
    left: bool,
    priority: u8,
    ready: bool,
    standby: bool,
    digest: [u8; 32],
    claims: Vec<bool>,
    /// Since when it has been a candidate, continuously.
    candidate_since: Option<Duration>,
    fence: FenceState,
}

/// A `hactl failover` in progress for one group.
#[derive(Clone, Debug)]
struct Handover {
    from: Option<NodeName>,
    to: Option<NodeName>,
    /// Dropped if nobody but `from` has claimed the group by then. The
    /// target takes it after its succession hold (`dead_after`); if it
    /// never got the command, the nodes that did wait until this deadline
    /// (and a hold) before electing by rank again.
    until: Duration,
}

/// A candidate in one group's election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Me,
    Peer(usize),
}

/// One node's membership view and election state.
///
/// Why: everything the node decides about VIP ownership, as a value that
/// only changes through [`Cluster::handle`].
#[derive(Clone, Debug)]
pub struct Cluster {
    p: ClusterParams,
    incarnation: u64,
    now: Duration,
    eligible: bool,
    standby: bool,
    leaving: bool,
    digest: [u8; 32],
    tie_breaker: bool,
    /// Configured peers, `me` excluded.
    peers: Vec<Peer>,
    owned: Vec<bool>,
    /// Per group: the peer that claimed it last (for take reasons).
    last_owner: Vec<Option<usize>>,
    /// Per group: since when a lower UP peer claims a group this node owns.
    conflict_since: Vec<Option<Duration>>,
    handover: Vec<Option<Handover>>,
    /// Per group: since when this node has been its heir, continuously.
    heir_since: Vec<Option<Duration>>,
    /// Per group: claimed (sent in `claims`) but not owned yet.
    announced: Vec<bool>,
    /// Per owned group: do not preempt back to this node (failover).
    keep_from: Vec<Option<NodeName>>,
    quorum: bool,
    /// Some peer was UP at some point since start (two-node wait_for_all).
    seen_peer: bool,
    ready: bool,
    faults: Vec<Fault>,
    last_sent: Option<Outgoing>,
    /// When the next periodic heartbeat is due.
    next_beat: Duration,
    /// Send a heartbeat now, even if nothing changed (see `on_heartbeat`).
    answer: bool,
}

impl Cluster {
    /// A node starting at `now`; `incarnation` must grow with every start
    /// (peers tell a restart from a replay by it).
    pub fn new(
        params: ClusterParams,
        now: Duration,
        incarnation: u64,
    ) -> Result<Cluster, ParamsError> {
        params.validate()?;
        let mut names: Vec<&NodeName> = params.nodes.iter().filter(|n| **n != params.me).collect();
        names.sort();
        let fence = match params.fencing {
            Fencing::None => FenceState::Clean,
            Fencing::Required => FenceState::Needed,
        };
        let peers = names
            .into_iter()
            .map(|name| Peer {
                name: name.clone(),
                last: None,
                heard_at: None,
                up: false,
                left: false,
                priority: 0,
                ready: false,
                standby: false,
                digest: [0; 32],
                claims: vec![false; params.groups],
                candidate_since: None,
                fence,
            })
            .collect();
        let g = params.groups;
        Ok(Cluster {
            incarnation,
            now,
            eligible: false,
            standby: false,
            leaving: false,
            digest: [0; 32],
            tie_breaker: false,
            peers,
            owned: vec![false; g],
            last_owner: vec![None; g],
            conflict_since: vec![None; g],
            handover: vec![None; g],
            keep_from: vec![None; g],
            heir_since: vec![None; g],
            announced: vec![false; g],
            quorum: false,
            seen_peer: false,
            ready: false,
            faults: Vec::new(),
            last_sent: None,
            next_beat: now,
            answer: false,
            p: params,
        })
    }

    /// Feeds one input; returns what the shell must do, in order. A `now`
    /// earlier than a previous one counts as the previous one.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let now = input.now().max(self.now);
        self.now = now;
        let mut out = Vec::new();
        self.expire(now, &mut out);
        match input {
            Input::Tick { .. } => {}
            Input::Heartbeat { hb, .. } => self.on_heartbeat(now, hb, &mut out),
            Input::Eligibility { eligible, .. } => self.eligible = eligible,
            Input::Digest { digest, .. } => self.digest = digest,
            Input::TieBreaker { reachable, .. } => self.tie_breaker = reachable,
            Input::FenceDone { node, success, .. } => {
                if let Some(p) = self.peers.iter_mut().find(|p| p.name == node) {
                    if p.fence == FenceState::Pending {
                        if success {
                            p.fence = FenceState::Done;
                            self.clear_fault(&Fault::FenceFailed(node), &mut out);
                        } else {
                            p.fence = FenceState::Failed {
                                retry_at: now + self.p.dead_after,
                            };
                            self.raise_fault(Fault::FenceFailed(node), &mut out);
                        }
                    }
                }
            }
            Input::Standby { on, .. } => self.standby = on,
            Input::Failover { group, to, .. } => self.on_failover(now, group, to),
            Input::Leave { .. } => self.leaving = true,
        }
        self.decide(now, &mut out);
        self.send(now, &mut out);
        out
    }

    /// Whether this node owns `group`.
    pub fn owns(&self, group: usize) -> bool {
        self.owned.get(group).copied().unwrap_or(false)
    }

    /// The groups this node owns, ascending.
    pub fn owned(&self) -> Vec<usize> {
        (0..self.owned.len()).filter(|&g| self.owned[g]).collect()
    }

    /// Whether this node sees a quorum (as of the last input).
    pub fn has_quorum(&self) -> bool {
        self.quorum
    }

    /// Whether this node may own groups (the `eligible` bit it sends).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Faults currently raised.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    pub fn params(&self) -> &ClusterParams {
        &self.p
    }

    /// Every configured peer, by name.
    pub fn peers(&self) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|p| PeerView {
                node: p.name.clone(),
                up: p.up,
                last_heard: p.heard_at,
                incarnation: p.last.map(|(i, _)| i),
                priority: p.priority,
                eligible: p.ready,
                standby: p.standby,
                claims: claims_of(&p.claims),
                digest_matches: p.digest == self.digest,
                needs_fencing: matches!(
                    p.fence,
                    FenceState::Needed | FenceState::Pending | FenceState::Failed { .. }
                ),
            })
            .collect()
    }

    /// The latest time by which the shell should call [`Input::Tick`] so
    /// that no decision waits: the next heartbeat, a peer leaving the
    /// quorum window or going DOWN, the end of a succession hold, a
    /// preemption, conflict or failover deadline, a fence retry.
    pub fn next_timeout(&self) -> Duration {
        let now = self.now;
        let mut t = self.next_beat;
        let mut at = |d: Duration| {
            if d > now && d < t {
                t = d;
            }
        };
        for p in &self.peers {
            if let (true, Some(h)) = (p.up, p.heard_at) {
                at(h + self.p.quorum_window());
                at(h + self.p.dead_after);
            }
            if let Some(s) = p.candidate_since {
                at(s + self.preempt_wait());
            }
            if let FenceState::Failed { retry_at } = p.fence {
                at(retry_at);
            }
        }
        for s in self.heir_since.iter().flatten() {
            at(*s + self.p.succession_hold());
        }
        for c in self.conflict_since.iter().flatten() {
            at(*c + self.p.dead_after);
        }
        for h in self.handover.iter().flatten() {
            at(h.until);
        }
        t
    }

    fn expire(&mut self, now: Duration, out: &mut Vec<Action>) {
        let fencing = self.p.fencing == Fencing::Required;
        for p in &mut self.peers {
            if p.up && p.heard_at.is_some_and(|h| now >= h + self.p.dead_after) {
                p.up = false;
                if fencing {
                    p.fence = FenceState::Needed;
                }
                out.push(Action::PeerDown {
                    node: p.name.clone(),
                    leaving: false,
                });
            }
            if let FenceState::Failed { retry_at } = p.fence {
                if now >= retry_at {
                    p.fence = FenceState::Needed;
                }
            }
        }
    }

    fn on_heartbeat(&mut self, now: Duration, hb: Heartbeat, out: &mut Vec<Action>) {
        let Some(i) = self.peers.iter().position(|p| p.name == hb.node) else {
            return; // unknown node or our own name: not a peer
        };
        let p = &mut self.peers[i];
        let key = (hb.incarnation, hb.sequence);
        if p.last.is_some_and(|last| key <= last) {
            return; // stale, duplicated or reordered
        }
        if p.last.is_none_or(|(inc, _)| hb.incarnation > inc) {
            p.left = false; // a new life
        }
        p.last = Some(key);
        if p.left {
            return; // the incarnation that left stays gone
        }
        // A frame that ends a silence (more than 1.5 intervals, or a peer
        // coming UP) is answered at once: the silence was likely a cut that
        // also ate our frames, and the peer must hear us now, not up to an
        // interval later, or its view of us would lag ours of it by more
        // than the quorum window's margin allows.
        let gap = self.p.interval * 3 / 2;
        if !p.up || p.heard_at.is_none_or(|h| now > h + gap) {
            self.answer = true;
        }
        p.heard_at = Some(now);
        p.priority = hb.priority;
        p.ready = hb.eligible;
        p.standby = hb.standby;
        p.digest = hb.digest;
        p.claims.iter_mut().for_each(|c| *c = false);
        for &g in &hb.claims {
            if let Some(c) = p.claims.get_mut(g as usize) {
                *c = true;
            }
        }
        if hb.leaving {
            p.left = true;
            p.ready = false;
            p.claims.iter_mut().for_each(|c| *c = false);
            p.fence = FenceState::Clean;
            if p.up {
                p.up = false;
                out.push(Action::PeerDown {
                    node: p.name.clone(),
                    leaving: true,
                });
            }
            return;
        }
        if !p.up {
            p.up = true;
            p.fence = FenceState::Clean;
            self.seen_peer = true;
            out.push(Action::PeerUp {
                node: p.name.clone(),
            });
        }
        for g in 0..self.p.groups {
            if self.peers[i].claims[g] {
                self.last_owner[g] = Some(i);
            }
        }
    }

    fn on_failover(&mut self, now: Duration, group: usize, to: Option<NodeName>) {
        if group >= self.p.groups {
            return;
        }
        let from = if self.owned[group] {
            Some(self.p.me.clone())
        } else {
            self.peers
                .iter()
                .find(|p| p.up && p.claims[group])
                .map(|p| p.name.clone())
        };
        if (from.is_none() && to.is_none()) || (from.is_some() && from == to) {
            return;
        }
        self.handover[group] = Some(Handover {
            from,
            to,
            until: now + 2 * self.p.dead_after,
        });
    }

    /// A better candidate must have been one this long before an owner
    /// gives way to it: by then it has been the heir long enough to take.
    fn preempt_wait(&self) -> Duration {
        self.p.preempt_delay.max(self.p.succession_hold())
    }

    fn quorum_ok(&self, seen: usize) -> bool {
        let n = self.p.nodes.len();
        match self.p.quorum {
            Quorum::Majority => seen * 2 > n,
            Quorum::TwoNode { tie_breaker } => {
                seen >= 2
                    || (if tie_breaker {
                        self.tie_breaker
                    } else {
                        self.seen_peer
                    })
            }
            Quorum::Disabled => true,
        }
    }

    fn is_candidate(&self, p: &Peer) -> bool {
        p.up && p.ready && !p.standby && p.digest == self.digest
    }

    fn name_of(&self, w: Who) -> &str {
        match w {
            Who::Me => &self.p.me,
            Who::Peer(i) => &self.peers[i].name,
        }
    }

    fn rank(&self, w: Who) -> (u8, &str) {
        match w {
            Who::Me => (self.p.priority, &self.p.me),
            Who::Peer(i) => (self.peers[i].priority, &self.peers[i].name),
        }
    }

    /// The best candidate for `g` in this node's view; `heir`: among those
    /// that do not claim it; `failover`: with a failover in progress
    /// applied.
    fn best(&self, g: usize, heir: bool, failover: bool) -> Option<Who> {
        // candidate_since is kept up to date by decide(), before any call.
        let peers = (0..self.peers.len())
            .filter(|&i| self.peers[i].candidate_since.is_some())
            .filter(move |&i| !(heir && self.peers[i].claims[g]))
            .map(Who::Peer);
        let me = (self.ready && !(heir && self.owned[g])).then_some(Who::Me);
        let cands = || peers.clone().chain(me);
        let h = self.handover[g].as_ref().filter(|_| failover);
        let from = h.and_then(|h| h.from.as_deref());
        let to = h.and_then(|h| h.to.as_deref());
        // The former owner stands only if nobody else does.
        let skip = |c: Who| Some(self.name_of(c)) == from;
        let exclude = cands().any(|c| !skip(c));
        cands()
            .filter(|&c| !(exclude && skip(c)))
            .max_by_key(|&c| (Some(self.name_of(c)) == to, self.rank(c)))
    }

    fn raise_fault(&mut self, f: Fault, out: &mut Vec<Action>) {
        if !self.faults.contains(&f) {
            self.faults.push(f.clone());
            out.push(Action::Fault(f));
        }
    }

    fn clear_fault(&mut self, f: &Fault, out: &mut Vec<Action>) {
        if let Some(i) = self.faults.iter().position(|x| x == f) {
            out.push(Action::Recovered(self.faults.remove(i)));
        }
    }

    fn decide(&mut self, now: Duration, out: &mut Vec<Action>) {
        // Quorum and digest agreement.
        let up = self.peers.iter().filter(|p| p.up).count();
        let window = self.p.quorum_window();
        let recent = self
            .peers
            .iter()
            .filter(|p| p.up && p.heard_at.is_some_and(|h| now < h + window))
            .count();
        let quorum = self.quorum_ok(1 + recent);
        if quorum != self.quorum {
            self.quorum = quorum;
            if quorum {
                self.clear_fault(&Fault::QuorumLost, out);
            } else {
                self.raise_fault(Fault::QuorumLost, out);
            }
        }
        let agree = 1 + self
            .peers
            .iter()
            .filter(|p| p.up && p.digest == self.digest)
            .count();
        let digest_ok = self.quorum_ok(agree) && agree * 2 > 1 + up;
        if !digest_ok && agree < 1 + up {
            self.raise_fault(Fault::DigestMismatch, out);
        } else {
            self.clear_fault(&Fault::DigestMismatch, out);
        }
        let unready = if self.leaving {
            Some(Reason::Leaving)
        } else if self.standby {
            Some(Reason::Standby)
        } else if !self.eligible {
            Some(Reason::Ineligible)
        } else if !quorum {
            Some(Reason::QuorumLost)
        } else if !digest_ok {
            Some(Reason::DigestMismatch)
        } else {
            None
        };
        self.ready = unready.is_none();
        for i in 0..self.peers.len() {
            let cand = self.is_candidate(&self.peers[i]);
            let p = &mut self.peers[i];
            p.candidate_since = if cand {
                p.candidate_since.or(Some(now))
            } else {
                None
            };
        }
        // A failover ends once someone other than the former owner claims.
        for g in 0..self.p.groups {
            if let Some(h) = &self.handover[g] {
                let from = h.from.as_deref();
                let taken = (self.owned[g] && from != Some(self.p.me.as_str()))
                    || self
                        .peers
                        .iter()
                        .any(|p| p.up && p.claims[g] && from != Some(p.name.as_str()));
                if taken || now >= h.until {
                    self.handover[g] = None;
                }
            }
        }
        // Releases.
        for g in 0..self.p.groups {
            if !self.owned[g] {
                self.conflict_since[g] = None;
                continue;
            }
            let reason = match &unready {
                Some(r) => Some(r.clone()),
                None => self.release_reason(g, now),
            };
            if let Some(reason) = reason {
                self.owned[g] = false;
                self.keep_from[g] = None;
                self.conflict_since[g] = None;
                out.push(Action::Release { group: g, reason });
            }
        }
        // Heirs and takes.
        let hold = self.p.succession_hold();
        let unfenced = self
            .peers
            .iter()
            .any(|p| !matches!(p.fence, FenceState::Clean | FenceState::Done));
        let mut blocked_by_fencing = false;
        for g in 0..self.p.groups {
            let heir = self.best(g, true, true) == Some(Who::Me);
            self.heir_since[g] = if heir {
                self.heir_since[g].or(Some(now))
            } else {
                None
            };
            let claimed = self.peers.iter().any(|p| p.up && p.claims[g]);
            // Heir only through a failover that some peers may not know
            // of: claim during the hold, so that a peer that thinks itself
            // the heir sees it (if both claim, rank decides).
            self.announced[g] =
                heir && !self.owned[g] && !claimed && self.best(g, true, false) != Some(Who::Me);
            if self.owned[g] || claimed || self.heir_since[g].is_none_or(|s| now < s + hold) {
                continue;
            }
            if unfenced {
                // Keep an announced claim up meanwhile: dropping it would
                // look like a release to the other heirs.
                blocked_by_fencing = true;
                continue;
            }
            let reason = match self.last_owner[g].map(|i| &self.peers[i]) {
                None => Reason::Elected,
                Some(p) if p.up => Reason::OwnerReleased(p.name.clone()),
                Some(p) if p.left => Reason::OwnerLeft(p.name.clone()),
                Some(p) => Reason::OwnerDown(p.name.clone()),
            };
            self.last_owner[g] = None;
            self.keep_from[g] = self.handover[g].take().and_then(|h| h.from);
            self.owned[g] = true;
            self.announced[g] = false;
            out.push(Action::Take { group: g, reason });
        }
        if blocked_by_fencing {
            for p in &mut self.peers {
                if p.fence == FenceState::Needed {
                    p.fence = FenceState::Pending;
                    out.push(Action::Fence {
                        node: p.name.clone(),
                    });
                }
            }
        }
    }

    /// Why this node, ready and owning `g`, should give it up now.
    fn release_reason(&mut self, g: usize, now: Duration) -> Option<Reason> {
        // Two claims: the lower yields at once; the higher gives way only
        // if the lower keeps claiming for dead_after (it cannot hear us).
        let claimants: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].up && self.peers[i].claims[g])
            .collect();
        if let Some(&i) = claimants
            .iter()
            .find(|&&i| self.rank(Who::Peer(i)) > self.rank(Who::Me))
        {
            return Some(Reason::Yielded(self.peers[i].name.clone()));
        }
        match claimants.first() {
            None => self.conflict_since[g] = None,
            Some(&i) => {
                let since = *self.conflict_since[g].get_or_insert(now);
                if now >= since + self.p.dead_after {
                    return Some(Reason::Unanswered(self.peers[i].name.clone()));
                }
            }
        }
        let best = self.best(g, false, true);
        let from = self.handover[g].as_ref().and_then(|h| h.from.as_deref());
        if from == Some(self.p.me.as_str()) && best.is_some_and(|b| b != Who::Me) {
            return Some(Reason::Failover);
        }
        if let (true, Some(Who::Peer(i))) = (self.p.preempt, best) {
            let b = &self.peers[i];
            let waited = b
                .candidate_since
                .is_some_and(|s| now >= s + self.preempt_wait());
            if waited && self.keep_from[g].as_ref() != Some(&b.name) {
                return Some(Reason::Preempted(b.name.clone()));
            }
        }
        None
    }

    fn outgoing(&self) -> Outgoing {
        Outgoing {
            node: self.p.me.clone(),
            incarnation: self.incarnation,
            priority: self.p.priority,
            eligible: self.ready,
            claims: (0..self.p.groups)
                .filter(|&g| self.owned[g] || self.announced[g])
                .map(|g| g as u16)
                .collect(),
            leaving: self.leaving,
            standby: self.standby,
            digest: self.digest,
        }
    }

    /// A heartbeat every interval on a fixed schedule (a shell that ticks
    /// every interval sends on every tick), and at once when the content
    /// changes (a release or take reaches the peers without waiting).
    fn send(&mut self, now: Duration, out: &mut Vec<Action>) {
        let o = self.outgoing();
        let periodic = now >= self.next_beat;
        if periodic {
            self.next_beat += self.p.interval;
            if self.next_beat <= now {
                self.next_beat = now + self.p.interval; // after a stall
            }
        }
        if periodic || std::mem::take(&mut self.answer) || self.last_sent.as_ref() != Some(&o) {
            out.push(Action::Send(o.clone()));
            self.last_sent = Some(o);
        }
    }
}

fn claims_of(v: &[bool]) -> Vec<u16> {
    (0..v.len()).filter(|&g| v[g]).map(|g| g as u16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = DEFAULT_INTERVAL;
    const D: Duration = Duration::from_millis(200);
    /// One-way delay of the test network.
    const DELAY: Duration = Duration::from_millis(1);
    const MS: Duration = Duration::from_millis(1);

    /// A few machines on an instant-ish network: every frame arrives after
    /// `DELAY` unless the link is cut; ticks at `next_timeout`. After every
    /// step it asserts that no group has two quorate owners.
    struct Lab {
        now: Duration,
        params: Vec<ClusterParams>,
        nodes: Vec<Option<Cluster>>,
        incarnation: Vec<u64>,
        sequence: Vec<u64>,
        cut: Vec<Vec<bool>>,
        wire: Vec<(Duration, usize, Heartbeat)>,
        log: Vec<(Duration, usize, Action)>,
    }

    impl Lab {
        /// Nodes named by `prios` (name, priority); none started yet.
        fn new(prios: &[(&str, u8)], groups: usize, tweak: impl Fn(&mut ClusterParams)) -> Lab {
            let names: Vec<&str> = prios.iter().map(|(n, _)| *n).collect();
            let params: Vec<ClusterParams> = prios
                .iter()
                .map(|(n, prio)| {
                    let mut p = ClusterParams::new(n, *prio, &names, groups);
                    tweak(&mut p);
                    p
                })
                .collect();
            let n = prios.len();
            Lab {
                now: Duration::ZERO,
                params,
                nodes: (0..n).map(|_| None).collect(),
                incarnation: vec![0; n],
                sequence: vec![0; n],
                cut: vec![vec![false; n]; n],
                wire: Vec::new(),
                log: Vec::new(),
            }
        }

        fn idx(&self, name: &str) -> usize {
            self.params.iter().position(|p| p.me == name).unwrap()
        }

        fn start(&mut self, name: &str) {
            let i = self.idx(name);
            self.incarnation[i] += 1;
            let c = Cluster::new(self.params[i].clone(), self.now, self.incarnation[i]).unwrap();
            self.nodes[i] = Some(c);
            self.input(name, |now| Input::Eligibility {
                now,
                eligible: true,
            });
        }

        fn start_all(&mut self) {
            let names: Vec<String> = self.params.iter().map(|p| p.me.clone()).collect();
            for n in names {
                self.start(&n);
            }
        }

        fn crash(&mut self, name: &str) {
            let i = self.idx(name);
            self.nodes[i] = None;
        }

        /// Cuts (or restores) both directions between `a` and `b`.
        fn cut(&mut self, a: &str, b: &str, cut: bool) {
            let (a, b) = (self.idx(a), self.idx(b));
            self.cut[a][b] = cut;
            self.cut[b][a] = cut;
        }

        fn node(&self, name: &str) -> &Cluster {
            self.nodes[self.idx(name)].as_ref().unwrap()
        }

        fn input(&mut self, name: &str, f: impl FnOnce(Duration) -> Input) {
            let i = self.idx(name);
            let input = f(self.now);
            self.feed(i, input);
        }

        fn feed(&mut self, i: usize, input: Input) {
            let Some(c) = self.nodes[i].as_mut() else {
                return;
            };
            for a in c.handle(input) {
                if let Action::Send(o) = &a {
                    self.sequence[i] += 1;
                    let hb = o.to_heartbeat(1, self.sequence[i], 0);
                    for to in 0..self.nodes.len() {
                        if to != i && !self.cut[i][to] {
                            self.wire.push((self.now + DELAY, to, hb.clone()));
                        }
                    }
                } else {
                    self.log.push((self.now, i, a));
                }
            }
            self.assert_safe();
        }

        fn assert_safe(&self) {
            for g in 0..self.params[0].groups {
                let quorate_owners = self
                    .nodes
                    .iter()
                    .flatten()
                    .filter(|c| c.owns(g) && c.has_quorum())
                    .count();
                assert!(
                    quorate_owners <= 1,
                    "two quorate owners of {g} at {:?}",
                    self.now
                );
            }
        }

        fn run_for(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                let delivery = self.wire.iter().map(|w| w.0).min();
                let tick = (0..self.nodes.len())
                    .filter_map(|i| self.nodes[i].as_ref().map(|c| (c.next_timeout(), i)))
                    .min();
                let next = match (delivery, tick) {
                    (Some(d), Some((t, _))) => d.min(t),
                    (Some(d), None) => d,
                    (None, Some((t, _))) => t,
                    (None, None) => end,
                };
                if next > end {
                    self.now = end;
                    return;
                }
                self.now = next.max(self.now);
                if delivery == Some(next) {
                    let k = self.wire.iter().position(|w| w.0 == next).unwrap();
                    let (_, to, hb) = self.wire.remove(k);
                    let now = self.now;
                    self.feed(to, Input::Heartbeat { now, hb });
                } else if let Some((_, i)) = tick {
                    let now = self.now;
                    self.feed(i, Input::Tick { now });
                }
            }
        }

        fn owners(&self, g: usize) -> Vec<&str> {
            self.nodes
                .iter()
                .flatten()
                .filter(|c| c.owns(g))
                .map(|c| c.params().me.as_str())
                .collect()
        }

        /// Actions of `name` since `since`, in order.
        fn actions(&self, name: &str, since: Duration) -> Vec<(Duration, Action)> {
            let i = self.idx(name);
            self.log
                .iter()
                .filter(|(t, n, _)| *n == i && *t >= since)
                .map(|(t, _, a)| (*t, a.clone()))
                .collect()
        }

        fn takes(&self, name: &str, since: Duration) -> Vec<(Duration, usize, Reason)> {
            self.actions(name, since)
                .into_iter()
                .filter_map(|(t, a)| match a {
                    Action::Take { group, reason } => Some((t, group, reason)),
                    _ => None,
                })
                .collect()
        }

        fn releases(&self, name: &str, since: Duration) -> Vec<(Duration, usize, Reason)> {
            self.actions(name, since)
                .into_iter()
                .filter_map(|(t, a)| match a {
                    Action::Release { group, reason } => Some((t, group, reason)),
                    _ => None,
                })
                .collect()
        }
    }

    const ABC: &[(&str, u8)] = &[("a", 30), ("b", 20), ("c", 10)];

    fn settled(prios: &[(&str, u8)], groups: usize, tweak: impl Fn(&mut ClusterParams)) -> Lab {
        let mut lab = Lab::new(prios, groups, tweak);
        lab.start_all();
        lab.run_for(Duration::from_secs(1));
        lab
    }

    #[test]
    fn params_are_validated() {
        let mut p = ClusterParams::new("x", 1, &["a", "b"], 1);
        assert_eq!(p.validate(), Err(ParamsError::NotAMember("x".into())));
        p = ClusterParams::new("a", 1, &["a", "b", "a"], 1);
        assert_eq!(p.validate(), Err(ParamsError::Duplicate("a".into())));
        p = ClusterParams::new("a", 1, &["a", "b", "c"], 1);
        p.quorum = Quorum::TwoNode { tie_breaker: false };
        assert_eq!(p.validate(), Err(ParamsError::TwoNodeSize(3)));
        p = ClusterParams::new("a", 1, &["a", "b"], 1);
        p.dead_after = I;
        assert!(matches!(
            p.validate(),
            Err(ParamsError::DeadAfterTooShort { .. })
        ));
        p.dead_after = 4 * I;
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.quorum_window(), 2 * I);
        assert_eq!(p.succession_hold(), 4 * I);
        p.dead_after = 2 * I;
        assert_eq!(p.quorum_window(), I * 3 / 2);
    }

    #[test]
    fn cold_start_elects_the_best_once() {
        let lab = settled(ABC, 2, |_| {});
        assert_eq!(lab.owners(0), ["a"]);
        assert_eq!(lab.owners(1), ["a"]);
        let takes = lab.takes("a", Duration::ZERO);
        assert_eq!(takes.len(), 2);
        // Ready once it hears a peer, then the succession hold.
        assert!(takes[0].0 >= D && takes[0].0 <= D + I, "{takes:?}");
        assert_eq!(takes[0].2, Reason::Elected);
        assert!(lab.takes("b", Duration::ZERO).is_empty());
        assert!(lab.takes("c", Duration::ZERO).is_empty());
        assert!(lab.peers_agree());
    }

    impl Lab {
        fn peers_agree(&self) -> bool {
            self.nodes.iter().flatten().all(|c| {
                c.has_quorum() && c.is_ready() && c.peers().iter().all(|p| p.up && p.digest_matches)
            })
        }
    }

    #[test]
    fn owner_crash_next_best_takes_after_dead_after() {
        let mut lab = settled(ABC, 1, |_| {});
        let t0 = lab.now;
        lab.crash("a");
        lab.run_for(Duration::from_secs(1));
        let takes = lab.takes("b", t0);
        assert_eq!(takes.len(), 1, "{takes:?}");
        let (t, _, reason) = &takes[0];
        assert_eq!(*reason, Reason::OwnerDown("a".into()));
        // a's last frame left at most one interval before the crash.
        assert!(*t >= t0 + D - I && *t <= t0 + D + DELAY, "{:?}", *t - t0);
        assert!(lab.takes("c", t0).is_empty());
        assert_eq!(lab.owners(0), ["b"]);
    }

    #[test]
    fn leaving_owner_is_replaced_at_once() {
        let mut lab = settled(ABC, 2, |_| {});
        let t0 = lab.now;
        lab.input("a", |now| Input::Leave { now });
        assert_eq!(lab.releases("a", t0).len(), 2);
        lab.run_for(10 * MS);
        let takes = lab.takes("b", t0);
        assert_eq!(takes.len(), 2);
        assert!(
            takes
                .iter()
                .all(|(t, _, r)| *t <= t0 + DELAY && *r == Reason::OwnerLeft("a".into()))
        );
        assert!(lab.actions("b", t0).contains(&(
            t0 + DELAY,
            Action::PeerDown {
                node: "a".into(),
                leaving: true
            }
        )));
        // The node that left stays gone while it keeps saying LEAVING.
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["b"]);
        assert!(lab.node("b").peers().iter().any(|p| p.node == "a" && !p.up));
    }

    /// b owns, then a (better) starts at t0: returns (b's release, a's take).
    fn preemption(
        tweak: impl Fn(&mut ClusterParams),
    ) -> (Lab, Duration, Option<Duration>, Option<Duration>) {
        let mut lab = Lab::new(ABC, 1, tweak);
        lab.start("b");
        lab.start("c");
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["b"]);
        let t0 = lab.now;
        lab.start("a");
        lab.run_for(Duration::from_secs(2));
        let released = lab.releases("b", t0).first().map(|r| r.0);
        let taken = lab.takes("a", t0).first().map(|r| r.0);
        (lab, t0, released, taken)
    }

    #[test]
    fn preempt_hands_over_after_the_succession_hold() {
        let (lab, t0, released, taken) = preemption(|_| {});
        let (released, taken) = (released.unwrap(), taken.unwrap());
        // a is ready at once (it hears b and c within a delay), b gives way
        // once a has been a candidate for dead_after, a takes on b's release.
        assert!(
            released >= t0 + D && released <= t0 + D + 3 * DELAY,
            "{:?}",
            released - t0
        );
        assert_eq!(taken, released + DELAY);
        assert_eq!(lab.releases("b", t0)[0].2, Reason::Preempted("a".into()));
        assert_eq!(lab.takes("a", t0)[0].2, Reason::OwnerReleased("b".into()));
        assert_eq!(lab.owners(0), ["a"]);
    }

    #[test]
    fn preempt_delay_postpones_the_handover() {
        let (_, t0, released, _) = preemption(|p| p.preempt_delay = 10 * I);
        let released = released.unwrap();
        assert!(released >= t0 + 10 * I && released <= t0 + 10 * I + 3 * DELAY);
    }

    #[test]
    fn without_preempt_the_owner_keeps_the_group() {
        let (mut lab, t0, released, taken) = preemption(|p| p.preempt = false);
        assert_eq!((released, taken), (None, None));
        assert_eq!(lab.owners(0), ["b"]);
        // It changes hands when b fails: the heir (a) takes over.
        let t1 = lab.now;
        lab.crash("b");
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["a"]);
        assert!(lab.takes("a", t0)[0].0 <= t1 + D + DELAY);
    }

    /// A lone machine that owns group 0 (quorum disabled).
    fn lone_owner(me: &str, prio: u8) -> (Cluster, Duration) {
        let mut p = ClusterParams::new(me, prio, &["a", "b", "c"], 1);
        p.quorum = Quorum::Disabled;
        let mut c = Cluster::new(p, Duration::ZERO, 1).unwrap();
        c.handle(Input::Eligibility {
            now: Duration::ZERO,
            eligible: true,
        });
        let acts = c.handle(Input::Tick { now: D });
        assert!(acts.contains(&Action::Take {
            group: 0,
            reason: Reason::Elected
        }));
        (c, D)
    }

    fn frame(node: &str, prio: u8, seq: u64, claims: &[u16]) -> Heartbeat {
        Heartbeat {
            cluster_id: 1,
            node: node.into(),
            incarnation: 1,
            sequence: seq,
            sent_at_ms: 0,
            priority: prio,
            eligible: true,
            claims: claims.to_vec(),
            leaving: false,
            standby: false,
            digest: [0; 32],
        }
    }

    #[test]
    fn of_two_claims_the_lower_yields_at_once() {
        let (mut b, t) = lone_owner("b", 20);
        let acts = b.handle(Input::Heartbeat {
            now: t,
            hb: frame("a", 30, 1, &[0]),
        });
        assert!(acts.contains(&Action::Release {
            group: 0,
            reason: Reason::Yielded("a".into())
        }));
        assert!(!b.owns(0));
        // A reordered older frame without the claim changes nothing.
        b.handle(Input::Heartbeat {
            now: t + MS,
            hb: frame("a", 30, 0, &[]),
        });
        assert_eq!(b.peers()[0].claims, [0]);
        let acts = b.handle(Input::Tick { now: t + D / 2 });
        assert!(!acts.iter().any(|a| matches!(a, Action::Take { .. })));
    }

    #[test]
    fn the_higher_keeps_until_the_lower_claims_for_dead_after() {
        let (mut a, t) = lone_owner("a", 30);
        // b keeps claiming although a claims too: b evidently does not hear a.
        let mut seq = 0;
        let mut released = None;
        for k in 0..10u32 {
            seq += 1;
            let now = t + k * I;
            let acts = a.handle(Input::Heartbeat {
                now,
                hb: frame("b", 20, seq, &[0]),
            });
            if acts.iter().any(|a| {
                matches!(
                    a,
                    Action::Release {
                        reason: Reason::Unanswered(_),
                        ..
                    }
                )
            }) {
                released = Some(now - t);
                break;
            }
            assert!(a.owns(0), "released early at {:?}", now - t);
        }
        assert_eq!(released, Some(D));
    }

    #[test]
    fn partition_minority_releases_majority_keeps_one_owner() {
        let mut lab = settled(ABC, 2, |_| {});
        let t0 = lab.now;
        lab.cut("a", "b", true);
        lab.cut("a", "c", true);
        lab.run_for(Duration::from_secs(1));
        let released = lab.releases("a", t0);
        assert_eq!(released.len(), 2);
        assert_eq!(released[0].2, Reason::QuorumLost);
        let window = ClusterParams::new("a", 0, &["a"], 0).quorum_window();
        assert!(released[0].0 <= t0 + window + DELAY);
        let takes = lab.takes("b", t0);
        assert_eq!(takes.len(), 2);
        assert_eq!(takes[0].2, Reason::OwnerDown("a".into()));
        assert!(takes[0].0 > released[0].0);
        assert!(lab.node("a").faults().contains(&Fault::QuorumLost));
        assert_eq!((lab.owners(0), lab.owners(1)), (vec!["b"], vec!["b"]));
        // Healed: a rejoins, and preempts b after the succession hold.
        let t1 = lab.now;
        lab.cut("a", "b", false);
        lab.cut("a", "c", false);
        lab.run_for(Duration::from_secs(1));
        assert_eq!((lab.owners(0), lab.owners(1)), (vec!["a"], vec!["a"]));
        assert!(lab.takes("a", t1)[0].0 <= t1 + I + D + 3 * DELAY);
        assert!(lab.takes("c", Duration::ZERO).is_empty());
    }

    #[test]
    fn fencing_required_fences_before_taking() {
        for success in [true, false] {
            let mut lab = settled(ABC, 1, |p| p.fencing = Fencing::Required);
            assert_eq!(lab.owners(0), ["a"]);
            let t0 = lab.now;
            lab.crash("a");
            lab.run_for(D + I);
            let fence = Action::Fence { node: "a".into() };
            let asked: Vec<_> = lab
                .actions("b", t0)
                .into_iter()
                .filter(|(_, a)| *a == fence)
                .collect();
            assert_eq!(asked.len(), 1, "{asked:?}");
            assert!(lab.takes("b", t0).is_empty(), "took before fencing");
            assert!(lab.actions("c", t0).iter().all(|(_, a)| *a != fence));
            assert!(lab.node("b").peers()[0].needs_fencing);
            let t1 = lab.now;
            lab.input("b", |now| Input::FenceDone {
                now,
                node: "a".into(),
                success,
            });
            lab.run_for(10 * MS);
            if success {
                assert_eq!(lab.takes("b", t1).len(), 1);
                assert_eq!(lab.owners(0), ["b"]);
            } else {
                assert!(lab.takes("b", t1).is_empty());
                assert!(
                    lab.actions("b", t1)
                        .contains(&(t1, Action::Fault(Fault::FenceFailed("a".into()))))
                );
                // Retried after dead_after.
                lab.run_for(D);
                let again = lab
                    .actions("b", t1)
                    .into_iter()
                    .filter(|(_, a)| *a == fence)
                    .count();
                assert_eq!(again, 1);
            }
        }
    }

    #[test]
    fn a_node_with_another_digest_faults_and_takes_nothing() {
        let mut lab = Lab::new(ABC, 1, |_| {});
        lab.start_all();
        lab.input("a", |now| Input::Digest {
            now,
            digest: [1; 32],
        });
        lab.run_for(Duration::from_secs(1));
        // a (the best) disagrees with b and c: b owns.
        assert_eq!(lab.owners(0), ["b"]);
        let faults: Vec<_> = lab
            .actions("a", Duration::ZERO)
            .into_iter()
            .filter(|(_, a)| *a == Action::Fault(Fault::DigestMismatch))
            .collect();
        assert_eq!(faults.len(), 1);
        assert!(!lab.node("a").is_ready());
        assert!(lab.node("b").faults().is_empty());
        assert!(!lab.node("b").peers()[0].digest_matches);
        // Without c, b sees one node that agrees of two: nobody may own.
        let t0 = lab.now;
        lab.crash("c");
        lab.run_for(Duration::from_secs(1));
        assert!(lab.owners(0).is_empty());
        assert!(lab.node("b").faults().contains(&Fault::DigestMismatch));
        // The operator fixes a: it agrees again and preempts after the hold.
        lab.input("a", |now| Input::Digest {
            now,
            digest: [0; 32],
        });
        assert!(
            lab.actions("a", t0)
                .iter()
                .any(|(_, a)| *a == Action::Recovered(Fault::DigestMismatch))
        );
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["a"]);
    }

    #[test]
    fn two_node_with_a_tie_breaker() {
        let two = &[("a", 30), ("b", 20)];
        let mut lab = settled(two, 1, |p| p.quorum = Quorum::TwoNode { tie_breaker: true });
        assert_eq!(lab.owners(0), ["a"]);
        let t0 = lab.now;
        lab.crash("a");
        lab.run_for(Duration::from_secs(1));
        // Alone and the tie-breaker has not answered: no quorum.
        assert!(lab.owners(0).is_empty());
        assert!(!lab.node("b").has_quorum());
        lab.input("b", |now| Input::TieBreaker {
            now,
            reachable: true,
        });
        let t1 = lab.now;
        lab.run_for(Duration::from_secs(1));
        let takes = lab.takes("b", t0);
        assert_eq!(takes.len(), 1);
        // b only just became ready: the succession hold applies.
        assert_eq!(takes[0].0, t1 + D);
        // Losing the tie-breaker too: release at once.
        lab.input("b", |now| Input::TieBreaker {
            now,
            reachable: false,
        });
        assert!(lab.owners(0).is_empty());
    }

    #[test]
    fn two_node_without_a_tie_breaker_waits_for_all_once() {
        let two = &[("a", 30), ("b", 20)];
        let tweak = |p: &mut ClusterParams| p.quorum = Quorum::TwoNode { tie_breaker: false };
        let mut lab = settled(two, 1, tweak);
        let t0 = lab.now;
        lab.crash("a");
        lab.run_for(Duration::from_secs(1));
        // b has seen a since it started: the survivor carries on.
        let takes = lab.takes("b", t0);
        assert_eq!(takes.len(), 1);
        assert!(takes[0].0 <= t0 + D + DELAY);
        // A node started alone never saw its peer: no quorum.
        let mut alone = Lab::new(two, 1, tweak);
        alone.start("b");
        alone.run_for(Duration::from_secs(2));
        assert!(alone.owners(0).is_empty());
        assert!(!alone.node("b").has_quorum());
    }

    #[test]
    fn ineligible_or_standby_releases_at_once() {
        let mut lab = settled(ABC, 2, |_| {});
        let t0 = lab.now;
        lab.input("a", |now| Input::Eligibility {
            now,
            eligible: false,
        });
        assert!(lab.owners(0).is_empty() && lab.owners(1).is_empty());
        assert_eq!(lab.releases("a", t0)[0].2, Reason::Ineligible);
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["b"]);
        lab.input("b", |now| Input::Standby { now, on: true });
        assert_eq!(lab.releases("b", t0)[0].2, Reason::Standby);
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["c"]);
        // a is back: everything returns to it.
        lab.input("a", |now| Input::Eligibility {
            now,
            eligible: true,
        });
        lab.run_for(Duration::from_secs(1));
        assert_eq!((lab.owners(0), lab.owners(1)), (vec!["a"], vec!["a"]));
    }

    #[test]
    fn failover_moves_a_group_to_the_named_node_for_good() {
        let mut lab = settled(ABC, 2, |_| {});
        let t0 = lab.now;
        for n in ["a", "b", "c"] {
            lab.input(n, |now| Input::Failover {
                now,
                group: 0,
                to: Some("c".into()),
            });
        }
        assert_eq!(lab.releases("a", t0), [(t0, 0, Reason::Failover)]);
        lab.run_for(Duration::from_secs(2));
        assert_eq!(lab.owners(0), ["c"]);
        assert_eq!(lab.owners(1), ["a"]);
        // c is not the best: it claims during its hold, then owns.
        let takes = lab.takes("c", t0);
        assert_eq!(takes.len(), 1);
        assert!(takes[0].0 <= t0 + D + 2 * DELAY);
        assert!(lab.takes("b", t0).is_empty());
        // a does not preempt it back.
        assert!(lab.takes("a", t0).is_empty());
    }

    #[test]
    fn restart_with_a_new_incarnation_is_a_new_life() {
        let mut lab = settled(ABC, 1, |_| {});
        let t0 = lab.now;
        lab.input("a", |now| Input::Leave { now });
        lab.run_for(10 * MS);
        assert_eq!(lab.owners(0), ["b"]);
        lab.crash("a");
        lab.start("a");
        lab.run_for(Duration::from_secs(1));
        assert!(
            lab.node("b")
                .peers()
                .iter()
                .any(|p| p.node == "a" && p.up && p.incarnation == Some(2))
        );
        assert_eq!(lab.owners(0), ["a"]);
        // Ready once it hears a peer (within an interval), then the hold.
        assert!(lab.takes("a", t0)[0].0 <= t0 + 10 * MS + I + D + 3 * DELAY);
    }

    #[test]
    fn heartbeats_go_out_every_interval_and_on_change() {
        let mut p = ClusterParams::new("a", 1, &["a", "b", "c"], 1);
        p.quorum = Quorum::Disabled;
        let mut c = Cluster::new(p, Duration::ZERO, 7).unwrap();
        let sends = |acts: &[Action]| acts.iter().filter(|a| matches!(a, Action::Send(_))).count();
        assert_eq!(
            sends(&c.handle(Input::Tick {
                now: Duration::ZERO
            })),
            1
        );
        assert_eq!(c.next_timeout(), I);
        assert_eq!(sends(&c.handle(Input::Tick { now: I / 2 })), 0);
        // A change goes out at once and does not shift the schedule.
        let acts = c.handle(Input::Eligibility {
            now: I * 3 / 4,
            eligible: true,
        });
        let Some(Action::Send(o)) = acts.iter().find(|a| matches!(a, Action::Send(_))) else {
            panic!("no send: {acts:?}");
        };
        assert!(o.eligible && o.incarnation == 7 && o.node == "a");
        assert_eq!(sends(&c.handle(Input::Tick { now: I })), 1);
    }
}
