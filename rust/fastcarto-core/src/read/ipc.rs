//! Arrow IPC: the file format memory-mapped and decoded without copies (compressed bodies are
//! decompressed, several batches at a time in parallel), and the stream format memory-mapped and
//! framed here, message by message, so that batches a pass does not want are skipped undecoded.
//! Serialized states (pickle's bytes) are IPC streams too, and go through the same framing.
//!
//! Files are untrusted. Before arrow-ipc decodes a message, [`check_message`] checks what it
//! would otherwise trust: that every buffer lies inside the message body and that every
//! compressed buffer's claimed uncompressed length can be allocated (arrow-ipc allocates it up
//! front, and a failed allocation aborts the process). Panics left in arrow-ipc on malformed
//! input become errors naming the file ([`guarded`]).

use super::{Located, Visit, guarded, one_line, path_error};
use crate::error::{Error, Result};
use crate::sys::mapped::GuardedMap;
use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::{FileDecoder, read_dictionary, read_footer_length, read_record_batch};
use arrow_ipc::{Block, MessageHeader, convert::fb_to_schema, root_as_footer, root_as_message};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io { path: path.into(), source: e }
}

/// A read-only memory map of a whole file, and an Arrow buffer over it. The map is guarded
/// against the file being truncated while it is read ([`GuardedMap`]): each pass over it ends
/// with [`Mapped::checked`].
struct Mapped {
    map: Arc<GuardedMap>,
    buffer: Buffer,
}

fn map(path: &Path) -> Result<Mapped> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len() as usize;
    if len == 0 {
        return Err(path_error(path, "empty file"));
    }
    let mmap = Arc::new(GuardedMap::map(&file, path)?);
    // Read front to back: a hint for read-ahead, never an error worth reporting.
    #[cfg(unix)]
    let _ = mmap.advise(memmap2::Advice::Sequential);
    let ptr = NonNull::new(mmap.as_ptr() as *mut u8).expect("mmap never returns null");
    // SAFETY: `ptr` points at `len` readable bytes owned by `mmap`, which the buffer keeps alive.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, mmap.clone()) };
    Ok(Mapped { map: mmap, buffer })
}

impl Mapped {
    /// `result` of a pass over the map, or the error for a file cut meanwhile.
    fn checked<T>(&self, result: Result<T>) -> Result<T> {
        self.map.checked(result)
    }

    /// Unmaps the pages of bytes `start..end` from this process (they stay in the page cache).
    /// Pages of a file mapping count in the reader's resident set as they are touched; without
    /// this a pass over a 15 GB file would look like 15 GB of memory use, and on a machine
    /// with less RAM than the file the kernel would have to find those pages itself.
    /// Pages only partly in the range go too (a later read faults them back in).
    fn release(&self, start: usize, end: usize) {
        #[cfg(unix)]
        if end > start {
            let (base, page) = (self.map.as_ptr() as usize, crate::sys::alloc::page_size());
            // SAFETY: a page-aligned range inside the map (which covers whole pages), a
            // read-only shared file mapping: after MADV_DONTNEED a later access (from a batch
            // still alive, if any) faults the same bytes back in from the file, so nothing that
            // borrows the map observes a change.
            unsafe { crate::sys::alloc::dont_need((base + start) / page * page, (base + end).next_multiple_of(page)) };
        }
        #[cfg(not(unix))]
        let _ = (start, end);
    }

    /// Asks the kernel to read bytes `start..end` from the disk now, in the background: on a
    /// file not in the page cache, the pages of the next batches then arrive while the current
    /// ones are folded, instead of one read-ahead window per fault. A hint; failures are ignored.
    fn will_need(&self, start: usize, end: usize) {
        #[cfg(unix)]
        if end.min(self.map.len()) > start {
            let page = crate::sys::alloc::page_size();
            let from = start / page * page;
            let _ = self.map.advise_range(memmap2::Advice::WillNeed, from, end.min(self.map.len()) - from);
        }
        #[cfg(not(unix))]
        let _ = (start, end);
    }
}

/// Largest uncompressed buffer length accepted without asking the allocator first.
const TRUSTED_LEN: usize = 1 << 30;

