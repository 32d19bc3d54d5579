//! keyrecon-list-s3 against a real Garage (started by `support_s3`, one per test binary): the listing
//! must be exactly the bucket's keys, whatever the parallelism, faults and interruptions.

mod support;
mod support_s3;

use keyrecon::record::Meta;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use support::{assert_code, keys_of, read_set, s, summary, Workdir};
use support_s3::{garage, proxy};

/// Keys S3 tools get wrong: spaces, `+` and `%` (URL-encoding), unicode, trailing `/`, keys that are
/// prefixes of others, 1024-byte keys, plus enough plain keys for many pages.
fn awkward_keys() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for i in 0..1500 {
        v.push(format!("{:08x}", (i as u64).wrapping_mul(2654435761) & 0xffff_ffff));
    }
    for i in 0..300 {
        v.push(format!("dir with space/file {i}.txt"));
        v.push(format!("plus+sign/{i}+x"));
        v.push(format!("pct%20/{i}%2F%zz"));
        v.push(format!("unicodé/日本語/{i}"));
        v.push(format!("folder{i}/"));
    }
    for i in 0..100 {
        v.push(format!("emoji/😀{i}"));
        v.push(format!("deep/2024/01/{:02}/{:04}/part", i % 28, i));
    }
    v.extend(
        ["a", "a/", "a/b", "a/b/c", "ab", "a b", "a+b", "a%20b", "~!@#$&*()=[]{};:',<>?", "z", "zz"].map(String::from),
    );
    v.push(format!("long/{}", "x".repeat(1024 - 5)));
    v.push(format!("long2/{}", "é".repeat(509)));
    v.push(format!("long3/{}", "日".repeat(339)));
    for k in &v {
        assert!(k.len() <= 1024, "{k:?}");
    }
    v.sort();
    v.dedup();
    v
}

/// A bucket holding [`awkward_keys`], populated once per test binary.
fn awkward() -> &'static (String, Vec<String>) {
    static B: OnceLock<(String, Vec<String>)> = OnceLock::new();
    B.get_or_init(|| {
        let keys = awkward_keys();
        garage().bucket_with("awkward", &keys);
        ("awkward".to_string(), keys)
    })
}

#[test]
fn empty_bucket_gives_an_empty_chunk_set() {
    let g = garage();
    g.bucket_with("empty", &[]);
    let t = Workdir::new();
    let out = t.join("s3.chunks");
    let o = g.list(&["--bucket", "empty", "--out", s(&out), "-j", "4"]);
    assert_code(&o, 0);
    assert!(read_set(&out).is_empty());
    let sum = summary(&out);
    assert_eq!(sum["keys_listed"], 0);
    assert_eq!(sum["complete"], true);
    assert!(String::from_utf8_lossy(&o.stderr).contains("listed 0 keys"), "summary paragraph on stderr");
}

#[test]
fn one_object_carries_size_etag_mtime_and_class() {
    let g = garage();
    let before = keyrecon::sources::s3::now_us() - 2_000_000;
    g.bucket_with("one", &["hello world.txt".to_string()]);
    let after = keyrecon::sources::s3::now_us() + 2_000_000;
    let t = Workdir::new();
    let out = t.join("s3.chunks");
    let o = g.list(&["--bucket", "one", "--out", s(&out)]);
    assert_code(&o, 0);
    let set = read_set(&out);
    assert_eq!(keys_of(&set), vec!["hello world.txt"]);
    let m = &set[0].1;
    assert_eq!(m.size, Some("hello world.txt".len() as u64));
    // Single-part ETag = MD5 of the body, without quotes.
    let etag = String::from_utf8(m.etag.clone().unwrap()).unwrap();
    assert!(etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()), "etag {etag:?}");
    let mt = m.mtime.unwrap();
    assert!(before <= mt && mt <= after, "mtime {mt} in [{before}, {after}]");
    assert_eq!(m.class.as_deref(), Some(&b"STANDARD"[..]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["disjoint"], true);
    assert_eq!(manifest["producer"]["tool"], "keyrecon-list-s3");
}

