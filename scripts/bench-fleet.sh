#!/usr/bin/env bash
# Benchmark (not CI): keyrecon-repair through the fleet queue with 1, 2 and 4 consumer processes against
# one-machine keyrecon-repair (--keys), all copying the same blobs from the CQL test node (a protocol
# test node, not Cassandra) to one Garage, in one run. Prints a markdown table for benches/fleet.md.
#
#   scripts/bench-fleet.sh [SIZE=10240] [COUNT=10000] [CONCURRENCY=32] [CONSUMERS="1 2 4"]
#   env: PROFILE=release|dev, NODE_PORT, REDIS_PORT
#
# Each consumer is what one machine would run (--concurrency each). On one machine they share its cores
# and the one Garage, so this measures what the queue costs and that the consumers share the work, not a
# fleet's hardware. The data is bench-data/repair-SIZE-COUNT/ of scripts/bench-repair.sh (written once).
# Every run copies into its own prefix; "objects" is the fleet report's ok count (each key once).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SIZE=${1:-10240}
COUNT=${2:-10000}
CONC=${3:-32}
CONSUMERS=${4:-"1 2 4"}
PROFILE=${PROFILE:-release}
NODE_PORT=${NODE_PORT:-19044}
REDIS_PORT=${REDIS_PORT:-16398}
DATA=bench-data/repair-$SIZE-$COUNT
GDIR=bench-data/garage-fleet
WORK=$(mktemp -d /tmp/bench-fleet.XXXXXX)
mkdir -p "$DATA"

scripts/install-garage.sh >/dev/null
command -v redis-server >/dev/null || { echo "missing redis-server (scripts/install-deps.sh)" >&2; exit 2; }
TD=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
cargo build -q --profile "$PROFILE" -p keyrecon --bin keyrecon-repair --bin keyrecon-queue
cargo build -q --profile "$PROFILE" -p cql-test-node --bin cql-test-node

scripts/gen-blobs.sh "$SIZE" "$COUNT" "$DATA"

NODE_PID= REDIS_PID=
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  scripts/garage.sh stop "$GDIR" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
scripts/garage.sh start "$GDIR" 3920 >&2
. "$GDIR/env"
"$TD/cql-test-node" --listen "127.0.0.1:$NODE_PORT" --table ks.images --pk k:text --col blob:blob \
  --rows-csv "$DATA/rows.csv" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 1200); do grep -q "listening on" "$WORK/node.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$WORK/node.log" || { cat "$WORK/node.log" >&2; exit 2; }
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --appendonly yes --appendfsync always \
  --save "" --protected-mode no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

RUN=$(date +%s)
REPAIR_ARGS=(--contact-points "127.0.0.1:$NODE_PORT" --source ks.images --key-column k --blob-column blob
  --bucket "$BUCKET" --endpoint-url "$S3_ENDPOINT" --region garage --concurrency "$CONC" -q)
rows=()
row() { # name consumers seconds objects cpu rss exit
  local line; line=$(python3 -c "
n,w=$4,$3; print(f'$1|$2|{w:.2f}|{n/w:,.0f}|{n*$SIZE/w/1e6:.1f}|$6|{$5:.1f}|{n}|$7|$(cut -d' ' -f1 /proc/loadavg)')")
  rows+=("$line"); echo "$line" >&2
}

# One machine, --keys.
p="r$RUN-single"
sync; sleep 1
t0=$(date +%s.%N); rc=0
/usr/bin/time -f "%M %U %S" -o "$WORK/time" "$TD/keyrecon-repair" --keys "$DATA/keys.txt" --prefix "$p/" \
  --out "$WORK/single" "${REPAIR_ARGS[@]}" || rc=$?
t1=$(date +%s.%N)
read -r rss usr sys <"$WORK/time"
ok=$(($(wc -l <"$WORK/single/ok.csv") - 1))
row "keyrecon-repair --keys" "-" "$(echo "$t1 - $t0" | bc)" "$ok" "$(echo "$usr + $sys" | bc)" "$((rss / 1024))" "$rc"

for k in $CONSUMERS; do
  p="r$RUN-fleet$k"
  url="redis://127.0.0.1:$REDIS_PORT/$p"
  "$TD/keyrecon-queue" enqueue --keys "$DATA/keys.txt" "$url" -q
  sync; sleep 1
  t0=$(date +%s.%N)
  pids=()
  for i in $(seq 1 "$k"); do
    /usr/bin/time -f "%M %U %S" -o "$WORK/time-$k-$i" "$TD/keyrecon-repair" --queue "$url" --consumer "c$i" \
      --prefix "$p/" --out "$WORK/fleet-$k-$i" "${REPAIR_ARGS[@]}" &
    pids+=($!)
  done
  rc=0
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  t1=$(date +%s.%N)
  cpu=0; rss=0
  for i in $(seq 1 "$k"); do
    read -r r u s <"$WORK/time-$k-$i"; cpu=$(echo "$cpu + $u + $s" | bc); [ "$r" -gt "$rss" ] && rss=$r
  done
  "$TD/keyrecon-queue" report "$url" --out "$WORK/report-$k" -q || rc=$?
  ok=$(($(wc -l <"$WORK/report-$k/ok.csv") - 1))
  row "keyrecon-repair --queue" "$k" "$(echo "$t1 - $t0" | bc)" "$ok" "$cpu" "$((rss / 1024))" "$rc"
done

echo
echo "Garage 2.5.0 single node (sqlite), Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-) (appendfsync always), CQL test node; $COUNT objects of $SIZE bytes, --concurrency $CONC per process, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| run | consumers | seconds | objects/s | MB/s | peak RSS MiB (max of consumers) | CPU s (all consumers) | objects | exit | load |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
