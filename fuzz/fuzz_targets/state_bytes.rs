//! libFuzzer target: the input is read as a pickled `Accumulator`'s state (an Arrow IPC stream
//! of one record batch) with `serialize::from_ipc_bytes`, and a state it accepts is finalized.
//! Any result is fine; a panic, abort, leak or hang is a finding.
#![no_main]

use fastcarto_core::serialize::from_ipc_bytes;
use fastcarto_core::{FinalizeOptions, finalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = from_ipc_bytes(data) {
        finalize(&state, None, FinalizeOptions::default()).expect("an accepted state finalizes");
    }
});
