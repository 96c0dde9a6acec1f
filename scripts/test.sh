#!/usr/bin/env bash
# The test command (README): installs every test tool into tools/ (idempotent), then checks formatting,
# lints, and runs every unit and integration test against real etcd 3.5 and 3.4.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-tools.sh
# shellcheck source=/dev/null
. tools/env.sh

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Unit tests, the binary, then the integration suite last, so the run closes on its summary.
cargo test --locked --lib --bins --tests
