//! The cluster of load-balancer nodes: authenticated heartbeats (`wire`),
//! membership, failure detection and per-group election as a pure state
//! machine (`state`), and the digest of the configuration the nodes must
//! share (`digest`). The agent's UDP shell only moves bytes and time.

mod codec;
pub(crate) mod digest;
pub(crate) mod shared;
pub(crate) mod shell;
pub mod state;
pub mod wire;

/// A node's name as configured (`[node] name`); unique in the cluster.
pub type NodeName = String;

/// One heartbeat, as decoded from the wire and fed to the state machine.
/// Field order and meaning are the wire format's (see `wire`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Identifies the cluster; frames of another cluster are dropped.
    pub cluster_id: u64,
    pub node: NodeName,
    /// Bumped on every agent start, so peers tell a restart from a replay.
    pub incarnation: u64,
    /// Increases with every frame of one incarnation.
    pub sequence: u64,
    /// When the sender made the frame: microseconds on its own monotonic
    /// clock (the state machine's `now`). Only the sender interprets it:
    /// peers echo it back in their [`PeerReport`]s, which gives the sender
    /// round-trip times and proof that they heard it recently.
    pub sent_at_us: u64,
    pub priority: u8,
    /// Links up, datapath loaded and answering, track checks passing.
    pub eligible: bool,
    /// VIP groups the sender currently owns (indices into the shared
    /// config's groups), ascending.
    pub claims: Vec<u16>,
    /// VIP groups the sender means to take (it is their heir), ascending.
    pub bids: Vec<u16>,
    /// The sender stops on purpose: take over at once.
    pub leaving: bool,
    /// Refusing ownership (hactl standby).
    pub standby: bool,
    /// What the sender last heard from every peer it considers UP.
    pub peers: Vec<PeerReport>,
    /// Digest of the VIP/backend configuration and operator state; nodes
    /// that disagree take no VIP.
    pub digest: [u8; 32],
}

/// The newest frame a heartbeat's sender accepted from one peer.
///
/// Why: relayed, these let a node learn a claim it cannot hear itself (a
/// hears b, c hears b, a and c do not hear each other), and the echo tells
/// the reported node that the sender hears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerReport {
    pub node: NodeName,
    pub incarnation: u64,
    pub sequence: u64,
    /// Microseconds between receiving that frame and sending this one
    /// (saturating).
    pub age_us: u32,
    /// That frame's `sent_at_us`, on the reported node's clock.
    pub echo_us: u64,
    pub priority: u8,
    /// That frame's claims and bids.
    pub claims: Vec<u16>,
    pub bids: Vec<u16>,
}
