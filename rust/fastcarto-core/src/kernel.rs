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

/// Rows handled together. The lane loops below run over a *runtime* count (at most `GROUP`), so
/// LLVM's loop vectorizer (not the fragile SLP vectorizer, which gave up on fully unrolled
/// 8-lane code) turns each into AVX2 / AVX-512 / NEON instructions plus a short remainder.
pub(crate) const GROUP: usize = 64;

/// Tolerance on `|sum(p) - 1|` for probability rows: float rounding over `c` terms plus 1e-3.
pub fn prob_sum_tolerance<T: Real>(c: usize) -> f64 {
    1e-3 + 4.0 * c as f64 * T::EPSILON.to_f64()
}

/// Per-row results of one group, structure of arrays.
struct Lanes {
    gold_prob: [f64; GROUP],
    margin: [f64; GROUP],
    el2n: [f64; GROUP],
    loss: [f64; GROUP],
    entropy: [f64; GROUP],
    pred: [u32; GROUP],
    /// Any non-finite value in the row.
    non_finite: [bool; GROUP],
    /// For probabilities: a value outside [0, 1] or a sum too far from 1.
    invalid: [bool; GROUP],
}

impl Lanes {
    fn new() -> Box<Self> {
        Box::new(Lanes {
            gold_prob: [0.0; GROUP],
            margin: [0.0; GROUP],
            el2n: [0.0; GROUP],
            loss: [0.0; GROUP],
            entropy: [0.0; GROUP],
            pred: [0; GROUP],
            non_finite: [false; GROUP],
            invalid: [false; GROUP],
        })
    }
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
    scratch.resize(eff * GROUP, T::ZERO);
    let mut lanes = Lanes::new();
    let n = labels.len();
    let mut start = 0;
    while start < n {
        let g = (n - start).min(GROUP);
        let mut gold = [T::ZERO; GROUP];
        transpose(kind, &rows[start * cols..(start + g) * cols], cols, g, scratch);
        for (dst, &y) in gold[..g].iter_mut().zip(&labels[start..start + g]) {
            *dst = T::from_u32(y);
        }
        match kind {
            Kind::Logits => observe_logits(scratch, eff, g, &gold, &mut lanes),
            Kind::Probs => observe_probs(scratch, eff, g, &gold, &mut lanes),
        }
        for l in 0..g {
            let i = start + l;
            let example = first_example + i as u64;
            if lanes.non_finite[l] || lanes.invalid[l] {
                let row = &rows[i * cols..(i + 1) * cols];
                if lanes.non_finite[l] {
                    if nan_policy == NanPolicy::Omit {
                        if slots[i].n == 0 {
                            slots[i].label = labels[i];
                        }
                        continue;
                    }
                    let value = row.iter().find(|v| !v.is_finite()).map_or(f64::NAN, |v| v.to_f64());
                    return Err(Error::NonFinite { epoch, example, value });
                }
                return Err(Error::InvalidProbabilities { epoch, example, reason: describe_invalid_probs(row) });
            }
            let obs = Observation {
                gold_prob: lanes.gold_prob[l],
                margin: lanes.margin[l],
                el2n: lanes.el2n[l],
                loss: lanes.loss[l],
                entropy: lanes.entropy[l],
                pred: lanes.pred[l],
            };
            slots[i].observe(example, epoch, labels[i], &obs)?;
        }
        start += g;
    }
    Ok(())
}

/// Copies `g` rows into `out[k * GROUP + lane]`, expanding one-column outputs to two columns
/// (`[0, z]` for logits, `[1 - p, p]` for probs, which give the same softmax, margin and argmax
/// as the one-column reading).
#[inline(always)]
fn transpose<T: Real>(kind: Kind, rows: &[T], cols: usize, g: usize, out: &mut [T]) {
    if cols == 1 {
        for l in 0..g {
            let x = rows[l];
            out[l] = match kind {
                Kind::Logits => T::ZERO,
                Kind::Probs => T::ONE - x,
            };
            out[GROUP + l] = x;
        }
        return;
    }
    for (l, row) in rows.chunks_exact(cols).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            out[k * GROUP + l] = v;
        }
    }
}

#[inline(always)]
fn lanes_of<T: Real>(zt: &[T], k: usize, g: usize) -> &[T] {
    &zt[k * GROUP..k * GROUP + g]
}

