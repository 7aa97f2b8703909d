//! One `.npy` array `[examples, classes]` per epoch, every file with the same examples in the
//! same row order: memory-mapped and folded like one dense `[epochs, examples, classes]` array.

use crate::error::{Error, Result};
use crate::fold::dense::{EpochView, accumulate, validate_labels};
use crate::kernel::math::Real;
use crate::metrics::{Kind, NanPolicy, Task};
use crate::read::EpochFilter;
use crate::read::npy::{MappedNpy, NpyView, dims};
use crate::state::State;
use std::path::PathBuf;

/// Folds the per-epoch files `(path, epoch)` that `epochs` keeps (any order; epochs must be
/// distinct) into a state.
pub fn read_npy_epochs(
    files: &[(PathBuf, u32)],
    labels: &[i64],
    kind: Kind,
    nan_policy: NanPolicy,
    epochs: &EpochFilter,
) -> Result<State> {
    if files.is_empty() {
        return Err(Error::Empty("no .npy epoch files".into()));
    }
    let mut files: Vec<_> = files.iter().filter(|f| epochs.keeps(f.1)).cloned().collect();
    if files.is_empty() {
        return Err(Error::Empty("no epoch files in the selected epochs".into()));
    }
    files.sort_by_key(|f| f.1);
    if let Some(w) = files.windows(2).find(|w| w[0].1 == w[1].1) {
        return Err(Error::invalid(format!(
            "{} and {} are both epoch {}; give one .npy file per epoch",
            w[0].0.display(),
            w[1].0.display(),
            w[0].1
        )));
    }
    epochs.check_present(files.iter().map(|f| f.1))?;
    let maps = files.iter().map(|(p, _)| MappedNpy::open_epoch(p)).collect::<Result<Vec<_>>>()?;
    let result = fold_maps(&maps, &files, labels, kind, nan_policy);
    // A file truncated by another process meanwhile was read as zeros past the cut.
    maps.iter().try_for_each(MappedNpy::check)?;
    result
}

fn fold_maps(
    maps: &[MappedNpy],
    files: &[(PathBuf, u32)],
    labels: &[i64],
    kind: Kind,
    nan_policy: NanPolicy,
) -> Result<State> {
    let views = maps.iter().map(MappedNpy::view).collect::<Result<Vec<_>>>()?;
    let (_, n, c) = dims(&views[0]);
    for (v, (path, _)) in views.iter().zip(files) {
        let (_, n2, c2) = dims(v);
        if (n2, c2) != (n, c) {
            return Err(Error::Format {
                path: path.clone(),
                reason: format!("shape [{n2}, {c2}] differs from {}'s [{n}, {c}]", files[0].0.display()),
            });
        }
    }
    if n == 0 {
        return Err(Error::Empty(format!("{}: no examples", files[0].0.display())));
    }
    let task = Task::MultiClass { n_classes: c as u32 };
    if labels.len() != n {
        return Err(Error::invalid(format!("{} labels for {n} examples (rows of each epoch file)", labels.len())));
    }
    let labels = validate_labels(labels, task)?;
    let mut state = State::new(n, task, kind)?;
    match &views[0] {
        NpyView::F32(_) => fold(&mut state, &views, files, &labels, nan_policy, |v| match v {
            NpyView::F32(a) => a.as_slice(),
            NpyView::F64(_) => None,
        })?,
        NpyView::F64(_) => fold(&mut state, &views, files, &labels, nan_policy, |v| match v {
            NpyView::F64(a) => a.as_slice(),
            NpyView::F32(_) => None,
        })?,
    }
    Ok(state)
}

fn fold<'a, T: Real>(
    state: &mut State,
    views: &'a [NpyView<'a>],
    files: &[(PathBuf, u32)],
    labels: &[u32],
    nan_policy: NanPolicy,
    slice: impl Fn(&'a NpyView<'a>) -> Option<&'a [T]>,
) -> Result<()> {
    let epochs = views
        .iter()
        .zip(files)
        .map(|(v, (path, epoch))| {
            let values = slice(v).ok_or_else(|| Error::Format {
                path: path.clone(),
                reason: "its dtype differs from the other epoch files'".into(),
            })?;
            Ok(EpochView { epoch: *epoch, values })
        })
        .collect::<Result<Vec<_>>>()?;
    accumulate(state, &epochs, labels, nan_policy)
}
