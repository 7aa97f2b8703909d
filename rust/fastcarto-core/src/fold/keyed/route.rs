//! Routing a batch's rows to their slots: the kernel observes each part of a batch's rows in
//! parallel and writes every observation, as one cache line, next to the other rows of its
//! block of slots; then each chunk of slots merges its rows in parallel, block by block, with
//! the states a few rows ahead prefetched.

use super::{CHUNK, CHUNK_BITS, KeyedState};
use crate::error::Result;
use crate::kernel::math::Real;
use crate::kernel::{GROUP, Lanes, Scratch, Sink, fold_epoch};
use crate::metrics::{ExampleState, NONE, Observation};
use crate::read::long::Labels;
use crate::state::packed::{Slot, with_slots};
use rayon::prelude::*;

/// Rows are merged in blocks of this many slots (350 KiB of state, within L2).
const BUCKET_BITS: u32 = 12;
/// How many rows ahead the scatter prefetches the state it will update.
const PREFETCH: usize = 24;

/// Rows observed and routed together by one task of [`KeyedState::scatter`] (several per batch,
/// so that many threads share a batch's kernel work).
pub(super) const PART: usize = 1 << 13;

/// Rows of a batch observed and routed at once (16 MiB of routed rows): larger batches go in
/// pieces of this many rows.
const ROUTED_ROWS: usize = 1 << 18;

/// A run of `PART` rows of a batch, sorted by block of `BUCKET` slots.
#[derive(Default)]
pub(super) struct Part {
    routed: Vec<Routed>,
    /// `routed[start[b]..start[b + 1]]` are the rows of block `b`.
    start: Vec<u32>,
    fill: Vec<u32>,
}

impl Part {
    /// Counting sort of the rows by block of slots (`slots[i]` is row `i`'s): sets where each
    /// block's rows go. The kernel then writes each row's observation, as one cache line, next to
    /// the other rows of its block ([`Routing`]), so that each chunk of the state reads its rows
    /// front to back and visits its states block by block (a block's states fit in L2) ...
    fn sort(&mut self, slots: &[u32], n_buckets: usize) {
        self.start.clear();
        self.start.resize(n_buckets + 1, 0);
        for &s in slots {
            self.start[(s >> BUCKET_BITS) as usize + 1] += 1;
        }
        for i in 0..n_buckets {
            self.start[i + 1] += self.start[i];
        }
        self.fill.clone_from(&self.start);
        if self.routed.len() < slots.len() {
            self.routed.resize(slots.len(), Routed::EMPTY);
        }
    }
}

/// The kernel's sink for rows `first..first + slots.len()` of a batch: each row's observation
/// goes straight to its place in the [`Part`] (no row-order copy in between).
struct Routing<'a> {
    part: &'a mut Part,
    slots: &'a [u32],
    first: usize,
}

impl Sink for Routing<'_> {
    #[inline(always)]
    fn take<T: Real>(
        &mut self,
        start: usize,
        g: usize,
        _epoch: u32,
        gold: &[u32; GROUP],
        o: &Lanes<T>,
        keep: Option<&[bool; GROUP]>,
    ) {
        for l in 0..g {
            let i = start + l;
            let slot = self.slots[i];
            let b = (slot >> BUCKET_BITS) as usize;
            let at = self.part.fill[b] as usize;
            self.part.routed[at] = Routed {
                obs: o.observation(l),
                slot,
                row: (self.first + i) as u32,
                label: gold[l],
                keep: keep.is_none_or(|k| k[l]),
            };
            self.part.fill[b] += 1;
        }
    }
}

/// One row's observation on its way to its slot, padded to one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Routed {
    obs: Observation,
    slot: u32,
    /// The row's index in the batch, for error messages.
    row: u32,
    label: u32,
    /// False when the row was omitted (`nan_policy="omit"`).
    keep: bool,
}

const _: () = assert!(std::mem::size_of::<Routed>() == 64);

impl Routed {
    const EMPTY: Routed = Routed {
        obs: Observation { gold_prob: 0.0, margin: 0.0, el2n: 0.0, loss: 0.0, entropy: 0.0, pred: 0 },
        slot: 0,
        row: 0,
        label: 0,
        keep: false,
    };
}