#[inline(always)]
fn observe_logits<T: Real>(zt: &[T], cols: usize, g: usize, gold: &[T; GROUP], out: &mut Lanes) {
    let gold = &gold[..g];
    let mut max = [T::NEG_INFINITY; GROUP];
    let mut arg = [T::ZERO; GROUP];
    let mut z_gold = [T::ZERO; GROUP];
    let mut max_other = [T::NEG_INFINITY; GROUP];
    let mut finite = [true; GROUP];
    {
        let (max, arg, z_gold, max_other, finite) =
            (&mut max[..g], &mut arg[..g], &mut z_gold[..g], &mut max_other[..g], &mut finite[..g]);
        for k in 0..cols {
            let kf = T::from_u32(k as u32);
            let z = lanes_of(zt, k, g);
            for l in 0..g {
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
    }
    // rest = sum of exp(z - max) over all classes but the (first) argmax, whose term is exactly 1.
    let mut rest = [T::ZERO; GROUP];
    let mut tilt = [T::ZERO; GROUP];
    let mut sq_other = [T::ZERO; GROUP];
    let mut e_gold = [T::ZERO; GROUP];
    {
        let (max, arg) = (&max[..g], &arg[..g]);
        let (rest, tilt, sq_other, e_gold) = (&mut rest[..g], &mut tilt[..g], &mut sq_other[..g], &mut e_gold[..g]);
        for k in 0..cols {
            let kf = T::from_u32(k as u32);
            let z = lanes_of(zt, k, g);
            for l in 0..g {
                let d = z[l] - max[l];
                let e = d.exp_fast();
                rest[l] = rest[l] + if kf == arg[l] { T::ZERO } else { e };
                // e == 0 when d overflowed to -inf: its term is 0, not 0 * inf.
                tilt[l] = tilt[l] + if e > T::ZERO { e * (-d) } else { T::ZERO };
                let is_gold = kf == gold[l];
                sq_other[l] = sq_other[l] + if is_gold { T::ZERO } else { e * e };
                e_gold[l] = e_gold[l] + if is_gold { e } else { T::ZERO };
            }
        }
    }
    for l in 0..g {
        let rest = rest[l].to_f64();
        let s = 1.0 + rest;
        let ln_s = ln_1p(rest);
        let eg = e_gold[l].to_f64();
        let one_minus_g = (rest + (1.0 - eg)) / s;
        let sq = sq_other[l].to_f64() / (s * s);
        out.gold_prob[l] = eg / s;
        out.margin[l] = z_gold[l].to_f64() - max_other[l].to_f64();
        out.el2n[l] = (one_minus_g * one_minus_g + sq).sqrt();
        out.loss[l] = ln_s + (max[l].to_f64() - z_gold[l].to_f64());
        out.entropy[l] = ln_s + tilt[l].to_f64() / s;
        out.pred[l] = arg[l].to_f64() as u32;
        out.non_finite[l] = !finite[l];
        out.invalid[l] = false;
    }
}

#[inline(always)]
fn observe_probs<T: Real>(zt: &[T], cols: usize, g: usize, gold: &[T; GROUP], out: &mut Lanes) {
    let gold = &gold[..g];
    let mut sum = [T::ZERO; GROUP];
    let mut max = [T::NEG_INFINITY; GROUP];
    let mut arg = [T::ZERO; GROUP];
    let mut p_gold = [T::ZERO; GROUP];
    let mut max_other = [T::NEG_INFINITY; GROUP];
    let mut entropy = [T::ZERO; GROUP];
    let mut sq_other = [T::ZERO; GROUP];
    let mut finite = [true; GROUP];
    let mut in_range = [true; GROUP];
    {
        let (sum, max, arg, p_gold, max_other) =
            (&mut sum[..g], &mut max[..g], &mut arg[..g], &mut p_gold[..g], &mut max_other[..g]);
        let (entropy, sq_other, finite, in_range) =
            (&mut entropy[..g], &mut sq_other[..g], &mut finite[..g], &mut in_range[..g]);
        for k in 0..cols {
            let kf = T::from_u32(k as u32);
            let z = lanes_of(zt, k, g);
            for l in 0..g {
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
    }
    let tol = prob_sum_tolerance::<T>(cols);
    let eps = T::EPSILON.to_f64();
    for l in 0..g {
        let gp = p_gold[l].to_f64();
        let one_minus_g = 1.0 - gp;
        out.gold_prob[l] = gp;
        out.margin[l] = gp - max_other[l].to_f64();
        out.el2n[l] = (one_minus_g * one_minus_g + sq_other[l].to_f64()).sqrt();
        out.loss[l] = -(gp.max(eps)).ln_fast();
        out.entropy[l] = entropy[l].to_f64();
        out.pred[l] = arg[l].to_f64() as u32;
        out.non_finite[l] = !finite[l];
        out.invalid[l] = !in_range[l] || (sum[l].to_f64() - 1.0).abs() > tol;
    }
}

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
