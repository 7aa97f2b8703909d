//! The long table: one row per (epoch, example) with columns `epoch`, `id`, `label` and the
//! model's outputs as a list of floats. This module turns an Arrow record batch of that shape into
//! typed slices, checking everything a file can get wrong.

use crate::error::{Error, Result};
use crate::fold::dense::{IntValue, validate_labels};
use crate::metrics::{Kind, Task};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, downcast_integer};
use arrow_schema::DataType;
use std::sync::Arc;

/// The column names of a long table. The defaults are fastcarto's on-disk format (the one
/// `fastcarto.Recorder` writes); the outputs column defaults to the kind's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub epoch: String,
    pub id: String,
    pub label: String,
    /// `None`: `"logits"` or `"probs"`, after the kind.
    pub outputs: Option<String>,
}

impl Default for Columns {
    fn default() -> Self {
        Columns { epoch: "epoch".into(), id: "id".into(), label: "label".into(), outputs: None }
    }
}

impl Columns {
    pub fn outputs_name(&self, kind: Kind) -> &str {
        self.outputs.as_deref().unwrap_or(kind.as_str())
    }
}

/// Epoch of each row: a column, or one epoch for the whole batch (taken from a file name).
#[derive(Debug, Clone)]
pub enum Epochs {
    Column(Vec<u32>),
    Constant(u32),
}

impl Epochs {
    pub fn get(&self, row: usize) -> u32 {
        match self {
            Epochs::Column(v) => v[row],
            Epochs::Constant(e) => *e,
        }
    }
    /// Smallest and largest epoch of the batch (`None` when it has no rows).
    pub fn range(&self, rows: usize) -> Option<(u32, u32)> {
        match self {
            _ if rows == 0 => None,
            Epochs::Constant(e) => Some((*e, *e)),
            Epochs::Column(v) => Some((*v.iter().min()?, *v.iter().max()?)),
        }
    }
}

/// Example ids of a batch.
#[derive(Debug, Clone)]
pub enum Ids {
    Int(arrow_array::Int64Array),
    Str(StringArray),
}

impl Ids {
    pub fn display(&self, row: usize) -> String {
        match self {
            Ids::Int(a) => a.value(row).to_string(),
            Ids::Str(a) => format!("{:?}", a.value(row)),
        }
    }
    pub fn is_string(&self) -> bool {
        matches!(self, Ids::Str(_))
    }
}

/// The labels of a batch: an integer column as the file holds it (any width, no nulls).
#[derive(Debug, Clone)]
pub struct Labels(ArrayRef);

impl Labels {
    /// Integers of any width; checks that there are no nulls.
    pub fn new(array: &ArrayRef, name: &str) -> Result<Self> {
        native_integers(array, name).map(Labels)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The labels of `rows[range]` (of rows `range` when `rows` is `None`), checked against
    /// `task` and converted to `u32` ([`validate_labels`]; errors name the position within the
    /// range).
    pub fn validate(&self, rows: Option<&[u32]>, range: std::ops::Range<usize>, task: Task) -> Result<Vec<u32>> {
        fn picked<T: IntValue>(
            values: &[T],
            rows: Option<&[u32]>,
            range: std::ops::Range<usize>,
            task: Task,
        ) -> Result<Vec<u32>> {
            match rows {
                None => validate_labels(&values[range], task),
                Some(r) => validate_labels(&r[range].iter().map(|&i| values[i as usize]).collect::<Vec<_>>(), task),
            }
        }
        macro_rules! typed {
            ($t:ty) => {
                picked(self.0.as_primitive::<$t>().values(), rows, range, task)
            };
        }
        downcast_integer! {
            self.0.data_type() => (typed),
            t => unreachable!("Labels::new takes integers only, not {t}"),
        }
    }
}

impl From<Vec<i64>> for Labels {
    fn from(labels: Vec<i64>) -> Self {
        Labels(Arc::new(arrow_array::Int64Array::from(labels)))
    }
}

/// Model outputs of a batch, row-major `[rows, classes]`.
#[derive(Debug, Clone)]
pub enum Outputs {
    F32(arrow_buffer::ScalarBuffer<f32>),
    F64(arrow_buffer::ScalarBuffer<f64>),
}

/// One record batch of a long table, decoded into typed columns (zero-copy where Arrow allows).
#[derive(Debug, Clone)]
pub struct LongBatch {
    pub rows: usize,
    pub epochs: Epochs,
    pub ids: Ids,
    /// Integers of any width, without nulls ([`Labels::validate`]).
    pub labels: Labels,
    pub outputs: Outputs,
    pub n_classes: usize,
    /// Where the rows came from a text file: each row's line (0-based), for error messages.
    pub lines: Option<std::sync::Arc<[u64]>>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str, role: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let present: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        Error::invalid(format!("no {role} column {name:?}; the columns present are {present:?}"))
    })
}

