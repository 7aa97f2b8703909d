//! Shared helpers of the integration tests: random training runs (proptest strategies), dense
//! states built from them, and tolerant comparison of states.

#![allow(dead_code)]

use fastcarto_core::{ExampleState, Kind, NONE, NanPolicy, Real, State, Sums, Task, compute_dense};
use ndarray::{Array2, Array3};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One random training run: `e` epochs x `n` examples x `c` columns of model outputs.
#[derive(Debug, Clone)]
pub struct Case {
    pub e: usize,
    pub n: usize,
    pub c: usize,
    pub task: Task,
    pub kind: Kind,
    /// One label per slot (`n` for multi-class, `n * c` 0/1 targets for multi-label).
    pub labels: Vec<i64>,
    /// `[e][n][c]`, row-major, as f64 (converted to the tested dtype when used).
    pub values: Vec<f64>,
    /// Some values are NaN / inf, and states are built with `NanPolicy::Omit`.
    pub with_nan: bool,
}

impl Case {
    pub fn nan_policy(&self) -> NanPolicy {
        if self.with_nan { NanPolicy::Omit } else { NanPolicy::Raise }
    }
    pub fn per(&self) -> usize {
        self.task.slots_per_example() as usize
    }
    pub fn array<T: Real>(&self) -> Array3<T> {
        Array3::from_shape_vec((self.e, self.n, self.c), self.values.iter().map(|&v| T::from_f64(v)).collect()).unwrap()
    }
    /// Epoch `e`'s rows of the examples in `examples`, in that order, as a `[rows, c]` array.
    pub fn rows<T: Real>(&self, e: usize, examples: &[usize]) -> Array2<T> {
        let mut out = Vec::with_capacity(examples.len() * self.c);
        for &i in examples {
            let at = (e * self.n + i) * self.c;
            out.extend(self.values[at..at + self.c].iter().map(|&v| T::from_f64(v)));
        }
        Array2::from_shape_vec((examples.len(), self.c), out).unwrap()
    }
    /// The labels (all slots) of the examples in `examples`, in that order.
    pub fn labels_of(&self, examples: &[usize]) -> Vec<i64> {
        let per = self.per();
        examples.iter().flat_map(|&i| self.labels[i * per..(i + 1) * per].iter().copied()).collect()
    }
    /// The same run restricted to examples `lo..hi`.
    pub fn examples(&self, lo: usize, hi: usize) -> Case {
        let mut values = Vec::with_capacity(self.e * (hi - lo) * self.c);
        for e in 0..self.e {
            values.extend_from_slice(&self.values[(e * self.n + lo) * self.c..(e * self.n + hi) * self.c]);
        }
        let per = self.per();
        Case { n: hi - lo, values, labels: self.labels[lo * per..hi * per].to_vec(), ..self.clone() }
    }
    /// The same run restricted to the examples in `examples`, in that order.
    pub fn select(&self, examples: &[usize]) -> Case {
        let mut values = Vec::with_capacity(self.e * examples.len() * self.c);
        for e in 0..self.e {
            for &i in examples {
                values.extend_from_slice(&self.values[(e * self.n + i) * self.c..(e * self.n + i + 1) * self.c]);
            }
        }
        Case { n: examples.len(), values, labels: self.labels_of(examples), ..self.clone() }
    }
    pub fn empty_state(&self) -> State {
        State::new(self.n, self.task, self.kind).unwrap()
    }
    /// `compute_dense` over the given epoch positions (an empty state when there are none).
    pub fn dense<T: Real>(&self, epochs: &[usize]) -> State {
        self.dense_threads::<T>(epochs, None)
    }
    pub fn dense_threads<T: Real>(&self, epochs: &[usize], threads: Option<usize>) -> State {
        if epochs.is_empty() || self.n == 0 {
            return self.empty_state();
        }
        let arr = self.array::<T>();
        compute_dense(arr.view(), epochs, &self.labels, self.task, self.kind, self.nan_policy(), threads)
            .unwrap_or_else(|e| panic!("compute_dense failed on a valid case: {e}"))
    }
    pub fn all_epochs(&self) -> Vec<usize> {
        (0..self.e).collect()
    }
}

// -----------------------------------------------------------------------------------------------
// Strategies
// -----------------------------------------------------------------------------------------------

