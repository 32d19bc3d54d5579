//! keyrecon-repair end to end: blobs in the CQL test node (the real scylla driver on the wire), a real
//! Garage S3 server (one per test binary), the fault-injecting proxy in front of it for S3 errors and
//! the node's own fault injection for Cassandra timeouts. No mocks, no timing assertions.

mod support;
mod support_cql;
mod support_s3;

use cql_test_node::{BlockingNode, ColumnType, Fault, Row, Table, TestNode, TlsCerts};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use support::{assert_code, assert_secret_absent, csv_rows, run_keeping_secret, summary, Workdir};
use support_cql::{cass_key, s3_key};
use support_s3::{garage, proxy};

const REPAIR: &str = env!("CARGO_BIN_EXE_keyrecon-repair");
const DIFF: &str = env!("CARGO_BIN_EXE_keyrecon-diff");

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake png body";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF fake jpeg body";

fn blob(i: usize) -> Vec<u8> {
    match i {
        3 => PNG.to_vec(),
        4 => JPEG.to_vec(),
        _ => (0..(20 + i % 300)).map(|j| (i * 31 + j * 7) as u8).collect(),
    }
}

/// A node serving media.objects and media.old with these rows.
fn node_with(rows: Vec<Row>, old: Vec<Row>) -> BlockingNode {
    support_cql::node(vec![("objects", rows), ("old", old)])
}

fn rows(n: usize, key: fn(usize) -> String) -> Vec<Row> {
    support_cql::blob_rows(n, key, blob)
}

fn bucket(name: &str) -> String {
    garage().create_bucket(name)
}

fn put(bucket: &str, key: &str, body: &[u8]) {
    garage().put_object(bucket, key, body)
}

/// Every object of `bucket`: key -> (bytes, content type).
fn objects(bucket: &str) -> BTreeMap<String, (Vec<u8>, Option<String>)> {
    garage().objects(bucket)
}

/// The repair command with the node, Garage (or `endpoint`) and credentials in a clean environment.
fn repair_cmd(node: &BlockingNode, endpoint: &str, bucket: &str, keys: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = garage().command(REPAIR, endpoint);
    c.arg("--keys")
        .arg(keys)
        .arg("--out")
        .arg(out)
        .args(["--contact-points", &node.addr().to_string(), "--source", "media.objects", "--key-column", "id"])
        .args(["--bucket", bucket, "--consistency", "ONE"])
        .args(extra);
    c
}

fn repair(node: &BlockingNode, bucket: &str, keys: &Path, out: &Path, extra: &[&str]) -> Output {
    repair_cmd(node, &garage().endpoint, bucket, keys, out, extra).output().expect("run keyrecon-repair")
}

fn col(path: &Path, name: &str) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let i = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("{}: no column {name}", path.display()));
    r.records().map(|r| r.unwrap()[i].to_string()).collect()
}

fn write_keys(dir: &Workdir, keys: &[&[u8]]) -> std::path::PathBuf {
    let mut v = Vec::new();
    for k in keys {
        v.extend_from_slice(k);
        v.push(b'\n');
    }
    dir.write("keys.txt", v)
}

fn list_and_diff(node: &BlockingNode, bucket: &str, dir: &Path, tag: &str) -> (Output, std::path::PathBuf) {
    let (cs, ss, out) =
        (dir.join(format!("cass-{tag}.chunks")), dir.join(format!("s3-{tag}.chunks")), dir.join(format!("diff-{tag}")));
    let o = support_cql::list_objects(node, &cs, &["-q"]);
    assert_code(&o, 0);
    let o = garage().list(&["--bucket", bucket, "--out", ss.to_str().unwrap(), "-q"]);
    assert_code(&o, 0);
    let o =
        Command::new(DIFF).arg(&cs).arg(&ss).arg("--out").arg(&out).args(["--compare", "size", "-q"]).output().unwrap();
    (o, out)
}

