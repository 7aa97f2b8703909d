//! Reading training dynamics from files: long tables in Arrow IPC (file or stream, compressed or
//! not) and Parquet, directories and globs of them (one file per epoch, shards, Hive-style
//! `epoch=3/` folders), allenai/cartography's `training_dynamics/` JSON lines, and per-epoch
//! `.npy` arrays.
//!
//! Memory stays bounded: files are memory-mapped or read a few batches at a time, and only the
//! per-example state grows (with the number of distinct examples, never with rows or epochs).
//!
//! Forgetting depends on the order of an example's epochs. Files are visited in the order of the
//! epoch in their names, and each batch's rows epoch by epoch, so the usual layouts fold in one
//! pass; an example's observations may also arrive in reverse. When they really interleave (say
//! epochs 3, 1, 2 of one example in that order), the reader starts again and folds the data one
//! epoch at a time, skipping batches that do not hold that epoch.

mod files;
pub mod id_range;
mod ipc;
mod jsonl;
pub mod long;
pub mod npy;
mod npy_epochs;
pub(crate) mod npy_header;
mod parquet;

pub use files::{
    DATA_SUFFIXES, DataFile, FileFormat, IPC_SUFFIXES, PARQUET_SUFFIXES, TABLE_SUFFIXES, discover, epoch_from_name,
};
pub(crate) use ipc::stream_batches_in;
pub use npy_epochs::read_npy_epochs;

use crate::error::{Error, Result};
use crate::fold::keyed::KeyedState;
use crate::metrics::{Kind, NanPolicy};
use crate::read::long::{Columns, LongBatch, decode};
use arrow_array::RecordBatch;
use std::path::Path;
use std::sync::Arc;

/// Which epochs to use, by epoch number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EpochFilter {
    #[default]
    All,
    /// `start..stop` (open-ended without `stop`) every `step` epochs.
    Range { start: u32, stop: Option<u32>, step: u32 },
    /// These epochs.
    List(Vec<u32>),
    /// The first `k` epochs: epoch numbers `0..k`, every one of which must be in the data
    /// (checked after the read), so that a run numbered from 1, or with gaps, is not silently
    /// cut short.
    First(u32),
}

impl EpochFilter {
    pub fn keeps(&self, e: u32) -> bool {
        match self {
            EpochFilter::All => true,
            EpochFilter::Range { start, stop, step } => {
                e >= *start && stop.is_none_or(|s| e < s) && (e - start).is_multiple_of((*step).max(1))
            }
            EpochFilter::List(v) => v.contains(&e),
            EpochFilter::First(k) => e < *k,
        }
    }

    /// The positions along the epoch axis of a dense input with `n_epochs` epochs that this
    /// selects, in order (for dense inputs epoch numbers are positions).
    pub fn positions(&self, n_epochs: usize) -> Result<Vec<usize>> {
        let out_of_range = |e: usize| Error::invalid(format!("epoch {e} is out of range for {n_epochs} epochs"));
        Ok(match self {
            EpochFilter::All => (0..n_epochs).collect(),
            EpochFilter::First(k) if *k as usize > n_epochs => {
                return Err(Error::invalid(format!(
                    "epochs={k} selects the first {k} epochs, but there are {n_epochs}"
                )));
            }
            EpochFilter::First(k) => (0..*k as usize).collect(),
            EpochFilter::Range { start, stop, step } => {
                let stop = stop.map_or(n_epochs, |s| (s as usize).min(n_epochs));
                (*start as usize..stop).step_by((*step).max(1) as usize).collect()
            }
            EpochFilter::List(v) => v
                .iter()
                .map(|&e| if (e as usize) < n_epochs { Ok(e as usize) } else { Err(out_of_range(e as usize)) })
                .collect::<Result<_>>()?,
        })
    }

    /// Errors unless the epochs read (`present`, the kept ones) are what the filter promises:
    /// for [`EpochFilter::First`], all of `0..k`.
    pub fn check_present(&self, present: impl Iterator<Item = u32>) -> Result<()> {
        let EpochFilter::First(k) = *self else { return Ok(()) };
        let present: Vec<u32> = present.collect();
        if present.len() == k as usize {
            return Ok(());
        }
        const SHOWN: usize = 8;
        let mut listed = present.iter().take(SHOWN).map(u32::to_string).collect::<Vec<_>>().join(", ");
        if present.len() > SHOWN {
            listed += ", ...";
        }
        Err(Error::invalid(format!(
            "the first {k} epochs were selected, numbered 0 to {}, but the data has {} of them ({listed}); \
             give the epoch numbers to use as a slice or a list",
            k - 1,
            present.len()
        )))
    }
}