/// How one row is drawn: ordinary, all equal, integers (ties), tied maximum, confidently right
/// (p(gold) within ~1e-13 of 1), confidently wrong, huge (|z| up to 1e4), near tie, one-hot
/// (probabilities) and tiny probabilities.
pub const BASE: u8 = 0;
pub const ALL_EQUAL: u8 = 1;
pub const INTEGER: u8 = 2;
pub const TIED_MAX: u8 = 3;
pub const CONFIDENT: u8 = 4;
pub const CONFIDENT_WRONG: u8 = 5;
pub const HUGE: u8 = 6;
pub const NEAR_TIE: u8 = 7;
pub const ONE_HOT: u8 = 8;
pub const TINY: u8 = 9;
pub const N_STYLES: u8 = 10;

/// The random draws behind one row.
#[derive(Debug, Clone)]
pub struct RowSeed {
    pub style: u8,
    pub raw: Vec<f64>,
    pub k: usize,
    /// 0: NaN, 1: +inf, 2: -inf at column `k` (when the case has non-finite values); else none.
    pub bad: u8,
}

pub fn row_seed(c: usize) -> impl Strategy<Value = RowSeed> {
    (0..N_STYLES, vec(-1.0..1.0f64, c), 0..c, 0u8..24).prop_map(|(style, raw, k, bad)| RowSeed { style, raw, k, bad })
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Builds one row (`c` values) of outputs from its seed. `gold` is the gold class (multi-class)
/// or the 0/1 targets of the row's columns (multi-label, or one-column binary).
pub fn make_row(seed: &RowSeed, task: Task, kind: Kind, gold: &[i64], with_nan: bool) -> Vec<f64> {
    let c = seed.raw.len();
    let raw = &seed.raw;
    let binary = c == 1 || matches!(task, Task::MultiLabel { .. });
    let mut row = if binary {
        // Every column is its own binary problem, `gold[j]` its target.
        (0..c)
            .map(|j| {
                let t = if gold[j] == 1 { 1.0 } else { -1.0 };
                let z = match seed.style {
                    ALL_EQUAL => raw[0] * 5.0,
                    INTEGER => (raw[j] * 2.5).round(),
                    TIED_MAX => 0.0,
                    CONFIDENT => t * (30.0 + raw[j]),
                    CONFIDENT_WRONG => -t * (30.0 + raw[j]),
                    HUGE => raw[j] * 1e4,
                    NEAR_TIE => raw[j] * 1e-9,
                    TINY => raw[j] * 60.0,
                    _ => raw[j] * 8.0,
                };
                match kind {
                    Kind::Logits => z,
                    Kind::Probs if seed.style == ONE_HOT => {
                        if raw[j] > 0.0 {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Kind::Probs => sigmoid(z),
                }
            })
            .collect()
    } else {
        let g = gold[0] as usize;
        let mut z: Vec<f64> = match seed.style {
            ALL_EQUAL => vec![raw[0] * 5.0; c],
            INTEGER => raw.iter().map(|v| (v * 2.5).round()).collect(),
            HUGE => raw.iter().map(|v| v * 1e4).collect(),
            TINY => raw.iter().map(|v| v * 60.0).collect(),
            _ => raw.iter().map(|v| v * 4.0).collect(),
        };
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        match seed.style {
            TIED_MAX => {
                z[seed.k] = max;
                if raw[0] > 0.0 {
                    z[g] = max;
                }
            }
            CONFIDENT => z[g] = max + 30.0 + raw[g],
            CONFIDENT_WRONG => z[(g + 1 + seed.k % (c - 1)) % c] = max + 30.0,
            NEAR_TIE => z[seed.k] = max + 1e-9 * raw[seed.k].abs(),
            _ => {}
        }
        match kind {
            Kind::Logits => z,
            Kind::Probs if seed.style == ONE_HOT => (0..c).map(|j| if j == seed.k { 1.0 } else { 0.0 }).collect(),
            Kind::Probs => softmax(&z),
        }
    };
    if with_nan && seed.bad < 3 {
        row[seed.k] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][seed.bad as usize];
    }
    row
}

#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub max_e: usize,
    pub max_n: usize,
    pub max_c: usize,
    /// Probability that a case contains NaN / inf values (handled with `NanPolicy::Omit`).
    pub p_nan: f64,
    /// Probability that a case is multi-label.
    pub p_multilabel: f64,
    pub min_e: usize,
}

impl Default for Dims {
    fn default() -> Self {
        Dims { max_e: 12, max_n: 50, max_c: 6, p_nan: 0.3, p_multilabel: 0.25, min_e: 1 }
    }
}

/// A random run: shapes, task, kind, labels and rows of every style.
pub fn case(d: Dims) -> impl Strategy<Value = Case> {
    (
        d.min_e..=d.max_e,
        1..=d.max_n,
        1..=d.max_c,
        proptest::bool::weighted(d.p_multilabel),
        any::<bool>(),
        proptest::bool::weighted(d.p_nan),
    )
        .prop_flat_map(|(e, n, c, multilabel, probs, with_nan)| {
            let task = if multilabel {
                Task::MultiLabel { n_classes: c as u32 }
            } else {
                Task::MultiClass { n_classes: c as u32 }
            };
            let kind = if probs { Kind::Probs } else { Kind::Logits };
            let per = task.slots_per_example() as usize;
            let labels = vec(0..task.label_values() as i64, n * per);
            let seeds = vec(row_seed(c), e * n);
            (Just((e, n, c, task, kind, with_nan)), labels, seeds)
        })
        .prop_map(|((e, n, c, task, kind, with_nan), labels, seeds)| {
            build_case(e, n, c, task, kind, with_nan, labels, &seeds)
        })
}

#[allow(clippy::too_many_arguments)]
pub fn build_case(
    e: usize,
    n: usize,
    c: usize,
    task: Task,
    kind: Kind,
    with_nan: bool,
    labels: Vec<i64>,
    seeds: &[RowSeed],
) -> Case {
    let per = task.slots_per_example() as usize;
    let mut values = Vec::with_capacity(e * n * c);
    for ep in 0..e {
        for i in 0..n {
            let gold = &labels[i * per..(i + 1) * per];
            values.extend(make_row(&seeds[ep * n + i], task, kind, gold, with_nan));
        }
    }
    Case { e, n, c, task, kind, labels, values, with_nan }
}

// -----------------------------------------------------------------------------------------------
// Comparisons
// -----------------------------------------------------------------------------------------------

/// The names of [`Sums`]' fields, in [`Sums::to_array`]'s order.
pub const F64_NAMES: [&str; Sums::LEN] = ["mean", "m2", "sum_margin", "sum_el2n", "sum_loss", "sum_entropy"];

/// A deterministic pseudo-random run (splitmix64), with rows of every style.
pub fn big_case(seed: u64, e: usize, n: usize, task: Task, kind: Kind, with_nan: bool) -> Case {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let c = task.output_columns() as usize;
    let labels: Vec<i64> =
        (0..n * task.slots_per_example() as usize).map(|_| (next() % task.label_values() as u64) as i64).collect();
    let seeds: Vec<RowSeed> = (0..e * n)
        .map(|_| RowSeed {
            style: (next() % N_STYLES as u64) as u8,
            raw: (0..c).map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0).collect(),
            k: (next() % c as u64) as usize,
            bad: (next() % 24) as u8,
        })
        .collect();
    build_case(e, n, c, task, kind, with_nan, labels, &seeds)
}

