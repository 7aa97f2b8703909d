//! States to and from Arrow, so they can be pickled, saved, and moved between processes and
//! machines, then merged. The schema is versioned; loading validates every invariant, so a
//! corrupted or hand-edited state is an error rather than wrong metrics.

use crate::error::{Error, Result};
use crate::metrics::{ExampleState, NONE, Sums};
use crate::metrics::{Kind, Task};
use crate::state::State;
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, UInt32Array};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema};
use std::collections::HashMap;
use std::sync::Arc;

const VERSION: &str = "1";
/// The columns of [`Sums`], in [`Sums::to_array`]'s order.
const F64_FIELDS: [&str; Sums::LEN] = ["mean", "m2", "sum_margin", "sum_el2n", "sum_loss", "sum_entropy"];
const U32_FIELDS: [&str; 10] = [
    "n",
    "n_correct",
    "n_confident",
    "forgetting",
    "first_epoch",
    "last_epoch",
    "first_learned",
    "stable_from",
    "final_pred",
    "label",
];

fn f64_of(s: &ExampleState, i: usize) -> f64 {
    s.sums.to_array()[i]
}

fn u32_of(s: &ExampleState, i: usize) -> u32 {
    [
        s.n,
        s.n_correct,
        s.n_confident,
        s.forgetting,
        s.first_epoch,
        s.last_epoch,
        s.first_learned,
        s.stable_from,
        s.final_pred,
        s.label,
    ][i]
}

/// The state as one record batch, one row per slot, with the problem description in metadata.
pub fn to_record_batch(state: &State) -> Result<RecordBatch> {
    let slots = state.slots();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, name) in F64_FIELDS.iter().enumerate() {
        fields.push(Field::new(*name, DataType::Float64, false));
        cols.push(Arc::new(Float64Array::from_iter_values(slots.iter().map(|s| f64_of(s, i)))));
    }
    for (i, name) in U32_FIELDS.iter().enumerate() {
        fields.push(Field::new(*name, DataType::UInt32, false));
        cols.push(Arc::new(UInt32Array::from_iter_values(slots.iter().map(|s| u32_of(s, i)))));
    }
    let (task, n_classes) = match state.task() {
        Task::MultiClass { n_classes } => ("multiclass", n_classes),
        Task::MultiLabel { n_classes } => ("multilabel", n_classes),
    };
    let meta = HashMap::from([
        ("fastcarto.state_version".to_string(), VERSION.to_string()),
        ("fastcarto.kind".to_string(), state.kind().as_str().to_string()),
        ("fastcarto.task".to_string(), task.to_string()),
        ("fastcarto.n_classes".to_string(), n_classes.to_string()),
        ("fastcarto.allow_label_change".to_string(), state.allows_label_change().to_string()),
    ]);
    Ok(RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, meta)), cols)?)
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("not a fastcarto state: {msg}"))
}

