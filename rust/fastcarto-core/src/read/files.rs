//! Finding the data files of a source: one file, a directory (recursively; Hive-style
//! `epoch=3/` folders too) or a glob pattern, each with its format and the epoch its name gives.

use super::path_error;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Arrow IPC file format (Feather v2): memory-mapped, zero-copy when uncompressed.
    IpcFile,
    /// Arrow IPC stream format (what `fastcarto.Recorder` writes, `.arrows`).
    IpcStream,
    Parquet,
    /// allenai/cartography's `dynamics_epoch_{e}.jsonl`.
    CartographyJsonl,
    /// One `[examples, classes]` array per epoch.
    Npy,
}

impl FileFormat {
    /// The format's name where callers see one (`fastcarto._core.discover`).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::IpcFile => "ipc-file",
            FileFormat::IpcStream => "ipc-stream",
            FileFormat::Parquet => "parquet",
            FileFormat::CartographyJsonl => "cartography-jsonl",
            FileFormat::Npy => "npy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DataFile {
    pub path: PathBuf,
    pub format: FileFormat,
    /// The epoch the file's name (or folder) gives, like `dynamics_epoch_3.jsonl` or `epoch=3/`.
    pub name_epoch: Option<u32>,
    pub size: u64,
}

impl DataFile {
    pub(crate) fn batch_location(&self, b: &super::Located) -> String {
        match b.lines.as_deref() {
            Some([one]) => format!("{}, line {}", self.path.display(), one + 1),
            Some([first, .., last]) => format!("{}, lines {}-{}", self.path.display(), first + 1, last + 1),
            _ => format!("{}, batch {}", self.path.display(), b.index),
        }
    }
}

const IPC_MAGIC: &[u8] = b"ARROW1";

/// Suffixes (lower case, without the dot) of Arrow IPC data: files and streams, told apart by
/// their first bytes.
pub const IPC_SUFFIXES: &[&str] = &["arrow", "arrows", "feather", "ipc"];
/// Suffixes of Parquet files.
pub const PARQUET_SUFFIXES: &[&str] = &["parquet", "pq"];
/// Suffixes of long tables (one row per epoch and example): Arrow IPC and Parquet.
pub const TABLE_SUFFIXES: &[&str] = &["arrow", "arrows", "feather", "ipc", "parquet", "pq"];
/// Every suffix [`discover`] reads: long tables, allenai/cartography's `.jsonl` (and its
/// `dynamics_epoch_{e}.json`) and `.npy` arrays.
pub const DATA_SUFFIXES: &[&str] = &["arrow", "arrows", "feather", "ipc", "parquet", "pq", "jsonl", "npy"];

/// The suffixes as a message lists them: `.arrow, .arrows, ...`.
fn listed(suffixes: &[&str]) -> String {
    suffixes.iter().map(|s| format!(".{s}")).collect::<Vec<_>>().join(", ")
}

/// The epoch named in a path: the number after the last `epoch` (`epoch_3`, `epoch-000003`,
/// `epoch=3`, `dynamics_epoch_3`), case-insensitive.
pub fn epoch_from_name(path: &Path) -> Option<u32> {
    let text = path.to_string_lossy().to_ascii_lowercase();
    let mut found = None;
    let mut rest = text.as_str();
    while let Some(at) = rest.find("epoch") {
        let after = rest[at + 5..].trim_start_matches(['_', '-', '=', ' ', 's']);
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(e) = digits.parse::<u32>() {
            found = Some(e);
        }
        rest = &rest[at + 5..];
    }
    found
}

/// The last integer in a file stem (`logits_3.npy` → 3), for per-epoch arrays.
fn last_number(path: &Path) -> Option<u32> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let digits: String =
        stem.chars().rev().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

fn format_of(path: &Path) -> Result<Option<FileFormat>> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let ext = ext.as_str();
    Ok(match ext {
        _ if IPC_SUFFIXES.contains(&ext) => Some(sniff_ipc(path)?),
        _ if PARQUET_SUFFIXES.contains(&ext) => Some(FileFormat::Parquet),
        "jsonl" => Some(FileFormat::CartographyJsonl),
        // allenai/cartography's reader looks for `dynamics_epoch_{e}.json` (its writer uses .jsonl).
        "json" if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dynamics_epoch_")) => {
            Some(FileFormat::CartographyJsonl)
        }
        "npy" => Some(FileFormat::Npy),
        _ => None,
    })
}

/// IPC files start with `ARROW1`; anything else with an Arrow extension is read as a stream.
fn sniff_ipc(path: &Path) -> Result<FileFormat> {
    use std::io::Read;
    let mut head = [0u8; 6];
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
    let n = f.read(&mut head).map_err(|e| Error::Io { path: path.into(), source: e })?;
    Ok(if n == 6 && head == IPC_MAGIC { FileFormat::IpcFile } else { FileFormat::IpcStream })
}

