#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (reusing installed binaries), then
# runs unit and integration tests. Services the tests use are started by the tests themselves, bound to
# 127.0.0.1, and stopped when the test process exits.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-deps.sh
cargo test --workspace --no-fail-fast "$@" 2>&1