/// How to read a source.
pub struct ReadOptions<'a> {
    pub kind: Kind,
    pub columns: Columns,
    pub nan_policy: NanPolicy,
    pub epochs: EpochFilter,
    /// Examples missing some epochs are an error instead of being summarized over the epochs
    /// they have.
    pub require_complete: bool,
    /// Called after each batch with (bytes done, bytes in all, rows folded).
    pub progress: Option<&'a (dyn Fn(u64, u64, u64) + Sync)>,
    /// Fold only the examples whose id is in this range (one part of a read split by example:
    /// [`id_range`]).
    pub id_range: Option<id_range::IdRange>,
    /// Fold one epoch at a time from the start, as a read does once it finds that some
    /// example's epochs interleave (see [`read_path_part`]).
    pub epoch_at_a_time: bool,
}

impl<'a> ReadOptions<'a> {
    pub fn new(kind: Kind) -> Self {
        ReadOptions {
            kind,
            columns: Columns::default(),
            nan_policy: NanPolicy::Raise,
            epochs: EpochFilter::All,
            require_complete: false,
            progress: None,
            id_range: None,
            epoch_at_a_time: false,
        }
    }
}

/// A record batch and where it came from (for error messages).
pub struct Located {
    pub batch: RecordBatch,
    pub index: usize,
    /// For a text file read as lines: each row's line (0-based; blank lines have no row).
    pub lines: Option<Arc<[u64]>>,
}

/// Visits the record batches of one file. `wanted(i)` may skip batch `i` without folding it
/// (readers that can, skip decoding too). `visit` gets each batch with the fraction of the file
/// read so far.
pub(crate) type Visit<'v> = dyn FnMut(Located, f64) -> Result<()> + 'v;

/// Reads every file of `files` (a long table, possibly spread over many files) into one state.
pub fn read_files(files: &[DataFile], opts: &ReadOptions<'_>) -> Result<KeyedState> {
    if files.is_empty() {
        return Err(Error::Empty("no data files to read".into()));
    }
    checked(fold_all(files, opts)?, opts, "the files hold no rows")
}

/// Reads `source` (as [`read_path`]) as one part of a read split over several processes: the
/// checks on the whole read (some rows, the selected epochs present, `require_complete`) are
/// left to [`check_parts`] once every part is read, so a part may hold no rows, or only some of
/// the epochs. `opts.epochs` of [`EpochFilter::First`] selects here without checking.
///
/// Also says whether the part was folded one epoch at a time (some example's epochs interleave
/// in it, or `opts.epoch_at_a_time`): a read split by example ([`ReadOptions::id_range`]) gives
/// the single read's states bit for bit only if every part folds the way the single read does,
/// so when one part reports `true`, the others are read again with `epoch_at_a_time`.
pub fn read_path_part(source: &str, opts: &ReadOptions<'_>) -> Result<(KeyedState, bool)> {
    read_files_part(&discover(source)?, opts)
}

/// [`read_path_part`] of these files, in this order (a list a client made with [`discover`]
/// and [`DataFile::at`]).
pub fn read_files_part(files: &[DataFile], opts: &ReadOptions<'_>) -> Result<(KeyedState, bool)> {
    if let Some(f) = files.iter().find(|f| f.format == FileFormat::Npy) {
        return Err(Error::invalid(format!("{}: holds .npy arrays, not long tables", f.path.display())));
    }
    fold_all_reporting(files, opts)
}

/// [`read_batches`] as one part of a split read (see [`read_path_part`]).
pub fn read_batches_part(
    batches: impl Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>,
    opts: &ReadOptions<'_>,
) -> Result<KeyedState> {
    fold_batches(batches, opts)
}

