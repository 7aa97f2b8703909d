//! States to Arrow and back: exact round trips (record batches and IPC bytes), and tampered or
//! corrupted input rejected with an error, never a panic and never a silently wrong state.

mod common;

use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use common::*;
use fastcarto_core::NONE;
use fastcarto_core::serialize::{from_ipc_bytes, from_record_batch, to_ipc_bytes, to_record_batch};
use fastcarto_core::{FinalizeOptions, Kind, State, Task, finalize};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::HashMap;
use std::sync::Arc;

// The stored schema, written out here rather than taken from `serialize`: saved states outlive
// the code that wrote them, so renaming or reordering a column must fail this test too.
const F64_COLUMNS: [&str; 6] = ["mean", "m2", "sum_margin", "sum_el2n", "sum_loss", "sum_entropy"];
const U32_COLUMNS: [&str; 10] = [
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
const META_KEYS: [&str; 5] = [
    "fastcarto.state_version",
    "fastcarto.kind",
    "fastcarto.task",
    "fastcarto.n_classes",
    "fastcarto.allow_label_change",
];

/// A state with some variety: a split of the epochs of a random run, merged back (or not), and
/// sometimes allowing label changes.
fn state_of(case: &Case, k: usize, allow: bool, f32_input: bool) -> State {
    let all = case.all_epochs();
    let k = k % (case.e + 1);
    let part = |epochs: &[usize]| if f32_input { case.dense::<f32>(epochs) } else { case.dense::<f64>(epochs) };
    let mut s = part(&all[..k]).with_label_changes(allow);
    if k.is_multiple_of(2) {
        s.merge(&part(&all[k..])).unwrap_or_else(|e| panic!("merge: {e}"));
    }
    s
}

fn u32_column(batch: &RecordBatch, name: &str) -> Vec<u32> {
    batch.column_by_name(name).unwrap().as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec()
}

fn f64_column(batch: &RecordBatch, name: &str) -> Vec<f64> {
    batch.column_by_name(name).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec()
}

/// `batch` with column `name` replaced by `col` (and its field's type and nullability).
fn replace(batch: &RecordBatch, name: &str, col: ArrayRef, nullable: bool) -> RecordBatch {
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if f.name() == name {
            fields.push(Field::new(name, col.data_type().clone(), nullable));
            cols.push(col.clone());
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())), cols).unwrap()
}

fn set_u32(batch: &RecordBatch, name: &str, row: usize, value: u32) -> RecordBatch {
    let mut v = u32_column(batch, name);
    v[row] = value;
    replace(batch, name, Arc::new(UInt32Array::from(v)), false)
}

fn set_f64(batch: &RecordBatch, name: &str, row: usize, value: f64) -> RecordBatch {
    let mut v = f64_column(batch, name);
    v[row] = value;
    replace(batch, name, Arc::new(Float64Array::from(v)), false)
}

fn drop_column(batch: &RecordBatch, name: &str) -> RecordBatch {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|&i| schema.field(i).name() != name).collect();
    batch.project(&keep).unwrap()
}

fn with_metadata(batch: &RecordBatch, key: &str, value: Option<&str>) -> RecordBatch {
    let schema = batch.schema();
    let mut meta: HashMap<String, String> = schema.metadata().clone();
    match value {
        Some(v) => meta.insert(key.to_string(), v.to_string()),
        None => meta.remove(key),
    };
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, meta)), batch.columns().to_vec()).unwrap()
}

fn must_reject(batch: &RecordBatch, what: &str) -> Result<(), TestCaseError> {
    match from_record_batch(batch) {
        Ok(s) => {
            Err(TestCaseError::fail(format!("{what}: accepted, giving {:?}", &s.slots()[..s.slots().len().min(3)])))
        }
        Err(_) => Ok(()),
    }
}

