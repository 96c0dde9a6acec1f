#!/usr/bin/env bash
# Fuzzes the bbolt reader and checker, the streaming scanner, the protobuf decoder and the revision
# log reader with libFuzzer (cargo-fuzz, needs a nightly toolchain), SECONDS per target (default
# 60), from the committed seed corpus in fuzz/corpus. Without nightly it runs the same target bodies
# over the corpus and 10,000 mutations as a plain test. New crashing inputs land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-60}
# shellcheck source=/dev/null
[ -f tools/env.sh ] && . tools/env.sh
if rustup toolchain list | grep -q nightly; then
  command -v cargo-fuzz >/dev/null || cargo +nightly install --locked cargo-fuzz
  for t in bolt_open bolt_stream kv_decode restore_input bootstrap_inventory bolt_roundtrip revlog_read; do
    # -s none: the crate forbids unsafe code, and sanitizers add nothing to safe Rust.
    cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=262144
  done
else
  echo "fuzz.sh: no nightly toolchain; running the fuzz targets as a deterministic test" >&2
  cargo test --locked --lib bolt::tests::fuzz
  cargo test --locked --lib restore::fuzz_targets
  cargo test --locked --lib bootstrap::fuzz_targets
  cargo test --locked --lib revlog::fuzz_targets
fi
