//! libFuzzer target: the first byte of the input picks a format (Arrow IPC file, IPC stream,
//! Parquet, cartography `.jsonl`), the rest is written to a file of that type and read with
//! `read::read_path`. Any result is fine; a panic, abort, leak or hang is a finding.
#![no_main]

use fastcarto_core::Kind;
use fastcarto_core::read::{ReadOptions, read_path};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["dynamics.arrow", "dynamics.arrows", "dynamics.parquet", "dynamics_epoch_0.jsonl"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let dir = std::env::temp_dir().join(format!("fastcarto-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(NAMES[which as usize % NAMES.len()]);
    std::fs::write(&path, body).expect("write");
    let _ = read_path(path.to_str().expect("utf-8"), &ReadOptions::new(Kind::Logits));
});
