//! Integration tests of keyrecon-sort and keyrecon-diff: the built binaries against a plain in-memory
//! `sort -u` + set difference, and against GNU sort + comm themselves.

mod support;

use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::Workdir;

const DIFF: &str = env!("CARGO_BIN_EXE_keyrecon-diff");
const SORT: &str = env!("CARGO_BIN_EXE_keyrecon-sort");

fn run(bin: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(bin);
    for a in args {
        c.arg(a);
    }
    c.arg("--quiet").output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited by signal")
}

/// Splits `data` like comm/sort do: records end at `term`, a last unterminated record counts, and empty
/// records are skipped (keyrecon counts them as blank; sort would keep one empty line, comm compares it).
fn records(data: &[u8], term: u8) -> BTreeSet<Vec<u8>> {
    let mut v: Vec<&[u8]> = data.split(|&b| b == term).collect();
    if data.last() == Some(&term) || data.is_empty() {
        v.pop();
    }
    v.into_iter().filter(|r| !r.is_empty()).map(|r| r.to_vec()).collect()
}

fn join(keys: impl IntoIterator<Item = Vec<u8>>, term: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for k in keys {
        out.extend_from_slice(&k);
        out.push(term);
    }
    out
}

/// The reference: (missing on target, missing on source, match), each sorted and deduplicated.
fn reference(src: &[u8], tgt: &[u8], term: u8) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (a, b) = (records(src, term), records(tgt, term));
    (
        join(a.difference(&b).cloned(), term),
        join(b.difference(&a).cloned(), term),
        join(a.intersection(&b).cloned(), term),
    )
}

fn random_keys(rng: &mut rand::rngs::StdRng, n: usize, term: u8) -> Vec<u8> {
    let alphabets: [&[u8]; 3] = [b"ab", b"a/b\r \x00\x7f\x80\xff\xc3\xa9\n", b"0123456789abcdef"];
    let alpha = alphabets[rng.gen_range(0..3)];
    let shared = if rng.gen_bool(0.5) { b"images/2024/01/".to_vec() } else { Vec::new() };
    let mut out = Vec::new();
    for _ in 0..n {
        let mut k = shared.clone();
        let len = if rng.gen_bool(0.01) { rng.gen_range(100..3000) } else { rng.gen_range(0..12) };
        k.extend((0..len).map(|_| alpha[rng.gen_range(0..alpha.len())]).filter(|&c| c != term));
        out.extend_from_slice(&k);
        out.push(term);
    }
    if rng.gen_bool(0.3) && out.last() == Some(&term) {
        out.pop(); // last record without terminator
    }
    out
}

#[test]
fn random_inputs_match_reference_for_every_engine_and_budget() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let w = Workdir::new();
    let mut spilled_rounds = 0;
    for round in 0..10 {
        let term = if round % 3 == 2 { 0u8 } else { b'\n' };
        let n_src = [0usize, 1, 50, 3000, 20000][rng.gen_range(0..5)];
        let src = random_keys(&mut rng, n_src, term);
        // Target: mostly the source's records plus noise, so all outcomes occur.
        let mut tgt = Vec::new();
        for r in src.split(|&b| b == term) {
            if rng.gen_bool(0.9) {
                tgt.extend_from_slice(r);
                tgt.push(term);
            }
        }
        let extra = rng.gen_range(0..2000);
        tgt.extend(random_keys(&mut rng, extra, term));
        let (s, t) = (w.write("s", &src), w.write("t", &tgt));
        let (mot, mos, mat) = reference(&src, &tgt, term);
        for (engine, mem) in [("hash", "1G"), ("hash", "1M"), ("sort", "1G"), ("sort", "64K")] {
            let out = w.join("out");
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
                vec![&s, &t, &"--out", &out, &"--engine", &engine, &"--mem", &mem, &"--match"];
            if term == 0 {
                args.push(&"-z");
            }
            let o = run(DIFF, &args);
            let ctx =
                format!("round {round} engine {engine} mem {mem} term {term}: {}", String::from_utf8_lossy(&o.stderr));
            // Random keys may contain \n only in -z mode, so lines mode never has unwritable keys here.
            assert_eq!(code(&o), if mot.is_empty() && mos.is_empty() { 0 } else { 1 }, "{ctx}");
            assert!(w.read("out/missing-on-target.txt") == mot, "missing-on-target differs: {ctx}");
            assert!(w.read("out/missing-on-source.txt") == mos, "missing-on-source differs: {ctx}");
            assert!(w.read("out/match.txt") == mat, "match differs: {ctx}");
            let sum = w.summary("out");
            let nrec = |d: &[u8]| records(d, term).len() as u64;
            assert_eq!(sum["source"]["unique_keys"], nrec(&src), "{ctx}");
            assert_eq!(sum["target"]["unique_keys"], nrec(&tgt), "{ctx}");
            let read = sum["source"]["records_read"].as_u64().unwrap();
            assert_eq!(
                read,
                sum["source"]["unique_keys"].as_u64().unwrap() + sum["source"]["duplicates"].as_u64().unwrap(),
                "{ctx}"
            );
            if engine == "hash" && sum["engine_stats"]["spilled_bytes"].as_u64().unwrap() > 0 {
                spilled_rounds += 1;
            }
        }
    }
    assert!(spilled_rounds >= 2, "the small budget must force the hash engine to spill in some rounds");
}

