//! keyrecon-reconcile against real services: the CQL test node (the real scylla driver on the wire, not
//! Cassandra) as the source, Garage as the target, the toolkit's binaries as the stages. Three nights
//! with losses between them, a night whose listing lost keys (the brake), a kill -9 and --resume, two
//! overlapping runs, and the HTML report read back from headless Chromium.
mod support;
mod support_cql;
mod support_s3;

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{assert_code, Workdir};
use support_cql::{cass_key, s3_key, KEY_MAP};
use support_s3::garage;

const RECONCILE: &str = env!("CARGO_BIN_EXE_keyrecon-reconcile");
const ROWS: usize = 400;

fn blob(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; 20 + i % 30]
}

/// A migration: every row in the CQL test node, every object in a Garage bucket but `lost`.
fn migration(bucket: &str, lost: &[usize]) -> cql_test_node::BlockingNode {
    let node = support_cql::node(vec![("objects", support_cql::blob_rows(ROWS, cass_key, blob))]);
    let g = garage();
    g.create_bucket(bucket);
    let c = g.client();
    support_s3::runtime().block_on(async {
        for i in (0..ROWS).filter(|i| !lost.contains(i)) {
            c.put_object().bucket(bucket).key(s3_key(i)).body(blob(i).into()).send().await.expect("put");
        }
    });
    node
}

fn delete(bucket: &str, keys: &[usize]) {
    let c = garage().client();
    support_s3::runtime().block_on(async {
        for &i in keys {
            c.delete_object().bucket(bucket).key(s3_key(i)).send().await.expect("delete");
        }
    });
}

fn object_count(bucket: &str) -> usize {
    let c = garage().client();
    support_s3::runtime().block_on(async {
        let mut n = 0;
        let mut token = None;
        loop {
            let r = c.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await.expect("list");
            n += r.contents().len();
            match r.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => return n,
            }
        }
    })
}

/// recon.toml for `bucket` through `endpoint` (Garage, or a proxy in front of it).
fn config(w: &Workdir, node: &cql_test_node::BlockingNode, bucket: &str, endpoint: &str, extra: &str) -> PathBuf {
    let g = garage();
    let cp = node.addr().to_string();
    w.write(
        "recon.toml",
        format!(
            r#"runs = "{runs}"

[source]
contact-points = "{cp}"
keyspace = "media"
table = "objects"
key-column = "id"
size-of = "blob"
key-map = "{KEY_MAP}"
splits = 64

[target]
bucket = "{bucket}"
endpoint-url = "{endpoint}"
region = "{region}"
concurrency = 4

[diff]
compare = "size"

[repair]
mode = "on"
contact-points = "{cp}"
source = "media.objects"
key-column = "id"
blob-column = "blob"
bucket = "{bucket}"
endpoint-url = "{endpoint}"
region = "{region}"

[brake]
max-missing-fraction = 0.05

[report]
metrics = "{metrics}"
{extra}
"#,
            runs = w.join("runs").display(),
            region = g.region,
            metrics = w.join("metrics/keyrecon.prom").display(),
        ),
    )
}

/// keyrecon-reconcile with Garage's credentials in a clean environment, as cron would run it.
fn reconcile(cfg: &Path, args: &[&str]) -> Command {
    let g = garage();
    let mut c = Command::new(RECONCILE);
    c.arg("--config").arg(cfg).args(args);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_ACCESS_KEY_ID", &g.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    c
}

fn night(cfg: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    let o = reconcile(cfg, args).output().unwrap();
    let runs = cfg.parent().unwrap().join("runs");
    let last = latest_run(&runs);
    let sum = support::summary(&last);
    (o, sum)
}

fn latest_run(runs: &Path) -> PathBuf {
    newest_run(runs).expect("a run directory")
}

