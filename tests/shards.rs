//! Sharded listings (issue 12, part 2): N listers, one process per shard as N machines would run them,
//! against the real services (Garage for S3, the CQL test node for Cassandra), and keyrecon-diff over the
//! N chunk sets. A sharded listing must diff exactly like the unsharded one, byte for byte; a side with a
//! missing, doubled or foreign shard must be refused before anything is written; a resume must keep to
//! its shard.
mod support;
mod support_cql;
mod support_s3;

use cql_test_node::{BlockingNode, Fault, Row};
use keyrecon::chunk::Shard;
use keyrecon::sources::cassandra::ring;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use support::{assert_code, keys_of, read_set, s, summary, Workdir};
use support_s3::{garage, proxy};

const DIFF: &str = env!("CARGO_BIN_EXE_keyrecon-diff");

/// Keys spread over printable ASCII (so every shard of both listers gets some), plus the S3 shard
/// boundaries of 3 and 7 shards themselves and their neighbours, and non-ASCII keys (the last S3 shard).
fn fixture_keys() -> Vec<String> {
    // '/' and '\' are left out as first characters only to keep URLs plain; everything else printable.
    let firsts: Vec<char> = (0x21u8..0x7f).map(char::from).filter(|c| !"/\\".contains(*c)).collect();
    let mut v: Vec<String> =
        (0..560).map(|i| format!("{}{:04x}", firsts[i % firsts.len()], i * 7919 % 65536)).collect();
    for n in [3, 7] {
        for b in keyrecon::sources::s3::ranges::shard_bounds("", None, None, n) {
            let b = String::from_utf8(b).unwrap();
            v.extend([b.clone(), format!("{b}0"), format!("{b} x")]);
        }
    }
    v.extend(["é-1", "日本/2", "~~~", "!"].map(String::from));
    v.sort();
    v.dedup();
    v
}

/// Blob of key i: 10 + i % 40 bytes.
fn blob(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; 10 + i % 40]
}

/// Both stores of a migration that lost some keys: Cassandra `media.objects` holds every fixture key
/// (and `media.other` a few), the bucket all but every 7th, one with a truncated body, and one orphan.
struct Stores {
    node: BlockingNode,
    bucket: String,
}

