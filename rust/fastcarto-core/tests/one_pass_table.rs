//! `compute_dense_table` (fold and build the table in one pass, no per-example state) gives the
//! same table, bit for bit, as `compute_dense` followed by `finalize`, under every convention,
//! for multi-class and multi-label tasks, both float widths, epoch subsets and thread counts.

mod common;

use common::*;
use fastcarto_core::Real;
use fastcarto_core::{Compat, FinalizeOptions, Kind, Task, compute_dense, compute_dense_table, finalize};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn same_table<T: Real>(
    case: &Case,
    subset: u16,
    threads: usize,
    compat: Option<Compat>,
    ddof: u32,
) -> Result<(), TestCaseError> {
    let epochs: Vec<usize> = (0..case.e).filter(|&e| subset & (1 << e) != 0).collect();
    let arr = case.array::<T>();
    let opts = FinalizeOptions { compat, ddof };
    let run = |one_pass: bool| {
        if one_pass {
            compute_dense_table(
                arr.view(),
                &epochs,
                &case.labels,
                case.task,
                case.kind,
                case.nan_policy(),
                Some(threads),
                opts,
            )
        } else {
            compute_dense(arr.view(), &epochs, &case.labels, case.task, case.kind, case.nan_policy(), Some(threads))
                .and_then(|state| finalize(&state, None, opts))
        }
    };
    match (run(false), run(true)) {
        (Ok(want), Ok(got)) => {
            prop_assert_eq!(got.schema(), want.schema());
            for (g, w) in got.columns().iter().zip(want.columns()) {
                // Arrow's equality compares floats by value: NaN != NaN, so compare the bits.
                prop_assert_eq!(g.to_data(), w.to_data());
            }
        }
        (Err(want), Err(got)) => prop_assert_eq!(got.to_string(), want.to_string()),
        (want, got) => prop_assert!(false, "two steps: {:?}, one pass: {:?}", want.map(|_| ()), got.map(|_| ())),
    }
    Ok(())
}

const COMPATS: [Option<Compat>; 6] =
    [None, Some(Compat::Cartography), Some(Compat::Aum), Some(Compat::DataIq), Some(Compat::Toneva), None];

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn one_pass_table_is_the_two_step_table_f32(
        case in case(Dims::default()), subset in 1u16.., threads in 1usize..4, which in 0usize..6, ddof in 0u32..2,
    ) {
        same_table::<f32>(&case, subset, threads, COMPATS[which], ddof)?;
    }

    #[test]
    fn one_pass_table_is_the_two_step_table_f64(
        case in case(Dims::default()), subset in 1u16.., threads in 1usize..4, which in 0usize..6, ddof in 0u32..2,
    ) {
        same_table::<f64>(&case, subset, threads, COMPATS[which], ddof)?;
    }
}

/// Many table chunks (the one-pass table reuses each task's buffer of states from chunk to
/// chunk, overwriting it), omitted rows included, one thread and several.
#[test]
fn one_pass_table_over_many_chunks() {
    let cases = [
        big_case(11, 3, 70_000, Task::MultiClass { n_classes: 3 }, Kind::Logits, true),
        big_case(12, 2, 40_000, Task::MultiClass { n_classes: 4 }, Kind::Probs, true),
    ];
    for case in &cases {
        for threads in [1, 2] {
            for compat in [None, Some(Compat::Cartography)] {
                same_table::<f32>(case, 0b111, threads, compat, 0).unwrap();
            }
        }
        same_table::<f64>(case, 0b101, 1, None, 0).unwrap();
    }
}