/// The newest run directory, if the job has made one yet.
fn newest_run(runs: &Path) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(runs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("20"))
        .collect();
    v.sort();
    v.pop()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn three_nights_new_losses_then_resolved_and_the_report_in_chromium() {
    let w = Workdir::new();
    let bucket = "nightly-three";
    let node = migration(bucket, &[3, 50, 77]);
    let cfg = config(&w, &node, bucket, &garage().endpoint, "");

    // Night 1: three keys lost by the migration; repaired.
    let (o, s1) = night(&cfg, &["-q"]);
    assert_code(&o, 1);
    assert_eq!((s1["missing_on_target"].as_u64(), s1["changes"]["new"].as_u64()), (Some(3), Some(3)));
    assert_eq!(s1["repair"]["ok"].as_u64(), Some(3), "{s1}");
    assert_eq!(object_count(bucket), ROWS);

    // Between nights, two more objects are lost.
    delete(bucket, &[10, 200]);
    let (o, s2) = night(&cfg, &["-q"]);
    assert_code(&o, 1);
    assert_eq!(s2["missing_on_target"].as_u64(), Some(2));
    assert_eq!(
        (s2["changes"]["new"].as_u64(), s2["changes"]["still"].as_u64(), s2["changes"]["resolved"].as_u64()),
        (Some(2), Some(0), Some(3)),
        "night 2 reports exactly the new losses, and night 1's as resolved"
    );
    let run2 = latest_run(&w.join("runs"));
    assert_eq!(lines(&run2.join("changes/new.txt")), [s3_key(10), s3_key(200)]);
    assert_eq!(lines(&run2.join("changes/resolved.txt")), [s3_key(3), s3_key(50), s3_key(77)]);

    // Night 3: nothing missing; the two are resolved.
    let (o, s3) = night(&cfg, &["-q"]);
    assert_code(&o, 0);
    assert_eq!(s3["missing_on_target"].as_u64(), Some(0));
    assert_eq!((s3["changes"]["new"].as_u64(), s3["changes"]["resolved"].as_u64()), (Some(0), Some(2)));
    let run3 = latest_run(&w.join("runs"));
    assert_eq!(lines(&run3.join("changes/resolved.txt")), [s3_key(10), s3_key(200)]);

    // One history line per night; metrics of the last; a report in each run.
    let hist = lines(&w.join("runs/history.jsonl"));
    assert_eq!(hist.len(), 3);
    let prom = std::fs::read_to_string(w.join("metrics/keyrecon.prom")).unwrap();
    assert!(prom.contains("keyrecon_missing_on_target{job=\"recon\"} 0\n"), "{prom}");
    assert!(prom.contains("keyrecon_resolved{job=\"recon\"} 2\n"), "{prom}");
    assert!(prom.contains("keyrecon_last_success_timestamp_seconds{job=\"recon\"}"), "{prom}");
    assert!(std::fs::read_to_string(run2.join("report.md")).unwrap().contains("| new since"));

    check_report_in_chromium(&run2, &s2);
}

/// Opens report.html in headless Chromium, reads the rendered numbers by their ids and checks them
/// against summary.json; saves a screenshot as a test artifact (target/test-artifacts/).
fn check_report_in_chromium(run: &Path, sum: &serde_json::Value) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium not installed: run scripts/install-deps.sh (Debian package chromium)");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", run.join("report.html").display());
    let base = |c: &mut Command| {
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null());
    };
    let mut c = Command::new(chromium);
    base(&mut c);
    let o = c.arg("--dump-dom").arg(&url).output().unwrap();
    assert!(o.status.success(), "chromium --dump-dom: {}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let value = |id: &str| -> String {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no element #{id} in the rendered page"));
        let rest = &dom[at..];
        let start = rest.find('>').unwrap() + 1;
        let end = rest[start..].find('<').unwrap();
        rest[start..start + end].trim().to_string()
    };
    for (id, path) in [
        ("missing_on_target", &["missing_on_target"][..]),
        ("missing_on_source", &["missing_on_source"]),
        ("source_keys", &["source_keys"]),
        ("target_keys", &["target_keys"]),
        ("new", &["changes", "new"]),
        ("still", &["changes", "still"]),
        ("resolved", &["changes", "resolved"]),
        ("repair_ok", &["repair", "ok"]),
        ("exit_code", &["exit_code"]),
    ] {
        let want = path.iter().fold(sum, |v, k| &v[*k]).to_string();
        assert_eq!(value(id), want, "#{id} on the rendered page against summary.json");
    }
    assert!(dom.contains("<svg") && dom.contains("<polyline"), "the chart is in the page");
    let art = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let shot = art.join("nightly-report.png");
    let mut c = Command::new(chromium);
    base(&mut c);
    let o =
        c.arg(format!("--screenshot={}", shot.display())).arg("--window-size=1100,1500").arg(&url).output().unwrap();
    assert!(
        o.status.success() && shot.metadata().map(|m| m.len() > 1000).unwrap_or(false),
        "screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_listing_that_lost_keys_trips_the_brake_and_copies_nothing() {
    let w = Workdir::new();
    let bucket = "nightly-brake";
    let node = migration(bucket, &[5]);
    let g = garage();
    // Night 1, through Garage: one key missing, repaired.
    let cfg = config(&w, &node, bucket, &g.endpoint, "");
    let (o, _) = night(&cfg, &["-q"]);
    assert_code(&o, 1);
    delete(bucket, &[6]);
    // Night 2, through a proxy that cuts every listing page short and says it is the last: the lister
    // cannot tell (a server bug, as far as it knows) and lists a fraction of the bucket.
    let p = support_s3::proxy::start_rewriting(
        &g.endpoint,
        Arc::new(|line: &str, _, body: Vec<u8>| {
            if !line.contains("list-type=2") {
                return body;
            }
            let text = String::from_utf8(body).unwrap();
            let kept: Vec<&str> = text.split("</Contents>").collect();
            let mut out = kept.iter().take(3).copied().collect::<Vec<_>>().join("</Contents>");
            if kept.len() > 3 {
                out.push_str("</Contents></ListBucketResult>");
            }
            out.replace("<IsTruncated>true</IsTruncated>", "<IsTruncated>false</IsTruncated>").into_bytes()
        }),
    );
    // A run that is not clean notifies: the command gets report.md's path.
    let notified = w.join("notified.md");
    let notify = format!("notify-cmd = \"sh -c 'cp \\\"$0\\\" {}'\"", notified.display());
    let cfg = config(&w, &node, bucket, &p.endpoint, &notify);
    let before = object_count(bucket);
    let (o, s) = night(&cfg, &[]);
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("BRAKE") && err.contains("max-missing-fraction"), "{err}");
    assert_eq!(s["brake"]["tripped"].as_bool(), Some(true));
    assert!(s["brake"]["reasons"].to_string().contains("fewer"), "the listing drop is named too: {s}");
    let run = latest_run(&w.join("runs"));
    assert!(!run.join("repair").exists(), "repair did not start");
    assert_eq!(object_count(bucket), before, "nothing was copied");
    assert!(std::fs::read_to_string(run.join("report.html")).unwrap().contains("id=\"brake\""));
    let mail = std::fs::read_to_string(&notified).expect("--notify-cmd ran with the report's path");
    assert!(mail.contains("**Brake:**") && mail.contains("repair did not start"), "{mail}");
    // After a look, --accept-large lets the repair run (through Garage: the proxy is only for listing).
    let cfg = config(&w, &node, bucket, &g.endpoint, "");
    let (o, s) = night(&cfg, &["--accept-large", "-q"]);
    assert_code(&o, 1);
    assert_eq!(s["repair"]["ok"].as_u64(), Some(1));
}

