//! Merge laws of the streaming state: splitting a run (by epochs or by examples) into parts,
//! computing each part on its own and merging gives the state of the whole run.
//!
//! Counts, epochs, labels and predictions must agree exactly; floats to 1e-12 relative (plus
//! 1e-15 per epoch absolute, and for `sum_margin`, whose terms have mixed signs, relative to the
//! sum of |margin| over epochs), since a merge reassociates the floating-point sums.

mod common;

use common::*;
use fastcarto_core::Real;
use fastcarto_core::State;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn split_epochs_merge_to_whole<T: Real>(case: &Case, k: usize) -> Result<(), TestCaseError> {
    let all = case.all_epochs();
    let k = k % (case.e + 1);
    let early = case.dense::<T>(&all[..k]);
    let late = case.dense::<T>(&all[k..]);
    merged_both_ways::<T>(case, &early, &late, "epoch split")?;
    Ok(())
}

/// `early` and `late` merged both ways: the state of the whole run (to the merge tolerance),
/// and the same bits whichever state is updated. Returns `merge(early, late)`.
fn merged_both_ways<T: Real>(case: &Case, early: &State, late: &State, what: &str) -> Result<State, TestCaseError> {
    let all = case.all_epochs();
    let whole = case.dense::<T>(&all);
    let scales = margin_scales::<T>(case, &all);
    let mut forward = early.clone();
    forward.merge(late).map_err(|e| TestCaseError::fail(format!("{what}: merge(early, late): {e}")))?;
    check_states_close(&forward, &whole, F64_MERGE, Some(&scales), &format!("{what}: merge(early, late)"))?;
    let mut backward = late.clone();
    backward.merge(early).map_err(|e| TestCaseError::fail(format!("{what}: merge(late, early): {e}")))?;
    // The argument order only decides which state is updated: the result is the same bits.
    check_states_identical(&backward, &forward, &format!("{what}: merge(late, early) vs merge(early, late)"))?;
    Ok(forward)
}

/// Each example is split at its own epoch `ks[i]`: epochs before go to `early`, the others to
/// `late`, both fed epoch by epoch through `State::update` with an index of the examples present.
/// With `ks[i] == 0` or `ks[i] == E` the example lives in only one of the two states.
fn per_example_split_via_update<T: Real>(case: &Case, ks: &[usize]) -> Result<(), TestCaseError> {
    let ks: Vec<usize> = (0..case.n).map(|i| ks[i % ks.len()] % (case.e + 1)).collect();
    let mut early = case.empty_state();
    let mut late = case.empty_state();
    for e in 0..case.e {
        for (state, in_early) in [(&mut early, true), (&mut late, false)] {
            let members: Vec<usize> = (0..case.n).filter(|&i| (e < ks[i]) == in_early).collect();
            if members.is_empty() {
                continue;
            }
            let index: Vec<u64> = members.iter().map(|&i| i as u64).collect();
            let rows = case.rows::<T>(e, &members);
            state
                .update(rows.view(), &case.labels_of(&members), e as u32, Some(&index), case.nan_policy(), None)
                .map_err(|err| TestCaseError::fail(format!("update at epoch {e}: {err}")))?;
        }
    }
    let merged = merged_both_ways::<T>(case, &early, &late, "per-example split")?;
    // merge_at with the identity index is merge.
    let index: Vec<u64> = (0..case.n as u64).collect();
    let mut merged_at = early.clone();
    merged_at.merge_at(&late, &index).map_err(|e| TestCaseError::fail(format!("merge_at: {e}")))?;
    check_states_identical(&merged_at, &merged, "merge_at(identity index) vs merge")
}

