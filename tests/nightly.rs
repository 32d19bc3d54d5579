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
use std::sync::atomic::Ordering::SeqCst;
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

/// Sets `line` (`key = value`) in `[section]` of the recon.toml at `cfg`: replaces the key's line there,
/// or adds it under the section's header.
fn set(cfg: &Path, section: &str, line: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let key = line.split('=').next().unwrap().trim();
    let mut out: Vec<String> = Vec::new();
    let (mut here, mut done) = (false, false);
    for l in text.lines() {
        if l.starts_with('[') {
            if here && !done {
                out.push(line.to_string());
                done = true;
            }
            here = l == format!("[{section}]");
        }
        if here && !done && l.split('=').next().unwrap().trim() == key {
            out.push(line.to_string());
            done = true;
            continue;
        }
        out.push(l.to_string());
    }
    if here && !done {
        out.push(line.to_string());
        done = true;
    }
    assert!(done, "no [{section}] in {}", cfg.display());
    std::fs::write(cfg, out.join("\n") + "\n").unwrap();
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
    // Every night that is not clean notifies, with its report.md.
    let notified = w.join("notified.txt");
    set(&cfg, "report", &format!("notify-cmd = \"sh -c 'echo \\\"$0\\\" >> {}'\"", notified.display()));

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
    let samples = prometheus_samples(&prom);
    let sample = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(sample("keyrecon_missing_on_target{job=\"recon\"}"), Some(0.0), "{prom}");
    assert_eq!(sample("keyrecon_resolved{job=\"recon\"}"), Some(2.0), "{prom}");
    assert_eq!(sample("keyrecon_repair_outcomes{job=\"recon\",outcome=\"ok\"}"), Some(0.0), "{prom}");
    assert!(sample("keyrecon_stage_duration_seconds{job=\"recon\",stage=\"list-source\"}").is_some(), "{prom}");
    assert_eq!(
        sample("keyrecon_last_success_timestamp_seconds{job=\"recon\"}"),
        Some((s3["finished_unix_ms"].as_u64().unwrap() / 1000) as f64),
        "the last success is night 3's end: {prom}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(w.join("metrics")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, ["keyrecon.prom"], "written under a temporary name and renamed");
    assert!(std::fs::read_to_string(run2.join("report.md")).unwrap().contains("| new since"));
    // Nights 1 and 2 found differences and notified; night 3 was clean and did not.
    let runs: Vec<String> = hist
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["dir"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines(&notified), [format!("{}/report.md", runs[0]), format!("{}/report.md", runs[1])]);

    check_report_in_chromium(&run2, &s2);
}

/// The samples of a Prometheus text exposition as (name{labels}, value), checking the format's rules
/// on the way (node_exporter's textfile collector drops a whole file that breaks one): every sample's
/// family has its `# HELP` and `# TYPE` before it, names and label names are valid, label values are
/// quoted, values parse, and the text ends with a newline.
fn prometheus_samples(text: &str) -> Vec<(String, f64)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    assert!(text.ends_with('\n'), "a text exposition ends with a newline");
    let (mut helped, mut typed) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&t), "{l}");
            assert!(!typed.contains(&n.to_string()), "one TYPE per family: {l}");
            typed.push(n.to_string());
        } else {
            assert!(!l.starts_with('#') && !l.is_empty(), "{l:?}");
            let (series, value) = l.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(name_ok(name), "metric name {name:?}");
            assert!(helped.iter().any(|h| h == name) && typed.iter().any(|t| t == name), "HELP and TYPE before {l}");
            if let Some(labels) = series.strip_prefix(name).filter(|x| !x.is_empty()) {
                let inner = labels.strip_prefix('{').and_then(|x| x.strip_suffix('}')).expect("labels in braces");
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(name_ok(k) && v.starts_with('"') && v.ends_with('"') && v.len() >= 2, "label {pair}");
                }
            }
            out.push((series.to_string(), value.parse::<f64>().unwrap_or_else(|e| panic!("{l}: {e}"))));
        }
    }
    out
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
    let (o, s1) = night(&cfg, &["-q"]);
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
    // The next night lists through Garage again. It compares with night 1, not with the braked night
    // (whose missing set was the broken listing's): key 6 is a new loss, key 5 was resolved.
    let cfg = config(&w, &node, bucket, &g.endpoint, "");
    let (o, s3) = night(&cfg, &["-q"]);
    assert_code(&o, 1);
    assert_eq!(s3["changes"]["previous"], s1["run"], "the braked night is not the baseline");
    let run3 = latest_run(&w.join("runs"));
    assert_eq!(lines(&run3.join("changes/new.txt")), [s3_key(6)]);
    assert_eq!(lines(&run3.join("changes/resolved.txt")), [s3_key(5)]);
    assert_eq!((s3["brake"]["tripped"].as_bool(), s3["repair"]["ok"].as_u64()), (Some(false), Some(1)));
}