#[test]
fn parallel_listing_equals_serial_listing_on_awkward_keys() {
    let g = garage();
    let (bucket, keys) = awkward();
    let t = Workdir::new();
    let serial = t.join("serial");
    assert_code(&g.list(&["--bucket", bucket, "--out", s(&serial), "-j", "1"]), 0);
    let serial_keys = keys_of(&read_set(&serial));
    assert_eq!(&serial_keys, keys, "serial listing = the uploaded keys");
    // Small pages and many streams force many splits (work stealing) and short ranges.
    for (j, page) in [("8", "37"), ("3", "200"), ("16", "1000")] {
        let dir = t.join(format!("par-{j}-{page}"));
        let o = g.list(&["--bucket", bucket, "--out", s(&dir), "-j", j, "--page-size", page, "--chunk-keys", "300"]);
        assert_code(&o, 0);
        let set = read_set(&dir);
        assert_eq!(
            keys_of(&set),
            serial_keys,
            "-j {j} --page-size {page}: union of streams = serial listing, no duplicates"
        );
        let sum = summary(&dir);
        assert_eq!(sum["keys_listed"], keys.len() as u64, "no key listed twice: {sum}");
        // With 37-key pages there are ~90 pages to share: idle streams always split a busy range. With
        // 1000-key pages the first page may come back with the whole listing 3 pages wide before another
        // stream asks for work (a loaded machine), so no split is owed there.
        if page == "37" {
            assert!(sum["splits"].as_u64().unwrap() > 0, "work stealing split ranges: {sum}");
        }
    }
}

#[test]
fn lines_output_streams_plain_keys() {
    let g = garage();
    let (bucket, keys) = awkward();
    let o = g.list(&["--bucket", bucket, "--out", "-", "-j", "1", "-q"]);
    assert_code(&o, 0);
    let text = String::from_utf8(o.stdout).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, keys.iter().map(String::as_str).collect::<Vec<_>>(), "one stream: sorted keys");
    let o = g.list(&["--bucket", bucket, "--out", "-", "-z", "-j", "6", "--page-size", "100", "-q"]);
    assert_code(&o, 0);
    let mut got: Vec<&[u8]> = o.stdout.split(|&b| b == 0).filter(|k| !k.is_empty()).collect();
    got.sort();
    assert_eq!(
        got,
        keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>(),
        "several streams: same key set, NUL-terminated"
    );
}

#[test]
fn prefix_start_after_and_end_before_select_keys() {
    let g = garage();
    let (bucket, keys) = awkward();
    let t = Workdir::new();
    type Want = Box<dyn Fn(&str) -> bool>;
    let cases: &[(&[&str], Want)] = &[
        (&["--prefix", "a"], Box::new(|k: &str| k.starts_with('a'))),
        (&["--prefix", "unicodé/"], Box::new(|k: &str| k.starts_with("unicodé/"))),
        (&["--prefix", "nothing-here/"], Box::new(|_: &str| false)),
        (&["--start-after", "a/b", "--end-before", "folder2"], Box::new(|k: &str| k > "a/b" && k < "folder2")),
        (
            &["--prefix", "plus+sign/", "--start-after", "plus+sign/2", "-j", "4", "--page-size", "10"],
            Box::new(|k: &str| k.starts_with("plus+sign/") && k > "plus+sign/2"),
        ),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let dir = t.join(format!("c{i}"));
        let mut a = vec!["--bucket", bucket.as_str(), "--out", s(&dir)];
        a.extend_from_slice(args);
        assert_code(&g.list(&a), 0);
        let expect: Vec<String> = keys.iter().filter(|k| want(k)).cloned().collect();
        assert_eq!(keys_of(&read_set(&dir)), expect, "{args:?}");
    }
}

#[test]
fn age_cutoffs_filter_on_last_modified() {
    let g = garage();
    let old: Vec<String> = (0..50).map(|i| format!("old/{i}")).collect();
    let new: Vec<String> = (0..50).map(|i| format!("new/{i}")).collect();
    g.bucket_with("ages", &old);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cut = keyrecon::sources::s3::now_us();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    g.put("ages", &new);
    let cut_s = aws_sdk_s3::primitives::DateTime::from_millis(cut / 1000)
        .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
        .unwrap();
    let t = Workdir::new();
    let run = |name: &str, args: &[&str]| {
        let dir = t.join(name);
        let mut a = vec!["--bucket", "ages", "--out", s(&dir), "-j", "3", "--page-size", "7"];
        a.extend_from_slice(args);
        assert_code(&g.list(&a), 0);
        (keys_of(&read_set(&dir)), summary(&dir))
    };
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let (k, sum) = run("before", &["--modified-before", &cut_s]);
    assert_eq!(k, sorted(&old));
    assert_eq!(sum["keys_filtered"], 50);
    assert_eq!(run("since", &["--modified-since", &cut_s]).0, sorted(&new));
    assert_eq!(run("max-age", &["--max-age", "1h"]).0.len(), 100);
    assert!(run("min-age", &["--min-age", "1h"]).0.is_empty());
}

