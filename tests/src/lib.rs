//! The lab: hosts as network namespaces on a bridge, with helpers to run
//! servers and clients inside them. Nothing is configured in the root
//! namespace; everything is removed on drop.

pub mod agent;
mod cmd;
pub mod dsr;
pub mod fuzz;
pub mod lab;
pub mod netns;
pub mod nginx;
pub mod packet;
pub mod test_run;
pub mod traffic;

pub use lab::{Host, Lab};
pub use netns::Netns;
pub use traffic::{
    LongLived, NameServer, RateRun, ServerProcess, Tally, connect_many, start_rate_client,
};

use std::time::{Duration, Instant};

/// Polls `done` every 10 ms until it holds (true) or `timeout` passes
/// (false): the lab's one way of waiting for an agent to get somewhere.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