pub fn floats(s: &ExampleState) -> [f64; Sums::LEN] {
    s.sums.to_array()
}

pub fn counts(s: &ExampleState) -> [(&'static str, u32); 10] {
    [
        ("n", s.n),
        ("n_correct", s.n_correct),
        ("n_confident", s.n_confident),
        ("forgetting", s.forgetting),
        ("first_epoch", s.first_epoch),
        ("last_epoch", s.last_epoch),
        ("first_learned", s.first_learned),
        ("stable_from", s.stable_from),
        ("final_pred", s.final_pred),
        ("label", s.label),
    ]
}

/// Tolerance of a float comparison: `|a - b| <= rel * max(|a|, |b|, scale) + abs * max(n, 1)`,
/// where `scale` is a per-value magnitude below which cancellation may have happened (e.g. the
/// sum of |margin| over epochs) and `n` the number of epochs observed.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub rel: f64,
    pub abs: f64,
}

pub const F64_MERGE: Tol = Tol { rel: 1e-12, abs: 1e-15 };

pub fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

/// Compares two states slot by slot: integer fields exactly, floats within `tol`. `scales`
/// (per slot, per float field) widens the relative tolerance to a magnitude that the value may
/// have cancelled from, as a floating-point sum of terms of mixed sign does.
pub fn check_states_close(
    got: &State,
    want: &State,
    tol: Tol,
    scales: Option<&[Sums]>,
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.task(), want.task(), "{}: task", what);
    prop_assert_eq!(got.kind(), want.kind(), "{}: kind", what);
    prop_assert_eq!(got.slots().len(), want.slots().len(), "{}: slots", what);
    for (i, (g, w)) in got.slots().iter().zip(want.slots().iter()).enumerate() {
        for ((name, a), (_, b)) in counts(g).iter().zip(counts(w).iter()) {
            prop_assert_eq!(a, b, "{}: slot {} field {}: got {:?}, want {:?}", what, i, name, g, w);
        }
        let n = g.n.max(1) as f64;
        for (f, (a, b)) in floats(g).iter().zip(floats(w).iter()).enumerate() {
            let scale = scales.map_or(0.0, |s| s[i].to_array()[f]);
            let ok = a == b || (a - b).abs() <= tol.rel * a.abs().max(b.abs()).max(scale) + tol.abs * n;
            prop_assert!(
                ok,
                "{}: slot {} field {}: got {:e}, want {:e} (diff {:e}, scale {:e})\n got  {:?}\n want {:?}",
                what,
                i,
                F64_NAMES[f],
                a,
                b,
                (a - b).abs(),
                scale,
                g,
                w
            );
        }
    }
    Ok(())
}

