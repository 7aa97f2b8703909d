//! The hot loop: one epoch's outputs for a run of consecutive examples, folded into their state.
//!
//! Rows are taken `LANES` at a time and transposed (structure of arrays), so every per-class
//! step — max, `exp`, masked sums — is one vector instruction across `LANES` examples. Softmax
//! quantities are formed so that nothing cancels: `ln s` is `ln_1p` of the sum of the non-argmax
//! terms, `1 - p(gold)` is built from the same sum, and `-ln p(gold) = ln s + (max - z_gold)`.
//! Per-row results are finished in `f64` and accumulated in `f64`.

use crate::error::{Error, Result};
use crate::math::{Real, ln_1p};
use crate::options::{Kind, NanPolicy};
use crate::state::{ExampleState, Observation};
use multiversion::multiversion;

/// Rows handled together; 8 fills an AVX2 register with f32 and an AVX-512 one with f64.
pub(crate) const LANES: usize = 8;

/// Tolerance on `|sum(p) - 1|` for probability rows: float rounding over `c` terms plus 1e-3.
pub fn prob_sum_tolerance<T: Real>(c: usize) -> f64 {
    1e-3 + 4.0 * c as f64 * T::EPSILON.to_f64()
}

/// Per-lane results of one group of rows.
struct Lanes {
    obs: [Observation; LANES],
    /// Any non-finite value in the row.
    non_finite: [bool; LANES],
    /// For probabilities: a value outside [0, 1] or a sum too far from 1.
    invalid: [bool; LANES],
}

/// Observes `labels.len()` consecutive rows of one epoch (`rows` is row-major with `cols`
/// columns) and folds each into the matching entry of `slots`. `first_example` is the index of
/// the first row, for error messages. `scratch` is reused between calls.
#[allow(clippy::too_many_arguments)]
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn fold_rows<T: Real>(
    kind: Kind,
    nan_policy: NanPolicy,
    epoch: u32,
    rows: &[T],
    cols: usize,
    labels: &[u32],
    slots: &mut [ExampleState],
    first_example: u64,
    scratch: &mut Vec<T>,
) -> Result<()> {
    debug_assert_eq!(rows.len(), labels.len() * cols);
    debug_assert_eq!(slots.len(), labels.len());
    // One-column binary outputs are read as the two-column equivalent.
    let eff = cols.max(2);
    scratch.resize(eff * LANES, T::ZERO);
    let n = labels.len();
    let mut start = 0;
    while start < n {
        let take = (n - start).min(LANES);
        let mut gold = [T::ZERO; LANES];
        transpose(kind, &rows[start * cols..(start + take) * cols], cols, take, scratch);
        for l in 0..take {
            gold[l] = T::from_u32(labels[start + l]);
        }
        let lanes = match kind {
            Kind::Logits => observe_logits(scratch, eff, &gold),
            Kind::Probs => observe_probs(scratch, eff, &gold),
        };
        for l in 0..take {
            let i = start + l;
            let example = first_example + i as u64;
            if lanes.non_finite[l] || lanes.invalid[l] {
                let row = &rows[i * cols..(i + 1) * cols];
                if lanes.non_finite[l] {
                    if nan_policy == NanPolicy::Omit {
                        continue;
                    }
                    let value = row.iter().find(|v| !v.is_finite()).map_or(f64::NAN, |v| v.to_f64());
                    return Err(Error::NonFinite { epoch, example, value });
                }
                return Err(Error::InvalidProbabilities { epoch, example, reason: describe_invalid_probs(row) });
            }
            slots[i].observe(example, epoch, labels[i], &lanes.obs[l])?;
        }
        start += take;
    }
    Ok(())
}

/// Copies `take` rows into `out[k * LANES + lane]`, padding missing lanes with the first row and
/// expanding one-column outputs to two columns (`[0, z]` for logits, `[1 - p, p]` for probs,
/// which give the same softmax, margin and argmax as the one-column reading).
#[inline(always)]
fn transpose<T: Real>(kind: Kind, rows: &[T], cols: usize, take: usize, out: &mut [T]) {
    for l in 0..LANES {
        let src = if l < take { l } else { 0 };
        let row = &rows[src * cols..(src + 1) * cols];
        if cols == 1 {
            let x = row[0];
            out[l] = match kind {
                Kind::Logits => T::ZERO,
                Kind::Probs => T::ONE - x,
            };
            out[LANES + l] = x;
        } else {
            for (k, &v) in row.iter().enumerate() {
                out[k * LANES + l] = v;
            }
        }
    }
}

#[inline(always)]
fn lane_block<T: Real>(zt: &[T], k: usize) -> &[T; LANES] {
    zt[k * LANES..(k + 1) * LANES].try_into().expect("scratch holds LANES values per class")
}