#[test]
fn a_listing_that_lost_one_page_trips_the_brake_by_the_drop_alone() {
    let w = Workdir::new();
    let bucket = "nightly-page";
    let node = migration(bucket, &[]);
    let g = garage();
    // The missing-fraction check is off (1.0): only the listing drop can hold repair back. One stream
    // and pages of 100 keys, so a lost page is a quarter of the bucket.
    let cfg = config(&w, &node, bucket, &g.endpoint, "");
    let tune = |cfg: &Path| {
        set(cfg, "brake", "max-missing-fraction = 1.0");
        set(cfg, "target", "concurrency = 1");
        set(cfg, "target", "page-size = 100");
    };
    tune(&cfg);
    let (o, s1) = night(&cfg, &["-q"]);
    assert_code(&o, 0);
    assert_eq!(s1["target_keys"].as_u64(), Some(ROWS as u64));
    // Night 2, through a proxy that empties the second page of the listing (its keys gone, its
    // continuation token kept): the listing goes on and ends normally, a page short.
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let l = lost.clone();
    let p = support_s3::proxy::start_rewriting(
        &g.endpoint,
        Arc::new(move |line: &str, _, body: Vec<u8>| {
            if !line.contains("list-type=2") || !line.contains("continuation-token") || l.swap(true, SeqCst) {
                return body;
            }
            let text = String::from_utf8(body).unwrap();
            let (head, rest) = text.split_once("<Contents>").expect("a page with keys");
            let tail = &rest[rest.rfind("</Contents>").unwrap() + "</Contents>".len()..];
            format!("{head}{tail}").into_bytes()
        }),
    );
    let cfg = config(&w, &node, bucket, &p.endpoint, "");
    tune(&cfg);
    let (o, s2) = night(&cfg, &[]);
    assert_code(&o, 2);
    assert!(lost.load(SeqCst), "the proxy emptied a page");
    assert_eq!(s2["target_keys"].as_u64(), Some(ROWS as u64 - 100), "{s2}");
    let reasons = s2["brake"]["reasons"].to_string();
    assert!(reasons.contains("the target listed 300 keys against 400"), "{reasons}");
    assert!(!reasons.contains("max-missing-fraction"), "the drop alone tripped it: {reasons}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("BRAKE") && err.contains("max-listing-drop"), "the run says why: {err}");
    assert!(!latest_run(&w.join("runs")).join("repair").exists(), "repair did not start");
    assert_eq!(object_count(bucket), ROWS, "nothing was copied");
    let prom = std::fs::read_to_string(w.join("metrics/keyrecon.prom")).unwrap();
    assert!(prometheus_samples(&prom).contains(&("keyrecon_brake_tripped{job=\"recon\"}".into(), 1.0)), "{prom}");
}

#[test]
fn a_real_mass_loss_waits_for_a_look_then_resume_accept_large_repairs_that_run() {
    let w = Workdir::new();
    let bucket = "nightly-accept";
    let node = migration(bucket, &[]);
    let cfg = config(&w, &node, bucket, &garage().endpoint, "");
    let (o, _) = night(&cfg, &["-q"]);
    assert_code(&o, 0);
    // A tenth of the bucket is really lost: above max-missing-fraction (5%), the brake holds.
    let gone: Vec<usize> = (0..ROWS).step_by(10).collect();
    delete(bucket, &gone);
    let (o, s) = night(&cfg, &["-q"]);
    assert_code(&o, 2);
    assert_eq!((s["brake"]["tripped"].as_bool(), s["missing_on_target"].as_u64()), (Some(true), Some(40)));
    assert_eq!(object_count(bucket), ROWS - 40, "nothing copied before a look");
    let run = latest_run(&w.join("runs"));
    // --resume alone does not go past the brake, and says how to.
    let o = reconcile(&cfg, &["--resume"]).output().unwrap();
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stopped at the brake") && err.contains("--resume --accept-large"), "{err}");
    // After a look: the same run continues with repair, without listing again.
    let (o, s) = night(&cfg, &["--resume", "--accept-large", "-q"]);
    assert_code(&o, 1);
    assert_eq!(latest_run(&w.join("runs")), run, "the braked run continued");
    assert_eq!((s["brake"]["accepted"].as_bool(), s["repair"]["ok"].as_u64()), (Some(true), Some(40)), "{s}");
    assert_eq!(object_count(bucket), ROWS);
    let stages: Vec<&str> = s["stages"].as_array().unwrap().iter().map(|t| t["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["list-source", "list-target", "diff", "repair"], "the earlier attempt's stages are reported");
    let journal = std::fs::read_to_string(run.join("stages.jsonl")).unwrap();
    assert_eq!(journal.matches(r#""stage":"list-source","state":"started""#).count(), 1, "listed once: {journal}");
    // One history line per run: the braked night's line is replaced by its continuation's.
    let hist = lines(&w.join("runs/history.jsonl"));
    assert_eq!(hist.len(), 2);
    let last: serde_json::Value = serde_json::from_str(&hist[1]).unwrap();
    assert_eq!((last["run"].clone(), last["exit_code"].as_i64()), (s["run"].clone(), Some(1)));
    let o = reconcile(&cfg, &["--resume", "--accept-large"]).output().unwrap();
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("finished"));
}

#[test]
fn a_sharded_night_diffs_like_an_unsharded_one() {
    let w = Workdir::new();
    let bucket = "nightly-shards";
    let node = migration(bucket, &[0, 3, 50, 77, 399]);
    // Orphans spread over the key space, so each target shard lists some keys; one object differs.
    let g = garage();
    let orphans: Vec<String> =
        ["0orphan", "Aorphan", "Morphan", "aorphan", "zorphan", "~orphan"].map(String::from).into();
    g.put(bucket, &orphans);
    g.put_object(bucket, &s3_key(20), b"not the blob");
    let cfg = config(&w, &node, bucket, &g.endpoint, "");
    set(&cfg, "repair", "mode = \"off\"");
    let (o, plain) = night(&cfg, &["-q"]);
    assert_code(&o, 1);
    let plain_run = latest_run(&w.join("runs"));
    set(&cfg, "source", "shards = 3");
    set(&cfg, "target", "shards = 2");
    let o = reconcile(&cfg, &["--print-commands"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for shard in ["--shard 1/3", "--shard 2/3", "--shard 3/3", "--shard 1/2", "--shard 2/2"] {
        assert_eq!(text.matches(shard).count(), 1, "{shard} in {text}");
    }
    let (o, sharded) = night(&cfg, &["-q"]);
    assert_code(&o, 1);
    let run = latest_run(&w.join("runs"));
    assert_ne!(run, plain_run);
    for (side, n, key) in [("source", 3, "records"), ("target", 2, "keys_listed")] {
        for i in 1..=n {
            let listed = support::summary(&run.join(format!("{side}/shard-{i}")))[key].as_u64().unwrap();
            assert!(listed > 0, "{side} shard {i}/{n} listed keys");
        }
    }
    for k in ["source_keys", "target_keys", "missing_on_target", "missing_on_source", "differ"] {
        assert_eq!(sharded[k], plain[k], "{k}");
    }
    assert_eq!(
        (plain["missing_on_target"].as_u64(), plain["missing_on_source"].as_u64(), plain["differ"].as_u64()),
        (Some(5), Some(6), Some(1))
    );
    for f in ["missing-on-target.txt", "missing-on-source.txt", "differ.txt", "missing-on-target.csv"] {
        let (a, b) =
            (std::fs::read(plain_run.join("diff").join(f)).unwrap(), std::fs::read(run.join("diff").join(f)).unwrap());
        assert!(a == b, "diff/{f}: sharded and unsharded differ");
    }
    assert_eq!((sharded["changes"]["new"].as_u64(), sharded["changes"]["still"].as_u64()), (Some(0), Some(5)));
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
