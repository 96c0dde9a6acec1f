//! Bytes as a revision log segment: read record by record and whole, rewrite what reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::revlog::fuzz_targets::revlog_read(data);
});