fn no_nulls(array: &dyn Array, name: &str) -> Result<()> {
    if array.null_count() > 0 {
        return Err(Error::invalid(format!("column {name:?} has {} missing (null) values", array.null_count())));
    }
    Ok(())
}

/// An integer column as it is (any width), after checking that it has no nulls; unsigned 64-bit
/// columns go to `int64` (an error names the column if a value does not fit), so that every
/// value the readers see fits in `i64`.
fn native_integers(array: &ArrayRef, name: &str) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::UInt64 => Ok(Arc::new(integers(array, name)?)),
        t if t.is_integer() => no_nulls(array.as_ref(), name).map(|()| array.clone()),
        t => Err(Error::invalid(format!("column {name:?} must hold integers, not {t}"))),
    }
}

/// The epochs of an integer column ([`native_integers`]), read at its own width: the range
/// first, since a batch usually holds a single epoch, which needs no per-row vector.
fn epochs_of(array: &ArrayRef, name: &str) -> Result<Epochs> {
    fn epochs<T: IntValue>(values: &[T], name: &str) -> Result<Epochs> {
        // Branch-free.
        let (lo, hi) = values.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v.widen()), hi.max(v.widen())));
        let valid = |e: i64| u32::try_from(e).ok().filter(|&e| e < crate::metrics::NONE);
        if let Some(&bad) = [lo, hi].iter().find(|&&e| !values.is_empty() && valid(e).is_none()) {
            return Err(Error::invalid(format!("epoch {bad} in column {name:?} is negative or too large")));
        }
        Ok(match values.len() {
            0 => Epochs::Column(Vec::new()),
            _ if lo == hi => Epochs::Constant(lo as u32),
            _ => Epochs::Column(values.iter().map(|&v| v.widen() as u32).collect()),
        })
    }
    macro_rules! typed {
        ($t:ty) => {
            epochs(array.as_primitive::<$t>().values(), name)
        };
    }
    downcast_integer! {
        array.data_type() => (typed),
        t => unreachable!("an integer column, not {t}"),
    }
}

fn integers(array: &ArrayRef, name: &str) -> Result<arrow_array::Int64Array> {
    if !array.data_type().is_integer() {
        return Err(Error::invalid(format!("column {name:?} must hold integers, not {}", array.data_type())));
    }
    no_nulls(array.as_ref(), name)?;
    // The common case shares the column's buffer: copying it cost the keyed readers a fresh,
    // page-faulted column per batch.
    if let Some(already) = array.as_primitive_opt::<arrow_array::types::Int64Type>() {
        return Ok(already.clone());
    }
    // Written here rather than with `arrow-cast`, whose every-type-to-every-type kernel doubled
    // the extension's build for these three conversions (integers, strings, float16).
    macro_rules! typed {
        ($t:ty) => {{
            let values = array.as_primitive::<$t>().values();
            let wide: Option<Vec<i64>> = values.iter().map(|&v| i64::try_from(v).ok()).collect();
            wide.map(arrow_array::Int64Array::from).ok_or_else(|| {
                let bad = values.iter().find(|&&v| i64::try_from(v).is_err()).expect("a value that does not fit");
                Error::invalid(format!("column {name:?} does not fit in int64: value {bad} is above {}", i64::MAX))
            })
        }};
    }
    downcast_integer! {
        array.data_type() => (typed),
        t => unreachable!("an integer column, not {t}"),
    }
}