/// The flatbuffer `Message` of an encapsulated message's metadata (continuation marker and
/// length prefix, or the legacy 4-byte length).
fn parse_message<'a>(path: &Path, what: &str, meta: &'a [u8]) -> Result<arrow_ipc::Message<'a>> {
    let fb = match meta {
        [0xff, 0xff, 0xff, 0xff, _, _, _, _, rest @ ..] => rest,
        [_, _, _, _, rest @ ..] => rest,
        _ => return Err(path_error(path, format!("{what}: the message header is cut"))),
    };
    root_as_message(fb).map_err(|e| {
        path_error(path, format!("{what}: unreadable message header ({}); the file is corrupt", one_line(e)))
    })
}

/// Checks what arrow-ipc trusts in a record batch or dictionary message before it decodes it
/// (see the module docs): every buffer inside the body, and every compressed buffer's
/// uncompressed length allocatable.
fn check_message(path: &Path, what: &str, message: &arrow_ipc::Message<'_>, body: &[u8]) -> Result<()> {
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => message.header_as_dictionary_batch().and_then(|d| d.data()),
        _ => None,
    };
    let Some(batch) = batch else { return Ok(()) };
    let compressed = batch.compression().is_some();
    let corrupt = |reason: String| Err(path_error(path, format!("{what}: {reason} (corrupt or truncated)")));
    for buffer in batch.buffers().iter().flatten() {
        let (offset, len) = (buffer.offset(), buffer.length());
        let end = offset.checked_add(len).and_then(|e| usize::try_from(e).ok());
        if offset < 0 || len < 0 || end.is_none_or(|e| e > body.len()) {
            return corrupt(format!(
                "a {len}-byte buffer at offset {offset} lies outside the {}-byte body",
                body.len()
            ));
        }
        if compressed && len >= 8 {
            let at = offset as usize;
            let claimed = i64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
            // Under libFuzzer (`cfg(fuzzing)`), which reports any allocation above its limit as a
            // crash, larger claims are refused without asking the allocator.
            let allocatable =
                |n: usize| n <= TRUSTED_LEN || (!cfg!(fuzzing) && Vec::<u8>::new().try_reserve_exact(n).is_ok());
            if claimed < -1 || usize::try_from(claimed).is_ok_and(|n| !allocatable(n)) {
                return corrupt(format!("a compressed buffer claims {claimed} bytes uncompressed"));
            }
        }
    }
    Ok(())
}

struct IpcFile {
    mapped: Mapped,
    decoder: FileDecoder,
    blocks: Vec<Block>,
}

/// The (start, metadata length, total length) of a block, when it lies inside a file of `len`
/// bytes.
fn block_range(block: &Block, len: usize) -> Option<(usize, usize, usize)> {
    let start = usize::try_from(block.offset()).ok()?;
    let meta = usize::try_from(block.metaDataLength()).ok()?;
    let n = usize::try_from(block.bodyLength()).ok()?.checked_add(meta)?;
    (start.checked_add(n)? <= len).then_some((start, meta, n))
}

fn open_file(path: &Path, mapped: Mapped) -> Result<IpcFile> {
    let buffer = mapped.buffer.clone();
    guarded(path, "footer", || {
        let len = buffer.len();
        if len < 10 + 8 || &buffer[len - 6..] != b"ARROW1" {
            return Err(path_error(path, "truncated Arrow IPC file: the footer is missing"));
        }
        let trailer: [u8; 10] = buffer[len - 10..].try_into().expect("10 bytes");
        let footer_len = read_footer_length(trailer).map_err(|e| path_error(path, one_line(e)))?;
        if footer_len + 10 > len {
            return Err(path_error(path, "truncated Arrow IPC file: the footer is cut"));
        }
        let footer = root_as_footer(&buffer[len - 10 - footer_len..len - 10])
            .map_err(|e| path_error(path, format!("unreadable footer ({}); the file is corrupt", one_line(e))))?;
        let schema = fb_to_schema(footer.schema().ok_or_else(|| path_error(path, "the footer has no schema"))?);
        let mut decoder = FileDecoder::new(Arc::new(schema), footer.version());
        let slice = |block: &Block| -> Result<(Buffer, usize)> {
            let (start, meta, n) = block_range(block, len)
                .ok_or_else(|| path_error(path, "truncated Arrow IPC file: a block lies past the end"))?;
            Ok((buffer.slice_with_length(start, n), meta))
        };
        for (d, block) in footer.dictionaries().iter().flatten().enumerate() {
            let (data, meta) = slice(block)?;
            let what = format!("dictionary {d}");
            check_message(path, &what, &parse_message(path, &what, &data[..meta])?, &data[meta..])?;
            decoder.read_dictionary(block, &data).map_err(|e| path_error(path, format!("{what}: {}", one_line(e))))?;
        }
        let blocks: Vec<Block> = footer.recordBatches().map(|b| b.iter().copied().collect()).unwrap_or_default();
        for block in &blocks {
            slice(block)?;
        }
        Ok(IpcFile { mapped, decoder, blocks })
    })
}

