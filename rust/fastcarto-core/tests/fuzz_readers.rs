//! Mutation fuzzing of the file readers on stable Rust: valid Arrow IPC files (plain, lz4, zstd),
//! IPC streams, Parquet files and cartography `.jsonl` files are mutated (bit flips, random
//! bytes, interesting integers over lengths and offsets, truncations, splices of two files,
//! duplicated and deleted ranges, pure noise) and read with `read::read_path`, which must return
//! `Ok` or `Err`: never panic, abort (a failed allocation) or hang.
//!
//! Each format gets a time budget (`FASTCARTO_FUZZ_SECS`, default 0.6 s, so `cargo test` stays
//! quick) and a seed (`FASTCARTO_FUZZ_SEED`, default fixed: every run tests the same cases).
//! A case that takes longer than 20 s fails the test and is left on disk for reproduction. The
//! coverage-guided targets (cargo-fuzz, atheris) live in `fuzz/`; see `fuzz/README.md`.

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema};
use fastcarto_core::Kind;
use fastcarto_core::read::long::{Columns, batch};
use fastcarto_core::read::{ReadOptions, read_path};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// xorshift64*: a small deterministic generator (no extra dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A small long table: `epochs` x `n` rows of 3 logits, ids shuffled, int or string ids.
fn table(rng: &mut Rng, epochs: usize, n: usize, string_ids: bool) -> Vec<RecordBatch> {
    (0..epochs)
        .map(|e| {
            let ids: Vec<i64> = (0..n as i64).map(|i| (i * 7 + e as i64 * 3) % n as i64).collect();
            let id_array: ArrayRef = if string_ids {
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("ex-{i}"))))
            } else {
                Arc::new(Int64Array::from(ids.clone()))
            };
            let labels = ids.iter().map(|i| i % 3).collect();
            let values: Vec<f32> = (0..n * 3).map(|_| (rng.below(2000) as f32 - 1000.0) / 300.0).collect();
            let outputs: ArrayRef = Arc::new(Float32Array::from(values));
            batch(Some(vec![e as i64; n]), id_array, labels, outputs, 3, &Columns::default(), Kind::Logits)
                .expect("a valid batch")
        })
        .collect()
}

/// The valid seed files of each format, as bytes.
fn seeds(rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (string_ids, narrow) in [(false, false), (true, false), (false, true)] {
        let mut batches = table(rng, 3, 17, string_ids);
        if narrow {
            // Integer columns of other widths, read as they are: int16 epochs, int32 ids,
            // uint8 labels.
            let widths = [DataType::Int16, DataType::Int32, DataType::UInt8];
            for b in &mut batches {
                let mut columns = b.columns().to_vec();
                for (column, width) in columns.iter_mut().zip(&widths) {
                    *column = arrow_cast::cast(column, width).expect("small integers");
                }
                let fields: Vec<Field> = b
                    .schema()
                    .fields()
                    .iter()
                    .zip(&columns)
                    .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), false))
                    .collect();
                *b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("a valid batch");
            }
        }
        let schema = batches[0].schema();
        for compression in [None, Some(CompressionType::LZ4_FRAME), Some(CompressionType::ZSTD)] {
            let options = IpcWriteOptions::default().try_with_compression(compression).expect("codec");
            let mut file = FileWriter::try_new_with_options(Vec::new(), &schema, options.clone()).expect("writer");
            let mut stream = StreamWriter::try_new_with_options(Vec::new(), &schema, options).expect("writer");
            for b in &batches {
                file.write(b).expect("write");
                stream.write(b).expect("write");
            }
            out.push(("arrow", file.into_inner().expect("finish")));
            out.push(("arrows", stream.into_inner().expect("finish")));
        }
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(20)).build();
        let mut parquet = ArrowWriter::try_new(Vec::new(), schema, Some(props)).expect("writer");
        for b in &batches {
            parquet.write(b).expect("write");
        }
        out.push(("parquet", parquet.into_inner().expect("finish")));
    }
    let jsonl: String = (0..20)
        .map(|i| {
            format!("{{\"guid\": {i}, \"logits_epoch_0\": [{}, -1.5e-3, 2], \"gold\": {}}}\n", i as f64 / 7.0, i % 3)
        })
        .collect();
    out.push(("jsonl", jsonl.into_bytes()));
    out
}

