//! keyrecon-verify against the real Garage and the CQL test node: existence, and with --deep the size
//! and content (MD5 ETag, multipart ETag recomputed from the blob) of objects repaired by keyrecon-repair.

mod support;
mod support_cql;
mod support_s3;

use cql_test_node::{BlockingNode, Fault, Row, TlsCerts};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use support::{assert_code, assert_secret_absent, csv_rows as rows_of, run_keeping_secret, s, summary, Workdir};
use support_s3::garage;

const REPAIR: &str = env!("CARGO_BIN_EXE_keyrecon-repair");
const VERIFY: &str = env!("CARGO_BIN_EXE_keyrecon-verify");

fn node(rows: Vec<Row>) -> BlockingNode {
    support_cql::node(vec![("objects", rows)])
}

fn bucket(name: &str) -> String {
    garage().create_bucket(name)
}

fn put(bucket: &str, key: &str, body: &[u8]) {
    garage().put_object(bucket, key, body)
}

fn run(bin: &str, args: &[&str]) -> Output {
    let g = garage();
    g.command(bin, &g.endpoint).args(args).output().unwrap()
}

fn by_key(path: &Path, col: usize) -> BTreeMap<String, String> {
    rows_of(path).iter().map(|r| (r[0].to_string(), r[col].to_string())).collect()
}

#[test]
fn shallow_verify_finds_missing_keys() {
    let b = bucket("verify-shallow");
    put(&b, "here", b"1");
    put(&b, "p/also", b"2");
    let t = Workdir::new();
    let keys = t.write("keys.txt", "here\ngone\n");
    let out = t.join("v");
    let o = run(VERIFY, &["--keys", s(&keys), "--bucket", &b, "--out", s(&out), "-q"]);
    assert_code(&o, 1);
    assert_eq!(by_key(&out.join("ok.csv"), 5), BTreeMap::from([("here".to_string(), "exists".to_string())]));
    assert_eq!(rows_of(&out.join("missing.csv")).iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), vec!["gone"]);
    // --prefix forms the S3 key; all present: exit 0.
    std::fs::write(&keys, "also\n").unwrap();
    let o = run(VERIFY, &["--keys", s(&keys), "--bucket", &b, "--prefix", "p/", "--out", s(&t.join("v2")), "-q"]);
    assert_code(&o, 0);
}

