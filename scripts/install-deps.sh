#!/usr/bin/env bash
# Installs what the test suite needs and is not part of a fresh machine. Idempotent: reuses what is there.
#   - GNU coreutils sort/comm (reference implementation the diff tests compare against; normally present)
set -euo pipefail
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need comm || missing+=(coreutils)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
# Garage 2.5.0, the S3 server of the keyrecon-list-s3 tests (reuses an installed binary).
"$(dirname "$0")/install-garage.sh"
