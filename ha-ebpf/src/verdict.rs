//! What the program does with a frame. The handlers (`lb`, `neigh`) decide;
//! the entry point turns the decision into the XDP action, counts it, and
//! logs the event a `Report` carries.

use aya_ebpf::bindings::xdp_action;
use ha_common::GlobalCounter;

use crate::events::Event;

/// The verdict of one handler; `Pass` keeps the frame untouched.
#[derive(Clone, Copy)]
pub(crate) enum Verdict {
    Pass,
    Tx,
    Drop,
    /// Pass (or drop), and log the `event` the handler staged.
    Report {
        event: Event,
        drop: bool,
    },
}

impl Verdict {
    /// The XDP action and the global counter of this verdict.
    #[inline(always)]
    pub(crate) fn action(self) -> (u32, GlobalCounter) {
        match self {
            Verdict::Pass | Verdict::Report { drop: false, .. } => {
                (xdp_action::XDP_PASS, GlobalCounter::Pass)
            }
            Verdict::Tx => (xdp_action::XDP_TX, GlobalCounter::Tx),
            Verdict::Drop | Verdict::Report { drop: true, .. } => {
                (xdp_action::XDP_DROP, GlobalCounter::Drop)
            }
        }
    }
}