#[test]
fn diff_repair_diff_leaves_nothing_missing_and_every_object_equals_its_blob() {
    let n = 300;
    let node = node_with(rows(n, cass_key), vec![]);
    let b = bucket("repair-loop");
    // The migration copied all but every 5th key (3 = the PNG is missed, 4 = the JPEG is copied).
    for i in (0..n).filter(|i| i % 5 != 0 && *i != 3) {
        put(&b, &s3_key(i), &blob(i));
    }
    let t = Workdir::new();
    let (o, d1) = list_and_diff(&node, &b, t.root(), "before");
    assert_code(&o, 1);
    let missing = d1.join("missing-on-target.csv");
    assert_eq!(csv_rows(&missing).len(), n / 5 + 1);

    let out = t.join("repair");
    let o = repair(&node, &b, &missing, &out, &["--concurrency", "8", "-q"]);
    assert_code(&o, 0);
    let s = summary(&out);
    assert_eq!(s["outcomes"]["ok"], (n / 5 + 1) as u64, "{s}");
    assert_eq!(s["outcomes"]["failed"], 0);
    let mut ok = col(&out.join("ok.csv"), "key");
    let mut want: Vec<String> = (0..n).filter(|i| i % 5 == 0 || *i == 3).map(s3_key).collect();
    want.sort();
    ok.sort();
    assert_eq!(ok, want);
    // The Cassandra key (origin) was fetched, the S3 key written.
    assert!(col(&out.join("ok.csv"), "origin").contains(&cass_key(5)));

    let (o, d2) = list_and_diff(&node, &b, t.root(), "after");
    assert_code(&o, 0);
    assert_eq!(std::fs::read_to_string(d2.join("missing-on-target.txt")).unwrap(), "");
    let objs = objects(&b);
    assert_eq!(objs.len(), n);
    for i in 0..n {
        assert_eq!(objs[&s3_key(i)].0, blob(i), "object {} holds the blob", s3_key(i));
    }
    assert_eq!(objs[&s3_key(3)].1.as_deref(), Some("image/png"), "repaired PNG gets its Content-Type");
    // A JPEG repaired into another bucket: sniffed too.
    let b2 = bucket("repair-jpeg");
    let keys = t.write("jpeg.csv", format!("key,origin\n{},{}\n", s3_key(4), cass_key(4)));
    let o = repair(&node, &b2, &keys, &t.join("r2"), &["-q"]);
    assert_code(&o, 0);
    let objs = objects(&b2);
    assert_eq!(objs[&s3_key(4)], (JPEG.to_vec(), Some("image/jpeg".to_string())));
}

#[test]
fn not_found_goes_to_not_found_csv_and_the_fallback_table_is_used() {
    let node = node_with(
        vec![Row::new("in-source").blob("blob", b"S".to_vec())],
        vec![Row::new("in-old").blob("blob", b"OLD".to_vec()), Row::new("in-source").blob("blob", b"stale".to_vec())],
    );
    let b = bucket("repair-fallback");
    let t = Workdir::new();
    let keys = write_keys(&t, &[b"in-source", b"in-old", b"nowhere"]);
    // Without the fallback: two not found.
    let o = repair(&node, &bucket("repair-no-fallback"), &keys, &t.join("r1"), &["-q"]);
    assert_code(&o, 1);
    assert_eq!(col(&t.join("r1/not-found.csv"), "key"), vec!["in-old", "nowhere"]);
    // With it: only the key in no table.
    let out = t.join("r2");
    let o = repair(&node, &b, &keys, &out, &["--fallback", "media.old", "-q"]);
    assert_code(&o, 1);
    let nf = csv_rows(&out.join("not-found.csv"));
    assert_eq!(nf.len(), 1);
    assert_eq!(&nf[0][0], "nowhere");
    assert!(nf[0][2].contains("media.objects") && nf[0][2].contains("media.old"), "tables tried: {:?}", nf[0]);
    let ok = csv_rows(&out.join("ok.csv"));
    let tables: BTreeMap<String, String> = ok.iter().map(|r| (r[0].to_string(), r[4].to_string())).collect();
    assert_eq!(tables["in-old"], "media.old");
    assert_eq!(tables["in-source"], "media.objects", "the source wins over the fallback");
    let objs = objects(&b);
    assert_eq!(objs["in-old"].0, b"OLD");
    assert_eq!(objs["in-source"].0, b"S");
    assert_eq!(summary(&out)["from_fallback"], 1);
}