/// The tamperings of one nonempty slot `r` that break an invariant of the state.
fn tamper_nonempty(batch: &RecordBatch, r: usize, label_values: u32, preds: u32) -> Vec<(String, RecordBatch)> {
    let get = |name: &str| u32_column(batch, name)[r];
    let (n, first, last) = (get("n"), get("first_epoch"), get("last_epoch"));
    let mut out = vec![
        ("n_correct > n".to_string(), set_u32(batch, "n_correct", r, n + 1)),
        ("n_confident > n".to_string(), set_u32(batch, "n_confident", r, n + 1)),
        ("forgetting == n".to_string(), set_u32(batch, "forgetting", r, n)),
        ("n == 0 with values".to_string(), set_u32(batch, "n", r, 0)),
        ("n larger than the epoch span".to_string(), set_u32(batch, "n", r, last - first + 2)),
        ("first_epoch after last_epoch".to_string(), set_u32(batch, "first_epoch", r, last + 1)),
        ("first_epoch missing".to_string(), set_u32(batch, "first_epoch", r, NONE)),
        ("last_epoch missing".to_string(), set_u32(batch, "last_epoch", r, NONE)),
        ("first_learned after the span".to_string(), set_u32(batch, "first_learned", r, last + 1)),
        ("stable_from after the span".to_string(), set_u32(batch, "stable_from", r, last + 1)),
        ("label out of range".to_string(), set_u32(batch, "label", r, label_values)),
        ("label missing".to_string(), set_u32(batch, "label", r, NONE)),
        ("final_pred out of range".to_string(), set_u32(batch, "final_pred", r, preds)),
        ("mean > 1".to_string(), set_f64(batch, "mean", r, 1.5)),
        ("mean < 0".to_string(), set_f64(batch, "mean", r, -0.1)),
        ("mean NaN".to_string(), set_f64(batch, "mean", r, f64::NAN)),
        ("m2 < 0".to_string(), set_f64(batch, "m2", r, -1.0)),
        ("m2 NaN".to_string(), set_f64(batch, "m2", r, f64::NAN)),
        ("m2 infinite".to_string(), set_f64(batch, "m2", r, f64::INFINITY)),
    ];
    if first > 0 {
        out.push(("first_learned before the span".to_string(), set_u32(batch, "first_learned", r, first - 1)));
    }
    if get("n_correct") == 0 {
        out.push(("first_learned without a correct epoch".to_string(), set_u32(batch, "first_learned", r, first)));
    } else {
        out.push(("no first_learned with correct epochs".to_string(), set_u32(batch, "first_learned", r, NONE)));
        out.push(("no correct epoch with first_learned".to_string(), set_u32(batch, "n_correct", r, 0)));
    }
    out
}

