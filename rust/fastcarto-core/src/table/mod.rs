//! Turning states into the metrics table users see (one row per example, or per
//! (example, class) pair for multi-label tasks), under fastcarto's or a published convention.

use crate::error::{Error, Result};
use crate::metrics::{Compat, Kind, Task};
use crate::metrics::{ExampleState, NONE};
use crate::state::State;
use crate::state::packed::{Packed, Slot, Slots};
use crate::state::runs::{RunColumns, Tile};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema};
use multiversion::multiversion;
use rayon::prelude::*;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// allenai/cartography's value of `forgetfulness` for examples never predicted correctly.
pub const CARTOGRAPHY_NEVER_LEARNED: i64 = 1000;

/// How to present a state.
#[derive(Debug, Clone, Copy, Default)]
pub struct FinalizeOptions {
    /// Reproduce a published implementation's conventions and column names.
    pub compat: Option<Compat>,
    /// Delta degrees of freedom of `variability` (0: population std, as every published tool).
    pub ddof: u32,
}

/// Slots per parallel task when building the table. A task's computed states (360 KB) stay in
/// the core's L2 while each column reads them; with 16,384 (1.4 MB) a dense `compute` took 5%
/// longer on one thread.
const CHUNK: usize = 1 << 12;

/// Writes one column's values for a tile of slots, every one of them. Called once per tile (not
/// per slot), so the per-slot expression is inlined into a loop over the tile's arrays (which
/// LLVM vectorizes) instead of costing an indirect call.
type Column<'a, T> = Box<dyn Fn(&Tile<'_>, &mut [MaybeUninit<T>]) + Sync + Send + 'a>;

/// Writes one boolean column's bits for a tile of slots, 64 to a word in Arrow's order (the
/// tile's first slot in the lowest bit of the first word); bits past the tile's end are 0.
type Bits<'a> = Column<'a, u64>;

