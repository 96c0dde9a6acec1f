#!/usr/bin/env bash
# Snapshot status/verify benchmark (BENCHMARKS.md): a real etcd 3.5 filled to SIZE MiB (default 1024),
# one snapshot saved, then `etcdutl snapshot status` and `cpkeep snapshot status` side by side on the
# same file (median of 3, peak RSS), and `cpkeep snapshot verify --deep` once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-1024}
scripts/install-tools.sh >/dev/null
# shellcheck source=/dev/null
. tools/env.sh
# The example needs the test-support feature (the S3 sandbox); the measured binary must not have it,
# so it is built on its own, last.
cargo build --locked --release --example bench_backup
cargo build --locked --release --bin cpkeep
work=${CPKEEP_BENCH_DIR:-/var/tmp/cpkeep-bench-status}
rm -rf "$work"; mkdir -p "$work"
CPKEEP_BENCH_HOLD=1 target/release/examples/bench_backup "$PWD/target/release/cpkeep" "$CPKEEP_ETCD35_DIR" "$work/env" "$size" >"$work/hold.txt" 2>"$work/hold.err" &
hold=$!
trap 'kill $hold 2>/dev/null; sleep 1; pkill -9 -f "$work/env" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do grep -q -- '--endpoints=' "$work/hold.txt" 2>/dev/null && break; sleep 1; done
conn=$(grep -- '--endpoints=' "$work/hold.txt")
# shellcheck disable=SC2086
target/release/cpkeep snapshot save -q "$work/snap.db" $conn >/dev/null
ls -l "$work/snap.db" | awk '{printf "snapshot: %.0f MiB\n", $5/1048576}'
echo "| tool | wall s (median of 3) | peak RSS MiB |"
echo "|---|---|---|"
row() {
  local label=$1; shift
  local walls=() rss=0 out
  for _ in 1 2 3; do
    out=$(python3 bench/measure.py "$@" 2>/dev/null | tail -1)
    walls+=("$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])')")
    rss=$(echo "$out" | python3 -c "import json,sys; print(max($rss, json.load(sys.stdin)['maxrss_mib']))")
  done
  med=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n 2p)
  echo "| $label | $med | $rss |"
}
row "etcdutl snapshot status" "$CPKEEP_ETCD35_DIR/etcdutl" snapshot status "$work/snap.db"
row "cpkeep snapshot status" target/release/cpkeep snapshot status "$work/snap.db"
row "cpkeep snapshot verify --deep" target/release/cpkeep snapshot verify --deep "$work/snap.db"
echo
echo "same numbers:"
"$CPKEEP_ETCD35_DIR/etcdutl" snapshot status -w json "$work/snap.db"; echo
target/release/cpkeep snapshot status -o json "$work/snap.db" | tr -d ' \n'; echo
