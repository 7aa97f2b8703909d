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

use crate::error::{Error, Example, Result};
use crate::kernel::math::Real;
use crate::kernel::{GROUP, Lanes, Scratch, Sink, fold_epoch};
use crate::metrics::{ExampleState, NONE, Observation};
use crate::metrics::{Kind, NanPolicy, Task};
use crate::read::long::{Ids, Labels, LongBatch, Outputs};
use crate::state::State;
use crate::state::packed::{Slot, Slots, with_slots};
use crate::sys::bigvec::BigVec;
use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use hashbrown::HashTable;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Slots per parallel task of the scatter (5.5 MiB of state); the state grows a chunk at a time.
const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Rows are merged in blocks of this many slots (350 KiB of state, within L2).
const BUCKET_BITS: u32 = 12;
/// How many rows ahead the scatter prefetches the state it will update.
const PREFETCH: usize = 24;

/// Direct (id = slot) addressing may waste at most this many slots beyond twice the examples.
const DIRECT_SLACK: u64 = 1 << 20;

fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x5eed_ca27)
}

/// How ids become slots.
enum Index {
    /// Ids are non-negative integers used as slots; nothing has been seen yet when `None`.
    Direct,
    /// Integer ids through [`ID_PARTS`] hash tables, one per partition of the ids' hashes.
    Int {
        tables: Vec<HashTable<u32>>,
        /// Slot → id.
        ids: Vec<i64>,
        /// Smallest and largest id in `ids`.
        span: (i64, i64),
    },
    Str {
        table: HashTable<u32>,
        ids: Vec<Box<str>>,
    },
}

/// The states of every example seen so far, keyed by the examples' ids.
pub struct KeyedState {
    task: Task,
    kind: Kind,
    nan_policy: NanPolicy,
    allow_label_change: bool,
    index: Index,
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
}

/// Rows observed and routed together by one task of [`KeyedState::scatter`] (several per batch,
/// so that many threads share a batch's kernel work).
const PART: usize = 1 << 13;

/// Rows of a batch observed and routed at once (16 MiB of routed rows): larger batches go in
/// pieces of this many rows.
const ROUTED_ROWS: usize = 1 << 18;

/// A run of `PART` rows of a batch, sorted by block of `BUCKET` slots.
#[derive(Default)]
struct Part {
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
    pub fn new(kind: Kind, nan_policy: NanPolicy) -> Self {
        KeyedState {
            task: Task::MultiClass { n_classes: 0 },
            kind,
            nan_policy,
            allow_label_change: false,
            index: Index::Direct,
            string_ids: None,
            slots: Slots::Packed(BigVec::new()),
            len: 0,
            present: 0,
            epochs: BTreeSet::new(),
            rows: 0,
            parts: Vec::new(),
        }
    }

