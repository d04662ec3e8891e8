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
//! The inputs, actions and views the shell sees are in `interface`, the
//! records kept per peer in `peer`; the rules below, their proof and the
//! code that applies them are here.
//!
//! # Rules
//!
//! With `i` = interval, `D` = dead_after, `Lq` the quorum window and `Lt`
//! the take window ([`ClusterParams::quorum_window`],
//! [`ClusterParams::take_window`]; `Lq + Lt = D - D/256`):
//! - Membership: a peer is UP from a valid frame until `D` passes without a
//!   newer one, or until it says LEAVING. Frames older than the freshest
//!   (incarnation, sequence) seen are ignored, so reordering and
//!   duplication never roll a peer back; except that once a peer has been
//!   silent for `D`, a frame of a lower incarnation starts a new life (its
//!   clock stepped back and it lost its incarnation file), and that life's
//!   knowledge replaces the expired knowledge of the old one. The shell
//!   feeds only frames it accepted (`wire::Receiver`): a new incarnation,
//!   higher or lower, only with proof that its sender runs now, never a
//!   recording of an earlier life.
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

mod interface;
mod peer;

pub use interface::{Action, Fault, Input, Outgoing, OwnershipCause, PeerView};
use peer::{Ack, FenceState, Known, Newest, Peer};

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
    /// Per group: the peer that claimed it last (for take causes).
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
            .map(|name| Peer::new(name.clone(), fence))
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
        let reborn = !p.up
            && p.heard_at.is_some_and(|h| now >= h + dead_after)
            && p.last.is_some_and(|(inc, _)| hb.incarnation < inc);
        if p.last.is_some_and(|last| key <= last) && !reborn {
            return; // stale, duplicated or reordered
        }
        if reborn || p.last.is_none_or(|(inc, _)| hb.incarnation > inc) {
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
    /// freshest frame wins (expired knowledge of another life yields to
    /// any: see Membership); of two copies of one frame, the earlier
    /// expiry.
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
            if key < k.key && (self.now < k.until || key.0 == k.key.0) {
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
            Some(OwnershipCause::Leaving)
        } else if self.standby {
            Some(OwnershipCause::Standby)
        } else if !self.eligible {
            Some(OwnershipCause::Ineligible)
        } else if !quorum {
            Some(OwnershipCause::QuorumLost)
        } else if !digest_ok {
            Some(OwnershipCause::DigestMismatch)
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
            let cause = match &unready {
                None | Some(OwnershipCause::DigestMismatch) => self.release_cause(g, now),
                Some(r) => Some(r.clone()),
            };
            if let Some(cause) = cause {
                self.owned[g] = false;
                self.keep_from[g] = None;
                self.conflict_since[g] = None;
                out.push(Action::Release { group: g, cause });
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
            let cause = match self.last_owner[g] {
                None => OwnershipCause::Elected,
                Some(i) => {
                    let p = &self.peers[i];
                    if p.left {
                        OwnershipCause::OwnerLeft(p.name.clone())
                    } else if p.known.as_ref().is_some_and(|k| now < k.until) {
                        OwnershipCause::OwnerReleased(p.name.clone())
                    } else {
                        OwnershipCause::OwnerDown(p.name.clone())
                    }
                }
            };
            self.last_owner[g] = None;
            self.keep_from[g] = self.handover[g].take().and_then(|h| h.from);
            self.owned[g] = true;
            self.bid_since[g] = None;
            out.push(Action::Take { group: g, cause });
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
    fn release_cause(&mut self, g: usize, now: Duration) -> Option<OwnershipCause> {
        // Two claims: the lower yields at once; the higher gives way only
        // if the lower keeps claiming for dead_after (it cannot hear us).
        let claimants: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.claims(i, g))
            .collect();
        if let Some(&i) = claimants
            .iter()
            .find(|&&i| self.rank(Who::Peer(i)) > self.rank(Who::Me))
        {
            return Some(OwnershipCause::Yielded(self.peers[i].name.clone()));
        }
        match claimants.first() {
            None => self.conflict_since[g] = None,
            Some(&i) => {
                let since = *self.conflict_since[g].get_or_insert(now);
                if now >= since + self.p.dead_after {
                    return Some(OwnershipCause::Unanswered(self.peers[i].name.clone()));
                }
            }
        }
        let best = self.best(g, false, true);
        let from = self.handover[g].as_ref().and_then(|h| h.from.as_deref());
        if from == Some(self.p.me.as_str()) && best.is_some_and(|b| b != Who::Me) {
            return Some(OwnershipCause::Failover);
        }
        if let (true, Some(Who::Peer(i))) = (self.p.preempt, best) {
            let b = &self.peers[i];
            let waited = b
                .candidate_since
                .is_some_and(|s| now >= s + self.preempt_wait());
            if waited && self.keep_from[g].as_ref() != Some(&b.name) {
                return Some(OwnershipCause::Preempted(b.name.clone()));
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
mod tests;
