//! What one node keeps about each configured peer: membership (UP,
//! LEAVING, incarnation), the freshest frame known of it (the Knowledge
//! rule of the parent module), its echo of our frames (Quorum), round-trip
//! times and fencing.
//!
//! Why a module of its own: these are the machine's records, one per peer;
//! the rules that fill and read them, and the safety argument that rests on
//! them, stay together in the parent module.

use std::time::Duration;

use crate::cluster::NodeName;

/// Whether this node must fence a peer before it takes a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FenceState {
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

/// One configured peer, as this node knows it.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub(super) name: NodeName,
    /// Freshest (incarnation, sequence) accepted from the peer itself.
    pub(super) last: Option<(u64, u64)>,
    pub(super) heard_at: Option<Duration>,
    /// When its current incarnation was first heard.
    pub(super) incarnation_since: Option<Duration>,
    pub(super) up: bool,
    /// Said LEAVING in its current incarnation.
    pub(super) left: bool,
    /// Of the freshest frame known (its own or reported).
    pub(super) priority: u8,
    pub(super) ready: bool,
    pub(super) standby: bool,
    pub(super) digest: [u8; 32],
    /// What its latest own frame said, to report it to the other peers.
    pub(super) newest: Option<Newest>,
    /// (incarnation, send time) of its frame that our last frame echoed.
    pub(super) echoed: Option<(u64, u64)>,
    /// What this node knows of its groups.
    pub(super) known: Option<Known>,
    /// Its latest frame's report about this node (this incarnation).
    pub(super) ack: Option<Ack>,
    /// Smoothed round-trip time and the latest sample.
    pub(super) srtt: Option<Duration>,
    pub(super) rtt_sample: Option<Duration>,
    /// Since when it has been a candidate, continuously.
    pub(super) candidate_since: Option<Duration>,
    pub(super) fence: FenceState,
}

impl Peer {
    /// A peer not heard yet, in fencing state `fence`.
    pub(super) fn new(name: NodeName, fence: FenceState) -> Peer {
        Peer {
            name,
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
        }
    }
}

/// A peer's latest own frame, as this node reports it.
#[derive(Clone, Debug)]
pub(super) struct Newest {
    pub(super) sent_at_us: u64,
    pub(super) priority: u8,
    pub(super) claims: Vec<u16>,
    pub(super) bids: Vec<u16>,
}

/// The freshest frame known of a peer: its claims and bids, and until
/// when they count.
#[derive(Clone, Debug)]
pub(super) struct Known {
    pub(super) key: (u64, u64),
    pub(super) claims: Vec<bool>,
    pub(super) bids: Vec<bool>,
    pub(super) until: Duration,
}

/// A peer's echo of one of our frames.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ack {
    /// The echoed frame's send time (our clock).
    pub(super) echo: Duration,
    /// How long the peer held our frame before answering.
    pub(super) age: Duration,
}

impl Ack {
    /// The peer sent its frame no earlier than this (our clock).
    pub(super) fn answered(&self) -> Duration {
        self.echo + self.age
    }
}
