#!/usr/bin/env bash
# keyrecon's sorter vs the extsort crate vs GNU sort -u, on one key file, same memory budget,
# alternating, with wall time and peak RSS. Not part of CI.   scripts/bench-sort.sh [FILE] [MEM_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-bench-data/10m.source.txt}; mem=${2:-268435456}
cargo bench --bench sort_vs_extsort --no-run --quiet
bin=$(ls -t target/release/deps/sort_vs_extsort-* | grep -v '\.d$' | head -1)
cat "$file" > /dev/null
export LC_ALL=C
for round in 1 2; do
  for t in keyrecon extsort gnu; do
    if [ "$t" = gnu ]; then cmd=(sort -u -S "$((mem / 1048576))M" --parallel=2 -o /dev/null "$file");
    else cmd=("$bin" "$t" "$file" "$mem"); fi
    /usr/bin/time -f "$t round $round: %e s, peak RSS %M KB" "${cmd[@]}" > /dev/null
  done
done