#[test]
fn a_night_killed_mid_run_resumes_to_the_same_result() {
    let w = Workdir::new();
    let bucket = "nightly-kill";
    let node = migration(bucket, &[1, 2, 300]);
    let cfg = config(&w, &node, bucket, &garage().endpoint, "");
    let mut child = reconcile(&cfg, &["-q"]).stderr(Stdio::null()).spawn().unwrap();
    // Kill it once the source listing is done, in the middle of the night.
    let t0 = Instant::now();
    loop {
        // The job makes runs/ before the run directory: either may not exist yet.
        let stages = newest_run(&w.join("runs"))
            .and_then(|r| std::fs::read_to_string(r.join("stages.jsonl")).ok())
            .unwrap_or_default();
        if stages.contains(r#""stage":"list-source","state":"done""#) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "the source listing never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let run = latest_run(&w.join("runs"));
    assert!(!run.join("summary.json").exists(), "killed before the end");
    let (o, s) = night(&cfg, &["--resume", "-q"]);
    assert_code(&o, 1);
    assert_eq!(latest_run(&w.join("runs")), run, "the same run continued");
    assert_eq!((s["missing_on_target"].as_u64(), s["repair"]["ok"].as_u64()), (Some(3), Some(3)));
    assert_eq!(s["resumed"].as_bool(), Some(true));
    assert_eq!(object_count(bucket), ROWS);
    // A finished run is not resumed again.
    let o = reconcile(&cfg, &["--resume"]).output().unwrap();
    assert_code(&o, 2);
}

#[test]
fn two_overlapping_runs_the_second_refuses() {
    let w = Workdir::new();
    let bucket = "nightly-lock";
    let node = migration(bucket, &[]);
    let cfg = config(&w, &node, bucket, &garage().endpoint, "");
    std::fs::create_dir_all(w.join("runs")).unwrap();
    // The first run holds the lock (as a running keyrecon-reconcile does).
    let f = std::fs::File::create(w.join("runs/.lock")).unwrap();
    // SAFETY: flock on our own file descriptor.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let o = reconcile(&cfg, &[]).output().unwrap();
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("another run is in progress"));
    assert!(std::fs::read_dir(w.join("runs")).unwrap().flatten().all(|e| !e.path().is_dir()), "no run directory");
    drop(f);
    let o = reconcile(&cfg, &["-q"]).output().unwrap();
    assert_code(&o, 0);
    // --print-commands shows the pipeline, each a command a person could type.
    let o = reconcile(&cfg, &["--print-commands"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().next().unwrap().starts_with("keyrecon-list-cassandra --contact-points"), "{text}");
    assert!(text.contains("keyrecon-repair --keys") && text.contains("keyrecon-diff"), "{text}");
}