fn stores(bucket: &str) -> Stores {
    let keys = fixture_keys();
    let rows: Vec<Row> = keys.iter().enumerate().map(|(i, k)| Row::new(k.as_str()).blob("blob", blob(i))).collect();
    let other: Vec<Row> = keys.iter().take(20).map(|k| Row::new(k.as_str()).blob("blob", b"x".to_vec())).collect();
    let node = support_cql::node(vec![("objects", rows), ("other", other)]);
    let g = garage();
    g.create_bucket(bucket);
    let rt = support_s3::runtime();
    let c = g.client();
    rt.block_on(async {
        use futures::StreamExt;
        let puts = keys.iter().enumerate().filter(|(i, _)| i % 7 != 0).map(|(i, k)| {
            let mut body = blob(i);
            if i == 10 {
                body.truncate(3);
            }
            (k.clone(), body)
        });
        let puts = puts.chain([("orphan-1".to_string(), b"o".to_vec())]);
        futures::stream::iter(puts)
            .map(|(k, body)| {
                let c = c.clone();
                async move { c.put_object().bucket(bucket).key(&k).body(body.into()).send().await.expect("put") }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    });
    Stores { node, bucket: bucket.to_string() }
}

/// keyrecon-list-cassandra of `media.TABLE` (sizes from the blob, no key map) into `out`.
fn list_cassandra(node: &BlockingNode, table: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(support_cql::LIST_CASSANDRA);
    c.args(["--contact-points", &node.addr().to_string(), "--keyspace", "media", "--table", table])
        .args(["--key-column", "id", "--size-of", "blob", "--request-timeout", "5", "-q", "--out"])
        .arg(out)
        .args(extra)
        .env_remove("KEYRECON_CASSANDRA_USERNAME")
        .env_remove("KEYRECON_CASSANDRA_PASSWORD");
    c
}

/// keyrecon-list-s3 of `bucket` into `out`.
fn list_s3(bucket: &str, out: &Path, extra: &[&str]) -> Command {
    let g = garage();
    let mut c = g.command_via(&g.endpoint, &["--bucket", bucket, "-j", "4", "-q", "--out", s(out)]);
    c.args(extra);
    c
}

/// Runs the commands at once (N machines), waits for all; each must exit 0.
fn run_all(cmds: Vec<Command>) {
    let children: Vec<_> = cmds.into_iter().map(|mut c| c.spawn().expect("spawn lister")).collect();
    for ch in children {
        assert_code(&ch.wait_with_output().unwrap(), 0);
    }
}

/// The N shard directories of a listing under `dir`.
fn shard_dirs(dir: &Path, name: &str, n: u32) -> Vec<PathBuf> {
    (1..=n).map(|i| dir.join(format!("{name}-{i}of{n}"))).collect()
}

fn diff(args: &[&str], sources: &[PathBuf], targets: &[PathBuf], out: &Path) -> Output {
    let mut c = Command::new(DIFF);
    for p in sources {
        c.arg("--source").arg(p);
    }
    for p in targets {
        c.arg("--target").arg(p);
    }
    c.args(args).arg("--out").arg(out).arg("-q").output().unwrap()
}

/// Every file a diff wrote but summary.json, and the summary's counts: what must not depend on sharding.
fn outcome(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "summary.json")
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    let sum = summary(out);
    for k in ["missing_on_target", "missing_on_source", "differ", "matched", "details", "exit_code"] {
        v.push((k.to_string(), sum[k].to_string().into_bytes()));
    }
    v
}

fn manifest_info(dir: &Path) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m["info"].clone()
}

/// The diff the sharded ones must equal: what the migration lost, found over unsharded listings.
fn check_baseline(out: &Path) {
    let read = |f: &str| String::from_utf8(std::fs::read(out.join(f)).unwrap()).unwrap();
    let keys = fixture_keys();
    let mut lost: Vec<&String> = keys.iter().enumerate().filter(|(i, _)| i % 7 == 0).map(|(_, k)| k).collect();
    lost.sort();
    assert_eq!(read("missing-on-target.txt"), lost.iter().map(|k| format!("{k}\n")).collect::<String>());
    assert_eq!(read("missing-on-source.txt"), "orphan-1\n");
    assert_eq!(read("differ.txt"), format!("{}\n", keys[10]));
}

/// Both stores listed whole, and their diff with each engine: what a sharded listing's diff must equal.
struct Baseline {
    st: Stores,
    t: Workdir,
    cass: PathBuf,
    s3: PathBuf,
}

fn baseline(bucket: &str) -> Baseline {
    let (st, t) = (stores(bucket), Workdir::new());
    let (cass, s3) = (t.join("cass"), t.join("s3"));
    run_all(vec![list_cassandra(&st.node, "objects", &cass, &[]), list_s3(&st.bucket, &s3, &[])]);
    let b = Baseline { st, t, cass, s3 };
    for engine in ["sort", "hash"] {
        let out = b.out(engine, 0);
        assert_code(&diff(&[s(&b.cass), s(&b.s3), "--engine", engine], &[], &[], &out), 1);
        check_baseline(&out);
    }
    b
}

impl Baseline {
    fn out(&self, engine: &str, shards: u32) -> PathBuf {
        self.t.join(format!("diff-{engine}-{shards}"))
    }

