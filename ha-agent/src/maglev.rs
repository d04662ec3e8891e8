//! Weighted Maglev lookup tables.
//!
//! Why this exists: every load-balancer node must map a flow to the *same*
//! backend, whichever node the packet reaches, and a change in the backend
//! set must move as few flows as possible. Maglev consistent hashing
//! (Eisenbud et al., NSDI 2016) gives both: a table of prime size `M` in
//! which each backend owns a share of slots, built only from the backends'
//! identities. The datapath picks `table[hash(5-tuple) % M]`.
//!
//! This module is pure (no I/O, no clock, no randomness): the same set of
//! backends and size always give the same table, on every node and in every
//! version of the agent that keeps its `hash` function unchanged.
//!
//! # Algorithm
//!
//! Each backend walks its own permutation of the slots,
//! `(offset + j * skip) mod M`, with `offset = h1(key) mod M` and
//! `skip = h2(key) mod (M - 1) + 1` (so `skip` is in `1..M` and, `M` being
//! prime, the walk visits every slot). Backends take turns claiming the next
//! free slot of their permutation until the table is full.
//!
//! Weights decide *when* a backend takes its turn. Katran's `MaglevHashV2`
//! runs credit rounds: each round every backend adds its weight to a credit
//! and claims a slot when the credit reaches the largest weight, so a
//! backend's count is its ideal share rounded *down*, the heaviest backend
//! collects the remainders, and a light backend next to a heavy one may get
//! no slot at all. Here a backend of weight `w` takes its k-th turn
//! (k = 0, 1, ..) at virtual time `(k + 1/2) / w`, ties going in key order.
//! When the table is full at time `T`, every backend holds `T * w` slots
//! rounded to the *nearest* integer (Webster / Sainte-Laguë apportionment):
//! shares follow the weights to within about one slot whatever the hash, and
//! with equal weights the turns are plain round robin, as in the paper.
//!
//! Cost: about `M ln M` probes for free slots, plus, with unequal weights, a
//! binary heap ordering the turns, `O(M log N)`, independent of how skewed
//! the weights are. Equal weights skip the heap (plain round robin): about
//! 1.3 ms for M = 65537 against 5 ms through the heap with 1000 backends.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// One backend as Maglev sees it: `key` is a stable identity (the backend's
/// address bytes), identical on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MaglevBackend<'a> {
    pub key: &'a [u8],
    pub weight: u32,
}

/// Seed of the hash that gives a backend's starting slot.
const OFFSET_SEED: u64 = 0x0000_0000_0000_0000;
/// Seed of the hash that gives a backend's step between slots.
const SKIP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Marks a free slot while the table is being filled.
const EMPTY: u32 = u32::MAX;