fn data_file(path: PathBuf, root: &Path, format: FileFormat) -> Result<DataFile> {
    let meta = std::fs::metadata(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    let rel = path.strip_prefix(root).unwrap_or(&path);
    let name_epoch = match format {
        FileFormat::Npy => epoch_from_name(rel).or_else(|| last_number(&path)),
        _ => epoch_from_name(rel),
    };
    Ok(DataFile { path, format, name_epoch, size: meta.len() })
}

impl DataFile {
    /// One file whose epoch in name is already known (`name_epoch`: found by [`discover`] on
    /// the folder the file was listed from), as a process reading a list of files sees it.
    pub fn at(path: PathBuf, name_epoch: Option<u32>) -> Result<DataFile> {
        let format = format_of(&path)?
            .ok_or_else(|| path_error(&path, format!("not a data file ({})", listed(DATA_SUFFIXES))))?;
        let meta = std::fs::metadata(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        Ok(DataFile { path, format, name_epoch, size: meta.len() })
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io { path: dir.into(), source: e })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io { path: dir.into(), source: e })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if hidden(&name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The data files a source names, sorted by (epoch in the name, path). In a directory, names
/// starting with `.` or `_` (temporary files, `_SUCCESS`) and other extensions are skipped.
pub fn discover(source: &str) -> Result<Vec<DataFile>> {
    let path = Path::new(source);
    let mut files = Vec::new();
    if source.contains(['*', '?', '[']) && !path.exists() {
        let paths = glob::glob(source).map_err(|e| Error::invalid(format!("bad glob pattern {source:?}: {e}")))?;
        let root = Path::new(".");
        for p in paths {
            let p = p.map_err(|e| Error::Io { path: e.path().to_path_buf(), source: e.into() })?;
            if let Some(format) = format_of(&p)? {
                files.push(data_file(p, root, format)?);
            }
        }
        if files.is_empty() {
            return Err(Error::Empty(format!("no data files match {source:?}")));
        }
    } else if path.is_dir() {
        let mut paths = Vec::new();
        walk(path, &mut paths)?;
        for p in paths {
            if let Some(format) = format_of(&p)? {
                files.push(data_file(p, path, format)?);
            }
        }
        if files.is_empty() {
            return Err(Error::Empty(format!("{source}: no data files ({}) in this directory", listed(DATA_SUFFIXES))));
        }
    } else {
        let meta = std::fs::metadata(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
        let format = format_of(path)?.ok_or_else(|| {
            path_error(
                path,
                format!(
                    "unknown file type; expected Arrow IPC ({}), Parquet ({}), .jsonl or .npy",
                    listed(IPC_SUFFIXES),
                    listed(PARQUET_SUFFIXES)
                ),
            )
        })?;
        let parent = path.parent().unwrap_or(Path::new(""));
        let mut f = data_file(path.into(), parent, format)?;
        f.size = meta.len();
        files.push(f);
    }
    let first = files[0].format;
    let kind = |f: FileFormat| matches!(f, FileFormat::Npy | FileFormat::CartographyJsonl);
    if files.iter().any(|f| kind(f.format) != kind(first) || (kind(first) && f.format != first)) {
        return Err(Error::invalid(format!(
            "{source}: mixes file types; a source is long tables (Arrow/Parquet), cartography .jsonl, or .npy arrays"
        )));
    }
    files.sort_by(|a, b| (a.name_epoch, &a.path).cmp(&(b.name_epoch, &b.path)));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_from_names() {
        let e = |s: &str| epoch_from_name(Path::new(s));
        assert_eq!(e("dynamics_epoch_3.jsonl"), Some(3));
        assert_eq!(e("run/epoch-000012-part-00003.arrows"), Some(12));
        assert_eq!(e("epoch=7/part-0.parquet"), Some(7));
        assert_eq!(e("Epochs_2/x.parquet"), Some(2));
        assert_eq!(e("part-3.parquet"), None);
        assert_eq!(last_number(Path::new("logits_15.npy")), Some(15));
    }

    #[test]
    fn the_suffix_lists_agree() {
        let joined: Vec<&str> = IPC_SUFFIXES.iter().chain(PARQUET_SUFFIXES).copied().collect();
        assert_eq!(joined, TABLE_SUFFIXES);
        assert_eq!(&DATA_SUFFIXES[..TABLE_SUFFIXES.len()], TABLE_SUFFIXES);
        let dir = std::env::temp_dir().join(format!("fastcarto-suffixes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for suffix in DATA_SUFFIXES {
            let path = dir.join(format!("x.{}", suffix.to_ascii_uppercase()));
            std::fs::write(&path, b"").unwrap();
            assert!(format_of(&path).unwrap().is_some(), "{suffix}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
