//! Bytes as etcd's protobuf records (KeyValue, Lease, Alarm, User, Role): decode, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::bolt::fuzz_targets::kv_decode(data);
});
