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
//! or restarted catches up within a second. A forged frame fails
//! authentication. A stale or replayed one changes nothing
//! ([`SharedReceiver`]): every frame carries its sender's name,
//! incarnation and a sequence that grows with every frame of that life,
//! and is taken only from the sender's life this node hears live (its
//! heartbeats passed `wire::Receiver`, which proves a new life is no
//! recording) and only if newer than the last one taken from it, per
//! kind. A health view that changes the sender's view is taken at most
//! once per heartbeat interval per sender (each change rebuilds Maglev
//! tables); a change held back arrives with the next resend.
//!
//! A frame (version 2): its magic (`HO` operator state, `HV` health view),
//! the version, cluster id, the sender's incarnation and the frame's
//! sequence (8 bytes each, big-endian), the sender's name (a length byte,
//! 1..=32, and UTF-8), the content as JSON, then HMAC-SHA256 over all of
//! it with the heartbeat key. At most [`MAX_FRAME_LEN`] bytes, one UDP
//! datagram: a larger one is not sent.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::Duration,
};

use bytes::{Buf, BufMut};
use serde::{Deserialize, Serialize};

use crate::cluster::NodeName;
use crate::cluster::codec::{BufExt, Codec, DecodeError};
use crate::cluster::wire::{DropReason, Key, TAG_LEN};

/// Magic of an operator-state frame.
pub(crate) const OPERATOR_MAGIC: [u8; 2] = *b"HO";
/// Magic of a health-view frame.
pub(crate) const HEALTH_MAGIC: [u8; 2] = *b"HV";
pub(crate) const VERSION: u8 = 2;
/// Largest frame sent and accepted: the largest UDP payload over IPv4
/// (65,535 less 20 bytes of IP and 8 of UDP header; IPv6 allows 65,527).
/// About 2,000 drained or down backends of IPv6 VIPs with 10-byte names.
pub(crate) const MAX_FRAME_LEN: usize = 65_507;
/// The header's fixed part: magic, version, cluster id, incarnation,
/// sequence; the sender's name follows.
const HEADER_LEN: usize = 2 + 1 + 8 + 8 + 8;

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

/// The two kinds of shared frames (their drops are counted apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Operator,
    Health,
}

impl Kind {
    pub(crate) const ALL: [Kind; 2] = [Kind::Operator, Kind::Health];

    /// snake_case name, for `hactl status` and as a metric label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Operator => "operator_state",
            Kind::Health => "health_view",
        }
    }

    /// The kind of a frame with `magic`, if it is a shared frame's.
    fn of(magic: &[u8]) -> Option<Kind> {
        if magic == OPERATOR_MAGIC {
            Some(Kind::Operator)
        } else if magic == HEALTH_MAGIC {
            Some(Kind::Health)
        } else {
            None
        }
    }
}

/// Whether `frame` is a shared-state frame (by its magic).
pub(crate) fn is_shared_frame(frame: &[u8]) -> bool {
    frame.get(..2).and_then(Kind::of).is_some()
}

/// Who sent a shared frame, in which life, and where the frame stands
/// among that life's frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub sender: NodeName,
    pub incarnation: u64,
    pub sequence: u64,
}

/// Seals this node's shared frames: its name, its incarnation and the next
/// sequence number (one count for both kinds).
#[derive(Debug)]
pub(crate) struct SharedSender {
    key: Key,
    cluster_id: u64,
    stamp: Stamp,
}

impl SharedSender {
    pub(crate) fn new(key: Key, cluster_id: u64, me: &str, incarnation: u64) -> SharedSender {
        SharedSender {
            key,
            cluster_id,
            stamp: Stamp {
                sender: me.to_string(),
                incarnation,
                sequence: 0,
            },
        }
    }

    /// The next frame of `content` with `magic`, if it fits a datagram.
    pub(crate) fn seal<T: Serialize>(
        &mut self,
        magic: [u8; 2],
        content: &T,
    ) -> Result<Vec<u8>, TooLarge> {
        self.stamp.sequence += 1;
        seal(magic, &self.stamp, content, &self.key, self.cluster_id)
    }
}

/// The receiving end of shared frames: [`open`], then the checks of the
/// module doc, every drop counted by kind and reason.
#[derive(Debug)]
pub(crate) struct SharedReceiver {
    key: Key,
    cluster_id: u64,
    me: String,
    /// Least time between two changes of one sender's health view.
    view_gap: Duration,
    /// Per kind and sender: (incarnation, sequence) of the last frame taken.
    newest: HashMap<(Kind, NodeName), (u64, u64)>,
    /// Per sender: the backends its last health view taken found down, and
    /// when that view changed them.
    views: HashMap<NodeName, (BTreeSet<(String, IpAddr)>, Duration)>,
    rejected: [[u64; DropReason::ALL.len()]; Kind::ALL.len()],
}

impl SharedReceiver {
    /// A receiver for node `me`; a sender's view changes at most once per
    /// `view_gap`.
    pub(crate) fn new(key: Key, cluster_id: u64, me: &str, view_gap: Duration) -> SharedReceiver {
        SharedReceiver {
            key,
            cluster_id,
            me: me.to_string(),
            view_gap,
            newest: HashMap::new(),
            views: HashMap::new(),
            rejected: [[0; DropReason::ALL.len()]; Kind::ALL.len()],
        }
    }

