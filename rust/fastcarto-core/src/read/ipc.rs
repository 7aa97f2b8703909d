//! Arrow IPC: the file format memory-mapped and decoded without copies (compressed bodies are
//! decompressed, several batches at a time in parallel), and the stream format read through a
//! large buffer.

use super::{Located, Visit, path_error};
use crate::error::{Error, Result};
use arrow_buffer::Buffer;
use arrow_ipc::reader::{FileDecoder, StreamReader, read_footer_length};
use arrow_ipc::{Block, convert::fb_to_schema, root_as_footer};
use rayon::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// arrow-ipc panics on some malformed input (apache/arrow-rs#7124); a corrupt file must be an
/// error naming the file instead.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(path_error(path, format!("corrupt Arrow IPC data ({what})"))))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io { path: path.into(), source: e }
}

/// The whole file as an Arrow buffer backed by a read-only memory map.
fn map(path: &Path) -> Result<Buffer> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len() as usize;
    if len == 0 {
        return Err(path_error(path, "empty file"));
    }
    // SAFETY: the map is read-only; a file truncated by another process while mapped can
    // fault, as with any memory-mapped reader (documented).
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
    let ptr = NonNull::new(mmap.as_ptr() as *mut u8).expect("mmap never returns null");
    // SAFETY: `ptr` points at `len` readable bytes owned by `mmap`, which the buffer keeps alive.
    Ok(unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(mmap)) })
}

struct IpcFile {
    buffer: Buffer,
    decoder: FileDecoder,
    blocks: Vec<Block>,
}

fn open_file(path: &Path) -> Result<IpcFile> {
    let buffer = map(path)?;
    guarded(path, "footer", || {
        let len = buffer.len();
        if len < 10 + 8 || &buffer[len - 6..] != b"ARROW1" {
            return Err(path_error(path, "truncated Arrow IPC file: the footer is missing"));
        }
        let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("10 bytes");
        let footer_len = read_footer_length(trailer).map_err(|e| path_error(path, e.to_string()))?;
        if footer_len + 10 > len {
            return Err(path_error(path, "truncated Arrow IPC file: the footer is cut"));
        }
        let footer = root_as_footer(&buffer[len - 10 - footer_len..len - 10])
            .map_err(|e| path_error(path, format!("unreadable footer: {e}")))?;
        let schema = fb_to_schema(footer.schema().ok_or_else(|| path_error(path, "the footer has no schema"))?);
        let mut decoder = FileDecoder::new(Arc::new(schema), footer.version());
        let slice = |block: &Block| -> Result<Buffer> {
            let start = block.offset() as usize;
            let n = block.bodyLength() as usize + block.metaDataLength() as usize;
            if block.offset() < 0 || start.checked_add(n).is_none_or(|end| end > len) {
                return Err(path_error(path, "truncated Arrow IPC file: a block lies past the end"));
            }
            Ok(buffer.slice_with_length(start, n))
        };
        for block in footer.dictionaries().iter().flatten() {
            decoder.read_dictionary(block, &slice(block)?).map_err(|e| path_error(path, e.to_string()))?;
        }
        let blocks: Vec<Block> = footer.recordBatches().map(|b| b.iter().copied().collect()).unwrap_or_default();
        for block in &blocks {
            slice(block)?;
        }
        Ok(IpcFile { buffer: buffer.clone(), decoder, blocks })
    })
}

impl IpcFile {
    fn batch(&self, path: &Path, i: usize) -> Result<arrow_array::RecordBatch> {
        let block = &self.blocks[i];
        let n = block.bodyLength() as usize + block.metaDataLength() as usize;
        let data = self.buffer.slice_with_length(block.offset() as usize, n);
        guarded(path, &format!("batch {i}"), || {
            self.decoder
                .read_record_batch(block, &data)
                .map_err(|e| path_error(path, format!("batch {i}: {e}")))?
                .ok_or_else(|| path_error(path, format!("batch {i} is missing")))
        })
    }
}

/// Batches decoded ahead, in parallel (decompression is the expensive part of reading).
const WINDOW: usize = 8;

pub(super) fn for_each_file_batch(
    path: &Path,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    let file = open_file(path)?;
    let n = file.blocks.len();
    let wanted: Vec<usize> = (0..n).filter(|&i| wanted(i)).collect();
    for window in wanted.chunks(WINDOW) {
        let batches: Vec<Result<_>> = window.par_iter().map(|&i| file.batch(path, i)).collect();
        for (&i, batch) in window.iter().zip(batches) {
            visit(Located { batch: batch?, index: i }, (i + 1) as f64 / n as f64)?;
        }
    }
    Ok(())
}

pub(super) fn for_each_stream_batch(
    path: &Path,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len().max(1) as f64;
    let reader = std::io::BufReader::with_capacity(8 << 20, file);
    let mut reader = guarded(path, "stream header", || {
        StreamReader::try_new(reader, None).map_err(|e| path_error(path, format!("not an Arrow IPC stream: {e}")))
    })?;
    let mut i = 0;
    loop {
        let next = guarded(path, &format!("batch {i}"), || {
            reader.next().transpose().map_err(|e| path_error(path, format!("batch {i}: {e} (truncated or corrupt)")))
        })?;
        let Some(batch) = next else { break };
        if wanted(i) {
            use std::io::Seek;
            let done = reader.get_mut().stream_position().map_or(0.0, |p| p as f64 / size);
            visit(Located { batch, index: i }, done.min(1.0))?;
        }
        i += 1;
    }
    Ok(())
}
