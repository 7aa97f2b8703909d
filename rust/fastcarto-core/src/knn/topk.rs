//! Per-row candidate lists and the tile kernel that fills them: one matrix multiply of a tile
//! of queries by a tile of database rows, then a scan that keeps each query's best scores.

use rayon::prelude::*;

/// Queries per tile and database rows per tile: a `TILE_Q × TILE_DB` block of scores (512 KiB)
/// stays in the L2 cache while it is scanned.
pub(crate) const TILE_Q: usize = 128;
pub(crate) const TILE_DB: usize = 1024;

/// Each row's `kc` best `(score, position)` pairs, ascending by score then position; unused
/// slots hold `(+inf, u32::MAX)`.
pub(crate) struct Cands {
    pub kc: usize,
    pub score: Vec<f32>,
    pub pos: Vec<u32>,
}

impl Cands {
    pub fn new(rows: usize, kc: usize) -> Self {
        Cands { kc, score: vec![f32::INFINITY; rows * kc], pos: vec![u32::MAX; rows * kc] }
    }

    pub fn as_mut(&mut self) -> CandsMut<'_> {
        CandsMut { kc: self.kc, score: &mut self.score, pos: &mut self.pos }
    }

    pub fn row(&self, r: usize) -> (&[f32], &[u32]) {
        let s = r * self.kc..(r + 1) * self.kc;
        (&self.score[s.clone()], &self.pos[s])
    }
}

/// A borrowed run of rows of a [`Cands`].
pub(crate) struct CandsMut<'a> {
    pub kc: usize,
    pub score: &'a mut [f32],
    pub pos: &'a mut [u32],
}

impl CandsMut<'_> {
    #[inline]
    fn worst(&self, r: usize) -> f32 {
        self.score[r * self.kc + self.kc - 1]
    }

    /// Inserts `(s, j)` in row `r` if it beats the row's worst (lower score, then lower position).
    #[inline]
    fn push(&mut self, r: usize, s: f32, j: u32) {
        let base = r * self.kc;
        let d = &mut self.score[base..base + self.kc];
        let p = &mut self.pos[base..base + self.kc];
        let before = |a: f32, b: u32, c: f32, e: u32| a < c || (a == c && b < e);
        let last = self.kc - 1;
        if !before(s, j, d[last], p[last]) {
            return;
        }
        let mut t = last;
        while t > 0 && before(s, j, d[t - 1], p[t - 1]) {
            d[t] = d[t - 1];
            p[t] = p[t - 1];
            t -= 1;
        }
        d[t] = s;
        p[t] = j;
    }
}

/// The database side of a search: packed rows (`n × d`), the score offset of each row (its
/// squared norm for euclidean, 0 for cosine) and the position each row reports.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub data: &'a [f32],
    pub offset: &'a [f32],
    pub pos: &'a [u32],
}

impl<'a> Rows<'a> {
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn slice(&self, r: std::ops::Range<usize>, d: usize) -> Rows<'a> {
        Rows { data: &self.data[r.start * d..r.end * d], offset: &self.offset[r.clone()], pos: &self.pos[r] }
    }
}

/// `alpha` of the product: scores are `offset[j] + alpha · q·y`, i.e. `‖y‖² − 2q·y` (the
/// squared distance less the query's own `‖q‖²`, constant along its row) or `−q̂·ŷ`.
pub(crate) fn alpha(cosine: bool) -> f32 {
    if cosine { -1.0 } else { -2.0 }
}

/// Scores every query of `q` against every row of `db` into `out`, skipping a query's own
/// position. `scratch` holds the score block.
pub(crate) fn scan(q: Rows<'_>, db: Rows<'_>, d: usize, alpha: f32, out: &mut CandsMut<'_>, scratch: &mut Vec<f32>) {
    let (qn, dn) = (q.len(), db.len());
    if qn == 0 || dn == 0 {
        return;
    }
    scratch.resize(qn * dn, 0.0);
    // SAFETY: `q.data` holds `qn × d` and `db.data` `dn × d` row-major floats and `scratch`
    // `qn × dn`; the strides below stay inside them, and C does not alias A or B.
    unsafe {
        matrixmultiply::sgemm(
            qn,
            d,
            dn,
            alpha,
            q.data.as_ptr(),
            d as isize,
            1,
            db.data.as_ptr(),
            1,
            d as isize,
            0.0,
            scratch.as_mut_ptr(),
            dn as isize,
            1,
        );
    }
    const W: usize = 16;
    for r in 0..qn {
        let row = &scratch[r * dn..(r + 1) * dn];
        let me = q.pos[r];
        let mut worst = out.worst(r);
        for (b, (c, o)) in row.chunks(W).zip(db.offset.chunks(W)).enumerate() {
            // Most blocks hold nothing better than the row's worst: one vectorizable minimum.
            let mut lo = f32::INFINITY;
            for t in 0..c.len() {
                let s = c[t] + o[t];
                if s < lo {
                    lo = s;
                }
            }
            if lo > worst {
                continue;
            }
            for t in 0..c.len() {
                let s = c[t] + o[t];
                let j = db.pos[b * W + t];
                if s <= worst && j != me {
                    out.push(r, s, j);
                    worst = out.worst(r);
                }
            }
        }
    }
}

/// Every query of `q` against every row of `db`, in parallel over tiles of queries; `out`
/// has one row per query.
pub(crate) fn scan_all(q: Rows<'_>, db: Rows<'_>, d: usize, alpha: f32, out: CandsMut<'_>) {
    let kc = out.kc;
    out.score.par_chunks_mut(TILE_Q * kc).zip(out.pos.par_chunks_mut(TILE_Q * kc)).enumerate().for_each_init(
        Vec::new,
        |scratch, (t, (score, pos))| {
            let rows = t * TILE_Q..(t * TILE_Q + score.len() / kc);
            let qt = q.slice(rows, d);
            let mut part = CandsMut { kc, score, pos };
            for b in (0..db.len()).step_by(TILE_DB) {
                let dt = db.slice(b..(b + TILE_DB).min(db.len()), d);
                scan(qt, dt, d, alpha, &mut part, scratch);
            }
        },
    );
}