    /// Diffs `whole` (the other side's whole listing, as a positional) against `n` shards given with
    /// `--source` or `--target`, with each engine: the outcome must equal the whole listings' diff.
    fn assert_diffs_like_whole(&self, whole: &Path, sources: &[PathBuf], targets: &[PathBuf], n: u32) {
        for engine in ["sort", "hash"] {
            let out = self.out(engine, n);
            assert_code(&diff(&[s(whole), "--engine", engine], sources, targets, &out), 1);
            assert_eq!(outcome(&out), outcome(&self.out(engine, 0)), "{engine} engine, {n} shards");
            let sum = summary(&out);
            let side = &sum[if sources.is_empty() { "target" } else { "source" }];
            let inputs = side["inputs"].as_array().unwrap();
            assert_eq!(inputs.len(), n as usize, "summary.json lists every input: {side}");
            assert_eq!(inputs[0]["listing"]["shard"], serde_json::json!({"index": 1, "count": n}), "{side}");
        }
    }
}

#[test]
fn s3_listing_in_1_3_and_7_shards_diffs_like_the_unsharded_listing() {
    let b = baseline("shards-s3");
    let whole_keys = keys_of(&read_set(&b.s3));
    for n in [1u32, 3, 7] {
        let dirs = shard_dirs(b.t.root(), "s3", n);
        let shard = |i: usize| format!("{}/{n}", i + 1);
        run_all(dirs.iter().enumerate().map(|(i, d)| list_s3(&b.st.bucket, d, &["--shard", &shard(i)])).collect());
        // The shards partition the listing: their keys, in shard order, are the unsharded listing's.
        let mut concat = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            let keys = keys_of(&read_set(d));
            assert!(!keys.is_empty(), "shard {} of {n} is empty: the fixture should reach every shard", i + 1);
            concat.extend(keys);
            let listing = &manifest_info(d)["listing"];
            assert_eq!(listing["shard"], serde_json::json!({"index": i + 1, "count": n}), "{listing}");
            assert_eq!(listing["what"], "s3://shards-s3/");
            assert_eq!(summary(d)["listing"], *listing, "summary.json records the listing too");
        }
        assert_eq!(concat, whole_keys, "{n} shards");
        b.assert_diffs_like_whole(&b.cass, &[], &dirs, n);
    }
}

#[test]
fn cassandra_listing_in_1_3_and_7_shards_diffs_like_the_unsharded_listing() {
    let b = baseline("shards-cass");
    let whole = read_set(&b.cass);
    for n in [1u32, 3, 7] {
        let dirs = shard_dirs(b.t.root(), "cass", n);
        let cmds = dirs.iter().enumerate().map(|(i, d)| {
            let shard = format!("{}/{n}", i + 1);
            list_cassandra(&b.st.node, "objects", d, &["--shard", &shard, "--splits", "16"])
        });
        run_all(cmds.collect());
        // Each shard holds exactly the keys whose token is in its slice of the ring.
        let mut all = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            let slice = ring::shard_slice(Shard::new(i as u32 + 1, n).unwrap());
            let recs = read_set(d);
            assert!(!recs.is_empty(), "shard {} of {n} is empty", i + 1);
            for (k, _) in &recs {
                assert!(slice.contains(cql_test_node::token(k)), "{k:?} is not in shard {} of {n}", i + 1);
            }
            all.extend(recs);
            let info = manifest_info(d);
            assert_eq!(info["listing"]["shard"], serde_json::json!({"index": i + 1, "count": n}), "{info}");
            assert_eq!(info["listing"]["what"], "media.objects");
            assert_eq!(summary(d)["listing"], info["listing"]);
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all, whole, "the shards together hold the unsharded listing, each key once");
        b.assert_diffs_like_whole(&b.s3, &dirs, &[], n);
    }
}

/// keyrecon-diff with a bad side: exit 2, the message naming the problem, and no outcome files.
#[track_caller]
fn refused(o: Output, out: &Path, want: &str) {
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(want), "want {want:?} in:\n{err}");
    assert!(!out.exists(), "nothing written for a refused diff: {:?}", std::fs::read_dir(out).ok().map(|d| d.count()));
}

