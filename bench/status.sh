#!/usr/bin/env bash
# Snapshot status/verify benchmark (BENCHMARKS.md): a real etcd 3.5 filled to SIZE MiB (default 1024),
# one snapshot saved, then `etcdutl snapshot status` and `cpkeep snapshot status` side by side on the
# same file (median of 3, peak RSS), and `cpkeep snapshot verify --deep` once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-1024}
# shellcheck source=bench/lib.sh
. bench/lib.sh
hold_cluster "$size" status
# shellcheck disable=SC2086
target/release/cpkeep snapshot save -q "$work/snap.db" $conn >/dev/null
ls -l "$work/snap.db" | awk '{printf "snapshot: %.0f MiB\n", $5/1048576}'
echo "| tool | wall s (median of 3) | peak RSS MiB |"
echo "|---|---|---|"
row "etcdutl snapshot status" "$CPKEEP_ETCD35_DIR/etcdutl" snapshot status "$work/snap.db"
row "cpkeep snapshot status" target/release/cpkeep snapshot status "$work/snap.db"
row "cpkeep snapshot verify --deep" target/release/cpkeep snapshot verify --deep "$work/snap.db"
echo
echo "same numbers:"
"$CPKEEP_ETCD35_DIR/etcdutl" snapshot status -w json "$work/snap.db"; echo
target/release/cpkeep snapshot status -o json "$work/snap.db" | tr -d ' \n'; echo
