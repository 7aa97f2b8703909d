//! `.npy` files, memory-mapped: the operating system pages epochs in as the kernel reads them,
//! so a file larger than RAM works and nothing is copied. A file truncated by another process
//! while it is read is an error, not a crash ([`crate::sys::mapped`]): read through
//! [`MappedNpy::read`], which checks after the pass.

use crate::error::{Error, Result};
use crate::read::npy_header::{ViewNpyError, ViewNpyExt};
use crate::sys::mapped::GuardedMap;
use ndarray::{ArrayView2, ArrayView3, ArrayViewD, Axis, Ix3};
use std::fs::File;
use std::path::{Path, PathBuf};

/// An open, memory-mapped `.npy` file of shape `[epochs, examples, classes]`.
pub struct MappedNpy {
    path: PathBuf,
    map: GuardedMap,
    dtype: NpyDtype,
    ndim: usize,
}

/// Element types fastcarto reads from `.npy` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
}

/// A typed, zero-copy view of a mapped file.
pub enum NpyView<'a> {
    F32(ArrayView3<'a, f32>),
    F64(ArrayView3<'a, f64>),
}

impl MappedNpy {
    /// Maps `path` and checks its header: 3-d, little-endian float32/float64, C order, complete.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_ndim(path, 3)
    }

    /// Maps one epoch's `[examples, classes]` array; [`view`](Self::view) gives it as `[1, N, C]`.
    pub fn open_epoch(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_ndim(path, 2)
    }

    fn open_ndim(path: impl AsRef<Path>, ndim: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory, not a .npy file");
            return Err(Error::Io { path, source });
        }
        let file = File::open(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let map = GuardedMap::map(&file, &path)?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        // A file cut while its header is parsed reads zeros there: that is the error to report.
        let dtype = map.checked(dtype_of(&map, ndim).map_err(|reason| Error::Format { path: path.clone(), reason }))?;
        let this = MappedNpy { path, map, dtype, ndim };
        let standard = this.read(|view| {
            Ok(match view {
                NpyView::F32(v) => v.is_standard_layout(),
                NpyView::F64(v) => v.is_standard_layout(),
            })
        })?;
        if !standard {
            return Err(this.format_error("the array is stored in Fortran order; save it with C order".into()));
        }
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// Runs `pass` over the mapped array; its result, unless the file was truncated by another
    /// process meanwhile: then an error naming the file (whatever `pass` returned, since it
    /// read zeros past the cut).
    pub fn read<R>(&self, pass: impl FnOnce(NpyView<'_>) -> Result<R>) -> Result<R> {
        let result = self.view().and_then(pass);
        self.map.checked(result)
    }

    /// Errors if the file was truncated since it was mapped (see [`read`](Self::read)).
    pub fn check(&self) -> Result<()> {
        self.map.check()
    }

    /// The mapped array. A pass over it must be followed by [`check`](Self::check) (or be made
    /// through [`read`](Self::read)).
    pub fn view(&self) -> Result<NpyView<'_>> {
        let err = |e| self.format_error(describe(e));
        Ok(match (self.dtype, self.ndim) {
            (NpyDtype::F32, 3) => NpyView::F32(ArrayView3::<f32>::view_npy(&self.map).map_err(err)?),
            (NpyDtype::F64, 3) => NpyView::F64(ArrayView3::<f64>::view_npy(&self.map).map_err(err)?),
            (NpyDtype::F32, _) => {
                NpyView::F32(ArrayView2::<f32>::view_npy(&self.map).map_err(err)?.insert_axis(Axis(0)))
            }
            (NpyDtype::F64, _) => {
                NpyView::F64(ArrayView2::<f64>::view_npy(&self.map).map_err(err)?.insert_axis(Axis(0)))
            }
        })
    }

    fn format_error(&self, reason: String) -> Error {
        Error::Format { path: self.path.clone(), reason }
    }
}

/// The element type of a mapped `.npy` file with `ndim` dimensions, or why it cannot be read.
fn dtype_of(map: &[u8], ndim: usize) -> std::result::Result<NpyDtype, String> {
    let wrong_ndim = |got: usize| describe(ViewNpyError::WrongNdim(Some(ndim), got));
    match ArrayViewD::<f32>::view_npy(map) {
        Ok(v) if v.ndim() != ndim => Err(wrong_ndim(v.ndim())),
        Ok(_) => Ok(NpyDtype::F32),
        Err(ViewNpyError::WrongDescriptor(_)) => match ArrayViewD::<f64>::view_npy(map) {
            Ok(v) if v.ndim() != ndim => Err(wrong_ndim(v.ndim())),
            Ok(_) => Ok(NpyDtype::F64),
            Err(ViewNpyError::WrongDescriptor(d)) => {
                Err(format!("dtype {d} is not supported; save float32 or float64 outputs"))
            }
            Err(e) => Err(describe(e)),
        },
        Err(e) => Err(describe(e)),
    }
}

fn describe(e: ViewNpyError) -> String {
    match e {
        ViewNpyError::WrongNdim(Some(2), got) => {
            format!("expected a 2-d array [examples, classes] (one epoch), found {got} dimensions")
        }
        ViewNpyError::WrongNdim(_, got) => {
            format!("expected a 3-d array [epochs, examples, classes], found {got} dimensions")
        }
        ViewNpyError::MissingBytes(n) => format!("the file is truncated: {n} bytes of data are missing"),
        ViewNpyError::ExtraBytes(n) => format!("the file has {n} bytes after the array data"),
        ViewNpyError::NonNativeEndian => "the array is big-endian; save it in native byte order".into(),
        ViewNpyError::MisalignedData => "the array data is not aligned for its dtype".into(),
        other => format!("not a readable .npy file: {other}"),
    }
}

/// Shape check used by callers that take `[E, N, C]` views.
pub fn dims(v: &NpyView<'_>) -> (usize, usize, usize) {
    let d: Ix3 = match v {
        NpyView::F32(a) => a.raw_dim(),
        NpyView::F64(a) => a.raw_dim(),
    };
    (d[0], d[1], d[2])
}
