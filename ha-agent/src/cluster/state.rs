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
//! With `i` = interval, `D` = dead_after, `Lq` the quorum window and `Lt`
//! the take window ([`ClusterParams::quorum_window`],
//! [`ClusterParams::take_window`]; `Lq + Lt = D - D/256`):
//! - Membership: a peer is UP from a valid frame until `D` passes without a
//!   newer one, or until it says LEAVING. Frames older than the freshest
//!   (incarnation, sequence) seen are ignored, so reordering and
//!   duplication never roll a peer back.
//! - Reports: every frame carries, for each UP peer, the newest frame
//!   accepted from it: its (incarnation, sequence), age (time since it was
//!   received), send time (the echo), priority, claims and bids.
//! - Knowledge: per peer, the freshest frame known of it, heard from it or
//!   reported by any peer, with its claims and bids. It is live until `D`
//!   after whoever heard the frame received it: receipt + `D`, or the
//!   relaying frame's receipt + `D` - age; of two copies of one frame, the
//!   earlier. A newer frame replaces older knowledge whatever the source,
//!   so a release heard directly is not undone by a late relay, and a
//!   crashed owner's claim expires `D` after its last frame arrived (relays
//!   do not prolong it). Reports about this node are no knowledge (see
//!   Quorum).
//! - Quorum ([`Quorum`]): by default a majority of the configured nodes,
//!   counting this node and every peer whose latest frame echoes one of
//!   ours sent less than `Lq` ago: a majority that we hear and that hears
//!   us. A frame more than 1.5 intervals newer than the one our last frame
//!   echoed is answered at once, so that after a cut the peer counts us
//!   again within a round trip. Each echo, less the report's age, also
//!   gives a round-trip sample ([`PeerView::rtt`]).
//! - Ready (sent as the frame's `eligible` bit): locally eligible, not in
//!   standby, not leaving, quorate, and the digest agrees with a quorum of
//!   the nodes it sees. Candidates for a group are this node if ready and
//!   the UP peers that are ready, not in standby and have this digest.
//!   Rank: (priority, name), highest first; a `hactl failover` in progress
//!   excludes the former owner and puts its target first.
//! - Bids: a group's *heir* is the best candidate that does not claim it.
//!   The heir bids for it (sends it in `bids`) unless it knows a live bid
//!   of a node of higher rank: of two bidders whose views differ, the lower
//!   steps back. It bids while another node owns the group too, so the heir
//!   of a held group has bid long before the owner fails.
//! - Take: a node takes a group when it has bid for it continuously for `D`
//!   ([`ClusterParams::succession_hold`]), it knows no other node's live
//!   claim or bid for it, and a majority spoke to it recently: counting
//!   itself and every peer whose latest frame was sent less than `Lt` ago
//!   (it was sent no earlier than our echoed send time plus its age) and
//!   whose incarnation this node has heard for `D` (a restarted node has
//!   forgotten what it heard before). So the heir takes over the moment the
//!   owner's claim expires, it says LEAVING or it releases. A node that
//!   only just became the heir (it started, became eligible, regained
//!   quorum, was named by a failover) waits `D`: after a full-cluster
//!   restart the groups come up about one interval (hearing each other and
//!   being heard) plus `D` after the nodes; a single restarted node costs
//!   no outage (the others hold its groups, and a preempting node gets them
//!   back by a handover).
//! - Release: everything at once when no longer ready, except for a
//!   digest that differs (a reload not yet done on every node: the owner
//!   keeps serving with its config; no live node that disagrees takes
//!   over, and one whose peers are down has nobody to disagree with); a
//!   group when a node
//!   with a higher rank claims it too (known directly or by relay: the
//!   lower yields at once), when a lower node keeps claiming it for `D` (it
//!   does not hear this node: give way rather than keep two owners), on a
//!   failover, and on preemption: with `preempt`, to a better candidate
//!   that has been one for `max(preempt_delay, D)` (by then it has bid long
//!   enough to take: the handover costs one delivery delay). With
//!   `preempt = false` the owner keeps the group while it stays ready.
//! - Fencing ([`Fencing::Required`]): before taking anything, every peer
//!   that went DOWN without LEAVING is fenced; a failure raises a fault and
//!   blocks the take (retried every `D`).
//!
//! # Safety (Majority quorum)
//!
//! Claim: no two nodes own a group while both see a quorum, on any network:
//! frames lost, delayed, duplicated or reordered at will, links one-way,
//! connectivity not transitive, partitions changing at any pace, processes
//! frozen and resumed, crashed and restarted. It assumes only a shell that
//! ticks at [`Cluster::next_timeout`] (a quorum lapses when it is due),
//! `Lq + Lt <= D` and clocks whose rates differ little: a time is only ever
//! compared with times of the clock that measured it, but durations
//! measured on different clocks meet, and the argument below loses about
//! three times their relative drift times `D`. The windows leave `D/256`
//! for that: NTP slews a monotonic clock by at most 0.05 %.
//!
//! A node's *stint* on a group runs from when it starts bidding for it
//! until it stops bidding and owning it, without a gap. Every frame the
//! node sends meanwhile names the group (as a bid or a claim), it is ready
//! and so quorate throughout, and it takes the group `D` or more into the
//! stint. Two facts: (a) knowledge of a frame lives at least until the
//! frame's send time + `D`, whoever relayed it (everyone received it after
//! it was sent, and the age accounts for the time a relay held it); (b) an
//! echo shows that the peer received our frame after its send time, and
//! echo + age that the peer sent its frame after that.
//!
//! Suppose X and Y both own group g at time t and both are quorate, and Y
//! took it at `tY`, no earlier than X took it. X's stint began by `tY - D`.
//! Let `s = tY - Lt`, within that stint: X was quorate at `s`, so a
//! majority MX had each received a frame of X sent after
//! `s - Lq >= tY - D`: within the stint, naming g. Y took at `tY` with a
//! majority MY, each of which sent Y a frame after `s` (b), in an
//! incarnation that was running by `tY - D`. Some node Z is in both. If Z
//! is Y, Y itself received that frame of X; if Z is X, Y received a frame
//! of X sent after `s`. Else Z received X's frame (by `s`, and in its
//! current life) before sending its frame to Y (after `s`), so that frame
//! reports X's newest frame known to Z (X was UP there: heard less than `D`
//! before). Either way Y knew, at `tY`, a frame of X sent after `tY - D`,
//! within the stint, so naming g, and live by (a), as was any newer one it
//! knew (sent before `tY`, also within the stint): Y could not take. (A Y
//! restarted after receiving X's frame bids `D` first, and that frame was
//! sent less than `D` before `tY`.) In words: a node keeps its quorum only
//! while a majority heard its claim lately; a node takes only after a
//! majority spoke to it since; the two majorities share a node whose report
//! carries the claim.
//!
//! Liveness needs round trips within `Lq` (a peer's latest echo is up to
//! two intervals and two delays old when its next frame arrives) and
//! answers within `Lt` (one interval and two delays): with the default `D`
//! of 4 intervals, `Lq` is just under 2.5 and `Lt` 1.5 intervals, so
//! one-way delays below a quarter interval keep both steady. Worse networks
//! make quorum come and go; the claim holds. The simulator checks it after
//! every event of thousands of random schedules on timely and hostile
//! networks (one-way loss, delays of several intervals, non-transitive
//! connectivity) and the line topology (a hears b, c hears b, a and c do
//! not hear each other), which heartbeats without reports cannot make safe.

