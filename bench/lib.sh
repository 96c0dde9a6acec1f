# Shared by the bench/*.sh scripts that measure against a filled etcd (source it from the repo root):
# `hold_cluster SIZE NAME` installs the tools, builds the release binary and the fill example, fills a
# real etcd 3.5 member to SIZE MiB under ${CPKEEP_BENCH_DIR:-/var/tmp/cpkeep-bench-NAME} and holds it,
# leaving its connection flags in $conn and the work directory in $work (both removed on exit);
# `row LABEL CMD...` prints one table row: the median wall time of 3 runs and the peak RSS.

hold_cluster() {
  local size=$1 name=$2
  scripts/install-tools.sh >/dev/null
  # shellcheck source=/dev/null
  . tools/env.sh
  # The example needs the test-support feature (the S3 sandbox); the measured binary must not have it,
  # so it is built on its own, last.
  cargo build --locked --release --example bench_backup
  cargo build --locked --release --bin cpkeep
  work=${CPKEEP_BENCH_DIR:-/var/tmp/cpkeep-bench-$name}
  rm -rf "$work"; mkdir -p "$work"
  CPKEEP_BENCH_HOLD=1 target/release/examples/bench_backup "$PWD/target/release/cpkeep" "$CPKEEP_ETCD35_DIR" "$work/env" "$size" >"$work/hold.txt" 2>"$work/hold.err" &
  hold=$!
  trap 'kill $hold 2>/dev/null; sleep 1; pkill -9 -f "$work/env" 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 1 900); do grep -q -- '--endpoints=' "$work/hold.txt" 2>/dev/null && break; sleep 1; done
  conn=$(grep -- '--endpoints=' "$work/hold.txt")
}

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
