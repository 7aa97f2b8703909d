//! The dense kernel against a plain scalar f64 reference written from the definitions.
//!
//! Inputs are converted to f64 exactly (a float32 input is compared with an f64 reference of the
//! same float32 values); one-column binary outputs are expanded in the input's dtype to
//! `[0, z]` (logits) or `[1 - p, p]` (probabilities); argmax is the first maximum.
//!
//! Precision: float64 inputs agree to 1e-12 relative; float32 inputs (f32 `exp` / `ln` per row,
//! f64 accumulation) to 2e-6 relative. Both also get an absolute slack per epoch observed, sized
//! to what the dtype can resolve: ~1e-300 for f64 (exp underflow), 1e-7..1e-6 for f32 (rounding
//! of `z - max` in f32 and of the f32 `exp` near 0), and 1e-15 for the f64 `m2`, which the kernel
//! accumulates with Welford's update and the reference with two passes. `p(gold) > 0.5`
//! (`n_confident`) may go either way within 1e-12 (f64) / 1e-6 (f32) of 0.5.

#![allow(clippy::needless_range_loop)] // the reference is written with obvious index loops on purpose

mod common;

use common::*;
use fastcarto_core::{Error, ExampleState, Kind, NONE, NanPolicy, Real, State, Sums, Task, compute_dense};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// -------------------------------------------------------------------------------------------------
// The reference
// -------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Obs {
    gold_prob: f64,
    margin: f64,
    el2n: f64,
    loss: f64,
    entropy: f64,
    pred: usize,
}

/// One slot row in the input dtype, as the f64 two-or-more-column row the definitions use.
fn expand<T: Real>(row: &[T], kind: Kind) -> Vec<f64> {
    if row.len() == 1 {
        let x = row[0];
        let first = match kind {
            Kind::Logits => T::ZERO,
            Kind::Probs => T::ONE - x,
        };
        vec![first.to_f64(), x.to_f64()]
    } else {
        row.iter().map(|v| v.to_f64()).collect()
    }
}

/// The observation of one row `x` (finite, at least two columns) with gold class `y`.
/// `eps` is the input dtype's machine epsilon (the clip of p(gold) before the log for probs).
fn observe(x: &[f64], y: usize, kind: Kind, eps: f64) -> Obs {
    let c = x.len();
    let mut pred = 0;
    for k in 1..c {
        if x[k] > x[pred] {
            pred = k;
        }
    }
    let mut max_other = f64::NEG_INFINITY;
    for k in 0..c {
        if k != y && x[k] > max_other {
            max_other = x[k];
        }
    }
    let margin = x[y] - max_other;
    match kind {
        Kind::Logits => {
            let m = x[pred];
            let d: Vec<f64> = x.iter().map(|v| v - m).collect();
            let e: Vec<f64> = d.iter().map(|v| v.exp()).collect();
            // Sum of the terms other than the argmax's (which is exp(0) = 1).
            let mut rest = 0.0;
            for k in 0..c {
                if k != pred {
                    rest += e[k];
                }
            }
            let s = 1.0 + rest;
            let ln_s = rest.ln_1p();
            let p: Vec<f64> = e.iter().map(|v| v / s).collect();
            let mut one_minus_g = 0.0;
            let mut sq_other = 0.0;
            let mut entropy = 0.0;
            for k in 0..c {
                if k != y {
                    one_minus_g += p[k];
                    sq_other += p[k] * p[k];
                }
                if p[k] > 0.0 {
                    entropy -= p[k] * (d[k] - ln_s); // ln p_k = d_k - ln s
                }
            }
            Obs {
                gold_prob: p[y],
                margin,
                el2n: (one_minus_g * one_minus_g + sq_other).sqrt(),
                loss: ln_s - d[y],
                entropy,
                pred,
            }
        }
        Kind::Probs => {
            let g = x[y];
            let mut sq_other = 0.0;
            let mut entropy = 0.0;
            for k in 0..c {
                if k != y {
                    sq_other += x[k] * x[k];
                }
                if x[k] > 0.0 {
                    entropy -= x[k] * x[k].ln();
                }
            }
            Obs {
                gold_prob: g,
                margin,
                el2n: ((1.0 - g) * (1.0 - g) + sq_other).sqrt(),
                loss: -g.max(eps).ln(),
                entropy,
                pred,
            }
        }
    }
}

