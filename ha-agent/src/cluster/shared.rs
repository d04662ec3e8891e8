//! What the nodes share besides heartbeats, each travelling whole in its
//! own sealed frame on the heartbeat port:
//!
//! - operator decisions (drained backends, failover requests), which must
//!   hold on every node whichever node they were typed on: a node that
//!   changes them bumps a Lamport version and sends them to every peer at
//!   once; the higher (version, origin) wins;
//! - each node's health view (the backends its checks find down): the
//!   owner of a VIP group is authoritative for it, so every node computes
//!   the owner's ring and a failover keeps every flow on its backend.
//!
//! Every node resends both every second, so a node that missed a change
//! or restarted catches up within a second. A stale or replayed copy
//! changes nothing (versions and sequences only grow), a forged one fails
//! authentication.
//!
//! A frame: its magic (`HO` operator state, `HV` health view), version 1,
//! cluster id (8 bytes, big-endian), the content as JSON, then HMAC-SHA256
//! over all of it with the heartbeat key.

use std::{collections::BTreeSet, net::IpAddr};

use bytes::{Buf, BufMut};
use serde::{Deserialize, Serialize};

use crate::cluster::codec::{BufExt, Codec, DecodeError};
use crate::cluster::wire::{DropReason, Key, TAG_LEN};

/// Magic of an operator-state frame.
pub(crate) const OPERATOR_MAGIC: [u8; 2] = *b"HO";
/// Magic of a health-view frame.
pub(crate) const HEALTH_MAGIC: [u8; 2] = *b"HV";
pub(crate) const VERSION: u8 = 1;
/// Largest frame sent and accepted: the largest UDP payload over IPv4
/// (65,535 less 20 bytes of IP and 8 of UDP header; IPv6 allows 65,527).
/// About 2,000 drained or down backends of IPv6 VIPs with 10-byte names.
pub(crate) const MAX_FRAME_LEN: usize = 65_507;
const HEADER_LEN: usize = 2 + 1 + 8;

/// A failover an operator asked for; every node that was running then
/// feeds it to its state machine once (by `id`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailoverRequest {
    pub id: u64,
    pub group: String,
    pub to: Option<String>,
    /// When it was asked for (ms since the UNIX epoch): a node that starts
    /// later takes it for history, not for a request.
    pub issued_at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperatorState {
    /// Lamport version of the last change.
    pub version: u64,
    /// The node that made it (breaks ties between equal versions).
    pub origin: String,
    /// (VIP name, backend address) pairs drained by an operator.
    pub drained: BTreeSet<(String, IpAddr)>,
    /// The last failover asked for.
    pub failover: Option<FailoverRequest>,
}

impl OperatorState {
    /// Applies a change made on node `me`; returns the new version.
    pub(crate) fn change(&mut self, me: &str, change: impl FnOnce(&mut OperatorState)) -> u64 {
        change(self);
        self.version += 1;
        self.origin = me.to_string();
        self.version
    }

    /// Takes `other` if it is newer; whether it was.
    pub(crate) fn adopt(&mut self, other: OperatorState) -> bool {
        let newer = (other.version, &other.origin) > (self.version, &self.origin);
        if newer {
            *self = other;
        }
        newer
    }
}

/// The backends one node's checks find down, as (VIP name, backend
/// address); `sequence` grows with every change of that node's view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthView {
    pub node: String,
    pub sequence: u64,
    pub down: BTreeSet<(String, IpAddr)>,
}

/// A decoded shared frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    Operator(OperatorState),
    Health(HealthView),
}

/// Whether `frame` is a shared-state frame (by its magic).
pub(crate) fn is_shared_frame(frame: &[u8]) -> bool {
    frame.len() >= 2 && (frame[..2] == OPERATOR_MAGIC || frame[..2] == HEALTH_MAGIC)
}

/// Shared state that does not fit one datagram ([`MAX_FRAME_LEN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a shared-state frame of {len} bytes is more than one UDP datagram holds ({MAX_FRAME_LEN})"
)]
pub(crate) struct TooLarge {
    pub len: usize,
}

/// Seals `content` into a frame with `magic`, if it fits one datagram.
pub(crate) fn seal<T: Serialize>(
    magic: [u8; 2],
    content: &T,
    key: &Key,
    cluster_id: u64,
) -> Result<Vec<u8>, TooLarge> {
    let mut frame = Vec::with_capacity(256);
    Header { magic, cluster_id }.encode(&mut frame);
    serde_json::to_writer(&mut frame, content).expect("shared state serialises");
    key.append_tag(&mut frame);
    if frame.len() > MAX_FRAME_LEN {
        return Err(TooLarge { len: frame.len() });
    }
    Ok(frame)
}

/// The content of a shared frame, checked like a heartbeat: version, then
/// the tag, then the cluster id, then the content.
pub(crate) fn open(frame: &[u8], key: &Key, cluster_id: u64) -> Result<Shared, DropReason> {
    if frame.len() < HEADER_LEN + TAG_LEN || frame.len() > MAX_FRAME_LEN || !is_shared_frame(frame)
    {
        return Err(DropReason::Malformed);
    }
    if frame[2] != VERSION {
        return Err(DropReason::Version);
    }
    let mut content = key.verified_body(frame)?;
    let header = Header::decode(&mut content)?;
    if header.cluster_id != cluster_id {
        return Err(DropReason::ForeignCluster);
    }
    let shared = if header.magic == OPERATOR_MAGIC {
        serde_json::from_slice(content).map(Shared::Operator)
    } else {
        serde_json::from_slice(content).map(Shared::Health)
    };
    shared.map_err(|_| DropReason::Malformed)
}

/// What every shared frame starts with: its magic, [`VERSION`] and the
/// cluster id.
struct Header {
    magic: [u8; 2],
    cluster_id: u64,
}

impl Codec for Header {
    fn decode<B: Buf>(buf: &mut B) -> Result<Header, DecodeError> {
        let magic = buf.get()?;
        if ![OPERATOR_MAGIC, HEALTH_MAGIC].contains(&magic) || buf.get::<u8>()? != VERSION {
            return Err(DecodeError);
        }
        Ok(Header {
            magic,
            cluster_id: buf.get()?,
        })
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.magic.encode(buf);
        VERSION.encode(buf);
        self.cluster_id.encode(buf);
    }
}

#[cfg(test)]
mod tests;
