#!/usr/bin/env python3
"""DuckDB peer for scripts/bench-diff.sh: the same diff as keyrecon-diff, as SQL.

    duckdb_diff.py SOURCE TARGET OUTDIR [MEMORY_LIMIT]

Writes OUTDIR/missing-on-target.txt and missing-on-source.txt (distinct keys, byte order) and prints counts.
"""
import sys, duckdb

src, tgt, out = sys.argv[1:4]
con = duckdb.connect()
con.execute("SET threads=2")
con.execute("SET preserve_insertion_order=false")
if len(sys.argv) > 4:
    con.execute(f"SET memory_limit='{sys.argv[4]}'")
def rel(p):
    # One VARCHAR column per line, no quoting or delimiters: every byte of the line is the key.
    return (f"read_csv('{p}', columns={{'k': 'VARCHAR'}}, header=false, delim='\\x01', quote='', escape='', "
            f"auto_detect=false, strict_mode=false)")
for name, a, b in (("missing-on-target", src, tgt), ("missing-on-source", tgt, src)):
    con.execute(f"COPY (SELECT k FROM (SELECT k FROM {rel(a)} EXCEPT SELECT k FROM {rel(b)}) ORDER BY k) "
                f"TO '{out}/{name}.txt' (FORMAT csv, HEADER false, QUOTE '', DELIMITER '\\x01')")
print("ok")