/// The checks on the whole of a read split into parts: `rows` rows in all, and `epochs` the
/// union of the parts' epochs (see [`read_path_part`]; `require_complete` is
/// [`crate::state::by_id::check_complete`] on the merged state).
pub fn check_parts(rows: u64, epochs: &[u32], opts: &ReadOptions<'_>) -> Result<()> {
    if rows == 0 {
        return Err(Error::Empty(match opts.epochs {
            EpochFilter::All => "the parts hold no rows".to_string(),
            _ => "no rows in the selected epochs".to_string(),
        }));
    }
    opts.epochs.check_present(epochs.iter().copied())
}

/// An empty state for a read with `opts`: one of a range of integer ids from `lo` up starts its
/// slots at `lo`.
fn new_state(opts: &ReadOptions<'_>) -> KeyedState {
    let state = KeyedState::new(opts.kind, opts.nan_policy);
    match opts.id_range.as_ref().and_then(|r| r.lo.as_ref()) {
        Some(id_range::IdBound::Int(lo)) => state.with_id_base(*lo),
        _ => state,
    }
}

/// Folds every file, in order; one epoch at a time when some example's epochs interleave.
fn fold_all(files: &[DataFile], opts: &ReadOptions<'_>) -> Result<KeyedState> {
    fold_all_reporting(files, opts).map(|(state, _)| state)
}

/// [`fold_all`], also saying whether it folded one epoch at a time.
fn fold_all_reporting(files: &[DataFile], opts: &ReadOptions<'_>) -> Result<(KeyedState, bool)> {
    let total: u64 = files.iter().map(|f| f.size).sum();
    if !opts.epoch_at_a_time {
        match fold_pass(files, opts, total) {
            // Some example's epochs interleave across files or batches: start again below.
            Err(e) if matches!(e.root(), Error::InterleavedEpochs { .. }) => {}
            other => return other.map(|state| (state, false)),
        }
    }
    let (ranges, all) = epoch_ranges(files, opts)?;
    let mut state = new_state(opts);
    for e in all.into_iter().filter(|&e| opts.epochs.keeps(e)) {
        fold_files(files, opts, total, &mut state, &|x| x == e, Some((&ranges, e)))?;
    }
    Ok((state, true))
}

/// The checks every read ends with, on the whole state: some rows (`no_rows` is the message
/// where there are none), every selected epoch present, and with `require_complete` every
/// example seen at every epoch.
fn checked(state: KeyedState, opts: &ReadOptions<'_>, no_rows: &str) -> Result<KeyedState> {
    if state.rows() == 0 {
        return Err(Error::Empty(match opts.epochs {
            EpochFilter::All => no_rows.to_string(),
            _ => "no rows in the selected epochs".to_string(),
        }));
    }
    opts.epochs.check_present(state.epochs())?;
    if opts.require_complete {
        state.check_complete()?;
    }
    Ok(state)
}

fn fold_pass(files: &[DataFile], opts: &ReadOptions<'_>, total: u64) -> Result<KeyedState> {
    let mut state = new_state(opts);
    fold_files(files, opts, total, &mut state, &|e| opts.epochs.keeps(e), None)?;
    Ok(state)
}

type Ranges = Vec<Vec<Option<(u32, u32)>>>;

/// One metadata pass: the (smallest, largest) epoch of every batch of every file, and every
/// epoch number present.
fn epoch_ranges(files: &[DataFile], opts: &ReadOptions<'_>) -> Result<(Ranges, Vec<u32>)> {
    let mut epochs = std::collections::BTreeSet::new();
    let ranges = files
        .iter()
        .map(|file| {
            let mut ranges = Vec::new();
            for_each_batch(file, opts, &|_| true, &mut |b, _| {
                let lb = decode_batch(file, &b, opts)?;
                match &lb.epochs {
                    crate::read::long::Epochs::Constant(e) if lb.rows > 0 => {
                        epochs.insert(*e);
                    }
                    crate::read::long::Epochs::Constant(_) => {}
                    crate::read::long::Epochs::Column(v) => epochs.extend(v.iter().copied()),
                }
                ranges.resize(b.index + 1, None);
                ranges[b.index] = lb.epochs.range(lb.rows);
                Ok(())
            })?;
            Ok(ranges)
        })
        .collect::<Result<_>>()?;
    Ok((ranges, epochs.into_iter().collect()))
}

