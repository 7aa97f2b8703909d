//! The k-nearest-neighbour graph as the issue types read it: each row's `k` neighbours as
//! `(distances, indices)`, ascending by distance. An index of -1 marks a missing neighbour (the
//! search never returns a row whose features hold NaN, and such a row has none itself); every
//! issue type ignores those entries, and a row left with none is "no neighbours": never flagged,
//! score 1.

use crate::error::{Error, Result};
use ndarray::ArrayView2;

/// A checked neighbour graph over `n` rows.
#[derive(Clone, Copy, Debug)]
pub struct Graph<'a> {
    distances: ArrayView2<'a, f32>,
    indices: ArrayView2<'a, i64>,
}

impl<'a> Graph<'a> {
    /// Checks that both arrays are `(n, k)` with `n >= 2` and `k >= 1`, every index is -1 or a
    /// row number other than the row itself, and the distance of every present neighbour is
    /// finite and not negative.
    pub fn new(distances: ArrayView2<'a, f32>, indices: ArrayView2<'a, i64>) -> Result<Self> {
        if distances.dim() != indices.dim() {
            return Err(Error::invalid(format!(
                "knn graph: distances have shape {:?} but indices {:?}; both must be (n, k)",
                distances.dim(),
                indices.dim()
            )));
        }
        let (n, k) = distances.dim();
        if n < 2 {
            return Err(Error::invalid(format!("knn graph: {n} rows; a neighbour graph needs at least 2")));
        }
        if k == 0 {
            return Err(Error::invalid("knn graph: no neighbours per row (k = 0); k must be at least 1"));
        }
        for (i, (d_row, i_row)) in distances.rows().into_iter().zip(indices.rows()).enumerate() {
            for (&d, &j) in d_row.iter().zip(i_row) {
                if j == -1 {
                    continue;
                }
                if j < 0 || j as u64 >= n as u64 {
                    return Err(Error::invalid(format!(
                        "knn graph: row {i} has neighbour index {j}, outside 0..{n} (-1 marks a missing neighbour)"
                    )));
                }
                if j as usize == i {
                    return Err(Error::invalid(format!("knn graph: row {i} lists itself as a neighbour")));
                }
                if !d.is_finite() || d < 0.0 {
                    return Err(Error::invalid(format!(
                        "knn graph: row {i} has distance {d} to neighbour {j}; distances must be finite and >= 0"
                    )));
                }
            }
        }
        Ok(Graph { distances, indices })
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.distances.nrows()
    }

    /// Neighbours per row (present or not).
    pub fn k(&self) -> usize {
        self.distances.ncols()
    }

    /// Row `i`'s present neighbours as `(index, distance)`, in graph order.
    pub fn neighbours(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.indices.row(i).into_iter().zip(self.distances.row(i)).filter_map(|(&j, &d)| {
            // Checked in `new`: j is -1 or a row number.
            (j >= 0).then_some((j as usize, d))
        })
    }

    /// Row `i`'s first present neighbour (the nearest, as the graph is ascending), if any.
    pub fn nearest(&self, i: usize) -> Option<(usize, f32)> {
        self.neighbours(i).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rejects_bad_graphs() {
        let d = array![[1.0f32], [1.0]];
        assert!(Graph::new(d.view(), array![[1i64], [0]].view()).is_ok());
        assert!(Graph::new(d.view(), array![[2i64], [0]].view()).is_err());
        assert!(Graph::new(d.view(), array![[0i64], [0]].view()).is_err());
        assert!(Graph::new(d.view(), array![[-2i64], [0]].view()).is_err());
        assert!(Graph::new(array![[f32::NAN], [1.0]].view(), array![[1i64], [0]].view()).is_err());
        // A missing neighbour may carry any distance (the search writes +inf).
        assert!(Graph::new(array![[f32::INFINITY], [1.0]].view(), array![[-1i64], [0]].view()).is_ok());
        assert!(Graph::new(array![[1.0f32]].view(), array![[0i64]].view()).is_err());
        assert!(Graph::new(array![[1.0f32], [1.0]].view(), array![[1i64, 0], [0, 1]].view()).is_err());
    }
}
