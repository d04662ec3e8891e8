//! Rise/fall hysteresis: the pure rule that turns a stream of check
//! results into up/down flips, kept apart from any I/O so it is tested
//! exhaustively.

/// Rise/fall hysteresis, pure (as in HAProxy and keepalived).
///
/// A down backend comes up after `rise` consecutive successes; an up
/// backend goes down after `fall` consecutive failures. A result that
/// agrees with the current state resets the count towards a flip, so a
/// success resets the failure count and a failure the success count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RiseFall {
    rise: u32,
    fall: u32,
    up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
}

impl RiseFall {
    /// `initially_up` is the state before any result:
    /// - `true`: the backend counts as up until `fall` consecutive
    ///   failures. A restarted or reloaded agent then keeps serving
    ///   through healthy backends, at the price of sending new flows to a
    ///   dead one for up to `fall` x `interval` after start.
    /// - `false`: the backend takes no traffic until `rise` consecutive
    ///   successes (conservative; costs `rise` x `interval` at start).
    ///
    /// `rise` and `fall` of 0 count as 1 (the config allows 1..=100).
    pub(crate) fn new(rise: u32, fall: u32, initially_up: bool) -> RiseFall {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            up: initially_up,
            streak: 0,
        }
    }

    /// Feeds one check result; returns `Some(new_state)` exactly when the
    /// state flips (`true` = now up).
    pub(crate) fn record(&mut self, success: bool) -> Option<bool> {
        if success == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.up = success;
        self.streak = 0;
        Some(self.up)
    }

    #[cfg(test)]
    pub(crate) fn is_up(&self) -> bool {
        self.up
    }
}
