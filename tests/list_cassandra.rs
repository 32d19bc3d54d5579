//! keyrecon-list-cassandra, the real binary, against the CQL test node (the real scylla driver on the
//! wire): exact listings, key mapping and rejects, resume after kill -9, fault injection, throttling,
//! writetime windows, and a keyrecon-diff of the result.

mod support;

use cql_test_node::{token, BlockingNode, ColumnType, Fault, Row, Table, TestNode, DEFAULT_WRITETIME};
use keyrecon::chunk::ChunkSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{keys_of, read_set, summary, Workdir};

const BIN: &str = env!("CARGO_BIN_EXE_keyrecon-list-cassandra");
const DIFF: &str = env!("CARGO_BIN_EXE_keyrecon-diff");

fn table() -> Table {
    Table::new("ks", "t", "k", ColumnType::Text).column("blob", ColumnType::Blob).column("len", ColumnType::Bigint)
}

/// Row i: key `obj{i:05}`, a blob of i % 97 bytes, written at DEFAULT_WRITETIME + i seconds.
fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            Row::new(format!("obj{i:05}"))
                .blob("blob", vec![b'x'; i % 97])
                .set("len", cql_test_node::Value::Bigint((i % 97) as i64))
                .writetime(DEFAULT_WRITETIME + i as i64 * 1_000_000)
        })
        .collect()
}

fn node_with(rows: Vec<Row>) -> BlockingNode {
    TestNode::builder().table(table()).rows(rows).build().start_blocking("127.0.0.1:0").expect("start test node")
}

fn cmd(node: &BlockingNode, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "--contact-points",
        &node.addr().to_string(),
        "--keyspace",
        "ks",
        "--table",
        "t",
        "--key-column",
        "k",
        "--out",
    ])
    .arg(out)
    .args(["--request-timeout", "5"])
    .args(extra)
    .env_remove("KEYRECON_CASSANDRA_USERNAME")
    .env_remove("KEYRECON_CASSANDRA_PASSWORD");
    c
}

fn run(node: &BlockingNode, out: &Path, extra: &[&str]) -> Output {
    let o = cmd(node, out, extra).output().expect("run keyrecon-list-cassandra");
    eprintln!("--- stderr of {extra:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// The keys of the chunk set in `dir`, as text.
fn keys(dir: &Path) -> Vec<String> {
    keys_of(&read_set(dir))
}

fn want_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("obj{i:05}")).collect()
}

/// Every chunk file and the manifest's chunk list (not its timestamp/args) of a chunk set.
fn fingerprint(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut out = vec![
        ("chunks".to_string(), m["chunks"].to_string().into_bytes()),
        ("records".into(), m["records"].to_string().into_bytes()),
    ];
    for c in m["chunks"].as_array().unwrap() {
        let f = c["file"].as_str().unwrap();
        out.push((f.to_string(), std::fs::read(dir.join(f)).unwrap()));
    }
    if dir.join("rejects.csv").exists() {
        out.push(("rejects.csv".into(), std::fs::read(dir.join("rejects.csv")).unwrap()));
    }
    out
}

