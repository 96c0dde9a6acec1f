#!/usr/bin/env bash
# The main job (README): installs the tools (idempotent), builds cpkeep, and runs `cpkeep demo` on a local
# 3-member TLS etcd sandbox. Extra arguments go to `cpkeep demo` (e.g. -o json, --dir DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-tools.sh
# shellcheck source=/dev/null
. tools/env.sh

cargo build --locked --release
exec target/release/cpkeep demo --etcd-bin "$CPKEEP_ETCD35_DIR/etcd" "$@"
