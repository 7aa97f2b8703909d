//! Examples known by id: rows of a long table arrive in any order, in any number of batches,
//! and fold into one fixed-size state per distinct id.
//!
//! Ids map to dense slots. Non-negative integer ids that are dense enough (dataset indices, the
//! common case) are their own slot, with no hashing; anything else goes through a hash table
//! that stores only slot numbers. The states live in one vector (a mapping of its own on huge
//! pages, grown by remapping it, without a copy: [`crate::sys::bigvec`]), merged in parallel
//! over fixed-size chunks of slots, and each batch's rows are bucketed by block of slots before
//! they are merged: the random scatter of shuffled ids then stays within a few megabytes at a
//! time. The final state is that vector, compacted in place: memory peaks at one copy.
//!
//! The parts, by concern: the id → slot index (direct or hashed, and the switches between
//! them: [`index`]), routing each batch's rows to their blocks of slots and merging them there
//! ([`route`]), and moving states in place when the index changes or the final state is sorted
//! by id ([`permute`]). This file holds [`KeyedState`], its public methods and the layout of
//! its slots.

mod index;
mod permute;
mod route;

use crate::error::{Error, Example, Result};
use crate::metrics::{ExampleState, NONE};
use crate::metrics::{Kind, NanPolicy, Task};
use crate::read::long::{LongBatch, Outputs};
use crate::state::State;
use crate::state::packed::{Slot, Slots, with_slots};
use crate::sys::bigvec::BigVec;
use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use index::Index;
use permute::permute_in_place;
use rayon::prelude::*;
use route::Part;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Slots per parallel task of the scatter (5.5 MiB of state); the state grows a chunk at a time.
const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

/// The states of every example seen so far, keyed by the examples' ids.
pub struct KeyedState {
    task: Task,
    kind: Kind,
    nan_policy: NanPolicy,
    allow_label_change: bool,
    index: Index,
    /// The id of slot 0 under direct addressing (the first id of a read's range of ids).
    base: i64,
    /// Whether ids are strings (fixed by the first batch).
    string_ids: Option<bool>,
    /// The states (packed until an epoch or class needs the wide form); a whole number of
    /// chunks long (slots past `len` are empty).
    slots: Slots,
    /// Slots in use (for direct addressing: largest id + 1).
    len: usize,
    /// Slots that have seen at least one row.
    present: u64,
    epochs: BTreeSet<u32>,
    rows: u64,
    /// Scratch: the current batch's per-row observations, routed to their slots' blocks (kept
    /// to reuse the allocations).
    parts: Vec<Part>,
    /// Scratch: the outputs of a selection of a batch's rows (kept, as `parts`: a fresh buffer
    /// per batch is fresh pages per batch where the allocator returns freed memory at once, as
    /// Dask's workers configure it).
    gathered: Gathered,
    /// Scratch: a batch's slots under direct addressing (kept, as `gathered`).
    slot_buffer: Vec<u32>,
}

#[derive(Default)]
struct Gathered {
    f32: Vec<f32>,
    f64: Vec<f64>,
}

impl KeyedState {
    pub fn new(kind: Kind, nan_policy: NanPolicy) -> Self {
        KeyedState {
            task: Task::MultiClass { n_classes: 0 },
            kind,
            nan_policy,
            allow_label_change: false,
            index: Index::Direct,
            base: 0,
            string_ids: None,
            slots: Slots::Packed(BigVec::new()),
            len: 0,
            present: 0,
            epochs: BTreeSet::new(),
            rows: 0,
            parts: Vec::new(),
            gathered: Gathered::default(),
            slot_buffer: Vec::new(),
        }
    }

    pub fn with_label_changes(mut self, allow: bool) -> Self {
        self.allow_label_change = allow;
        self
    }

    /// A state whose direct addressing starts at id `base` (slot = id - base): a read of the ids
    /// from `base` up keeps no empty slots for the ids below (a state half empty costs its
    /// pages, and a scan of them when the final state is compacted).
    pub fn with_id_base(mut self, base: i64) -> Self {
        self.base = base.max(0);
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Distinct examples seen.
    pub fn n_examples(&self) -> u64 {
        self.present
    }
    /// Rows folded in.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// The distinct epochs seen, in increasing order.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.epochs.iter().copied()
    }
    pub fn n_classes(&self) -> Option<u32> {
        match self.task.output_columns() {
            0 => None,
            c => Some(c),
        }
    }