/// String ids of any Arrow string layout (plain, large, view, or a dictionary of those) as one
/// `Utf8` array; nulls are checked by the caller.
fn utf8_ids(array: &ArrayRef, name: &str) -> Result<StringArray> {
    let too_large = || Error::invalid(format!("column {name:?}: its strings exceed 2 GiB in one batch"));
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().clone(),
        DataType::LargeUtf8 => {
            let large = array.as_string::<i64>();
            i32::try_from(large.value_data().len()).map_err(|_| too_large())?;
            large.iter().collect()
        }
        DataType::Utf8View => {
            let view = array.as_string_view();
            let bytes: usize = view.iter().map(|s| s.map_or(0, str::len)).sum();
            i32::try_from(bytes).map_err(|_| too_large())?;
            view.iter().collect()
        }
        DataType::Dictionary(..) => {
            let dictionary = array.as_any_dictionary();
            let values: ArrayRef = Arc::new(utf8_ids(dictionary.values(), name)?);
            let taken = arrow_select::take::take(&values, dictionary.keys(), None)
                .map_err(|e| Error::invalid(format!("column {name:?}: {e}")))?;
            taken.as_string::<i32>().clone()
        }
        // Inside a dictionary only: its integer values read as their decimal text, as a dictionary
        // of strings would hold them.
        t if t.is_integer() => {
            macro_rules! typed {
                ($t:ty) => {
                    array.as_primitive::<$t>().iter().map(|v| v.map(|v| v.to_string())).collect()
                };
            }
            downcast_integer! {
                t => (typed),
                t => unreachable!("an integer column, not {t}"),
            }
        }
        t => return Err(Error::invalid(format!("column {name:?} must hold integer or string ids, not {t}"))),
    })
}

/// Peeks at a schema: does it hold a column of this name?
pub fn has_column(batch: &RecordBatch, name: &str) -> bool {
    batch.schema().column_with_name(name).is_some()
}

/// Decodes a record batch of a long table. `epoch` gives the batch's epoch when the table has
/// no epoch column (per-epoch files named after their epoch).
pub fn decode(batch: &RecordBatch, columns: &Columns, kind: Kind, epoch: Option<u32>) -> Result<LongBatch> {
    let rows = batch.num_rows();
    let epochs = match (batch.column_by_name(&columns.epoch), epoch) {
        (Some(col), _) => epochs_of(&native_integers(col, &columns.epoch)?, &columns.epoch)?,
        (None, Some(e)) => Epochs::Constant(e),
        (None, None) => {
            column(batch, &columns.epoch, "epoch")?;
            unreachable!("column() fails when the column is missing")
        }
    };
    let id_col = column(batch, &columns.id, "id")?;
    no_nulls(id_col.as_ref(), &columns.id)?;
    let ids = match id_col.data_type() {
        t if t.is_integer() => Ids::Int(integers(id_col, &columns.id)?),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let strings = utf8_ids(id_col, &columns.id)?;
            // A dictionary's keys may be valid while the values they point at are null.
            no_nulls(&strings, &columns.id)?;
            Ids::Str(strings)
        }
        t => return Err(Error::invalid(format!("column {:?} must hold integer or string ids, not {t}", columns.id))),
    };
    let labels = Labels::new(column(batch, &columns.label, "label")?, &columns.label)?;
    let name = columns.outputs_name(kind);
    let out = column(batch, name, "outputs").map_err(|e| match (kind, batch.column_by_name(other_kind(kind))) {
        (_, Some(_)) => Error::invalid(format!(
            "{e}; the table has a {:?} column: read it as {}",
            other_kind(kind),
            other_kind(kind)
        )),
        _ => e,
    })?;
    no_nulls(out.as_ref(), name)?;
    let (values, n_classes): (ArrayRef, usize) = match out.data_type() {
        DataType::FixedSizeList(_, c) => {
            let list = out.as_fixed_size_list();
            let c = *c as usize;
            (list.values().slice(list.offset() * c, rows * c), c)
        }
        DataType::List(_) | DataType::LargeList(_) => list_values(out, name)?,
        t => {
            return Err(Error::invalid(format!(
                "column {name:?} must be a list of floats per row (fixed_size_list<float32|float64>), not {t}"
            )));
        }
    };
    if n_classes == 0 && rows > 0 {
        return Err(Error::invalid(format!("column {name:?} has empty lists: no classes")));
    }
    no_nulls(values.as_ref(), &format!("{name}.item"))?;
    let outputs = match values.data_type() {
        DataType::Float32 => Outputs::F32(values.as_primitive::<Float32Type>().values().clone()),
        DataType::Float64 => Outputs::F64(values.as_primitive::<Float64Type>().values().clone()),
        DataType::Float16 => {
            let widened = values.as_primitive::<Float16Type>().values().iter().map(|v| v.to_f32());
            Outputs::F32(widened.collect::<Vec<f32>>().into())
        }
        t => {
            return Err(Error::invalid(format!(
                "column {name:?} holds {t} values; model outputs must be float32 or float64"
            )));
        }
    };
    Ok(LongBatch { rows, epochs, ids, labels, outputs, n_classes, lines: None })
}