/// One output column: ready-made, or computed from each slot.
enum Spec<'a> {
    Ready(ArrayRef),
    F64(Column<'a, f64>),
    I64(Column<'a, i64>),
    /// A u32 field where [`NONE`] means missing: the values, then whether each is present.
    Optional(Column<'a, i64>, Bits<'a>),
    Bool(Bits<'a>),
    /// An integer column that is a function of the row number (default ids, row positions),
    /// written chunk by chunk like the metrics rather than built whole before them.
    Rows(Box<RowFill<'a>>),
}

/// Writes the values of rows `rows` of a column that depends on the row number only.
type RowFill<'a> = dyn Fn(std::ops::Range<usize>, &mut [MaybeUninit<i64>]) + Sync + Send + 'a;

/// A column's output buffer, or one task's part of it; booleans are bitmaps (`W`: words).
enum Buf<F, I, W> {
    None,
    F64(F),
    I64(I),
    Optional(I, W),
    Bool(W),
}

/// Whole output columns, and one task's mutable share of them. Not zeroed first: every task
/// writes every value of its share (zeroing them was a serial `memset` of the whole table,
/// 5% of a one-pass dense `compute` on two threads).
type Owned = Buf<Box<[MaybeUninit<f64>]>, Box<[MaybeUninit<i64>]>, Box<[MaybeUninit<u64>]>>;
type Share<'b> = Buf<&'b mut [MaybeUninit<f64>], &'b mut [MaybeUninit<i64>], &'b mut [MaybeUninit<u64>]>;

/// Makes the run hold exactly the states of slots `range` (one task's share); its contents
/// before (a previous share's states) must not be read.
pub(crate) type Fill<'a> = dyn Fn(std::ops::Range<usize>, &mut RunColumns) -> Result<()> + Sync + 'a;

/// Where the table's states come from: a whole state, or computed task by task and never
/// stored whole (one-shot dense inputs, which then need no per-example state at all).
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    Ready(&'a [ExampleState]),
    Computed {
        n_slots: usize,
        fill: &'a Fill<'a>,
    },
    /// States owned by the caller and not needed afterwards: their pages are handed back to
    /// the system as soon as their rows of the table are written.
    Consumed(Consumed<'a, ExampleState>),
    /// The same, stored packed (unpacked a chunk at a time).
    ConsumedPacked(Consumed<'a, Packed>),
}

/// The states of a vector the table builder may release page by page (see [`take_table`]).
pub(crate) struct Consumed<'a, S> {
    ptr: *mut S,
    len: usize,
    owner: std::marker::PhantomData<&'a mut [S]>,
}

impl<S> Clone for Consumed<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Consumed<'_, S> {}

// SAFETY: `Consumed` is created from a vector that `take_table` owns and never touches
// otherwise until the table is built; tasks only read disjoint ranges of it.
unsafe impl<S: Sync> Send for Consumed<'_, S> {}
// SAFETY: as for `Send`: shared between tasks that read disjoint ranges.
unsafe impl<S: Sync> Sync for Consumed<'_, S> {}

impl<'a, S> Consumed<'a, S> {
    /// Borrows `slots` for the whole build: nothing else can touch them meanwhile.
    fn new(slots: &'a mut [S]) -> Self {
        Consumed { ptr: slots.as_mut_ptr(), len: slots.len(), owner: std::marker::PhantomData }
    }

    /// Slots `range`.
    fn slice(self, range: std::ops::Range<usize>) -> &'a [S] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked), initialized, and not written while the table is built
        // (released pages belong to rows already written, which no task reads again).
        unsafe { std::slice::from_raw_parts(self.ptr.add(range.start), range.len()) }
    }

    /// Hands the whole pages of slots `range` back to the system; their rows are done.
    fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(target_os = "linux")]
        {
            let size = std::mem::size_of::<S>();
            let (start, end) = (self.ptr as usize + range.start * size, self.ptr as usize + range.end * size);
            // SAFETY: inside the vector's own allocation (whole pages only), whose states no one
            // reads again; afterwards they read as zeros (valid, if meaningless, states) and the
            // vector is only deallocated.
            unsafe { crate::sys::alloc::dont_need(start, end) };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = range;
    }
}

/// Slots whose rows are written between two releases of a consumed state (23 MB of state;
/// a few chunks in unit tests, so that small states cross several waves).
const WAVE: usize = if cfg!(test) { 3 * CHUNK } else { 1 << 18 };

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Ready(slots) => slots.len(),
            Source::Computed { n_slots, .. } => *n_slots,
            Source::Consumed(c) => c.len,
            Source::ConsumedPacked(c) => c.len,
        }
    }
}

struct Builder<'a> {
    source: Source<'a>,
    fields: Vec<Field>,
    specs: Vec<Spec<'a>>,
}

impl<'a> Builder<'a> {
    /// A float metric; missing (NaN) for examples with no observation.
    fn f64(&mut self, name: &str, f: impl Fn(&ExampleState) -> f64 + Sync + Send + 'a) {
        let col = column(move |s: &ExampleState| if s.n == 0 { f64::NAN } else { f(s) });
        self.field(name, DataType::Float64, false, Spec::F64(col));
    }
    fn i64(&mut self, name: &str, f: impl Fn(&ExampleState) -> i64 + Sync + Send + 'a) {
        self.field(name, DataType::Int64, false, Spec::I64(column(f)));
    }
    fn optional(&mut self, name: &str, f: impl Fn(&ExampleState) -> u32 + Sync + Send + Copy + 'a) {
        let values = column(move |s: &ExampleState| match f(s) {
            NONE => 0,
            x => i64::from(x),
        });
        let present = bits(move |s: &ExampleState| f(s) != NONE);
        self.field(name, DataType::Int64, true, Spec::Optional(values, present));
    }
    fn bool(&mut self, name: &str, f: impl Fn(&ExampleState) -> bool + Sync + Send + 'a) {
        self.field(name, DataType::Boolean, false, Spec::Bool(bits(f)));
    }
    fn rows(&mut self, name: &str, f: impl Fn(std::ops::Range<usize>, &mut [MaybeUninit<i64>]) + Sync + Send + 'a) {
        self.field(name, DataType::Int64, false, Spec::Rows(Box::new(f)));
    }
    fn push(&mut self, name: &str, dt: DataType, nullable: bool, col: ArrayRef) {
        self.field(name, dt, nullable, Spec::Ready(col));
    }
    fn field(&mut self, name: &str, dt: DataType, nullable: bool, spec: Spec<'a>) {
        self.fields.push(Field::new(name, dt, nullable));
        self.specs.push(spec);
    }

