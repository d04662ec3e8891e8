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
//! - A peer is UP from its first valid frame until `dead_after` passes
//!   without a newer one, or at once when it says LEAVING. Frames older
//!   than the freshest seen (incarnation, sequence) are ignored, so a
//!   reordered or duplicated frame never rolls a peer's state back.
//! - Quorum ([`Quorum`]): by default a majority of the configured nodes,
//!   counting this node and its UP peers.
//! - This node is *ready* (and says so in its frames' `eligible` bit) when
//!   it is locally eligible, not in standby, not leaving, sees a quorum,
//!   agrees on the digest with a quorum of the nodes it sees, and has
//!   *settled*: it has heard every configured peer, or `dead_after` has
//!   passed since it (re)gained quorum. Settling is what makes a started or
//!   rejoining node learn the current claims before it claims anything
//!   (otherwise it would claim a group an unheard peer still holds); a
//!   normal restart settles within one interval, once every peer is heard.
//!   Peers count only *ready* nodes as candidates, so an owner never hands
//!   a group to a node that cannot take it yet.
//! - Per group, the candidates are this node (if ready) and the UP peers
//!   that are ready, not in standby and have this node's digest. The best
//!   is the highest (priority, name); a [`Input::Failover`] handover may
//!   exclude the former owner and put its target first for one election.
//! - Take: ready, best candidate, no UP peer claims the group, and (with
//!   [`Fencing::Required`]) every peer that went DOWN without LEAVING has
//!   been fenced since.
//! - Release: not ready any more (everything at once); an UP peer with a
//!   higher (priority, name) claims the group too (the lower yields at
//!   once); a lower peer keeps claiming it for `dead_after` although this
//!   node claims it (that peer does not hear this one: give way rather than
//!   keep two owners); preemption by a better candidate that has been a
//!   candidate for `preempt_delay` (only with `preempt`); a failover.
//!
//! # Safety (Majority quorum)
//!
//! Two nodes can both own a group only if each took it while not seeing
//! the other's claim: through a partition or a peer declared DOWN, or
//! within one delivery delay of a race. A partition side without a
//! majority loses quorum and releases at once; the majority side takes a
//! group only after the former owner has been silent for `dead_after`, so
//! (with symmetric partitions and delays well below `dead_after`) the
//! former owner has stopped seeing a quorum by then. A node that regains
//! quorum settles first, so it learns the live claims before claiming. A
//! race between two claims is ended by the lower one yielding. See the
//! simulator for what is and is not guaranteed under message delay.

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
    /// its UP peers.
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
    /// A peer silent this long is DOWN. At least 3 intervals: an owner
    /// keeps its groups only while it has heard a quorum within
    /// [`ClusterParams::quorum_window`] = `dead_after` - 2 intervals.
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
    /// quorum: `dead_after` - 2 intervals, so that an owner cut off from
    /// the majority lets go of its groups before the majority declares it
    /// DOWN and takes them. (The majority measures `dead_after` from the
    /// last frame it got from the owner, which can be one lost frame, one
    /// interval, older than the owner's last frame from it: one interval
    /// of the margin covers that, the other the delivery delay.)
    pub fn quorum_window(&self) -> Duration {
        self.dead_after.saturating_sub(2 * self.interval)
    }

    /// How long this node must have been ready before it takes a group it
    /// does not hold: one interval, so that its readiness has reached the
    /// peers, and a claim a peer made meanwhile has reached it, before it
    /// claims (otherwise two nodes that became ready at once both take).
    /// An owner preempted in favour of a node waits at least this long
    /// too, so the handover has no gap beyond the delivery delay.
    pub fn take_hold(&self) -> Duration {
        self.interval
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
        if self.dead_after < 3 * self.interval {
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
    #[error("dead_after ({dead_after:?}) must be at least 3 intervals ({interval:?} each)")]
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
    /// Time passes. Call at least every `interval`, or better at
    /// [`Cluster::next_timeout`]; more often is harmless.
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
    /// owner holds the group. A node that never gets it simply follows the
    /// normal ranking.
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
    /// Ready to own: locally eligible, quorate, digest agreed, settled.
    pub eligible: bool,
    /// Groups this node owns, ascending.
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
    /// The fencing hook failed against this node; retried every
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
    /// Dropped if nobody but `from` has claimed the group by then (a
    /// handover takes about an interval; a node that did not get the
    /// command keeps waiting for `from`, which then takes the group back).
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
    /// Per group: claimed but not owned yet, since (see `decide`).
    pending: Vec<Option<Duration>>,
    /// Per owned group: do not preempt back to this node (failover).
    keep_from: Vec<Option<NodeName>>,
    quorum_since: Option<Duration>,
    /// Since when this node has been ready, continuously.
    ready_since: Option<Duration>,
    /// Some peer was UP at some point since start (two-node wait_for_all).
    seen_peer: bool,
    ready: bool,
    faults: Vec<Fault>,
    last_sent: Option<(Duration, Outgoing)>,
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
            pending: vec![None; g],
            quorum_since: None,
            ready_since: None,
            seen_peer: false,
            ready: false,
            faults: Vec::new(),
            last_sent: None,
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
        self.quorum_since.is_some()
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
    /// that no decision waits: the next heartbeat, a peer's deadline, the
    /// end of settling, a preemption or handover deadline, a fence retry.
    pub fn next_timeout(&self) -> Duration {
        let now = self.now;
        let mut t = match &self.last_sent {
            Some((at, _)) => *at + self.p.interval,
            None => now,
        };
        let mut at = |d: Duration| {
            if d > now && d < t {
                t = d;
            }
        };
        for p in &self.peers {
            if p.up {
                if let Some(h) = p.heard_at {
                    at(h + self.p.quorum_window());
                    at(h + self.p.dead_after);
                }
            }
            if let Some(s) = p.candidate_since {
                at(s + self.preempt_wait());
            }
            if let FenceState::Failed { retry_at } = p.fence {
                at(retry_at);
            }
        }
        if let Some(s) = self.quorum_since {
            at(s + self.p.dead_after);
        }
        if let Some(s) = self.ready_since {
            at(s + self.p.take_hold());
        }
        for s in self.pending.iter().flatten() {
            at(*s + self.p.take_hold());
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
            until: now + self.p.dead_after,
        });
    }

    /// A better candidate must have been one this long before an owner
    /// gives way to it.
    fn preempt_wait(&self) -> Duration {
        self.p.preempt_delay.max(self.p.take_hold())
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

    /// The best candidate for `g` in this node's view; `failover`: as
    /// changed by a `hactl failover` in progress.
    fn best(&self, g: usize, failover: bool) -> Option<Who> {
        let mut cands: Vec<Who> = (0..self.peers.len())
            .filter(|&i| self.is_candidate(&self.peers[i]))
            .map(Who::Peer)
            .collect();
        if self.ready {
            cands.push(Who::Me);
        }
        let h = self.handover[g].as_ref().filter(|_| failover);
        if let Some(from) = h.and_then(|h| h.from.as_deref()) {
            if cands.iter().any(|&c| self.name_of(c) != from) {
                cands.retain(|&c| self.name_of(c) != from);
            }
        }
        let to = h.and_then(|h| h.to.as_deref());
        cands
            .into_iter()
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
        let dead_after = self.p.dead_after;
        // Quorum and digest agreement.
        let up = self.peers.iter().filter(|p| p.up).count();
        let window = self.p.quorum_window();
        let recent = self
            .peers
            .iter()
            .filter(|p| p.up && p.heard_at.is_some_and(|h| now < h + window))
            .count();
        let quorum = self.quorum_ok(1 + recent);
        match (quorum, self.quorum_since) {
            (true, None) => {
                self.quorum_since = Some(now);
                self.clear_fault(&Fault::QuorumLost, out);
            }
            (false, Some(_)) => {
                self.quorum_since = None;
                self.raise_fault(Fault::QuorumLost, out);
            }
            _ => {}
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
        let settled = self.peers.iter().all(|p| p.up)
            || self.quorum_since.is_some_and(|s| now >= s + dead_after);
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
        } else if !settled {
            // Only after (re)gaining quorum, when nothing is owned.
            Some(Reason::QuorumLost)
        } else {
            None
        };
        self.ready = unready.is_none();
        self.ready_since = match (self.ready, self.ready_since) {
            (true, None) => Some(now),
            (true, s) => s,
            (false, _) => None,
        };
        for i in 0..self.peers.len() {
            let cand = self.is_candidate(&self.peers[i]);
            let p = &mut self.peers[i];
            p.candidate_since = match (cand, p.candidate_since) {
                (true, None) => Some(now),
                (true, s) => s,
                (false, _) => None,
            };
        }
        // Handovers end once someone other than the former owner claims.
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
        // Takes.
        let hold = self.p.take_hold();
        let held = self.ready_since.is_some_and(|s| now >= s + hold);
        let unfenced = self
            .peers
            .iter()
            .any(|p| p.fence != FenceState::Clean && p.fence != FenceState::Done);
        let mut blocked_by_fencing = false;
        for g in 0..self.p.groups {
            if self.owned[g] {
                continue;
            }
            if !held
                || self.best(g, true) != Some(Who::Me)
                || self.peers.iter().any(|p| p.up && p.claims[g])
            {
                self.pending[g] = None;
                continue;
            }
            if unfenced {
                blocked_by_fencing = true;
                self.pending[g] = None;
                continue;
            }
            // Best only because of a failover that some peers may not have
            // got: claim first, so that a peer that ranks itself first sees
            // it; own only if no higher claim shows up within the hold.
            if self.best(g, false) != Some(Who::Me) {
                match self.pending[g] {
                    None => {
                        self.pending[g] = Some(now);
                        continue;
                    }
                    Some(s) if now < s + hold => continue,
                    Some(_) => {}
                }
            }
            self.pending[g] = None;
            let reason = match self.last_owner[g].map(|i| &self.peers[i]) {
                None => Reason::Elected,
                Some(p) if p.up => Reason::OwnerReleased(p.name.clone()),
                Some(p) if p.left => Reason::OwnerLeft(p.name.clone()),
                Some(p) => Reason::OwnerDown(p.name.clone()),
            };
            self.last_owner[g] = None;
            self.keep_from[g] = self.handover[g].as_ref().and_then(|h| h.from.clone());
            self.handover[g] = None;
            self.owned[g] = true;
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
        let best = self.best(g, true);
        let h = self.handover[g].as_ref();
        if h.and_then(|h| h.from.as_deref()) == Some(self.p.me.as_str())
            && best.is_some_and(|b| b != Who::Me)
        {
            return Some(Reason::Failover);
        }
        if let Some(Who::Peer(i)) = best {
            let b = &self.peers[i];
            let waited = b
                .candidate_since
                .is_some_and(|s| now >= s + self.preempt_wait());
            if self.p.preempt && waited && self.keep_from[g].as_ref() != Some(&b.name) {
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
                .filter(|&g| self.owned[g] || self.pending[g].is_some())
                .map(|g| g as u16)
                .collect(),
            leaving: self.leaving,
            standby: self.standby,
            digest: self.digest,
        }
    }

    /// A heartbeat every interval, and at once when its content changes
    /// (a release or take reaches the peers without waiting for the tick).
    fn send(&mut self, now: Duration, out: &mut Vec<Action>) {
        let o = self.outgoing();
        let due = match &self.last_sent {
            None => true,
            Some((at, last)) => *last != o || now >= *at + self.p.interval,
        };
        if due {
            out.push(Action::Send(o.clone()));
            self.last_sent = Some((now, o));
        }
    }
}

fn claims_of(v: &[bool]) -> Vec<u16> {
    (0..v.len()).filter(|&g| v[g]).map(|g| g as u16).collect()
}