#[inline(always)]
fn observe_logits<T: Real>(zt: &[T], cols: usize, gold: &[T; LANES]) -> Lanes {
    let mut max = [T::NEG_INFINITY; LANES];
    let mut arg = [T::ZERO; LANES];
    let mut z_gold = [T::ZERO; LANES];
    let mut max_other = [T::NEG_INFINITY; LANES];
    let mut finite = [true; LANES];
    for k in 0..cols {
        let kf = T::from_u32(k as u32);
        let z = lane_block(zt, k);
        for l in 0..LANES {
            let v = z[l];
            finite[l] &= v.is_finite();
            let greater = v > max[l];
            max[l] = if greater { v } else { max[l] };
            arg[l] = if greater { kf } else { arg[l] };
            let is_gold = kf == gold[l];
            z_gold[l] = if is_gold { v } else { z_gold[l] };
            max_other[l] = max_other[l].max_(if is_gold { T::NEG_INFINITY } else { v });
        }
    }
    // rest = sum of exp(z - max) over all classes but the (first) argmax, whose term is exactly 1.
    let mut rest = [T::ZERO; LANES];
    let mut tilt = [T::ZERO; LANES];
    let mut sq_other = [T::ZERO; LANES];
    let mut e_gold = [T::ZERO; LANES];
    for k in 0..cols {
        let kf = T::from_u32(k as u32);
        let z = lane_block(zt, k);
        for l in 0..LANES {
            let d = z[l] - max[l];
            let e = d.exp_fast();
            rest[l] = rest[l] + if kf == arg[l] { T::ZERO } else { e };
            tilt[l] = tilt[l] + e * (-d);
            let is_gold = kf == gold[l];
            sq_other[l] = sq_other[l] + if is_gold { T::ZERO } else { e * e };
            e_gold[l] = e_gold[l] + if is_gold { e } else { T::ZERO };
        }
    }
    let mut obs = [EMPTY_OBS; LANES];
    for l in 0..LANES {
        let rest = rest[l].to_f64();
        let s = 1.0 + rest;
        let ln_s = ln_1p(rest);
        let eg = e_gold[l].to_f64();
        let one_minus_g = (rest + (1.0 - eg)) / s;
        let sq = sq_other[l].to_f64() / (s * s);
        obs[l] = Observation {
            gold_prob: eg / s,
            margin: z_gold[l].to_f64() - max_other[l].to_f64(),
            el2n: (one_minus_g * one_minus_g + sq).sqrt(),
            loss: ln_s + (max[l].to_f64() - z_gold[l].to_f64()),
            entropy: ln_s + tilt[l].to_f64() / s,
            pred: arg[l].to_f64() as u32,
        };
    }
    Lanes { obs, non_finite: finite.map(|f| !f), invalid: [false; LANES] }
}

#[inline(always)]
fn observe_probs<T: Real>(zt: &[T], cols: usize, gold: &[T; LANES]) -> Lanes {
    let mut sum = [T::ZERO; LANES];
    let mut max = [T::NEG_INFINITY; LANES];
    let mut arg = [T::ZERO; LANES];
    let mut p_gold = [T::ZERO; LANES];
    let mut max_other = [T::NEG_INFINITY; LANES];
    let mut entropy = [T::ZERO; LANES];
    let mut sq_other = [T::ZERO; LANES];
    let mut finite = [true; LANES];
    let mut in_range = [true; LANES];
    for k in 0..cols {
        let kf = T::from_u32(k as u32);
        let z = lane_block(zt, k);
        for l in 0..LANES {
            let v = z[l];
            finite[l] &= v.is_finite();
            in_range[l] &= v >= T::ZERO && v <= T::ONE;
            sum[l] = sum[l] + v;
            let greater = v > max[l];
            max[l] = if greater { v } else { max[l] };
            arg[l] = if greater { kf } else { arg[l] };
            let is_gold = kf == gold[l];
            p_gold[l] = if is_gold { v } else { p_gold[l] };
            max_other[l] = max_other[l].max_(if is_gold { T::NEG_INFINITY } else { v });
            // 0 ln 0 = 0; subnormal p contribute less than 1e-36 and are outside ln_fast's domain.
            let plogp = if v >= T::MIN_POSITIVE { v * v.ln_fast() } else { T::ZERO };
            entropy[l] = entropy[l] - plogp;
            sq_other[l] = sq_other[l] + if is_gold { T::ZERO } else { v * v };
        }
    }
    let tol = prob_sum_tolerance::<T>(cols);
    let mut obs = [EMPTY_OBS; LANES];
    let mut invalid = [false; LANES];
    for l in 0..LANES {
        let g = p_gold[l].to_f64();
        let one_minus_g = 1.0 - g;
        invalid[l] = !in_range[l] || (sum[l].to_f64() - 1.0).abs() > tol;
        obs[l] = Observation {
            gold_prob: g,
            margin: g - max_other[l].to_f64(),
            el2n: (one_minus_g * one_minus_g + sq_other[l].to_f64()).sqrt(),
            loss: -(g.max(T::EPSILON.to_f64())).ln_fast(),
            entropy: entropy[l].to_f64(),
            pred: arg[l].to_f64() as u32,
        };
    }
    Lanes { obs, non_finite: finite.map(|f| !f), invalid }
}

const EMPTY_OBS: Observation =
    Observation { gold_prob: 0.0, margin: 0.0, el2n: 0.0, loss: 0.0, entropy: 0.0, pred: 0 };

fn describe_invalid_probs<T: Real>(row: &[T]) -> String {
    if let Some((k, v)) = row.iter().enumerate().find(|(_, v)| !(**v >= T::ZERO && **v <= T::ONE)) {
        return format!("value {} in column {k} is outside [0, 1]", v.to_f64());
    }
    if row.len() == 1 {
        return "the positive-class probability is outside [0, 1]".to_string();
    }
    let s: f64 = row.iter().map(|v| v.to_f64()).sum();
    format!(
        "the row sums to {s} (tolerance {:.1e}); pass probabilities that sum to 1",
        prob_sum_tolerance::<T>(row.len())
    )
}