fn decode_batch(file: &DataFile, b: &Located, opts: &ReadOptions<'_>) -> Result<LongBatch> {
    let mut lb =
        decode(&b.batch, &opts.columns, opts.kind, file.name_epoch).map_err(|e| e.located(file.batch_location(b)))?;
    lb.lines = b.lines.clone();
    Ok(lb)
}

/// Folds every batch of every file; with `only = (ranges, e)`, only batches that hold epoch `e`.
fn fold_files(
    files: &[DataFile],
    opts: &ReadOptions<'_>,
    total: u64,
    state: &mut KeyedState,
    keep: &dyn Fn(u32) -> bool,
    only: Option<(&Ranges, u32)>,
) -> Result<()> {
    let mut done = 0u64;
    let mut selected = Vec::new();
    for (f, file) in files.iter().enumerate() {
        let wanted = |i: usize| match only {
            None => true,
            Some((ranges, e)) => ranges[f].get(i).copied().flatten().is_some_and(|(lo, hi)| lo <= e && e <= hi),
        };
        for_each_batch(file, opts, &wanted, &mut |b, fraction| {
            let lb = decode_batch(file, &b, opts)?;
            let folded = match &opts.id_range {
                None => state.fold(&lb, keep),
                Some(range) => range.select_into(&lb.ids, &mut selected).and_then(|()| {
                    // Every row in range (a whole batch of one part's examples): the plain fold.
                    let select = (selected.len() < lb.rows).then_some(selected.as_slice());
                    state.fold_selected(&lb, keep, select)
                }),
            };
            folded.map_err(|e| e.located(file.batch_location(&b)))?;
            if let Some(progress) = opts.progress {
                progress(done + (file.size as f64 * fraction) as u64, total, state.rows());
            }
            Ok(())
        })?;
        done += file.size;
    }
    Ok(())
}

/// Dispatches on the file's format.
pub(crate) fn for_each_batch(
    file: &DataFile,
    opts: &ReadOptions<'_>,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    match file.format {
        FileFormat::IpcFile => ipc::for_each_file_batch(&file.path, wanted, visit),
        FileFormat::IpcStream => ipc::for_each_stream_batch(&file.path, wanted, visit),
        FileFormat::Parquet => parquet::for_each_batch(&file.path, &opts.columns, opts.kind, wanted, visit),
        FileFormat::CartographyJsonl => {
            jsonl::for_each_batch(&file.path, file.name_epoch, opts.kind, &opts.columns, wanted, visit)
        }
        FileFormat::Npy => Err(Error::invalid(format!(
            "{}: .npy files hold dense arrays, not long tables; read them with read_npy_epochs",
            file.path.display()
        ))),
    }
}

/// Reads a long table from any iterator of record batches (an Arrow C stream, in-memory
/// batches) in the order given. Out-of-order epochs that interleave are an error here, since a
/// stream cannot be read twice.
pub fn read_batches(
    batches: impl Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>,
    opts: &ReadOptions<'_>,
) -> Result<KeyedState> {
    checked(fold_batches(batches, opts)?, opts, "the stream holds no rows")
}

fn fold_batches(
    batches: impl Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>,
    opts: &ReadOptions<'_>,
) -> Result<KeyedState> {
    let mut state = new_state(opts);
    let keep = |e| opts.epochs.keeps(e);
    for (i, batch) in batches.enumerate() {
        let location = format!("batch {i} of the stream");
        let batch = batch.map_err(|e| Error::from(e).located(&location))?;
        let lb = decode(&batch, &opts.columns, opts.kind, None).map_err(|e| e.located(&location))?;
        state.fold(&lb, &keep).map_err(|e| match e.root() {
            Error::InterleavedEpochs { .. } => e.located(format!(
                "{location} (a stream is read once, so an example's epochs must not interleave across its \
                 batches: sort it by epoch, or pass a table or file, which fastcarto reads in epoch order)"
            )),
            _ => e.located(&location),
        })?;
        if let Some(progress) = opts.progress {
            progress(0, 0, state.rows());
        }
    }
    Ok(state)
}

/// Reads whatever `source` names: a file, a directory, or a glob pattern of long-table files.
pub fn read_path(source: &str, opts: &ReadOptions<'_>) -> Result<KeyedState> {
    let files = discover(source)?;
    if files.iter().any(|f| f.format == FileFormat::Npy) {
        return Err(Error::invalid(format!(
            "{source}: holds .npy arrays; read per-epoch .npy files with read_npy_epochs"
        )));
    }
    read_files(&files, opts)
}