/// The tamperings of one empty slot `r`: an empty slot carries nothing (but possibly its label).
fn tamper_empty(batch: &RecordBatch, r: usize, label_values: u32) -> Vec<(String, RecordBatch)> {
    let mut out: Vec<(String, RecordBatch)> = U32_COLUMNS
        .iter()
        .filter(|&&c| c != "n" && c != "label")
        .map(|&c| (format!("empty slot with {c}"), set_u32(batch, c, r, 1)))
        .collect();
    out.extend(F64_COLUMNS.iter().map(|&c| (format!("empty slot with {c}"), set_f64(batch, c, r, 0.25))));
    out.push(("empty slot with a label out of range".to_string(), set_u32(batch, "label", r, label_values)));
    out
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn record_batch_and_ipc_round_trips_are_exact(
        case in case(Dims::default()),
        k in 0usize..13,
        allow: bool,
        f32_input: bool,
    ) {
        let s = state_of(&case, k, allow, f32_input);
        let batch = to_record_batch(&s).unwrap();
        prop_assert_eq!(batch.num_rows(), s.slots().len());
        let back = from_record_batch(&batch).map_err(|e| TestCaseError::fail(format!("from_record_batch: {e}")))?;
        check_states_identical(&back, &s, "record batch round trip")?;
        prop_assert_eq!(back.n_examples(), case.n);

        let bytes = to_ipc_bytes(&s).unwrap();
        let back = from_ipc_bytes(&bytes).map_err(|e| TestCaseError::fail(format!("from_ipc_bytes: {e}")))?;
        check_states_identical(&back, &s, "IPC round trip")?;
        // And the restored state keeps working: it merges and finalizes like the original.
        let mut again = back.clone();
        again.merge(&case.empty_state()).unwrap();
        check_states_identical(&again, &s, "restored + empty")?;
        let t1 = finalize(&back, None, FinalizeOptions::default()).unwrap();
        let t2 = finalize(&s, None, FinalizeOptions::default()).unwrap();
        prop_assert_eq!(t1, t2);
    }

    #[test]
    fn tampered_values_are_rejected(case in case(Dims::default()), k in 0usize..13, r in 0usize..1000) {
        let s = state_of(&case, k, false, false);
        let batch = to_record_batch(&s).unwrap();
        let label_values = case.task.label_values();
        let preds = case.task.slot_columns().max(2);
        let nonempty: Vec<usize> = (0..s.slots().len()).filter(|&i| s.slots()[i].n > 0).collect();
        let empty: Vec<usize> = (0..s.slots().len()).filter(|&i| s.slots()[i].n == 0).collect();
        if !nonempty.is_empty() {
            let row = nonempty[r % nonempty.len()];
            for (what, bad) in tamper_nonempty(&batch, row, label_values, preds) {
                must_reject(&bad, &format!("row {row}: {what}"))?;
            }
        }
        if !empty.is_empty() {
            let row = empty[r % empty.len()];
            for (what, bad) in tamper_empty(&batch, row, label_values) {
                must_reject(&bad, &format!("row {row}: {what}"))?;
            }
        }
    }

    #[test]
    fn tampered_schema_and_metadata_are_rejected(case in case(Dims::default()), k in 0usize..13) {
        let s = state_of(&case, k, false, false);
        let batch = to_record_batch(&s).unwrap();
        let rows = batch.num_rows();
        for name in F64_COLUMNS.iter().chain(U32_COLUMNS.iter()) {
            must_reject(&drop_column(&batch, name), &format!("without column {name}"))?;
        }
        // Wrong column types.
        let as_f32: ArrayRef = Arc::new(Float32Array::from(f64_column(&batch, "mean").iter().map(|&v| v as f32).collect::<Vec<_>>()));
        must_reject(&replace(&batch, "mean", as_f32, false), "mean as float32")?;
        let as_i64: ArrayRef = Arc::new(Int64Array::from(u32_column(&batch, "n").iter().map(|&v| v as i64).collect::<Vec<_>>()));
        must_reject(&replace(&batch, "n", as_i64, false), "n as int64")?;
        let as_u64: ArrayRef = Arc::new(UInt64Array::from(u32_column(&batch, "label").iter().map(|&v| v as u64).collect::<Vec<_>>()));
        must_reject(&replace(&batch, "label", as_u64, false), "label as uint64")?;
        let as_u32: ArrayRef = Arc::new(UInt32Array::from(vec![0u32; rows]));
        must_reject(&replace(&batch, "m2", as_u32, false), "m2 as uint32")?;
        // Nulls.
        let mut with_null: Vec<Option<u32>> = u32_column(&batch, "forgetting").into_iter().map(Some).collect();
        with_null[rows - 1] = None;
        must_reject(&replace(&batch, "forgetting", Arc::new(UInt32Array::from(with_null)), true), "null forgetting")?;
        let mut with_null: Vec<Option<f64>> = f64_column(&batch, "sum_loss").into_iter().map(Some).collect();
        with_null[0] = None;
        must_reject(&replace(&batch, "sum_loss", Arc::new(Float64Array::from(with_null)), true), "null sum_loss")?;
        // Metadata.
        for key in META_KEYS {
            must_reject(&with_metadata(&batch, key, None), &format!("without {key}"))?;
        }
        for (key, value) in [
            ("fastcarto.state_version", "2"),
            ("fastcarto.state_version", ""),
            ("fastcarto.kind", "logit"),
            ("fastcarto.kind", ""),
            ("fastcarto.task", "multi-class"),
            ("fastcarto.n_classes", "abc"),
            ("fastcarto.n_classes", "-1"),
            ("fastcarto.n_classes", "0"),
            ("fastcarto.n_classes", "4294967296"),
            ("fastcarto.n_classes", ""),
        ] {
            must_reject(&with_metadata(&batch, key, Some(value)), &format!("{key} = {value:?}"))?;
        }
        // Fewer classes than the labels and predictions use.
        let (task_name, c) = match case.task {
            Task::MultiClass { n_classes } => ("multiclass", n_classes),
            Task::MultiLabel { n_classes } => ("multilabel", n_classes),
        };
        if task_name == "multiclass" && c >= 3 {
            let too_big = s.slots().iter().any(|x| (x.label != NONE && x.label >= 2) || (x.final_pred != NONE && x.final_pred >= 2));
            let fewer = with_metadata(&batch, "fastcarto.n_classes", Some("2"));
            if too_big {
                must_reject(&fewer, "n_classes smaller than the labels")?;
            }
        }
        // A multi-label state whose rows do not make whole examples.
        if task_name == "multilabel" && c >= 2 {
            must_reject(&batch.slice(0, rows - 1), "a multi-label state cut inside an example")?;
        }
        // Any valid state re-read with another kind is still a valid state of that kind.
        let other = if case.kind == Kind::Logits { "probs" } else { "logits" };
        let relabelled = from_record_batch(&with_metadata(&batch, "fastcarto.kind", Some(other))).unwrap();
        prop_assert_ne!(relabelled.kind(), case.kind);
    }

    /// Arbitrary values in any column: an error or a state that passes its own invariants
    /// (it finalizes and round-trips), never a panic.
    #[test]
    fn arbitrary_tampering_never_panics(
        case in case(Dims::default()),
        k in 0usize..13,
        edits in proptest::collection::vec((0usize..16, 0usize..1000, any::<u32>(), any::<f64>()), 1..4),
    ) {
        let s = state_of(&case, k, false, false);
        let mut batch = to_record_batch(&s).unwrap();
        for (col, row, u, f) in edits {
            let row = row % batch.num_rows();
            let small = [0, 1, 2, 3, u % 16, NONE, NONE - 1, u][(u % 8) as usize];
            batch = if col < 6 {
                let special = [0.0, 1.0, -0.0, f64::NAN, f64::INFINITY, -1e-300, 0.5, f];
                set_f64(&batch, F64_COLUMNS[col], row, special[(u % 8) as usize])
            } else {
                set_u32(&batch, U32_COLUMNS[col - 6], row, small)
            };
        }
        if let Ok(back) = from_record_batch(&batch) {
            let _ = finalize(&back, None, FinalizeOptions::default()).unwrap();
            let again = from_ipc_bytes(&to_ipc_bytes(&back).unwrap()).unwrap();
            check_states_identical(&again, &back, "tampered but accepted, round trip")?;
            let mut merged = back.clone();
            let _ = merged.merge(&back);
        }
    }

    /// Truncated or corrupted IPC bytes: an error (or, for a flip that leaves a valid state, a
    /// state), never a panic.
    #[test]
    fn corrupted_ipc_bytes_never_panic(
        case in case(Dims { max_n: 8, ..Dims::default() }),
        cut in 0usize..100_000,
        flips in proptest::collection::vec((0usize..100_000, 1u8..=255), 0..4),
    ) {
        let s = state_of(&case, case.e, false, false);
        let bytes = to_ipc_bytes(&s).unwrap();
        let cut = cut % bytes.len();
        // Every cut is an error, the end-of-stream marker's included: without it, a stream cut
        // between two messages could not be told from a complete one.
        prop_assert!(from_ipc_bytes(&bytes[..cut]).is_err(), "truncated to {} of {} bytes and accepted", cut, bytes.len());
        let mut flipped = bytes.clone();
        for (at, x) in flips {
            let at = at % flipped.len();
            flipped[at] ^= x;
        }
        if let Ok(back) = from_ipc_bytes(&flipped) {
            let _ = finalize(&back, None, FinalizeOptions::default()).unwrap();
        }
    }
}