/// The reference state of one slot, from its observations in epoch order, with plain formulas.
/// Also returns the range `n_confident` may take given the `band` around 0.5.
fn summarize(label: u32, obs: &[(u32, Obs)], band: f64) -> (ExampleState, (u32, u32)) {
    if obs.is_empty() {
        // Every observation omitted: nothing known but the label.
        return (ExampleState { label, ..ExampleState::EMPTY }, (0, 0));
    }
    let n = obs.len();
    let mean = obs.iter().map(|(_, o)| o.gold_prob).sum::<f64>() / n as f64;
    let m2 = obs.iter().map(|(_, o)| (o.gold_prob - mean) * (o.gold_prob - mean)).sum::<f64>();
    let sum = |f: fn(&Obs) -> f64| obs.iter().map(|(_, o)| f(o)).sum::<f64>();
    let correct: Vec<bool> = obs.iter().map(|(_, o)| o.pred as u32 == label).collect();
    let forgetting = correct.windows(2).filter(|w| w[0] && !w[1]).count() as u32;
    let first_learned = obs.iter().zip(&correct).find(|(_, ok)| **ok).map_or(NONE, |((e, _), _)| *e);
    let mut stable_from = NONE;
    for ((e, _), ok) in obs.iter().zip(&correct).rev() {
        if !ok {
            break;
        }
        stable_from = *e;
    }
    let confident_lo = obs.iter().filter(|(_, o)| o.gold_prob > 0.5 + band).count() as u32;
    let confident_hi = obs.iter().filter(|(_, o)| o.gold_prob > 0.5 - band).count() as u32;
    let state = ExampleState {
        sums: Sums {
            mean,
            m2,
            margin: sum(|o| o.margin),
            el2n: sum(|o| o.el2n),
            loss: sum(|o| o.loss),
            entropy: sum(|o| o.entropy),
        },
        n: n as u32,
        n_correct: correct.iter().filter(|&&ok| ok).count() as u32,
        n_confident: confident_lo,
        forgetting,
        first_epoch: obs[0].0,
        last_epoch: obs[n - 1].0,
        first_learned,
        stable_from,
        final_pred: obs[n - 1].1.pred as u32,
        label,
    };
    (state, (confident_lo, confident_hi))
}

/// Reference states of every slot of `case` over the epoch positions `epochs` (non-finite rows
/// skipped: the reference of `NanPolicy::Omit`).
fn reference<T: Real>(case: &Case, epochs: &[usize], band: f64) -> Vec<(ExampleState, (u32, u32))> {
    let per = case.per();
    let cols = case.task.slot_columns() as usize;
    let eps = T::EPSILON.to_f64();
    (0..case.n * per)
        .map(|slot| {
            let (i, j) = (slot / per, slot % per);
            let label = case.labels[slot];
            let mut obs = Vec::new();
            for &e in epochs {
                let at = (e * case.n + i) * case.c + j * cols;
                let row: Vec<T> = case.values[at..at + cols].iter().map(|&v| T::from_f64(v)).collect();
                if row.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                obs.push((e as u32, observe(&expand(&row, case.kind), label as usize, case.kind, eps)));
            }
            summarize(label as u32, &obs, band)
        })
        .collect()
}

struct Precision {
    rel: f64,
    /// Absolute slack per epoch observed, per float field (mean, m2, sums).
    abs: Sums,
    band: f64,
}

const F64: Precision = Precision {
    rel: 1e-12,
    abs: Sums { mean: 1e-300, m2: 1e-15, margin: 0.0, el2n: 1e-300, loss: 1e-300, entropy: 1e-300 },
    band: 1e-12,
};
const F32: Precision = Precision {
    rel: 2e-6,
    abs: Sums { mean: 1e-7, m2: 1e-6, margin: 0.0, el2n: 1e-6, loss: 1e-6, entropy: 1e-6 },
    band: 1e-6,
};