    /// Computes every column in one parallel pass over the slots.
    fn finish(self) -> Result<(Vec<Field>, Vec<ArrayRef>)> {
        let Builder { source, fields, specs } = self;
        let n = source.len();
        let mut bufs: Vec<Owned> = specs
            .iter()
            .map(|spec| match spec {
                Spec::Ready(_) => Buf::None,
                Spec::F64(_) => Buf::F64(fresh(n)),
                Spec::I64(_) | Spec::Rows(_) => Buf::I64(fresh(n)),
                Spec::Optional(..) => Buf::Optional(fresh(n), fresh(n.div_ceil(64))),
                Spec::Bool(_) => Buf::Bool(fresh(n.div_ceil(64))),
            })
            .collect();
        let n_chunks = n.div_ceil(CHUNK);
        {
            // Cut every buffer into the same chunks, then regroup them per task.
            let mut parts: Vec<std::vec::IntoIter<Share<'_>>> = bufs
                .iter_mut()
                .map(|b| {
                    let v: Vec<_> = match b {
                        Buf::None => (0..n_chunks).map(|_| Buf::None).collect(),
                        Buf::F64(v) => v.chunks_mut(CHUNK).map(Buf::F64).collect(),
                        Buf::I64(v) => v.chunks_mut(CHUNK).map(Buf::I64).collect(),
                        Buf::Optional(v, ok) => v
                            .chunks_mut(CHUNK)
                            .zip(ok.chunks_mut(CHUNK / 64))
                            .map(|(v, ok)| Buf::Optional(v, ok))
                            .collect(),
                        Buf::Bool(v) => v.chunks_mut(CHUNK / 64).map(Buf::Bool).collect(),
                    };
                    v.into_iter()
                })
                .collect();
            let mut tasks: Vec<Vec<_>> =
                (0..n_chunks).map(|_| parts.iter_mut().map(|p| p.next().unwrap_or(Buf::None)).collect()).collect();
            // A consumed state is done in waves, each followed by the release of its states.
            let per_wave = match source {
                Source::Consumed(_) | Source::ConsumedPacked(_) => WAVE / CHUNK,
                _ => n_chunks.max(1),
            };
            let mut first = 0;
            while first < n_chunks {
                let wave: Vec<_> = tasks.drain(..per_wave.min(tasks.len())).collect();
                let done = first..first + wave.len();
                fill_chunks(source, &specs, wave, first, n)?;
                let released = done.start * CHUNK..(done.end * CHUNK).min(n);
                match source {
                    Source::Consumed(c) => c.release(released),
                    Source::ConsumedPacked(c) => c.release(released),
                    _ => {}
                }
                first = done.end;
            }
        }
        // Each `assume_init` below is sound: `fill_chunks` succeeded, so every chunk's task wrote
        // every value of its share of every buffer (`column` checks that a share and its states
        // have the same length), and the shares cover the buffers.
        let columns = specs
            .into_iter()
            .zip(bufs)
            .map(|(spec, buf)| -> ArrayRef {
                match (spec, buf) {
                    (Spec::Ready(col), _) => col,
                    // SAFETY: written in full, as said above.
                    (_, Buf::F64(v)) => Arc::new(Float64Array::from(unsafe { v.assume_init() }.into_vec())),
                    // SAFETY: written in full, as said above.
                    (_, Buf::I64(v)) => Arc::new(Int64Array::from(unsafe { v.assume_init() }.into_vec())),
                    (_, Buf::Optional(v, ok)) => {
                        // SAFETY: written in full, as said above.
                        let ok = bitmap(unsafe { ok.assume_init() }, n);
                        let nulls = Some(NullBuffer::new(ok)).filter(|n| n.null_count() > 0);
                        // SAFETY: written in full, as said above.
                        Arc::new(Int64Array::new(unsafe { v.assume_init() }.into_vec().into(), nulls))
                    }
                    // SAFETY: written in full, as said above.
                    (_, Buf::Bool(v)) => Arc::new(BooleanArray::new(bitmap(unsafe { v.assume_init() }, n), None)),
                    (_, Buf::None) => unreachable!("every computed column has a buffer"),
                }
            })
            .collect();
        Ok((fields, columns))
    }
}