impl IpcFile {
    fn batch(&self, path: &Path, i: usize) -> Result<arrow_array::RecordBatch> {
        let block = &self.blocks[i];
        let buffer = &self.mapped.buffer;
        let (start, meta, n) = block_range(block, buffer.len()).expect("checked in open_file");
        let data = buffer.slice_with_length(start, n);
        let what = format!("batch {i}");
        guarded(path, &what, || {
            check_message(path, &what, &parse_message(path, &what, &data[..meta])?, &data[meta..])?;
            self.decoder
                .read_record_batch(block, &data)
                .map_err(|e| path_error(path, format!("{what}: {}", one_line(e))))?
                .ok_or_else(|| path_error(path, format!("{what} is missing")))
        })
    }
}

/// Batches decoded ahead, in parallel (decompression is the expensive part of reading): up to
/// this many, and as many as fit in `WINDOW_BYTES` of the file (at least one), so that the
/// pages and decoded columns held at once stay bounded whatever the batch size.
const WINDOW: usize = 8;
const WINDOW_BYTES: u64 = 32 << 20;

pub(super) fn for_each_file_batch(
    path: &Path,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    let mapped = map(path)?;
    let map = mapped.map.clone();
    map.checked(read_file_batches(path, mapped, wanted, visit))
}

fn read_file_batches(
    path: &Path,
    mapped: Mapped,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    let file = open_file(path, mapped)?;
    let n = file.blocks.len();
    let wanted: Vec<usize> = (0..n).filter(|&i| wanted(i)).collect();
    let len = file.mapped.buffer.len();
    let size = |i: usize| block_range(&file.blocks[i], len).map_or(0, |(_, _, n)| n as u64);
    // The bytes of the file that batches `window` span.
    let span = |window: &[usize]| {
        let ranges = window.iter().filter_map(|&i| block_range(&file.blocks[i], len).map(|(s, _, n)| (s, s + n)));
        ranges.fold((usize::MAX, 0), |(a, b), (s, e)| (a.min(s), b.max(e)))
    };
    // Windows of batches decoded together (up to `WINDOW` batches within `WINDOW_BYTES`), with
    // the bytes they span.
    let mut windows = Vec::new();
    let mut rest = &wanted[..];
    while !rest.is_empty() {
        let mut take = 1;
        let mut bytes = size(rest[0]);
        while take < rest.len().min(WINDOW) && bytes + size(rest[take]) <= WINDOW_BYTES {
            bytes += size(rest[take]);
            take += 1;
        }
        let (window, later) = rest.split_at(take);
        windows.push((window, span(window)));
        rest = later;
    }
    for (w, &(window, (start, end))) in windows.iter().enumerate() {
        if let Some(&(_, (next_start, next_end))) = windows.get(w + 1) {
            file.mapped.will_need(next_start, next_end);
        }
        let batches: Vec<Result<_>> = window.par_iter().map(|&i| file.batch(path, i)).collect();
        for (&i, batch) in window.iter().zip(batches) {
            visit(Located { batch: batch?, index: i, lines: None }, (i + 1) as f64 / n as f64)?;
        }
        file.mapped.release(start, end);
    }
    Ok(())
}

/// Bytes of a stream read between two releases of its pages ([`Mapped::release`]).
const RELEASE_EVERY: usize = 64 << 20;

/// Reads an Arrow IPC stream: a schema message, then dictionary and record batch messages, then
/// the end-of-stream marker. The format lets a stream end without the marker, but then a stream
/// cut exactly between two messages would read as a shorter, complete one, losing rows without
/// a word; every writer that closes its stream writes the marker (pyarrow's, arrow-rs's, and so
/// every `fastcarto.Recorder` segment), so a stream without it is an error.
pub(super) fn for_each_stream_batch(
    path: &Path,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    let mapped = map(path)?;
    // Each release also asks for the next bytes from the disk, in the background (as the file
    // reader does for its next window).
    mapped.will_need(0, RELEASE_EVERY);
    let result = frame_stream(&mapped.buffer, path, wanted, visit, &|start, end| {
        mapped.release(start, end);
        mapped.will_need(end, end + RELEASE_EVERY);
    });
    mapped.checked(result)
}