/// Rebuilds a state from [`to_record_batch`]'s output, checking the schema and every invariant.
pub fn from_record_batch(batch: &RecordBatch) -> Result<State> {
    let meta = batch.schema_ref().metadata();
    let get = |k: &str| meta.get(k).ok_or_else(|| bad(format!("metadata key {k:?} is missing")));
    let version = get("fastcarto.state_version")?;
    if version != VERSION {
        return Err(bad(format!("state version {version} is not supported (this build reads {VERSION})")));
    }
    let kind: Kind = get("fastcarto.kind")?.parse()?;
    let n_classes: u32 = get("fastcarto.n_classes")?.parse().map_err(|_| bad("n_classes is not an integer"))?;
    let task = match get("fastcarto.task")?.as_str() {
        "multiclass" => Task::MultiClass { n_classes },
        "multilabel" => Task::MultiLabel { n_classes },
        other => return Err(bad(format!("unknown task {other:?}"))),
    };
    let allow = get("fastcarto.allow_label_change")? == "true";
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| bad(format!("column {name:?} is missing")))
            .and_then(|c| if c.null_count() > 0 { Err(bad(format!("column {name:?} has nulls"))) } else { Ok(c) })
    };
    let mut f = Vec::new();
    for name in F64_FIELDS {
        let c = column(name)?;
        f.push(c.as_any().downcast_ref::<Float64Array>().ok_or_else(|| bad(format!("{name:?} is not float64")))?);
    }
    let mut u = Vec::new();
    for name in U32_FIELDS {
        let c = column(name)?;
        u.push(c.as_any().downcast_ref::<UInt32Array>().ok_or_else(|| bad(format!("{name:?} is not uint32")))?);
    }
    let rows = batch.num_rows();
    let per = task.slots_per_example() as usize;
    if n_classes == 0 || !rows.is_multiple_of(per) {
        return Err(bad(format!("{rows} rows do not fit {per} slots per example")));
    }
    let labels = task.label_values();
    let preds = task.slot_columns().max(2);
    let mut slots = Vec::with_capacity(rows);
    for r in 0..rows {
        let s = ExampleState {
            sums: Sums::from_array(std::array::from_fn(|k| f[k].value(r))),
            n: u[0].value(r),
            n_correct: u[1].value(r),
            n_confident: u[2].value(r),
            forgetting: u[3].value(r),
            first_epoch: u[4].value(r),
            last_epoch: u[5].value(r),
            first_learned: u[6].value(r),
            stable_from: u[7].value(r),
            final_pred: u[8].value(r),
            label: u[9].value(r),
        };
        check_invariants(&s, labels, preds).map_err(|why| bad(format!("row {r}: {why}")))?;
        slots.push(s);
    }
    Ok(State::new(0, task, kind)?
        .with_label_changes(allow)
        .with_stored(crate::state::packed::Slots::from_states(slots)))
}

