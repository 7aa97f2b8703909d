//! Exact search: every searchable row against every other, in chunks of rows packed on demand
//! so a memory-mapped input larger than memory streams (each query chunk reads the database
//! chunks once).

use super::Metric;
use super::pack::Source;
use super::topk::{Cands, CandsMut, Rows, TILE_Q, alpha, scan_all};
use crate::kernel::math::Real;

/// Extra candidates kept per row beyond `k`, so that rows whose `f32` scores are within
/// rounding of the `k`-th still reach the exact `f64` rescoring that orders them.
pub(crate) const EXTRA: usize = 8;

/// Bytes of packed rows per chunk (queries and database each).
const CHUNK_BYTES: usize = 256 << 20;

/// The `k + EXTRA` best candidates (positions) of every searchable row.
pub(crate) fn search<T: Real>(src: &Source<'_, T>, k: usize) -> Cands {
    search_in_chunks(src, k, (CHUNK_BYTES / (src.d * 4)).max(TILE_Q) / TILE_Q * TILE_Q)
}

/// [`search`] with `chunk` rows per chunk.
pub(crate) fn search_in_chunks<T: Real>(src: &Source<'_, T>, k: usize, chunk: usize) -> Cands {
    let (m, d) = (src.m(), src.d);
    let kc = (k + EXTRA).min(m - 1);
    let mut cands = Cands::new(m, kc);
    let a = alpha(src.metric == Metric::Cosine);
    for q0 in (0..m).step_by(chunk) {
        let q1 = (q0 + chunk).min(m);
        let (qd, qo, qp) = src.pack_range(q0..q1);
        let q = Rows { data: &qd, offset: &qo, pos: &qp };
        for b0 in (0..m).step_by(chunk) {
            // The query chunk is its own database chunk (the only one when all rows fit).
            let packed = if b0 == q0 { None } else { Some(src.pack_range(b0..(b0 + chunk).min(m))) };
            let db = packed.as_ref().map_or(q, |p| Rows { data: &p.0, offset: &p.1, pos: &p.2 });
            let out = CandsMut { kc, score: &mut cands.score[q0 * kc..q1 * kc], pos: &mut cands.pos[q0 * kc..q1 * kc] };
            scan_all(q, db, d, a, out);
        }
    }
    cands
}