impl KeyedState {
    /// Observes the rows of one epoch (`values`: the outputs of the rows folded, contiguous, `c`
    /// columns, as [`gather`] gives them; `rows`: which rows of the batch they are, for their
    /// labels, `None`: all) and merges row `i`'s observation (with label `labels[i]`) into slot
    /// `slots[i]`, in
    /// parallel over parts of rows, then over chunks of slots. Each part checks its own labels
    /// (a pass of its own over each batch, with a parallel phase of its own, took 31 of ≈ 400 ms
    /// for 10M rows in an instrumented build), and the error of the first failing part is
    /// reported, whatever the threads.
    pub(super) fn scatter<T: Real>(
        &mut self,
        values: &[T],
        c: usize,
        rows: Option<&[u32]>,
        slots: &[u32],
        epoch: u32,
        labels: &Labels,
    ) -> Result<()> {
        let n_buckets = (self.slots.len() / CHUNK) << (CHUNK_BITS - BUCKET_BITS);
        let mut parts = std::mem::take(&mut self.parts);
        let (kind, nan_policy, allow, task) = (self.kind, self.nan_policy, self.allow_label_change, self.task);
        // A large batch goes in pieces, so that the routed rows (64 bytes each) stay a bounded
        // amount of memory whatever the batch size.
        let mut done = Ok(());
        for start in (0..slots.len()).step_by(ROUTED_ROWS) {
            let end = (start + ROUTED_ROWS).min(slots.len());
            let n_parts = (end - start).div_ceil(PART);
            if parts.len() < n_parts {
                parts.resize_with(n_parts, Part::default);
            }
            let observed: Vec<Result<()>> = parts[..n_parts]
                .par_iter_mut()
                .enumerate()
                .map_init(Scratch::default, |scratch, (p, part)| {
                    let lo = start + p * PART;
                    let hi = (lo + PART).min(end);
                    let labels = labels.validate(rows, lo..hi, task).map_err(|e| e.map_example(|i| i + lo as u64))?;
                    part.sort(&slots[lo..hi], n_buckets);
                    let mut sink = Routing { part, slots: &slots[lo..hi], first: lo };
                    let values = &values[lo * c..hi * c];
                    fold_epoch(kind, nan_policy, epoch, values, c, &labels, &mut sink, lo as u64, scratch, &[])
                })
                .collect();
            let observed: Result<()> = observed.into_iter().collect();
            done = observed
                .and_then(|()| with_slots!(&mut self.slots, v => merge_routed(v, &parts[..n_parts], epoch, allow)))
                .map(|new| self.present += new);
            if done.is_err() {
                break;
            }
        }
        self.parts = parts;
        done
    }
}

/// The outputs of rows `rows` (all rows when `None`), contiguous: `values` itself, or the rows
/// copied into `buf` (kept by the caller, so that its pages are not allocated again per batch).
pub(super) fn gather<'a, T: Real>(values: &'a [T], c: usize, rows: Option<&[u32]>, buf: &'a mut Vec<T>) -> &'a [T] {
    let Some(r) = rows else { return values };
    buf.clear();
    buf.resize(r.len() * c, T::ZERO);
    if c > 0 {
        buf.par_chunks_mut(PART * c).zip(r.par_chunks(PART)).for_each(|(out, rows)| {
            for (o, &i) in out.chunks_exact_mut(c).zip(rows) {
                o.copy_from_slice(&values[i as usize * c..(i as usize + 1) * c]);
            }
        });
    }
    buf
}

/// Merges the routed rows of one epoch (`parts`, in row order) into their slots, in parallel
/// over chunks of slots; returns how many slots saw their first row.
fn merge_routed<S: Slot>(slots: &mut [S], parts: &[Part], epoch: u32, allow: bool) -> Result<u64> {
    let per_chunk = 1 << (CHUNK_BITS - BUCKET_BITS);
    slots
        .par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(c, chunk)| -> Result<u64> {
            let at = |r: &Routed| r.slot as usize & (CHUNK - 1);
            // This chunk's rows, part after part (with many chunks, a part holds only a few
            // rows of each) ...
            let rows = parts.iter().flat_map(|part| {
                &part.routed[part.start[c * per_chunk] as usize..part.start[(c + 1) * per_chunk] as usize]
            });
            // ... and the state a few rows ahead is prefetched, as ids within a block are
            // still in random order. The look-ahead runs over the same sequence, across parts:
            // stopping at each part's end left most rows unprefetched on large states.
            let mut ahead = rows.clone();
            for r in ahead.by_ref().take(PREFETCH) {
                crate::sys::prefetch::prefetch(std::slice::from_ref(&chunk[at(r)]));
            }
            let mut new = 0;
            for r in rows {
                if let Some(a) = ahead.next() {
                    crate::sys::prefetch::prefetch(std::slice::from_ref(&chunk[at(a)]));
                }
                let slot = &mut chunk[at(r)];
                // The common case: a later epoch of an example already seen.
                if r.keep && slot.push_later_if(epoch, r.label, &r.obs) {
                    continue;
                }
                let s = slot.get();
                new += (s.n == 0 && s.label == NONE) as u64;
                let seen = if r.keep {
                    ExampleState::single(epoch, r.label, &r.obs)
                } else {
                    // Omitted (nan_policy="omit"): nothing seen, but the example exists.
                    ExampleState { label: r.label, ..ExampleState::EMPTY }
                };
                *slot = S::put(&ExampleState::merge(r.row as u64, &s, &seen, allow)?);
            }
            Ok(new)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))
}