use std::fmt;
use std::time::Duration;

use super::{Heartbeat, NodeName, PeerReport, wire};

/// Default heartbeat interval (`[cluster] interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);
/// A peer is DOWN after this many intervals without a valid frame, unless
/// `dead_after` says otherwise.
pub const DEFAULT_DEAD_INTERVALS: u32 = 4;
/// `dead_after` must be at least this many intervals: one lost heartbeat
/// must not take a peer down, and quorum counts only peers that answered
/// within the quorum window, which needs a round trip.
pub const MIN_DEAD_INTERVALS: u32 = 3;
/// Groups a heartbeat can name.
pub const MAX_GROUPS: usize = wire::MAX_GROUPS;
/// Nodes whose reports fit in a heartbeat, this one included.
pub const MAX_NODES: usize = wire::MAX_REPORTS + 1;

/// Who may act without hearing the rest of the cluster.
///
/// Why: a node must not take a VIP that a partitioned peer may still hold;
/// a majority cannot exist on both sides of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// A strict majority of the configured nodes, counting this node and
    /// the peers that hear it and that it hears (an echo of one of its
    /// frames within [`ClusterParams::quorum_window`]).
    Majority,
    /// Two-node clusters (like corosync's `two_node`): with the peer
    /// counted as for a majority there is quorum; alone, a node has quorum
    /// only if
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
    /// A peer silent this long is DOWN, and a claim heard this long ago
    /// expires. At least 2 intervals; 4 (the default) or more for a quorum
    /// that survives the delays of a round trip (see
    /// [`ClusterParams::quorum_window`]).
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
    /// Defaults: [`DEFAULT_INTERVAL`], DOWN after [`DEFAULT_DEAD_INTERVALS`],
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

    /// How recently a peer must have echoed one of this node's frames to
    /// count toward its quorum: `dead_after` less the take window and a
    /// 256th of `dead_after` for clock drift. With the default 4
    /// intervals, just under 2.5 intervals: a peer's latest echo is up to
    /// two intervals and two delays old when its next frame arrives.
    pub fn quorum_window(&self) -> Duration {
        self.dead_after - self.take_window() - self.dead_after / 256
    }

    /// How recently a peer must have sent its latest frame (as far as its
    /// echo and age show) to count toward a take: 1.5 intervals (a frame
    /// every interval, plus the delays), less when `dead_after` is under 4
    /// intervals, so that the quorum window keeps 2.5 intervals, but at
    /// least a quarter of `dead_after`. The two windows add up to no more
    /// than `dead_after`, which the safety argument needs (see the module
    /// documentation).
    pub fn take_window(&self) -> Duration {
        let i = self.interval;
        self.dead_after
            .saturating_sub(i * 5 / 2)
            .max(self.dead_after / 4)
            .min(i * 3 / 2)
    }

    /// How long a node must have bid for a group before it takes it:
    /// `dead_after` (see the module documentation).
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
        if self.nodes.len() > MAX_NODES {
            return Err(ParamsError::TooManyNodes(self.nodes.len()));
        }
        if self.interval.is_zero() {
            return Err(ParamsError::ZeroInterval);
        }
        if self.dead_after < MIN_DEAD_INTERVALS * self.interval {
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
    #[error("{0} nodes; the reports of at most {MAX_NODES} fit in a heartbeat")]
    TooManyNodes(usize),
    #[error("the heartbeat interval must be longer than zero")]
    ZeroInterval,
    #[error(
        "dead_after ({dead_after:?}) must be at least {MIN_DEAD_INTERVALS} intervals ({interval:?} each)"
    )]
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
    fn differs(&self, other: &Outgoing) -> bool {
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
    /// Not ready: this node's digest disagrees with the cluster. It keeps
    /// what it holds and takes nothing, so this is never a release reason.
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
    /// Freshest (incarnation, sequence) accepted from the peer itself.
    last: Option<(u64, u64)>,
    heard_at: Option<Duration>,
    /// When its current incarnation was first heard.
    incarnation_since: Option<Duration>,
    up: bool,
    /// Said LEAVING in its current incarnation.
    left: bool,
    /// Of the freshest frame known (its own or reported).
    priority: u8,
    ready: bool,
    standby: bool,
    digest: [u8; 32],
    /// What its latest own frame said, to report it to the other peers.
    newest: Option<Newest>,
    /// (incarnation, send time) of its frame that our last frame echoed.
    echoed: Option<(u64, u64)>,
    /// What this node knows of its groups.
    known: Option<Known>,
    /// Its latest frame's report about this node (this incarnation).
    ack: Option<Ack>,
    /// Smoothed round-trip time and the latest sample.
    srtt: Option<Duration>,
    rtt_sample: Option<Duration>,
    /// Since when it has been a candidate, continuously.
    candidate_since: Option<Duration>,
    fence: FenceState,
}