fn check_against_reference<T: Real>(
    got: &State,
    want: &[(ExampleState, (u32, u32))],
    p: &Precision,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.slots().len(), want.len());
    for (i, (g, (w, (conf_lo, conf_hi)))) in got.slots().iter().zip(want).enumerate() {
        for ((name, a), (_, b)) in counts(g).iter().zip(counts(w).iter()) {
            if *name == "n_confident" {
                prop_assert!(
                    conf_lo <= a && a <= conf_hi,
                    "slot {}: n_confident {} outside {}..={}\n got  {:?}\n want {:?}",
                    i,
                    a,
                    conf_lo,
                    conf_hi,
                    g,
                    w
                );
            } else {
                prop_assert_eq!(a, b, "slot {} field {}\n got  {:?}\n want {:?}", i, name, g, w);
            }
        }
        let n = w.n.max(1) as f64;
        for (f, (a, b)) in floats(g).iter().zip(floats(w).iter()).enumerate() {
            let ok = a == b || (a - b).abs() <= p.rel * a.abs().max(b.abs()) + p.abs.to_array()[f] * n;
            prop_assert!(
                ok,
                "slot {} field {} ({}): got {:e}, want {:e} (rel diff {:e})\n got  {:?}\n want {:?}",
                i,
                F64_NAMES[f],
                T::DTYPE,
                a,
                b,
                (a - b).abs() / b.abs(),
                g,
                w
            );
        }
    }
    Ok(())
}

fn precision<T: Real>() -> &'static Precision {
    if T::DTYPE == "float64" { &F64 } else { &F32 }
}

fn positions(case: &Case, mask: &[bool]) -> Vec<usize> {
    let sel: Vec<usize> = (0..case.e).filter(|&e| mask[e % mask.len()]).collect();
    if sel.is_empty() { vec![case.e - 1] } else { sel }
}

