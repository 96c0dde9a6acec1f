#!/usr/bin/env bash
# Consistency-check benchmark (BENCHMARKS.md): a real etcd 3.5 member filled to SIZE MiB (default 1024),
# then side by side on it: `cpkeep cluster health` without and with `--check-consistency` (the cost of
# the HashKV at a common revision), and `etcdctl endpoint hashkv` (etcd's own hash of the same keyspace)
# for reference. Median of 3 wall times and the peak RSS of each.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-1024}
# shellcheck source=bench/lib.sh
. bench/lib.sh
hold_cluster "$size" consistency
grep filled "$work/hold.err" || true
# shellcheck disable=SC2086
target/release/cpkeep cluster health -o json $conn --check-consistency \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); m=r["members"][0]; c=r["doctor"]["consistency"]; print("db %.0f MiB, revision %d, verdict %s, hash %08x" % (m["db_size"]/1048576, c["revision"], r["verdict"], c["majority_hash"]))'
echo "| command | wall s (median of 3) | peak RSS MiB |"
echo "|---|---|---|"
# A WARNING or CRITICAL verdict exits non-zero; only the time is measured here.
row "cpkeep cluster health" bash -c "target/release/cpkeep cluster health $conn >/dev/null; true"
row "cpkeep cluster health --check-consistency" bash -c "target/release/cpkeep cluster health --check-consistency $conn >/dev/null; true"
row "etcdctl endpoint hashkv" bash -c "$CPKEEP_ETCD35_DIR/etcdctl $conn endpoint hashkv >/dev/null"
