//! The cluster of load-balancer nodes: authenticated heartbeats (`wire`),
//! membership, failure detection and per-group election as a pure state
//! machine (`state`). The agent's UDP shell only moves bytes and time.

pub mod shared;
pub mod shell;
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
    /// Sender's clock (ms since UNIX epoch), for round-trip estimates only.
    pub sent_at_ms: u64,
    pub priority: u8,
    /// Links up, datapath loaded and answering, track checks passing.
    pub eligible: bool,
    /// VIP groups the sender currently owns (indices into the shared config's groups).
    pub claims: Vec<u16>,
    /// The sender stops on purpose: take over at once.
    pub leaving: bool,
    /// Refusing ownership (hactl standby).
    pub standby: bool,
    /// Digest of the VIP/backend configuration and operator state; nodes
    /// that disagree take no VIP.
    pub digest: [u8; 32],
}