#[test]
fn existing_objects_are_not_overwritten_without_overwrite() {
    let node = node_with(
        vec![
            Row::new("same").blob("blob", b"new!".to_vec()),
            Row::new("other").blob("blob", b"new bytes".to_vec()),
            Row::new("fresh").blob("blob", b"f".to_vec()),
        ],
        vec![],
    );
    let b = bucket("repair-exists");
    put(&b, "same", b"old!");
    put(&b, "other", b"x");
    let t = Workdir::new();
    let keys = write_keys(&t, &[b"same", b"other", b"fresh"]);
    let out = t.join("r1");
    let o = repair(&node, &b, &keys, &out, &["-q"]);
    assert_code(&o, 1); // `differ` needs a look
    let ex: BTreeMap<String, String> =
        csv_rows(&out.join("exists.csv")).iter().map(|r| (r[0].to_string(), r[2].to_string())).collect();
    assert_eq!(ex, BTreeMap::from([("other".into(), "differ".into()), ("same".into(), "exists".into())]));
    let objs = objects(&b);
    assert_eq!(
        (objs["same"].0.as_slice(), objs["other"].0.as_slice(), objs["fresh"].0.as_slice()),
        (&b"old!"[..], &b"x"[..], &b"f"[..])
    );
    let s = summary(&out);
    assert_eq!(
        (s["outcomes"]["exists"].as_u64(), s["outcomes"]["differ"].as_u64(), s["outcomes"]["ok"].as_u64()),
        (Some(1), Some(1), Some(1))
    );

    // A rerun in the same --out needs --resume or --force.
    let o = repair(&node, &b, &keys, &out, &["-q"]);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&o.stderr));

    let out = t.join("r2");
    let o = repair(&node, &b, &keys, &out, &["--overwrite", "-q"]);
    assert_code(&o, 0);
    assert_eq!(col(&out.join("ok.csv"), "key"), vec!["fresh", "other", "same"]);
    let objs = objects(&b);
    assert_eq!((objs["same"].0.as_slice(), objs["other"].0.as_slice()), (&b"new!"[..], &b"new bytes"[..]));
}

