#!/usr/bin/env bash
# The test command (README): installs every test tool into tools/ (idempotent), then checks formatting,
# lints, builds the image, and runs every unit and integration test against real etcd 3.5 and 3.4.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-tools.sh
# shellcheck source=/dev/null
. tools/env.sh

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# The image (target/cpkeep-image.tar). Its test in the suite runs the script again; building the
# static release binary here, first, keeps minutes of release compilation out of the suite's run
# (its tests start real etcd, S3 and sshd processes that need the CPU).
scripts/image.sh >/dev/null
# Unit tests, the binary, then the integration suite last, so the run closes on its summary.
cargo test --locked --lib --bins --tests
