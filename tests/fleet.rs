//! The fleet's shared queue against a real redis-server (and, for the consumers, the CQL test node and
//! Garage): enqueue, resume after a kill, status, report, several consumers, failures of consumers and
//! of Redis.
mod support;
mod support_cql;
mod support_redis;
mod support_s3;

use cql_test_node::BlockingNode;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{assert_code, csv_rows, s, summary, Workdir};
use support_cql::s3_key;
use support_redis::RedisServer;
use support_s3::{garage, proxy};

const QUEUE: &str = env!("CARGO_BIN_EXE_keyrecon-queue");

fn queue(args: &[&str]) -> Output {
    Command::new(QUEUE).args(args).output().expect("run keyrecon-queue")
}

/// missing-on-target.csv-like input: key, size, origin (keys with a comma, a quote, a newline-free
/// non-UTF-8 byte).
fn write_keys(path: &Path, n: usize) -> Vec<Vec<u8>> {
    let mut body = b"key,size,origin\n".to_vec();
    let mut keys = Vec::new();
    for i in 0..n {
        let k = match i % 50 {
            0 => format!("t01{i:016x},x").into_bytes(),
            1 => format!("t01{i:016x}\"q").into_bytes(),
            2 => [format!("t01{i:016x}").as_bytes(), b"\xff"].concat(),
            _ => format!("t01{i:016x}").into_bytes(),
        };
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
        let origin = [&k[..], b"_1"].concat();
        w.write_record([&k[..], (10 + i % 7).to_string().as_bytes(), &origin[..]]).unwrap();
        body.extend_from_slice(&w.into_inner().unwrap());
        keys.push(k);
    }
    std::fs::write(path, body).unwrap();
    keys
}

/// Entries in the work stream (acknowledged entries are deleted: what is left has no outcome yet).
fn stream_len(r: &RedisServer, name: &str) -> u64 {
    r.cmd(&["XLEN", &format!("keyrecon:{{{name}}}:keys")]).parse().unwrap()
}

/// The keys the work stream holds, in stream order.
fn stream_keys(r: &RedisServer, name: &str) -> Vec<Vec<u8>> {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", r.port)).unwrap().get_connection().unwrap();
    let v: redis::Value =
        redis::cmd("XRANGE").arg(format!("keyrecon:{{{name}}}:keys")).arg("-").arg("+").query(&mut con).unwrap();
    keyrecon::queue::parse_entries(&v).into_iter().map(|e| e.get("k").unwrap().to_vec()).collect()
}

fn meta(r: &RedisServer, name: &str, field: &str) -> String {
    r.cmd(&["HGET", &format!("keyrecon:{{{name}}}:meta"), field])
}