#[test]
fn one_key_repeated_beyond_the_budget_takes_the_sorting_fallback() {
    let w = Workdir::new();
    let mut src = b"hot-key\n".repeat(300_000);
    src.extend_from_slice(b"only-in-source\n");
    let s = w.write("s", &src);
    let t = w.write("t", b"hot-key\nonly-in-target\n");
    let out = w.join("out");
    let o = run(DIFF, &[&s, &t, &"--out", &out, &"--mem", &"1M", &"--engine", &"hash"]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(w.read("out/missing-on-target.txt"), b"only-in-source\n");
    assert_eq!(w.read("out/missing-on-source.txt"), b"only-in-target\n");
    let sum = w.summary("out");
    assert!(sum["engine_stats"]["oversized_partitions"].as_u64().unwrap() >= 1, "{sum}");
    assert_eq!(sum["source"]["duplicates"], 299_999);
    assert_eq!(sum["matched"], 1);
    assert!(sum["peak_rss_bytes"].as_u64().unwrap() < 64 << 20, "bounded memory: {sum}");
}

#[test]
fn fixture_equals_gnu_sort_and_comm_byte_for_byte() {
    if Command::new("comm").arg("--version").output().is_err() {
        panic!("GNU comm not found: run scripts/install-deps.sh");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (s, t) = (root.join("fixtures/keys.source.txt"), root.join("fixtures/keys.target.txt"));
    let w = Workdir::new();
    let sh = |cmd: &str| -> Vec<u8> {
        let o = Command::new("sh").arg("-c").arg(cmd).env("LC_ALL", "C").output().unwrap();
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let (ss, ts) = (w.join("s.sorted"), w.join("t.sorted"));
    sh(&format!("sort -u {} > {}; sort -u {} > {}", s.display(), ss.display(), t.display(), ts.display()));
    let out = w.join("out");
    let o = run(DIFF, &[&s, &t, &"--out", &out, &"--match", &"--combined"]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(w.read("out/missing-on-target.txt"), sh(&format!("comm -23 {} {}", ss.display(), ts.display())));
    assert_eq!(w.read("out/missing-on-source.txt"), sh(&format!("comm -13 {} {}", ss.display(), ts.display())));
    assert_eq!(w.read("out/match.txt"), sh(&format!("comm -12 {} {}", ss.display(), ts.display())));
    // combined.txt: every key once, in byte order, with rclone's markers.
    let combined = sh(&format!(
        "comm {} {} | sed -e 's/^\\t\\t/= /' -e 's/^\\t/- /' -e 's/^\\([^=-]\\)/+ \\1/'",
        ss.display(),
        ts.display()
    ));
    assert_eq!(w.read("out/combined.txt"), combined);
}

#[test]
#[allow(clippy::type_complexity)]
fn edge_cases_table() {
    // (source, target, missing-on-target, missing-on-source)
    let cases: Vec<(&[u8], &[u8], &[u8], &[u8])> = vec![
        (b"", b"", b"", b""),
        (b"a\n", b"", b"a\n", b""),
        (b"", b"a\n", b"", b"a\n"),
        (b"a\na\na\n", b"a", b"", b""),
        (b"ab\na\nabc\n", b"abc\nab", b"a\n", b""),
        (b"x\r\n", b"x\n", b"x\r\n", b"x\n"),
        (b"\xff\n\x80\n", b"\x80\n", b"\xff\n", b""),
        (b"\n\n\nk\n\n", b"k", b"", b""),
        (b" k\n", b"k \n", b" k\n", b"k \n"),
    ];
    let w = Workdir::new();
    for (i, (src, tgt, mot, mos)) in cases.into_iter().enumerate() {
        let (s, t, out) = (w.write("s", src), w.write("t", tgt), w.join("out"));
        for engine in ["hash", "sort"] {
            let o = run(DIFF, &[&s, &t, &"--out", &out, &"--engine", &engine]);
            let want = if mot.is_empty() && mos.is_empty() { 0 } else { 1 };
            assert_eq!(code(&o), want, "case {i} {engine}: {}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(w.read("out/missing-on-target.txt"), mot, "case {i} {engine}");
            assert_eq!(w.read("out/missing-on-source.txt"), mos, "case {i} {engine}");
        }
    }
    // A very long key is processed, one longer than --max-key-len is rejected with its line number.
    let long = vec![b'k'; 70_000];
    let mut src = b"a\n".to_vec();
    src.extend_from_slice(&long);
    src.extend_from_slice(b"\nb\n");
    let (s, t, out) = (w.write("s", &src), w.write("t", b"a\nb\n"), w.join("out"));
    let o = run(DIFF, &[&s, &t, &"--out", &out]);
    assert_eq!(code(&o), 2, "a rejected key must make the run exit 2");
    let rej = String::from_utf8_lossy(&w.read("out/rejects.csv")).into_owned();
    assert!(rej.contains(",2,\"key is 70000 bytes"), "{rej}");
    let o = run(DIFF, &[&s, &t, &"--out", &out, &"--max-key-len", &"100000"]);
    assert_eq!(code(&o), 1);
    assert_eq!(w.read("out/missing-on-target.txt").len(), 70_001);
}

#[test]
fn stdin_csv_and_exit_codes() {
    let w = Workdir::new();
    let t = w.write("t", b"k1\nk2\n");
    let out = w.join("out");
    // Identical sets (different order, duplicates): exit 0.
    let mut c = Command::new(DIFF)
        .args(["-", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"k2\nk1\nk1\n").unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(0));
    // CSV with a named key column (the format flags apply to both sides).
    let csv = w.write("c.csv", b"id,key\n1,k1\n2,\"k3\"\n3\n");
    let tcsv = w.write("t.csv", b"key,size\nk1,1\nk2,2\n");
    let o = run(DIFF, &[&csv, &tcsv, &"--out", &out, &"--format", &"csv", &"--csv-column", &"key", &"--header"]);
    assert_eq!(code(&o), 2, "row 4 lacks the key column: rejected -> exit 2");
    assert_eq!(w.read("out/missing-on-target.txt"), b"k3\n");
    assert_eq!(w.read("out/missing-on-source.txt"), b"k2\n");
    assert!(String::from_utf8_lossy(&w.read("out/rejects.csv")).contains("row has 1 columns"));
    // Errors: missing input, both sides stdin, unknown compare field. Each says what is wrong.
    for (args, needle) in [
        (vec!["/nonexistent/x", t.to_str().unwrap()], "/nonexistent/x"),
        (vec!["-", "-"], "cannot both be -"),
        (vec![t.to_str().unwrap(), t.to_str().unwrap(), "--compare", "size"], "carries no size"),
    ] {
        let o = Command::new(DIFF).args(&args).args(["--out", out.to_str().unwrap(), "-q"]).output().unwrap();
        assert_eq!(code(&o), 2, "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A run that cannot start leaves no output directory behind.
    let never = w.join("never");
    let o =
        Command::new(DIFF).args(["/nonexistent/x", t.to_str().unwrap(), "-q", "--out"]).arg(&never).output().unwrap();
    assert_eq!(code(&o), 2);
    assert!(!never.exists(), "--out was created for a run whose input does not exist");
}

#[test]
fn chunk_sets_round_trip_and_damage_is_an_error() {
    let w = Workdir::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let src = random_keys(&mut rng, 20000, b'\n');
    let tgt = random_keys(&mut rng, 20000, b'\n');
    let (s, t) = (w.write("s", &src), w.write("t", &tgt));
    let (sc, tc) = (w.join("s.chunks"), w.join("t.chunks"));
    // Small memory and chunk size: many runs, several output chunks.
    for (input, set) in [(&s, &sc), (&t, &tc)] {
        let o = run(SORT, &[input, &"--out", set, &"--mem", &"64K", &"--chunk-size", &"16K"]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&w.read("s.chunks/manifest.json")).unwrap();
    assert!(manifest["chunks"].as_array().unwrap().len() > 2);
    assert_eq!(manifest["records"].as_u64().unwrap(), records(&src, b'\n').len() as u64);
    // A second sort into the same directory is refused without --force.
    let o = run(SORT, &[&s, &"--out", &sc]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));

    let (mot, mos, _) = reference(&src, &tgt, b'\n');
    let out = w.join("out");
    for (a, b) in [(&sc, &tc), (&sc, &t), (&s, &tc)] {
        let o = run(DIFF, &[a, b, &"--out", &out]);
        assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            w.read("out/missing-on-target.txt") == mot && w.read("out/missing-on-source.txt") == mos,
            "{a:?} vs {b:?}"
        );
    }
    assert_eq!(w.summary("out")["engine"], "hash");

    // Truncate one chunk: an error naming the file, never "fewer keys".
    let chunk = sc.join(manifest["chunks"][1]["file"].as_str().unwrap());
    let bytes = std::fs::read(&chunk).unwrap();
    std::fs::write(&chunk, &bytes[..bytes.len() - 7]).unwrap();
    let o = run(DIFF, &[&sc, &tc, &"--out", &out]);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(chunk.file_name().unwrap().to_str().unwrap()) && err.contains("truncated"), "{err}");
    // Flip a byte in the data region: the checksum catches it, with the file and an offset.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    std::fs::write(&chunk, &bad).unwrap();
    let o = run(DIFF, &[&sc, &tc, &"--out", &out]);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("offset") && (err.contains("checksum") || err.contains("order") || err.contains("corrupt")),
        "{err}"
    );
    // A chunk set without a manifest (producer did not finish) is refused.
    std::fs::write(&chunk, &bytes).unwrap();
    std::fs::remove_file(sc.join("manifest.json")).unwrap();
    let o = run(DIFF, &[&sc, &tc, &"--out", &out]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("manifest.json"));
}

#[test]
fn keys_with_newlines_need_nul_output() {
    let w = Workdir::new();
    let (s, t) = (w.write("s", b"a\nb\0c\0"), w.write("t", b"c\0"));
    let out = w.join("out");
    let o = run(DIFF, &[&s, &t, &"--out", &out, &"-z"]);
    assert_eq!(code(&o), 1);
    assert_eq!(w.read("out/missing-on-target.txt"), b"a\nb\0");
}

#[test]
fn sort_key_map_carries_origin_into_the_diff_csv_and_rejects_with_line() {
    let w = Workdir::new();
    // 21 bytes ending in _1: the seed migration stored it without the suffix.
    let s = w.write("s", b"t01aaaaaaaaaaaaaaaa_1\nt01bbbb\nxyz\n");
    let sc = w.join("s.chunks");
    let rules = "if length == 21 and ends-with _1 then strip-suffix _1; require-prefix t01";
    let o = run(SORT, &[&s, &"--out", &sc, &"--key-map", &rules]);
    assert_eq!(
        code(&o),
        0,
        "a key the user's rules reject is filtered, not trouble: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rej = String::from_utf8_lossy(&w.read("s.chunks/rejects.csv")).into_owned();
    assert!(rej.contains(",3,") && rej.contains("xyz") && rej.contains("t01"), "{rej}");
    let t = w.write("t", b"t01bbbb\n");
    let out = w.join("out");
    let o = run(DIFF, &[&sc, &t, &"--out", &out]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(w.read("out/missing-on-target.txt"), b"t01aaaaaaaaaaaaaaaa\n");
    assert_eq!(
        String::from_utf8_lossy(&w.read("out/missing-on-target.csv")),
        "key,origin\nt01aaaaaaaaaaaaaaaa,t01aaaaaaaaaaaaaaaa_1\n"
    );
}