fn other_kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Logits => "probs",
        Kind::Probs => "logits",
    }
}

/// The values of a variable-size list column whose lists all have the same length.
fn list_values(out: &ArrayRef, name: &str) -> Result<(ArrayRef, usize)> {
    let (offsets, values): (Vec<i64>, ArrayRef) = match out.data_type() {
        DataType::List(_) => {
            let l = out.as_list::<i32>();
            (l.value_offsets().iter().map(|&o| o as i64).collect(), l.values().clone())
        }
        _ => {
            let l = out.as_list::<i64>();
            (l.value_offsets().to_vec(), l.values().clone())
        }
    };
    let c = offsets.get(1).map_or(0, |&o| o - offsets[0]);
    if let Some(i) = offsets.windows(2).position(|w| w[1] - w[0] != c) {
        return Err(Error::invalid(format!(
            "column {name:?}: row {i} has {} values but row 0 has {c}; every row needs one value per class",
            offsets[i + 1] - offsets[i]
        )));
    }
    let start = offsets[0] as usize;
    let len = (offsets[offsets.len() - 1] - offsets[0]) as usize;
    Ok((values.slice(start, len), c as usize))
}

/// Builds a long-table record batch (used by readers of other formats and by tests).
pub fn batch(
    epoch: Option<Vec<i64>>,
    ids: ArrayRef,
    labels: Vec<i64>,
    outputs: ArrayRef,
    c: usize,
    columns: &Columns,
    kind: Kind,
) -> Result<RecordBatch> {
    use arrow_array::{FixedSizeListArray, Int64Array};
    use arrow_schema::Field;
    let item = Arc::new(Field::new("item", outputs.data_type().clone(), false));
    let list = FixedSizeListArray::try_new(item, c as i32, outputs, None)?;
    let mut cols: Vec<(&str, ArrayRef)> = Vec::new();
    if let Some(e) = epoch {
        cols.push((&columns.epoch, Arc::new(Int64Array::from(e))));
    }
    cols.push((&columns.id, ids));
    cols.push((&columns.label, Arc::new(Int64Array::from(labels))));
    cols.push((columns.outputs_name(kind), Arc::new(list)));
    Ok(RecordBatch::try_from_iter(cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int64Array};

    fn table(epochs: Vec<i64>) -> RecordBatch {
        let n = epochs.len();
        let ids: ArrayRef = Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()));
        let outputs: ArrayRef = Arc::new(Float32Array::from(vec![0.5f32; 2 * n]));
        batch(Some(epochs), ids, vec![0; n], outputs, 2, &Columns::default(), Kind::Logits).unwrap()
    }

    fn epochs_of(epochs: Vec<i64>) -> Result<Epochs> {
        decode(&table(epochs), &Columns::default(), Kind::Logits, None).map(|b| b.epochs)
    }

    #[test]
    fn one_epoch_per_batch_needs_no_per_row_vector() {
        assert!(matches!(epochs_of(vec![4, 4, 4]).unwrap(), Epochs::Constant(4)));
        match epochs_of(vec![2, 0, 1]).unwrap() {
            Epochs::Column(v) => assert_eq!(v, [2, 0, 1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(epochs_of(vec![]).unwrap().range(0), None);
    }

    #[test]
    fn an_invalid_epoch_anywhere_in_the_batch_is_an_error() {
        for (epochs, bad) in [
            (vec![1, -1, 2], "-1"),
            (vec![1, 2, 1 << 40], "1099511627776"),
            (vec![u32::MAX as i64, 0, 0], "4294967295"),
        ] {
            let err = epochs_of(epochs).unwrap_err().to_string();
            assert!(err.contains(&format!("epoch {bad} in column \"epoch\"")), "{err}");
        }
    }
}
