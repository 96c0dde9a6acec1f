//! Bytes as a bbolt file: open, check, iterate every bucket (bounded), read etcd's schema.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::bolt::fuzz_targets::bolt_open(data);
});
