//! The longest silence of each peer as this node heard it: the time
//! between two consecutive authentic heartbeats. It tells an operator how
//! close a peer came to being declared dead (`dead_after`), and shows that
//! no slow work ever holds a node's heartbeats back.

use std::{collections::HashMap, time::Duration};

/// Per peer: when its last heartbeat arrived, the longest gap so far.
#[derive(Default)]
pub(super) struct HeartbeatGaps {
    peers: HashMap<String, Heard>,
}

struct Heard {
    last: Duration,
    longest: Option<Duration>,
}

impl HeartbeatGaps {
    /// A heartbeat of `node` arrived at `at` (the cluster clock).
    pub(super) fn heard(&mut self, node: &str, at: Duration) {
        match self.peers.get_mut(node) {
            Some(heard) => {
                let gap = at.saturating_sub(heard.last);
                heard.longest = Some(heard.longest.map_or(gap, |l| l.max(gap)));
                heard.last = at;
            }
            None => {
                self.peers.insert(
                    node.to_string(),
                    Heard {
                        last: at,
                        longest: None,
                    },
                );
            }
        }
    }

    /// The longest gap between two heartbeats of `node`, once two arrived.
    pub(super) fn longest(&self, node: &str) -> Option<Duration> {
        self.peers.get(node).and_then(|h| h.longest)
    }
}

#[cfg(test)]
mod tests;