/// Writes the rows of chunks `first..first + tasks.len()` (each task holds one chunk's share of
/// every output column), in parallel.
fn fill_chunks(
    source: Source<'_>,
    specs: &[Spec<'_>],
    tasks: Vec<Vec<Share<'_>>>,
    first: usize,
    n: usize,
) -> Result<()> {
    // One buffer of states per worker, reused by every task it runs: tasks are single chunks,
    // so that a worker that runs out of work takes the last ones from the other (as large
    // splits, a slower half of the input left one thread idle for 5% of a dense compute), and a
    // fresh buffer per task would cost its page faults every time.
    let buffers: Vec<Mutex<RunColumns>> = (0..rayon::current_num_threads()).map(|_| Mutex::default()).collect();
    tasks.into_par_iter().with_max_len(1).enumerate().try_for_each(|(k, mut outs)| -> Result<()> {
        let c = first + k;
        let range = c * CHUNK..((c + 1) * CHUNK).min(n);
        let worker = rayon::current_thread_index().unwrap_or(0) % buffers.len();
        let mut run = buffers[worker].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match source {
            Source::Ready(slots) => run.set_all(slots[range.clone()].iter().copied()),
            Source::Consumed(consumed) => run.set_all(consumed.slice(range.clone()).iter().copied()),
            Source::ConsumedPacked(consumed) => run.set_all(consumed.slice(range.clone()).iter().map(Slot::get)),
            Source::Computed { fill, .. } => fill(range.clone(), &mut run)?,
        }
        let mut stage = Stage::default();
        for lo in (0..range.len()).step_by(TILE) {
            let at = lo..(lo + TILE).min(range.len());
            let states = &run.tile(at.clone());
            // The tile's words of the bitmaps (tiles start on a word: TILE is a multiple of 64).
            let words = at.start / 64..at.end.div_ceil(64);
            for (out, spec) in outs.iter_mut().zip(specs) {
                match (out, spec) {
                    (Buf::F64(o), Spec::F64(f)) => staged(&mut stage.f64[..], |s| f(states, s), &mut o[at.clone()]),
                    (Buf::I64(o), Spec::I64(f)) => staged(&mut stage.i64[..], |s| f(states, s), &mut o[at.clone()]),
                    (Buf::Optional(o, ok), Spec::Optional(values, present)) => {
                        staged(&mut stage.i64[..], |s| values(states, s), &mut o[at.clone()]);
                        present(states, &mut ok[words.clone()]);
                    }
                    (Buf::Bool(o), Spec::Bool(f)) => f(states, &mut o[words.clone()]),
                    (Buf::I64(o), Spec::Rows(f)) => staged(
                        &mut stage.i64[..],
                        |s| f(range.start + at.start..range.start + at.end, s),
                        &mut o[at.clone()],
                    ),
                    _ => {}
                }
            }
        }
        crate::sys::prefetch::stream_fence();
        Ok(())
    })
}

/// Values of a column staged at a time before they are streamed to the table (8 KiB each).
const TILE: usize = 1024;
const _: () = assert!(TILE.is_multiple_of(64) && CHUNK.is_multiple_of(TILE));

/// A tile's values of one column, staged in cache and then streamed to the table
/// ([`crate::sys::prefetch::stream_copy`]), which is written once and not read again here.
struct Stage {
    f64: Box<[MaybeUninit<f64>; TILE]>,
    i64: Box<[MaybeUninit<i64>; TILE]>,
}

impl Default for Stage {
    fn default() -> Self {
        Stage { f64: Box::new([MaybeUninit::uninit(); TILE]), i64: Box::new([MaybeUninit::uninit(); TILE]) }
    }
}

/// Writes `out.len()` values into `stage` with `write` (which writes all of them) and streams
/// them to `out`.
fn staged<T: Copy>(
    stage: &mut [MaybeUninit<T>],
    write: impl FnOnce(&mut [MaybeUninit<T>]),
    out: &mut [MaybeUninit<T>],
) {
    let stage = &mut stage[..out.len()];
    write(stage);
    crate::sys::prefetch::stream_copy(stage, out);
}

/// A column filler from a per-slot expression, monomorphized so the loop inlines it.
fn column<'a, T>(f: impl Fn(&ExampleState) -> T + Sync + Send + 'a) -> Column<'a, T> {
    Box::new(move |tile: &Tile<'_>, out: &mut [MaybeUninit<T>]| {
        // Every value must be written (the buffers are not initialized otherwise).
        assert_eq!(out.len(), tile.len(), "a column share and its states differ in length");
        write_tile(tile, out, &f);
    })
}

