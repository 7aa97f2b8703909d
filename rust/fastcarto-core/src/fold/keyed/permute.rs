//! Moving states in place, never holding two copies of the state: [`spread`] moves states
//! sorted by id to their ids' slots (hashed ids that turn direct), [`permute_in_place`] applies
//! a permutation (sorting the final state by id).

use crate::state::packed::Slot;
use rayon::prelude::*;

/// Moves the state in `slots[k]` to `slots[ids[k]]` for every `k` (`ids` sorted and distinct,
/// so `ids[k] >= k`) and empties every other slot. Blocks of states go from the last down:
/// each block is staged (copied aside), then written with the empty slots around it over the
/// slots from its first id up, which hold no state not yet moved (those are below the block,
/// and its first id is at least its first index). Within a block, the writes go in parallel
/// over pieces whose ids, being sorted, cover disjoint ranges of slots, so the first touch of
/// the new pages (most of the cost) is shared by all threads. Memory stays at the final state's
/// size: the ids are handed back to the system as they are used, and so are the pages of states
/// already moved out, until the slots being filled reach them (otherwise the whole state would
/// be resident halfway through, next to half the ids: 100 MB more at the peak for 100M
/// examples, measured).
pub(super) fn spread<S: Slot>(slots: &mut [S], ids: Vec<u32>) {
    const BLOCK: usize = 1 << 18;
    const PIECE: usize = 1 << 13;
    let count = ids.len();
    let mut staged: Vec<S> = vec![S::EMPTY; BLOCK.min(count)];
    let mut end = slots.len(); // slots from `end` on hold their final states
    let mut k = count; // states `0..k` are not moved yet
    let mut released = count; // moved-out slots from here up to `count` were handed back
    while k > 0 {
        if ids[k - 1] as usize == k - 1 {
            // Sorted distinct ids: `ids[i] == i` for every `i < k`, already in place.
            break;
        }
        let j = k.saturating_sub(BLOCK);
        let staged = &mut staged[..k - j];
        staged.par_chunks_mut(PIECE).zip(slots[j..k].par_chunks(PIECE)).for_each(|(to, from)| to.copy_from_slice(from));
        let lo = if j == 0 { 0 } else { ids[j] as usize };
        // Piece p writes slots from its first id (the block's `lo` for the first piece) up to
        // the next piece's first id (`end` for the last).
        let mut pieces = Vec::with_capacity((k - j).div_ceil(PIECE));
        let mut rest = &mut slots[lo..end];
        let mut at = lo;
        for a in (j..k).step_by(PIECE) {
            let b = (a + PIECE).min(k);
            let next = if b == k { end } else { ids[b] as usize };
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(next - at);
            pieces.push((a, b, at, piece));
            (rest, at) = (tail, next);
        }
        pieces.into_par_iter().for_each(|(a, b, at, piece)| {
            let mut next = 0;
            for i in a..b {
                let t = ids[i] as usize - at;
                piece[next..t].fill(S::EMPTY);
                piece[t] = staged[i - j];
                next = t + 1;
            }
            piece[next..].fill(S::EMPTY);
        });
        #[cfg(unix)]
        {
            let used = ids[j..k].as_ptr_range();
            let moved = slots[j..lo.min(released)].as_ptr_range();
            released = j;
            // SAFETY: whole pages (`dont_need` keeps pages only partly inside) of `ids[j..k]`,
            // only read at indices below `j` from now on, then dropped; and of slots whose
            // states moved, written (by later blocks or the final fill) before anything reads
            // them, inside the state's own anonymous mapping (they come back as zeros).
            unsafe {
                crate::sys::alloc::dont_need(used.start as usize, used.end as usize);
                crate::sys::alloc::dont_need(moved.start as usize, moved.end as usize);
            }
        }
        (end, k) = (lo, j);
    }
    // Slots `k..end` held states that moved up (or nothing).
    slots[k..end].par_chunks_mut(PIECE).for_each(|piece| piece.fill(S::EMPTY));
}

/// `slots[i] = old slots[order[i]]` for every `i`, following the permutation's cycles in place
/// (so sorting a large state by id never holds two copies of it).
///
/// Following a cycle is a chain of dependent random reads, and a random permutation puts most
/// positions in one giant cycle, so cycles are cut into segments that threads follow at the
/// same time: every 64th position starts a segment, which runs along its cycle up to
/// the next such position, whose old state is saved aside first. Cycles without one (short
/// ones, few positions) are then followed whole, one after another.
pub(super) fn permute_in_place<S: Copy + Send + Sync>(slots: &mut [S], mut order: Vec<u32>) {
    debug_assert_eq!(slots.len(), order.len());
    const LEADER: usize = 64;
    const WAYS: usize = 8;
    const DONE: u32 = u32::MAX;
    let saved: Vec<S> = slots.par_iter().step_by(LEADER).copied().collect();
    let (to, from) = (Shared(slots.as_mut_ptr()), Shared(order.as_mut_ptr()));
    let (n, segments) = (slots.len(), slots.len().div_ceil(LEADER));
    // Each task follows `WAYS` segments in turns, so that their cache misses overlap.
    (0..segments.div_ceil(WAYS)).into_par_iter().for_each(|group| {
        let mut at: [usize; WAYS] = std::array::from_fn(|w| (group * WAYS + w) * LEADER);
        let mut live = at.iter().filter(|&&j| j < n).count();
        while live > 0 {
            for j in at.iter_mut().filter(|j| **j < n) {
                // SAFETY: each position belongs to one segment, and only that segment's task
                // reads or writes its slot and its entry of `order`: a slot is read (as `k`)
                // just before it is written, and a leader's old state is read from `saved`
                // only. Every position is below `n == order.len()` (a permutation).
                unsafe {
                    let k = *from.at(*j) as usize;
                    *from.at(*j) = DONE;
                    if k.is_multiple_of(LEADER) {
                        *to.at(*j) = saved[k / LEADER];
                        *j = usize::MAX;
                        live -= 1;
                    } else {
                        *to.at(*j) = *to.at(k);
                        crate::sys::prefetch::prefetch(std::slice::from_ref(&*from.at(k)));
                        *j = k;
                    }
                }
            }
        }
    });
    for start in 0..order.len() {
        if order[start] == DONE {
            continue;
        }
        let first = slots[start];
        let mut j = start;
        loop {
            let k = order[j] as usize;
            order[j] = DONE;
            if k == start {
                slots[j] = first;
                break;
            }
            slots[j] = slots[k];
            j = k;
        }
    }
}