    /// The content of `frame`, arrived at `now`, if it is authentic, from
    /// the life of its sender that `live` (the heartbeat receiver) hears,
    /// newer than the last frame of its kind taken from that sender and,
    /// for a changed health view, not too soon after the last change; or
    /// why it was dropped (and counted).
    pub(crate) fn receive(
        &mut self,
        frame: &[u8],
        now: Duration,
        live: impl Fn(&str) -> Option<u64>,
    ) -> Result<Shared, DropReason> {
        let result = self.check(frame, now, live);
        if let (Err(reason), Some(kind)) = (&result, frame.get(..2).and_then(Kind::of)) {
            self.rejected[kind as usize][reason.index()] += 1;
        }
        result
    }

    /// Frames of `kind` dropped, by reason (index: `DropReason::index`).
    pub(crate) fn rejected(&self, kind: Kind) -> &[u64; DropReason::ALL.len()] {
        &self.rejected[kind as usize]
    }

    fn check(
        &mut self,
        frame: &[u8],
        now: Duration,
        live: impl Fn(&str) -> Option<u64>,
    ) -> Result<Shared, DropReason> {
        let (stamp, shared) = open(frame, &self.key, self.cluster_id)?;
        if stamp.sender == self.me {
            return Err(DropReason::FromSelf);
        }
        match live(&stamp.sender) {
            Some(life) if stamp.incarnation < life => return Err(DropReason::Replayed),
            Some(life) if stamp.incarnation == life => {}
            _ => return Err(DropReason::Unproven),
        }
        let kind = match shared {
            Shared::Operator(_) => Kind::Operator,
            Shared::Health(_) => Kind::Health,
        };
        let key = (kind, stamp.sender.clone());
        let fresh = (stamp.incarnation, stamp.sequence);
        if self.newest.get(&key).is_some_and(|&(life, sequence)| {
            life == stamp.incarnation && sequence >= stamp.sequence
        }) {
            return Err(DropReason::Replayed);
        }
        if let Shared::Health(view) = &shared {
            let last = self.views.get(&stamp.sender);
            if last.is_none_or(|(down, _)| *down != view.down) {
                if last.is_some_and(|&(_, changed)| now < changed + self.view_gap) {
                    return Err(DropReason::RateLimited);
                }
                self.views
                    .insert(stamp.sender.clone(), (view.down.clone(), now));
            }
        }
        self.newest.insert(key, fresh);
        Ok(shared)
    }
}

/// Shared state that does not fit one datagram ([`MAX_FRAME_LEN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a shared-state frame of {len} bytes is more than one UDP datagram holds ({MAX_FRAME_LEN})"
)]
pub(crate) struct TooLarge {
    pub len: usize,
}

/// Seals `content` into a frame with `magic` and `stamp`, if it fits one
/// datagram. Senders use [`SharedSender::seal`], which numbers the frames.
pub(crate) fn seal<T: Serialize>(
    magic: [u8; 2],
    stamp: &Stamp,
    content: &T,
    key: &Key,
    cluster_id: u64,
) -> Result<Vec<u8>, TooLarge> {
    let mut frame = Vec::with_capacity(256);
    Header {
        magic,
        cluster_id,
        stamp: stamp.clone(),
    }
    .encode(&mut frame);
    serde_json::to_writer(&mut frame, content).expect("shared state serialises");
    key.append_tag(&mut frame);
    if frame.len() > MAX_FRAME_LEN {
        return Err(TooLarge { len: frame.len() });
    }
    Ok(frame)
}

/// The stamp and content of a shared frame, checked like a heartbeat:
/// version, then the tag, then the cluster id, then the content (a health
/// view must be its sender's).
pub(crate) fn open(
    frame: &[u8],
    key: &Key,
    cluster_id: u64,
) -> Result<(Stamp, Shared), DropReason> {
    if frame.len() <= 2 || !is_shared_frame(frame) {
        return Err(DropReason::Malformed);
    }
    if frame[2] != VERSION {
        return Err(DropReason::Version);
    }
    if frame.len() < HEADER_LEN + TAG_LEN || frame.len() > MAX_FRAME_LEN {
        return Err(DropReason::Malformed);
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
    match shared {
        Ok(Shared::Health(view)) if view.node != header.stamp.sender => Err(DropReason::Malformed),
        Ok(shared) => Ok((header.stamp, shared)),
        Err(_) => Err(DropReason::Malformed),
    }
}

/// What every shared frame starts with: its magic, [`VERSION`], the
/// cluster id and the sender's [`Stamp`].
struct Header {
    magic: [u8; 2],
    cluster_id: u64,
    stamp: Stamp,
}

impl Codec for Header {
    fn decode<B: Buf>(buf: &mut B) -> Result<Header, DecodeError> {
        let magic: [u8; 2] = buf.get()?;
        if Kind::of(&magic).is_none() || buf.get::<u8>()? != VERSION {
            return Err(DecodeError);
        }
        let cluster_id = buf.get()?;
        let incarnation = buf.get()?;
        let sequence = buf.get()?;
        Ok(Header {
            magic,
            cluster_id,
            stamp: Stamp {
                sender: buf.get()?,
                incarnation,
                sequence,
            },
        })
    }

    /// # Panics
    ///
    /// If the sender's name is empty or longer than 32 bytes (the
    /// configuration rules that out).
    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.magic.encode(buf);
        VERSION.encode(buf);
        self.cluster_id.encode(buf);
        self.stamp.incarnation.encode(buf);
        self.stamp.sequence.encode(buf);
        self.stamp.sender.encode(buf);
    }
}

#[cfg(test)]
mod tests;