    pub fn with_label_changes(mut self, allow: bool) -> Self {
        self.allow_label_change = allow;
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
        if batch.rows == 0 {
            return Ok(());
        }
        self.check_shape(batch)?;
        let rows: Vec<u32>;
        match batch.epochs.range(batch.rows) {
            Some((lo, hi)) if lo == hi => {
                if keep(lo) {
                    self.fold_epoch(batch, lo, None)?;
                }
            }
            _ => {
                // Several epochs in one batch: fold each epoch's rows in epoch order.
                let mut order: Vec<u32> = (0..batch.rows as u32).collect();
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
        match &batch.outputs {
            Outputs::F32(v) => self.scatter(v, c, rows, &slots, epoch, &batch.labels)?,
            Outputs::F64(v) => self.scatter(v, c, rows, &slots, epoch, &batch.labels)?,
        }
        self.maybe_direct()?;
        self.epochs.insert(epoch);
        self.rows += n as u64;
        Ok(())
    }

    /// The slot of every row, creating slots for new ids.
    fn assign(&mut self, ids: &Ids, rows: Option<&[u32]>) -> Result<Vec<u32>> {
        let pick = |i: usize| rows.map_or(i, |r| r[i] as usize);
        let n = rows.map_or(ids_len(ids), <[u32]>::len);
        if let (Index::Direct, Ids::Int(a)) = (&self.index, ids) {
            // One parallel pass (with many threads a serial pass over every row would bound the
            // whole fold): each id becomes its slot, and the ids' range says whether that holds.
            let mut slots = vec![0u32; n];
            let (min, max) = slots
                .par_chunks_mut(PART)
                .enumerate()
                .map(|(k, out)| {
                    let mut range = (i64::MAX, i64::MIN);
                    for (j, slot) in out.iter_mut().enumerate() {
                        let id = a.value(pick(k * PART + j));
                        range = (range.0.min(id), range.1.max(id));
                        *slot = id as u32;
                    }
                    range
                })
                .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
            let (min, max) = if n == 0 { (0, 0) } else { (min, max) };
            if dense_enough(min, max, self.present + n as u64) {
                self.grow(max as usize + 1)?;
                return Ok(slots);
            }
            self.switch_to_hashed()?;
        }
        if let (Index::Direct, Ids::Str(_)) = (&self.index, ids) {
            self.switch_to_hashed()?;
            self.index = Index::Str { table: HashTable::new(), ids: Vec::new() };
        }
        let h = hasher();
        let start = self.len;
        let out = match (&mut self.index, ids) {
            (Index::Int { tables, ids: known, span }, Ids::Int(a)) => {
                let out = assign_int(tables, known, span, a, rows)?;
                self.len = known.len();
                out
            }
            (Index::Str { table, ids: known }, Ids::Str(a)) => {
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let id = a.value(pick(i));
                    let hash = h.hash_one(id);
                    let slot = *table
                        .entry(hash, |&s| &*known[s as usize] == id, |&s| h.hash_one(&*known[s as usize]))
                        .or_insert_with(|| {
                            known.push(id.into());
                            (known.len() - 1) as u32
                        })
                        .get();
                    out.push(slot);
                }
                self.len = known.len();
                out
            }
            _ => unreachable!("check_shape keeps the id type fixed"),
        };
        if self.len >= NONE as usize {
            return Err(Error::invalid(format!("more than {} distinct ids", NONE - 1)));
        }
        let len = self.len;
        self.len = start;
        self.grow(len)?;
        Ok(out)
    }

    /// Leaves direct addressing: the ids seen so far become hash-table entries, keeping slots.
    fn switch_to_hashed(&mut self) -> Result<()> {
        if !matches!(self.index, Index::Direct) {
            return Ok(());
        }
        let h = hasher();
        let mut tables: Vec<HashTable<u32>> = (0..ID_PARTS).map(|_| HashTable::new()).collect();
        let mut ids = Vec::with_capacity(self.len);
        // Compact the used slots to the front, in place (slot order is id order).
        let len = self.len;
        let kept = with_slots!(&mut self.slots, v => {
            let mut kept = 0;
            for slot in 0..len {
                let s = v[slot];
                if used(&s.get()) {
                    let new = ids.len() as u32;
                    let hash = h.hash_one(slot as i64);
                    ids.push(slot as i64);
                    tables[id_part(hash)].insert_unique(hash, new, |&s: &u32| h.hash_one(ids_at(&ids, s)));
                    v[kept] = s;
                    kept += 1;
                }
            }
            v[kept..].fill(Slot::EMPTY);
            kept
        });
        self.len = kept;
        let span = (0, ids.last().copied().unwrap_or(-1));
        self.index = Index::Int { tables, ids, span };
        Ok(())
    }

    /// Returns to direct addressing once the integer ids seen turn out to be dense after all:
    /// ids shuffled within each epoch make the first batches look sparse (a sample spread over
    /// the whole range), and hashing every row of a large run costs several cache misses.
    /// The states move in place to their ids' slots, so memory peaks at the direct layout's
    /// size (plus what is left of 4 bytes per hashed id), never at two copies of the state.
    fn maybe_direct(&mut self) -> Result<()> {
        let Index::Int { ref ids, span: (min, max), .. } = self.index else { return Ok(()) };
        if ids.is_empty() || !dense_enough(min, max, ids.len() as u64) {
            return Ok(());
        }
        let Index::Int { ids, .. } = std::mem::replace(&mut self.index, Index::Direct) else {
            unreachable!("matched above")
        };
        // Sort the hashed states by id (still within their own slots): (id, slot) pairs sort
        // as plain integers, in parallel, without looking ids up at random. `dense_enough`
        // keeps the ids within 0..NONE.
        let mut pairs: Vec<u64> =
            ids.par_iter().enumerate().map(|(slot, &id)| ((id as u64) << 32) | slot as u64).collect();
        drop(ids);
        crate::sys::alloc::release_free_memory(); // the hash table and the 64-bit ids
        pairs.par_sort_unstable();
        let order: Vec<u32> = pairs.par_iter().map(|&p| p as u32).collect();
        let ids: Vec<u32> = pairs.par_iter().map(|&p| (p >> 32) as u32).collect();
        drop(pairs);
        let count = ids.len();
        with_slots!(&mut self.slots, v => permute_in_place(&mut v[..count], order));
        // ... then spread them to their ids' slots, last first, over slots not written before
        // (so pages are touched only as they are filled, by all threads).
        let span = max as usize + 1;
        let target = span.div_ceil(CHUNK) * CHUNK;
        with_slots!(&mut self.slots, v => {
            let add = target.saturating_sub(v.len());
            let bytes = target as u128 * std::mem::size_of_val(&v[0]) as u128;
            // SAFETY: the states are plain numbers (all-zero bytes are a valid state), and
            // `spread` writes every slot.
            unsafe { v.extend_untouched(add) }.map_err(|_| Error::OutOfMemory { what: "the state".into(), bytes })?;
            spread(v, ids);
        });
        self.len = span;
        Ok(())
    }

    /// Makes room for slots `0..len`.
    fn grow(&mut self, len: usize) -> Result<()> {
        with_slots!(&mut self.slots, v => grow(v, len))?;
        self.len = self.len.max(len);
        Ok(())
    }

    /// Observes the rows of one epoch (`values`, `c` columns; `rows`: which ones, `None`: all)
    /// and merges row `i`'s observation (with label `labels[i]`) into slot `slots[i]`, in
    /// parallel over parts of rows, then over chunks of slots. Each part checks its own labels
    /// (a pass of its own over each batch, with a parallel phase of its own, took 31 of ≈ 400 ms
    /// for 10M rows in an instrumented build), and the error of the first failing part is
    /// reported, whatever the threads.
    fn scatter<T: Real>(
        &mut self,
        values: &[T],
        c: usize,
        rows: Option<&[u32]>,
        slots: &[u32],
        epoch: u32,
        labels: &Labels,
    ) -> Result<()> {
        let gathered: Vec<T>;
        let values = match rows {
            None => values,
            Some(r) => {
                gathered = r.iter().flat_map(|&i| &values[i as usize * c..(i as usize + 1) * c]).copied().collect();
                &gathered
            }
        };
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
            Index::Direct => slot.to_string(),
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
        let KeyedState { task, kind, allow_label_change, index, mut slots, len, present, .. } = self;
        with_slots!(&mut slots, v => v.truncate(len));
        let ids: Option<ArrayRef> = match index {
            // Every id below the largest was seen (a whole dataset): nothing to compact, and
            // the ids are the table's default ones.
            Index::Direct if present == len as u64 => None,
            Index::Direct => with_slots!(&mut slots, v => {
                // Compact in place: slot order is id order.
                let mut ids = Vec::new();
                let mut kept = 0;
                for slot in 0..len {
                    if used(&v[slot].get()) {
                        v[kept] = v[slot];
                        ids.push(slot as i64);
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

/// Partitions of the integer id index (by bits 40..46 of the ids' hashes: hashbrown takes its
/// tags from the top bits and its buckets from the low ones, which must stay spread within a
/// partition).
const ID_PARTS: usize = 64;

fn id_part(hash: u64) -> usize {
    (hash >> 40) as usize & (ID_PARTS - 1)
}

/// Marks a table entry that holds the position of a new id among its partition's new ids in
/// this batch, until the batch's new ids get their slots.
const FRESH: u32 = 1 << 31;

/// The slot of every row of integer ids `a` (`rows`: which ones, `None`: all), adding new ids
/// to `known` (slot → id) and to the tables, and widening `span` to the ids seen. Rows are
/// grouped by partition and the partitions looked up in parallel: each touches only its own
/// table, a 64th of the index, so its probes mostly hit cache where one table of millions of
/// ids missed it on nearly every row. New ids get slots partition by partition, after the ids
/// known before (deterministic whatever the threads).
fn assign_int(
    tables: &mut [HashTable<u32>],
    known: &mut Vec<i64>,
    span: &mut (i64, i64),
    a: &Int64Array,
    rows: Option<&[u32]>,
) -> Result<Vec<u32>> {
    let h = hasher();
    let n = rows.map_or(a.len(), <[u32]>::len);
    let (values, hashes): (Vec<i64>, Vec<u64>) = (0..n)
        .into_par_iter()
        .map(|i| {
            let id = a.value(rows.map_or(i, |r| r[i] as usize));
            (id, h.hash_one(id))
        })
        .unzip();
    let (lo, hi) = values
        .par_iter()
        .fold(|| (i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        .reduce(|| (i64::MAX, i64::MIN), |x, y| (x.0.min(y.0), x.1.max(y.1)));
    *span = (span.0.min(lo), span.1.max(hi));
    // The rows of each partition, in row order (a counting sort).
    let mut starts = vec![0usize; ID_PARTS + 1];
    for &hash in &hashes {
        starts[id_part(hash) + 1] += 1;
    }
    for p in 0..ID_PARTS {
        starts[p + 1] += starts[p];
    }
    let mut fill = starts.clone();
    let mut grouped = vec![0u32; n];
    for (i, &hash) in hashes.iter().enumerate() {
        let p = id_part(hash);
        grouped[fill[p]] = i as u32;
        fill[p] += 1;
    }
    // Each partition's rows find their slot, or a provisional `FRESH | k` for the k-th new id.
    let seen: &[i64] = known;
    let found: Vec<(Vec<i64>, Vec<u32>)> = tables
        .par_iter_mut()
        .enumerate()
        .map(|(p, table)| {
            let group = &grouped[starts[p]..starts[p + 1]];
            let (mut fresh, mut slots) = (Vec::new(), Vec::with_capacity(group.len()));
            for &r in group {
                let (id, hash) = (values[r as usize], hashes[r as usize]);
                let id_of = |s: u32, fresh: &[i64]| {
                    if s & FRESH != 0 { fresh[(s & !FRESH) as usize] } else { seen[s as usize] }
                };
                let entry = table.entry(hash, |&s| id_of(s, &fresh) == id, |&s| h.hash_one(id_of(s, &fresh)));
                slots.push(match entry {
                    hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
                    hashbrown::hash_table::Entry::Vacant(e) => {
                        let s = FRESH | fresh.len() as u32;
                        e.insert(s);
                        fresh.push(id);
                        s
                    }
                });
            }
            (fresh, slots)
        })
        .collect();
    let mut bases = Vec::with_capacity(ID_PARTS);
    let mut next = known.len();
    for (fresh, _) in &found {
        bases.push(next);
        next += fresh.len();
    }
    if next >= FRESH as usize {
        return Err(Error::invalid(format!("more than {} distinct ids", FRESH - 1)));
    }
    // The new ids' entries get their slots.
    tables.par_iter_mut().zip(&found).zip(&bases).for_each(|((table, (fresh, _)), &base)| {
        for (k, &id) in fresh.iter().enumerate() {
            let provisional = FRESH | k as u32;
            if let Some(s) = table.find_mut(h.hash_one(id), |&s| s == provisional) {
                *s = (base + k) as u32;
            }
        }
    });
    let mut out = vec![0u32; n];
    for (p, ((_, slots), &base)) in found.iter().zip(&bases).enumerate() {
        for (&r, &s) in grouped[starts[p]..starts[p + 1]].iter().zip(slots) {
            out[r as usize] = if s & FRESH != 0 { (base + (s & !FRESH) as usize) as u32 } else { s };
        }
    }
    for (fresh, _) in found {
        known.extend_from_slice(&fresh);
    }
    Ok(out)
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

/// Whether integer ids in `min..=max`, `count` of them distinct, are worth addressing
/// directly (slot = id): at least half the slots used, give or take `DIRECT_SLACK`.
fn dense_enough(min: i64, max: i64, count: u64) -> bool {
    min >= 0 && (max as u64) < (2 * count + DIRECT_SLACK).min(NONE as u64)
}

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
fn spread<S: Slot>(slots: &mut [S], ids: Vec<u32>) {
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
fn permute_in_place<S: Copy + Send + Sync>(slots: &mut [S], mut order: Vec<u32>) {
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

fn ids_at(ids: &[i64], s: u32) -> i64 {
    ids[s as usize]
}

fn ids_len(ids: &Ids) -> usize {
    match ids {
        Ids::Int(a) => a.len(),
        Ids::Str(a) => a.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::long::Epochs;

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

    fn shuffled(ids: &mut [i64], seed: u64) {
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
