//! Splitting a read by ranges of example ids, so that several processes can each read every file
//! and fold only their examples (`fastcarto.dask`'s default plan).
//!
//! Each example's rows reach its process in exactly the order a single read visits them, so its
//! state is the single read's, bit for bit, and the parts (disjoint ranges, in increasing order)
//! concatenate into the single read's table. A range is `lo <= id < hi` with either end open;
//! integer ids compare as integers, string ids as UTF-8 bytes (the order `KeyedState` sorts
//! them in). The split points come from the ids of one file ([`split_points`]): ranges cover
//! every id whatever the files hold, the sample only decides how evenly they divide the work.

use super::long::Ids;
use super::{DataFile, ReadOptions, decode_batch, for_each_batch};
use crate::error::{Error, Result};
use arrow_array::Array;

/// One end of a range of ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdBound {
    Int(i64),
    Str(String),
}

impl IdBound {
    fn is_string(&self) -> bool {
        matches!(self, IdBound::Str(_))
    }
}

/// The ids `lo <= id < hi` (an end that is `None` is open).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdRange {
    pub lo: Option<IdBound>,
    pub hi: Option<IdBound>,
}

impl IdRange {
    /// Checks that the ends are of one type and in order.
    pub fn new(lo: Option<IdBound>, hi: Option<IdBound>) -> Result<Self> {
        if let (Some(a), Some(b)) = (&lo, &hi) {
            if a.is_string() != b.is_string() {
                return Err(Error::invalid("the ends of an id range are one an integer and one a string"));
            }
            if a >= b {
                return Err(Error::invalid(format!("the id range's lower end {a:?} is not below its upper end {b:?}")));
            }
        }
        Ok(IdRange { lo, hi })
    }

    /// The rows of a batch whose id is in the range, in batch order.
    pub fn select(&self, ids: &Ids) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.select_into(ids, &mut out)?;
        Ok(out)
    }

    /// [`IdRange::select`] into `out` (a buffer reused from batch to batch).
    pub fn select_into(&self, ids: &Ids, out: &mut Vec<u32>) -> Result<()> {
        let same_type = |b: &Option<IdBound>| b.as_ref().is_none_or(|b| b.is_string() == ids.is_string());
        if !same_type(&self.lo) || !same_type(&self.hi) {
            return Err(Error::invalid(format!(
                "the ids are {} but the id range's ends are not",
                if ids.is_string() { "strings" } else { "integers" }
            )));
        }
        out.clear();
        match ids {
            Ids::Int(a) => {
                let lo = match self.lo {
                    Some(IdBound::Int(v)) => v,
                    _ => i64::MIN,
                };
                let hi = match self.hi {
                    Some(IdBound::Int(v)) => Some(v),
                    _ => None,
                };
                // Branch-free: shuffled ids make "is this row in range" a coin flip that a
                // branch would mispredict half the time.
                let values = a.values();
                out.resize(values.len(), 0);
                let mut k = 0;
                match hi {
                    Some(h) => {
                        for (i, &v) in values.iter().enumerate() {
                            out[k] = i as u32;
                            k += usize::from(v >= lo && v < h);
                        }
                    }
                    None => {
                        for (i, &v) in values.iter().enumerate() {
                            out[k] = i as u32;
                            k += usize::from(v >= lo);
                        }
                    }
                }
                out.truncate(k);
            }
            Ids::Str(a) => {
                let lo = match &self.lo {
                    Some(IdBound::Str(v)) => Some(v.as_str()),
                    _ => None,
                };
                let hi = match &self.hi {
                    Some(IdBound::Str(v)) => Some(v.as_str()),
                    _ => None,
                };
                out.extend(
                    (0..a.len())
                        .filter(|&i| {
                            let v = a.value(i);
                            lo.is_none_or(|l| v >= l) && hi.is_none_or(|h| v < h)
                        })
                        .map(|i| i as u32),
                );
            }
        }
        Ok(())
    }
}

/// The least number of ids the split points are taken from (a strided sample beyond twice this).
const SAMPLE: usize = 1 << 16;

/// `parts - 1` increasing split points that divide the distinct ids of the first batch of each
/// of `files` into `parts` ranges of about equal size: the ranges `(-inf, s_1), [s_1, s_2), ...,
/// [s_{parts-1}, +inf)`, from every k-th of those ids (k doubling so that 65,536 to 131,072 are
/// kept). A first batch of every file represents both usual layouts: files of one epoch each
/// (each holds every id) and shards of examples (each holds its own ids). Fewer points when
/// there are fewer distinct ids; none without rows.
pub fn split_points(files: &[DataFile], opts: &ReadOptions<'_>, parts: usize) -> Result<Vec<IdBound>> {
    if parts == 0 {
        return Err(Error::invalid("a read is split into at least one part"));
    }
    let (mut ints, mut strs) = (Strided::default(), Strided::default());
    for file in files {
        for_each_batch(file, opts, &|i| i == 0, &mut |b, _| {
            if b.index != 0 {
                return Ok(());
            }
            let lb = decode_batch(file, &b, opts)?;
            match &lb.ids {
                Ids::Int(a) => a.values().iter().for_each(|&v| ints.push(|| v)),
                Ids::Str(a) => (0..a.len()).for_each(|i| strs.push(|| a.value(i).to_string())),
            }
            Ok(())
        })?;
    }
    let (mut ints, mut strs) = (ints.sample, strs.sample);
    let points = if strs.is_empty() {
        ints.sort_unstable();
        ints.dedup();
        quantiles(&ints, parts).into_iter().map(IdBound::Int).collect()
    } else {
        strs.sort_unstable();
        strs.dedup();
        quantiles(&strs, parts).into_iter().map(IdBound::Str).collect()
    };
    Ok(points)
}