    /// Folds the rows of `batch` for which `keep(epoch)` holds. Rows of several epochs are
    /// folded epoch by epoch, in increasing order. On error the state may be partly updated.
    pub fn fold(&mut self, batch: &LongBatch, keep: &dyn Fn(u32) -> bool) -> Result<()> {
        self.fold_selected(batch, keep, None)
    }

    /// [`KeyedState::fold`] of the rows `select` only (increasing row numbers; `None`: all).
    pub fn fold_selected(
        &mut self,
        batch: &LongBatch,
        keep: &dyn Fn(u32) -> bool,
        select: Option<&[u32]>,
    ) -> Result<()> {
        if batch.rows == 0 || select.is_some_and(<[u32]>::is_empty) {
            return Ok(());
        }
        self.check_shape(batch)?;
        let rows: Vec<u32>;
        match batch.epochs.range(batch.rows) {
            Some((lo, hi)) if lo == hi => {
                if keep(lo) {
                    self.fold_epoch(batch, lo, select)?;
                }
            }
            _ => {
                // Several epochs in one batch: fold each epoch's rows in epoch order (a stable
                // sort: each epoch's rows stay in batch order).
                let mut order: Vec<u32> = select.map_or_else(|| (0..batch.rows as u32).collect(), <[u32]>::to_vec);
                order.sort_by_key(|&r| batch.epochs.get(r as usize));
                rows = order;
                for run in rows.chunk_by(|&a, &b| batch.epochs.get(a as usize) == batch.epochs.get(b as usize)) {
                    let epoch = batch.epochs.get(run[0] as usize);
                    if keep(epoch) {
                        self.fold_epoch(batch, epoch, Some(run))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_shape(&mut self, batch: &LongBatch) -> Result<()> {
        let c = batch.n_classes as u32;
        match self.task.output_columns() {
            0 => {
                self.task = Task::MultiClass { n_classes: c };
                self.slots.hold(0, c)?;
            }
            known if known != c => {
                return Err(Error::invalid(format!(
                    "rows have {c} output columns here but {known} in earlier batches; the class count must not change"
                )));
            }
            _ => {}
        }
        match self.string_ids {
            None => self.string_ids = Some(batch.ids.is_string()),
            Some(s) if s != batch.ids.is_string() => {
                return Err(Error::invalid(format!(
                    "ids are {} here but were {} in earlier batches",
                    if batch.ids.is_string() { "strings" } else { "integers" },
                    if s { "strings" } else { "integers" }
                )));
            }
            _ => {}
        }
        let values = match &batch.outputs {
            Outputs::F32(v) => v.len(),
            Outputs::F64(v) => v.len(),
        };
        if values != batch.rows * batch.n_classes || batch.labels.len() != batch.rows {
            return Err(Error::invalid("columns of a batch have different lengths"));
        }
        Ok(())
    }

    /// Folds the rows of one epoch (`rows`: which ones, in batch order; `None`: all).
    fn fold_epoch(&mut self, batch: &LongBatch, epoch: u32, rows: Option<&[u32]>) -> Result<()> {
        // Errors name rows of this epoch's run; report the id the user knows (and its line).
        let pick = |i: u64| rows.map_or(i as usize, |r| r[i as usize] as usize);
        self.fold_epoch_rows(batch, epoch, rows).map_err(|e| {
            e.name_example(|i| {
                let row = pick(i);
                let id = batch.ids.display(row);
                Example::Id(match batch.lines.as_ref().and_then(|lines| lines.get(row)) {
                    Some(line) => format!("{id} (line {})", line + 1),
                    None => id,
                })
            })
        })
    }

    fn fold_epoch_rows(&mut self, batch: &LongBatch, epoch: u32, rows: Option<&[u32]>) -> Result<()> {
        let n = rows.map_or(batch.rows, <[u32]>::len);
        self.slots.hold(epoch, 0)?;
        let slots = self.assign(&batch.ids, rows)?;
        let c = batch.n_classes;
        let mut buf = std::mem::take(&mut self.gathered);
        let folded = match &batch.outputs {
            Outputs::F32(v) => {
                let values = route::gather(v, c, rows, &mut buf.f32);
                self.scatter(values, c, rows, &slots, epoch, &batch.labels)
            }
            Outputs::F64(v) => {
                let values = route::gather(v, c, rows, &mut buf.f64);
                self.scatter(values, c, rows, &slots, epoch, &batch.labels)
            }
        };
        self.gathered = buf;
        self.slot_buffer = slots;
        folded?;
        self.maybe_direct()?;
        self.epochs.insert(epoch);
        self.rows += n as u64;
        Ok(())
    }

    /// Makes room for slots `0..len`.
    fn grow(&mut self, len: usize) -> Result<()> {
        with_slots!(&mut self.slots, v => grow(v, len))?;
        self.len = self.len.max(len);
        Ok(())
    }

    /// Errors when an example lacks some of the epochs seen (`require_complete`).
    pub fn check_complete(&self) -> Result<()> {
        let e = self.epochs.len() as u32;
        let len = self.len;
        let short = with_slots!(&self.slots, v => {
            v[..len].iter().map(Slot::get).enumerate().find(|(_, s)| used(s) && s.n != e)
        });
        match short {
            None => Ok(()),
            Some((slot, s)) => Err(Error::invalid(format!(
                "{} has {} of the {e} epochs present in the data, and every example must have all of them",
                Example::Id(self.id_display(slot)),
                s.n
            ))),
        }
    }

    fn id_display(&self, slot: usize) -> String {
        match &self.index {
            Index::Direct => (slot as i64 + self.base).to_string(),
            Index::Int { ids, .. } => ids[slot].to_string(),
            Index::Str { ids, .. } => format!("{:?}", ids[slot]),
        }
    }

    /// The state of every example seen, in increasing id order, and the ids (`None` when they
    /// are `0..n`, the default ids of a table).
    pub fn into_state(self) -> Result<(State, Option<ArrayRef>)> {
        if self.present == 0 && self.rows == 0 {
            return Err(Error::Empty("no rows: the input holds no observations".into()));
        }
        let KeyedState { task, kind, allow_label_change, index, base, mut slots, len, present, .. } = self;
        with_slots!(&mut slots, v => v.truncate(len));
        let ids: Option<ArrayRef> = match index {
            // Every id below the largest was seen (a whole dataset): nothing to compact, and
            // the ids are the table's default ones.
            Index::Direct if present == len as u64 && base == 0 => None,
            Index::Direct if present == len as u64 => {
                Some(Arc::new(Int64Array::from_iter_values(base..base + len as i64)))
            }
            Index::Direct => with_slots!(&mut slots, v => {
                // Compact in place: slot order is id order.
                let mut ids = Vec::new();
                let mut kept = 0;
                for slot in 0..len {
                    if used(&v[slot].get()) {
                        v[kept] = v[slot];
                        ids.push(slot as i64 + base);
                        kept += 1;
                    }
                }
                v.truncate(kept);
                Some(Arc::new(Int64Array::from(ids)))
            }),
            Index::Int { ids, .. } => {
                let mut order: Vec<u32> = (0..ids.len() as u32).collect();
                order.par_sort_unstable_by_key(|&s| ids[s as usize]);
                let sorted: Vec<i64> = order.par_iter().map(|&s| ids[s as usize]).collect();
                with_slots!(&mut slots, v => permute_in_place(v, order));
                Some(Arc::new(Int64Array::from(sorted)))
            }
            Index::Str { ids, .. } => {
                let mut order: Vec<u32> = (0..ids.len() as u32).collect();
                order.par_sort_unstable_by(|&a, &b| ids[a as usize].cmp(&ids[b as usize]));
                let sorted = StringArray::from_iter_values(order.iter().map(|&s| &*ids[s as usize]));
                with_slots!(&mut slots, v => permute_in_place(v, order));
                Some(Arc::new(sorted))
            }
        };
        with_slots!(&mut slots, v => v.shrink_to_fit());
        crate::sys::alloc::release_free_memory();
        let n = slots.len();
        let state = State::new(0, task, kind)?.with_stored(slots).with_label_changes(allow_label_change);
        debug_assert_eq!(ids.as_ref().map_or(n, |ids| ids.len()), n);
        Ok((state, ids))
    }
}

/// Whether a slot holds an example (observed, or seen with every epoch omitted).
fn used(s: &ExampleState) -> bool {
    s.n > 0 || s.label != NONE
}

/// Makes room for slots `0..len` in `slots`, a whole number of chunks long.
fn grow<S: Slot>(slots: &mut BigVec<S>, len: usize) -> Result<()> {
    if len > slots.len() {
        let target = len.div_ceil(CHUNK) * CHUNK;
        let bytes = target as u128 * std::mem::size_of::<S>() as u128;
        // Capacity grows geometrically (untouched capacity costs address space only), by
        // remapping (no copy); the new slots are filled in parallel: the first touch of fresh
        // memory (the kernel zeroing each page) is most of the cost of growing, and one thread
        // doing it stalled the others.
        slots
            .extend_filled(S::EMPTY, target - slots.len())
            .map_err(|_| Error::OutOfMemory { what: "the state".into(), bytes })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::route::PART;
    use super::*;
    use crate::read::long::{Epochs, Ids};

    /// A batch of one epoch: two logits per row, label `id % 2`.
    fn batch(epoch: u32, ids: &[i64]) -> LongBatch {
        let logits: Vec<f32> =
            ids.iter().flat_map(|&id| [(id % 7) as f32 * 0.3, ((id * epoch as i64) % 5) as f32 * 0.2]).collect();
        LongBatch {
            rows: ids.len(),
            epochs: Epochs::Constant(epoch),
            ids: Ids::Int(Int64Array::from(ids.to_vec())),
            labels: ids.iter().map(|id| id % 2).collect::<Vec<_>>().into(),
            outputs: Outputs::F32(logits.into()),
            n_classes: 2,
            lines: None,
        }
    }

    pub(super) fn shuffled(ids: &mut [i64], seed: u64) {
        let mut x = seed | 1;
        for i in (1..ids.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ids.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }

    fn read(batches: &[LongBatch]) -> (State, Option<ArrayRef>) {
        let mut keyed = KeyedState::new(Kind::Logits, NanPolicy::Raise);
        for b in batches {
            keyed.fold(b, &|_| true).unwrap();
        }
        keyed.into_state().unwrap()
    }

    /// Each part of a batch checks its own labels and rows in parallel; the error reported is
    /// the first failing part's, whatever the threads, and names the row's id.
    #[test]
    fn the_first_bad_row_of_a_large_batch_is_reported() {
        let ids: Vec<i64> = (0..5 * PART as i64).map(|i| 1000 + i).collect();
        for threads in [1, 4] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut labels: Vec<i64> = ids.iter().map(|id| id % 2).collect();
            labels[4 * PART + 3] = 7;
            labels[PART + 5] = -1;
            let mut bad = batch(0, &ids);
            bad.labels = labels.into();
            let err =
                pool.install(|| KeyedState::new(Kind::Logits, NanPolicy::Raise).fold(&bad, &|_| true)).unwrap_err();
            let want = format!("label -1 of example with id {} is out of range", ids[PART + 5]);
            assert!(err.to_string().contains(&want), "{threads} threads: {err}");
            // A non-finite output in an earlier part than a bad label wins.
            let Outputs::F32(v) = &bad.outputs else { unreachable!() };
            let mut values = v.to_vec();
            values[2 * 7] = f32::NAN;
            bad.outputs = Outputs::F32(values.into());
            let err =
                pool.install(|| KeyedState::new(Kind::Logits, NanPolicy::Raise).fold(&bad, &|_| true)).unwrap_err();
            assert!(matches!(err, Error::NonFinite { .. }), "{threads} threads: {err}");
            assert!(err.to_string().contains(&format!("example with id {}", ids[7])), "{err}");
        }
    }

    /// Ids shuffled over a range of millions look sparse in the first batches (hashed), then
    /// dense (direct): the states moved to their ids' slots are those of a read that was
    /// direct from the start, bit for bit, and packed until an epoch too large for that.
    #[test]
    fn hashed_ids_turn_direct_with_the_same_states() {
        let n = 3_000_000i64;
        for missing in [None, Some(1_234_567i64)] {
            let ids: Vec<i64> = (0..n).filter(|&id| Some(id) != missing).collect();
            let mut epoch0 = ids.clone();
            shuffled(&mut epoch0, 7);
            let mut epoch1 = ids.clone();
            shuffled(&mut epoch1, 11);
            let mut batches: Vec<LongBatch> = epoch0.chunks(100_000).map(|c| batch(0, c)).collect();
            batches.extend(epoch1.chunks(700_000).map(|c| batch(1, c)));
            let mut keyed = KeyedState::new(Kind::Logits, NanPolicy::Raise);
            keyed.fold(&batches[0], &|_| true).unwrap();
            assert!(matches!(keyed.index, Index::Int { .. }), "a sparse-looking first batch is hashed");
            for b in &batches[1..] {
                keyed.fold(b, &|_| true).unwrap();
            }
            assert!(matches!(keyed.index, Index::Direct));
            assert!(keyed.slots.is_packed());
            let (got, got_ids) = keyed.into_state().unwrap();
            let (want, want_ids) = read(&[batch(0, &ids), batch(1, &ids)]);
            assert_eq!(got_ids.is_none(), missing.is_none());
            assert_eq!(got_ids.as_ref().map(|a| a.to_data()), want_ids.as_ref().map(|a| a.to_data()));
            assert!(got.stored().is_packed());
            assert_eq!(got.stored(), want.stored());
            assert_eq!(got.stored().len(), ids.len());

            // An epoch past what a packed state holds: the states widen, and keep their values.
            batches.push(batch(5000, &epoch1));
            let (wide, _) = read(&batches);
            assert!(!wide.stored().is_packed());
            let (one, _) = read(&[batch(0, &ids), batch(1, &ids), batch(5000, &ids)]);
            assert_eq!(wide.stored(), one.stored());
            assert_eq!(wide.stored().get(5).last_epoch, 5000);
            assert_eq!(wide.stored().get(5).first_epoch, 0);
        }
    }

    /// A state based at an id (one range of a split read) holds the states of a state based at
    /// 0, with the ids spelled out: from the first id (no compaction), below it (an empty slot
    /// compacted), and above it (ids below the base go hashed, then back to direct).
    #[test]
    fn a_state_based_at_an_id_matches_one_based_at_zero() {
        let ids: Vec<i64> = (1000..1000 + 3 * PART as i64).collect();
        let mut shuffled_ids = ids.clone();
        shuffled(&mut shuffled_ids, 3);
        let batches = [batch(0, &shuffled_ids), batch(1, &ids)];
        let (want, want_ids) = read(&batches);
        for base in [1000, 999, 1500, 0] {
            let mut keyed = KeyedState::new(Kind::Logits, NanPolicy::Raise).with_id_base(base);
            for b in &batches {
                keyed.fold(b, &|_| true).unwrap();
            }
            if base == 1000 {
                assert_eq!(keyed.slots.len(), (3 * PART).div_ceil(CHUNK) * CHUNK, "no slots below the base");
            }
            let (got, got_ids) = keyed.into_state().unwrap();
            assert_eq!(got.stored(), want.stored(), "base {base}");
            assert_eq!(got_ids.unwrap().to_data(), want_ids.as_ref().unwrap().to_data(), "base {base}");
        }
    }

    /// Sparse ids stay hashed: batches that straddle epochs (so an id new to the index can come
    /// twice in one batch), ids shuffled within each epoch, give the states of the same rows
    /// with dense ids, and the ids come back sorted.
    #[test]
    fn hashed_ids_across_partitions_match_dense_ones() {
        let n = 200_000i64;
        let sparse = |i: i64| i * 1_000_003 - 5_000_000_000;
        let rows: Vec<(u32, i64)> = (0..3u32)
            .flat_map(|e| {
                let mut ids: Vec<i64> = (0..n).collect();
                shuffled(&mut ids, 11 + e as u64);
                ids.into_iter().map(move |i| (e, i))
            })
            .collect();
        let batches = |id: &dyn Fn(i64) -> i64| -> Vec<LongBatch> {
            rows.chunks(70_001)
                .map(|chunk| {
                    let ids: Vec<i64> = chunk.iter().map(|&(_, i)| id(i)).collect();
                    let mut b = batch(0, &ids);
                    // Labels and outputs from the dense id, so both reads see the same rows.
                    let dense: Vec<i64> = chunk.iter().map(|&(_, i)| i).collect();
                    let same = batch(0, &dense);
                    b.labels = same.labels;
                    b.outputs = same.outputs;
                    b.epochs = Epochs::Column(chunk.iter().map(|&(e, _)| e).collect());
                    b
                })
                .collect()
        };
        let (dense, dense_ids) = read(&batches(&|i| i));
        assert!(dense_ids.is_none());
        let mut keyed = KeyedState::new(Kind::Logits, NanPolicy::Raise);
        for b in batches(&sparse) {
            keyed.fold(&b, &|_| true).unwrap();
        }
        assert!(matches!(keyed.index, Index::Int { .. }));
        let (state, ids) = keyed.into_state().unwrap();
        let ids = ids.unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), (0..n).map(sparse).collect::<Vec<_>>());
        assert_eq!(state.stored(), dense.stored());
    }
}
