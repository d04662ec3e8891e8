//! Per-CPU counters: no atomics on the packet path, summed by the reader.

use crate::maps::STATS;

#[inline(always)]
pub(crate) fn count(index: u32, bytes: u64) {
    if let Some(c) = STATS.get_ptr_mut(index) {
        // SAFETY: a non-null pointer to this CPU's slot of a per-CPU array:
        // valid for the program's run, and only this CPU writes it (XDP
        // runs with migration disabled, one program at a time per CPU).
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
