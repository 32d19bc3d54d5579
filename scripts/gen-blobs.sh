#!/usr/bin/env bash
# Writes COUNT random blobs of SIZE bytes into DIR once (for the repair benchmarks): DIR/blobs/img/<hex>.bin
# as files (for the peers), DIR/rows.csv as `key,hexblob` (served by the CQL test node as ks.images) and
# DIR/keys.txt. Skips the work when DIR/ready exists.
#
#   scripts/gen-blobs.sh SIZE COUNT DIR
set -euo pipefail
SIZE=$1; COUNT=$2; DATA=$3
mkdir -p "$DATA"
[ -f "$DATA/ready" ] && exit 0
echo "writing $COUNT blobs of $SIZE bytes to $DATA (once)..." >&2
rm -rf "$DATA/blobs"; mkdir -p "$DATA/blobs/img"
python3 - "$SIZE" "$COUNT" "$DATA" <<'PY'
import sys, random
size, count, data = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(7)
with open(f"{data}/rows.csv", "w") as rows, open(f"{data}/keys.txt", "w") as keys:
    for i in range(count):
        key = f"img/{rnd.getrandbits(64):016x}.bin"
        body = rnd.randbytes(size)
        with open(f"{data}/blobs/{key}", "wb") as f:
            f.write(body)
        rows.write(f"{key},{body.hex()}\n")
        keys.write(key + "\n")
PY
touch "$DATA/ready"