#[test]
fn a_missing_doubled_or_mismatched_shard_is_refused_before_anything_is_written() {
    let st = stores("shards-bad");
    let t = Workdir::new();
    let p = |n: &str| t.join(n);
    let s3 = shard_dirs(t.root(), "s3", 3);
    let (s3_of_4, s3_prefix, cass) = (p("s3-2of4"), p("s3-A-2of3"), p("cass"));
    let (objects, other) = (p("objects-1of2"), p("other-2of2"));
    let mut cmds: Vec<Command> =
        s3.iter().enumerate().map(|(i, d)| list_s3(&st.bucket, d, &["--shard", &format!("{}/3", i + 1)])).collect();
    let s3_whole = p("s3-whole");
    cmds.push(list_s3(&st.bucket, &s3_whole, &[]));
    cmds.push(list_s3(&st.bucket, &s3_of_4, &["--shard", "2/4"]));
    cmds.push(list_s3(&st.bucket, &s3_prefix, &["--shard", "2/3", "--prefix", "A"]));
    cmds.push(list_cassandra(&st.node, "objects", &cass, &[]));
    cmds.push(list_cassandra(&st.node, "objects", &objects, &["--shard", "1/2"]));
    cmds.push(list_cassandra(&st.node, "other", &other, &["--shard", "2/2"]));
    run_all(cmds);
    // A copy of shard 1, as a careless rsync would leave it.
    let copy = p("copy");
    std::fs::create_dir_all(&copy).unwrap();
    assert!(Command::new("cp").arg("-r").arg(&s3[0]).arg(&copy).status().unwrap().success());
    let s3_copy = copy.join(s3[0].file_name().unwrap());
    let out = p("diff");
    let c = [s(&cass)];

    refused(
        diff(&c, &[], &[s3[0].clone(), s3[2].clone()], &out),
        &out,
        "keyrecon-diff: error: target: shard 2/3 of s3://shards-bad/ is missing",
    );
    // One shard alone, as a positional: the other two are missing.
    refused(diff(&[s(&cass), s(&s3[1])], &[], &[], &out), &out, "shards 1/3, 3/3 of s3://shards-bad/ are missing");
    refused(
        diff(&c, &[], &[s3[0].clone(), s3_copy.clone(), s3[1].clone(), s3[2].clone()], &out),
        &out,
        &format!("shard 1/3 is given twice ({} and {})", s(&s3[0]), s(&s3_copy)),
    );
    refused(
        diff(&c, &[], &[s3[0].clone(), s3_prefix.clone(), s3[2].clone()], &out),
        &out,
        &format!("{} lists s3://shards-bad/, {} lists s3://shards-bad/A", s(&s3[0]), s(&s3_prefix)),
    );
    refused(
        diff(&c, &[], &[s3[0].clone(), s3_of_4.clone(), s3[2].clone()], &out),
        &out,
        &format!("{} is a shard of 3, {} of 4", s(&s3[0]), s(&s3_of_4)),
    );
    refused(
        diff(&[s(&s3[0])], &[objects.clone(), other.clone()], &[], &out),
        &out,
        &format!("source: {} lists media.objects, {} lists media.other", s(&objects), s(&other)),
    );
    // A whole listing mixed into a side of shards.
    refused(
        diff(&c, &[], &[s3[0].clone(), s3[1].clone(), s3[2].clone(), s3_whole.clone()], &out),
        &out,
        &format!("{} is shard 1/3 of s3://shards-bad/, {} is the whole listing", s(&s3[0]), s(&s3_whole)),
    );

    // Chunk sets that are not shards (keyrecon-sort outputs) merge without checks, but not with shards.
    let keys = fixture_keys();
    let (a, b) = (p("a.txt"), p("b.txt"));
    std::fs::write(&a, keys[..300].iter().map(|k| format!("{k}\n")).collect::<String>()).unwrap();
    std::fs::write(&b, keys[200..].iter().map(|k| format!("{k}\n")).collect::<String>()).unwrap();
    let all = p("all.txt");
    std::fs::write(&all, keys.iter().map(|k| format!("{k}\n")).collect::<String>()).unwrap();
    for (f, d) in [(&a, p("a.chunks")), (&b, p("b.chunks"))] {
        let o =
            Command::new(env!("CARGO_BIN_EXE_keyrecon-sort")).arg(f).arg("--out").arg(&d).arg("-q").output().unwrap();
        assert_code(&o, 0);
    }
    refused(
        diff(&c, &[], &[s3[0].clone(), s3[1].clone(), s3[2].clone(), p("a.chunks")], &out),
        &out,
        &format!("{} is shard 1/3 of s3://shards-bad/, {} is not a shard of a listing", s(&s3[0]), s(&p("a.chunks"))),
    );
    let o = diff(&[s(&all)], &[p("a.chunks"), p("b.chunks")], &[], &out);
    assert_code(&o, 0);
    assert_eq!(summary(&out)["source"]["duplicates"], 100, "the overlap counted once");
}

