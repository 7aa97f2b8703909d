//! Merges and updates that must fail: overlapping or interleaved epochs, changed labels, bad
//! indexes, bad outputs. Every failure names the right epoch / example, and leaves the state
//! exactly as it was (all-or-nothing).

mod common;

use common::*;
use fastcarto_core::error::Example;
use fastcarto_core::{Error, Kind, NanPolicy, State, Task, compute_dense};
use ndarray::{Array2, Array3};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Runs without NaN (every example observed at every epoch), at least two epochs.
fn clean() -> Dims {
    Dims { min_e: 2, p_nan: 0.0, ..Dims::default() }
}

fn fail(what: &str, r: Result<(), Error>) -> Result<Error, TestCaseError> {
    match r {
        Ok(()) => Err(TestCaseError::fail(format!("{what} succeeded but should have failed"))),
        Err(e) => Ok(e),
    }
}

/// Two overlapping half-open epoch ranges `a` and `b` drawn from `x`.
fn overlapping(e: usize, x: (usize, usize, usize, usize)) -> ((usize, usize), (usize, usize)) {
    let a0 = x.0 % e;
    let a1 = a0 + 1 + x.1 % (e - a0);
    let b0 = x.2 % a1;
    let start = b0.max(a0);
    let b1 = start + 1 + x.3 % (e - start);
    ((a0, a1), (b0, b1))
}

/// The error of merging a state of epochs `a` into one of epochs `b` (or the reverse) when the
/// two overlap: a duplicate at an epoch both saw, or an interleaving naming both spans.
fn check_overlap_error(err: &Error, a: (usize, usize), b: (usize, usize), n: usize) -> Result<(), TestCaseError> {
    let single_same = a.1 - a.0 == 1 && b.1 - b.0 == 1 && a.0 == b.0;
    let (lo, hi) = (a.0.max(b.0) as u32, (a.1.min(b.1) - 1) as u32);
    match err {
        Error::DuplicateObservation { epoch, example } => {
            prop_assert!((example.index().unwrap() as usize) < n, "{err}");
            prop_assert!(lo <= *epoch && *epoch <= hi, "duplicate epoch {} outside the overlap {}..={}", epoch, lo, hi);
        }
        Error::InterleavedEpochs { example, first_a, last_a, first_b, last_b } => {
            prop_assert!(!single_same, "two single observations of one epoch must be a duplicate, got {}", err);
            prop_assert!((example.index().unwrap() as usize) < n, "{err}");
            prop_assert_eq!(
                (*first_a, *last_a, *first_b, *last_b),
                (a.0 as u32, a.1 as u32 - 1, b.0 as u32, b.1 as u32 - 1),
                "{}",
                err
            );
        }
        _ => prop_assert!(false, "unexpected error {:?}", err),
    }
    Ok(())
}

/// `(0..n)` in the order of `keys` (a random permutation), first `m` of them.
fn permutation(n: usize, keys: &[u32], m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by_key(|&i| (keys[i % keys.len()], i));
    idx.truncate(m);
    idx
}

fn as_u64(idx: &[usize]) -> Vec<u64> {
    idx.iter().map(|&i| i as u64).collect()
}

