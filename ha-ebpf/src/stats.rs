//! Per-CPU counters: no atomics on the packet path, summed by the reader.

use crate::maps::STATS;

#[inline(always)]
pub fn count(index: u32, bytes: u64) {
    if let Some(c) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