/// Bit-for-bit equality of two states (floats compared by bits, so -0.0 != 0.0 and NaN == NaN).
pub fn check_states_identical(got: &State, want: &State, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.task(), want.task(), "{}: task", what);
    prop_assert_eq!(got.kind(), want.kind(), "{}: kind", what);
    prop_assert_eq!(got.allows_label_change(), want.allows_label_change(), "{}: allow_label_change", what);
    prop_assert_eq!(got.slots().len(), want.slots().len(), "{}: slots", what);
    for (i, (g, w)) in got.slots().iter().zip(want.slots().iter()).enumerate() {
        let same =
            counts(g) == counts(w) && floats(g).iter().zip(floats(w).iter()).all(|(a, b)| a.to_bits() == b.to_bits());
        prop_assert!(same, "{}: slot {} differs\n got  {:?}\n want {:?}", what, i, g, w);
    }
    Ok(())
}

/// Per slot, per float field: the sum over the selected epochs of |that epoch's value| (the
/// magnitude a sum of mixed-sign terms may cancel from). Built from single-epoch states.
pub fn abs_scales<T: Real>(case: &Case, epochs: &[usize]) -> Vec<Sums> {
    let mut out = vec![[0.0f64; Sums::LEN]; case.n * case.per()];
    for &e in epochs {
        let s = case.dense::<T>(&[e]);
        for (acc, slot) in out.iter_mut().zip(s.slots().iter()) {
            for (a, v) in acc.iter_mut().zip(floats(slot)) {
                *a += v.abs();
            }
        }
    }
    out.into_iter().map(Sums::from_array).collect()
}

/// Whether an example state is a valid "nothing seen" state.
pub fn is_empty_slot(s: &ExampleState) -> bool {
    *s == ExampleState::EMPTY && s.label == NONE
}

/// Proptest settings: `cases` cases (or `PROPTEST_CASES`, for a longer exploration), no
/// regression files written next to the tests. The seed comes from `PROPTEST_RNG_SEED`, which
/// `scripts/test` fixes.
pub fn config(cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    proptest::test_runner::Config { failure_persistence: None, ..proptest::test_runner::Config::with_cases(cases) }
}

/// [`abs_scales`] for `sum_margin` only (the one float of mixed sign); zero for the others.
pub fn margin_scales<T: Real>(case: &Case, epochs: &[usize]) -> Vec<Sums> {
    abs_scales::<T>(case, epochs).into_iter().map(|s| Sums { margin: s.margin, ..Sums::ZERO }).collect()
}