/// Lists the [`awkward`] bucket through `endpoint` (a test proxy) into a chunk set with `args`, checks
/// that it exits 0 with exactly the bucket's keys despite what the proxy did, and returns its summary.
fn list_awkward_via(endpoint: &str, args: &[&str], despite: &str) -> serde_json::Value {
    let (bucket, keys) = awkward();
    let t = Workdir::new();
    let dir = t.join("s3.chunks");
    let mut a = vec!["--bucket", bucket.as_str(), "--out", s(&dir)];
    a.extend_from_slice(args);
    assert_code(&garage().list_via(endpoint, &a), 0);
    assert_eq!(&keys_of(&read_set(&dir)), keys, "exact key set despite {despite}");
    summary(&dir)
}

#[test]
fn transient_faults_are_retried_counted_and_lose_nothing() {
    // Every 3rd request 503 SlowDown, every 7th 500: each page eventually succeeds.
    let p = proxy::start(&garage().endpoint, proxy::transient_faults(""));
    let sum = list_awkward_via(&p.endpoint, &["-j", "6", "--page-size", "150", "--retry-base-ms", "5"], "faults");
    let injected = p.stats.injected.load(Relaxed);
    assert!(injected > 5, "the proxy injected faults ({injected})");
    assert_eq!(sum["retries"], injected, "every injected fault was retried and counted: {sum}");
    assert!(sum["slowdowns"].as_u64().unwrap() > 0, "503s counted as slow-downs: {sum}");
    assert_eq!(sum["errors"], 0);
}

/// keyrecon parses ListObjectsV2 bodies itself (listxml): a 200 whose body is not a listing must be
/// retried like any failed page, never taken as a short or empty page.
#[test]
fn garbled_200_responses_are_retried_not_taken_as_short_pages() {
    // Every 4th request: "200" with an <Error> body instead of a listing.
    let p = proxy::start(
        &garage().endpoint,
        Arc::new(|line: &str, n: u64| (line.contains("list-type=2") && n % 4 == 2).then_some(200)),
    );
    let args = ["-j", "5", "--page-size", "170", "--retry-base-ms", "1"];
    let sum = list_awkward_via(&p.endpoint, &args, "garbled pages");
    let injected = p.stats.injected.load(Relaxed);
    assert!(injected > 3, "the proxy garbled some pages ({injected})");
    assert_eq!(sum["retries"], injected, "every garbled page was retried: {sum}");
    assert_eq!(sum["errors"], 0);
}

/// Answers ListObjectsV2 the way Ceph radosgw may: pages shorter than MaxKeys, some empty, that are still
/// truncated, with a continuation token for where the short page stopped (Garage's token format: `]` and
/// the base64 of the last key). Every 4th page passes unchanged; every 4th is empty and carries the token
/// it was asked with, so it does not advance (counted in the returned counter).
fn short_pages() -> (proxy::Rewrite, Arc<AtomicU64>) {
    use base64::Engine;
    fn decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        keyrecon::sources::s3::listxml::url_decode_into(s.as_bytes(), &mut out).expect("percent-encoded");
        out
    }
    let stalls = Arc::new(AtomicU64::new(0));
    let st = stalls.clone();
    let rw: proxy::Rewrite = Arc::new(move |line: &str, n: u64, body: Vec<u8>| {
        if !line.contains("list-type=2") {
            return body;
        }
        let text = String::from_utf8(body).expect("UTF-8 listing");
        let starts: Vec<usize> = text.match_indices("<Contents>").map(|(i, _)| i).collect();
        let token_in = line
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("continuation-token="))
            .map(|t| String::from_utf8(decode(t)).unwrap());
        let keep = match n % 4 {
            0 => starts.len(),
            1 => starts.len() / 2,
            2 => starts.len() / 5,
            _ => 0,
        };
        if keep == starts.len() || (keep == 0 && token_in.is_none()) {
            return text.into_bytes();
        }
        let next = if keep == 0 {
            st.fetch_add(1, Relaxed);
            token_in.unwrap()
        } else {
            let c = &text[starts[keep - 1]..];
            let key = &c[c.find("<Key>").unwrap() + 5..c.find("</Key>").unwrap()];
            format!("]{}", base64::engine::general_purpose::STANDARD.encode(decode(key)))
        };
        let tail = text.rfind("</Contents>").unwrap() + "</Contents>".len();
        let mut out = format!("{}{}", &text[..starts[keep]], &text[tail..]);
        if let (Some(a), Some(b)) = (out.find("<NextContinuationToken>"), out.find("</NextContinuationToken>")) {
            out.replace_range(a..b + "</NextContinuationToken>".len(), "");
        }
        let (a, b) = (out.find("<KeyCount>").unwrap(), out.find("</KeyCount>").unwrap());
        out.replace_range(
            a..b + "</KeyCount>".len(),
            &format!("<NextContinuationToken>{next}</NextContinuationToken><KeyCount>{keep}</KeyCount>"),
        );
        out.replace("<IsTruncated>false</IsTruncated>", "<IsTruncated>true</IsTruncated>").into_bytes()
    });
    (rw, stalls)
}