/// A peer's latest own frame, as this node reports it.
#[derive(Clone, Debug)]
struct Newest {
    sent_at_us: u64,
    priority: u8,
    claims: Vec<u16>,
    bids: Vec<u16>,
}

/// The freshest frame known of a peer: its claims and bids, and until
/// when they count.
#[derive(Clone, Debug)]
struct Known {
    key: (u64, u64),
    claims: Vec<bool>,
    bids: Vec<bool>,
    until: Duration,
}

/// A peer's echo of one of our frames.
#[derive(Clone, Copy, Debug)]
struct Ack {
    /// The echoed frame's send time (our clock).
    echo: Duration,
    /// How long the peer held our frame before answering.
    age: Duration,
}

impl Ack {
    /// The peer sent its frame no earlier than this (our clock).
    fn answered(&self) -> Duration {
        self.echo + self.age
    }
}

/// A `hactl failover` in progress for one group.
#[derive(Clone, Debug)]
struct Handover {
    from: Option<NodeName>,
    to: Option<NodeName>,
    /// Dropped if nobody but `from` has claimed the group by then. The
    /// target takes it after bidding for `dead_after`; if it never got
    /// the command, the nodes that did wait until this deadline (and a
    /// bid) before electing by rank again.
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
    /// Per group: since when a lower peer claims a group this node owns.
    conflict_since: Vec<Option<Duration>>,
    handover: Vec<Option<Handover>>,
    /// Per group: since when this node has bid for it, continuously.
    bid_since: Vec<Option<Duration>>,
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
                incarnation_since: None,
                up: false,
                left: false,
                priority: 0,
                ready: false,
                standby: false,
                digest: [0; 32],
                newest: None,
                echoed: None,
                known: None,
                ack: None,
                srtt: None,
                rtt_sample: None,
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
            bid_since: vec![None; g],
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
        (0..self.peers.len())
            .map(|i| {
                let p = &self.peers[i];
                PeerView {
                    node: p.name.clone(),
                    up: p.up,
                    last_heard: p.heard_at,
                    incarnation: p.last.map(|(i, _)| i),
                    priority: p.priority,
                    eligible: p.ready,
                    standby: p.standby,
                    claims: (0..self.p.groups)
                        .filter(|&g| self.claims(i, g))
                        .map(|g| g as u16)
                        .collect(),
                    digest_matches: p.digest == self.digest,
                    needs_fencing: matches!(
                        p.fence,
                        FenceState::Needed | FenceState::Pending | FenceState::Failed { .. }
                    ),
                    rtt: p.srtt,
                    rtt_sample: p.rtt_sample,
                }
            })
            .collect()
    }

    /// The latest time by which the shell should call [`Input::Tick`] so
    /// that no decision waits: the next heartbeat, a peer's echo leaving
    /// the quorum window, a peer going DOWN, a known claim or bid
    /// expiring, the end of a bid's hold, a preemption, conflict or
    /// failover deadline, a fence retry.
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
                at(h + self.p.dead_after);
            }
            if let Some(a) = p.ack {
                at(a.echo + self.p.quorum_window());
            }
            if let Some(k) = &p.known {
                if k.claims.iter().chain(&k.bids).any(|&b| b) {
                    at(k.until);
                }
            }
            if let Some(s) = p.candidate_since {
                at(s + self.preempt_wait());
            }
            if let FenceState::Failed { retry_at } = p.fence {
                at(retry_at);
            }
        }
        for s in self.bid_since.iter().flatten() {
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
        let dead_after = self.p.dead_after;
        let p = &mut self.peers[i];
        let key = (hb.incarnation, hb.sequence);
        if p.last.is_some_and(|last| key <= last) {
            return; // stale, duplicated or reordered
        }
        if p.last.is_none_or(|(inc, _)| hb.incarnation > inc) {
            p.left = false; // a new life
            p.incarnation_since = Some(now);
        }
        p.last = Some(key);
        if p.left {
            return; // the incarnation that left stays gone
        }
        // A frame more than 1.5 intervals newer than the one our last
        // frame echoed (or the first of a peer we did not report) is
        // answered at once: after a cut, a restart, a freeze or frames
        // that arrived late, the peer needs a fresh echo now, not up to an
        // interval later, to count us toward its quorum. In steady state
        // the echoes of our periodic frames keep up without answers.
        let gap = micros(self.p.interval * 3 / 2);
        let stale = |(inc, echo): (u64, u64)| {
            inc != hb.incarnation || hb.sent_at_us > echo.saturating_add(gap)
        };
        if p.echoed.is_none_or(stale) {
            self.answer = true;
        }
        p.heard_at = Some(now);
        p.ready = hb.eligible;
        p.standby = hb.standby;
        p.digest = hb.digest;
        p.ack = None;
        if hb.leaving {
            p.left = true;
            p.ready = false;
            p.newest = None;
            p.fence = FenceState::Clean;
            if p.up {
                p.up = false;
                out.push(Action::PeerDown {
                    node: p.name.clone(),
                    leaving: true,
                });
            }
            self.learn(i, key, hb.priority, &[], &[], now + dead_after);
            return;
        }
        p.newest = Some(Newest {
            sent_at_us: hb.sent_at_us,
            priority: hb.priority,
            claims: hb.claims.clone(),
            bids: hb.bids.clone(),
        });
        if !p.up {
            p.up = true;
            p.fence = FenceState::Clean;
            self.seen_peer = true;
            out.push(Action::PeerUp {
                node: p.name.clone(),
            });
        }
        self.learn(i, key, hb.priority, &hb.claims, &hb.bids, now + dead_after);
        for r in &hb.peers {
            if r.node == self.p.me {
                if r.incarnation == self.incarnation {
                    self.acked(i, now, r);
                }
            } else if let Some(j) = self.peers.iter().position(|p| p.name == r.node)
                && j != i
            {
                let age = Duration::from_micros(r.age_us.into());
                let until = (now + dead_after).saturating_sub(age);
                let key = (r.incarnation, r.sequence);
                self.learn(j, key, r.priority, &r.claims, &r.bids, until);
            }
        }
    }

    /// Peer `i`'s latest frame reports our frame sent at `r.echo_us`
    /// (this incarnation's clock): it counts toward the quorum while that
    /// is recent, and gives a round-trip sample. An echo from the future
    /// (impossible from an honest peer) counts for nothing.
    fn acked(&mut self, i: usize, now: Duration, r: &PeerReport) {
        let ack = Ack {
            echo: Duration::from_micros(r.echo_us),
            age: Duration::from_micros(r.age_us.into()),
        };
        let Some(rtt) = now.checked_sub(ack.answered()) else {
            return;
        };
        let p = &mut self.peers[i];
        p.ack = Some(ack);
        p.rtt_sample = Some(rtt);
        p.srtt = Some(p.srtt.map_or(rtt, |s| (s * 7 + rtt) / 8));
    }

    /// Learns what frame `key` of peer `j` said, live until `until`: the
    /// freshest frame wins; of two copies of one frame, the earlier expiry.
    fn learn(
        &mut self,
        j: usize,
        key: (u64, u64),
        priority: u8,
        claims: &[u16],
        bids: &[u16],
        until: Duration,
    ) {
        let p = &mut self.peers[j];
        if let Some(k) = &mut p.known {
            if key < k.key {
                return;
            }
            if key == k.key {
                k.until = k.until.min(until);
                return;
            }
        }
        let set = |groups: &[u16]| {
            let mut v = vec![false; self.p.groups];
            for &g in groups {
                if let Some(b) = v.get_mut(usize::from(g)) {
                    *b = true;
                }
            }
            v
        };
        let known = Known {
            key,
            claims: set(claims),
            bids: set(bids),
            until,
        };
        for g in 0..self.p.groups {
            if known.claims[g] {
                self.last_owner[g] = Some(j);
            }
        }
        p.priority = priority;
        p.known = Some(known);
    }

    /// Whether peer `i` owns `g` as far as this node knows.
    fn claims(&self, i: usize, g: usize) -> bool {
        self.peers[i]
            .known
            .as_ref()
            .is_some_and(|k| self.now < k.until && k.claims[g])
    }

    /// Whether peer `i` bids for `g` as far as this node knows.
    fn bids(&self, i: usize, g: usize) -> bool {
        self.peers[i]
            .known
            .as_ref()
            .is_some_and(|k| self.now < k.until && k.bids[g])
    }

    fn on_failover(&mut self, now: Duration, group: usize, to: Option<NodeName>) {
        if group >= self.p.groups {
            return;
        }
        let from = if self.owned[group] {
            Some(self.p.me.clone())
        } else {
            (0..self.peers.len())
                .find(|&i| self.claims(i, group))
                .map(|i| self.peers[i].name.clone())
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
    /// gives way to it: by then it has bid long enough to take.
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
            .filter(move |&i| !(heir && self.claims(i, g)))
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
        // Quorum: the peers that echo a recent frame of ours.
        let window = self.p.quorum_window();
        let backing = self
            .peers
            .iter()
            .filter(|p| p.ack.is_some_and(|a| now < a.echo + window))
            .count();
        let quorum = self.quorum_ok(1 + backing);
        if quorum != self.quorum {
            self.quorum = quorum;
            if quorum {
                self.clear_fault(&Fault::QuorumLost, out);
            } else {
                self.raise_fault(Fault::QuorumLost, out);
            }
        }
        // Digest agreement.
        let up = self.peers.iter().filter(|p| p.up).count();
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
                    || (0..self.peers.len())
                        .any(|i| self.claims(i, g) && from != Some(self.peers[i].name.as_str()));
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
                None | Some(Reason::DigestMismatch) => self.release_reason(g, now),
                Some(r) => Some(r.clone()),
            };
            if let Some(reason) = reason {
                self.owned[g] = false;
                self.keep_from[g] = None;
                self.conflict_since[g] = None;
                out.push(Action::Release { group: g, reason });
            }
        }
        // Bids and takes. A take needs a majority that spoke to this node
        // within the take window, in incarnations heard for dead_after.
        let hold = self.p.succession_hold();
        let (take_window, dead_after) = (self.p.take_window(), self.p.dead_after);
        let answered = self
            .peers
            .iter()
            .filter(|p| p.ack.is_some_and(|a| now < a.answered() + take_window))
            .filter(|p| p.incarnation_since.is_some_and(|s| now >= s + dead_after))
            .count();
        let take_quorum = self.quorum_ok(1 + answered);
        let unfenced = self
            .peers
            .iter()
            .any(|p| !matches!(p.fence, FenceState::Clean | FenceState::Done));
        let mut blocked_by_fencing = false;
        let n = self.peers.len();
        for g in 0..self.p.groups {
            let outbid =
                (0..n).any(|i| self.bids(i, g) && self.rank(Who::Peer(i)) > self.rank(Who::Me));
            let bidding = !outbid && self.best(g, true, true) == Some(Who::Me);
            self.bid_since[g] = if bidding {
                self.bid_since[g].or(Some(now))
            } else {
                None
            };
            let contested = (0..n).any(|i| self.claims(i, g) || self.bids(i, g));
            if contested || !take_quorum || self.bid_since[g].is_none_or(|s| now < s + hold) {
                continue;
            }
            if unfenced {
                // Keep bidding meanwhile: dropping the bid would let a
                // lower bidder go ahead.
                blocked_by_fencing = true;
                continue;
            }
            let reason = match self.last_owner[g] {
                None => Reason::Elected,
                Some(i) => {
                    let p = &self.peers[i];
                    if p.left {
                        Reason::OwnerLeft(p.name.clone())
                    } else if p.known.as_ref().is_some_and(|k| now < k.until) {
                        Reason::OwnerReleased(p.name.clone())
                    } else {
                        Reason::OwnerDown(p.name.clone())
                    }
                }
            };
            self.last_owner[g] = None;
            self.keep_from[g] = self.handover[g].take().and_then(|h| h.from);
            self.owned[g] = true;
            self.bid_since[g] = None;
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
            .filter(|&i| self.claims(i, g))
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

    fn outgoing(&self, now: Duration) -> Outgoing {
        let groups = |on: &[bool]| (0..on.len()).filter(|&g| on[g]).map(|g| g as u16).collect();
        let bidding: Vec<bool> = self.bid_since.iter().map(Option::is_some).collect();
        Outgoing {
            node: self.p.me.clone(),
            incarnation: self.incarnation,
            sent_at: now,
            priority: self.p.priority,
            eligible: self.ready,
            claims: groups(&self.owned),
            bids: groups(&bidding),
            leaving: self.leaving,
            standby: self.standby,
            peers: self
                .peers
                .iter()
                .filter(|p| p.up)
                .filter_map(|p| {
                    let (newest, (incarnation, sequence), heard) =
                        (p.newest.as_ref()?, p.last?, p.heard_at?);
                    Some(PeerReport {
                        node: p.name.clone(),
                        incarnation,
                        sequence,
                        age_us: u32::try_from(micros(now - heard)).unwrap_or(u32::MAX),
                        echo_us: newest.sent_at_us,
                        priority: newest.priority,
                        claims: newest.claims.clone(),
                        bids: newest.bids.clone(),
                    })
                })
                .collect(),
            digest: self.digest,
        }
    }

    /// A heartbeat every interval on a fixed schedule (a shell that ticks
    /// every interval sends on every tick), and at once when the content
    /// changes (a release, take or bid, or one relayed, reaches the peers
    /// without waiting).
    fn send(&mut self, now: Duration, out: &mut Vec<Action>) {
        let o = self.outgoing(now);
        let periodic = now >= self.next_beat;
        if periodic {
            self.next_beat += self.p.interval;
            if self.next_beat <= now {
                self.next_beat = now + self.p.interval; // after a stall
            }
        }
        let changed = self.last_sent.as_ref().is_none_or(|l| l.differs(&o));
        if periodic || std::mem::take(&mut self.answer) || changed {
            for p in &mut self.peers {
                p.echoed = o
                    .peers
                    .iter()
                    .find(|r| r.node == p.name)
                    .map(|r| (r.incarnation, r.echo_us));
            }
            out.push(Action::Send(o.clone()));
            self.last_sent = Some(o);
        }
    }
}