#[test]
fn full_listing_equals_the_fixture_with_sizes_and_writetimes() {
    let n = 3000;
    let node = node_with(rows(n));
    let d = Workdir::new();
    let out = d.join("cass.chunks");
    let o = run(
        &node,
        &out,
        &[
            "--page-size",
            "97",
            "--splits",
            "40",
            "--concurrency",
            "6",
            "--size-of",
            "blob",
            "--writetime-of",
            "blob",
            "--chunk-size",
            "16K",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    let recs = read_set(&out);
    assert_eq!(keys_of(&recs), want_keys(n));
    for (k, m) in &recs {
        let i: usize = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
        assert_eq!(m.size, Some((i % 97) as u64), "size of {i}");
        assert_eq!(m.mtime, Some(DEFAULT_WRITETIME + i as i64 * 1_000_000), "writetime of {i}");
        assert_eq!(m.origin, None);
    }
    let set = ChunkSet::open(&out).unwrap();
    assert!(set.manifest.disjoint && set.manifest.chunks.len() > 1, "disjoint, several chunks");
    assert_eq!(set.manifest.schema, vec!["key", "size", "mtime"]);
    let s = summary(&out);
    assert_eq!(s["rows_read"], n as u64);
    assert_eq!(s["records"], n as u64);
    assert_eq!(s["complete"], true);
    assert!(s["ranges"].as_u64().unwrap() >= 40);
    assert!(!out.join(".keyrecon-scan").exists(), "work dir removed after a complete run");
    // Every page ended because the server said so: full pages are followed by (possibly empty) ones.
    assert!(s["pages"].as_u64().unwrap() >= s["ranges"].as_u64().unwrap());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("3000 rows read"), "{stderr}");

    // --size-column reads the length column instead of the blob.
    let out2 = d.join("len.chunks");
    assert_eq!(run(&node, &out2, &["--size-column", "len", "-q"]).status.code(), Some(0));
    let r2 = read_set(&out2);
    assert_eq!(
        r2.iter().map(|(k, m)| (k.clone(), m.size)).collect::<Vec<_>>(),
        recs.iter().map(|(k, m)| (k.clone(), m.size)).collect::<Vec<_>>()
    );

    // An existing chunk set is not replaced without --force.
    let o = run(&node, &out2, &["-q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(run(&node, &out2, &["-q", "--force"]).status.code(), Some(0));
}

#[test]
fn key_map_maps_keeps_origin_and_rejects_with_reasons() {
    // 21-byte keys ending in _1 lose the suffix; keys without the t01 prefix are rejected.
    let mut rs = Vec::new();
    let mut want = Vec::new();
    for i in 0..500 {
        let k = format!("t01{i:016}_1");
        assert_eq!(k.len(), 21);
        want.push((k[..19].to_string(), k.clone()));
        rs.push(Row::new(k));
    }
    for i in 0..300 {
        let k = format!("t01plain{i:04}");
        want.push((k.clone(), k.clone()));
        rs.push(Row::new(k));
    }
    for i in 0..40 {
        rs.push(Row::new(format!("x99bad{i:03}")));
    }
    want.sort();
    let node = node_with(rs);
    let d = Workdir::new();
    let rules = d.write(
        "rules.txt",
        "# seed migration rules\nif length == 21 and ends-with _1 then strip-suffix _1\nrequire-prefix t01\n",
    );
    let out = d.join("mapped");
    let o = run(&node, &out, &["--page-size", "64", "--splits", "16", "--key-map", &format!("@{}", rules.display())]);
    assert_eq!(o.status.code(), Some(0), "rejects are reported, not an error");
    let got: Vec<(String, String)> = read_set(&out)
        .into_iter()
        .map(|(k, m)| (String::from_utf8(k).unwrap(), String::from_utf8(m.origin.expect("origin")).unwrap()))
        .collect();
    assert_eq!(got, want);
    let mut rd = csv::Reader::from_path(out.join("rejects.csv")).unwrap();
    assert_eq!(rd.headers().unwrap(), vec!["table", "token", "reason", "key"]);
    let rej: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rej.len(), 40);
    for r in &rej {
        assert_eq!(&r[0], "ks.t");
        assert_eq!(r[1].parse::<i64>().unwrap(), token(r[3].as_bytes()));
        assert!(r[2].contains("required prefix \"t01\""), "{:?}", &r[2]);
        assert!(r[3].starts_with("x99bad"));
    }
    assert_eq!(summary(&out)["rejects"], 40);
    assert!(String::from_utf8_lossy(&o.stderr).contains("40 rejected"));

    // Inline rules; a bad rule is a usage error.
    let out2 = d.join("inline");
    assert_eq!(run(&node, &out2, &["-q", "--key-map", "add-prefix media/"]).status.code(), Some(0));
    assert!(keys(&out2).iter().all(|k| k.starts_with("media/")));
    let o = run(&node, &d.join("bad"), &["--key-map", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown action"));
}

#[test]
fn resume_after_kill_gives_the_same_chunk_set_as_a_clean_run() {
    let n = 4000;
    let node = node_with(rows(n));
    let d = Workdir::new();
    let args = [
        "--page-size",
        "50",
        "--splits",
        "32",
        "--concurrency",
        "4",
        "--writetime-of",
        "blob",
        "--key-map",
        "add-suffix .bin",
        "--mem",
        "64K",
        "-q",
    ];
    let clean = d.join("clean");
    assert_eq!(run(&node, &clean, &args).status.code(), Some(0));

    // Slow pages so the kill lands mid-scan: 4000 rows / 50 per page * 15 ms / 4 workers ~ 0.3 s.
    node.faults().set_delay(Some(Duration::from_millis(15)));
    let out = d.join("resumed");
    for round in 0..2 {
        let mut child = cmd(&node, &out, &args).stderr(Stdio::null()).spawn().unwrap();
        let pages0 = node.stats().page_requests;
        let t = Instant::now();
        while node.stats().page_requests < pages0 + 20 + round * 10 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(out.join(".keyrecon-scan/journal.jsonl").exists());
    assert!(!out.join("manifest.json").exists(), "killed before finishing");
    // A plain rerun refuses to clobber the unfinished listing.
    let o = run(&node, &out, &args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    node.faults().set_delay(None);
    node.reset_stats();
    let mut resume_args = args.to_vec();
    resume_args.retain(|a| *a != "-q");
    resume_args.push("--resume");
    let o = run(&node, &out, &resume_args);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming:"));
    let s = summary(&out);
    assert!(s["ranges_resumed_done"].as_u64().unwrap() > 0, "finished ranges were not listed again: {s}");
    assert!(s["rows_read"].as_u64().unwrap() < n as u64, "{s}");
    assert_eq!(fingerprint(&out), fingerprint(&clean), "resumed chunk set equals the clean one");
    // A resume with other parameters is refused.
    let o = run(&node, &out, &["--resume", "--writetime-of", "blob"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn timeouts_unavailable_and_dropped_connections_are_retried_exactly() {
    let n = 2000;
    let node = node_with(rows(n));
    let f = node.faults();
    f.fail_next(3, Fault::ReadTimeout);
    f.fail_next(2, Fault::Unavailable);
    f.fail_next(1, Fault::Overloaded);
    f.fail_next(1, Fault::ReadFailure);
    let d = Workdir::new();
    let out = d.join("a");
    let o = run(&node, &out, &["--page-size", "100", "--splits", "8", "--concurrency", "2"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(keys(&out), want_keys(n));
    let s = summary(&out);
    assert!(s["retries"].as_u64().unwrap() >= 7, "{s}");
    assert!(s["throttle_events"].as_u64().unwrap() >= 1, "timeouts lower concurrency: {s}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("throttle: concurrency 2 -> 1"));

    // A dropped connection mid-scan, then a range that fails a few times (fewer than the retries).
    let lo = token(b"obj00010");
    f.drop_connection_after(5);
    f.fail_token_range_times(lo, lo, Fault::ReadTimeout, 3);
    let out = d.join("b");
    let o = run(&node, &out, &["--page-size", "100", "--splits", "8", "--concurrency", "3"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(keys(&out), want_keys(n));
    assert!(node.stats().connections_dropped >= 1);
}

#[test]
fn a_range_that_keeps_failing_is_split_then_reported_with_exit_2() {
    let n = 2000;
    let node = node_with(rows(n));
    let bad = token(b"obj00042");
    node.faults().fail_token_range(bad, bad, Fault::ReadTimeout);
    let d = Workdir::new();
    let out = d.join("a");
    let o = run(
        &node,
        &out,
        &["--page-size", "50", "--splits", "8", "--retries", "1", "--split-depth", "3", "--latency-target", "100000"],
    );
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("splitting") && stderr.contains("NOT LISTED"), "{stderr}");
    let s = summary(&out);
    let failed = s["failed_ranges"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{s}");
    let (flo, fhi) = (failed[0]["lo"].as_i64().unwrap(), failed[0]["hi"].as_i64().unwrap());
    assert!(flo < bad && bad <= fhi, "the bad token is in the reported range");
    assert_eq!(s["ranges_split"], 3);
    // Everything outside the failed range was listed; nothing inside it was invented.
    let got = keys(&out);
    let want: Vec<String> =
        want_keys(n).into_iter().filter(|k| !(token(k.as_bytes()) > flo && token(k.as_bytes()) <= fhi)).collect();
    let missing = want.iter().filter(|k| !got.contains(k)).count();
    assert_eq!(missing, 0);
    assert!(!got.contains(&"obj00042".to_string()));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["info"]["complete"], false);

    // keyrecon-diff refuses it (the failed range's keys would show as missing), before --out exists;
    // --allow-incomplete diffs it anyway.
    let all = d.join("all.txt");
    std::fs::write(&all, want_keys(n).iter().map(|k| format!("{k}\n")).collect::<String>()).unwrap();
    let diff = |extra: &[&str], to: &str| {
        Command::new(DIFF).arg(&out).arg(&all).arg("--out").arg(d.join(to)).arg("-q").args(extra).output().unwrap()
    };
    let o = diff(&[], "refused");
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("incomplete listing (1 ranges failed") && stderr.contains("--allow-incomplete"),
        "{stderr}"
    );
    assert!(!d.join("refused").exists());
    let o = diff(&["--allow-incomplete"], "allowed");
    assert_eq!(o.status.code(), Some(1));
    let orphans = std::fs::read_to_string(d.join("allowed/missing-on-source.txt")).unwrap();
    assert_eq!(orphans.lines().count(), want.len().abs_diff(n), "the failed range's keys");

    // The journal is kept: once the range heals, --resume lists just the failed range.
    node.faults().clear();
    node.reset_stats();
    let o = run(&node, &out, &["--page-size", "50", "--splits", "8", "--resume"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(keys(&out), want_keys(n));
    assert!(node.stats().rows_served < 200, "only the failed range was listed again");
    assert_eq!(diff(&[], "healed").status.code(), Some(0), "the resumed listing is complete");
}

#[test]
fn rate_cap_lowers_the_page_request_rate() {
    let n = 3000;
    let node = node_with(rows(n));
    let d = Workdir::new();
    let args = ["--page-size", "100", "--splits", "16", "--concurrency", "4", "-q"];
    assert_eq!(run(&node, &d.join("fast"), &args).status.code(), Some(0));
    let fast = node.stats().page_rate().unwrap();
    node.reset_stats();
    let mut slow_args = args.to_vec();
    slow_args.extend(["--rate", "2000"]);
    let t = Instant::now();
    assert_eq!(run(&node, &d.join("slow"), &slow_args).status.code(), Some(0));
    let took = t.elapsed();
    let slow = node.stats().page_rate().unwrap();
    eprintln!("page rate unthrottled {fast:.0}/s, --rate 2000 rows/s: {slow:.0}/s in {took:?}");
    // 3000 rows at 2000 rows/s takes >= ~1.5 s; pages of 100 rows: ~20 pages/s (+ short last pages).
    assert!(slow < 45.0, "rate-limited page rate {slow}");
    assert!(slow * 3.0 < fast, "{slow} vs {fast}");
    assert!(took >= Duration::from_millis(1200));
    assert_eq!(keys(&d.join("slow")), want_keys(n));
}

#[test]
fn rising_page_latency_halves_concurrency_and_is_logged() {
    let node = node_with(rows(1500));
    // Slow pages at first, then the cluster recovers.
    node.faults().delay_next(12, Duration::from_millis(80));
    let d = Workdir::new();
    let o = run(
        &node,
        &d.join("a"),
        &["--page-size", "50", "--splits", "16", "--concurrency", "8", "--latency-target", "30"],
    );
    assert_eq!(o.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("throttle: concurrency 8 -> 4 (page latency"), "{stderr}");
    let s = summary(&d.join("a"));
    assert!(s["throttle_events"].as_u64().unwrap() >= 1);
    assert!(s["min_concurrency"].as_u64().unwrap() <= 4);
    assert_eq!(keys(&d.join("a")), want_keys(1500));
}

#[test]
fn writetime_cutoffs_select_the_window() {
    let n = 1000;
    let node = node_with(rows(n));
    let d = Workdir::new();
    // Rows 100..400 (written at DEFAULT + i s): after = DEFAULT + 100 s (inclusive), before = +400 s (exclusive).
    let after = "2023-11-14T22:15:00Z"; // DEFAULT_WRITETIME (22:13:20) + 100 s
    let before = (DEFAULT_WRITETIME + 400_000_000).to_string();
    let out = d.join("w");
    let o = run(&node, &out, &["--writetime-of", "blob", "--written-after", after, "--written-before", &before]);
    assert_eq!(o.status.code(), Some(0));
    let want: Vec<String> = (100..400).map(|i| format!("obj{i:05}")).collect();
    assert_eq!(keys(&out), want);
    assert_eq!(summary(&out)["outside_window"], 700);
    // A cutoff without --writetime-of is a usage error.
    let o = run(&node, &d.join("x"), &["--written-before", &before]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn diff_of_the_listing_against_an_s3_key_file() {
    let n = 1200;
    let node = node_with(rows(n));
    let d = Workdir::new();
    let out = d.join("cass");
    assert_eq!(
        run(&node, &out, &["-q", "--writetime-of", "blob", "--key-map", "add-prefix media/"]).status.code(),
        Some(0)
    );
    // The S3 side lost obj00007 and obj01000, and has an orphan.
    let mut s3: Vec<String> = (0..n).filter(|i| *i != 7 && *i != 1000).map(|i| format!("media/obj{i:05}")).collect();
    s3.push("media/orphan".into());
    s3.reverse();
    let kf = d.write("s3.txt", s3.join("\n") + "\n");
    let dd = d.join("diff");
    let o = Command::new(DIFF).arg(&out).arg(&kf).arg("--out").arg(&dd).arg("-q").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(dd.join("missing-on-target.txt")).unwrap(), "media/obj00007\nmedia/obj01000\n");
    assert_eq!(std::fs::read_to_string(dd.join("missing-on-source.txt")).unwrap(), "media/orphan\n");
    // The repair input carries the Cassandra key (origin) of each missing object.
    let csv = std::fs::read_to_string(dd.join("missing-on-target.csv")).unwrap();
    assert!(csv.contains("obj00007") && csv.lines().count() == 3, "{csv}");
}

#[test]
fn credentials_come_from_the_environment_and_are_never_written() {
    let node = TestNode::builder()
        .table(table())
        .rows(rows(100))
        .credentials(cql_test_node::Credentials::new("lister", "pa55-w0rd"))
        .build()
        .start_blocking("127.0.0.1:0")
        .unwrap();
    let d = Workdir::new();
    let out = d.join("a");
    let o = cmd(&node, &out, &[])
        .env("KEYRECON_CASSANDRA_USERNAME", "lister")
        .env("KEYRECON_CASSANDRA_PASSWORD", "pa55-w0rd")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(keys(&out).len(), 100);
    let out2 = d.join("b");
    let o2 = cmd(&node, &out2, &["--username", "lister", "--password", "pa55-w0rd"]).output().unwrap();
    assert_eq!(o2.status.code(), Some(0));
    for p in
        [out.join("manifest.json"), out.join("summary.json"), out2.join("manifest.json"), out2.join("summary.json")]
    {
        assert!(!std::fs::read_to_string(&p).unwrap().contains("pa55-w0rd"), "{}", p.display());
    }
    for o in [&o, &o2] {
        assert!(!String::from_utf8_lossy(&o.stderr).contains("pa55-w0rd"));
    }
    // Wrong password: an error, exit 2, still no secret in the message.
    let o = cmd(&node, &d.join("c"), &["--username", "lister", "--password", "nope-nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("nope-nope"));
}

/// Issue 13: TLS with password authentication as a production cluster has it, and every way the TLS
/// set-up can be wrong fails with exit 2 and a message naming what to fix.
#[test]
fn tls_with_password_lists_exactly_and_a_bad_ca_fails_naming_the_file() {
    let certs = cql_test_node::TlsCerts::generate().unwrap();
    let node = TestNode::builder()
        .table(table())
        .rows(rows(300))
        .credentials(cql_test_node::Credentials::new("lister", "pa55-w0rd"))
        .tls(&certs)
        .build()
        .start_blocking("127.0.0.1:0")
        .unwrap();
    let d = Workdir::new();
    let ca = d.write("ca.pem", &certs.ca_pem);
    let with = |out: &str, extra: &[&str], password: &str| {
        let o = cmd(&node, &d.join(out), extra)
            .env("KEYRECON_CASSANDRA_USERNAME", "lister")
            .env("KEYRECON_CASSANDRA_PASSWORD", password)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!err.contains("pa55-w0rd") && !err.contains("guessed"), "a password on stderr: {err}");
        (o, err)
    };
    let (o, _) = with("a", &["--tls-ca", ca.to_str().unwrap(), "--splits", "8"], "pa55-w0rd");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(keys(&d.join("a")), want_keys(300));
    for f in ["manifest.json", "summary.json"] {
        assert!(!std::fs::read_to_string(d.join("a").join(f)).unwrap().contains("pa55-w0rd"), "{f}");
    }

    // A CA that did not sign the node's certificate, a file that holds no certificate, no file at all:
    // each names the file.
    let stranger = d.write("stranger.pem", cql_test_node::TlsCerts::generate().unwrap().ca_pem);
    let junk = d.write("junk.pem", "not a certificate\n");
    let missing = d.join("missing.pem");
    for (path, want) in [
        (&stranger, "TLS certificate is not trusted by the CA bundle"),
        (&junk, "no PEM certificate in the file"),
        (&missing, "No such file"),
    ] {
        let (o, err) = with("bad", &["--tls-ca", path.to_str().unwrap()], "pa55-w0rd");
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want) && err.contains(path.to_str().unwrap()), "{}: {err}", path.display());
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
    // Plain text to a node that serves TLS only: the message suggests TLS.
    let (o, err) = with("plain", &[], "pa55-w0rd");
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("require TLS? --tls-ca"), "{err}");
    // The right CA and a wrong password: the user is named, the password is not.
    let (o, err) = with("wrong", &["--tls-ca", ca.to_str().unwrap()], "guessed-Pa55");
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("authentication failed") && err.contains("\"lister\""), "{err}");
}

#[test]
fn diff_compare_mtime_flags_rows_written_after_the_target_copy() {
    // Source: the live table. Target: a chunk set of the same keys as the migration copied them (listed
    // here from a second node whose rows carry the copy's times). Rows 0..10 were edited after the copy.
    let n = 300;
    let src = node_with(rows(n));
    let copied: Vec<Row> = (0..n)
        .map(|i| {
            let wt = DEFAULT_WRITETIME + i as i64 * 1_000_000;
            Row::new(format!("obj{i:05}")).blob("blob", vec![1]).writetime(if i < 10 {
                wt - 5_000_000
            } else {
                wt + 5_000_000
            })
        })
        .collect();
    let tgt = node_with(copied);
    let d = Workdir::new();
    let (a, b) = (d.join("src"), d.join("tgt"));
    assert_eq!(run(&src, &a, &["-q", "--writetime-of", "blob"]).status.code(), Some(0));
    assert_eq!(run(&tgt, &b, &["-q", "--writetime-of", "blob"]).status.code(), Some(0));
    let dd = d.join("diff");
    let o = Command::new(DIFF).arg(&a).arg(&b).args(["--compare", "mtime", "-q", "--out"]).arg(&dd).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let differ = std::fs::read_to_string(dd.join("differ.txt")).unwrap();
    assert_eq!(differ.lines().collect::<Vec<_>>(), (0..10).map(|i| format!("obj{i:05}")).collect::<Vec<_>>());
    assert_eq!(std::fs::read_to_string(dd.join("missing-on-target.txt")).unwrap(), "");
}