#[test]
fn dry_run_writes_nothing() {
    let node = node_with(rows(20, s3_key), vec![]);
    let b = bucket("repair-dry");
    put(&b, &s3_key(1), &blob(1));
    let t = Workdir::new();
    let keys: Vec<String> = (0..20).map(s3_key).chain(["t01missing".to_string()]).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let kf = write_keys(&t, &kr);
    let out = t.join("dry");
    let o = repair(&node, &b, &kf, &out, &["--dry-run", "-q"]);
    assert_code(&o, 1);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("would copy ")).count(), 19, "{stdout}");
    assert!(
        stdout.contains(&format!("would copy {} ({} bytes from media.objects)", s3_key(2), blob(2).len())),
        "{stdout}"
    );
    assert_eq!(objects(&b).keys().cloned().collect::<Vec<_>>(), vec![s3_key(1)], "nothing written");
    assert!(!out.join("journal.jsonl").exists(), "a dry run leaves nothing to resume");
    assert_eq!(csv_rows(&out.join("would-copy.csv")).len(), 19);
    assert_eq!(col(&out.join("not-found.csv"), "key"), vec!["t01missing"]);
    assert_eq!(col(&out.join("exists.csv"), "key"), vec![s3_key(1)]);
    assert_eq!(summary(&out)["dry_run"], true);
    // Never into the --out of a real repair: its outcome files would be replaced.
    std::fs::write(out.join("journal.jsonl"), "").unwrap();
    let o = repair(&node, &b, &kf, &out, &["--dry-run", "-q"]);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("journal"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn kill_9_mid_repair_then_resume_copies_every_key_exactly_once() {
    let n = 400;
    let node = node_with(rows(n, s3_key), vec![]);
    let b = bucket("repair-kill");
    let t = Workdir::new();
    let keys: Vec<String> = (0..n).map(s3_key).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let kf = write_keys(&t, &kr);
    let out = t.join("r");
    let mut child = repair_cmd(&node, &garage().endpoint, &b, &kf, &out, &["--rate", "100", "-j", "8", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = out.join("journal.jsonl");
    loop {
        let done = std::fs::read_to_string(&journal).unwrap_or_default().matches("\"o\":\"ok\"").count();
        if done >= 60 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "repair ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = objects(&b).len();
    assert!(before < n, "killed mid-way ({before} of {n} copied)");

    let o = repair(&node, &b, &kf, &out, &["--resume", "-j", "8", "-q"]);
    assert_code(&o, 0);
    let mut ok = col(&out.join("ok.csv"), "key");
    assert_eq!(ok.len(), n, "every key exactly once in ok.csv");
    ok.dedup();
    assert_eq!(ok.len(), n);
    assert_eq!(ok, keys);
    assert_eq!(csv_rows(&out.join("exists.csv")).len(), 0, "our own interrupted uploads are not `exists`");
    let s = summary(&out);
    assert!(s["skipped_done_earlier"].as_u64().unwrap() >= 60, "{s}");
    let objs = objects(&b);
    assert_eq!(objs.len(), n);
    for i in 0..n {
        assert_eq!(objs[&s3_key(i)].0, blob(i));
    }
}

#[test]
fn s3_503_500_and_cassandra_timeouts_are_retried_and_throttled() {
    let n = 120;
    let node = node_with(rows(n, s3_key), vec![]);
    node.faults().fail_next(6, Fault::ReadTimeout);
    let b = bucket("repair-faults");
    // Of the PUTs, those that are every 3rd request get 503 SlowDown, every 7th 500; each passes in the end.
    // (Faults on HEADs are keyrecon-verify's test.)
    let p = proxy::start(&garage().endpoint, proxy::transient_faults("PUT "));
    let t = Workdir::new();
    let keys: Vec<String> = (0..n).map(s3_key).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let kf = write_keys(&t, &kr);
    let out = t.join("r");
    let o = repair_cmd(&node, &p.endpoint, &b, &kf, &out, &["-j", "16", "--retries", "9"]).output().unwrap();
    assert_code(&o, 0);
    let s = summary(&out);
    assert_eq!(s["outcomes"]["ok"], n as u64, "{s}");
    assert!(s["retries_s3"].as_u64().unwrap() > 10, "{s}");
    assert!(s["retries_cassandra"].as_u64().unwrap() >= 6, "every ReadTimeout retried: {s}");
    assert!(s["throttle_events"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["min_concurrency"].as_u64().unwrap() < 16, "{s}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("throttle: concurrency 16 -> 8"), "the throttle logs its changes: {err}");
    let objs = objects(&b);
    assert_eq!(objs.len(), n);
    for i in 0..n {
        assert_eq!(objs[&s3_key(i)].0, blob(i));
    }
}

#[test]
fn a_request_that_keeps_failing_lands_in_failed_csv_with_its_error() {
    let node = node_with(rows(10, s3_key), vec![]);
    let b = bucket("repair-failing");
    let bad = s3_key(7);
    let p = proxy::start(
        &garage().endpoint,
        Arc::new(move |line: &str, _| (line.starts_with("PUT ") && line.contains(&bad)).then_some(500)),
    );
    let t = Workdir::new();
    let keys: Vec<String> = (0..10).map(s3_key).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let kf = write_keys(&t, &kr);
    let out = t.join("r");
    let o = repair_cmd(&node, &p.endpoint, &b, &kf, &out, &["--retries", "2", "-q"]).output().unwrap();
    assert_code(&o, 2);
    let f = csv_rows(&out.join("failed.csv"));
    assert_eq!(f.len(), 1);
    assert_eq!((&f[0][0], &f[0][2]), (s3_key(7).as_str(), "put"));
    assert!(f[0][4].contains("500") && f[0][4].contains("InternalError"), "last error recorded: {:?}", f[0]);
    assert_eq!(&f[0][3], "5", "1 fetch + 1 HEAD + 3 PUT attempts");
    assert_eq!(csv_rows(&out.join("ok.csv")).len(), 9);

    // The failed key is tried again by --resume (here without the fault).
    let o = repair(&node, &b, &kf, &out, &["--resume", "-q"]);
    assert_code(&o, 0);
    assert_eq!(csv_rows(&out.join("ok.csv")).len(), 10);
    assert_eq!(csv_rows(&out.join("failed.csv")).len(), 0);
}

#[test]
fn non_utf8_keys_fail_with_a_reason_and_do_not_stop_the_others() {
    let t = Table::new("media", "objects", "id", ColumnType::Blob).column("blob", ColumnType::Blob);
    let node = TestNode::builder()
        .table(t)
        .rows([
            Row::new(b"ok-key".to_vec()).blob("blob", b"fine".to_vec()),
            Row::new(b"bad\xff".to_vec()).blob("blob", b"unwritable".to_vec()),
        ])
        .build()
        .start_blocking("127.0.0.1:0")
        .unwrap();
    let b = bucket("repair-utf8");
    let dir = Workdir::new();
    let kf = write_keys(&dir, &[b"ok-key", b"bad\xff"]);
    let out = dir.join("r");
    let o = repair(&node, &b, &kf, &out, &["-q"]);
    assert_code(&o, 2);
    let data = std::fs::read(out.join("failed.csv")).unwrap();
    assert!(
        data.starts_with(b"key,origin,stage,attempts,error\nbad\xff,,key,0,"),
        "{}",
        String::from_utf8_lossy(&data)
    );
    assert!(String::from_utf8_lossy(&data).contains("not valid UTF-8"));
    assert_eq!(objects(&b)["ok-key"].0, b"fine");
}

#[test]
fn blobs_above_the_multipart_threshold_are_uploaded_in_parts() {
    let big: Vec<u8> = (0..(300 * 1024 + 17)).map(|i| (i * 13 % 251) as u8).collect();
    let node = node_with(
        vec![Row::new("big").blob("blob", big.clone()), Row::new("small").blob("blob", b"s".to_vec())],
        vec![],
    );
    let b = bucket("repair-multipart");
    let t = Workdir::new();
    let kf = write_keys(&t, &[b"big", b"small"]);
    let out = t.join("r");
    let o = repair(&node, &b, &kf, &out, &["--multipart-threshold", "100K", "--part-size", "128K", "-q"]);
    assert_code(&o, 0);
    let ok: BTreeMap<String, String> =
        csv_rows(&out.join("ok.csv")).iter().map(|r| (r[0].to_string(), r[7].to_string())).collect();
    assert_eq!(ok["big"], "3");
    assert_eq!(ok["small"], "0");
    assert_eq!(summary(&out)["multipart_uploads"], 1);
    let objs = objects(&b);
    assert_eq!(objs["big"].0, big);

    // --content-type overrides the sniffing (and the default of none).
    let b2 = bucket("repair-content-type");
    let o = repair(&node, &b2, &kf, &t.join("r2"), &["--content-type", "application/x-keyrecon", "-q"]);
    assert_code(&o, 0);
    assert_eq!(objects(&b2)["small"].1.as_deref(), Some("application/x-keyrecon"));
}

#[test]
fn resume_tells_our_interrupted_upload_from_a_live_writers_object() {
    let node = node_with(
        vec![
            Row::new("ours").blob("blob", b"B1".to_vec()),
            Row::new("theirs").blob("blob", b"B2".to_vec()),
            Row::new("fresh").blob("blob", b"B3".to_vec()),
        ],
        vec![],
    );
    let b = bucket("repair-intent");
    // A run was killed after PUTting "ours" (intent journaled, outcome not), and while it was about to
    // PUT "theirs", which a live writer wrote meanwhile with other bytes. The crash tore the last line.
    put(&b, "ours", b"B1");
    put(&b, "theirs", b"XX");
    let t = Workdir::new();
    let out = t.join("r");
    std::fs::create_dir_all(&out).unwrap();
    let hex = |k: &str| k.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    std::fs::write(
        out.join("journal.jsonl"),
        format!(
            "{{\"o\":\"put\",\"k\":\"{}\"}}\n{{\"o\":\"put\",\"k\":\"{}\"}}\n{{\"o\":\"ok\",\"k\":\"66",
            hex("ours"),
            hex("theirs")
        ),
    )
    .unwrap();
    let kf = write_keys(&t, &[b"ours", b"theirs", b"fresh"]);
    let o = repair(&node, &b, &kf, &out, &["--resume", "-q"]);
    assert_code(&o, 0);
    let ok = csv_rows(&out.join("ok.csv"));
    assert_eq!(ok.iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), vec!["fresh", "ours"]);
    assert!(ok[1][9].contains("interrupted run"), "{:?}", ok[1]);
    assert_eq!(col(&out.join("exists.csv"), "key"), vec!["theirs"]);
    let s = summary(&out);
    assert_eq!(s["completed_by_interrupted_run"], 1, "{s}");
    assert_eq!(s["journal_torn_tail_dropped"], true, "{s}");
    assert_eq!(objects(&b)["theirs"].0, b"XX", "the live writer's object is kept");
}

#[test]
fn rising_cassandra_latency_lowers_concurrency() {
    let n = 16;
    let node = node_with(rows(n, s3_key), vec![]);
    // Every read takes 600 ms, twice the 300 ms latency target (S3 requests stay well below it).
    node.faults().set_delay(Some(std::time::Duration::from_millis(600)));
    let b = bucket("repair-latency");
    let t = Workdir::new();
    let keys: Vec<String> = (0..n).map(s3_key).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let kf = write_keys(&t, &kr);
    let out = t.join("r");
    let o = repair(&node, &b, &kf, &out, &["-j", "8", "--latency-target", "300"]);
    assert_code(&o, 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("keyrecon-repair: throttle: concurrency ") && err.contains(" (cassandra latency "),
        "the change and its reason are logged: {err}"
    );
    let s = summary(&out);
    assert!(s["throttle_events"].as_u64().unwrap() >= 1 && s["min_concurrency"].as_u64().unwrap() <= 4, "{s}");
    assert_eq!(s["outcomes"]["ok"], n as u64);
}

const USER_ENV: &str = "KEYRECON_CASSANDRA_USERNAME";
const PASSWORD_ENV: &str = "KEYRECON_CASSANDRA_PASSWORD";

/// Issue 13: repair through TLS and password authentication copies exactly; a wrong password and an
/// untrusted CA stop it at the start with exit 2 and a message naming the user or the CA file, and no
/// password reaches stderr or any file in --out.
#[test]
fn repair_through_tls_and_a_password_and_what_a_wrong_one_says() {
    let certs = TlsCerts::generate().unwrap();
    let n = 40;
    let node = support_cql::secure_node(vec![("objects", rows(n, s3_key))], Some(&certs), "repairer", "s3cret-Pw");
    let b = bucket("repair-tls");
    let t = Workdir::new();
    let ca = t.write("ca.pem", &certs.ca_pem);
    let keys: Vec<String> = (0..n).map(s3_key).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let kf = write_keys(&t, &kr);
    let run = |out: &Path, ca: &Path, password: &str| {
        let mut c = repair_cmd(&node, &garage().endpoint, &b, &kf, out, &["--tls-ca", ca.to_str().unwrap(), "-q"]);
        run_keeping_secret(c.env(USER_ENV, "repairer").env(PASSWORD_ENV, password), out, password)
    };
    let out = t.join("r");
    let (o, _) = run(&out, &ca, "s3cret-Pw");
    assert_code(&o, 0);
    assert_eq!(col(&out.join("ok.csv"), "key"), keys);
    let objs = objects(&b);
    assert_eq!(objs.len(), n);
    for i in 0..n {
        assert_eq!(objs[&s3_key(i)].0, blob(i));
    }

    let (o, err) = run(&t.join("wrong"), &ca, "guessed-Pw");
    assert_code(&o, 2);
    assert!(err.contains("authentication failed") && err.contains("\"repairer\""), "{err}");
    let stranger = t.write("stranger.pem", TlsCerts::generate().unwrap().ca_pem);
    let (o, err) = run(&t.join("untrusted"), &stranger, "s3cret-Pw");
    assert_code(&o, 2);
    assert!(err.contains("not trusted by the CA bundle") && err.contains(stranger.to_str().unwrap()), "{err}");
}

/// Keys 0..10 in the first cluster's source table, 10..15 in its fallback table media.old, 15..25
/// only in the other cluster (which also holds a stale copy of key 0).
fn two_clusters(old_tls: Option<&TlsCerts>) -> (BlockingNode, BlockingNode) {
    let key = |i: usize| format!("k{i:02}");
    let first = support_cql::secure_node(
        vec![
            ("objects", (0..10).map(|i| Row::new(key(i)).blob("blob", blob(i))).collect()),
            ("old", (10..15).map(|i| Row::new(key(i)).blob("blob", blob(i))).collect()),
        ],
        None,
        "first",
        "first-Pw",
    );
    (first, old_cluster(old_tls, "127.0.0.1:0"))
}

/// The other cluster of [`two_clusters`], listening on `addr`.
fn old_cluster(tls: Option<&TlsCerts>, addr: &str) -> BlockingNode {
    let mut b = TestNode::builder().credentials(cql_test_node::Credentials::new("archivist", "old-Pw"));
    if let Some(certs) = tls {
        b = b.tls(certs);
    }
    let rows = (15..25)
        .chain([0])
        .map(|i| Row::new(format!("k{i:02}")).blob("blob", if i == 0 { b"stale".to_vec() } else { blob(i) }));
    b.table(support_cql::blob_table("objects")).rows(rows).build().start_blocking(addr).expect("start the old cluster")
}

fn cluster_keys(t: &Workdir) -> std::path::PathBuf {
    let keys: Vec<String> = (0..25).map(|i| format!("k{i:02}")).chain(["nowhere".into()]).collect();
    let kr: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    write_keys(t, &kr)
}

/// Issue 13: a fallback on another cluster, with its own credentials (from its own variables) and its
/// own TLS CA, serves the keys the first cluster lacks; the lookup order is the source, the first
/// cluster's fallbacks, then the other cluster; ok.csv says which cluster and table each blob came from.
#[test]
fn a_fallback_cluster_serves_the_keys_the_first_lacks() {
    let certs = TlsCerts::generate().unwrap();
    let (first, old) = two_clusters(Some(&certs));
    let b = bucket("repair-cluster");
    let t = Workdir::new();
    let ca = t.write("old-ca.pem", &certs.ca_pem);
    let kf = cluster_keys(&t);
    let out = t.join("r");
    let cluster = format!("old={}", old.addr());
    let o = repair_cmd(&first, &garage().endpoint, &b, &kf, &out, &["--fallback", "old:media.objects", "--fallback"])
        .args(["media.old", "--cluster", &cluster, "--cluster-tls-ca", &format!("old={}", ca.display())])
        .args(["--cluster-concurrency", "old=2", "--cluster-retries", "old=1", "-q"])
        .env(USER_ENV, "first")
        .env(PASSWORD_ENV, "first-Pw")
        .env("KEYRECON_CASSANDRA_OLD_USERNAME", "archivist")
        .env("KEYRECON_CASSANDRA_OLD_PASSWORD", "old-Pw")
        .output()
        .unwrap();
    assert_code(&o, 1); // "nowhere" is in no table
    let from: BTreeMap<String, String> =
        csv_rows(&out.join("ok.csv")).iter().map(|r| (r[0].to_string(), r[4].to_string())).collect();
    assert_eq!(from.len(), 25);
    for (k, table) in &from {
        let i: usize = k[1..].parse().unwrap();
        let want = match i {
            0..10 => "media.objects",
            10..15 => "media.old",
            _ => "old:media.objects",
        };
        assert_eq!(table, want, "{k}");
    }
    let nf = csv_rows(&out.join("not-found.csv"));
    assert_eq!((&nf[0][0], &nf[0][2]), ("nowhere", "not in media.objects, media.old, old:media.objects"));
    let objs = objects(&b);
    for i in 0..25 {
        assert_eq!(objs[&format!("k{i:02}")].0, blob(i), "k{i:02}: the first cluster's copy wins");
    }
    let s = summary(&out);
    assert_eq!(s["tables"], serde_json::json!(["media.objects", "media.old", "old:media.objects"]), "{s}");
    assert_eq!(s["from_fallback"], 15);
    let c = &s["fallback_clusters"][0];
    assert_eq!((c["name"].as_str(), c["blobs"].as_u64(), c.get("not_connected")), (Some("old"), Some(10), None), "{s}");
    for pw in ["first-Pw", "old-Pw"] {
        assert_secret_absent(&out, pw);
        assert!(!String::from_utf8_lossy(&o.stderr).contains(pw));
    }
}

/// Issue 13: a fallback cluster that is down, refuses the password, or fails every read: the keys the
/// first cluster has are repaired, the others fail (stage fetch) with the reason and after their
/// retries, exit 2, nothing is reported not found; --resume copies them once the cluster is back.
#[test]
fn a_fallback_cluster_that_is_down_or_failing_fails_its_keys_with_the_reason() {
    let (first, old) = two_clusters(None);
    let old_addr = old.addr();
    let t = Workdir::new();
    let kf = cluster_keys(&t);
    let run = |b: &str, out: &Path, old_password: &str, extra: &[&str]| {
        let o = repair_cmd(&first, &garage().endpoint, b, &kf, out, &["--fallback", "media.old", "--fallback"])
            .args(["old:media.objects", "--cluster", &format!("old={old_addr}"), "--retries", "0", "-q"])
            .args(extra)
            .env(USER_ENV, "first")
            .env(PASSWORD_ENV, "first-Pw")
            .env("KEYRECON_CASSANDRA_OLD_USERNAME", "archivist")
            .env("KEYRECON_CASSANDRA_OLD_PASSWORD", old_password)
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&o.stderr).contains(old_password));
        assert_secret_absent(out, old_password);
        o
    };
    let failed_of = |out: &Path| -> BTreeMap<String, (String, String, String)> {
        csv_rows(&out.join("failed.csv"))
            .iter()
            .map(|r| (r[0].to_string(), (r[2].to_string(), r[3].to_string(), r[4].to_string())))
            .collect()
    };
    let fallback_keys: Vec<String> = (15..25).map(|i| format!("k{i:02}")).chain(["nowhere".into()]).collect();

    // Every read of the old cluster fails: each key is tried 1 + --cluster-retries times (its own
    // setting, not --retries 0), then failed with the server's answer.
    old.faults().fail_next(10_000, Fault::Unavailable);
    let out = t.join("failing");
    let o = run(&bucket("repair-cluster-failing"), &out, "old-Pw", &["--cluster-retries", "old=2"]);
    assert_code(&o, 2);
    let failed = failed_of(&out);
    assert_eq!(failed.keys().cloned().collect::<Vec<_>>(), fallback_keys);
    for (k, (stage, attempts, error)) in &failed {
        assert_eq!(
            (stage.as_str(), attempts.as_str()),
            ("fetch", "5"),
            "{k}: 2 first-cluster reads + 3 of the old one"
        );
        assert!(error.contains("old:media.objects") && error.contains("Cannot achieve consistency"), "{k}: {error}");
    }
    assert_eq!(csv_rows(&out.join("ok.csv")).len(), 15);
    assert_eq!(csv_rows(&out.join("not-found.csv")).len(), 0, "never reported not found");
    assert_eq!(summary(&out)["fallback_clusters"][0]["retries"], 22, "{}", summary(&out));
    old.faults().clear();

    // A wrong password for the old cluster: its keys fail with that reason, the password nowhere.
    let out = t.join("wrong-password");
    let o = run(&bucket("repair-cluster-password"), &out, "guessed-Pw", &[]);
    assert_code(&o, 2);
    let failed = failed_of(&out);
    assert_eq!(failed.len(), 11);
    assert!(
        failed["k20"].2.contains("authentication failed") && failed["k20"].2.contains("\"archivist\""),
        "{failed:?}"
    );

    // The old cluster down: the same, the reason says it is not connected; the run warns at the start.
    old.shutdown();
    let out = t.join("down");
    let b = bucket("repair-cluster-down");
    let o = run(&b, &out, "old-Pw", &[]);
    assert_code(&o, 2);
    let failed = failed_of(&out);
    assert_eq!(failed.keys().cloned().collect::<Vec<_>>(), fallback_keys);
    let why = &failed["k20"].2;
    assert!(
        why.contains("not in media.objects, media.old; old:media.objects not asked: connecting to cluster old"),
        "{why}"
    );
    assert_eq!(failed["k20"].1, "2", "only the first cluster was asked");
    assert!(summary(&out)["fallback_clusters"][0]["not_connected"].as_str().unwrap().contains("no node answered"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cluster old was not connected"), "the summary paragraph says so: {err}");
    assert_eq!(csv_rows(&out.join("ok.csv")).len(), 15);

    // Back on the same address: --resume copies the rest, each key once in ok.csv.
    let _back = old_cluster(None, &old_addr.to_string());
    let o = run(&b, &out, "old-Pw", &["--resume"]);
    assert_code(&o, 1);
    assert_eq!(csv_rows(&out.join("ok.csv")).len(), 25);
    assert_eq!(csv_rows(&out.join("failed.csv")).len(), 0);
    assert_eq!(col(&out.join("not-found.csv"), "key"), ["nowhere"]);
    let objs = objects(&b);
    for i in 0..25 {
        assert_eq!(objs[&format!("k{i:02}")].0, blob(i));
    }
}