fn kernel_matches_reference<T: Real>(case: &Case, mask: &[bool], threads: usize) -> Result<(), TestCaseError> {
    let epochs = positions(case, mask);
    let got = case.dense_threads::<T>(&epochs, Some(threads));
    let p = precision::<T>();
    check_against_reference::<T>(&got, &reference::<T>(case, &epochs, p.band), p)
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn kernel_matches_reference_f64(
        case in case(Dims::default()),
        mask in proptest::collection::vec(proptest::bool::weighted(0.8), 12),
        threads in 1usize..3,
    ) {
        kernel_matches_reference::<f64>(&case, &mask, threads)?;
    }

    #[test]
    fn kernel_matches_reference_f32(
        case in case(Dims::default()),
        mask in proptest::collection::vec(proptest::bool::weighted(0.8), 12),
        threads in 1usize..3,
    ) {
        kernel_matches_reference::<f32>(&case, &mask, threads)?;
    }

    /// Long runs (60 to 140 epochs: counters and Welford weights far past the short cases'),
    /// with omitted rows arriving at any epoch.
    #[test]
    fn long_runs_match_reference(
        case in case(Dims { min_e: 60, max_e: 140, max_n: 140, max_c: 4, ..Dims::default() }),
        mask in proptest::collection::vec(proptest::bool::weighted(0.9), 12),
        f32_input: bool,
    ) {
        if f32_input {
            kernel_matches_reference::<f32>(&case, &mask, 1)?;
        } else {
            kernel_matches_reference::<f64>(&case, &mask, 1)?;
        }
    }

    /// One non-finite value, policy raise: the error names its epoch number, its example and the
    /// value. Without it (or with it in an unselected epoch) the run goes through.
    #[test]
    fn raise_names_the_non_finite_value(
        case in case(Dims { p_nan: 0.0, ..Dims::default() }),
        mask in proptest::collection::vec(any::<bool>(), 12),
        at in (0usize..12, 0usize..50, 0usize..6),
        which in 0usize..3,
        f32_input: bool,
    ) {
        let epochs = positions(&case, &mask);
        let (e, i, k) = (at.0 % case.e, at.1 % case.n, at.2 % case.c);
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][which];
        let mut values = case.values.clone();
        values[(e * case.n + i) * case.c + k] = bad;
        let tampered = Case { values, ..case.clone() };
        let run = |c: &Case| if f32_input {
            compute_dense(c.array::<f32>().view(), &epochs, &c.labels, c.task, c.kind, NanPolicy::Raise, None)
        } else {
            compute_dense(c.array::<f64>().view(), &epochs, &c.labels, c.task, c.kind, NanPolicy::Raise, None)
        };
        prop_assert!(run(&case).is_ok());
        match run(&tampered) {
            Ok(_) => prop_assert!(!epochs.contains(&e), "a non-finite value in epoch {} went through", e),
            Err(Error::NonFinite { epoch, example, value }) => {
                prop_assert!(epochs.contains(&e));
                prop_assert_eq!((epoch, example.index()), (e as u32, Some(i as u64)));
                prop_assert!(value == bad || (value.is_nan() && bad.is_nan()), "value {}", value);
            }
            Err(other) => prop_assert!(false, "expected NonFinite, got {:?}", other),
        }
    }

    /// Several non-finite values (one block of examples): the first in (epoch, example) order.
    #[test]
    fn raise_names_the_first_non_finite_value(case in case(Dims { p_nan: 1.0, ..Dims::default() }), f32_input: bool) {
        let epochs = case.all_epochs();
        let per = case.per();
        let cols = case.task.slot_columns() as usize;
        let first = (0..case.e)
            .flat_map(|e| (0..case.n * per).map(move |s| (e, s)))
            .find(|&(e, s)| {
                let at = (e * case.n + s / per) * case.c + (s % per) * cols;
                case.values[at..at + cols].iter().any(|v| !v.is_finite())
            });
        let got = if f32_input {
            compute_dense(case.array::<f32>().view(), &epochs, &case.labels, case.task, case.kind, NanPolicy::Raise, None)
        } else {
            compute_dense(case.array::<f64>().view(), &epochs, &case.labels, case.task, case.kind, NanPolicy::Raise, None)
        };
        match (first, got) {
            (None, Ok(_)) => {}
            (Some((e, s)), Err(Error::NonFinite { epoch, example, .. })) => {
                prop_assert_eq!((epoch, example.index()), (e as u32, Some((s / per) as u64)));
            }
            (first, got) => prop_assert!(false, "first non-finite {:?}, got {:?}", first, got.map(|_| ())),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Larger runs: several threads, several blocks
// -------------------------------------------------------------------------------------------------

fn big_cases() -> Vec<Case> {
    vec![
        big_case(1, 2, 20_000, Task::MultiClass { n_classes: 3 }, Kind::Logits, false),
        big_case(2, 2, 20_000, Task::MultiClass { n_classes: 4 }, Kind::Probs, true),
        big_case(3, 3, 12_000, Task::MultiClass { n_classes: 1 }, Kind::Logits, true),
        big_case(4, 2, 17_000, Task::MultiLabel { n_classes: 2 }, Kind::Logits, true),
    ]
}

/// More than `MIN_PARALLEL_ROWS` rows, so that 2 threads really split the work: the states are
/// the same bits as with one thread, and match the reference.
#[test]
fn thread_count_does_not_change_a_bit() {
    for case in big_cases() {
        assert!(case.e * case.n >= fastcarto_core::sys::pool::MIN_PARALLEL_ROWS);
        let all = case.all_epochs();
        let one = case.dense_threads::<f64>(&all, Some(1));
        for threads in [2, 3] {
            check_states_identical(
                &case.dense_threads::<f64>(&all, Some(threads)),
                &one,
                &format!("f64, {threads} threads"),
            )
            .unwrap();
        }
        check_against_reference::<f64>(&one, &reference::<f64>(&case, &all, F64.band), &F64).unwrap();

        let one = case.dense_threads::<f32>(&all, Some(1));
        check_states_identical(&case.dense_threads::<f32>(&all, Some(2)), &one, "f32, 2 threads").unwrap();
        check_against_reference::<f32>(&one, &reference::<f32>(&case, &all, F32.band), &F32).unwrap();

        // Merging (parallel above MIN_PARALLEL_ROWS slots) is deterministic as well.
        let mut a = case.dense_threads::<f64>(&all[..1], Some(2));
        a.merge(&case.dense_threads::<f64>(&all[1..], Some(2))).unwrap();
        let mut b = case.dense_threads::<f64>(&all[..1], Some(1));
        b.merge(&case.dense_threads::<f64>(&all[1..], Some(1))).unwrap();
        check_states_identical(&a, &b, "merged").unwrap();
    }
}

/// A non-finite value far into a multi-block, multi-thread run: still named exactly.
#[test]
fn raise_names_the_value_in_a_parallel_run() {
    let case = big_case(5, 2, 20_000, Task::MultiClass { n_classes: 3 }, Kind::Logits, false);
    for (e, i) in [(0usize, 0usize), (1, 19_999), (1, 13_337), (0, 1024)] {
        let mut arr = case.array::<f32>();
        arr[[e, i, 2]] = f32::NAN;
        for threads in [1, 2] {
            let err =
                compute_dense(arr.view(), &[0, 1], &case.labels, case.task, case.kind, NanPolicy::Raise, Some(threads))
                    .unwrap_err();
            assert!(
                matches!(&err, Error::NonFinite { epoch, example, .. } if (*epoch, example.index()) == (e as u32, Some(i as u64))),
                "{err:?}"
            );
        }
    }
}

/// Omit skips exactly the non-finite (epoch, slot) observations; a slot with nothing left is
/// empty but for its label.
#[test]
fn omit_skips_rows_and_leaves_unobserved_slots_empty() {
    let (e, n, c) = (3, 4, 3);
    let mut x = ndarray::Array3::<f64>::from_shape_fn((e, n, c), |(ep, i, k)| (ep * 3 + i + 2 * k) as f64 * 0.25);
    let y = vec![0i64, 1, 2, 0];
    // Example 1 loses epoch 1; example 3 loses every epoch.
    x[[1, 1, 0]] = f64::NAN;
    for ep in 0..e {
        x[[ep, 3, ep % c]] = f64::INFINITY;
    }
    let task = Task::MultiClass { n_classes: 3 };
    let s = compute_dense(x.view(), &[0, 1, 2], &y, task, Kind::Logits, NanPolicy::Omit, None).unwrap();
    let ns: Vec<u32> = s.slots().iter().map(|s| s.n).collect();
    assert_eq!(ns, [3, 2, 3, 0]);
    assert_eq!((s.slots()[1].first_epoch, s.slots()[1].last_epoch), (0, 2));
    // An example whose every observation was omitted still knows its label.
    assert_eq!(s.slots()[3], ExampleState { label: 0, ..ExampleState::EMPTY });
    // The same as the run without the omitted epoch, merged.
    let without = compute_dense(x.view(), &[0, 2], &y, task, Kind::Logits, NanPolicy::Omit, None).unwrap();
    assert_eq!(s.slots()[1].n_correct, without.slots()[1].n_correct);
    assert_eq!(s.slots()[1].forgetting, without.slots()[1].forgetting);
    assert!((s.slots()[1].sums.mean - without.slots()[1].sums.mean).abs() < 1e-15);
}

/// Edge rows checked one by one against the reference.
#[test]
fn edge_rows_match_the_reference() {
    let rows: Vec<(Vec<f64>, i64)> = vec![
        (vec![0.0, 0.0, 0.0], 1),  // all tied: first max wins (pred 0)
        (vec![1.0, 3.0, 3.0], 2),  // gold tied for the max, not first
        (vec![1.0, 3.0, 3.0], 1),  // gold is the first max
        (vec![1e4, -1e4, 0.0], 0), // huge, gold on top
        (vec![1e4, -1e4, 0.0], 1), // huge, gold at the bottom: p(gold) underflows
        (vec![40.0, 0.0, 0.0], 0), // p(gold) within 1e-17 of 1
        (vec![-1e4, -1e4 + 1e-3, -1e4 + 2e-3], 2),
        (vec![720.0, 0.0, 0.0], 1),      // exp underflows to 0 in the kernel, not in std
        (vec![5e-324, 0.0, -5e-324], 0), // subnormal logits
        (vec![2e38, 2e38, 0.0], 1),      // the row's sum overflows f32: the non-finite check's false alarm
        (vec![2e38, -2e38, 1.0], 2),     // a gap that overflows f32
    ];
    let logit_rows = rows.into_iter().map(|(row, y)| (Task::MultiClass { n_classes: 3 }, Kind::Logits, row, y));
    // Binary one-column outputs and probabilities with exact zeros.
    let cases: Vec<(Task, Kind, Vec<f64>, i64)> = vec![
        (Task::MultiClass { n_classes: 1 }, Kind::Logits, vec![0.0], 0),
        (Task::MultiClass { n_classes: 1 }, Kind::Logits, vec![-35.0], 0),
        (Task::MultiClass { n_classes: 1 }, Kind::Logits, vec![-35.0], 1),
        (Task::MultiClass { n_classes: 1 }, Kind::Probs, vec![0.5], 1),
        (Task::MultiClass { n_classes: 1 }, Kind::Probs, vec![0.0], 1),
        (Task::MultiClass { n_classes: 1 }, Kind::Probs, vec![1.0], 1),
        (Task::MultiClass { n_classes: 1 }, Kind::Probs, vec![0.3], 0),
        (Task::MultiClass { n_classes: 3 }, Kind::Probs, vec![0.0, 1.0, 0.0], 0),
        (Task::MultiClass { n_classes: 3 }, Kind::Probs, vec![0.5, 0.5, 0.0], 1),
        (Task::MultiClass { n_classes: 3 }, Kind::Probs, vec![1e-30, 1.0 - 1e-12, 1e-12], 1),
    ];
    for (task, kind, row, y) in logit_rows.chain(cases) {
        for f32_input in [false, true] {
            let case =
                Case { e: 1, n: 1, c: row.len(), task, kind, labels: vec![y], values: row.clone(), with_nan: false };
            let res = if f32_input {
                check_against_reference::<f32>(&case.dense::<f32>(&[0]), &reference::<f32>(&case, &[0], F32.band), &F32)
            } else {
                check_against_reference::<f64>(&case.dense::<f64>(&[0]), &reference::<f64>(&case, &[0], F64.band), &F64)
            };
            if let Err(e) = res {
                panic!("{task:?} {kind:?} row {row:?}, label {y}, f32 {f32_input}: {e}");
            }
        }
    }
}

/// The first bad value in (epoch, example) order also when a later example of the same block
/// holds one at an earlier epoch: the block is folded 128 slots at a time (49 examples x 5
/// multi-label classes make two runs), every epoch of one run before the next run.
#[test]
fn first_non_finite_across_runs_of_a_block() {
    let (e, n, c) = (3, 49, 5);
    let mut values = vec![0.25f64; e * n * c];
    values[26 * c + 1] = f64::NAN; // epoch 0, example 26 (second run)
    values[(n + 12) * c] = f64::INFINITY; // epoch 1, example 12 (first run)
    let array = ndarray::Array3::from_shape_vec((e, n, c), values).unwrap();
    let task = Task::MultiLabel { n_classes: c as u32 };
    let got = compute_dense(array.view(), &[0, 1, 2], &vec![0; n * c], task, Kind::Probs, NanPolicy::Raise, None);
    match got {
        Err(Error::NonFinite { epoch, example, .. }) => assert_eq!((epoch, example.index()), (0, Some(26))),
        other => panic!("expected NonFinite, got {:?}", other.map(|_| ())),
    }
}

/// Logits near float32's largest values: `max - z_gold` overflows float32, but the loss is the
/// float64 value (6e38), through both the full groups (the AVX-512 kernel where the CPU has it)
/// and the tail rows (the portable one).
#[test]
fn float32_logits_near_the_largest_value_give_a_finite_loss() {
    let rows = 64 * 2 + 5;
    let mut values = Vec::with_capacity(rows * 2);
    for _ in 0..rows {
        values.extend([3e38f32, -3e38]);
    }
    let logits = ndarray::Array3::from_shape_vec((1, rows, 2), values).unwrap();
    let labels = vec![1i64; rows];
    let task = Task::MultiClass { n_classes: 2 };
    let state = compute_dense(logits.view(), &[0], &labels, task, Kind::Logits, NanPolicy::Raise, None).unwrap();
    for (i, s) in state.slots().iter().enumerate() {
        let want = 3e38f32 as f64 - (-3e38f32) as f64;
        assert!((s.sums.loss - want).abs() <= want * 1e-12, "row {i}: loss {} instead of {want}", s.sums.loss);
        assert_eq!(s.sums.mean, 0.0, "row {i}");
    }
}
