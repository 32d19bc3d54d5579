#!/usr/bin/env bash
# Benchmark (not CI): listing a clustered table (10 rows per partition) with keyrecon-list-cassandra
# (SELECT DISTINCT: one row per partition) against `cqlsh COPY TO` (every row), in the same run on the
# same CQL test node; and keyrecon on the same partitions with one row each, to show that listing cost
# follows partitions, not rows. Rows read are the node's own counts (SIGUSR1), per command.
#
#   scripts/bench-cassandra-clustered.sh [PARTITIONS=100000] [ROUNDS=3] [PORT=19042]
#
# Needs: python3, cqlsh (pip install scylla-cqlsh). The commands alternate within each round; the
# table shows the median wall time (min..max) and client CPU of the rounds. Binaries are built
# optimized: PROFILE=release (default), or PROFILE=dev CARGO_PROFILE_DEV_OPT_LEVEL=3 when a release
# build of all dependencies is too slow for the machine. Paste the table into benches/list-cassandra.md.
set -euo pipefail
PARTITIONS=${1:-100000}
ROUNDS=${2:-3}
PORT=${3:-19042}
PROFILE=${PROFILE:-release}
cd "$(dirname "$0")/.."
command -v cqlsh >/dev/null || { echo "cqlsh not found: pip install scylla-cqlsh" >&2; exit 2; }
cargo build -q --workspace --profile "$PROFILE" --bin keyrecon-list-cassandra --bin cql-test-node
TD=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
DIR=$(mktemp -d /tmp/bench-cassandra-clustered.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
echo "== $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $PARTITIONS partitions, $ROUNDS rounds"

python3 - "$TD" "$DIR" "$PARTITIONS" "$ROUNDS" "$PORT" <<'EOF'
import os, resource, signal, statistics, subprocess, sys, time
td, work, parts, rounds, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

class Node:
    """A cql-test-node serving ks.t with `rows` rows per partition (clustering column c when > 1)."""
    def __init__(self, port, rows):
        args = [f"{td}/cql-test-node", "--listen", f"127.0.0.1:{port}", "--table", "ks.t", "--pk", "k:text",
                "--rows", str(parts), "--seed", "7"]
        if rows > 1:
            args += ["--clustering", str(rows)]
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("listening on"), line
        self.port = port
    def stats(self):
        """What the node read since the last call: {'rows': .., 'partitions': .., ...}."""
        self.p.send_signal(signal.SIGUSR1)
        line = self.p.stdout.readline().split()
        assert line[0] == "stats", line
        return {k: int(v) for k, v in (f.split("=") for f in line[1:])}
    def stop(self):
        self.p.terminate()
        self.p.wait()

def run(cmd):
    """Runs cmd: wall seconds and client CPU seconds (user + sys of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

def keyrecon(node, out):
    return [f"{td}/keyrecon-list-cassandra", "--contact-points", f"127.0.0.1:{node.port}", "--keyspace", "ks",
            "--table", "t", "--key-column", "k", "--out", out, "--force", "--page-size", "5000",
            "--concurrency", "16", "--splits", "256", "-q"]

def cqlsh(node, out):
    return ["cqlsh", "127.0.0.1", str(node.port), "-e", f"COPY ks.t (k) TO '{out}' WITH PAGESIZE=5000"]

t0 = time.monotonic()
wide, flat = Node(port, 10), Node(port + 1, 1)
print(f"== nodes loaded in {time.monotonic() - t0:.1f}s: ks.t with {parts} partitions x 10 rows, "
      f"and with {parts} partitions x 1 row")
cases = [
    ("keyrecon-list-cassandra", "10 rows/partition", wide, keyrecon, f"{work}/wide.chunks"),
    ("cqlsh COPY ks.t (k) TO", "10 rows/partition", wide, cqlsh, f"{work}/copy.csv"),
    ("keyrecon-list-cassandra", "1 row/partition", flat, keyrecon, f"{work}/flat.chunks"),
]
results = {i: [] for i in range(len(cases))}
for r in range(rounds):
    for i, (tool, table, node, cmd, out) in enumerate(cases):
        node.stats()  # start counting from zero
        wall, cpu = run(cmd(node, out))
        results[i].append((wall, cpu, node.stats()))
    print(f"round {r + 1}: " + ", ".join(f"{results[i][-1][0]:.2f}s" for i in range(len(cases))))
wide.stop(); flat.stop()

# Every tool listed what it should: keyrecon each partition once, COPY every row (10 per partition).
import json
for i, out in ((0, f"{work}/wide.chunks"), (2, f"{work}/flat.chunks")):
    assert json.load(open(f"{out}/summary.json"))["records"] == parts, out
lines = open(f"{work}/copy.csv").read().split("\n")[:-1]
assert len(lines) == 10 * parts and len(set(lines)) == parts, (len(lines), len(set(lines)))

def fmt(v):
    return f"{statistics.median(v):.2f} s ({min(v):.2f}..{max(v):.2f})"
print()
print("| tool | table | rows read (node) | partitions read | keys out | wall, median (min..max) | client CPU, median |")
print("|---|---|---:|---:|---:|---:|---:|")
for i, (tool, table, node, cmd, out) in enumerate(cases):
    rs = results[i]
    s = rs[-1][2]
    keys = 10 * parts if "cqlsh" in tool else parts
    print(f"| {tool} | {table} | {s['rows']:,} | {s['partitions']:,} | {keys:,} | {fmt([x[0] for x in rs])} | "
          f"{statistics.median(x[1] for x in rs):.2f} s |")
ratio = [c[0] / k[0] for k, c in zip(results[0], results[1])]
cost = [w[0] / f[0] for w, f in zip(results[0], results[2])]
print()
print(f"cqlsh COPY TO / keyrecon on the clustered table, wall, round by round: "
      f"median {statistics.median(ratio):.1f}x ({min(ratio):.1f}..{max(ratio):.1f})")
print(f"keyrecon, 10 rows/partition / 1 row/partition, wall: "
      f"median {statistics.median(cost):.2f}x ({min(cost):.2f}..{max(cost):.2f})")
EOF
