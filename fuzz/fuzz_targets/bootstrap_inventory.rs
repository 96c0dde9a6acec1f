//! Inventory text: parse, validate, and for what validates render and read back every kubeadm
//! configuration and static pod.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cpkeep::bootstrap::fuzz_targets::bootstrap_inventory(data);
});