/// Short and empty pages with IsTruncated=true are normal (Ceph returns them): each range goes on until a
/// page is not truncated, and the page density the splitter estimates from a short page still leads to
/// ranges that neither overlap nor leave gaps. An empty page that hands back the token it was asked with
/// is asked again (a retry), never taken as the end of the range or repeated forever.
#[test]
fn short_and_empty_truncated_pages_lose_nothing() {
    let (rw, stalls) = short_pages();
    let p = proxy::start_rewriting(&garage().endpoint, rw);
    let sum = list_awkward_via(&p.endpoint, &["-j", "6", "--page-size", "150", "--retry-base-ms", "5"], "short pages");
    let shortened = p.stats.injected.load(Relaxed);
    let stalled = stalls.load(Relaxed);
    assert!(shortened > 20 && stalled > 3, "the proxy shortened pages ({shortened}, {stalled} empty)");
    assert_eq!(sum["retries"], stalled, "each page that did not advance was asked again: {sum}");
    assert_eq!(sum["errors"], 0, "{sum}");
    // One stream over the same server: the plain keys, in order, each once.
    let (bucket, keys) = awkward();
    let o = garage().list_via(
        &p.endpoint,
        &["--bucket", bucket, "--out", "-", "-j", "1", "--page-size", "90", "--retry-base-ms", "5"],
    );
    assert_code(&o, 0);
    let lines: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(&lines, keys);
}

#[test]
fn a_range_that_always_fails_exits_2_and_resume_completes_it() {
    let g = garage();
    let (bucket, keys) = awkward();
    // Ranges that start at or after "e" (their first request carries start-after >= "e") always fail
    // and stay unfinished; the others complete.
    let p = proxy::start(
        &g.endpoint,
        Arc::new(|line: &str, _| {
            let sa = line.split(['?', '&', ' ']).find_map(|p| p.strip_prefix("start-after="))?;
            let mut v = Vec::new();
            keyrecon::sources::s3::listxml::url_decode_into(sa.as_bytes(), &mut v).ok()?;
            (v.as_slice() >= &b"e"[..]).then_some(500)
        }),
    );
    let t = Workdir::new();
    let dir = t.join("s3.chunks");
    // With an age window: the resume comes later, so its own window would be another (every object here
    // is minutes old, inside both).
    let args = [
        "--bucket",
        bucket.as_str(),
        "--out",
        s(&dir),
        "-j",
        "4",
        "--page-size",
        "100",
        "--chunk-keys",
        "250",
        "--max-age",
        "1h",
    ];
    let mut a = args.to_vec();
    a.extend(["--retries", "2", "--retry-base-ms", "1"]);
    let o = g.list_via(&p.endpoint, &a);
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("page failed") && err.contains("--resume"), "failure reported: {err}");
    let window = |dir: &std::path::Path| {
        let cp: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
        (cp["settings"]["min_mtime_us"].as_i64().unwrap(), cp["settings"]["filters"]["max_age_ms"].clone())
    };
    let (first_window, flags) = window(&dir);
    assert_eq!(flags, 3_600_000, "the checkpoint records --max-age as given");
    assert!(!dir.join("manifest.json").exists(), "an incomplete listing is not a chunk set");
    let sum = summary(&dir);
    assert!(sum["errors"].as_u64().unwrap() > 0 && sum["complete"] == false, "{sum}");
    assert_eq!(
        sum["retries"].as_u64().unwrap(),
        2 * sum["errors"].as_u64().unwrap(),
        "each failed page retried twice: {sum}"
    );
    let first_run = sum["keys_listed"].as_u64().unwrap();
    assert!(first_run > 0 && first_run < keys.len() as u64, "{sum}");

    // A plain rerun refuses to clobber the unfinished listing; a resume that asks for another window is
    // refused; --resume continues it directly, with the first run's window.
    assert_code(&g.list(&args), 2);
    let mut other = args.to_vec();
    *other.last_mut().unwrap() = "2h";
    other.push("--resume");
    let o = g.list(&other);
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(max_age_ms: 3600000 -> 7200000)"), "says what differs, and only that: {err}");
    assert_eq!(window(&dir).0, first_window, "a refused resume leaves the checkpoint alone");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut a = args.to_vec();
    a.push("--resume");
    let o = g.list(&a);
    assert_code(&o, 0);
    assert_eq!(&keys_of(&read_set(&dir)), keys, "resumed listing = every key exactly once");
    let sum = summary(&dir);
    assert_eq!(sum["resumed"], true);
    assert_eq!(
        sum["keys_listed"].as_u64().unwrap() + first_run,
        keys.len() as u64,
        "resume listed only what was missing: {sum}"
    );
    assert!(!dir.join("checkpoint.json").exists());
}

