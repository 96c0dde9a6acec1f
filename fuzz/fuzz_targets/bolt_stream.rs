//! Bytes as a snapshot stream: the streaming scanner, whole and in chunks, must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::bolt::fuzz_targets::bolt_stream(data);
});
