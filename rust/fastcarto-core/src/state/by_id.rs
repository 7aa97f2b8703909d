//! Merging the states of two reads that name their examples by id ([`merge_by_id`]): shards of
//! a long table folded apart (by distributed workers, or in separate processes) and combined.
//!
//! Each side is what [`crate::KeyedState::into_state`] gives: a state whose slots are in
//! increasing id order, and its ids (`None` for `0..n`). The result covers the union of the ids,
//! again in increasing order. An id on one side only keeps its state as it is, bit for bit; an
//! id on both sides merges with [`ExampleState::merge`], which accepts only epochs that do not
//! overlap or interleave (forgetting depends on the order of the epochs) and whose floating
//! sums then agree with one sequential pass to rounding (Chan et al.'s pairwise update), not
//! always to the bit.

use super::State;
use crate::error::{Error, Example, Result};
use crate::metrics::ExampleState;
use crate::state::packed::Slots;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use arrow_schema::DataType;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::sync::Arc;

/// The ids of one side, as the merge reads them.
enum Keys<'a> {
    /// `0..n` (a read whose ids are the table's default ones).
    Range(usize),
    Int(&'a [i64]),
    Str(&'a StringArray),
}

impl<'a> Keys<'a> {
    fn of(ids: Option<&'a ArrayRef>, n: usize, side: &str) -> Result<Self> {
        let Some(ids) = ids else { return Ok(Keys::Range(n)) };
        if ids.len() != n {
            return Err(Error::invalid(format!("the {side} state has {n} examples but {} ids", ids.len())));
        }
        if ids.null_count() > 0 {
            return Err(Error::invalid(format!("the {side} ids hold nulls")));
        }
        let keys = match ids.data_type() {
            DataType::Int64 => Keys::Int(ids.as_primitive::<Int64Type>().values()),
            DataType::Utf8 => Keys::Str(ids.as_string::<i32>()),
            other => {
                return Err(Error::invalid(format!(
                    "the {side} ids are {other}; ids are int64 or strings (what a read returns)"
                )));
            }
        };
        // The merge walks both sides in order: ids that are not strictly increasing would pair
        // the wrong states.
        let increasing = match &keys {
            Keys::Int(v) => v.windows(2).all(|w| w[0] < w[1]),
            Keys::Str(s) => (1..s.len()).all(|i| s.value(i - 1) < s.value(i)),
            Keys::Range(_) => true,
        };
        if !increasing {
            return Err(Error::invalid(format!(
                "the {side} ids are not strictly increasing; pass the ids a read returned with its state"
            )));
        }
        Ok(keys)
    }

    fn len(&self) -> usize {
        match self {
            Keys::Range(n) => *n,
            Keys::Int(v) => v.len(),
            Keys::Str(s) => s.len(),
        }
    }

    fn int(&self, i: usize) -> i64 {
        match self {
            Keys::Range(_) => i as i64,
            Keys::Int(v) => v[i],
            Keys::Str(_) => unreachable!("string ids are compared as strings"),
        }
    }

    fn is_str(&self) -> bool {
        matches!(self, Keys::Str(_))
    }
}

/// Which side(s) each example of the result comes from, in increasing id order.
type Plan = Vec<(Option<u32>, Option<u32>)>;

fn plan(a: &Keys<'_>, b: &Keys<'_>) -> Plan {
    let cmp = |i: usize, j: usize| match (a, b) {
        (Keys::Str(x), Keys::Str(y)) => x.value(i).cmp(y.value(j)),
        _ => a.int(i).cmp(&b.int(j)),
    };
    let (na, nb) = (a.len(), b.len());
    let mut out = Vec::with_capacity(na.max(nb));
    let (mut i, mut j) = (0, 0);
    while i < na && j < nb {
        match cmp(i, j) {
            Ordering::Less => {
                out.push((Some(i as u32), None));
                i += 1;
            }
            Ordering::Greater => {
                out.push((None, Some(j as u32)));
                j += 1;
            }
            Ordering::Equal => {
                out.push((Some(i as u32), Some(j as u32)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend((i..na).map(|i| (Some(i as u32), None)));
    out.extend((j..nb).map(|j| (None, Some(j as u32))));
    out
}

/// The ids of the result (`None` when they are `0..n`, as a read reports them).
fn merged_ids(a: &Keys<'_>, b: &Keys<'_>, plan: &Plan) -> Option<ArrayRef> {
    let pick = |&(ia, ib): &(Option<u32>, Option<u32>)| match (ia, ib) {
        (Some(i), _) => (true, i as usize),
        (None, Some(j)) => (false, j as usize),
        (None, None) => unreachable!("every planned example comes from a side"),
    };
    if let (Keys::Str(x), Keys::Str(y)) = (a, b) {
        let values = plan.iter().map(|p| match pick(p) {
            (true, i) => x.value(i),
            (false, j) => y.value(j),
        });
        return Some(Arc::new(StringArray::from_iter_values(values)));
    }
    let ids: Vec<i64> = plan
        .par_iter()
        .map(|p| match pick(p) {
            (true, i) => a.int(i),
            (false, j) => b.int(j),
        })
        .collect();
    if ids.par_iter().enumerate().all(|(k, &id)| id == k as i64) {
        return None;
    }
    Some(Arc::new(Int64Array::from(ids)))
}

/// Merges two states of examples known by id (see the module's documentation): returns the state
/// of the union of their ids, in increasing id order, and those ids (`None` for `0..n`).
/// Errors name the id of the example whose epochs overlap or interleave, or whose label differs.
pub fn merge_by_id(
    a: &State,
    a_ids: Option<&ArrayRef>,
    b: &State,
    b_ids: Option<&ArrayRef>,
) -> Result<(State, Option<ArrayRef>)> {
    a.check_compatible(b)?;
    let ka = Keys::of(a_ids, a.n_examples(), "first")?;
    let kb = Keys::of(b_ids, b.n_examples(), "second")?;
    if ka.is_str() != kb.is_str() {
        return Err(Error::Incompatible("one state's ids are strings and the other's integers".into()));
    }
    if a.n_examples().max(b.n_examples()) > u32::MAX as usize {
        return Err(Error::invalid("too many examples to merge by id (at most 2^32 - 1 a side)"));
    }
    let plan = plan(&ka, &kb);
    let per = a.task.slots_per_example() as usize;
    let allow = a.allow_label_change || b.allow_label_change;
    let (slots_a, slots_b) = (a.slots(), b.slots());
    let (sa, sb): (&[ExampleState], &[ExampleState]) = (&slots_a, &slots_b);
    let states: Vec<ExampleState> = crate::sys::pool::run_default(plan.len() * per, || {
        plan.par_iter()
            .enumerate()
            .flat_map_iter(|(k, &(ia, ib))| {
                (0..per).map(move |c| match (ia, ib) {
                    (Some(i), None) => Ok(sa[i as usize * per + c]),
                    (None, Some(j)) => Ok(sb[j as usize * per + c]),
                    (Some(i), Some(j)) => {
                        ExampleState::merge(k as u64, &sa[i as usize * per + c], &sb[j as usize * per + c], allow)
                    }
                    (None, None) => unreachable!("every planned example comes from a side"),
                })
            })
            .collect::<Result<Vec<_>>>()
    })
    .map_err(|e| {
        e.name_example(|k| {
            let (ia, ib) = plan[k as usize];
            Example::Id(match (ia, &ka, ib, &kb) {
                (Some(i), Keys::Str(s), _, _) | (None, _, Some(i), Keys::Str(s)) => {
                    format!("{:?}", s.value(i as usize))
                }
                (Some(i), keys, _, _) | (None, _, Some(i), keys) => keys.int(i as usize).to_string(),
                (None, _, None, _) => unreachable!("every planned example comes from a side"),
            })
        })
    })?;
    let ids = merged_ids(&ka, &kb, &plan);
    let state = State::new(0, a.task, a.kind)?.with_stored(Slots::from_states(states)).with_label_changes(allow);
    Ok((state, ids))
}

/// `require_complete` for a state merged from parts read apart (see
/// [`crate::read::read_path_part`]): every example observed at each of the `n_epochs` epochs
/// present in the data (as [`crate::KeyedState::check_complete`] says for one read).
pub fn check_complete(state: &State, ids: Option<&ArrayRef>, n_epochs: u32) -> Result<()> {
    let keys = Keys::of(ids, state.n_examples(), "merged")?;
    let per = state.task.slots_per_example() as usize;
    let slots = state.slots();
    let short = slots.par_iter().position_first(|s| s.n != n_epochs);
    match short {
        None => Ok(()),
        Some(slot) => {
            let k = slot / per;
            let id = match &keys {
                Keys::Str(s) => format!("{:?}", s.value(k)),
                keys => keys.int(k).to_string(),
            };
            Err(Error::invalid(format!(
                "{} has {} of the {n_epochs} epochs present in the data, and every example must have all of them",
                Example::Id(id),
                slots[slot].n
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Kind, Observation, Task};
    use proptest::prelude::*;

    fn obs(g: f64, pred: u32) -> Observation {
        Observation { gold_prob: g, margin: g - 0.5, el2n: 1.0 - g, loss: -g.ln(), entropy: 0.1, pred }
    }

    /// A state of one example per entry of `spans` (`(first epoch, epochs)`), with values drawn
    /// from the id and epoch, so the same (id, epoch) always observes the same thing.
    fn state_of(ids: &[i64], spans: &[(u32, u32)]) -> State {
        let task = Task::MultiClass { n_classes: 3 };
        let states = ids
            .iter()
            .zip(spans)
            .map(|(&id, &(first, len))| {
                let mut s = ExampleState::EMPTY;
                for e in first..first + len {
                    let g = 0.05 + ((id as u64 * 31 + e as u64 * 17) % 90) as f64 / 100.0;
                    s.observe(0, e, (id % 3) as u32, &obs(g, ((id + e as i64) % 3) as u32)).unwrap();
                }
                s
            })
            .collect();
        State::new(0, task, Kind::Logits).unwrap().with_stored(Slots::from_states(states))
    }

    fn ints(v: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    #[test]
    fn disjoint_ids_keep_their_states_bit_for_bit() {
        let a = state_of(&[1, 4, 9], &[(0, 3); 3]);
        let b = state_of(&[0, 5], &[(0, 3); 2]);
        let (m, ids) = merge_by_id(&a, Some(&ints(&[1, 4, 9])), &b, Some(&ints(&[0, 5]))).unwrap();
        let ids = ids.unwrap();
        assert_eq!(ids.as_primitive::<Int64Type>().values().to_vec(), vec![0, 1, 4, 5, 9]);
        let (sa, sb, sm) = (a.slots(), b.slots(), m.slots());
        assert_eq!(sm[0], sb[0]);
        assert_eq!(sm[1], sa[0]);
        assert_eq!(sm[2], sa[1]);
        assert_eq!(sm[3], sb[1]);
        assert_eq!(sm[4], sa[2]);
    }

    #[test]
    fn shared_ids_merge_in_epoch_order_and_dense_ids_collapse() {
        let whole = state_of(&[0, 1, 2], &[(0, 6); 3]);
        let early = state_of(&[0, 1, 2], &[(0, 3); 3]);
        let late = state_of(&[0, 1, 2], &[(3, 3); 3]);
        // Either order of the arguments: the merge orders by epochs.
        for (x, y) in [(&early, &late), (&late, &early)] {
            let (m, ids) = merge_by_id(x, None, y, None).unwrap();
            assert!(ids.is_none());
            for (got, want) in m.slots().iter().zip(whole.slots().iter()) {
                assert_eq!(got.n, want.n);
                assert_eq!(got.forgetting, want.forgetting);
                assert_eq!(got.stable_from, want.stable_from);
                assert!((got.sums.mean - want.sums.mean).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn overlapping_epochs_name_the_id() {
        let a = state_of(&[7, 8], &[(0, 3); 2]);
        let b = state_of(&[8], &[(2, 3)]);
        let err = merge_by_id(&a, Some(&ints(&[7, 8])), &b, Some(&ints(&[8]))).unwrap_err();
        assert!(matches!(err, Error::DuplicateObservation { epoch: 2, .. }), "{err}");
        assert!(err.to_string().contains('8'), "{err}");
        let b = state_of(&[8], &[(1, 1)]);
        let err = merge_by_id(&a, Some(&ints(&[7, 8])), &b, Some(&ints(&[8]))).unwrap_err();
        assert!(matches!(err, Error::InterleavedEpochs { .. }), "{err}");
    }

    #[test]
    fn bad_ids_are_errors() {
        let a = state_of(&[1, 2], &[(0, 1); 2]);
        let b = state_of(&[3], &[(0, 1)]);
        let unsorted = merge_by_id(&a, Some(&ints(&[2, 1])), &b, None).unwrap_err();
        assert!(unsorted.to_string().contains("increasing"), "{unsorted}");
        let short = merge_by_id(&a, Some(&ints(&[1])), &b, None).unwrap_err();
        assert!(short.to_string().contains("ids"), "{short}");
        let strs: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let mixed = merge_by_id(&a, None, &b, Some(&strs)).unwrap_err();
        assert!(matches!(mixed, Error::Incompatible(_)), "{mixed}");
        let other = State::new(1, Task::MultiClass { n_classes: 2 }, Kind::Logits).unwrap();
        assert!(matches!(merge_by_id(&a, None, &other, None), Err(Error::Incompatible(_))));
    }

    #[test]
    fn string_ids_merge_in_order() {
        let a = state_of(&[0, 1], &[(0, 2); 2]);
        let b = state_of(&[2, 3], &[(0, 2); 2]);
        let sa: ArrayRef = Arc::new(StringArray::from(vec!["b", "d"]));
        let sb: ArrayRef = Arc::new(StringArray::from(vec!["a", "c"]));
        let (m, ids) = merge_by_id(&a, Some(&sa), &b, Some(&sb)).unwrap();
        let ids = ids.unwrap();
        let ids: Vec<&str> = ids.as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(m.slots()[0], b.slots()[0]);
        assert_eq!(m.slots()[1], a.slots()[0]);
    }

    #[test]
    fn complete_means_every_epoch() {
        let a = state_of(&[3, 5], &[(0, 3), (0, 2)]);
        let err = check_complete(&a, Some(&ints(&[3, 5])), 3).unwrap_err();
        assert!(err.to_string().contains("5 has 2 of the 3 epochs"), "{err}");
        check_complete(&a, Some(&ints(&[3, 5])), 2).unwrap_err();
        let b = state_of(&[0, 1], &[(0, 3); 2]);
        check_complete(&b, None, 3).unwrap();
    }

    proptest! {
        /// Splitting a set of examples in two and merging gives the union, every state kept.
        #[test]
        fn any_split_of_examples_merges_back(mask in proptest::collection::vec(any::<bool>(), 1..60)) {
            let all: Vec<i64> = (0..mask.len() as i64).map(|i| i * 3 + 1).collect();
            let whole = state_of(&all, &vec![(0, 4); all.len()]);
            let left: Vec<i64> = all.iter().zip(&mask).filter(|p| *p.1).map(|p| *p.0).collect();
            let right: Vec<i64> = all.iter().zip(&mask).filter(|p| !*p.1).map(|p| *p.0).collect();
            let a = state_of(&left, &vec![(0, 4); left.len()]);
            let b = state_of(&right, &vec![(0, 4); right.len()]);
            let (m, ids) = merge_by_id(&a, Some(&ints(&left)), &b, Some(&ints(&right))).unwrap();
            prop_assert_eq!(ids.unwrap().as_primitive::<Int64Type>().values().to_vec(), all);
            prop_assert_eq!(m.slots().to_vec(), whole.slots().to_vec());
        }
    }
}
