#!/usr/bin/env bash
# Revision log benchmark (BENCHMARKS.md, issue 16): a real etcd 3.5 filled to SIZE MiB (default 256),
# `cpkeep backup --follow` to a SeaweedFS S3 store while EVENTS puts (default 1,000,000) of 1 KiB
# run at RATE/s (default 5,000); reports the log's lag and cpkeep's peak RSS, then restores the
# end state side by side: `etcdutl snapshot restore` of a snapshot of it, and `cpkeep restore
# --to-revision` (the full snapshot plus every logged event). See examples/bench_pitr.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-256} events=${2:-1000000} rate=${3:-5000}
scripts/install-tools.sh >/dev/null
# shellcheck source=/dev/null
. tools/env.sh
cargo build --locked --release --example bench_pitr
cargo build --locked --release --bin cpkeep
work=${CPKEEP_BENCH_DIR:-/var/tmp/cpkeep-bench-pitr}
rm -rf "$work"; mkdir -p "$work"
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
target/release/examples/bench_pitr "$PWD/target/release/cpkeep" "$CPKEEP_ETCD35_DIR" "$work" "$size" "$events" "$rate"
