//! The scale proof's key dumps and its independent check (scripts/bench-scale.sh).
//!
//!     scale_keys gen N PREFIX       writes PREFIX.source.txt, PREFIX.target.txt, PREFIX.expect.json
//!     scale_keys check PREFIX DIR   checks DIR/missing-on-target.txt and missing-on-source.txt
//!
//! The generator streams (no key is held in memory, so 300M keys a side take as little memory as 1k):
//! key i is derived from `splitmix64(i)`, a bijection, so keys are distinct by construction, shaped like
//! an image store's (hex ids, `t01..._1` ids, date paths); the order is a permutation of the indices
//! (`i = j * A mod N`), 2% of lines are repeated, 1% of source keys are left out of the target, and
//! 0.5% of N orphans are added to it. The generator knows which keys must come out of a diff, so it
//! writes their count and an order-independent digest (wrapping sum and xor of a 64-bit hash of each
//! key). The check reads keyrecon-diff's output files, requires them strictly increasing (sorted and
//! unique) and computes the same digests: it shares no code with keyrecon's engine.
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufWriter, Write};

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(i: u64, out: &mut Vec<u8>) {
    out.clear();
    let h = splitmix64(i);
    match i % 10 {
        0..=4 => write!(out, "{h:016x}{:016x}", splitmix64(h)).unwrap(),
        5..=7 => write!(out, "t01{h:018x}_1").unwrap(),
        _ => write!(out, "images/{:04}/{:02}/{:02}/{h:016x}.jpg", 2015 + i % 9, 1 + i % 12, 1 + i % 28).unwrap(),
    }
}

fn orphan(i: u64, out: &mut Vec<u8>) {
    out.clear();
    write!(out, "orphan/{:016x}", splitmix64(i ^ 0x5555_5555_5555_5555)).unwrap();
}

/// 1 in 100 source keys is missing on the target.
fn missing(i: u64) -> bool {
    splitmix64(i ^ 0xabcd_ef01_2345_6789) % 100 == 0
}

/// 2 in 100 lines are followed by a repeat of some earlier-or-later key.
fn repeat(j: u64) -> Option<u64> {
    let h = splitmix64(j ^ 0x1357_9bdf_2468_ace0);
    (h % 100 < 2).then_some(h >> 8)
}

fn hash(k: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Digest {
    count: u64,
    sum: u64,
    xor: u64,
}

impl Digest {
    fn add(&mut self, k: &[u8]) {
        let h = hash(k);
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h;
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn gen(n: u64, prefix: &str) {
    // A multiplier coprime to n: j -> j * a mod n is a permutation of 0..n (the dump's shuffled order).
    let mut a = 0x9e37_79b9_7f4a_7c15 % n.max(2);
    while gcd(a, n) != 1 {
        a += 1;
    }
    let orphans = n / 200;
    let (mut mot, mut mos) = (Digest::default(), Digest::default());
    let mut k = Vec::new();
    for side in ["source", "target"] {
        let f = std::fs::File::create(format!("{prefix}.{side}.txt")).unwrap();
        let mut w = BufWriter::with_capacity(4 << 20, f);
        for j in 0..n {
            let i = ((j as u128 * a as u128) % n as u128) as u64;
            let keep = side == "source" || !missing(i);
            if keep {
                key(i, &mut k);
                w.write_all(&k).unwrap();
                w.write_all(b"\n").unwrap();
            } else {
                key(i, &mut k);
                mot.add(&k);
            }
            if let Some(r) = repeat(j) {
                let r = r % n;
                if side == "source" || !missing(r) {
                    key(r, &mut k);
                    w.write_all(&k).unwrap();
                    w.write_all(b"\n").unwrap();
                }
            }
            if side == "target" && orphans > 0 && j % 200 == 199 && j / 200 < orphans {
                orphan(j / 200, &mut k);
                mos.add(&k);
                w.write_all(&k).unwrap();
                w.write_all(b"\n").unwrap();
            }
        }
        w.flush().unwrap();
    }
    let json = format!(
        "{{\"n\": {n}, \"missing_on_target\": {{\"count\": {}, \"sum\": {}, \"xor\": {}}}, \"missing_on_source\": {{\"count\": {}, \"sum\": {}, \"xor\": {}}}}}\n",
        mot.count, mot.sum, mot.xor, mos.count, mos.sum, mos.xor
    );
    std::fs::write(format!("{prefix}.expect.json"), &json).unwrap();
    print!("{json}");
}

fn check(prefix: &str, dir: &str) -> bool {
    let expect = std::fs::read_to_string(format!("{prefix}.expect.json")).unwrap();
    let field = |side: &str, f: &str| -> u64 {
        let s = &expect[expect.find(side).unwrap()..];
        let s = &s[s.find(&format!("\"{f}\": ")).unwrap() + f.len() + 4..];
        s[..s.find([',', '}']).unwrap()].trim().parse().unwrap()
    };
    let mut ok = true;
    for side in ["missing_on_target", "missing_on_source"] {
        let path = format!("{dir}/{}.txt", side.replace('_', "-"));
        let f = std::fs::File::open(&path).unwrap();
        let mut d = Digest::default();
        let mut prev: Option<Vec<u8>> = None;
        let mut sorted = true;
        for line in std::io::BufReader::with_capacity(4 << 20, f).split(b'\n') {
            let line = line.unwrap();
            if prev.as_ref().is_some_and(|p| *p >= line) {
                sorted = false;
            }
            d.add(&line);
            prev = Some(line);
        }
        let want = Digest { count: field(side, "count"), sum: field(side, "sum"), xor: field(side, "xor") };
        let good = sorted && d == want;
        ok &= good;
        println!(
            "{side}: {} keys, strictly increasing: {sorted}, digest {}: {}",
            d.count,
            if d == want { "equal" } else { "DIFFERENT" },
            if good { "EXACT" } else { "WRONG" }
        );
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => gen(args[2].parse().unwrap(), &args[3]),
        Some("check") => std::process::exit(if check(&args[2], &args[3]) { 0 } else { 1 }),
        _ => {
            eprintln!("usage: scale_keys gen N PREFIX | check PREFIX DIR");
            std::process::exit(2);
        }
    }
}
