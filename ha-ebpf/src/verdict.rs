//! What the program does with a frame. The handlers (`lb`, `neigh`) decide;
//! the entry point turns the decision into the XDP action and counts it.

use aya_ebpf::bindings::xdp_action;
use ha_common::GlobalCounter;

/// The verdict of one handler; `Pass` keeps the frame untouched.
#[derive(Clone, Copy)]
pub enum Verdict {
    Pass,
    Tx,
    Drop,
}

impl Verdict {
    /// The XDP action and the global counter of this verdict.
    #[inline(always)]
    pub fn action(self) -> (u32, GlobalCounter) {
        match self {
            Verdict::Pass => (xdp_action::XDP_PASS, GlobalCounter::Pass),
            Verdict::Tx => (xdp_action::XDP_TX, GlobalCounter::Tx),
            Verdict::Drop => (xdp_action::XDP_DROP, GlobalCounter::Drop),
        }
    }
}
