#!/usr/bin/env bash
# The main job on bundled fixtures: build, diff two key dumps (a Cassandra-side and an S3-side dump with
# awkward keys, duplicates and blank-free lines), print the summary and the first missing keys.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only the engine's tools: no S3 SDK, no Cassandra driver (feature `net`), a cold build in about a minute.
cargo build --release --quiet --no-default-features --bin keyrecon-diff
out=target/demo
rm -rf "$out"
set +e
target/release/keyrecon-diff fixtures/keys.source.txt fixtures/keys.target.txt --out "$out" --combined
code=$?
set -e
echo "exit status $code (0 = in sync, 1 = differences, 2 = trouble)"
echo "--- $out/summary.json"
cat "$out/summary.json"; echo
echo "--- first keys missing on target ($(wc -l < "$out/missing-on-target.txt") in $out/missing-on-target.txt)"
head -n 5 "$out/missing-on-target.txt"
[ "$code" -le 1 ]
