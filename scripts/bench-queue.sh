#!/usr/bin/env bash
# Benchmark (not CI): keys per second through the fleet queue, on a redis-server of our own on
# 127.0.0.1 (appendonly yes; appendfsync always, and everysec for comparison), in one run:
#   - keyrecon-queue enqueue of N keys (missing-on-target.csv shape: key,size,origin)
#   - one consumer that copies nothing (benches/queue_throughput.rs: the real consumer machinery,
#     a worker that acknowledges at once), at WORKERS keys in flight
#   - keyrecon-queue report of the N outcomes
# Prints keys/s for each and redis-server's CPU; paste the numbers into benches/fleet.md.
#
#   scripts/bench-queue.sh [N=1000000] [WORKERS=256] [PORT=16399]
set -euo pipefail
N=${1:-1000000}; WORKERS=${2:-256}; PORT=${3:-16399}
PROFILE=${PROFILE:-release}
cd "$(dirname "$0")/.."
DIR=$(mktemp -d /tmp/bench-queue.XXXXXX)
REDIS_PID=
trap '[ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null; rm -rf "$DIR"' EXIT
cargo build -q --profile "$PROFILE" --bin keyrecon-queue
cargo build -q --profile "$PROFILE" --bench queue_throughput 2>/dev/null || true
TD=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BENCH=$(ls -t "$TD"/deps/queue_throughput-* 2>/dev/null | grep -v '\.d$' | head -1)
[ -x "$BENCH" ] || { cargo bench --no-run --bench queue_throughput >/dev/null 2>&1; BENCH=$(ls -t "$TD"/deps/queue_throughput-* | grep -v '\.d$' | head -1); }

python3 - "$N" > "$DIR/keys.csv" <<'PY'
import sys
n = int(sys.argv[1])
w = sys.stdout.write
w("key,size,origin\n")
for i in range(n):
    w(f"t01{i:016x},{10 + i % 50},t01{i:016x}_1\n")
PY

cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
for fsync in always everysec; do
  rm -rf "$DIR/redis"; mkdir -p "$DIR/redis"
  redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DIR/redis" --appendonly yes --appendfsync "$fsync" \
    --save "" --protected-mode no >"$DIR/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  URL="redis://127.0.0.1:$PORT/bench"
  c0=$(cpu_of "$REDIS_PID"); t0=$(date +%s.%N)
  "$TD/keyrecon-queue" enqueue --keys "$DIR/keys.csv" "$URL" -q --rejects "$DIR/rejects.csv"
  t1=$(date +%s.%N); c1=$(cpu_of "$REDIS_PID")
  out=$("$BENCH" "$URL" "$WORKERS")
  t2=$(date +%s.%N); c2=$(cpu_of "$REDIS_PID")
  "$TD/keyrecon-queue" report "$URL" --out "$DIR/report" -q
  t3=$(date +%s.%N)
  python3 - "$N" "$fsync" "$t0" "$t1" "$t2" "$t3" "$c0" "$c1" "$c2" "$out" <<'PY'
import sys
n, fsync = int(sys.argv[1]), sys.argv[2]
t0, t1, t2, t3, c0, c1, c2 = map(float, sys.argv[3:10])
print(f"appendfsync {fsync}: enqueue {n / (t1 - t0):,.0f} keys/s ({t1 - t0:.2f} s, redis CPU {c1 - c0:.1f} s); "
      f"consume {n / (t2 - t1):,.0f} keys/s ({t2 - t1:.2f} s, redis CPU {c2 - c1:.1f} s); report {n / (t3 - t2):,.0f} keys/s ({t3 - t2:.2f} s)")
print("  consumer: " + sys.argv[10])
PY
  wc -l < "$DIR/report/ok.csv" | awk -v n="$N" '{ if ($1 - 1 != n) { print "  REPORT HAS " $1 - 1 " ROWS, expected " n; exit 1 } }'
  kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=
done