/// `out[i] = f(example i)` over a tile, compiled for the vector instructions this CPU has (the
/// column closures, built for the baseline target, ran two `f64` lanes at a time).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn write_tile<T, F: Fn(&ExampleState) -> T>(tile: &Tile<'_>, out: &mut [MaybeUninit<T>], f: &F) {
    tile.for_each(|i, s| {
        out[i].write(f(&s));
    });
}

/// A filler of a column that depends on the row only: `f(row / per, row % per)` for each row,
/// without a division per row (which, behind a call per row, took 4% of a one-epoch `compute`).
fn by_row<'a>(
    per: usize,
    f: impl Fn(usize, usize) -> usize + Copy + Sync + Send + 'a,
) -> impl Fn(std::ops::Range<usize>, &mut [MaybeUninit<i64>]) + Sync + Send + 'a {
    move |rows, out| {
        assert_eq!(rows.len(), out.len(), "a column share and its rows differ in length");
        if per == 1 {
            for (v, row) in out.iter_mut().zip(rows) {
                v.write(f(row, 0) as i64);
            }
            return;
        }
        let (mut q, mut r) = (rows.start / per, rows.start % per);
        for v in out.iter_mut() {
            v.write(f(q, r) as i64);
            r += 1;
            if r == per {
                (q, r) = (q + 1, 0);
            }
        }
    }
}

/// A boolean column filler from a per-slot predicate: the predicate's loop over the tile
/// writes bytes (vectorized), which are then packed eight at a time. (Packing bit by bit, and in
/// a separate pass over a whole column of bytes, took 8% of a one-epoch dense `compute`.)
fn bits<'a>(f: impl Fn(&ExampleState) -> bool + Sync + Send + 'a) -> Bits<'a> {
    Box::new(move |tile: &Tile<'_>, out: &mut [MaybeUninit<u64>]| {
        let mut bytes = [MaybeUninit::uninit(); TILE];
        let bytes = &mut bytes[..tile.len()];
        write_tile(tile, bytes, &|s: &ExampleState| u8::from(f(s)));
        // SAFETY: `write_tile` wrote every byte.
        pack_bits(unsafe { &*(bytes as *const [MaybeUninit<u8>] as *const [u8]) }, out);
    })
}

/// Packs 0/1 `bytes` into `out`, 64 to a word, the first byte in the lowest bit; every word of
/// `out` is written (bits past the bytes are 0).
fn pack_bits(bytes: &[u8], out: &mut [MaybeUninit<u64>]) {
    assert_eq!(out.len(), bytes.len().div_ceil(64), "a bitmap share and its values differ in length");
    for (word, bytes) in out.iter_mut().zip(bytes.chunks(64)) {
        let mut w = 0u64;
        for (j, eight) in bytes.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..eight.len()].copy_from_slice(eight);
            // Byte i (0 or 1) of x lands in bit 56 + i of x * M: M has bit 7k set in byte k
            // (k = 7 - i), and the partial products never carry into one another.
            let x = u64::from_le_bytes(b);
            w |= (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * j);
        }
        word.write(w);
    }
}