const INTERESTING: [i64; 12] =
    [0, 1, -1, 7, 8, 255, 0x7fff_ffff, -0x8000_0000, 0xffff_ffff, 1 << 40, i64::MAX, i64::MIN];

/// One random mutation of `data` (`other` is another seed, for splices).
fn mutate(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = d.len().max(1);
        match rng.below(9) {
            0 => {
                let at = rng.below(len);
                if let Some(b) = d.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = rng.below(len);
                if let Some(b) = d.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
            2 | 3 => {
                // An interesting integer over a (likely) length or offset field.
                let width = [1, 2, 4, 8][rng.below(4)];
                let at = rng.below(len) & !(width - 1);
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                for (k, &byte) in v.iter().take(width).enumerate() {
                    if let Some(b) = d.get_mut(at + k) {
                        *b = byte;
                    }
                }
            }
            4 => d.truncate(rng.below(len)),
            5 => {
                // Splice: this file's head, another file's tail.
                let cut = rng.below(len);
                let from = rng.below(other.len().max(1)).min(other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            6 => {
                // Duplicate a range.
                let a = rng.below(len).min(d.len());
                let b = (a + rng.below(64)).min(d.len());
                let chunk = d[a..b].to_vec();
                let at = rng.below(len).min(d.len());
                d.splice(at..at, chunk);
            }
            7 => {
                let a = rng.below(len).min(d.len());
                let b = (a + rng.below(64)).min(d.len());
                d.drain(a..b);
            }
            _ => {
                if rng.below(8) == 0 {
                    d = (0..rng.below(256)).map(|_| rng.next() as u8).collect();
                }
            }
        }
    }
    d
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reads `path` on a worker thread; panics if that takes longer than `limit`.
fn read_within(path: &Path, limit: Duration) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_str().expect("utf-8 path").to_owned();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(|| read_path(&p, &ReadOptions::new(Kind::Logits)).map(|_| ()));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => panic!("read_path panicked on {} (kept for reproduction)", path.display()),
        Err(_) => panic!("read_path hung (> {limit:?}) on {} (kept for reproduction)", path.display()),
    }
}

#[test]
fn mutated_files_are_errors_never_crashes() {
    let secs: f64 = env("FASTCARTO_FUZZ_SECS", 0.6);
    let seed: u64 = env("FASTCARTO_FUZZ_SEED", 0x5eed_f022);
    let mut rng = Rng(seed | 1);
    let seeds = seeds(&mut rng);
    let dir: PathBuf = std::env::temp_dir().join(format!("fastcarto-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // The seeds themselves read.
    for (ext, data) in &seeds {
        let path = dir.join(format!("dynamics_epoch_0.{ext}"));
        std::fs::write(&path, data).expect("write");
        read_within(&path, Duration::from_secs(20)).unwrap_or_else(|e| panic!("valid {ext} seed: {e}"));
    }

    let (mut cases, mut ok, mut caught) = (0u64, 0u64, std::collections::BTreeMap::<String, u64>::new());
    for ext in ["arrow", "arrows", "parquet", "jsonl"] {
        let mine: Vec<&Vec<u8>> = seeds.iter().filter(|(e, _)| *e == ext).map(|(_, d)| d).collect();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            let data = mine[rng.below(mine.len())];
            let other = &seeds[rng.below(seeds.len())].1;
            let path = dir.join(format!("dynamics_epoch_0.{ext}"));
            std::fs::write(&path, mutate(&mut rng, data, other)).expect("write");
            cases += 1;
            match read_within(&path, Duration::from_secs(20)) {
                Ok(()) => ok += 1,
                // Panics inside arrow-ipc / parquet, caught and reported as errors: counted, so
                // a run shows which ones remain.
                Err(e) if e.contains("corrupt data (") => {
                    let why = e.split("corrupt data (").nth(1).unwrap_or("").to_owned();
                    let key: String = why.chars().take(90).collect();
                    *caught.entry(format!("{ext}: {key}")).or_default() += 1;
                }
                Err(_) => {}
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("{cases} mutated files, {ok} read without error; panics caught as errors:");
    for (k, v) in &caught {
        eprintln!("  {v:6}  {k}");
    }
    assert!(cases > 0);
}
