#!/usr/bin/env bash
# Benchmark (not CI): peak RSS and time of keyrecon-repair against the number of input keys. Prints a
# markdown table for benches/repair.md.
#
#   scripts/bench-repair-rss.sh [COUNTS="100000 1000000 10000000"]
#   env: MEM=256M (--mem; empty: no --mem flag, for builds older than it), CONCURRENCY=64,
#        RESUME=1 (also time a --resume over the finished run), PROFILE=release|dev,
#        KEYRECON_REPAIR=path (a prebuilt binary, e.g. an older build to compare), NODE_PORT=19044
#
# Every key is not found: the CQL test node (a protocol test node, not Cassandra) serves an empty
# media.objects, so each key costs one prepared SELECT and no blob moves. That is the cheapest key
# repair can work on, and the run still exercises everything that grows with the key count: the input
# sort, the journal (one record per key), the journal sort and the outcome files (not-found.csv, one row
# per key). A not-found key never reaches S3 (repair fetches before it HEADs), so no S3 server is started:
# the endpoint is a closed port and the credentials are dummies.
# The input is a missing-on-target.csv (key,size,origin) of COUNT keys in scrambled order, written once
# per COUNT to bench-data/rss-COUNT/. With RESUME=1 a second run with --resume reads the finished run's
# journal back (every key skipped) and renders the outcome files again.
# Peak RSS is the tool's own VmHWM (summary.json peak_rss_bytes); /usr/bin/time's maximum RSS agrees.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
COUNTS=${1:-"100000 1000000 10000000"}
MEM=${MEM-256M}
CONC=${CONCURRENCY:-64}
RESUME=${RESUME:-1}
PROFILE=${PROFILE:-release}
NODE_PORT=${NODE_PORT:-19044}
TD=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
REPAIR=${KEYRECON_REPAIR:-$TD/keyrecon-repair}
# One build of both, so their dependencies are built once with the same features.
if [ -n "${KEYRECON_REPAIR:-}" ]; then
  cargo build -q --profile "$PROFILE" -p cql-test-node --bin cql-test-node
else
  cargo build -q --profile "$PROFILE" -p keyrecon --bin keyrecon-repair -p cql-test-node --bin cql-test-node
fi
mkdir -p bench-data

NODE_PID=
cleanup() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true; }
trap cleanup EXIT
"$TD/cql-test-node" --listen "127.0.0.1:$NODE_PORT" --table media.objects --pk id:text --col blob:blob \
  >bench-data/rss-node.log 2>&1 &
NODE_PID=$!
for _ in $(seq 1 600); do grep -q "listening on" bench-data/rss-node.log 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" bench-data/rss-node.log || { cat bench-data/rss-node.log >&2; exit 2; }

export AWS_ACCESS_KEY_ID=unused AWS_SECRET_ACCESS_KEY=unused AWS_EC2_METADATA_DISABLED=true
rows=()
for n in $COUNTS; do
  data=bench-data/rss-$n
  mkdir -p "$data"
  if [ ! -f "$data/ready" ]; then
    echo "writing $n keys to $data (once)..." >&2
    # 7919 is prime and divides no power of ten: i -> i * 7919 mod n visits every key once, scrambled.
    awk -v n="$n" 'BEGIN { print "key,size,origin"; for (j = 0; j < n; j++) { i = (j * 7919) % n;
      printf "t01%016x,%d,t01%016x_1\n", i, 1000 + i % 7, i } }' >"$data/missing-on-target.csv"
    touch "$data/ready"
  fi
  for pass in first resume; do
    [ "$pass" = resume ] && [ "$RESUME" != 1 ] && continue
    extra=()
    [ "$pass" = first ] && rm -rf "$data/out"
    [ "$pass" = resume ] && extra=(--resume)
    [ -n "$MEM" ] && extra+=(--mem "$MEM" --tmp "$data")
    sync; sleep 1
    rc=0
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M %U %S" -o "$data/time" "$REPAIR" --keys "$data/missing-on-target.csv" --out "$data/out" \
      --contact-points "127.0.0.1:$NODE_PORT" --consistency ONE --source media.objects --key-column id \
      --bucket bench --endpoint-url http://127.0.0.1:9 --region garage -j "$CONC" -q "${extra[@]}" \
      >"$data/last.out" 2>"$data/last.err" || rc=$?
    t1=$(date +%s.%N)
    # GNU time writes "Command exited with non-zero status 1" first: repair exits 1 when keys are not found.
    read -r maxrss usr sys < <(tail -1 "$data/time")
    rows+=("$(python3 - "$n" "$pass" "$t0" "$t1" "$maxrss" "$usr" "$sys" "$rc" "$data/out" <<'PY'
import json, sys
n, name, t0, t1, maxrss, usr, sys_, rc, out = sys.argv[1:]
w = float(t1) - float(t0)
try:
    s = json.load(open(f"{out}/summary.json"))
except OSError:
    s = {}
rss = s.get("peak_rss_bytes", 0) / 2**20
nf = s.get("outcomes", {}).get("not_found")
nf = "?" if nf is None else f"{nf:,}"
load = open("/proc/loadavg").read().split()[0]
print(f"{int(n):,}|{name}|{w:.1f}|{int(n) / w:,.0f}|{rss:.0f}|{int(maxrss) / 1024:.0f}"
      f"|{float(usr) + float(sys_):.1f}|{nf}|{rc}|{load}")
PY
)")
    echo "${rows[-1]}" >&2
    [ "$rc" = 1 ] || { echo "repair exited $rc (1 = some not found, expected):" >&2; tail -5 "$data/last.err" >&2; }
  done
done

echo
echo "keyrecon-repair ${KEYRECON_REPAIR:-$(git rev-parse --short HEAD)}, --mem ${MEM:-none}, -j $CONC, every key not found on the CQL test node, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| keys | run | seconds | keys/s | peak RSS MiB (VmHWM) | max RSS MiB (time) | CPU s | not-found rows | exit | load |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
