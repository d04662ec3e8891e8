//! Operator decisions that must hold on every node, whichever node they
//! were typed on: drained backends and failover requests.
//!
//! The state is small and changes rarely, so it travels whole: a node that
//! changes it bumps a Lamport version and sends it to every peer at once,
//! and every node sends its copy again every second, so a node that missed
//! a change or restarted (version 0) catches up within a second. The
//! higher (version, origin) wins; a stale or replayed copy changes nothing,
//! a forged one fails authentication.
//!
//! The frame: magic `HO`, version 1, cluster id (8 bytes, big-endian), the
//! state as JSON, then HMAC-SHA256 over all of it with the heartbeat key.

use std::{collections::BTreeSet, net::IpAddr};

use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::cluster::wire::{Key, Reject, TAG_LEN};

pub const MAGIC: [u8; 2] = *b"HO";
pub const VERSION: u8 = 1;
/// Largest frame accepted (one UDP datagram, comfortably).
pub const MAX_FRAME_LEN: usize = 60_000;
const HEADER_LEN: usize = 2 + 1 + 8;

/// A failover an operator asked for; every node that was running then
/// feeds it to its state machine once (by `id`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    pub id: u64,
    pub group: String,
    pub to: Option<String>,
    /// When it was asked for (ms since the UNIX epoch): a node that starts
    /// later takes it for history, not for a request.
    pub issued_at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
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
    pub fn change(&mut self, me: &str, change: impl FnOnce(&mut OperatorState)) -> u64 {
        change(self);
        self.version += 1;
        self.origin = me.to_string();
        self.version
    }

    /// Takes `other` if it is newer; whether it was.
    pub fn adopt(&mut self, other: OperatorState) -> bool {
        let newer = (other.version, &other.origin) > (self.version, &self.origin);
        if newer {
            *self = other;
        }
        newer
    }

    pub fn encode(&self, key: &Key, cluster_id: u64) -> Vec<u8> {
        let mut frame = Vec::with_capacity(256);
        frame.extend_from_slice(&MAGIC);
        frame.push(VERSION);
        frame.extend_from_slice(&cluster_id.to_be_bytes());
        serde_json::to_writer(&mut frame, self).expect("operator state serialises");
        let tag = key.mac().chain_update(&frame).finalize().into_bytes();
        frame.extend_from_slice(&tag);
        frame
    }

    /// Whether `frame` is an operator-state frame (by its magic).
    pub fn is_operator_frame(frame: &[u8]) -> bool {
        frame.len() >= 2 && frame[..2] == MAGIC
    }

    /// The state in `frame`, checked like a heartbeat: version, then the
    /// tag, then the cluster id, then the content.
    pub fn decode(frame: &[u8], key: &Key, cluster_id: u64) -> Result<OperatorState, Reject> {
        if frame.len() < HEADER_LEN + TAG_LEN
            || frame.len() > MAX_FRAME_LEN
            || !Self::is_operator_frame(frame)
        {
            return Err(Reject::Malformed);
        }
        if frame[2] != VERSION {
            return Err(Reject::Version);
        }
        let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
        key.mac()
            .chain_update(body)
            .verify_slice(tag)
            .map_err(|_| Reject::Unauthenticated)?;
        let id = u64::from_be_bytes(body[3..HEADER_LEN].try_into().expect("8 bytes"));
        if id != cluster_id {
            return Err(Reject::ForeignCluster);
        }
        serde_json::from_slice(&body[HEADER_LEN..]).map_err(|_| Reject::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::from_bytes(format!("{text} .............................").as_bytes()).unwrap()
    }

    fn drained(version: u64, origin: &str) -> OperatorState {
        let mut state = OperatorState {
            version,
            origin: origin.into(),
            ..OperatorState::default()
        };
        state
            .drained
            .insert(("web".into(), "198.18.0.11".parse().unwrap()));
        state
    }

    #[test]
    fn the_newer_version_wins_and_ties_go_by_origin() {
        let mut mine = OperatorState::default();
        assert!(mine.adopt(drained(1, "lb2")));
        assert!(
            !mine.adopt(drained(1, "lb2")),
            "the same copy again changes nothing"
        );
        assert!(
            !mine.adopt(drained(1, "lb1")),
            "equal version, lower origin"
        );
        assert!(mine.adopt(drained(1, "lb3")));
        let v = mine.change("lb1", |s| {
            s.drained.clear();
        });
        assert_eq!((v, mine.origin.as_str()), (2, "lb1"));
        assert!(!mine.adopt(drained(1, "lb9")), "an older version loses");
    }

    #[test]
    fn frames_round_trip_and_bad_ones_are_rejected() {
        let k = key("cluster");
        let state = drained(7, "lb1");
        let frame = state.encode(&k, 42);
        assert!(OperatorState::is_operator_frame(&frame));
        assert_eq!(OperatorState::decode(&frame, &k, 42), Ok(state));
        assert_eq!(
            OperatorState::decode(&frame, &key("other"), 42),
            Err(Reject::Unauthenticated)
        );
        assert_eq!(
            OperatorState::decode(&frame, &k, 43),
            Err(Reject::ForeignCluster)
        );
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert!(
                OperatorState::decode(&bad, &k, 42).is_err(),
                "flipped byte {i} accepted"
            );
        }
        assert_eq!(
            OperatorState::decode(&frame[..10], &k, 42),
            Err(Reject::Malformed)
        );
    }
}