/// Every record batch of an Arrow IPC stream held in memory (a serialized state), framed by the
/// same checks as a stream file: arrow-ipc's own stream reader allocates each message's claimed
/// body length before reading it, so corrupted bytes could abort the process.
pub(crate) fn stream_batches_in(buffer: &Buffer, name: &Path) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut keep = |located: Located, _| {
        batches.push(located.batch);
        Ok(())
    };
    frame_stream(buffer, name, &|_| true, &mut keep, &|_, _| {})?;
    Ok(batches)
}

/// Frames the stream in `buffer` (`path` names it in errors), decoding the batches `wanted`
/// wants; `release(start, end)` is told which bytes the reader is done with.
fn frame_stream(
    buffer: &Buffer,
    path: &Path,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
    release: &dyn Fn(usize, usize),
) -> Result<()> {
    let len = buffer.len();
    let (mut pos, mut i) = (0usize, 0usize);
    let mut released = 0;
    let mut schema = None;
    let mut dictionaries = HashMap::new();
    let mut ended = false;
    while pos < len {
        let what = if schema.is_none() { "not an Arrow IPC stream".to_string() } else { format!("batch {i}") };
        let truncated = |part: &str| path_error(path, format!("{what}: the {part} is cut at byte {len} (truncated)"));
        let word = |at: usize| buffer.get(at..at + 4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
        let (prefix, size) = match word(pos).ok_or_else(|| truncated("message length"))? {
            -1 => (8, word(pos + 4).ok_or_else(|| truncated("message length"))?),
            size => (4, size),
        };
        if size == 0 {
            ended = true; // end-of-stream marker
            break;
        }
        let meta_end = usize::try_from(size)
            .ok()
            .and_then(|s| (pos + prefix).checked_add(s))
            .filter(|&e| e <= len)
            .ok_or_else(|| truncated("message header"))?;
        let message = parse_message(path, &what, &buffer[pos..meta_end])?;
        let body_end = usize::try_from(message.bodyLength())
            .ok()
            .and_then(|b| meta_end.checked_add(b))
            .filter(|&e| e <= len)
            .ok_or_else(|| truncated("message body"))?;
        let body = buffer.slice_with_length(meta_end, body_end - meta_end);
        pos = body_end;
        check_message(path, &what, &message, &body)?;
        let version = message.version();
        let fail = |e: arrow_schema::ArrowError| path_error(path, format!("{what}: {}", one_line(e)));
        match message.header_type() {
            MessageHeader::Schema if schema.is_none() => {
                let fb = message.header_as_schema().ok_or_else(|| path_error(path, format!("{what}: no schema")))?;
                schema = Some(Arc::new(guarded(path, &what, || Ok(fb_to_schema(fb)))?));
            }
            _ if schema.is_none() => {
                return Err(path_error(path, format!("{what}: the first message is not a schema")));
            }
            MessageHeader::DictionaryBatch => {
                let d = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| path_error(path, format!("{what}: no dictionary")))?;
                let schema = schema.as_deref().expect("checked above");
                guarded(path, &what, || read_dictionary(&body, d, schema, &mut dictionaries, &version).map_err(fail))?;
            }
            MessageHeader::RecordBatch => {
                if wanted(i) {
                    let b = message
                        .header_as_record_batch()
                        .ok_or_else(|| path_error(path, format!("{what}: no batch")))?;
                    let schema = schema.clone().expect("checked above");
                    let batch = guarded(path, &what, || {
                        read_record_batch(&body, b, schema, &dictionaries, None, &version).map_err(fail)
                    })?;
                    visit(Located { batch, index: i, lines: None }, pos as f64 / len as f64)?;
                }
                if pos - released >= RELEASE_EVERY {
                    release(released, pos);
                    released = pos;
                }
                i += 1;
            }
            MessageHeader::NONE => {}
            t => {
                let name = t.variant_name().unwrap_or("unknown");
                return Err(path_error(path, format!("{what}: unexpected {name} message in a stream")));
            }
        }
    }
    if schema.is_none() {
        return Err(path_error(path, "not an Arrow IPC stream: no schema message"));
    }
    if !ended {
        return Err(path_error(
            path,
            format!(
                "the Arrow IPC stream ends after {i} record batches without its end-of-stream marker, so rows may be \
                 missing: it was cut short (copied or written only in part) or its writer was never closed; \
                 write it again and close the writer"
            ),
        ));
    }
    Ok(())
}