#[test]
fn empty_and_zero_example_states_round_trip() {
    for task in
        [Task::MultiClass { n_classes: 1 }, Task::MultiClass { n_classes: 4 }, Task::MultiLabel { n_classes: 3 }]
    {
        for kind in [Kind::Logits, Kind::Probs] {
            for n in [0, 1, 7] {
                let s = State::new(n, task, kind).unwrap().with_label_changes(n == 7);
                let back = from_record_batch(&to_record_batch(&s).unwrap()).unwrap();
                assert_eq!(back, s, "{task:?} {kind:?} n={n}");
                let back = from_ipc_bytes(&to_ipc_bytes(&s).unwrap()).unwrap();
                assert_eq!(back, s, "{task:?} {kind:?} n={n} (ipc)");
                assert_eq!(back.n_examples(), n);
            }
        }
    }
}

#[test]
fn ipc_streams_without_exactly_one_batch_are_rejected() {
    let s = State::new(3, Task::MultiClass { n_classes: 2 }, Kind::Logits).unwrap();
    let batch = to_record_batch(&s).unwrap();
    let stream = |batches: &[&RecordBatch]| {
        let mut buf = Vec::new();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, batch.schema_ref()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        drop(w);
        buf
    };
    assert!(from_ipc_bytes(&stream(&[&batch])).is_ok());
    assert!(from_ipc_bytes(&stream(&[])).is_err(), "no batch");
    assert!(from_ipc_bytes(&stream(&[&batch, &batch])).is_err(), "two batches");
    assert!(from_ipc_bytes(&[]).is_err(), "no bytes");
    assert!(from_ipc_bytes(b"not an arrow stream at all").is_err(), "garbage");
    assert!(from_ipc_bytes(&[0xff; 64]).is_err(), "0xff");
    // A batch that is not a state at all.
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    assert!(from_record_batch(&other).is_err());
}