/// Labels of `case` with the slots in `changed` moved to another valid value.
fn relabel(case: &Case, changed: &[bool]) -> Vec<i64> {
    let values = case.task.label_values() as i64;
    case.labels.iter().zip(changed.iter().cycle()).map(|(&y, &ch)| if ch { (y + 1) % values } else { y }).collect()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn overlapping_epochs_are_rejected_and_change_nothing(
        case in case(clean()),
        x in (0usize..1000, 0usize..1000, 0usize..1000, 0usize..1000),
    ) {
        let (a, b) = overlapping(case.e, x);
        let all = case.all_epochs();
        let sa = case.dense::<f64>(&all[a.0..a.1]);
        let sb = case.dense::<f64>(&all[b.0..b.1]);

        let mut m = sa.clone();
        let err = fail("merge(a, b)", m.merge(&sb))?;
        check_overlap_error(&err, a, b, case.n)?;
        check_states_identical(&m, &sa, "a after failed merge(a, b)")?;

        let mut m = sb.clone();
        let err = fail("merge(b, a)", m.merge(&sa))?;
        check_overlap_error(&err, b, a, case.n)?;
        check_states_identical(&m, &sb, "b after failed merge(b, a)")?;

        let index = as_u64(&(0..case.n).collect::<Vec<_>>());
        let mut m = sa.clone();
        let err = fail("merge_at(a, b)", m.merge_at(&sb, &index))?;
        check_overlap_error(&err, a, b, case.n)?;
        check_states_identical(&m, &sa, "a after failed merge_at(a, b)")?;
    }

    /// Merging the first and the last of three consecutive parts leaves the middle one
    /// impossible to merge: it would interleave.
    #[test]
    fn a_gap_filled_later_is_interleaved(case in case(Dims { min_e: 3, ..clean() }), k in 0usize..1000) {
        let all = case.all_epochs();
        let k = 1 + k % (case.e - 2);
        let mut outer = case.dense::<f64>(&all[..k]);
        outer.merge(&case.dense::<f64>(&all[k + 1..])).unwrap();
        let before = outer.clone();
        let err = fail("merge(outer, middle)", outer.merge(&case.dense::<f64>(&all[k..k + 1])))?;
        let interleaved = matches!(
            err,
            Error::InterleavedEpochs { first_a: 0, first_b, last_b, .. } if first_b == k as u32 && last_b == k as u32
        );
        prop_assert!(interleaved, "{:?}", err);
        check_states_identical(&outer, &before, "after failed merge")?;
    }

    #[test]
    fn changed_labels_are_rejected_unless_allowed(
        case in case(clean()),
        k in 0usize..1000,
        changed in proptest::collection::vec(proptest::bool::weighted(0.3), 1..300),
        first in 0usize..300,
    ) {
        let all = case.all_epochs();
        let k = 1 + k % (case.e - 1);
        let mut changed: Vec<bool> = (0..case.labels.len()).map(|i| changed[i % changed.len()]).collect();
        let len = changed.len();
        changed[first % len] = true;
        let relabelled = Case { labels: relabel(&case, &changed), ..case.clone() };
        let early = case.dense::<f64>(&all[..k]);
        let late = relabelled.dense::<f64>(&all[k..]);
        let per = case.per();
        let check = |err: &Error| -> Result<(), TestCaseError> {
            match err {
                Error::LabelChanged { example, old, new } => {
                    let ex = example.index().unwrap() as usize;
                    prop_assert!(ex < case.n, "{}", err);
                    let matches = (ex * per..(ex + 1) * per).any(|s| {
                        changed[s] && case.labels[s] == *old as i64 && relabelled.labels[s] == *new as i64
                    });
                    prop_assert!(matches, "{} does not match a changed slot", err);
                }
                _ => prop_assert!(false, "expected LabelChanged, got {:?}", err),
            }
            Ok(())
        };
        for (name, mut this, other) in [("merge(early, late)", early.clone(), &late), ("merge(late, early)", late.clone(), &early)] {
            let before = this.clone();
            let err = fail(name, this.merge(other))?;
            check(&err)?;
            check_states_identical(&this, &before, name)?;
        }
        // The same through update, epoch by epoch.
        let mut s = early.clone();
        let every: Vec<usize> = (0..case.n).collect();
        let err = fail(
            "update with changed labels",
            s.update(case.rows::<f64>(k, &every).view(), &relabelled.labels, k as u32, None, NanPolicy::Raise, None),
        )?;
        check(&err)?;
        check_states_identical(&s, &early, "after failed update")?;

        // Allowed on either side: the latest label wins and every observation counts.
        for allow_self in [true, false] {
            let (mut this, other) = if allow_self {
                (early.clone().with_label_changes(true), late.clone())
            } else {
                (early.clone(), late.clone().with_label_changes(true))
            };
            this.merge(&other).map_err(|e| TestCaseError::fail(format!("allowed merge: {e}")))?;
            for (i, s) in this.slots().iter().enumerate() {
                prop_assert_eq!(s.label as i64, relabelled.labels[i]);
                prop_assert_eq!(s.n as usize, case.e);
                prop_assert_eq!(s.n_correct, early.slots()[i].n_correct + late.slots()[i].n_correct);
            }
        }
        let mut s = early.clone().with_label_changes(true);
        s.update(case.rows::<f64>(k, &every).view(), &relabelled.labels, k as u32, None, NanPolicy::Raise, None)
            .map_err(|e| TestCaseError::fail(format!("allowed update: {e}")))?;
        for (i, slot) in s.slots().iter().enumerate() {
            prop_assert_eq!(slot.label as i64, relabelled.labels[i]);
        }
    }

    /// `merge_at` where every example but the last of the index merges fine: nothing changes.
    #[test]
    fn merge_at_is_all_or_nothing(
        case in case(clean()),
        k in 0usize..1000,
        keys in proptest::collection::vec(any::<u32>(), 50),
        m in 0usize..1000,
    ) {
        let all = case.all_epochs();
        let k = 1 + k % (case.e - 1);
        let idx = permutation(case.n, &keys, 1 + m % case.n);
        let m = idx.len();
        let base = case.dense::<f64>(&all[..k]);
        let good = case.select(&idx[..m - 1]).dense::<f64>(&all[k..]);
        let mut update = good.clone();
        update.concat(&case.select(&idx[m - 1..]).dense::<f64>(&all[k - 1..])).unwrap();

        let mut s = base.clone();
        let err = fail("merge_at", s.merge_at(&update, &as_u64(&idx)))?;
        let names_last = match &err {
            Error::DuplicateObservation { example, .. } | Error::InterleavedEpochs { example, .. } => {
                *example == idx[m - 1] as u64
            }
            _ => false,
        };
        prop_assert!(names_last, "expected an epoch error naming example {}, got {:?}", idx[m - 1], err);
        check_states_identical(&s, &base, "after failed merge_at")?;

        // The good part alone goes in, and touches only its examples.
        let mut s = base.clone();
        s.merge_at(&good, &as_u64(&idx[..m - 1])).unwrap();
        let per = case.per();
        for i in 0..case.n {
            let slots = &s.slots()[i * per..(i + 1) * per];
            let base_slots = &base.slots()[i * per..(i + 1) * per];
            if idx[..m - 1].contains(&i) {
                prop_assert!(slots.iter().all(|x| x.n as usize == case.e));
            } else {
                prop_assert_eq!(slots, base_slots);
            }
        }
    }

    #[test]
    fn bad_indexes_and_incompatible_states_change_nothing(
        case in case(clean()),
        keys in proptest::collection::vec(any::<u32>(), 50),
        m in 0usize..1000,
    ) {
        let all = case.all_epochs();
        let base = case.dense::<f64>(&all[..1]);
        let idx = permutation(case.n, &keys, 1 + m % case.n);
        let update = case.select(&idx).dense::<f64>(&all[1..]);
        let mut bad_indexes = vec![];
        // Out of range.
        let mut out_of_range = as_u64(&idx);
        *out_of_range.last_mut().unwrap() = case.n as u64;
        bad_indexes.push((out_of_range, false));
        // Repeated example: a duplicate (epoch, example).
        if idx.len() >= 2 {
            let mut repeated = as_u64(&idx);
            repeated[idx.len() - 1] = repeated[0];
            bad_indexes.push((repeated, true));
        }
        // Wrong length.
        bad_indexes.push((as_u64(&idx[..idx.len() - 1]), false));
        for (bad, duplicate) in &bad_indexes {
            let mut s = base.clone();
            let err = fail("merge_at with a bad index", s.merge_at(&update, bad))?;
            if *duplicate {
                prop_assert!(
                    matches!(&err, Error::DuplicateObservation { example, .. } if *example == bad[0]),
                    "{:?}",
                    err
                );
            } else {
                prop_assert!(matches!(err, Error::InvalidInput(_)), "{:?}", err);
            }
            check_states_identical(&s, &base, "after a bad index")?;
        }
        // Other kind, other task, other size.
        let other_kind = if case.kind == Kind::Logits { Kind::Probs } else { Kind::Logits };
        let other_task = match case.task {
            Task::MultiClass { n_classes } => Task::MultiClass { n_classes: n_classes + 1 },
            Task::MultiLabel { n_classes } => Task::MultiClass { n_classes },
        };
        let incompatible = [
            State::new(case.n, case.task, other_kind).unwrap(),
            State::new(case.n, other_task, case.kind).unwrap(),
        ];
        for other in &incompatible {
            let mut s = base.clone();
            let err = fail("merge of an incompatible state", s.merge(other))?;
            prop_assert!(matches!(err, Error::Incompatible(_)), "{:?}", err);
            let err = fail("merge_at of an incompatible state", s.merge_at(other, &as_u64(&(0..case.n).collect::<Vec<_>>())))?;
            prop_assert!(matches!(err, Error::Incompatible(_)), "{:?}", err);
            let err = fail("concat of an incompatible state", s.concat(other))?;
            prop_assert!(matches!(err, Error::Incompatible(_)), "{:?}", err);
            check_states_identical(&s, &base, "after an incompatible merge")?;
        }
        let mut s = base.clone();
        let err = fail("merge of another size", s.merge(&State::new(case.n + 1, case.task, case.kind).unwrap()))?;
        prop_assert!(matches!(err, Error::Incompatible(_)), "{:?}", err);
        check_states_identical(&s, &base, "after a merge of another size")?;
    }

    /// Updates with bad outputs or labels fail with the right error and change nothing.
    #[test]
    fn failed_updates_change_nothing(
        case in case(clean()),
        k in 0usize..1000,
        keys in proptest::collection::vec(any::<u32>(), 50),
        m in 0usize..1000,
        r in 0usize..1000,
        col in 0usize..6,
        use_index: bool,
    ) {
        let all = case.all_epochs();
        let k = 1 + k % (case.e - 1);
        let base = case.dense::<f64>(&all[..k]);
        let idx = if use_index { permutation(case.n, &keys, 1 + m % case.n) } else { (0..case.n).collect() };
        let index = as_u64(&idx);
        let index_arg = if use_index { Some(index.as_slice()) } else { None };
        let r = r % idx.len();
        let col = col % case.c;
        let rows = case.rows::<f64>(k, &idx);
        let labels = case.labels_of(&idx);
        let per = case.per();
        let epoch = k as u32;

        // A non-finite value in row r, policy raise.
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut out = rows.clone();
            out[[r, col]] = bad;
            let mut s = base.clone();
            let err = fail("update with a non-finite value", s.update(out.view(), &labels, epoch, index_arg, NanPolicy::Raise, None))?;
            let ok = matches!(err, Error::NonFinite { epoch: e, value, .. }
                if e == epoch && (value == bad || (value.is_nan() && bad.is_nan())));
            prop_assert!(ok, "{:?}", err);
            check_states_identical(&s, &base, "after a non-finite update")?;
        }
        // A label out of range in row r.
        let mut bad_labels = labels.clone();
        bad_labels[r * per + col % per] = case.task.label_values() as i64;
        let mut s = base.clone();
        let err = fail("update with a label out of range", s.update(rows.view(), &bad_labels, epoch, index_arg, NanPolicy::Raise, None))?;
        prop_assert!(matches!(err, Error::LabelOutOfRange { .. }), "{:?}", err);
        check_states_identical(&s, &base, "after a label out of range")?;
        // Probabilities that do not sum to one in row r.
        if case.kind == Kind::Probs && case.c >= 2 && matches!(case.task, Task::MultiClass { .. }) {
            let mut out = rows.clone();
            out[[r, col]] = if out[[r, col]] > 0.5 { 0.0 } else { 1.0 };
            let mut s = base.clone();
            let err = fail("update with invalid probabilities", s.update(out.view(), &labels, epoch, index_arg, NanPolicy::Raise, None))?;
            prop_assert!(matches!(err, Error::InvalidProbabilities { epoch: e, .. } if e == epoch), "{:?}", err);
            check_states_identical(&s, &base, "after invalid probabilities")?;
        }
        if case.kind == Kind::Probs {
            let mut out = rows.clone();
            out[[r, col]] = -0.25;
            let mut s = base.clone();
            let err = fail("update with a negative probability", s.update(out.view(), &labels, epoch, index_arg, NanPolicy::Raise, None))?;
            prop_assert!(matches!(err, Error::InvalidProbabilities { .. }), "{:?}", err);
            check_states_identical(&s, &base, "after a negative probability")?;
        }
        // The last epoch again, and an earlier one.
        for again in [k - 1, 0] {
            let mut s = base.clone();
            let out = case.rows::<f64>(again, &idx);
            let err = fail("update of an epoch already seen", s.update(out.view(), &labels, again as u32, index_arg, NanPolicy::Raise, None))?;
            prop_assert!(
                matches!(err, Error::DuplicateObservation { .. } | Error::InterleavedEpochs { .. } | Error::EpochOutOfOrder { .. }),
                "{:?}", err
            );
            check_states_identical(&s, &base, "after a repeated epoch")?;
        }
        // Wrong shapes.
        let mut s = base.clone();
        let wrong_cols = Array2::<f64>::zeros((idx.len(), case.c + 1));
        prop_assert!(s.update(wrong_cols.view(), &labels, epoch, index_arg, NanPolicy::Raise, None).is_err());
        prop_assert!(s.update(rows.view(), &labels[..labels.len() - 1], epoch, index_arg, NanPolicy::Raise, None).is_err());
        if case.n >= 2 {
            let fewer = case.rows::<f64>(k, &[0]);
            prop_assert!(s.update(fewer.view(), &case.labels_of(&[0]), epoch, None, NanPolicy::Raise, None).is_err());
        }
        check_states_identical(&s, &base, "after wrongly shaped updates")?;

        // And the clean update still goes in afterwards.
        s.update(rows.view(), &labels, epoch, index_arg, NanPolicy::Raise, None)
            .map_err(|e| TestCaseError::fail(format!("clean update: {e}")))?;
        for (i, slot) in s.slots().iter().enumerate() {
            let expect = base.slots()[i].n + idx.contains(&(i / per)) as u32;
            prop_assert_eq!(slot.n, expect);
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Which example and epoch an error names, on small fixed runs.
// -------------------------------------------------------------------------------------------------

/// Three classes, 20 examples, epochs 0..3 already in the state.
fn run3() -> (Array3<f64>, Vec<i64>, State) {
    let (e, n, c) = (5, 20, 3);
    let x = Array3::from_shape_fn((e, n, c), |(ep, i, k)| ((ep * 7 + i * 3 + k * 5) % 11) as f64 * 0.37 - 1.5);
    let y: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    let s = compute_dense(
        x.view(),
        &[0, 1, 2],
        &y,
        Task::MultiClass { n_classes: 3 },
        Kind::Logits,
        NanPolicy::Raise,
        None,
    )
    .unwrap();
    (x, y, s)
}

fn epoch_rows(x: &Array3<f64>, e: usize, idx: &[usize]) -> Array2<f64> {
    Array2::from_shape_fn((idx.len(), x.dim().2), |(r, k)| x[[e, idx[r], k]])
}

#[test]
fn update_without_index_names_the_example() {
    let (x, y, mut s) = run3();
    let mut out = epoch_rows(&x, 3, &(0..20).collect::<Vec<_>>());
    out[[19, 1]] = f64::NAN;
    let err = s.update(out.view(), &y, 3, None, NanPolicy::Raise, None).unwrap_err();
    assert!(matches!(err, Error::NonFinite { epoch: 3, example: Example::Index(19), .. }), "{err:?}");
}

/// With an index, row `r` of the update is example `index[r]`; errors must name the example the
/// caller knows, not the row of the minibatch.
#[test]
fn update_with_index_names_the_example_of_a_non_finite_row() {
    let (x, y, mut s) = run3();
    let idx = [11usize, 4, 17];
    let mut out = epoch_rows(&x, 3, &idx);
    out[[2, 0]] = f64::NAN; // row 2 is example 17
    let labels: Vec<i64> = idx.iter().map(|&i| y[i]).collect();
    let before = s.clone();
    let err = s.update(out.view(), &labels, 3, Some(&[11, 4, 17]), NanPolicy::Raise, None).unwrap_err();
    assert_eq!(s, before);
    assert!(
        matches!(err, Error::NonFinite { epoch: 3, example: Example::Index(17), .. }),
        "expected example 17, got {err:?}: {err}"
    );
}

#[test]
fn update_with_index_names_the_example_of_a_label_out_of_range() {
    let (x, y, mut s) = run3();
    let idx = [11usize, 4, 17];
    let out = epoch_rows(&x, 3, &idx);
    let mut labels: Vec<i64> = idx.iter().map(|&i| y[i]).collect();
    labels[1] = 7; // row 1 is example 4
    let err = s.update(out.view(), &labels, 3, Some(&[11, 4, 17]), NanPolicy::Raise, None).unwrap_err();
    assert!(
        matches!(err, Error::LabelOutOfRange { example: Example::Index(4), label: 7, .. }),
        "expected example 4, got {err:?}: {err}"
    );
}

#[test]
fn update_with_index_names_the_example_of_invalid_probabilities() {
    let (_, y, _) = run3();
    let p = Array3::from_shape_fn((2, 20, 3), |(_, _, k)| [0.2, 0.3, 0.5][k]);
    let mut s =
        compute_dense(p.view(), &[0], &y, Task::MultiClass { n_classes: 3 }, Kind::Probs, NanPolicy::Raise, None)
            .unwrap();
    let idx = [11usize, 4, 17];
    let mut out = epoch_rows(&p, 1, &idx);
    out[[2, 2]] = 0.9; // row 2 (example 17) sums to 1.4
    let labels: Vec<i64> = idx.iter().map(|&i| y[i]).collect();
    let err = s.update(out.view(), &labels, 1, Some(&[11, 4, 17]), NanPolicy::Raise, None).unwrap_err();
    assert!(
        matches!(err, Error::InvalidProbabilities { epoch: 1, example: Example::Index(17), .. }),
        "expected example 17, got {err:?}: {err}"
    );
}

/// A training loop calling `update` twice for the same epoch: the (epoch, example) pair is
/// observed twice, which is what `DuplicateObservation` says ("duplicate row").
#[test]
fn update_repeating_the_last_epoch_is_a_duplicate() {
    let (x, y, mut s) = run3();
    let before = s.clone();
    let out = epoch_rows(&x, 2, &(0..20).collect::<Vec<_>>());
    let err = s.update(out.view(), &y, 2, None, NanPolicy::Raise, None).unwrap_err();
    assert_eq!(s, before);
    assert!(
        matches!(err, Error::DuplicateObservation { epoch: 2, .. }),
        "expected a duplicate at epoch 2, got {err:?}: {err}"
    );
}

#[test]
fn update_repeating_the_only_epoch_is_a_duplicate() {
    let (x, y, _) = run3();
    let mut s =
        compute_dense(x.view(), &[0], &y, Task::MultiClass { n_classes: 3 }, Kind::Logits, NanPolicy::Raise, None)
            .unwrap();
    let out = epoch_rows(&x, 0, &(0..20).collect::<Vec<_>>());
    let err = s.update(out.view(), &y, 0, None, NanPolicy::Raise, None).unwrap_err();
    assert!(matches!(err, Error::DuplicateObservation { epoch: 0, example: Example::Index(0) }), "{err:?}");
}

#[test]
fn update_minibatch_repeating_an_example_in_one_epoch_names_it() {
    let (x, y, mut s) = run3();
    let idx = [3usize, 9];
    let labels: Vec<i64> = idx.iter().map(|&i| y[i]).collect();
    s.update(epoch_rows(&x, 3, &idx).view(), &labels, 3, Some(&[3, 9]), NanPolicy::Raise, None).unwrap();
    let before = s.clone();
    let err = s.update(epoch_rows(&x, 3, &[9]).view(), &[y[9]], 3, Some(&[9]), NanPolicy::Raise, None).unwrap_err();
    assert_eq!(s, before);
    let names_9 = matches!(
        err,
        Error::DuplicateObservation { example: Example::Index(9), .. }
            | Error::InterleavedEpochs { example: Example::Index(9), .. }
    );
    assert!(names_9, "{err:?}");
}

#[test]
fn merging_two_single_observations_of_one_epoch_is_a_duplicate() {
    let (x, y, _) = run3();
    let one = |e: usize| {
        compute_dense(x.view(), &[e], &y, Task::MultiClass { n_classes: 3 }, Kind::Logits, NanPolicy::Raise, None)
            .unwrap()
    };
    let mut a = one(1);
    let err = a.merge(&one(1)).unwrap_err();
    assert!(matches!(err, Error::DuplicateObservation { epoch: 1, .. }), "{err:?}");
    assert_eq!(a, one(1));
}

/// Multi-label errors name the example, not the (example, class) slot.
#[test]
fn multilabel_errors_name_the_example() {
    let (e, n, c) = (2, 5, 3);
    let mut x = Array3::from_shape_fn((e, n, c), |(ep, i, k)| (ep + i + k) as f64 * 0.5 - 1.0);
    let y: Vec<i64> = (0..n * c).map(|s| (s % 2) as i64).collect();
    let task = Task::MultiLabel { n_classes: c as u32 };
    x[[1, 3, 2]] = f64::INFINITY;
    let err = compute_dense(x.view(), &[0, 1], &y, task, Kind::Logits, NanPolicy::Raise, Some(1)).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { epoch: 1, example: Example::Index(3), value } if value == f64::INFINITY),
        "{err:?}"
    );
    let mut bad = y.clone();
    bad[3 * c + 1] = 2;
    let err = compute_dense(x.view(), &[0], &bad, task, Kind::Logits, NanPolicy::Raise, Some(1)).unwrap_err();
    assert!(matches!(err, Error::LabelOutOfRange { example: Example::Index(3), label: 2, .. }), "{err:?}");
    let s = compute_dense(x.view(), &[0, 1], &y, task, Kind::Logits, NanPolicy::Omit, Some(1)).unwrap();
    let mut t = compute_dense(x.view(), &[1], &y, task, Kind::Logits, NanPolicy::Omit, Some(1)).unwrap();
    let err = t.merge(&s).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateObservation { example, .. } | Error::InterleavedEpochs { example, .. } if (example.index().unwrap() as usize) < n),
        "{err:?}"
    );
}
