#!/usr/bin/env bash
# Backup benchmark (BENCHMARKS.md): cpkeep side by side with etcdctl and the naive pipeline, on real
# etcd 3.5 and SeaweedFS on loopback. Usage: bench/backup.sh [size-MiB...]   (default: 256 1024)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-tools.sh
# shellcheck source=/dev/null
. tools/env.sh
# The example needs the test-support feature (the S3 sandbox); the measured binary must not have it,
# so it is built on its own, last.
cargo build --locked --release --example bench_backup
cargo build --locked --release --bin cpkeep
work=${CPKEEP_BENCH_DIR:-/var/tmp/cpkeep-bench}
rm -rf "$work"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(256 1024)
echo "# $(date -u +%FT%TZ) $(nproc) cores, etcd $("$CPKEEP_ETCD35_DIR/etcd" --version | head -1)"
target/release/examples/bench_backup "$PWD/target/release/cpkeep" "$CPKEEP_ETCD35_DIR" "$work" "${sizes[@]}"
rm -rf "$work"
