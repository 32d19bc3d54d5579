#!/usr/bin/env bash
# Benchmark keyrecon-diff against GNU sort -u + comm and DuckDB on the same unsorted key dumps, in one
# run, alternating tools each round, with wall time and peak RSS (GNU time). Not part of CI.
#
#   scripts/bench-diff.sh [N_KEYS] [ROUNDS] [MEM]       e.g. scripts/bench-diff.sh 50000000 2 256M
#
# Inputs: bench-data/<label>.{source,target}.txt from scripts/gen-keys.py (generated once, reused).
# Every tool's missing-on-target / missing-on-source output is checked byte for byte against comm's.
# Prints a table with each tool's median time, ratio to keyrecon, and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}; rounds=${2:-2}; mem=${3:-256M}
label=$((n / 1000000))m; [ "$n" -lt 1000000 ] && label=${n}
data=bench-data; tmp=${TMPDIR:-/tmp}/keyrecon-bench; mkdir -p "$data" "$tmp"
src=$data/$label.source.txt; tgt=$data/$label.target.txt
if [ ! -s "$src" ] || [ ! -s "$tgt" ]; then
  python3 scripts/gen-keys.py --n "$n" --seed "$n" --out "$data/$label"
fi
python3 -c "import duckdb" 2>/dev/null || pip install -q duckdb
cargo build --release --quiet --bin keyrecon-diff
export LC_ALL=C
cat "$src" "$tgt" > /dev/null   # page cache
gb=$(echo "$mem" | sed 's/M$//;s/G$/*1024/' | bc 2>/dev/null || echo 256)

run_keyrecon() { target/release/keyrecon-diff -q "$src" "$tgt" --out "$1" --mem "$mem" --tmp "$tmp" || [ $? -eq 1 ]; }
run_gnu() {
  sort -u -S "$mem" --parallel=2 -T "$tmp" "$src" > "$1/s.sorted"
  sort -u -S "$mem" --parallel=2 -T "$tmp" "$tgt" > "$1/t.sorted"
  comm -23 "$1/s.sorted" "$1/t.sorted" > "$1/missing-on-target.txt"
  comm -13 "$1/s.sorted" "$1/t.sorted" > "$1/missing-on-source.txt"
  rm -f "$1/s.sorted" "$1/t.sorted"
}
run_duckdb() { python3 benches/duckdb_diff.py "$src" "$tgt" "$1" > /dev/null; }

tools=(keyrecon gnu duckdb)
declare -A times rss
for r in $(seq 1 "$rounds"); do
  # Alternate the order each round so no tool always runs on a warmer or colder machine.
  if [ $((r % 2)) -eq 0 ]; then order=(duckdb gnu keyrecon); else order=(keyrecon gnu duckdb); fi
  for t in "${order[@]}"; do
    out=$tmp/out-$t; rm -rf "$out"; mkdir -p "$out"
    /usr/bin/time -f "%e %M" -o "$tmp/time-$t" bash -c "$(declare -f run_$t); src=$src tgt=$tgt mem=$mem tmp=$tmp; run_$t $out"
    read -r secs kb < "$tmp/time-$t"
    times[$t]="${times[$t]:-} $secs"; rss[$t]=$(( kb > ${rss[$t]:-0} ? kb : ${rss[$t]:-0} ))
    echo "round $r: $t ${secs}s, peak RSS $((kb / 1024)) MiB" >&2
  done
  for f in missing-on-target.txt missing-on-source.txt; do
    cmp -s "$tmp/out-gnu/$f" "$tmp/out-keyrecon/$f" || { echo "MISMATCH keyrecon vs comm: $f" >&2; exit 1; }
    cmp -s "$tmp/out-gnu/$f" "$tmp/out-duckdb/$f" || echo "note: duckdb $f differs from comm" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
k=$(echo "${times[keyrecon]}" | median)
printf '\n%s keys per side (%s, %s), --mem %s, %s rounds, %s, load %s\n' "$n" "$(du -h "$src" | cut -f1)" "$(du -h "$tgt" | cut -f1)" "$mem" "$rounds" "$(date -u +%F)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| tool | median s | x keyrecon | peak RSS MiB |\n|---|---|---|---|\n'
for t in "${tools[@]}"; do
  m=$(echo "${times[$t]}" | median)
  printf '| %s | %s | %.1f | %d |\n' "$t" "$m" "$(echo "$m / $k" | bc -l)" $(( ${rss[$t]} / 1024 ))
done