/// A column's buffer of `n` values, not yet written, on huge pages where the system allows.
fn fresh<T>(n: usize) -> Box<[MaybeUninit<T>]> {
    let mut v = Box::new_uninit_slice(n);
    crate::sys::alloc::advise_huge(&mut v);
    v
}

/// `n` bits of a column's words (Arrow numbers bits from the least significant bit of each
/// byte, which on little-endian machines is that of each word).
fn bitmap(words: Box<[u64]>, n: usize) -> BooleanBuffer {
    #[cfg(target_endian = "little")]
    {
        BooleanBuffer::new(arrow_buffer::Buffer::from_vec(words.into_vec()), 0, n)
    }
    #[cfg(not(target_endian = "little"))]
    BooleanBuffer::collect_bool(n, |i| words[i / 64] >> (i % 64) & 1 == 1)
}

fn mean(sum: f64, s: &ExampleState) -> f64 {
    sum / s.n as f64
}

fn correctness(s: &ExampleState) -> f64 {
    s.n_correct as f64 / s.n as f64
}

/// Builds the metrics table. `ids` (one per example) replaces the default ids `0..n_examples`.
pub fn finalize(state: &State, ids: Option<ArrayRef>, opts: FinalizeOptions) -> Result<RecordBatch> {
    let (task, kind) = (state.task(), state.kind());
    crate::sys::pool::run_default(state.stored().len(), || match state.stored() {
        Slots::Wide(slots) => build_table(Source::Ready(slots), task, kind, ids, opts),
        Slots::Packed(slots) => {
            let fill = |range: std::ops::Range<usize>, run: &mut RunColumns| -> Result<()> {
                run.set_all(slots[range].iter().map(Slot::get));
                Ok(())
            };
            build_table(Source::Computed { n_slots: slots.len(), fill: &fill }, task, kind, ids, opts)
        }
    })
}

/// [`finalize`] for a state that is not needed afterwards: takes its examples out (the state is
/// left with none) and hands their memory back to the system as the table is written, so
/// memory peaks near the larger of the two instead of their sum (for a long read of 100M
/// examples, gigabytes less). The arguments are checked first: on error the state is unchanged.
pub fn take_table(state: &mut State, ids: Option<ArrayRef>, opts: FinalizeOptions) -> Result<RecordBatch> {
    check_ids(ids.as_ref(), state.n_examples())?;
    let (task, kind) = (state.task(), state.kind());
    let mut slots = std::mem::take(&mut state.slots);
    crate::sys::pool::run_default(slots.len(), || {
        let source = match &mut slots {
            Slots::Wide(v) => Source::Consumed(Consumed::new(v)),
            Slots::Packed(v) => Source::ConsumedPacked(Consumed::new(v)),
        };
        build_table(source, task, kind, ids, opts)
    })
}

/// Ids, when given, name every example once.
fn check_ids(ids: Option<&ArrayRef>, n_examples: usize) -> Result<()> {
    match ids {
        Some(ids) if ids.len() != n_examples => {
            Err(Error::invalid(format!("{} ids for {} examples", ids.len(), n_examples)))
        }
        _ => Ok(()),
    }
}