/// The fixed 64-bit hash behind the permutations: FNV-1a over the key bytes,
/// starting from the FNV offset basis XOR `seed`, then MurmurHash3's
/// `fmix64` finalizer (FNV alone mixes its last bytes poorly).
///
/// It must never change: every node has to compute identical tables, also
/// while the cluster runs mixed agent versions. The golden test below pins
/// its output.
fn hash(seed: u64, key: &[u8]) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET_BASIS ^ seed;
    for &byte in key {
        h ^= u64::from(byte);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Whether `n` is prime (trial division; `n` is at most a few million here).
/// Maglev needs a prime table size so that every `skip` visits every slot.
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let n = u64::from(n);
    let mut d = 5u64;
    while d * d <= n {
        if n.is_multiple_of(d) || n.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// A backend's walk through its permutation.
struct Walker {
    /// The backend's index in the caller's slice.
    index: u32,
    /// Next slot of the permutation to try.
    pos: u64,
    skip: u64,
}

/// A backend's next turn, at virtual time `half_turns / (2 * weight)`.
#[derive(PartialEq, Eq)]
struct Turn {
    /// `2k + 1` for the backend's k-th turn.
    half_turns: u64,
    weight: u64,
    /// Position of the backend in key order; breaks ties.
    walker: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // a / wa <=> b / wb  as  a * wb <=> b * wa; u128 because both
        // factors may come close to 2^33 and 2^32.
        let lhs = u128::from(self.half_turns) * u128::from(other.weight);
        let rhs = u128::from(other.half_turns) * u128::from(self.weight);
        lhs.cmp(&rhs).then(self.walker.cmp(&other.walker))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Returns a table of `size` entries; each entry is an index into `backends`.
///
/// Backends with weight 0 get no slot. If no backend has weight > 0 returns
/// an empty Vec. `size` must be prime and larger than the number of backends
/// (the caller validates; checked by `debug_assert!` here). Keys should be
/// unique; the result does not depend on the order of `backends`.
pub(crate) fn build_table(backends: &[MaglevBackend<'_>], size: u32) -> Vec<u32> {
    debug_assert!(is_prime(size), "Maglev table size {size} is not prime");
    debug_assert!(
        size as usize > backends.len(),
        "Maglev table size {size} is not larger than {} backends",
        backends.len()
    );

    // Work in key order so the caller's order cannot change the table; the
    // weight and then the caller's index only break ties between duplicate
    // keys, which callers must not pass.
    let mut order: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weight > 0)
        .collect();
    if order.is_empty() {
        return Vec::new();
    }
    order.sort_unstable_by(|&a, &b| {
        let (x, y) = (&backends[a], &backends[b]);
        x.key
            .cmp(y.key)
            .then(x.weight.cmp(&y.weight))
            .then(a.cmp(&b))
    });
    debug_assert!(
        order
            .windows(2)
            .all(|w| backends[w[0]].key.cmp(backends[w[1]].key) == Ordering::Less),
        "duplicate Maglev backend keys"
    );

    let m = u64::from(size);
    let mut walkers: Vec<Walker> = order
        .iter()
        .map(|&i| {
            let key = backends[i].key;
            Walker {
                index: i as u32,
                pos: hash(OFFSET_SEED, key) % m,
                // `max(1)` only guards against a division by zero for an
                // invalid `size` of 1 in release builds.
                skip: hash(SKIP_SEED, key) % (m - 1).max(1) + 1,
            }
        })
        .collect();
    let mut table = vec![EMPTY; size as usize];
    let equal_weights = order
        .windows(2)
        .all(|w| backends[w[0]].weight == backends[w[1]].weight);
    if equal_weights {
        // Equal weights make the turns plain round robin in key order: the
        // heap below would pick the same walkers, only slower.
        for turn in (0..walkers.len()).cycle().take(size as usize) {
            claim(&mut table, &mut walkers[turn], m);
        }
        return table;
    }
    // Min-heap of the next turn of every backend (see the module doc).
    let mut turns: BinaryHeap<Reverse<Turn>> = order
        .iter()
        .enumerate()
        .map(|(walker, &i)| {
            Reverse(Turn {
                half_turns: 1,
                weight: u64::from(backends[i].weight),
                walker,
            })
        })
        .collect();
    for _ in 0..m {
        // Claim a slot for the earliest turn, then move that backend to its
        // next turn in place (one sift-down instead of a pop and a push).
        let Some(mut top) = turns.peek_mut() else {
            unreachable!("every backend stays queued");
        };
        claim(&mut table, &mut walkers[top.0.walker], m);
        top.0.half_turns += 2;
    }
    table
}

/// Gives the walker the next free slot of its permutation.
#[inline]
fn claim(table: &mut [u32], walker: &mut Walker, m: u64) {
    while table[walker.pos as usize] != EMPTY {
        walker.pos = step(walker.pos, walker.skip, m);
    }
    table[walker.pos as usize] = walker.index;
    walker.pos = step(walker.pos, walker.skip, m);
}

/// The next slot of a permutation: `(pos + skip) mod m` for `pos, skip < m`.
#[inline]
fn step(pos: u64, skip: u64, m: u64) -> u64 {
    let next = pos + skip;
    if next >= m { next - m } else { next }
}

#[cfg(test)]
mod tests;