/// Whole microseconds (saturating): heartbeat times.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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
                    let hb = o.to_heartbeat(1, self.sequence[i]);
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
        assert_eq!(p.succession_hold(), 4 * I);
        for (dead, take) in [(4, I * 3 / 2), (3, I * 3 / 4), (2, I / 2), (10, I * 3 / 2)] {
            p.dead_after = dead * I;
            assert_eq!(p.take_window(), take, "{dead} intervals");
            let drift = p.dead_after / 256;
            assert_eq!(p.quorum_window() + take + drift, p.dead_after);
        }
        let names: Vec<String> = (0..=MAX_NODES).map(|i| i.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        p = ClusterParams::new("0", 1, &names, 1);
        assert_eq!(p.validate(), Err(ParamsError::TooManyNodes(MAX_NODES + 1)));
        p = ClusterParams::new("0", 1, &names[..MAX_NODES], MAX_GROUPS + 1);
        assert_eq!(
            p.validate(),
            Err(ParamsError::TooManyGroups(MAX_GROUPS + 1))
        );
    }

    #[test]
    fn cold_start_elects_the_best_once() {
        let lab = settled(ABC, 2, |_| {});
        assert_eq!(lab.owners(0), ["a"]);
        assert_eq!(lab.owners(1), ["a"]);
        let takes = lab.takes("a", Duration::ZERO);
        assert_eq!(takes.len(), 2);
        // Ready once a peer answers its first frame, then it bids for D.
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
        // a is ready within a round trip (b and c answer its first frame),
        // b gives way once a has been a candidate for dead_after, a takes
        // on b's release.
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
            sent_at_us: 0,
            priority: prio,
            eligible: true,
            claims: claims.to_vec(),
            bids: Vec::new(),
            leaving: false,
            standby: false,
            peers: Vec::new(),
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

    /// `b`'s frame `seq` reporting `a`'s frame `a_seq` (claiming `claims`)
    /// received `age` before.
    fn relay(seq: u64, a_seq: u64, claims: &[u16], age: Duration) -> Heartbeat {
        let mut hb = frame("b", 20, seq, &[]);
        hb.peers.push(PeerReport {
            node: "a".into(),
            incarnation: 1,
            sequence: a_seq,
            age_us: age.as_micros() as u32,
            echo_us: 0,
            priority: 30,
            claims: claims.to_vec(),
            bids: Vec::new(),
        });
        hb
    }

    #[test]
    fn relayed_claims_live_dead_after_less_their_age_and_yield_to_fresher_frames() {
        let mut p = ClusterParams::new("c", 10, &["a", "b", "c"], 2);
        p.quorum = Quorum::Disabled;
        let mut c = Cluster::new(p, Duration::ZERO, 1).unwrap();
        let a = |c: &Cluster| c.peers().into_iter().find(|p| p.node == "a").unwrap();
        let t = D;
        c.handle(Input::Heartbeat {
            now: t,
            hb: relay(1, 7, &[0], 3 * MS),
        });
        let view = a(&c);
        assert!(!view.up && view.claims == [0] && view.priority == 30);
        // Another copy of that frame, relayed later: the earlier expiry.
        c.handle(Input::Heartbeat {
            now: t + MS,
            hb: relay(2, 7, &[0], MS),
        });
        c.handle(Input::Tick {
            now: t + D - 3 * MS - Duration::from_micros(1),
        });
        assert_eq!(a(&c).claims, [0]);
        c.handle(Input::Tick {
            now: t + D - 3 * MS,
        });
        assert!(a(&c).claims.is_empty());
        // A newer frame heard directly is not undone by an older relay.
        let t = 3 * D;
        c.handle(Input::Heartbeat {
            now: t,
            hb: frame("a", 30, 9, &[1]),
        });
        c.handle(Input::Heartbeat {
            now: t,
            hb: relay(3, 8, &[0], MS),
        });
        assert_eq!(a(&c).claims, [1]);
        // A newer relayed frame replaces it; a relay about c itself is no
        // knowledge.
        let mut hb = relay(4, 10, &[], MS);
        hb.peers[0].node = "c".into();
        hb.peers[0].claims = vec![0, 1];
        c.handle(Input::Heartbeat { now: t, hb });
        c.handle(Input::Heartbeat {
            now: t,
            hb: relay(5, 10, &[], MS),
        });
        assert!(a(&c).claims.is_empty());
    }

    /// a and c do not hear each other, both hear b: each thinks itself the
    /// heir and bids; c learns a's higher bid from b and steps back.
    #[test]
    fn of_two_bidders_the_lower_steps_back() {
        let mut lab = Lab::new(ABC, 1, |_| {});
        lab.cut("a", "c", true);
        lab.start_all();
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["a"]);
        assert!(lab.takes("c", Duration::ZERO).is_empty());
        assert!(lab.nodes.iter().flatten().all(|c| c.has_quorum()));
    }

    /// c hears only b, which echoes c's frames: c bids, and takes after
    /// dead_after, unless b restarted meanwhile. A restarted b counts
    /// toward a take only once heard for dead_after: it may have forgotten
    /// a claim (of a, which c cannot hear) that it relayed before.
    #[test]
    fn a_restarted_peer_counts_toward_takes_after_dead_after() {
        let mut c = Cluster::new(ClusterParams::new("c", 20, &["a", "b", "c"], 1), MS, 1).unwrap();
        c.handle(Input::Eligibility {
            now: MS,
            eligible: true,
        });
        let mut echo = 0;
        let mut taken = None;
        let (mut incarnation, mut seq) = (1, 0);
        for k in 1..40u32 {
            let now = k * I / 2;
            if now == 3 * D / 2 {
                (incarnation, seq) = (2, 0);
            }
            seq += 1;
            let mut hb = frame("b", 10, seq, &[]);
            hb.incarnation = incarnation;
            hb.peers.push(PeerReport {
                node: "c".into(),
                incarnation: 1,
                sequence: 0,
                age_us: 0,
                echo_us: echo,
                priority: 20,
                claims: Vec::new(),
                bids: Vec::new(),
            });
            for a in c.handle(Input::Heartbeat { now, hb }) {
                match a {
                    Action::Send(o) => echo = o.sent_at.as_micros() as u64,
                    Action::Take { .. } => taken = taken.or(Some(now)),
                    _ => {}
                }
            }
            if now == D + I {
                assert!(c.owns(0), "took at {taken:?}");
                c.handle(Input::Standby { now, on: true });
                c.handle(Input::Standby { now, on: false });
                taken = None;
            }
        }
        // Bidding again from D + I, it could take at 2D + I; b restarted at
        // 1.5 D, so it counts from 2.5 D.
        assert_eq!(taken, Some(5 * D / 2));
    }

    #[test]
    fn round_trips_are_measured_from_echoes() {
        let lab = settled(ABC, 1, |_| {});
        for c in lab.nodes.iter().flatten() {
            for p in c.peers() {
                assert_eq!((p.rtt, p.rtt_sample), (Some(2 * DELAY), Some(2 * DELAY)));
            }
        }
        let fresh = Cluster::new(ClusterParams::new("a", 1, &["a", "b"], 1), D, 1).unwrap();
        assert_eq!(fresh.peers()[0].rtt, None);
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
        // Healed: a rejoins, and preempts b after bidding for D. a is ready
        // once b or c answers its next frame (an interval and a round
        // trip), b learns that a delay later and gives way D after that, a
        // takes on b's release: four delays in all.
        let t1 = lab.now;
        lab.cut("a", "b", false);
        lab.cut("a", "c", false);
        lab.run_for(Duration::from_secs(1));
        assert_eq!((lab.owners(0), lab.owners(1)), (vec!["a"], vec!["a"]));
        let taken = lab.takes("a", t1)[0].0;
        assert!(taken <= t1 + I + D + 4 * DELAY, "{:?}", taken - t1);
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
    fn a_reload_on_the_owner_first_keeps_its_group_and_the_other_takes_only_once_it_is_down() {
        let mut lab = Lab::new(&[("a", 10), ("b", 20)], 1, |p| {
            p.quorum = Quorum::TwoNode { tie_breaker: false }
        });
        lab.start_all();
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["b"]);
        // The owner reloads first: it keeps serving, both say so loudly.
        lab.input("b", |now| Input::Digest {
            now,
            digest: [7; 32],
        });
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["b"]);
        assert!(lab.node("a").faults().contains(&Fault::DigestMismatch));
        assert!(lab.node("b").faults().contains(&Fault::DigestMismatch));
        // a never took over meanwhile; the owner dies before a reloads:
        // once it is down nothing disagrees, and a takes over.
        assert!(
            !lab.actions("a", Duration::ZERO)
                .iter()
                .any(|(_, a)| matches!(a, Action::Take { .. }))
        );
        lab.crash("b");
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["a"]);
        assert!(lab.node("a").faults().is_empty());
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
        // Without c, b sees one node that agrees of two: it faults, and
        // keeps what it holds (a differing digest never releases).
        let t0 = lab.now;
        lab.crash("c");
        lab.run_for(Duration::from_secs(1));
        assert_eq!(lab.owners(0), ["b"]);
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
        // b only just became ready: it bids for D first.
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
        // Ready once a peer answers its first frame, then it bids for D.
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
