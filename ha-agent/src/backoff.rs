//! Background loops (the control socket's accept loop, the heartbeat
//! reader, the neighbour watch) meet errors that pass: out of file
//! descriptors, a netlink hiccup. One must never stop such a loop for good:
//! it logs, counts and retries after a pause that doubles while the errors
//! last (docs/architecture.md, "Error policy").

use std::time::Duration;

/// The pause before the next try of a failing background loop.
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    /// Failures so far, for the log.
    pub failures: u64,
}

impl Backoff {
    /// Waits `first` after a failure, doubling up to `max`.
    pub(crate) const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
            failures: 0,
        }
    }

    /// A success: the next failure waits `first` again.
    pub(crate) fn succeeded(&mut self) {
        self.next = self.first;
    }

    /// A failure: counts it and returns how long to wait before retrying.
    pub(crate) fn failed(&mut self) -> Duration {
        self.failures += 1;
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

#[cfg(test)]
mod tests;
