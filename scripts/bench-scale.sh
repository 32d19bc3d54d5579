#!/usr/bin/env bash
# The scale proof of the diff spine (not CI): two unsorted key dumps of N keys each (default 300M,
# ~9 GB a side) through keyrecon-diff at --mem 512M, checked exactly against what the generator knows
# must come out (benches/scale_keys.rs: counts and order-independent digests of the missing keys, and
# strictly increasing output). Prints time and peak RSS; paste them into benches/fleet.md.
#
#   scripts/bench-scale.sh [N=300000000] [MEM=512M] [DIR=bench-data]
set -euo pipefail
N=${1:-300000000}; MEM=${2:-512M}; DIR=${3:-bench-data}
cd "$(dirname "$0")/.."
mkdir -p "$DIR"
cargo build -q --release --no-default-features --bin keyrecon-diff
cargo bench -q --no-run --no-default-features --bench scale_keys 2>/dev/null
GEN=$(ls -t target/release/deps/scale_keys-* | grep -v '\.d$' | head -1)
P=$DIR/scale-$N
if [ ! -s "$P.expect.json" ]; then
  echo "== generating 2 x $N keys into $P.{source,target}.txt"
  /usr/bin/time -f "generated in %e s" "$GEN" gen "$N" "$P"
fi
ls -l "$P.source.txt" "$P.target.txt"
OUT=$(mktemp -d "$DIR/scale-out.XXXXXX"); TMP=$(mktemp -d "$DIR/scale-tmp.XXXXXX")
trap 'rm -rf "$OUT" "$TMP"' EXIT
echo "== keyrecon-diff --mem $MEM (load $(cut -d' ' -f1-3 /proc/loadavg))"
set +e
/usr/bin/time -f "wall %e s, user %U s, sys %S s, peak RSS %M KiB" target/release/keyrecon-diff -q \
  "$P.source.txt" "$P.target.txt" --out "$OUT" --mem "$MEM" --tmp "$TMP"
code=$?
set -e
echo "exit status $code (1 = differences found)"
python3 -c "import json,sys; s=json.load(open('$OUT/summary.json')); print({k: s[k] for k in ('missing_on_target','missing_on_source','engine','peak_rss_bytes')}, s['engine_stats'])"
echo "== independent check"
"$GEN" check "$P" "$OUT"
