#!/usr/bin/env bash
# Installs Garage 2.5.0, the S3 server the keyrecon-list-s3 tests and benchmarks run against, unless a
# garage 2.5.0 binary is already installed (on PATH, in ~/.cargo/bin, or at $GARAGE_BIN).
# Building takes ~20 min on 2 cores; the binary lands in ~/.cargo/bin/garage.
set -euo pipefail
VERSION=2.5.0
export PATH="$HOME/.cargo/bin:$PATH"
for cand in "${GARAGE_BIN:-}" "$(command -v garage 2>/dev/null || true)" "$HOME/.cargo/bin/garage"; do
  if [ -n "$cand" ] && [ -x "$cand" ] && "$cand" --version 2>/dev/null | grep -Eq "(^|[^0-9.])${VERSION//./\\.}([^0-9]|$)"; then
    echo "garage $VERSION already installed: $cand"
    exit 0
  fi
done
echo "installing garage $VERSION with cargo (slow: ~20 min on 2 cores)" >&2
cargo install "garage@$VERSION" --locked
"$HOME/.cargo/bin/garage" --version