#[test]
fn a_resume_keeps_to_its_shard_and_completes_it() {
    let st = stores("shards-resume");
    let g = garage();
    let t = Workdir::new();
    let p = |n: &str| t.join(n);

    // S3: every page of the first run fails, leaving shard 1/3 unfinished with its checkpoint.
    let clean = p("s3-clean");
    run_all(vec![list_s3(&st.bucket, &clean, &["--shard", "1/3"])]);
    let failing = proxy::start(&g.endpoint, Arc::new(|line: &str, _| line.contains("list-type=2").then_some(500)));
    let dir = p("s3");
    let args = |extra: &[&'static str]| {
        let mut a = vec!["--bucket", st.bucket.as_str(), "--out", s(&dir), "-q"];
        a.extend(extra);
        a
    };
    assert_code(&g.list_via(&failing.endpoint, &args(&["--shard", "1/3", "--retries", "0"])), 2);
    assert!(dir.join("checkpoint.json").exists());
    let o = g.list(&args(&["--resume", "--shard", "2/3"]));
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("written for shard 1/3, this run asks for shard 2/3"), "{err}");
    let o = g.list(&args(&["--resume"]));
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("this run asks for the whole bucket"));
    assert_code(&g.list(&args(&["--resume", "--shard", "1/3"])), 0);
    assert_eq!(keys_of(&read_set(&dir)), keys_of(&read_set(&clean)), "resumed shard = clean shard");
    assert_eq!(manifest_info(&dir)["listing"], manifest_info(&clean)["listing"]);

    // Cassandra: a token range inside shard 1/3 keeps failing; the journal is kept.
    let slice = ring::shard_slice(Shard::new(1, 3).unwrap());
    let bad = fixture_keys().into_iter().find(|k| slice.contains(cql_test_node::token(k.as_bytes()))).unwrap();
    let bad = cql_test_node::token(bad.as_bytes());
    let clean = p("cass-clean");
    run_all(vec![list_cassandra(&st.node, "objects", &clean, &["--shard", "1/3"])]);
    st.node.faults().fail_token_range(bad, bad, Fault::ReadTimeout);
    let dir = p("cass");
    let flaky = ["--shard", "1/3", "--retries", "0", "--split-depth", "1", "--latency-target", "100000"];
    let o = list_cassandra(&st.node, "objects", &dir, &flaky).output().unwrap();
    assert_code(&o, 2);
    assert!(dir.join(".keyrecon-scan/journal.jsonl").exists());
    st.node.faults().clear();
    let o = list_cassandra(&st.node, "objects", &dir, &["--resume", "--shard", "2/3"]).output().unwrap();
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("listed media.objects shard 1/3, this run asks for shard 2/3"), "{err}");
    let o = list_cassandra(&st.node, "objects", &dir, &["--resume"]).output().unwrap();
    assert_code(&o, 2);
    assert_code(&list_cassandra(&st.node, "objects", &dir, &["--resume", "--shard", "1/3"]).output().unwrap(), 0);
    assert_eq!(read_set(&dir), read_set(&clean), "resumed shard = clean shard");
}
