//! The id → slot index: non-negative integer ids dense enough are their own slot (direct
//! addressing, no hashing); other integer ids go through 64 hash tables, one per partition of
//! their hashes, looked up in parallel; string ids through one table. Also the switches from
//! direct to hashed (an id that does not fit) and back (hashed ids that turn out dense).

use super::permute::{permute_in_place, spread};
use super::route::PART;
use super::{CHUNK, KeyedState, used};
use crate::error::{Error, Result};
use crate::metrics::NONE;
use crate::read::long::Ids;
use crate::state::packed::{Slot, with_slots};
use arrow_array::{Array, Int64Array};
use hashbrown::HashTable;
use rayon::prelude::*;
use std::hash::BuildHasher;

/// Direct (id = slot) addressing may waste at most this many slots beyond twice the examples.
const DIRECT_SLACK: u64 = 1 << 20;

fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x5eed_ca27)
}

/// How ids become slots.
pub(super) enum Index {
    /// Integer ids at or above [`KeyedState`]'s `base` are their own slot, less `base` (0
    /// unless the read is one range of ids: its state then starts at the range's first id).
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

impl KeyedState {
    /// The slot of every row, creating slots for new ids.
    pub(super) fn assign(&mut self, ids: &Ids, rows: Option<&[u32]>) -> Result<Vec<u32>> {
        let pick = |i: usize| rows.map_or(i, |r| r[i] as usize);
        let n = rows.map_or(ids_len(ids), <[u32]>::len);
        if let (Index::Direct, Ids::Int(a)) = (&self.index, ids) {
            // One parallel pass (with many threads a serial pass over every row would bound the
            // whole fold): each id becomes its slot, and the ids' range says whether that holds.
            // The buffer of the previous batch (`fold_epoch_rows` gives it back), not fresh pages.
            let base = self.base;
            let mut slots = std::mem::take(&mut self.slot_buffer);
            slots.clear();
            slots.resize(n, 0);
            let (min, max) = slots
                .par_chunks_mut(PART)
                .enumerate()
                .map(|(k, out)| {
                    let mut range = (i64::MAX, i64::MIN);
                    for (j, slot) in out.iter_mut().enumerate() {
                        let id = a.value(pick(k * PART + j));
                        range = (range.0.min(id), range.1.max(id));
                        *slot = id.wrapping_sub(base) as u32;
                    }
                    range
                })
                .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
            let (min, max) = if n == 0 { (base, base) } else { (min, max) };
            if dense_enough(min.saturating_sub(base), max.saturating_sub(base), self.present + n as u64) {
                self.grow((max - base) as usize + 1)?;
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
        let (h, base) = (hasher(), self.base);
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
                    let id = slot as i64 + base;
                    let hash = h.hash_one(id);
                    ids.push(id);
                    tables[id_part(hash)].insert_unique(hash, new, |&s: &u32| h.hash_one(ids_at(&ids, s)));
                    v[kept] = s;
                    kept += 1;
                }
            }
            v[kept..].fill(Slot::EMPTY);
            kept
        });
        self.len = kept;
        let span = (base, ids.last().copied().unwrap_or(base - 1));
        self.index = Index::Int { tables, ids, span };
        Ok(())
    }

    /// Returns to direct addressing once the integer ids seen turn out to be dense after all:
    /// ids shuffled within each epoch make the first batches look sparse (a sample spread over
    /// the whole range), and hashing every row of a large run costs several cache misses.
    /// The states move in place to their ids' slots, so memory peaks at the direct layout's
    /// size (plus what is left of 4 bytes per hashed id), never at two copies of the state.
    pub(super) fn maybe_direct(&mut self) -> Result<()> {
        let Index::Int { ref ids, span: (min, max), .. } = self.index else { return Ok(()) };
        let base = self.base;
        if ids.is_empty() || !dense_enough(min.saturating_sub(base), max.saturating_sub(base), ids.len() as u64) {
            return Ok(());
        }
        let Index::Int { ids, .. } = std::mem::replace(&mut self.index, Index::Direct) else {
            unreachable!("matched above")
        };
        // Sort the hashed states by id (still within their own slots): (id, slot) pairs sort
        // as plain integers, in parallel, without looking ids up at random. `dense_enough`
        // keeps the ids within 0..NONE.
        let mut pairs: Vec<u64> =
            ids.par_iter().enumerate().map(|(slot, &id)| (((id - base) as u64) << 32) | slot as u64).collect();
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
        let span = (max - base) as usize + 1;
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

/// Whether integer ids in `min..=max` (less the state's `base`), `count` of them distinct, are
/// worth addressing directly (slot = id - base): at least half the slots used, give or take
/// `DIRECT_SLACK`.
fn dense_enough(min: i64, max: i64, count: u64) -> bool {
    min >= 0 && (max as u64) < (2 * count + DIRECT_SLACK).min(NONE as u64)
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
