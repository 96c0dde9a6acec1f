#!/usr/bin/env bash
# Restore benchmark (BENCHMARKS.md): a real etcd 3.5 filled to SIZE MiB (default 1024), one snapshot
# saved to a local file and one backed up to a SeaweedFS S3 store (zstd, streamed); then side by side
# in one run: `etcdutl snapshot restore` of the local file, `cpkeep restore` of the same file, and
# `cpkeep restore latest --store s3://…` (download → zstd → db, streamed, no compressed copy on disk).
# Median of 5 wall times (taking turns) and the peak RSS of each; every run restores into a fresh
# directory on the same disk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-1024}
# shellcheck source=bench/lib.sh
. bench/lib.sh
hold_cluster "$size" restore
# The S3 line follows the connection line.
for _ in $(seq 1 60); do grep -q -- '^AWS_ACCESS_KEY_ID=' "$work/hold.txt" 2>/dev/null && break; sleep 1; done
s3line=$(grep -- '^AWS_ACCESS_KEY_ID=' "$work/hold.txt")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
AWS_ACCESS_KEY_ID=$(echo "$s3line" | sed 's/.*AWS_ACCESS_KEY_ID=\([^ ]*\).*/\1/')
AWS_SECRET_ACCESS_KEY=$(echo "$s3line" | sed 's/.*AWS_SECRET_ACCESS_KEY=\([^ ]*\).*/\1/')
s3=$(echo "$s3line" | sed 's/.*S3=\([^ ]*\).*/\1/')
store="--store s3://bench/restore --s3-endpoint $s3 --s3-path-style"
# shellcheck disable=SC2086
target/release/cpkeep snapshot save -q "$work/snap.db" $conn >/dev/null
# shellcheck disable=SC2086
target/release/cpkeep backup -q $conn $store >/dev/null
ls -l "$work/snap.db" | awk '{printf "snapshot: %.0f MiB\n", $5/1048576}'
rounds=${CPKEEP_BENCH_ROUNDS:-5}
echo "| tool | wall s (median of $rounds) | peak RSS MiB |"
echo "|---|---|---|"
# The three tools take turns (round-robin), each run after a sync, so that the disk's slow spells and
# the writeback of an earlier run fall on all three alike rather than on whichever runs next.
labels=("etcdutl snapshot restore (local file)" "cpkeep restore (local file)" "cpkeep restore latest --store s3 (zstd, streamed)")
# shellcheck disable=SC2206
commands=(
  "$CPKEEP_ETCD35_DIR/etcdutl snapshot restore $work/snap.db --data-dir @DIR@"
  "target/release/cpkeep restore -q $work/snap.db --data-dir @DIR@"
  "target/release/cpkeep restore -q latest $store --data-dir @DIR@"
)
declare -A walls rss
n=0
for _ in $(seq 1 "$rounds"); do
  for i in 0 1 2; do
    n=$((n + 1))
    dir="$work/restored-$n"
    sync
    # shellcheck disable=SC2046,SC2086
    out=$(python3 bench/measure.py $(echo ${commands[$i]} | sed "s#@DIR@#$dir#g") 2>/dev/null | tail -1)
    test -f "$dir/member/snap/db" || { echo "${labels[$i]}: no db restored in $dir" >&2; exit 1; }
    rm -rf "$dir"
    walls[$i]+="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])') "
    rss[$i]=$(echo "$out" | python3 -c "import json,sys; print(max(${rss[$i]:-0}, json.load(sys.stdin)['maxrss_mib']))")
  done
done
for i in 0 1 2; do
  # shellcheck disable=SC2086
  med=$(printf '%s\n' ${walls[$i]} | sort -n | sed -n "$(((rounds + 1) / 2))p")
  echo "| ${labels[$i]} | $med | ${rss[$i]} |"
  echo "  ${labels[$i]}: ${walls[$i]}" >&2
done