/// The smallest corruption found to crash the reader: one bit of the schema message of a
/// one-example state (arrow-ipc 59.3 `fb_to_schema` unwraps the optional `fields`). A corrupted
/// pickle must be an error, not a panic.
#[test]
fn one_flipped_bit_in_the_schema_is_an_error() {
    let s = State::new(1, Task::MultiClass { n_classes: 2 }, Kind::Logits).unwrap();
    let mut bytes = to_ipc_bytes(&s).unwrap();
    bytes[23] ^= 0x01;
    assert!(from_ipc_bytes(&bytes).is_err());
}

/// Every byte of a small state's IPC stream overwritten, one at a time, with each of a few
/// values: an error or a state, never a panic or an abort. CI once drew a corruption that made
/// a message claim a body of 57 TB, which arrow-ipc's stream reader allocated up front (the
/// process aborted); the high bytes of every length field are among these positions.
#[test]
fn every_single_byte_overwrite_is_an_error_or_a_state() {
    let mut s = State::new(2, Task::MultiClass { n_classes: 3 }, Kind::Logits).unwrap();
    let outputs = ndarray::Array2::from_shape_vec((2, 3), vec![0.5f32, -1.0, 2.0, 0.0, 1.0, 3.0]).unwrap();
    for epoch in 0..2 {
        s.update(outputs.view(), &[2, 0], epoch, None, Default::default(), Some(1)).unwrap();
    }
    let bytes = to_ipc_bytes(&s).unwrap();
    for at in 0..bytes.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut corrupted = bytes.clone();
            corrupted[at] = value;
            if let Ok(back) = from_ipc_bytes(&corrupted) {
                let _ = finalize(&back, None, FinalizeOptions::default()).unwrap();
            }
        }
    }
}