fn associativity<T: Real>(case: &Case, k1: usize, k2: usize) -> Result<(), TestCaseError> {
    let all = case.all_epochs();
    let (mut k1, mut k2) = (k1 % (case.e + 1), k2 % (case.e + 1));
    if k1 > k2 {
        std::mem::swap(&mut k1, &mut k2);
    }
    let a = case.dense::<T>(&all[..k1]);
    let b = case.dense::<T>(&all[k1..k2]);
    let c = case.dense::<T>(&all[k2..]);
    let whole = case.dense::<T>(&all);
    let scales = margin_scales::<T>(case, &all);

    let mut left = a.clone();
    left.merge(&b).map_err(|e| TestCaseError::fail(format!("a+b: {e}")))?;
    left.merge(&c).map_err(|e| TestCaseError::fail(format!("(a+b)+c: {e}")))?;
    let mut bc = b.clone();
    bc.merge(&c).map_err(|e| TestCaseError::fail(format!("b+c: {e}")))?;
    let mut right = a.clone();
    right.merge(&bc).map_err(|e| TestCaseError::fail(format!("a+(b+c): {e}")))?;
    // Merging the latest part into the earliest from the "wrong" side is fine too.
    let mut cb_a = c.clone();
    cb_a.merge(&b).map_err(|e| TestCaseError::fail(format!("c+b: {e}")))?;
    cb_a.merge(&a).map_err(|e| TestCaseError::fail(format!("(c+b)+a: {e}")))?;

    check_states_close(&left, &whole, F64_MERGE, Some(&scales), "(a+b)+c")?;
    check_states_close(&right, &whole, F64_MERGE, Some(&scales), "a+(b+c)")?;
    check_states_close(&left, &right, F64_MERGE, Some(&scales), "(a+b)+c vs a+(b+c)")?;
    check_states_identical(&cb_a, &right, "(c+b)+a vs a+(b+c)")
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn split_epochs_merge_to_whole_f64(case in case(Dims::default()), k in 0usize..13) {
        split_epochs_merge_to_whole::<f64>(&case, k)?;
    }

    #[test]
    fn split_epochs_merge_to_whole_f32(case in case(Dims::default()), k in 0usize..13) {
        split_epochs_merge_to_whole::<f32>(&case, k)?;
    }

    #[test]
    fn per_example_splits_via_update_merge_to_whole_f64(
        case in case(Dims::default()),
        ks in proptest::collection::vec(0usize..13, 1..50),
    ) {
        per_example_split_via_update::<f64>(&case, &ks)?;
    }

    #[test]
    fn per_example_splits_via_update_merge_to_whole_f32(
        case in case(Dims::default()),
        ks in proptest::collection::vec(0usize..13, 1..50),
    ) {
        per_example_split_via_update::<f32>(&case, &ks)?;
    }

    #[test]
    fn merge_is_associative_f64(case in case(Dims::default()), k1 in 0usize..13, k2 in 0usize..13) {
        associativity::<f64>(&case, k1, k2)?;
    }

    #[test]
    fn merge_is_associative_f32(case in case(Dims::default()), k1 in 0usize..13, k2 in 0usize..13) {
        associativity::<f32>(&case, k1, k2)?;
    }

    /// Merging a state that saw nothing (either side, `merge` or `merge_at`) changes nothing.
    #[test]
    fn empty_state_is_the_identity(case in case(Dims::default()), k in 0usize..13) {
        let all = case.all_epochs();
        let s = case.dense::<f64>(&all[..k % (case.e + 1)]);
        let empty = case.empty_state();

        let mut x = s.clone();
        x.merge(&empty).unwrap();
        check_states_identical(&x, &s, "s + empty")?;
        let mut y = empty.clone();
        y.merge(&s).unwrap();
        check_states_identical(&y, &s, "empty + s")?;

        let index: Vec<u64> = (0..case.n as u64).rev().collect();
        let mut z = s.clone();
        z.merge_at(&empty, &index).unwrap();
        check_states_identical(&z, &s, "s.merge_at(empty, reversed index)")?;
        let mut none = s.clone();
        none.merge_at(&State::new(0, case.task, case.kind).unwrap(), &[]).unwrap();
        check_states_identical(&none, &s, "s.merge_at(no examples, [])")?;
    }

    /// Shards of different examples, concatenated, are the state of all examples: every
    /// example's state depends only on its own rows, so the bits are identical.
    #[test]
    fn concat_of_example_ranges_is_the_whole(case in case(Dims::default()), m in 0usize..51, f32_input: bool) {
        let m = m % (case.n + 1);
        let all = case.all_epochs();
        let (whole, mut left, right) = if f32_input {
            (case.dense::<f32>(&all), case.examples(0, m).dense::<f32>(&all), case.examples(m, case.n).dense::<f32>(&all))
        } else {
            (case.dense::<f64>(&all), case.examples(0, m).dense::<f64>(&all), case.examples(m, case.n).dense::<f64>(&all))
        };
        prop_assert_eq!(left.n_examples(), m);
        left.concat(&right).unwrap();
        prop_assert_eq!(left.n_examples(), case.n);
        check_states_identical(&left, &whole, "concat(left, right)")?;
    }
}