#[test]
fn interrupted_listing_resumes_after_kill() {
    let g = garage();
    let (bucket, keys) = awkward();
    // A slow proxy (every request delayed) so the run is still going when it is killed.
    let p = proxy::start(
        &g.endpoint,
        Arc::new(|_: &str, _| {
            std::thread::sleep(std::time::Duration::from_millis(15));
            None
        }),
    );
    let t = Workdir::new();
    let dir = t.join("s3.chunks");
    let args =
        ["--bucket", bucket.as_str(), "--out", s(&dir), "-j", "2", "--page-size", "50", "--chunk-keys", "100", "-q"];
    let mut child = g.command_via(&p.endpoint, &args).spawn().unwrap();
    // Kill once some chunks are on disk.
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&dir)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("chunk-")).count())
        .unwrap_or(0)
        < 3
    {
        assert!(
            t0.elapsed().as_secs() < 60 && child.try_wait().unwrap().is_none(),
            "listing finished or stalled before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("manifest.json").exists());
    let mut a = args.to_vec();
    a.push("--resume");
    assert_code(&g.list(&a), 0);
    assert_eq!(&keys_of(&read_set(&dir)), keys, "killed + resumed = every key exactly once");
    let sum = summary(&dir);
    assert!(sum["keys_listed"].as_u64().unwrap() < keys.len() as u64, "resume did not relist everything: {sum}");
}

// ------------------------------------------------------------------------------------------------
// S3 Inventory

fn url_encode(k: &str) -> String {
    k.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// An inventory report of `keys` in the documented AWS CSV layout, split over 3 files in shuffled
/// order, plus an old version and a delete marker that must not become keys. Returns (manifest JSON,
/// [(file key, gz bytes)]).
fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn inventory_report(keys: &[String], dest_bucket: &str) -> (String, Vec<(String, Vec<u8>)>) {
    let mut rows: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("\"src\",\"{}\",\"v{i}\",\"true\",\"false\",\"{}\",\"2024-05-01T10:00:{:02}.000Z\",\"{:032x}\",\"STANDARD\"", url_encode(k), k.len(), i % 60, i))
        .collect();
    rows.push(format!(
        "\"src\",\"{}\",\"old\",\"false\",\"false\",\"1\",\"2020-01-01T00:00:00.000Z\",\"x\",\"STANDARD\"",
        url_encode("only-an-old-version")
    ));
    rows.push(format!(
        "\"src\",\"{}\",\"dm\",\"true\",\"true\",\"\",\"2024-01-01T00:00:00.000Z\",\"\",\"\"",
        url_encode("deleted-key")
    ));
    rows.reverse();
    let third = rows.len() / 3;
    rows.rotate_left(third);
    let per = rows.len().div_ceil(3);
    let files: Vec<(String, Vec<u8>)> = rows
        .chunks(per)
        .enumerate()
        .map(|(i, c)| (format!("inv/src/all/data/file-{i}.csv.gz"), gz(&(c.join("\n") + "\n"))))
        .collect();
    let manifest = serde_json::json!({
        "sourceBucket": "src",
        "destinationBucket": format!("arn:aws:s3:::{dest_bucket}"),
        "version": "2016-11-30",
        "creationTimestamp": "1714521600000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
        "files": files.iter().map(|(k, b)| serde_json::json!({"key": k, "size": b.len(), "MD5checksum": md5_hex(b)})).collect::<Vec<_>>(),
    });
    (manifest.to_string(), files)
}

fn check_inventory_set(dir: &Path, keys: &[String]) {
    let set = read_set(dir);
    assert_eq!(keys_of(&set), keys, "inventory keys decoded, sorted, old versions and delete markers skipped");
    let pos = |k: &str| keys.iter().position(|x| x == k).unwrap();
    for (k, m) in &set {
        let k = std::str::from_utf8(k).unwrap();
        let i = pos(k);
        let want = Meta {
            size: Some(k.len() as u64),
            etag: Some(format!("{:032x}", i).into_bytes()),
            mtime: Some(keyrecon::sources::s3::parse_time_us(&format!("2024-05-01T10:00:{:02}Z", i % 60)).unwrap()),
            origin: None,
            class: Some(b"STANDARD".to_vec()),
        };
        assert_eq!(m, &want, "{k:?}");
    }
}

#[test]
fn inventory_report_from_a_local_manifest() {
    let keys = awkward_keys();
    let (manifest, files) = inventory_report(&keys, "inventory-dest");
    let t = Workdir::new();
    let root = t.join("report");
    for (k, b) in &files {
        let p = root.join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
    let mdir = root.join("inv/src/all/2024-05-01T01-00Z");
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::write(mdir.join("manifest.json"), &manifest).unwrap();
    let out = t.join("inv.chunks");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keyrecon-list-s3"))
        .args(["--inventory", s(&mdir.join("manifest.json")), "--out", s(&out), "-j", "3", "--mem", "64K"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    check_inventory_set(&out, &keys);
    let sum = summary(&out);
    assert_eq!(sum["not_latest_or_deleted"], 2, "{sum}");
    // A window on keys and times applies to inventories too.
    let out2 = t.join("inv2.chunks");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keyrecon-list-s3"))
        .args([
            "--inventory",
            s(&mdir.join("manifest.json")),
            "--out",
            s(&out2),
            "--prefix",
            "a",
            "--modified-before",
            "2024-05-01T10:00:30Z",
        ])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let got = keys_of(&read_set(&out2));
    let want: Vec<String> =
        keys.iter().enumerate().filter(|(i, k)| k.starts_with('a') && i % 60 <= 30).map(|(_, k)| k.clone()).collect();
    assert_eq!(got, want);
}

#[test]
fn inventory_report_from_s3() {
    let g = garage();
    let keys: Vec<String> = awkward_keys().into_iter().take(500).collect();
    let (manifest, files) = inventory_report(&keys, "inventory-dest");
    let rt = support_s3::runtime();
    let c = g.client();
    rt.block_on(async {
        c.create_bucket().bucket("inventory-dest").send().await.unwrap();
        for (k, b) in files
            .iter()
            .chain(std::iter::once(&("inv/src/all/2024-05-01T01-00Z/manifest.json".to_string(), manifest.into_bytes())))
        {
            c.put_object().bucket("inventory-dest").key(k).body(b.clone().into()).send().await.unwrap();
        }
    });
    let t = Workdir::new();
    let out = t.join("inv.chunks");
    let o =
        g.list(&["--inventory", "s3://inventory-dest/inv/src/all/2024-05-01T01-00Z/manifest.json", "--out", s(&out)]);
    assert_code(&o, 0);
    check_inventory_set(&out, &keys);
}

/// Issue 3: a data file whose GET fails with a 503 is read again (the run still ends with every key),
/// and one whose bytes do not match the manifest's MD5checksum is read again and then fails, named,
/// with exit 2 and no chunk set: a damaged inventory must not look like missing keys.
#[test]
fn inventory_files_are_read_again_after_a_failed_get_and_checked_against_their_md5() {
    let g = garage();
    let keys: Vec<String> = awkward_keys().into_iter().take(300).collect();
    let (manifest, files) = inventory_report(&keys, "inventory-faults");
    let url = upload_report(g, "inventory-faults", &manifest, &files);
    // The first GET of each data file gets a 503.
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let p = proxy::start(
        &g.endpoint,
        Arc::new(move |line: &str, _| {
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            (line.starts_with("GET ") && path.contains(".csv.gz") && seen.lock().unwrap().insert(path)).then_some(503)
        }),
    );
    let t = Workdir::new();
    let out = t.join("inv.chunks");
    let o = g.list_via(&p.endpoint, &["--inventory", &url, "--out", s(&out), "-j", "2"]);
    assert_code(&o, 0);
    check_inventory_set(&out, &keys);
    let sum = summary(&out);
    assert_eq!((sum["retries"].as_u64(), p.stats.injected.load(Relaxed)), (Some(3), 3));

    // The manifest lists another MD5 for the second file than the bytes stored.
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    m["files"][1]["MD5checksum"] = "0123456789abcdef0123456789abcdef".into();
    let url = upload_report(g, "inventory-md5", &m.to_string(), &files);
    let out = t.join("bad.chunks");
    let o = g.list(&["--inventory", &url, "--out", s(&out), "--retries", "1"]);
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&files[1].0) && err.contains("MD5"), "the damaged file and the reason are named: {err}");
    assert!(err.contains("reading it again"), "read again before giving up: {err}");
    assert!(!out.join("manifest.json").exists(), "no chunk set from a damaged report");
}

/// Uploads a report's files and manifest into `bucket` (created); returns the manifest's s3:// URL.
fn upload_report(g: &support_s3::Garage, bucket: &str, manifest: &str, files: &[(String, Vec<u8>)]) -> String {
    let rt = support_s3::runtime();
    let c = g.client();
    let mkey = "inv/src/all/2024-05-01T01-00Z/manifest.json";
    rt.block_on(async {
        c.create_bucket().bucket(bucket).send().await.unwrap();
        for (k, b) in files.iter().chain(std::iter::once(&(mkey.to_string(), manifest.as_bytes().to_vec()))) {
            c.put_object().bucket(bucket).key(k).body(b.clone().into()).send().await.unwrap();
        }
    });
    format!("s3://{bucket}/{mkey}")
}

/// Issue 3: s3:// data files are streamed (gunzip from the GetObject body as it arrives), not read
/// whole: a 48 MiB data file is read by a process whose peak RSS stays well below the file's size.
#[test]
fn inventory_data_files_from_s3_are_streamed_not_read_whole() {
    let g = garage();
    // 48k rows of ~1 KiB outside --prefix (stored, not compressed: the gzip file is as large as the
    // CSV) and 100 rows inside it.
    let pad = "x".repeat(1000);
    let mut text = String::new();
    for i in 0..48_000 {
        text.push_str(&format!(
            "\"src\",\"junk/{i:06}/{pad}\",\"1\",\"2024-05-01T10:00:00.000Z\",\"e\",\"STANDARD\"\n"
        ));
        if i % 480 == 0 {
            text.push_str(&format!("\"src\",\"keep/{i:06}\",\"2\",\"2024-05-01T10:00:00.000Z\",\"e\",\"STANDARD\"\n"));
        }
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    e.write_all(text.as_bytes()).unwrap();
    let big = e.finish().unwrap();
    drop(text);
    assert!(big.len() > 48 << 20, "{}", big.len());
    let manifest = serde_json::json!({
        "sourceBucket": "src", "destinationBucket": "arn:aws:s3:::inventory-big", "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass",
        "files": [{"key": "inv/src/all/data/big.csv.gz", "size": big.len(), "MD5checksum": md5_hex(&big)}],
    });
    let url = upload_report(
        g,
        "inventory-big",
        &manifest.to_string(),
        &[("inv/src/all/data/big.csv.gz".to_string(), big.clone())],
    );
    let t = Workdir::new();
    let out = t.join("inv.chunks");
    let o = g.list(&["--inventory", &url, "--out", s(&out), "--prefix", "keep/", "--mem", "4M", "-j", "1"]);
    assert_code(&o, 0);
    let want: Vec<String> = (0..48_000).step_by(480).map(|i| format!("keep/{i:06}")).collect();
    assert_eq!(keys_of(&read_set(&out)), want);
    let sum = summary(&out);
    assert_eq!((sum["rows"].as_u64(), sum["keys_filtered"].as_u64()), (Some(48_100), Some(48_000)), "{sum}");
    let peak = sum["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak < big.len() as u64 * 3 / 4,
        "peak RSS {} MiB while reading a {} MiB data file: not streamed",
        peak >> 20,
        big.len() >> 20
    );
}

/// Issue 3: `--resume` of an inventory read skips the data files the journal lists as done. The first
/// run fails on a missing data file; before resuming, the files it finished are deleted from the
/// bucket, so the resumed run can only succeed by not reading them again.
#[test]
fn inventory_resume_skips_files_already_done() {
    let g = garage();
    let keys: Vec<String> = awkward_keys().into_iter().take(600).collect();
    let (manifest, files) = inventory_report(&keys, "inventory-resume");
    assert_eq!(files.len(), 3);
    let url = upload_report(g, "inventory-resume", &manifest, &files[..2]);
    let t = Workdir::new();
    let out = t.join("inv.chunks");
    let args = ["--inventory", url.as_str(), "--out", s(&out), "-j", "1"];
    let o = g.list(&args);
    assert_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&files[2].0), "the failing data file is named: {err}");
    assert!(!out.join("manifest.json").exists());
    let journal = std::fs::read_to_string(out.join("inventory-work/journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 2, "two files journaled as done: {journal}");

    // A plain rerun refuses to clobber the unfinished read.
    let o = g.list(&args);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));

    let rt = support_s3::runtime();
    let c = g.client();
    rt.block_on(async {
        for (k, _) in &files[..2] {
            c.delete_object().bucket("inventory-resume").key(k).send().await.unwrap();
        }
        c.put_object()
            .bucket("inventory-resume")
            .key(&files[2].0)
            .body(files[2].1.clone().into())
            .send()
            .await
            .unwrap();
    });
    let mut a = args.to_vec();
    a.push("--resume");
    let o = g.list(&a);
    assert_code(&o, 0);
    check_inventory_set(&out, &keys);
    let sum = summary(&out);
    assert_eq!(
        (sum["resumed"].as_bool(), sum["files_skipped"].as_u64(), sum["files"].as_u64()),
        (Some(true), Some(2), Some(3)),
        "{sum}"
    );
    assert_eq!(sum["not_latest_or_deleted"], 2, "counts of skipped files come from the journal: {sum}");
    assert!(!out.join("inventory-work").exists(), "work files removed once the set is complete");
}

// ------------------------------------------------------------------------------------------------
// The chunk set is keyrecon-diff's input; trouble is exit code 2.

#[test]
fn keyrecon_diff_reads_the_listing_directly() {
    let g = garage();
    let (bucket, keys) = awkward();
    let t = Workdir::new();
    let s3 = t.join("s3.chunks");
    assert_code(&g.list(&["--bucket", bucket, "--out", s(&s3), "-j", "4", "-q"]), 0);
    // The source (e.g. Cassandra) knows every key but a few, plus two the bucket lacks.
    let dropped: BTreeSet<&String> = keys.iter().step_by(500).collect();
    let mut src: Vec<String> = keys.iter().filter(|k| !dropped.contains(k)).cloned().collect();
    src.extend(["missing/one".to_string(), "missing/two".to_string()]);
    src.reverse();
    let src_file = t.write("source.txt", src.join("\n") + "\n");
    let d = t.join("diff");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keyrecon-diff"))
        .args([s(&src_file), s(&s3), "--out", s(&d), "-q"])
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert_eq!(std::fs::read_to_string(d.join("missing-on-target.txt")).unwrap(), "missing/one\nmissing/two\n");
    let orphans: Vec<String> =
        std::fs::read_to_string(d.join("missing-on-source.txt")).unwrap().lines().map(String::from).collect();
    assert_eq!(orphans, dropped.into_iter().cloned().collect::<Vec<_>>());
    // Against itself: no differences.
    let d2 = t.join("diff2");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keyrecon-diff"))
        .args([s(&s3), s(&s3), "--out", s(&d2), "-q"])
        .output()
        .unwrap();
    assert_code(&o, 0);
}

/// Issue 3 (memory flat in the key count): chunks go straight into the set and the manifest orders them
/// by first key. Here the lowest range's first page is held back, so the upper ranges open (and finish)
/// their chunks first: chunk ids are not in key order, and the set must still be one sorted sequence.
#[test]
fn issue3_ranges_finishing_out_of_order_make_an_ordered_set_keyrecon_diff_reads() {
    let g = garage();
    let (bucket, keys) = awkward();
    let first_request = |line: &str| {
        !line.contains("start-after=") && !line.contains("continuation-token=") && line.contains("list-type=2")
    };
    let p = proxy::start_with_delay(
        &g.endpoint,
        Arc::new(|_: &str, _| None),
        Arc::new(move |line: &str, _| first_request(line).then_some(std::time::Duration::from_millis(1500))),
    );
    let t = Workdir::new();
    let dir = t.join("s3.chunks");
    let o = g.list_via(
        &p.endpoint,
        &["--bucket", bucket, "--out", s(&dir), "-j", "4", "--page-size", "100", "--chunk-keys", "120", "-q"],
    );
    assert_code(&o, 0);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<&str> = manifest["chunks"].as_array().unwrap().iter().map(|c| c["file"].as_str().unwrap()).collect();
    let mut by_id = files.clone();
    by_id.sort();
    assert_ne!(files, by_id, "the held-back lowest range opened its chunks last, so key order != open order");
    assert!(
        std::fs::read_dir(&dir).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with('.')),
        "no temporary files left"
    );
    assert_eq!(&keys_of(&read_set(&dir)), keys, "one sorted sequence, every key once");
    let list = t.write("keys.txt", keys.join("\n") + "\n");
    let d = t.join("diff");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keyrecon-diff"))
        .args([s(&list), s(&dir), "--out", s(&d), "-q"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let few = t.write("few.txt", keys[1..].join("\n") + "\n");
    let d = t.join("diff2");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keyrecon-diff"))
        .args([s(&few), s(&dir), "--out", s(&d), "-q"])
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert_eq!(std::fs::read_to_string(d.join("missing-on-source.txt")).unwrap(), format!("{}\n", keys[0]));
}

#[test]
fn missing_bucket_and_existing_output_are_trouble() {
    let g = garage();
    let t = Workdir::new();
    let out = t.join("x.chunks");
    let o = g.list(&["--bucket", "no-such-bucket", "--out", s(&out), "--retries", "1", "--retry-base-ms", "1"]);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("NoSuchBucket"), "{}", String::from_utf8_lossy(&o.stderr));
    g.bucket_with("tiny", &["k".to_string()]);
    assert_code(&g.list(&["--bucket", "tiny", "--out", s(&out), "--force"]), 0);
    let o = g.list(&["--bucket", "tiny", "--out", s(&out)]);
    assert_code(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_code(&g.list(&["--bucket", "tiny", "--out", s(&out), "--force"]), 0);
}
