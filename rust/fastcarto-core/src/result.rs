//! Turning states into the metrics table users see (one row per example, or per
//! (example, class) pair for multi-label tasks), under fastcarto's or a published convention.

use crate::error::{Error, Result};
use crate::options::{Compat, Task};
use crate::state::{ExampleState, NONE, State};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

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

/// Column names of the default table, in order (multi-label tables add `class` after `id`).
pub const DEFAULT_COLUMNS: [&str; 16] = [
    "id",
    "label",
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "never_learned",
    "first_learned",
    "stable_from",
    "aum",
    "threshold_closeness",
    "el2n",
    "loss",
    "entropy",
    "final_pred",
    "n_epochs",
];

struct Builder<'a> {
    slots: &'a [ExampleState],
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl<'a> Builder<'a> {
    fn f64(&mut self, name: &str, f: impl Fn(&ExampleState) -> f64 + Sync + Send) {
        let v: Vec<f64> = crate::alloc::collect(self.slots.par_iter().map(|s| if s.n == 0 { f64::NAN } else { f(s) }));
        self.push(name, DataType::Float64, false, Arc::new(Float64Array::from(v)));
    }
    fn i64(&mut self, name: &str, f: impl Fn(&ExampleState) -> i64 + Sync + Send) {
        let v: Vec<i64> = crate::alloc::collect(self.slots.par_iter().map(f));
        self.push(name, DataType::Int64, false, Arc::new(Int64Array::from(v)));
    }
    /// A u32 field where [`NONE`] means missing.
    fn optional(&mut self, name: &str, f: impl Fn(&ExampleState) -> u32 + Sync + Send) {
        let v: Vec<Option<i64>> =
            self.slots.par_iter().map(|s| Some(f(s)).filter(|&x| x != NONE).map(i64::from)).collect();
        self.push(name, DataType::Int64, true, Arc::new(Int64Array::from(v)));
    }
    fn bool(&mut self, name: &str, f: impl Fn(&ExampleState) -> bool + Sync + Send) {
        let v: Vec<bool> = self.slots.par_iter().map(f).collect();
        self.push(name, DataType::Boolean, false, Arc::new(BooleanArray::from(v)));
    }
    fn push(&mut self, name: &str, dt: DataType, nullable: bool, col: ArrayRef) {
        self.fields.push(Field::new(name, dt, nullable));
        self.columns.push(col);
    }
}

fn mean(sum: f64, s: &ExampleState) -> f64 {
    sum / s.n as f64
}

fn correctness(s: &ExampleState) -> f64 {
    s.n_correct as f64 / s.n as f64
}

/// Builds the metrics table. `ids` (one per example) replaces the default ids `0..n_examples`.
pub fn finalize(state: &State, ids: Option<ArrayRef>, opts: FinalizeOptions) -> Result<RecordBatch> {
    crate::parallel::run_default(state.slots().len(), || build_table(state, ids, opts))
}

fn build_table(state: &State, ids: Option<ArrayRef>, opts: FinalizeOptions) -> Result<RecordBatch> {
    let n_examples = state.n_examples();
    let per = state.task().slots_per_example() as usize;
    let ddof = opts.ddof;
    let mut b = Builder { slots: state.slots(), fields: Vec::new(), columns: Vec::new() };

    let ids: ArrayRef = match ids {
        Some(ids) if ids.len() != n_examples => {
            return Err(Error::invalid(format!("{} ids for {} examples", ids.len(), n_examples)));
        }
        Some(ids) => ids,
        None => Arc::new(Int64Array::from_iter_values(0..n_examples as i64)),
    };
    let id_name = match opts.compat {
        Some(Compat::Cartography) => "guid",
        Some(Compat::Aum) => "sample_id",
        _ => "id",
    };
    // Multi-label: one row per (example, class), ids repeated per class.
    let ids = if per > 1 {
        let take = arrow_array::UInt64Array::from_iter_values((0..n_examples * per).map(|i| (i / per) as u64));
        arrow_select::take::take(ids.as_ref(), &take, None)?
    } else {
        ids
    };
    let id_type = ids.data_type().clone();
    b.push(id_name, id_type, false, ids);
    if let Task::MultiLabel { .. } = state.task() {
        let classes = Int64Array::from_iter_values((0..n_examples * per).map(|i| (i % per) as i64));
        b.push("class", DataType::Int64, false, Arc::new(classes));
    }

    let variability = move |s: &ExampleState| {
        if s.n > ddof { (s.m2 / (s.n - ddof) as f64).sqrt() } else { f64::NAN }
    };
    match opts.compat {
        None => {
            b.optional("label", |s| s.label);
            b.f64("confidence", |s| s.mean);
            b.f64("variability", variability);
            b.f64("correctness", correctness);
            b.i64("forgetting", |s| s.forgetting as i64);
            b.bool("never_learned", |s| s.n > 0 && s.n_correct == 0);
            b.optional("first_learned", |s| s.first_learned);
            b.optional("stable_from", |s| s.stable_from);
            b.f64("aum", |s| mean(s.sum_margin, s));
            b.f64("threshold_closeness", |s| s.mean * (1.0 - s.mean));
            b.f64("el2n", |s| mean(s.sum_el2n, s));
            b.f64("loss", |s| mean(s.sum_loss, s));
            b.f64("entropy", |s| mean(s.sum_entropy, s));
            b.optional("final_pred", |s| s.final_pred);
            b.i64("n_epochs", |s| s.n as i64);
        }
        Some(Compat::Cartography) => {
            // `index` is the row position in allenai/cartography's table.
            let rows = Int64Array::from_iter_values(0..(n_examples * per) as i64);
            b.push("index", DataType::Int64, false, Arc::new(rows));
            b.f64("threshold_closeness", |s| s.mean * (1.0 - s.mean));
            b.f64("confidence", |s| s.mean);
            b.f64("variability", variability);
            b.i64("correctness", |s| s.n_correct as i64);
            b.i64("forgetfulness", |s| if s.n_correct == 0 { CARTOGRAPHY_NEVER_LEARNED } else { s.forgetting as i64 });
        }
        Some(Compat::Aum) => {
            b.f64("aum", |s| mean(s.sum_margin, s));
        }
        Some(Compat::DataIq) => {
            b.f64("confidence", |s| s.mean);
            b.f64("aleatoric", |s| (s.mean * (1.0 - s.mean) - s.m2 / s.n as f64).max(0.0));
            b.f64("variability", variability);
            b.f64("correctness", |s| s.n_confident as f64 / s.n as f64);
        }
        Some(Compat::Toneva) => {
            b.i64("forgetting", |s| if s.n_correct == 0 { s.n as i64 } else { s.forgetting as i64 });
            b.bool("never_learned", |s| s.n > 0 && s.n_correct == 0);
        }
    }
    let mut meta = HashMap::new();
    meta.insert("fastcarto.kind".to_string(), state.kind().as_str().to_string());
    meta.insert("fastcarto.compat".to_string(), opts.compat.map_or("none", Compat::as_str).to_string());
    meta.insert("fastcarto.ddof".to_string(), ddof.to_string());
    let schema = Arc::new(Schema::new_with_metadata(b.fields, meta));
    Ok(RecordBatch::try_new(schema, b.columns)?)
}