/// Runs of four epochs with patterns of correct / wrong predictions that exercises forgetting
/// and stability across the seam of every split.
#[test]
fn forgetting_and_stability_across_seams() {
    // label 0; logits make the prediction right (R) or wrong (W) per epoch.
    let patterns: [&[bool]; 6] = [
        &[true, false, true, true],
        &[false, true, false, true],
        &[true, true, false, false],
        &[false, false, false, true],
        &[true, false, false, true],
        &[true, true, true, true],
    ];
    for pattern in patterns {
        let e = pattern.len();
        let values: Vec<f64> = pattern.iter().flat_map(|&ok| if ok { [2.0, 0.0] } else { [0.0, 2.0] }).collect();
        let case = Case {
            e,
            n: 1,
            c: 2,
            task: fastcarto_core::Task::MultiClass { n_classes: 2 },
            kind: fastcarto_core::Kind::Logits,
            labels: vec![0],
            values,
            with_nan: false,
        };
        let all = case.all_epochs();
        let whole = case.dense::<f64>(&all);
        let s = whole.slots()[0];
        let forgetting = pattern.windows(2).filter(|w| w[0] && !w[1]).count() as u32;
        assert_eq!(s.forgetting, forgetting, "{pattern:?}");
        let none = fastcarto_core::NONE;
        let first_learned = pattern.iter().position(|&ok| ok).map_or(none, |p| p as u32);
        let stable_from = match pattern.iter().rposition(|&ok| !ok) {
            Some(p) if p + 1 < e => (p + 1) as u32,
            Some(_) => none,
            None => 0,
        };
        assert_eq!((s.first_learned, s.stable_from), (first_learned, stable_from), "{pattern:?}");
        assert_eq!(s.n_correct as usize, pattern.iter().filter(|&&ok| ok).count(), "{pattern:?}");
        for k in 0..=e {
            let mut m = case.dense::<f64>(&all[..k]);
            m.merge(&case.dense::<f64>(&all[k..])).unwrap();
            check_states_close(&m, &whole, F64_MERGE, None, &format!("pattern {pattern:?} split at {k}")).unwrap();
            for k2 in k..=e {
                let mut a = case.dense::<f64>(&all[..k]);
                let mut bc = case.dense::<f64>(&all[k..k2]);
                bc.merge(&case.dense::<f64>(&all[k2..])).unwrap();
                a.merge(&bc).unwrap();
                check_states_close(&a, &whole, F64_MERGE, None, &format!("pattern {pattern:?} split at {k}, {k2}"))
                    .unwrap();
            }
        }
    }
}

/// An example whose every observation was omitted still knows its label (the state says so
/// since `nan_policy = omit` keeps it); merging the identity must not drop it, from either side.
#[test]
fn the_identity_keeps_the_label_of_an_unobserved_example() {
    let task = fastcarto_core::Task::MultiClass { n_classes: 2 };
    let kind = fastcarto_core::Kind::Logits;
    let x = ndarray::Array3::<f64>::from_shape_vec((1, 1, 2), vec![f64::NAN, 0.0]).unwrap();
    let s =
        fastcarto_core::compute_dense(x.view(), &[0], &[1], task, kind, fastcarto_core::NanPolicy::Omit, None).unwrap();
    assert_eq!((s.slots()[0].n, s.slots()[0].label), (0, 1));
    let empty = State::new(1, task, kind).unwrap();
    let mut right = s.clone();
    right.merge(&empty).unwrap();
    let mut left = empty.clone();
    left.merge(&s).unwrap();
    assert_eq!(left, s, "empty.merge(s)");
    assert_eq!(right, s, "s.merge(empty)");
    let mut at = s.clone();
    at.merge_at(&empty, &[0]).unwrap();
    assert_eq!(at, s, "s.merge_at(empty, [0])");
}