/// A dependency's error message (arrow-ipc, parquet, flatbuffers) as one readable line for a
/// user: the first line only (flatbuffers' verifier appends a trace of the fields it walked),
/// no placeholders a dependency left unfilled (`expected {levels_to_read}`), and no Rust range
/// notation (`0..5` becomes `0 to 5`).
pub(crate) fn one_line(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        // `{name}` of identifier characters: an unfilled format placeholder.
        if c == '{'
            && let Some(end) = rest.find('}')
            && end > 1
            && rest[1..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push('?');
            rest = &rest[end + 1..];
            continue;
        }
        // `a..b` / `a..=b` between digits.
        if let Some(after) = rest.strip_prefix("..")
            && out.ends_with(|c: char| c.is_ascii_digit())
        {
            let after = after.strip_prefix('=').unwrap_or(after);
            if after.starts_with(|c: char| c.is_ascii_digit()) {
                out.push_str(" to ");
                rest = after;
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

pub(crate) fn path_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format { path: path.to_path_buf(), reason: reason.into() }
}

thread_local! {
    /// Set while this thread runs a [`guarded`] decoder, whose panics become errors.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a third-party decoder (arrow-ipc, parquet) that may panic on malformed input
/// (apache/arrow-rs#7124 and kin): a panic becomes an error naming the file. The panic hook
/// stays silent for these panics (they are reported as errors), and prints any other panic as
/// the previous hook did.
pub(crate) fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(path_error(path, format!("corrupt data ({what}): {}", one_line(why))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_messages_become_one_readable_line() {
        assert_eq!(
            one_line("insufficient definition levels read from column - expected {levels_to_read}, got {levels_read}"),
            "insufficient definition levels read from column - expected ?, got ?"
        );
        assert_eq!(
            one_line("Utf8 error for string in 0..5: invalid\n\twhile verifying table field `name` at position 12"),
            "Utf8 error for string in 0 to 5: invalid"
        );
        assert_eq!(one_line("labels 0..=3, {} and {a b}"), "labels 0 to 3, {} and {a b}");
    }

    #[test]
    fn epoch_filters_select_dense_positions() {
        assert_eq!(EpochFilter::All.positions(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(EpochFilter::First(2).positions(3).unwrap(), vec![0, 1]);
        assert!(EpochFilter::First(4).positions(3).is_err());
        let every_other = EpochFilter::Range { start: 1, stop: None, step: 2 };
        assert_eq!(every_other.positions(6).unwrap(), vec![1, 3, 5]);
        let capped = EpochFilter::Range { start: 0, stop: Some(9), step: 1 };
        assert_eq!(capped.positions(2).unwrap(), vec![0, 1]);
        assert_eq!(EpochFilter::List(vec![2, 0]).positions(3).unwrap(), vec![2, 0]);
        assert!(EpochFilter::List(vec![3]).positions(3).is_err());
    }

    #[test]
    fn file_format_names_are_distinct() {
        let all = [
            FileFormat::IpcFile,
            FileFormat::IpcStream,
            FileFormat::Parquet,
            FileFormat::CartographyJsonl,
            FileFormat::Npy,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(FileFormat::Parquet.name(), "parquet");
    }

    #[test]
    fn the_first_k_epochs_must_all_be_present() {
        let first = EpochFilter::First(3);
        assert!((0..3).all(|e| first.keeps(e)) && !first.keeps(3));
        assert!(first.check_present([0, 1, 2].into_iter()).is_ok());
        let err = first.check_present([1, 2].into_iter()).unwrap_err().to_string();
        assert!(
            err.contains("the first 3 epochs were selected, numbered 0 to 2, but the data has 2 of them (1, 2)"),
            "{err}"
        );
        let many = EpochFilter::First(20);
        let err = many.check_present(0..10).unwrap_err().to_string();
        assert!(err.contains("has 10 of them (0, 1, 2, 3, 4, 5, 6, 7, ...)"), "{err}");
        for other in
            [EpochFilter::All, EpochFilter::Range { start: 0, stop: Some(3), step: 1 }, EpochFilter::List(vec![4])]
        {
            assert!(other.check_present([1].into_iter()).is_ok());
        }
    }
}
