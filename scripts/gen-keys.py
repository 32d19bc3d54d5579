#!/usr/bin/env python3
"""Generate a realistic pair of key dumps (source = Cassandra side, target = S3 side) for demos and benchmarks.

Keys look like a real image store: hex ids, t01-prefixed 21-char ids with a `_1` suffix, and date paths
(long shared prefixes, the case that breaks fixed-prefix sorts). The target is the source minus
--missing of the keys, plus --orphans extra keys; both sides get --dups duplicate lines, and both are
shuffled (dumps come in token/listing order, not sorted).

    scripts/gen-keys.py --n 50000000 --out bench-data/50m     # writes 50m.source.txt / 50m.target.txt
"""
import argparse, os, random

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="distinct source keys")
    ap.add_argument("--missing", type=float, default=0.01, help="fraction of source keys missing on target")
    ap.add_argument("--orphans", type=float, default=0.005, help="extra target keys, as a fraction of n")
    ap.add_argument("--dups", type=float, default=0.02, help="fraction of lines repeated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--awkward", action="store_true", help="mix in awkward keys (spaces, unicode, CR, invalid UTF-8, prefixes)")
    ap.add_argument("--out", required=True, help="output prefix")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    getrandbits = rnd.getrandbits

    def key(i):
        r = i % 10
        if r < 5:
            return b"%032x" % getrandbits(128)
        if r < 8:
            return b"t01%018x_1" % getrandbits(72)
        return b"images/%04d/%02d/%02d/%016x.jpg" % (2015 + i % 9, 1 + i % 12, 1 + i % 28, getrandbits(64))

    src = [key(i) for i in range(a.n)]
    if a.awkward:
        src += [b"with space", b"tab\there", "unicod\u00e9/\u65e5\u672c".encode(), b"cr-at-end\r", b"\xff\xfe-not-utf8",
                b"prefix", b"prefix/", b"prefix/child", b"+plus%25percent", b"trailing/", b" leading-space", b"x" * 900]
    nmiss = int(len(src) * a.missing)
    missing = set(rnd.sample(range(len(src)), nmiss))
    tgt = [k for i, k in enumerate(src) if i not in missing]
    tgt += [b"orphan/%016x" % getrandbits(64) for _ in range(int(a.n * a.orphans))]
    for side, name in ((src, "source"), (tgt, "target")):
        lines = side + [side[rnd.randrange(len(side))] for _ in range(int(len(side) * a.dups))] if side else side
        rnd.shuffle(lines)
        path = f"{a.out}.{name}.txt"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb", buffering=1 << 22) as f:
            for i in range(0, len(lines), 100000):
                f.write(b"\n".join(lines[i:i + 100000]) + b"\n")
        print(f"{path}: {len(lines)} lines")

if __name__ == "__main__":
    main()
