#!/usr/bin/env bash
# Benchmark (not CI): keyrecon-list-cassandra against `cqlsh COPY TO` on the same CQL test node, in one
# run. Prints wall time, rows/s and client CPU (user+sys) rows/s for each; paste the numbers into
# benches/list-cassandra.md.
#
#   scripts/bench-list-cassandra.sh [ROWS=1000000] [PORT=19042]
#
# Needs: python3, cqlsh (pip install scylla-cqlsh). Client CPU is getrusage(RUSAGE_CHILDREN) of the
# measured command. Binaries are built optimized: PROFILE=release (default), or, when a release build of
# all dependencies is too slow for the machine, PROFILE=dev CARGO_PROFILE_DEV_OPT_LEVEL=3 (dependencies
# are at opt-level 2 in dev already; debug assertions stay on).
set -euo pipefail
ROWS=${1:-1000000}
PORT=${2:-19042}
PROFILE=${PROFILE:-release}
cd "$(dirname "$0")/.."
DIR=$(mktemp -d /tmp/bench-list-cassandra.XXXXXX)
trap 'kill "$NODE_PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT

cargo build -q --profile "$PROFILE" --bin keyrecon-list-cassandra -p keyrecon
cargo build -q --profile "$PROFILE" --bin cql-test-node -p cql-test-node
TD=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

echo "== starting the CQL test node with $ROWS rows (ks.t: k text, blob blob[64])"
"$TD/cql-test-node" --listen "127.0.0.1:$PORT" --rows "$ROWS" --col blob:blob --blob-size 64 >"$DIR/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 600); do grep -q "listening on" "$DIR/node.log" 2>/dev/null && break; sleep 0.2; done
grep -q "listening on" "$DIR/node.log" || { cat "$DIR/node.log"; exit 1; }

# Runs a command, prints "wall_s user_s sys_s" of it (children included) on fd 3.
measure() {
  python3 - "$@" 3>&1 <<'EOF'
import os, resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
os.write(3, f"{wall:.3f} {ru.ru_utime:.3f} {ru.ru_stime:.3f} {rc}\n".encode())
EOF
}

report() { # name rows "wall user sys rc"
  read -r wall user sys rc <<<"$3"
  python3 -c "
w,u,s,n=$wall,$user,$sys,$2
print(f'{\"$1\":<34} rows={n:>9} wall={w:7.2f}s  {n/w:>10,.0f} rows/s  client cpu={u+s:6.2f}s  {n/max(u+s,1e-9):>10,.0f} rows/cpu-s  rc=$rc')"
}

echo "== keyrecon-list-cassandra (keys only)"
R1=$(measure "$TD/keyrecon-list-cassandra" --contact-points "127.0.0.1:$PORT" --keyspace ks --table t --key-column k \
  --out "$DIR/keys.chunks" --page-size 5000 --concurrency 16 --splits 256 -q)
N1=$(python3 -c "import json;print(json.load(open('$DIR/keys.chunks/summary.json'))['records'])")
report "keyrecon-list-cassandra" "$N1" "$R1"

echo "== keyrecon-list-cassandra (keys + writetime + --size-of blob)"
R2=$(measure "$TD/keyrecon-list-cassandra" --contact-points "127.0.0.1:$PORT" --keyspace ks --table t --key-column k \
  --out "$DIR/meta.chunks" --page-size 5000 --concurrency 16 --splits 256 --writetime-of blob --size-of blob -q)
N2=$(python3 -c "import json;print(json.load(open('$DIR/meta.chunks/summary.json'))['records'])")
report "keyrecon-list-cassandra +meta" "$N2" "$R2"

echo "== keyrecon-list-cassandra pinned to one core (taskset -c 0)"
R3=$(measure taskset -c 0 "$TD/keyrecon-list-cassandra" --contact-points "127.0.0.1:$PORT" --keyspace ks --table t --key-column k \
  --out "$DIR/one.chunks" --page-size 5000 --concurrency 4 --splits 256 -q)
report "keyrecon-list-cassandra 1 core" "$N1" "$R3"

if command -v cqlsh >/dev/null; then
  echo "== cqlsh COPY ks.t (k) TO (same node; COPY runs one worker process per core; PAGESIZE 5000 like ours)"
  R4=$(measure cqlsh 127.0.0.1 "$PORT" -e "COPY ks.t (k) TO '$DIR/copy.csv' WITH PAGESIZE=5000")
  N4=$(wc -l <"$DIR/copy.csv" | tr -d ' ')
  report "cqlsh COPY TO" "$N4" "$R4"
  python3 -c "
n1,n4=$N1,$N4
print(f'keyrecon-list-cassandra / cqlsh COPY TO wall-time speedup: {float(\"${R4%% *}\")/float(\"${R1%% *}\"):.1f}x  (keys: {n1} vs {n4})')
assert n1 == n4 == $ROWS, 'both tools must list every row'"
else
  echo "cqlsh not found: pip install scylla-cqlsh"
fi
