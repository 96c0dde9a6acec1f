//! Text as `--initial-cluster` (a line, then a token): parse, build the membership, member JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::restore::fuzz_targets::restore_input(data);
});
