#!/usr/bin/env bash
# Installs what the test suite needs and is not part of a fresh machine. Idempotent: reuses what is there.
#   - GNU coreutils sort/comm (reference implementation the diff tests compare against; normally present)
#   - redis-server 7 (Debian): the fleet queue's tests start their own on a free 127.0.0.1 port
#   - chromium (Debian): keyrecon-reconcile's test opens report.html headless
#   - Garage 2.5.0 (S3 server, built with cargo; ~20 min the first time)
set -euo pipefail
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need comm || missing+=(coreutils)
need redis-server || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The package starts a system-wide redis on 6379; the tests do not use it.
  if command -v systemctl >/dev/null 2>&1; then $sudo_ systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
fi
# Garage 2.5.0, the S3 server of the keyrecon-list-s3 tests (reuses an installed binary).
"$(dirname "$0")/install-garage.sh"