/// What every slot of a state built by the engine satisfies, checked on load so that a corrupted
/// or hand-edited state is an error rather than impossible metrics. With `n` observed epochs:
/// - counts: `n_correct`, `n_confident <= n`; `forgetting <= min(n_correct, n - n_correct)` (each
///   forgetting event leaves a correct epoch for a wrong one); the epoch span holds `n` epochs.
/// - epochs: `first_epoch <= first_learned <= stable_from <= last_epoch` where set;
///   `first_learned` is set exactly when `n_correct > 0`, `stable_from` exactly when the last
///   epoch was correct (`final_pred == label`).
/// - `mean` (of p(gold), each in [0, 1]) lies in [0, 1]; `m2`, the sum of squared deviations of
///   `n` values in [0, 1], lies in [0, n/4].
/// - per-epoch terms, so their sums lie in `n` times: EL2N in [0, sqrt 2] (the distance between
///   two distributions), entropy in [0, ln C] (C the classes a slot's distribution spans, 2 for
///   one column), loss >= 0; every sum (the margin's too) is finite. These hold whatever the
///   kind: a state re-read under the other kind stays a valid state of that kind.
///
/// The upper bounds allow a relative 1e-6 for rounding (float32 terms summed in float64).
fn check_invariants(s: &ExampleState, labels: u32, preds: u32) -> std::result::Result<(), String> {
    if s.n == 0 {
        // An example whose observations were all omitted still knows its label.
        let unlabeled = ExampleState { label: crate::metrics::NONE, ..*s };
        return if unlabeled != ExampleState::EMPTY {
            Err("an empty slot (n = 0) carries values".into())
        } else if s.label != NONE && s.label >= labels {
            Err(format!("label {} is out of range for {labels} label values", s.label))
        } else {
            Ok(())
        };
    }
    let epochs = s.first_epoch != NONE && s.last_epoch != NONE && s.first_epoch <= s.last_epoch;
    let span_ok = epochs && (s.last_epoch - s.first_epoch) as u64 + 1 >= s.n as u64;
    let in_span = |e: u32| e == NONE || (s.first_epoch <= e && e <= s.last_epoch);
    let learned_in_order = s.first_learned == NONE || s.stable_from == NONE || s.first_learned <= s.stable_from;
    let forgetting_ok = s.forgetting <= s.n_correct && s.forgetting <= s.n - s.n_correct.min(s.n);
    let checks = [
        (span_ok, "the epoch span (first_epoch, last_epoch) does not hold n epochs"),
        (s.n_correct <= s.n && s.n_confident <= s.n, "n_correct or n_confident exceeds n"),
        (forgetting_ok, "forgetting exceeds the correct-to-wrong transitions n_correct and n allow"),
        (in_span(s.first_learned) && in_span(s.stable_from), "first_learned or stable_from lies outside the epochs"),
        (learned_in_order, "stable_from comes before first_learned"),
        ((s.first_learned == NONE) == (s.n_correct == 0), "first_learned disagrees with n_correct"),
        (s.label < labels && s.final_pred < preds, "label or final_pred is out of range"),
        ((s.stable_from == NONE) == (s.final_pred != s.label), "stable_from disagrees with final_pred and label"),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        return Err((*why).to_string());
    }
    let n = s.n as f64;
    let slack = |b: f64| b.abs() * 1e-6 + 1e-12;
    let within = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo - slack(lo) && x <= hi + slack(hi);
    let ranges = [
        ("mean", s.sums.mean, 0.0, 1.0),
        ("m2", s.sums.m2, 0.0, n / 4.0),
        ("sum_el2n", s.sums.el2n, 0.0, n * std::f64::consts::SQRT_2),
        ("sum_entropy", s.sums.entropy, 0.0, n * (preds as f64).ln()),
        ("sum_loss", s.sums.loss, 0.0, f64::INFINITY),
        ("sum_margin", s.sums.margin, f64::NEG_INFINITY, f64::INFINITY),
    ];
    match ranges.iter().find(|(_, x, lo, hi)| !within(*x, *lo, *hi)) {
        Some((name, x, _, _)) if !x.is_finite() => Err(format!("{name} is {x}; it is always finite")),
        Some((name, x, lo, hi)) => Err(format!(
            "{name} is {}, outside [{}, {}], the range {} epochs can give",
            number(*x),
            number(*lo),
            number(*hi),
            s.n
        )),
        None => Ok(()),
    }
}

/// A float as a message shows it: plain digits, or an exponent for very large or small values
/// (`{}` alone writes 5.8e149 as 150 digits).
fn number(x: f64) -> String {
    if x != 0.0 && !(1e-6..1e16).contains(&x.abs()) { format!("{x:e}") } else { format!("{x}") }
}

/// The state as Arrow IPC stream bytes (what `pickle` stores).
pub fn to_ipc_bytes(state: &State) -> Result<Vec<u8>> {
    let batch = to_record_batch(state)?;
    let mut buf = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, batch.schema_ref())?;
    w.write(&batch)?;
    w.finish()?;
    drop(w);
    Ok(buf)
}

/// Reads [`to_ipc_bytes`]'s output. Corrupted or truncated bytes are an error, never a panic
/// or an abort: the stream is framed with the same checks as an IPC stream file.
pub fn from_ipc_bytes(bytes: &[u8]) -> Result<State> {
    from_ipc_buffer(&Buffer::from(bytes))
}

/// [`from_ipc_bytes`] over bytes already in an Arrow buffer (the binding wraps Python's bytes
/// without copying them).
pub fn from_ipc_buffer(buffer: &Buffer) -> Result<State> {
    let name = std::path::Path::new("state");
    let not_ipc = |e| match e {
        Error::Format { reason, .. } => bad(format!("the bytes are not a valid Arrow IPC stream: {reason}")),
        e => e,
    };
    let batches = crate::read::stream_batches_in(buffer, name).map_err(not_ipc)?;
    match batches.as_slice() {
        [batch] => crate::read::guarded(name, "batch 0", || from_record_batch(batch)).map_err(not_ipc),
        _ => Err(bad(format!("expected one record batch, found {}", batches.len()))),
    }
}