/// A pointer that tasks share, each touching only its own elements (see its uses).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);

// SAFETY: used only where the tasks touch disjoint elements (see `permute_in_place`).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as for `Send`: no two tasks touch the same element through it.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// `i` is within the allocation, and no other task touches element `i` meanwhile.
    unsafe fn at(self, i: usize) -> *mut T {
        // SAFETY: the caller's.
        unsafe { self.0.add(i) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::keyed::tests::shuffled;
    use crate::metrics::ExampleState;

    /// Several blocks and pieces of `spread`, with ids that are already in place below some
    /// point (nothing to move there) and gaps above it.
    #[test]
    fn spread_moves_many_blocks_in_parallel() {
        use crate::state::packed::Packed;
        let state = |k: u32| Packed::put(&ExampleState { n: 1, first_epoch: k % 4000, ..ExampleState::EMPTY });
        for in_place in [0u32, 1, 300_000] {
            let ids: Vec<u32> =
                (0..in_place).chain((in_place..2_000_000).filter(|i| i % 3 != 1 && i % 7 != 0)).collect();
            let mut slots: Vec<Packed> = (0..ids.len() as u32).map(state).collect();
            slots.resize(2_000_005, state(7)); // memory never written (anything)
            spread(&mut slots, ids.clone());
            let mut next = ids.iter().enumerate().peekable();
            for (slot, s) in slots.iter().enumerate() {
                match next.next_if(|(_, id)| **id as usize == slot) {
                    Some((k, _)) => assert_eq!(*s, state(k as u32), "slot {slot}"),
                    None => assert_eq!(*s, Packed::EMPTY, "slot {slot}"),
                }
            }
        }
    }

    /// Random permutations (one giant cycle and a few short ones, most of them without a
    /// segment start), the identity, and a set of 2-cycles.
    #[test]
    fn permute_in_place_follows_every_cycle() {
        let mut orders: Vec<Vec<u32>> = Vec::new();
        for n in [0usize, 1, 63, 64, 65, 1000, 100_003] {
            let mut order: Vec<i64> = (0..n as i64).collect();
            shuffled(&mut order, n as u64 + 3);
            orders.push(order.iter().map(|&i| i as u32).collect());
        }
        orders.push((0..5000).collect());
        orders.push((0..5000u32).map(|i| i ^ 1).collect());
        for order in orders {
            let mut slots: Vec<i64> = (0..order.len() as i64).map(|i| i * 10).collect();
            permute_in_place(&mut slots, order.clone());
            let want: Vec<i64> = order.iter().map(|&k| k as i64 * 10).collect();
            assert_eq!(slots, want, "n = {}", order.len());
        }
    }

    proptest::proptest! {
        /// Any permutation, and any sorted set of distinct ids spread over any span.
        #[test]
        fn permute_and_spread_match_a_copy(
            seed in 0u64..u64::MAX,
            n in 0usize..3000,
            keep in proptest::collection::vec(proptest::bool::ANY, 0..3000),
            extra in 0usize..100,
        ) {
            let mut order: Vec<i64> = (0..n as i64).collect();
            shuffled(&mut order, seed);
            let order: Vec<u32> = order.iter().map(|&i| i as u32).collect();
            let mut slots: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
            permute_in_place(&mut slots, order.clone());
            let want: Vec<u64> = order.iter().map(|&k| k as u64 * 3 + 1).collect();
            proptest::prop_assert_eq!(slots, want);

            let ids: Vec<u32> = keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as u32).collect();
            let state = |k: usize| ExampleState { n: 1, first_epoch: k as u32, ..ExampleState::EMPTY };
            let mut slots: Vec<ExampleState> = (0..ids.len()).map(state).collect();
            slots.resize(keep.len() + extra, state(9999));
            let mut want = vec![ExampleState::EMPTY; slots.len()];
            for (k, &id) in ids.iter().enumerate() {
                want[id as usize] = state(k);
            }
            spread(&mut slots, ids);
            proptest::prop_assert_eq!(slots, want);
        }
    }

    #[test]
    fn spread_moves_sorted_states_to_their_ids() {
        let state = |k: u32| ExampleState { n: 1, first_epoch: k, last_epoch: k, ..ExampleState::EMPTY };
        let ids = vec![0u32, 2, 3, 7, 8, 20];
        let mut slots: Vec<ExampleState> = (0..ids.len() as u32).map(state).collect();
        // Past the hashed states: anything (the memory of slots never written).
        slots.resize(24, state(99));
        spread(&mut slots, ids.clone());
        for (slot, s) in slots.iter().enumerate() {
            match ids.iter().position(|&id| id as usize == slot) {
                Some(k) => assert_eq!(*s, state(k as u32), "slot {slot}"),
                None => assert_eq!(*s, ExampleState::EMPTY, "slot {slot}"),
            }
        }
    }
}
