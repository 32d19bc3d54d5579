//! Issue 12, part 3 (flat memory): keyrecon-repair and keyrecon-verify over 300,000 keys stay under a
//! fixed peak RSS. Measured on a real Cassandra, the old repair kept every key, the journal's done set
//! and the outcomes in memory, ~610 B per key: 300k keys alone would be ~175 MiB above its base. Now the
//! keys, the journal and the results go through the engine's external sorter (`--mem`), so the peak is a
//! fixed base + the sort budget + keys in flight x object size, whatever the input holds.
//!
//! Every key is absent (not found on the CQL test node, missing from an empty bucket): each costs one
//! cheap request, and the run still sorts the input, writes and sorts the journal, and renders the
//! outcome files. `peak_rss_bytes` is the process's VmHWM, written to summary.json by the tool itself.

mod support;
mod support_cql;
mod support_s3;

use std::path::{Path, PathBuf};
use support::{assert_code, csv_rows, s, summary, Workdir};
use support_cql::{cass_key, s3_key};
use support_s3::garage;

const REPAIR: &str = env!("CARGO_BIN_EXE_keyrecon-repair");
const VERIFY: &str = env!("CARGO_BIN_EXE_keyrecon-verify");

const N: usize = 300_000;
/// Every 100th key is given twice (the first wins).
const DUPLICATES: usize = N / 100;
/// These runs peak at 55-65 MiB. The code before issue 12 reached 187 MiB (repair), 313 MiB (its
/// --resume) and 164 MiB (verify) on the same keys.
const BOUND: u64 = 120 << 20;
const MEM: &str = "32M";

/// A missing-on-target.csv of N keys (with their Cassandra key as origin, and a size) in scrambled
/// order, every 100th key repeated at the end.
fn keys_csv(t: &Workdir) -> PathBuf {
    let mut v = String::with_capacity(N * 64);
    v.push_str("key,size,origin\n");
    // 7919 is prime and does not divide N: j -> j * 7919 mod N visits every i once.
    let row = |i: usize| format!("{},{},{}\n", s3_key(i), 1000 + i % 7, cass_key(i));
    for j in 0..N {
        v.push_str(&row(j * 7919 % N));
    }
    for i in (0..N).step_by(100) {
        v.push_str(&row(i));
    }
    t.write("missing-on-target.csv", v)
}

fn peak_rss(out: &Path) -> u64 {
    summary(out)["peak_rss_bytes"].as_u64().expect("peak_rss_bytes in summary.json")
}

/// The `key` column of an outcome file: every key once, in byte order.
fn assert_every_key_once_sorted(path: &Path) {
    let rows = csv_rows(path);
    assert_eq!(rows.len(), N, "{}", path.display());
    assert!(rows.windows(2).all(|w| w[0][0] < w[1][0]), "{}: keys strictly increasing", path.display());
    assert_eq!(&rows[0][0], s3_key(0).as_str());
    assert_eq!(&rows[N - 1][0], s3_key(N - 1).as_str());
}

#[test]
fn repair_of_300k_keys_stays_under_a_fixed_peak_rss() {
    let node = support_cql::node(vec![("objects", vec![])]);
    let bucket = garage().create_bucket("flat-repair");
    let t = Workdir::new();
    let keys = keys_csv(&t);
    let out = t.join("r");
    let run = |extra: &[&str]| {
        garage()
            .command(REPAIR, &garage().endpoint)
            .args(["--keys", s(&keys), "--out", s(&out), "--bucket", &bucket])
            .args(["--contact-points", &node.addr().to_string(), "--consistency", "ONE"])
            .args(["--source", "media.objects", "--key-column", "id", "-j", "32", "-q"])
            .args(["--mem", MEM, "--tmp", s(t.root())])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert_code(&o, 1);
    let sm = summary(&out);
    assert_eq!(sm["keys_input"], N as u64, "{sm}");
    assert_eq!(sm["duplicate_keys_in_input"], DUPLICATES as u64, "{sm}");
    assert_eq!(sm["outcomes"]["not_found"], N as u64, "{sm}");
    let nf = out.join("not-found.csv");
    assert_every_key_once_sorted(&nf);
    // The origin travelled with its key through the sort.
    assert_eq!(&csv_rows(&nf)[0][1], cass_key(0).as_str());
    let first = peak_rss(&out);
    eprintln!("keyrecon-repair, {N} keys: peak RSS {:.1} MiB", first as f64 / (1 << 20) as f64);
    assert!(first < BOUND, "peak RSS {first} bytes over {N} keys: not flat (bound {BOUND})");

    // --resume over the finished run: the journal's 300k final records are read back, every key is
    // skipped, and the outcome files come out the same.
    let before = std::fs::read(&nf).unwrap();
    let o = run(&["--resume"]);
    assert_code(&o, 1);
    let sm = summary(&out);
    assert_eq!((sm["skipped_done_earlier"].as_u64(), sm["processed"].as_u64()), (Some(N as u64), Some(0)), "{sm}");
    assert_eq!(std::fs::read(&nf).unwrap(), before, "the outcome files are rendered from the journal alone");
    let resumed = peak_rss(&out);
    eprintln!("keyrecon-repair --resume, {N} keys: peak RSS {:.1} MiB", resumed as f64 / (1 << 20) as f64);
    assert!(resumed < BOUND, "peak RSS {resumed} bytes resuming {N} keys: not flat (bound {BOUND})");
    // Nothing left behind in --tmp but what the test put there.
    let left: Vec<_> = std::fs::read_dir(t.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "scratch files left in --tmp: {left:?}");
}

#[test]
fn verify_of_300k_keys_stays_under_a_fixed_peak_rss() {
    let bucket = garage().create_bucket("flat-verify");
    let t = Workdir::new();
    let keys = keys_csv(&t);
    let out = t.join("v");
    let o = garage()
        .command(VERIFY, &garage().endpoint)
        .args(["--keys", s(&keys), "--out", s(&out), "--bucket", &bucket, "-j", "32", "-q"])
        .args(["--mem", MEM, "--tmp", s(t.root())])
        .output()
        .unwrap();
    assert_code(&o, 1);
    let sm = summary(&out);
    assert_eq!((sm["keys_input"].as_u64(), sm["outcomes"]["missing"].as_u64()), (Some(N as u64), Some(N as u64)));
    assert_every_key_once_sorted(&out.join("missing.csv"));
    let peak = peak_rss(&out);
    eprintln!("keyrecon-verify, {N} keys: peak RSS {:.1} MiB", peak as f64 / (1 << 20) as f64);
    assert!(peak < BOUND, "peak RSS {peak} bytes over {N} keys: not flat (bound {BOUND})");
}