/// A HEAD that gets 503 SlowDown or 500 is retried (and slows verify down), never taken as "missing".
#[test]
fn s3_errors_on_head_are_retried_not_reported_missing() {
    let g = garage();
    let b = bucket("verify-faults");
    let keys: Vec<String> = (0..15).map(|i| format!("k{i:02}")).collect();
    for k in &keys {
        put(&b, k, k.as_bytes());
    }
    // Every 3rd request a 503, every 7th a 500 (HEAD only: nothing else is sent).
    let p = support_s3::proxy::start(&g.endpoint, support_s3::proxy::transient_faults(""));
    let t = Workdir::new();
    let list = t.write("keys.txt", keys.iter().map(|k| format!("{k}\n")).collect::<String>());
    let out = t.join("v");
    let o = g
        .command(VERIFY, &p.endpoint)
        .args(["--keys", s(&list), "--bucket", &b, "--out", s(&out), "-q", "--retries", "9", "-j", "4"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(rows_of(&out.join("ok.csv")).len(), 15);
    let sum = summary(&out);
    let injected = p.stats.injected.load(std::sync::atomic::Ordering::Relaxed);
    assert!(injected >= 5, "faults were injected: {injected}");
    assert_eq!(sum["retries_s3"], injected, "every injected fault was retried and counted: {sum}");
    assert_eq!(sum["outcomes"]["missing"], 0, "{sum}");
}

#[test]
fn deep_verify_compares_size_md5_and_multipart_etags_with_the_blobs() {
    let big: Vec<u8> = (0..(300 * 1024 + 5)).map(|i| (i * 7 % 253) as u8).collect();
    let mut rows: Vec<Row> =
        (0..30).map(|i| Row::new(format!("k{i:02}")).blob("blob", vec![b'a' + i as u8; 100 + i])).collect();
    rows.push(Row::new("big").blob("blob", big.clone()));
    let n = node(rows);
    let b = bucket("verify-deep");
    let t = Workdir::new();
    let keys = t.join("keys.txt");
    let mut names: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
    names.push("big".into());
    std::fs::write(&keys, names.join("\n") + "\n").unwrap();
    let rep = t.join("repair");
    let cass = [
        "--contact-points",
        &n.addr().to_string(),
        "--source",
        "media.objects",
        "--key-column",
        "id",
        "--consistency",
        "ONE",
    ];
    let mut args = vec![
        "--keys",
        s(&keys),
        "--bucket",
        &b,
        "--out",
        s(&rep),
        "--multipart-threshold",
        "100K",
        "--part-size",
        "128K",
        "-q",
    ];
    args.extend(cass);
    assert_code(&run(REPAIR, &args), 0);

    // Damage two objects after the repair: same size other bytes, and other size.
    put(&b, "k03", &[b'X'; 103]);
    put(&b, "k04", b"short");
    n.faults().fail_next(3, Fault::ReadTimeout);
    let out = t.join("verify");
    let ok_csv = rep.join("ok.csv");
    let mut args = vec!["--keys", s(&ok_csv), "--bucket", &b, "--deep", "--out", s(&out), "-q"];
    args.extend(cass);
    let o = run(VERIFY, &args);
    assert_code(&o, 1);
    let differ = by_key(&out.join("differ.csv"), 8);
    assert_eq!(differ.len(), 2, "{differ:?}");
    assert!(differ["k03"].starts_with("md5: S3 ETag "), "{differ:?}");
    assert!(differ["k04"].starts_with("size: S3 5 bytes, blob 104 bytes"), "{differ:?}");
    let ok = by_key(&out.join("ok.csv"), 5);
    assert_eq!(ok.len(), 29);
    assert_eq!(ok["k00"], "md5");
    assert_eq!(ok["big"], "multipart-etag(part size 131072)", "part size asked with HEAD ?partNumber=1");
    let sum = summary(&out);
    assert_eq!(sum["retries_cassandra"], 3, "ReadTimeouts retried: {sum}");
    assert_eq!(
        (sum["compared_md5"].as_u64(), sum["compared_multipart_etag"].as_u64()),
        (Some(29), Some(1)),
        "28 ok + k03 by MD5 (k04 was decided by its size): {sum}"
    );

    // Given the part size, no per-part HEAD is needed; a wrong one is a difference, said so.
    let v2 = t.join("v2");
    let mut args = vec!["--keys", s(&ok_csv), "--bucket", &b, "--deep", "--part-size", "100K", "--out", s(&v2), "-q"];
    args.extend(cass);
    assert_code(&run(VERIFY, &args), 1);
    let differ = by_key(&v2.join("differ.csv"), 7);
    assert_eq!(differ["big"], "multipart-etag(part size 102400)");
}

#[test]
fn keys_that_cannot_be_checked_are_failed_with_the_reason() {
    let n = node(vec![Row::new("there").blob("blob", b"x".to_vec())]);
    let b = bucket("verify-failed");
    put(&b, "there", b"x");
    put(&b, "orphan", b"y");
    let t = Workdir::new();
    let keys = t.write("keys.txt", b"there\norphan\nbad\xff\n");
    let out = t.join("v");
    let addr = n.addr().to_string();
    let o = run(
        VERIFY,
        &[
            "--keys",
            s(&keys),
            "--bucket",
            &b,
            "--deep",
            "--contact-points",
            &addr,
            "--source",
            "media.objects",
            "--key-column",
            "id",
            "--out",
            s(&out),
            "-q",
        ],
    );
    assert_code(&o, 2);
    let data = std::fs::read(out.join("failed.csv")).unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("orphan,,fetch,") && text.contains("not in media.objects"), "{text}");
    let want: &[u8] = b"\nbad\xff,,key,0,target key is not valid UTF-8";
    assert!(data.windows(want.len()).any(|w| w == want), "{text}");
    assert_eq!(by_key(&out.join("ok.csv"), 5), BTreeMap::from([("there".to_string(), "md5".to_string())]));
}

/// `keyrecon-verify --deep` of `keys` in `bucket` against `node` (media.objects) with `extra` flags and
/// environment `env` (nothing else of the test's environment).
fn deep(node: &BlockingNode, bucket: &str, keys: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let g = garage();
    let mut c = g.command(VERIFY, &g.endpoint);
    c.args(["--keys", s(keys), "--bucket", bucket, "--deep", "--contact-points", &node.addr().to_string()])
        .args(["--source", "media.objects", "--key-column", "id", "--consistency", "ONE", "--out", s(out), "-q"])
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Issue 13: a deep verify through TLS and password authentication compares every object with its blob;
/// a wrong password or an untrusted CA fails with exit 2 and a clear message, no password anywhere.
#[test]
fn deep_verify_through_tls_and_a_password() {
    let certs = TlsCerts::generate().unwrap();
    let blobs: Vec<(String, Vec<u8>)> = (0..30).map(|i| (format!("v{i:02}"), vec![i as u8; 10 + i])).collect();
    let rows = blobs.iter().map(|(k, b)| Row::new(k.clone()).blob("blob", b.clone())).collect();
    let node = support_cql::secure_node(vec![("objects", rows)], Some(&certs), "checker", "ch3ck-Pw");
    let b = bucket("verify-tls");
    for (k, body) in &blobs {
        put(&b, k, if k == "v07" { b"other bytes" } else { body });
    }
    let t = Workdir::new();
    let ca = t.write("ca.pem", &certs.ca_pem);
    let keys = t.write("keys.txt", blobs.iter().map(|(k, _)| format!("{k}\n")).collect::<String>());
    let run = |out: &Path, ca: &Path, password: &str| {
        let env = [("KEYRECON_CASSANDRA_USERNAME", "checker"), ("KEYRECON_CASSANDRA_PASSWORD", password)];
        run_keeping_secret(&mut deep(&node, &b, &keys, out, &["--tls-ca", s(ca)], &env), out, password)
    };
    let out = t.join("v");
    let (o, _) = run(&out, &ca, "ch3ck-Pw");
    assert_code(&o, 1);
    let ok = by_key(&out.join("ok.csv"), 5);
    assert_eq!(ok.len(), 29);
    assert!(ok.values().all(|c| c == "md5"), "{ok:?}");
    assert_eq!(rows_of(&out.join("differ.csv")).iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), ["v07"]);

    let (o, err) = run(&t.join("wrong"), &ca, "guessed-Pw");
    assert_code(&o, 2);
    assert!(err.contains("authentication failed") && err.contains("\"checker\""), "{err}");
    let stranger = t.write("stranger.pem", TlsCerts::generate().unwrap().ca_pem);
    let (o, err) = run(&t.join("untrusted"), &stranger, "ch3ck-Pw");
    assert_code(&o, 2);
    assert!(err.contains("not trusted by the CA bundle") && err.contains(s(&stranger)), "{err}");
}

/// Issue 13: a deep verify reads the blobs the first cluster lacks from a fallback cluster (its own
/// password, from its own variables), and fails the keys of a cluster that is down with the reason.
#[test]
fn deep_verify_reads_blobs_from_a_fallback_cluster() {
    let blob = |i: usize| format!("blob {i}").into_bytes();
    let first = support_cql::secure_node(
        vec![("objects", (0..10).map(|i| Row::new(format!("f{i}")).blob("blob", blob(i))).collect())],
        None,
        "first",
        "first-Pw",
    );
    let old = support_cql::secure_node(
        vec![("objects", (10..20).map(|i| Row::new(format!("f{i}")).blob("blob", blob(i))).collect())],
        None,
        "archivist",
        "old-Pw",
    );
    let b = bucket("verify-cluster");
    for i in 0..20 {
        put(&b, &format!("f{i}"), &blob(i));
    }
    let t = Workdir::new();
    let keys = t.write("keys.txt", (0..20).map(|i| format!("f{i}\n")).collect::<String>());
    let env = [
        ("KEYRECON_CASSANDRA_USERNAME", "first"),
        ("KEYRECON_CASSANDRA_PASSWORD", "first-Pw"),
        ("KEYRECON_CASSANDRA_OLD_USERNAME", "archivist"),
        ("KEYRECON_CASSANDRA_OLD_PASSWORD", "old-Pw"),
    ];
    let cluster = format!("old={}", old.addr());
    let flags = ["--cluster", &cluster, "--fallback", "old:media.objects"];
    let out = t.join("v");
    let o = deep(&first, &b, &keys, &out, &flags, &env).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(by_key(&out.join("ok.csv"), 5).len(), 20);
    let sm = summary(&out);
    assert_eq!(sm["tables"], serde_json::json!(["media.objects", "old:media.objects"]));
    assert_eq!(sm["fallback_clusters"][0]["blobs"], 10, "{sm}");

    old.shutdown();
    let out = t.join("down");
    let o = deep(&first, &b, &keys, &out, &flags, &env).output().unwrap();
    assert_code(&o, 2);
    let failed = rows_of(&out.join("failed.csv"));
    assert_eq!(failed.len(), 10);
    for r in &failed {
        assert!(&r[2] == "fetch" && r[4].contains("old:media.objects not asked: connecting to cluster old"), "{r:?}");
    }
    assert_eq!(by_key(&out.join("ok.csv"), 5).len(), 10);
    for pw in ["first-Pw", "old-Pw"] {
        assert_secret_absent(&out, pw);
    }
}
