//! The fleet's shared queue against a real redis-server (and, for the consumers, the CQL test node and
//! Garage): enqueue, resume after a kill, status, report, several consumers, failures of consumers and
//! of Redis.
mod support_redis;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support_redis::RedisServer;

const QUEUE: &str = env!("CARGO_BIN_EXE_keyrecon-queue");

fn queue(args: &[&str]) -> Output {
    Command::new(QUEUE).args(args).output().expect("run keyrecon-queue")
}

#[track_caller]
fn code(o: &Output, want: i32) {
    assert_eq!(o.status.code(), Some(want), "stderr:\n{}", String::from_utf8_lossy(&o.stderr));
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
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("missing-on-target.csv");
    write_keys(&input, 5000);
    let url = r.url("q1");
    let rej = d.path().join("rejects.csv");
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
    code(&o, 0);
    assert_eq!(stream_len(&r, "q1"), 5000);
    assert_eq!(
        (meta(&r, "q1", "enqueued"), meta(&r, "q1", "done"), meta(&r, "q1", "offset")),
        ("5000".into(), "1".into(), "5000".into())
    );

    // Again: nothing to do.
    let o = queue(&["enqueue", "--keys", input.to_str().unwrap(), &url]);
    code(&o, 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already enqueued"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stream_len(&r, "q1"), 5000);

    // Another input into the same queue: refused, unless --force.
    let other = d.path().join("other.txt");
    std::fs::write(&other, "a\nb\n").unwrap();
    let o = queue(&["enqueue", "--keys", other.to_str().unwrap(), &url]);
    code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds the keys of"));
    code(&queue(&["enqueue", "--keys", other.to_str().unwrap(), &url, "--force", "-q"]), 0);
    assert_eq!(stream_len(&r, "q1"), 2);
}

#[test]
fn a_producer_killed_mid_run_and_rerun_enqueues_every_key_once() {
    let r = RedisServer::start();
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("keys.csv");
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
    code(&o, 0);
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
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("keys.txt");
    std::fs::write(&input, "a\nb\nc\n").unwrap();
    let url = r.url("q3");
    code(&queue(&["enqueue", "--keys", input.to_str().unwrap(), &url, "-q"]), 0);
    let o = queue(&["status", &url, "--json"]);
    code(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((s["enqueued"].as_u64(), s["waiting"].as_u64(), s["pending"].as_u64()), (Some(3), Some(3), Some(0)));
    assert_eq!((s["producer_done"].as_bool(), s["drained"].as_bool()), (Some(true), Some(false)));
    let o = queue(&["status", &url]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 of 3 keys done"), "{}", String::from_utf8_lossy(&o.stdout));
    // A queue that does not exist is an error, not an empty status.
    code(&queue(&["status", &r.url("nope")]), 2);
    // The report of a queue that is not drained says so and exits 2.
    let out = d.path().join("report");
    let o = queue(&["report", &url, "--out", out.to_str().unwrap()]);
    code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("NOT DRAINED: 3 keys have no outcome yet"));
}