/// Builds the table from `source`, the states of every slot of a `task`.
pub(crate) fn build_table(
    source: Source<'_>,
    task: Task,
    kind: Kind,
    ids: Option<ArrayRef>,
    opts: FinalizeOptions,
) -> Result<RecordBatch> {
    let per = task.slots_per_example() as usize;
    let n_examples = source.len() / per;
    let ddof = opts.ddof;
    let mut b = Builder { source, fields: Vec::new(), specs: Vec::new() };

    check_ids(ids.as_ref(), n_examples)?;
    let id_name = match opts.compat {
        Some(Compat::Cartography) => "guid",
        Some(Compat::Aum) => "sample_id",
        _ => "id",
    };
    // Multi-label: one row per (example, class), ids repeated per class.
    match ids {
        // The default ids 0..n_examples, written with the metrics (for 100M examples, 800 MB
        // that would otherwise sit beside the whole state).
        None => b.rows(id_name, by_row(per, |example, _| example)),
        Some(ids) if per > 1 => {
            let take = arrow_array::UInt64Array::from_iter_values((0..n_examples * per).map(|i| (i / per) as u64));
            let repeated = arrow_select::take::take(ids.as_ref(), &take, None)?;
            b.push(id_name, ids.data_type().clone(), false, repeated);
        }
        Some(ids) => b.push(id_name, ids.data_type().clone(), false, ids),
    }
    if let Task::MultiLabel { .. } = task {
        b.rows("class", by_row(per, |_, class| class));
    }

    let variability = move |s: &ExampleState| {
        if s.n > ddof { (s.sums.m2 / (s.n - ddof) as f64).sqrt() } else { f64::NAN }
    };
    match opts.compat {
        None => {
            b.optional("label", |s| s.label);
            b.f64("confidence", |s| s.sums.mean);
            b.f64("variability", variability);
            b.f64("correctness", correctness);
            b.i64("forgetting", |s| s.forgetting as i64);
            b.bool("never_learned", |s| s.n > 0 && s.n_correct == 0);
            b.optional("first_learned", |s| s.first_learned);
            b.optional("stable_from", |s| s.stable_from);
            b.f64("aum", |s| mean(s.sums.margin, s));
            b.f64("threshold_closeness", |s| s.sums.mean * (1.0 - s.sums.mean));
            b.f64("el2n", |s| mean(s.sums.el2n, s));
            b.f64("loss", |s| mean(s.sums.loss, s));
            b.f64("entropy", |s| mean(s.sums.entropy, s));
            b.optional("final_pred", |s| s.final_pred);
            b.i64("n_epochs", |s| s.n as i64);
        }
        Some(Compat::Cartography) => {
            // `index` is the row position in allenai/cartography's table.
            b.rows("index", by_row(1, |row, _| row));
            b.f64("threshold_closeness", |s| s.sums.mean * (1.0 - s.sums.mean));
            b.f64("confidence", |s| s.sums.mean);
            b.f64("variability", variability);
            b.i64("correctness", |s| s.n_correct as i64);
            b.i64("forgetfulness", |s| if s.n_correct == 0 { CARTOGRAPHY_NEVER_LEARNED } else { s.forgetting as i64 });
        }
        Some(Compat::Aum) => {
            b.f64("aum", |s| mean(s.sums.margin, s));
        }
        Some(Compat::DataIq) => {
            b.f64("confidence", |s| s.sums.mean);
            b.f64("aleatoric", |s| (s.sums.mean * (1.0 - s.sums.mean) - s.sums.m2 / s.n as f64).max(0.0));
            b.f64("variability", variability);
            b.f64("correctness", |s| s.n_confident as f64 / s.n as f64);
        }
        Some(Compat::Toneva) => {
            b.i64("forgetting", |s| if s.n_correct == 0 { s.n as i64 } else { s.forgetting as i64 });
            b.bool("never_learned", |s| s.n > 0 && s.n_correct == 0);
        }
    }
    let mut meta = HashMap::new();
    meta.insert("fastcarto.kind".to_string(), kind.as_str().to_string());
    meta.insert("fastcarto.compat".to_string(), opts.compat.map_or("none", Compat::as_str).to_string());
    meta.insert("fastcarto.ddof".to_string(), ddof.to_string());
    let (fields, columns) = b.finish()?;
    let schema = Arc::new(Schema::new_with_metadata(fields, meta));
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Observation;

    /// A state of `n` examples with varied histories (some never observed).
    fn varied_state(n: usize, task: Task) -> State {
        let c = task.output_columns();
        let per = task.slots_per_example() as usize;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let slots = (0..n * per)
            .map(|i| {
                let mut s = ExampleState::EMPTY;
                let label = (next() % task.label_values() as u64) as u32;
                for epoch in 0..(i % 5) as u32 {
                    let g = (next() % 1000) as f64 / 1000.0;
                    let pred = (next() % c.max(2) as u64) as u32;
                    let obs = Observation { gold_prob: g, margin: g - 0.5, el2n: 1.0 - g, loss: 1.0, entropy: g, pred };
                    s.observe(i as u64, epoch, label, &obs).unwrap();
                }
                s
            })
            .collect();
        State::new(0, task, Kind::Logits).unwrap().with_slots(slots)
    }

    #[test]
    fn bitmaps_hold_every_bit_in_arrow_order() {
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 1000, TILE] {
            let values: Vec<bool> = (0..n).map(|i| (i * 7 + i / 3) % 5 < 2).collect();
            let bytes: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
            let mut words = vec![MaybeUninit::new(u64::MAX); n.div_ceil(64)];
            pack_bits(&bytes, &mut words);
            // SAFETY: every word was initialized above.
            let words: Box<[u64]> = words.into_iter().map(|w| unsafe { w.assume_init() }).collect();
            if n % 64 != 0 {
                assert_eq!(words[n / 64] >> (n % 64), 0, "bits past the values are 0");
            }
            let packed = bitmap(words, n);
            assert_eq!(packed, BooleanBuffer::collect_bool(n, |i| values[i]), "{n} values");
            assert_eq!(packed.iter().collect::<Vec<_>>(), values);
        }
    }

    #[test]
    fn row_columns_count_examples_and_classes_from_any_row() {
        let fill = |per: usize, f: fn(usize, usize) -> usize, rows: std::ops::Range<usize>| {
            let mut out = vec![MaybeUninit::new(-1i64); rows.len()];
            by_row(per, f)(rows, &mut out);
            // SAFETY: every value was initialized above.
            out.into_iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<_>>()
        };
        for per in [1, 2, 3, 7] {
            for rows in [0..0, 0..10, 5..29, 1000..1003] {
                let want =
                    |g: fn(usize, usize) -> usize| rows.clone().map(|r| g(r / per, r % per) as i64).collect::<Vec<_>>();
                assert_eq!(fill(per, |q, _| q, rows.clone()), want(|q, _| q), "per {per}, rows {rows:?}");
                assert_eq!(fill(per, |_, r| r, rows.clone()), want(|_, r| r), "per {per}, rows {rows:?}");
            }
        }
    }

    #[test]
    fn a_consumed_state_gives_the_same_table_across_waves() {
        let compats = [None, Some(Compat::Cartography), Some(Compat::Aum), Some(Compat::DataIq), Some(Compat::Toneva)];
        for (task, n) in [
            (Task::MultiClass { n_classes: 3 }, 7 * CHUNK + 123),
            (Task::MultiClass { n_classes: 3 }, 5),
            (Task::MultiLabel { n_classes: 2 }, 2 * CHUNK + 7),
        ] {
            for compat in compats {
                let state = varied_state(n, task);
                let opts = FinalizeOptions { compat, ddof: 0 };
                let ids: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| 3 * i + 1)));
                let want = finalize(&state, Some(ids.clone()), opts).unwrap();
                let mut state = state;
                let got = take_table(&mut state, Some(ids), opts).unwrap();
                assert_eq!(state.n_examples(), 0);
                assert_eq!(got.schema(), want.schema());
                for (a, b) in got.columns().iter().zip(want.columns()) {
                    // NaN for never-observed examples: compare the bytes, not the values.
                    assert_eq!(a.to_data(), b.to_data(), "{compat:?} {task:?}");
                }
            }
        }
    }

    #[test]
    fn a_consumed_state_checks_its_ids() {
        let mut state = varied_state(10, Task::MultiClass { n_classes: 2 });
        let before = state.slots().to_vec();
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..3));
        let err = take_table(&mut state, Some(ids), FinalizeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("3 ids for 10 examples"), "{err}");
        assert_eq!(state.slots(), &before[..]);
    }
}