#[test]
fn enqueue_is_resumable_and_refuses_another_input() {
    let r = RedisServer::start();
    let d = Workdir::new();
    let input = d.join("missing-on-target.csv");
    write_keys(&input, 5000);
    let url = r.url("q1");
    let rej = d.join("rejects.csv");
    let o = queue(&[
        "enqueue",
        "--keys",
        input.to_str().unwrap(),
        &url,
        "--batch",
        "300",
        "-q",
        "--rejects",
        rej.to_str().unwrap(),
    ]);
    assert_code(&o, 0);
    assert_eq!(stream_len(&r, "q1"), 5000);
    assert_eq!(
        (meta(&r, "q1", "enqueued"), meta(&r, "q1", "done"), meta(&r, "q1", "offset")),
        ("5000".into(), "1".into(), "5000".into())
    );

    // Again: nothing to do.
    let o = queue(&["enqueue", "--keys", input.to_str().unwrap(), &url]);
    assert_code(&o, 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already enqueued"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stream_len(&r, "q1"), 5000);

    // Another input into the same queue: refused, unless --force.
    let other = d.join("other.txt");
    std::fs::write(&other, "a\nb\n").unwrap();
    let o = queue(&["enqueue", "--keys", other.to_str().unwrap(), &url]);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds the keys of"));
    assert_code(&queue(&["enqueue", "--keys", other.to_str().unwrap(), &url, "--force", "-q"]), 0);
    assert_eq!(stream_len(&r, "q1"), 2);
}

#[test]
fn a_producer_killed_mid_run_and_rerun_enqueues_every_key_once() {
    let r = RedisServer::start();
    let d = Workdir::new();
    let input = d.join("keys.csv");
    let n = 200_000;
    let keys = write_keys(&input, n);
    let url = r.url("q2");
    let mut child = Command::new(QUEUE)
        .args(["enqueue", "--keys", input.to_str().unwrap(), &url, "--batch", "100", "-q"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some batches are in, before it is done.
    let t0 = Instant::now();
    loop {
        let len = stream_len(&r, "q2");
        if len >= 20_000 || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = stream_len(&r, "q2");
    assert!(partial > 0 && partial < n as u64, "the kill came too late or too early: {partial}");
    assert_eq!(meta(&r, "q2", "offset"), partial.to_string(), "the offset moves with its batch, atomically");
    let o = queue(&["enqueue", "--keys", input.to_str().unwrap(), &url, "--batch", "1000"]);
    assert_code(&o, 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("after the {partial} an earlier run enqueued")));
    let mut got = stream_keys(&r, "q2");
    assert_eq!(got.len(), n, "no key twice, none lost");
    let mut want = keys;
    got.sort();
    want.sort();
    assert!(got == want, "the stream holds exactly the input's keys");
    assert_eq!(meta(&r, "q2", "enqueued"), n.to_string());
}

#[test]
fn status_of_a_queue_nobody_consumes_yet() {
    let r = RedisServer::start();
    let d = Workdir::new();
    let input = d.join("keys.txt");
    std::fs::write(&input, "a\nb\nc\n").unwrap();
    let url = r.url("q3");
    assert_code(&queue(&["enqueue", "--keys", input.to_str().unwrap(), &url, "-q"]), 0);
    let o = queue(&["status", &url, "--json"]);
    assert_code(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((s["enqueued"].as_u64(), s["waiting"].as_u64(), s["pending"].as_u64()), (Some(3), Some(3), Some(0)));
    assert_eq!((s["producer_done"].as_bool(), s["drained"].as_bool()), (Some(true), Some(false)));
    let o = queue(&["status", &url]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 of 3 keys done"), "{}", String::from_utf8_lossy(&o.stdout));
    // A queue that does not exist is an error, not an empty status.
    assert_code(&queue(&["status", &r.url("nope")]), 2);
    // The report of a queue that is not drained says so and exits 2.
    let out = d.join("report");
    let o = queue(&["report", &url, "--out", out.to_str().unwrap()]);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("NOT DRAINED: 3 keys have no outcome yet"));
}

// ---- Consumers: keyrecon-repair and keyrecon-verify with --queue, on the CQL test node and Garage ----

const REPAIR: &str = env!("CARGO_BIN_EXE_keyrecon-repair");
const VERIFY: &str = env!("CARGO_BIN_EXE_keyrecon-verify");

fn blob(i: usize) -> Vec<u8> {
    (0..(40 + i % 200)).map(|j| (i * 13 + j * 5) as u8).collect()
}

/// A CQL test node whose `media.objects` holds the blobs of S3 keys 0..n.
fn blob_node(n: usize) -> BlockingNode {
    support_cql::node(vec![("objects", support_cql::blob_rows(n, s3_key, blob))])
}

/// The keys 0..n, one per line, enqueued into a new queue `name`.
fn enqueue(r: &RedisServer, t: &Workdir, name: &str, n: usize) -> (String, Vec<String>) {
    let keys: Vec<String> = (0..n).map(s3_key).collect();
    let f = t.write(&format!("{name}.txt"), keys.iter().map(|k| format!("{k}\n")).collect::<String>());
    let url = r.url(name);
    assert_code(&queue(&["enqueue", "--keys", s(&f), &url, "-q"]), 0);
    (url, keys)
}

/// One consumer process: keyrecon-repair taking its keys from `url` as `name`, writing to `endpoint`
/// (Garage or a proxy in front of it), its own journal and outcome files in `out`.
fn consumer(
    node: &BlockingNode,
    endpoint: &str,
    bucket: &str,
    url: &str,
    name: &str,
    out: &Path,
    extra: &[&str],
) -> Child {
    garage()
        .command(REPAIR, endpoint)
        .args(["--queue", url, "--consumer", name, "--out", s(out)])
        .args(["--contact-points", &node.addr().to_string(), "--source", "media.objects", "--key-column", "id"])
        .args(["--bucket", bucket, "--consistency", "ONE", "-q"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyrecon-repair --queue")
}

/// Waits for a consumer to end (at most 3 minutes) and returns its output.
fn finish(c: Child) -> Output {
    let pid = c.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(c.wait_with_output().unwrap()));
    rx.recv_timeout(Duration::from_secs(180)).unwrap_or_else(|_| {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("consumer {pid} did not end in 3 minutes")
    })
}

/// Final outcomes in the outcome stream so far (every consumer's).
fn outcomes_len(r: &RedisServer, name: &str) -> u64 {
    r.cmd(&["XLEN", &format!("keyrecon:{{{name}}}:outcomes")]).parse().unwrap_or(0)
}

fn wait_for_outcomes(r: &RedisServer, name: &str, at_least: u64) {
    let t0 = Instant::now();
    while outcomes_len(r, name) < at_least {
        assert!(t0.elapsed() < Duration::from_secs(120), "no {at_least} outcomes in 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fleet report of `url` into `out`: its exit status and the keys of each outcome file.
fn report(url: &str, out: &Path) -> (Output, BTreeMap<String, Vec<String>>) {
    let o = queue(&["report", url, "--out", s(out), "-q"]);
    let mut files = BTreeMap::new();
    for f in ["ok", "not-found", "failed", "exists", "missing", "differ"] {
        let p = out.join(format!("{f}.csv"));
        if p.exists() {
            files.insert(f.to_string(), csv_rows(&p).iter().map(|r| r[0].to_string()).collect());
        }
    }
    (o, files)
}

/// Every object of `bucket`: key -> bytes.
fn objects(bucket: &str) -> BTreeMap<String, Vec<u8>> {
    garage().objects(bucket).into_iter().map(|(k, (b, _))| (k, b)).collect()
}

/// A proxy in front of Garage that counts the PUTs of each key (and injects `fail` on those it picks).
fn put_counter(
    fail: impl Fn(&str) -> Option<u16> + Send + Sync + 'static,
) -> (proxy::Proxy, Arc<Mutex<HashMap<String, u32>>>) {
    let puts = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let p2 = puts.clone();
    let p = proxy::start(
        &garage().endpoint,
        Arc::new(move |line: &str, _| {
            if let Some(rest) = line.strip_prefix("PUT /") {
                let path = rest.split([' ', '?']).next().unwrap_or("");
                let key = path.split_once('/').map(|(_, k)| k).unwrap_or("").to_string();
                *p2.lock().unwrap().entry(key).or_default() += 1;
            }
            fail(line)
        }),
    );
    (p, puts)
}

#[test]
fn three_consumers_one_killed_every_key_gets_exactly_one_outcome() {
    let n = 600;
    let r = RedisServer::start();
    let node = blob_node(n);
    let b = garage().create_bucket("fleet-three");
    let t = Workdir::new();
    let (url, keys) = enqueue(&r, &t, "three", n);
    let (p, puts) = put_counter(|_| None);
    // Slow enough (--rate) that the kill lands mid-run with keys in flight on the killed consumer.
    let args = ["--rate", "60", "-j", "6", "--claim-idle", "2"];
    let mut c1 = consumer(&node, &p.endpoint, &b, &url, "c1", &t.join("c1"), &args);
    let c2 = consumer(&node, &p.endpoint, &b, &url, "c2", &t.join("c2"), &args);
    let c3 = consumer(&node, &p.endpoint, &b, &url, "c3", &t.join("c3"), &args);
    wait_for_outcomes(&r, "three", 120);
    c1.kill().unwrap(); // SIGKILL: its pending keys are left for the others to claim
    c1.wait().unwrap();
    assert!(outcomes_len(&r, "three") < n as u64, "killed mid-run");
    for c in [c2, c3] {
        let o = finish(c);
        assert_code(&o, 0);
    }
    let (o, files) = report(&url, &t.join("report"));
    assert_code(&o, 0);
    let ok = &files["ok"];
    assert_eq!(
        ok.len(),
        n,
        "every key exactly once: {:?}",
        files.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
    );
    let mut want = keys.clone();
    want.sort();
    assert_eq!(ok, &want, "in key order, none lost");
    for f in ["failed", "not-found", "exists"] {
        assert!(files[f].is_empty(), "{f}: {:?}", files[f]);
    }
    let rep = summary(&t.join("report"));
    assert_eq!(rep["keys"], n as u64, "{rep}");
    let claimed: u64 = ["c2", "c3"].iter().map(|c| summary(&t.join(c))["queue"]["claimed"].as_u64().unwrap()).sum();
    assert!(claimed >= 1, "the killed consumer's pending keys were claimed by the others");
    let by: u64 = rep["consumers"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(by, n as u64, "{rep}");
    for c in ["c1", "c2", "c3"] {
        assert!(rep["consumers"][c].as_u64().unwrap_or(0) > 0, "{c} did some of the work: {rep}");
    }
    // Each object is its blob; a key PUT twice is one the killed consumer had in flight (the intent
    // rule: its PUT may or may not have landed), never more than twice.
    let objs = objects(&b);
    assert_eq!(objs.len(), n);
    for i in 0..n {
        assert_eq!(objs[&s3_key(i)], blob(i), "{}", s3_key(i));
    }
    let puts = puts.lock().unwrap();
    let twice: Vec<_> = puts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(twice.len() <= 6, "at most c1's -j keys PUT again: {twice:?}");
    assert!(puts.values().all(|&c| c <= 2), "{twice:?}");
    assert_eq!(puts.len(), n, "every key PUT");
    let s = queue(&["status", &url, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!((st["drained"].as_bool(), st["pending"].as_u64()), (Some(true), Some(0)), "{st}");
}

#[test]
fn redis_killed_and_restarted_with_its_data_the_run_completes() {
    let n = 400;
    let mut r = RedisServer::start();
    let node = blob_node(n);
    let b = garage().create_bucket("fleet-redis-restart");
    let t = Workdir::new();
    let (url, keys) = enqueue(&r, &t, "rr", n);
    let g = garage();
    let args = ["--rate", "80", "-j", "4", "--claim-idle", "2", "--redis-timeout", "60"];
    let c1 = consumer(&node, &g.endpoint, &b, &url, "a", &t.join("a"), &args);
    let c2 = consumer(&node, &g.endpoint, &b, &url, "b", &t.join("b"), &args);
    wait_for_outcomes(&r, "rr", 80);
    r.kill(); // kill -9; appendonly with appendfsync always keeps every acknowledged write
    std::thread::sleep(Duration::from_secs(2));
    r.up();
    assert!(outcomes_len(&r, "rr") < n as u64, "restarted mid-run");
    for c in [c1, c2] {
        let o = finish(c);
        assert_code(&o, 0);
    }
    let (o, files) = report(&url, &t.join("report"));
    assert_code(&o, 0);
    let mut want = keys;
    want.sort();
    let other: Vec<_> = files.iter().filter(|(f, k)| *f != "ok" && !k.is_empty()).collect();
    assert!(files["ok"] == want, "every key ok: {} of {n}; other outcomes: {other:?}", files["ok"].len());
    assert_eq!(objects(&b).len(), n);
    let outages: u64 = ["a", "b"].iter().map(|c| summary(&t.join(c))["queue"]["redis_outages"].as_u64().unwrap()).sum();
    assert!(outages >= 1, "the consumers saw Redis go away");
}

#[test]
fn redis_restarted_empty_stops_the_consumers_with_exit_2_not_done() {
    let n = 400;
    let mut r = RedisServer::start();
    let node = blob_node(n);
    let b = garage().create_bucket("fleet-redis-empty");
    let t = Workdir::new();
    let (url, _) = enqueue(&r, &t, "gone", n);
    let args = ["--rate", "40", "-j", "4", "--redis-timeout", "60"];
    let c1 = consumer(&node, &garage().endpoint, &b, &url, "a", &t.join("a"), &args);
    wait_for_outcomes(&r, "gone", 20);
    r.restart_empty();
    let o = finish(c1);
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("vanished") && err.contains("appendonly"), "{err}");
    // The status of the vanished queue says it does not exist, not that it is done.
    assert_code(&queue(&["status", &url]), 2);
}

#[test]
fn a_key_that_keeps_failing_is_dead_lettered_and_in_failed_csv() {
    let n = 30;
    let r = RedisServer::start();
    let node = blob_node(n);
    let b = garage().create_bucket("fleet-dead");
    let t = Workdir::new();
    let (url, _) = enqueue(&r, &t, "dead", n);
    let bad = s3_key(7);
    let bad2 = bad.clone();
    let (p, puts) = put_counter(move |line| (line.starts_with("PUT ") && line.contains(&bad2)).then_some(500));
    let args = ["--retries", "0", "--max-deliveries", "3", "--claim-idle", "1"];
    let c1 = consumer(&node, &p.endpoint, &b, &url, "a", &t.join("a"), &args);
    let o = finish(c1);
    assert_code(&o, 2);
    assert_eq!(puts.lock().unwrap()[&bad], 3, "one PUT per delivery, 3 deliveries");
    assert_eq!(r.cmd(&["XLEN", "keyrecon:{dead}:dead"]), "1");
    let (o, files) = report(&url, &t.join("report"));
    assert_code(&o, 2);
    assert_eq!(files["failed"], vec![bad.clone()]);
    assert_eq!(files["ok"].len(), n - 1);
    let f = csv_rows(&t.join("report").join("failed.csv"));
    let why = f[0].iter().collect::<Vec<_>>().join(",");
    assert!(why.contains("gave up after 3 deliveries") && why.contains("500"), "the reason and the last error: {why}");
    // The consumer's own failed.csv says the same.
    assert_eq!(csv_rows(&t.join("a").join("failed.csv")).len(), 1);
}

#[test]
fn a_consumer_restarted_under_its_name_takes_its_pending_keys_back_at_once() {
    let n = 300;
    let r = RedisServer::start();
    let node = blob_node(n);
    let b = garage().create_bucket("fleet-own");
    let t = Workdir::new();
    let (url, keys) = enqueue(&r, &t, "own", n);
    // --claim-idle far beyond the test: only the restarted consumer itself can take its keys back.
    let args = ["--rate", "60", "-j", "6", "--claim-idle", "3600"];
    let mut c = consumer(&node, &garage().endpoint, &b, &url, "m1", &t.join("m1"), &args);
    wait_for_outcomes(&r, "own", 60);
    c.kill().unwrap();
    c.wait().unwrap();
    // Restarted as is (as cron or systemd would): it continues its journal in --out, no --resume.
    let o = finish(consumer(&node, &garage().endpoint, &b, &url, "m1", &t.join("m1"), &args));
    assert_code(&o, 0);
    let (o, files) = report(&url, &t.join("report"));
    assert_code(&o, 0);
    let mut want = keys;
    want.sort();
    assert_eq!(files["ok"], want);
    assert!(summary(&t.join("m1"))["queue"]["claimed"].as_u64().unwrap() >= 1, "it took its keys back");
    assert_eq!(csv_rows(&t.join("m1").join("ok.csv")).len(), n, "its journal holds both runs' outcomes");
    // Its --out is its queue's: another queue's consumer is refused there.
    let (other, _) = enqueue(&r, &t, "other", 3);
    let o = finish(consumer(&node, &garage().endpoint, &b, &other, "m1", &t.join("m1"), &[]));
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds the journal of a consumer of"));
}

#[test]
fn verify_consumes_a_queue_too() {
    let n = 200;
    let r = RedisServer::start();
    let b = garage().create_bucket("fleet-verify");
    for i in 0..n {
        if i % 10 != 3 {
            garage().put_object(&b, &s3_key(i), &blob(i));
        }
    }
    let t = Workdir::new();
    let (url, _) = enqueue(&r, &t, "ver", n);
    let spawn = |name: &str| {
        garage()
            .command(VERIFY, &garage().endpoint)
            .args(["--queue", &url, "--consumer", name, "--bucket", &b, "-j", "4", "-q", "--out"])
            .arg(t.join(name))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (v1, v2) = (spawn("v1"), spawn("v2"));
    for v in [v1, v2] {
        let o = finish(v);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (o, files) = report(&url, &t.join("report"));
    assert_code(&o, 1);
    let missing: Vec<String> = (0..n).filter(|i| i % 10 == 3).map(s3_key).collect();
    assert_eq!(files["missing"], missing);
    assert_eq!(files["ok"].len(), n - missing.len());
    // A queue is consumed by one tool: repair on a verify queue is refused.
    let node = blob_node(1);
    let o = finish(consumer(&node, &garage().endpoint, &b, &url, "x", &t.join("x"), &[]));
    assert_code(&o, 2);
}