/// Every `stride`-th value pushed, the stride doubling whenever the sample reaches twice
/// [`SAMPLE`] (so it stays between one and two times that).
struct Strided<T> {
    sample: Vec<T>,
    stride: usize,
    seen: usize,
}

impl<T> Default for Strided<T> {
    fn default() -> Self {
        Strided { sample: Vec::new(), stride: 1, seen: 0 }
    }
}

impl<T> Strided<T> {
    fn push(&mut self, value: impl FnOnce() -> T) {
        if self.seen.is_multiple_of(self.stride) {
            self.sample.push(value());
            if self.sample.len() >= 2 * SAMPLE {
                let mut k = 0;
                self.sample.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }
}

/// The distinct values `sorted[k * n / parts]` for `k = 1..parts` (all above the first value,
/// so every range holds some of the sample).
fn quantiles<T: Clone + PartialEq>(sorted: &[T], parts: usize) -> Vec<T> {
    let n = sorted.len();
    let mut out: Vec<T> = Vec::new();
    for k in 1..parts {
        let i = k * n / parts;
        if i == 0 || i >= n {
            continue;
        }
        if out.last() != Some(&sorted[i]) {
            out.push(sorted[i].clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};

    #[test]
    fn selects_the_rows_in_range_in_order() {
        let ids = Ids::Int(Int64Array::from(vec![5, -3, 9, 0, 7, 5]));
        let r = IdRange::new(Some(IdBound::Int(0)), Some(IdBound::Int(7))).unwrap();
        assert_eq!(r.select(&ids).unwrap(), vec![0, 3, 5]);
        let open = IdRange::new(None, Some(IdBound::Int(0))).unwrap();
        assert_eq!(open.select(&ids).unwrap(), vec![1]);
        let all = IdRange::default();
        assert_eq!(all.select(&ids).unwrap(), vec![0, 1, 2, 3, 4, 5]);
        let s = Ids::Str(StringArray::from(vec!["b", "a", "c", "ab"]));
        let r = IdRange::new(Some(IdBound::Str("ab".into())), Some(IdBound::Str("c".into()))).unwrap();
        assert_eq!(r.select(&s).unwrap(), vec![0, 3]);
    }

    #[test]
    fn ranges_from_split_points_cover_each_id_once() {
        let values: Vec<i64> = (0..1000).map(|i| (i * 7919) % 1013 - 300).collect();
        let ids = Ids::Int(Int64Array::from(values.clone()));
        let mut sorted = values.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let points = quantiles(&sorted, 4);
        assert_eq!(points.len(), 3);
        let mut ends: Vec<Option<IdBound>> = vec![None];
        ends.extend(points.into_iter().map(|p| Some(IdBound::Int(p))));
        ends.push(None);
        let mut seen = vec![0; values.len()];
        for w in ends.windows(2) {
            let r = IdRange::new(w[0].clone(), w[1].clone()).unwrap();
            for i in r.select(&ids).unwrap() {
                seen[i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
    }

    #[test]
    fn the_sample_is_every_kth_value() {
        let mut s = Strided::default();
        (0..1_000_003usize).for_each(|v| s.push(|| v));
        assert!(s.sample.len() >= SAMPLE && s.sample.len() < 2 * SAMPLE, "{}", s.sample.len());
        assert!(s.sample.iter().enumerate().all(|(i, &v)| v == i * s.stride));
        let mut few = Strided::default();
        (0..10usize).for_each(|v| few.push(|| v));
        assert_eq!(few.sample, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(IdRange::new(Some(IdBound::Int(3)), Some(IdBound::Int(3))).is_err());
        assert!(IdRange::new(Some(IdBound::Int(3)), Some(IdBound::Str("a".into()))).is_err());
        let r = IdRange::new(Some(IdBound::Int(0)), None).unwrap();
        let err = r.select(&Ids::Str(StringArray::from(vec!["a"]))).unwrap_err().to_string();
        assert!(err.contains("strings"), "{err}");
        assert_eq!(quantiles(&[1], 3), Vec::<i64>::new());
        assert_eq!(quantiles(&[1, 2], 3), vec![2]);
        assert_eq!(quantiles::<i64>(&[], 3), Vec::<i64>::new());
    }
}
