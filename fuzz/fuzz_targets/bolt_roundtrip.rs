//! Bytes describing a database: written by the fresh-file writer, read back equal to the model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::bolt::fuzz_targets::bolt_roundtrip(data);
});
