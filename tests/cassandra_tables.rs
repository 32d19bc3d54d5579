//! Issue 13, items 1 and 2: Cassandra tables as they are in production. The real binaries against the
//! CQL test node (the real scylla driver on the wire; a test node, not Cassandra) and a real Garage:
//! - a composite partition key of mixed types (text, bigint, timestamp, blob) with values that hold the
//!   separator: listed, diffed against S3, repaired and verified by the exact row;
//! - a table with clustering columns: listed a partition at a time (SELECT DISTINCT, proven by the
//!   node's read counts), repaired and verified from its static blob column; row values that have no
//!   single value per partition are refused with the reason;
//! - keys that would not split back into their columns are rejected, never listed under a key that
//!   could name another row; a template that cannot split back and a --key-column that is not the
//!   partition key are refused at start with the real key.
//!
//! Item 3: `--size-of` is measured by the server (`octet_length`) where it has it, with no blob moved,
//! and elsewhere fetched, with one loud warning and the bytes moved in summary.json; the sizes are the
//! same either way.

mod support;
mod support_s3;

use cql_test_node::{BlockingNode, ColumnType, ReadKind, Row, Table, TestNode, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use support::{assert_code, csv_rows, keys_of, read_set, s, summary, Workdir};
use support_s3::{garage, runtime};

const LIST: &str = env!("CARGO_BIN_EXE_keyrecon-list-cassandra");
const DIFF: &str = env!("CARGO_BIN_EXE_keyrecon-diff");
const REPAIR: &str = env!("CARGO_BIN_EXE_keyrecon-repair");
const VERIFY: &str = env!("CARGO_BIN_EXE_keyrecon-verify");

// ---- media.composite: PRIMARY KEY ((service text, id bigint, day timestamp, sig blob)) ----

const COMPOSITE_KEY: &str = "service,id,day,sig";
/// Services holding the default separator `/` (and a non-ASCII one): each key still splits one way,
/// because the columns after the service are an integer, a timestamp and hex.
const SERVICES: [&str; 4] = ["PHOTO", "photo/2024", "x/", "é/ü"];
/// Timestamps (ms) and their key text, written out by hand.
const DAYS: [(i64, &str); 3] = [
    (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (0, "1970-01-01T00:00:00.000Z"),
];

fn composite_table() -> Table {
    Table::new("media", "composite", "service", ColumnType::Text)
        .partition_key_column("id", ColumnType::Bigint)
        .partition_key_column("day", ColumnType::Timestamp)
        .partition_key_column("sig", ColumnType::Blob)
        .column("blob", ColumnType::Blob)
}

/// Row i's key values.
fn composite_values(i: usize) -> (String, i64, i64, Vec<u8>) {
    (SERVICES[i % 4].to_string(), i as i64 * 7919 - 100_000, DAYS[i % 3].0, vec![i as u8, b'/', 0xff])
}

/// Row i's key as the lister must write it (the default template `{service}/{id}/{day}/{sig}`).
fn composite_key(i: usize) -> String {
    let (service, id, _, sig) = composite_values(i);
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("{service}/{id}/{}/{hex}", DAYS[i % 3].1)
}

fn blob(i: usize) -> Vec<u8> {
    (0..(10 + i * 13 % 200)).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn composite_rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let (service, id, day, sig) = composite_values(i);
            Row::partition([Value::Text(service), Value::Bigint(id), Value::Timestamp(day), Value::Blob(sig)])
                .blob("blob", blob(i))
        })
        .collect()
}

// ---- media.parts: PRIMARY KEY ((bucket text, id bigint), part int), blob static, chunk per row ----

const PARTS_PER_PARTITION: i32 = 10;

fn parts_table() -> Table {
    Table::new("media", "parts", "bucket", ColumnType::Text)
        .partition_key_column("id", ColumnType::Bigint)
        .clustering_column("part", ColumnType::Int)
        .static_column("blob", ColumnType::Blob)
        .column("chunk", ColumnType::Blob)
}

/// Partition i: bucket `b0`.. and one holding the template's `:`.
fn parts_values(i: usize) -> (String, i64) {
    (if i % 5 == 0 { format!("a:b{i}") } else { format!("b{}", i % 3) }, i as i64)
}

/// Partition i's key by the template `{bucket}:{id}`.
fn parts_key(i: usize) -> String {
    let (b, id) = parts_values(i);
    format!("{b}:{id}")
}

fn parts_rows(n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for i in 0..n {
        let (b, id) = parts_values(i);
        for p in 0..PARTS_PER_PARTITION {
            let mut r = Row::partition([Value::Text(b.clone()), Value::Bigint(id)])
                .clustering([Value::Int(p)])
                .blob("chunk", vec![p as u8; 1000]);
            if p == 0 {
                r = r.blob("blob", blob(i));
            }
            rows.push(r);
        }
    }
    rows
}

// ---- media.pairs: PRIMARY KEY ((a text, b text)) ----

fn pairs_table() -> Table {
    Table::new("media", "pairs", "a", ColumnType::Text).partition_key_column("b", ColumnType::Text)
}

fn pair(a: &str, b: &str) -> Row {
    Row::partition([Value::Text(a.into()), Value::Text(b.into())])
}

const N_COMPOSITE: usize = 60;
const N_PARTS: usize = 30;

fn node() -> BlockingNode {
    node_playing(cql_test_node::Version::DEFAULT)
}

/// The fixture node, behaving like Cassandra `version`.
fn node_playing(version: &str) -> BlockingNode {
    TestNode::builder()
        .release_version(version)
        .table(composite_table())
        .rows(composite_rows(N_COMPOSITE))
        .table(parts_table())
        .rows(parts_rows(N_PARTS))
        .table(pairs_table())
        .rows([pair("plain", "one"), pair("x/y", "z"), pair("p", "q/r")])
        .build()
        .start_blocking("127.0.0.1:0")
        .expect("start CQL test node")
}

fn list(node: &BlockingNode, table: &str, out: &Path, args: &[&str]) -> Output {
    Command::new(LIST)
        .args(["--contact-points", &node.addr().to_string(), "--keyspace", "media", "--table", table])
        .args(["--request-timeout", "5", "--splits", "24", "--page-size", "7", "-q", "--out"])
        .arg(out)
        .args(args)
        .env_remove("KEYRECON_CASSANDRA_USERNAME")
        .env_remove("KEYRECON_CASSANDRA_PASSWORD")
        .output()
        .expect("run keyrecon-list-cassandra")
}

/// keyrecon-repair or keyrecon-verify with the node and Garage.
fn run(bin: &str, node: &BlockingNode, args: &[&str]) -> Output {
    let g = garage();
    g.command(bin, &g.endpoint)
        .args(["--contact-points", &node.addr().to_string(), "--consistency", "ONE", "-q"])
        .args(args)
        .output()
        .unwrap()
}

fn get(bucket: &str, key: &str) -> Option<Vec<u8>> {
    let c = garage().client();
    runtime().block_on(async {
        let o = c.get_object().bucket(bucket).key(key).send().await.ok()?;
        Some(o.body.collect().await.unwrap().into_bytes().to_vec())
    })
}

fn column(path: &Path, name: &str) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let i = r.headers().unwrap().iter().position(|h| h == name).unwrap();
    r.records().map(|r| r.unwrap()[i].to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Lists `table`, lists the bucket, diffs them with sizes: the diff directory.
fn list_and_diff(
    node: &BlockingNode,
    table: &str,
    bucket: &str,
    t: &Workdir,
    tag: &str,
    args: &[&str],
) -> std::path::PathBuf {
    let (cs, ss, d) =
        (t.join(format!("{tag}.chunks")), t.join(format!("{tag}-s3.chunks")), t.join(format!("{tag}-diff")));
    assert_code(&list(node, table, &cs, args), 0);
    assert_code(&garage().list(&["--bucket", bucket, "--out", s(&ss), "-q"]), 0);
    let o =
        Command::new(DIFF).arg(&cs).arg(&ss).arg("--out").arg(&d).args(["--compare", "size", "-q"]).output().unwrap();
    assert!(o.status.code() == Some(0) || o.status.code() == Some(1), "{}", stderr(&o));
    d
}

#[test]
fn composite_keys_list_diff_repair_and_verify_by_the_exact_row() {
    let node = node();
    let t = Workdir::new();
    let b = garage().create_bucket("issue13-composite");
    // The migration lost every 4th object.
    for i in (0..N_COMPOSITE).filter(|i| i % 4 != 0) {
        garage().put_object(&b, &composite_key(i), &blob(i));
    }
    let want: Vec<String> = sorted((0..N_COMPOSITE).map(composite_key).collect());

    // The listing: every row once, under its key, with its blob's size.
    let cs = t.join("c.chunks");
    let o = list(&node, "composite", &cs, &["--key-column", COMPOSITE_KEY, "--size-of", "blob"]);
    assert_code(&o, 0);
    let recs = read_set(&cs);
    assert_eq!(keys_of(&recs), want);
    let sizes: BTreeMap<String, u64> = (0..N_COMPOSITE).map(|i| (composite_key(i), blob(i).len() as u64)).collect();
    for (k, m) in &recs {
        assert_eq!(m.size, Some(sizes[std::str::from_utf8(k).unwrap()]));
    }
    let sum = summary(&cs);
    assert_eq!((sum["rows_read"].as_u64(), sum["unusable_keys"].as_u64()), (Some(N_COMPOSITE as u64), Some(0)));
    assert_eq!(sum["listing"]["filters"]["key_template"], "{service}/{id}/{day}/{sig}");
    assert_eq!(sum["distinct"], false, "no clustering columns: no DISTINCT needed");

    // Diff, repair, diff again: nothing missing, every object is its row's blob.
    let d = list_and_diff(&node, "composite", &b, &t, "before", &["--key-column", COMPOSITE_KEY, "--size-of", "blob"]);
    let missing = d.join("missing-on-target.csv");
    let lost: Vec<String> = sorted((0..N_COMPOSITE).filter(|i| i % 4 == 0).map(composite_key).collect());
    assert_eq!(column(&missing, "key"), lost);
    let out = t.join("repair");
    let src = ["--source", "media.composite", "--key-column", COMPOSITE_KEY, "--blob-column", "blob"];
    let o = run(REPAIR, &node, &[&["--keys", s(&missing), "--bucket", &b, "--out", s(&out)][..], &src].concat());
    assert_code(&o, 0);
    assert_eq!(summary(&out)["outcomes"]["ok"], lost.len() as u64);
    for i in (0..N_COMPOSITE).filter(|i| i % 4 == 0) {
        assert_eq!(get(&b, &composite_key(i)).as_deref(), Some(&blob(i)[..]), "object of row {i}");
    }
    let d2 = list_and_diff(&node, "composite", &b, &t, "after", &["--key-column", COMPOSITE_KEY, "--size-of", "blob"]);
    assert_eq!(csv_rows(&d2.join("missing-on-target.csv")).len(), 0);

    // Verify --deep fetches each key's exact row and compares it with the object.
    let v = t.join("verify");
    let ok = out.join("ok.csv");
    let o = run(VERIFY, &node, &[&["--keys", s(&ok), "--bucket", &b, "--deep", "--out", s(&v)][..], &src].concat());
    assert_code(&o, 0);
    assert_eq!(column(&v.join("ok.csv"), "comparison").iter().filter(|c| *c == "md5").count(), lost.len());

    // Keys that do not parse back into the columns fail at the "key" stage with the reason; a key of
    // the right form that is no row is not found.
    let keys = t.write(
        "odd.txt",
        "PHOTO/x/1970-01-01T00:00:00.000Z/00\nPHOTO/5/1970-01-01T00:00:00Z/00\nPHOTO/5/1970-01-01T00:00:00.000Z/00\n",
    );
    let out2 = t.join("repair-odd");
    let o = run(REPAIR, &node, &[&["--keys", s(&keys), "--bucket", &b, "--out", s(&out2)][..], &src].concat());
    assert_code(&o, 2);
    let failed = csv_rows(&out2.join("failed.csv"));
    let why: BTreeMap<&str, (&str, &str)> = failed.iter().map(|r| (&r[0], (&r[2], &r[4]))).collect();
    assert_eq!(why.len(), 2, "{why:?}");
    let (stage, e) = why["PHOTO/x/1970-01-01T00:00:00.000Z/00"];
    assert_eq!(stage, "key");
    assert!(
        e.contains("does not have the form {service}/{id}/{day}/{sig}") && e.contains("id: \"x\" is not a bigint"),
        "{e}"
    );
    let (stage, e) = why["PHOTO/5/1970-01-01T00:00:00Z/00"];
    assert!(stage == "key" && e.contains("day: \"1970-01-01T00:00:00Z\" is not a timestamp"), "{e}");
    assert_eq!(column(&out2.join("not-found.csv"), "key"), vec!["PHOTO/5/1970-01-01T00:00:00.000Z/00"]);
    let v2 = t.join("verify-odd");
    let o = run(VERIFY, &node, &[&["--keys", s(&keys), "--bucket", &b, "--deep", "--out", s(&v2)][..], &src].concat());
    assert_code(&o, 1); // none of them is in S3: missing before anything is fetched
}

#[test]
fn a_key_template_reorders_and_separates_and_key_map_applies_after_it() {
    let node = node();
    let t = Workdir::new();
    let out = t.join("c.chunks");
    let o = list(
        &node,
        "composite",
        &out,
        &[
            "--key-column",
            COMPOSITE_KEY,
            "--key-template",
            "{sig}|{id}|{day}|{service}",
            "--key-map",
            "add-prefix img/",
        ],
    );
    assert_code(&o, 0);
    let recs = read_set(&out);
    let want: BTreeMap<String, String> = (0..N_COMPOSITE)
        .map(|i| {
            let (service, id, _, sig) = composite_values(i);
            let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
            let k = format!("{hex}|{id}|{}|{service}", DAYS[i % 3].1);
            (format!("img/{k}"), k)
        })
        .collect();
    let got: BTreeMap<String, String> = recs
        .iter()
        .map(|(k, m)| (String::from_utf8(k.clone()).unwrap(), String::from_utf8(m.origin.clone().unwrap()).unwrap()))
        .collect();
    assert_eq!(got, want, "the key map applies to the templated key; the origin keeps every column");
}

#[test]
fn keys_that_would_not_split_back_are_rejected_not_listed() {
    let node = node();
    let t = Workdir::new();
    // Two text columns and values holding the separator: `x/y/z` could be (x, y/z) or (x/y, z).
    let out = t.join("pairs.chunks");
    let o = list(&node, "pairs", &out, &["--key-column", "a,b"]);
    assert_code(&o, 2);
    assert_eq!(keys_of(&read_set(&out)), vec!["plain/one"]);
    let rejects = csv_rows(&out.join("rejects.csv"));
    let reasons: BTreeMap<&str, &str> = rejects.iter().map(|r| (&r[3], &r[2])).collect();
    assert_eq!(reasons.keys().copied().collect::<Vec<_>>(), vec!["p/q/r", "x/y/z"]);
    let e = reasons["x/y/z"];
    assert!(
        e.starts_with("unusable key: key \"x/y/z\" splits into {a}/{b} more than one way")
            && e.contains("a = \"x\", b = \"y/z\"")
            && e.contains("a = \"x/y\", b = \"z\""),
        "{e}"
    );
    assert_eq!(summary(&out)["unusable_keys"], 2);
    assert!(stderr(&o).contains("2 KEYS NOT LISTED: they would not split back into their columns"), "{}", stderr(&o));
    // A separator the values do not hold lists every row.
    let out = t.join("pipe.chunks");
    assert_code(&list(&node, "pairs", &out, &["--key-column", "a,b", "--key-template", "{a}|{b}"]), 0);
    assert_eq!(keys_of(&read_set(&out)), vec!["plain|one", "p|q/r", "x/y|z"]);
}

#[test]
fn templates_that_cannot_split_back_and_wrong_key_columns_are_refused_at_start() {
    let node = node();
    let t = Workdir::new();
    let before = node.stats().connections_accepted;
    let o = list(
        &node,
        "composite",
        &t.join("a"),
        &["--key-column", COMPOSITE_KEY, "--key-template", "{service}{id}/{day}/{sig}"],
    );
    assert_code(&o, 2);
    assert!(stderr(&o).contains("nothing separates {service} and {id}"), "{}", stderr(&o));
    let o = run(
        REPAIR,
        &node,
        &["--keys", "-", "--bucket", "b", "--out", s(&t.join("r")), "--source", "media.composite"]
            .iter()
            .chain(&["--key-column", COMPOSITE_KEY, "--key-template", "{service}/{id}/{day}"])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_code(&o, 2);
    assert!(stderr(&o).contains("{sig} missing"), "{}", stderr(&o));
    assert_eq!(node.stats().connections_accepted, before, "refused before connecting");

    // The real partition key, in every tool.
    let real =
        "The partition key is (service text, id bigint, day timestamp, sig blob): pass --key-column service,id,day,sig";
    let o = list(&node, "composite", &t.join("b"), &["--key-column", "id,service,day,sig"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the columns are out of order") && stderr(&o).contains(real), "{}", stderr(&o));
    let o = list(&node, "composite", &t.join("c"), &["--key-column", "service,id"]);
    assert!(stderr(&o).contains("day, sig missing") && stderr(&o).contains(real), "{}", stderr(&o));
    let o = list(&node, "parts", &t.join("d"), &["--key-column", "bucket,id,part"]);
    assert!(stderr(&o).contains("part is a clustering column, not part of the partition key"), "{}", stderr(&o));
    let keys = t.write("k.txt", "k\n");
    let src = ["--source", "media.composite", "--key-column", "service,day,id,sig", "--blob-column", "blob"];
    let o = run(REPAIR, &node, &[&["--keys", s(&keys), "--bucket", "b", "--out", s(&t.join("r2"))][..], &src].concat());
    assert_code(&o, 2);
    assert!(stderr(&o).contains(real), "{}", stderr(&o));
    let o = run(
        VERIFY,
        &node,
        &[&["--keys", s(&keys), "--bucket", "b", "--deep", "--out", s(&t.join("v"))][..], &src].concat(),
    );
    assert_code(&o, 2);
    assert!(stderr(&o).contains(real), "{}", stderr(&o));
}

#[test]
fn clustered_tables_are_listed_a_partition_at_a_time_and_repaired_from_the_static_blob() {
    let node = node();
    let t = Workdir::new();
    let key = ["--key-column", "bucket,id", "--key-template", "{bucket}:{id}"];
    let want: Vec<String> = sorted((0..N_PARTS).map(parts_key).collect());

    node.reset_stats();
    let out = t.join("parts.chunks");
    let o = list(&node, "parts", &out, &[&key[..], &["--size-of", "blob"]].concat());
    assert_code(&o, 0);
    let recs = read_set(&out);
    assert_eq!(keys_of(&recs), want);
    for (k, m) in &recs {
        let i: usize = std::str::from_utf8(k).unwrap().rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(m.size, Some(blob(i).len() as u64), "the static blob's size of {i}");
    }
    // DISTINCT, proven by what the node served: one row per partition, no row-by-row read at all.
    let st = node.stats();
    assert_eq!(st.reads(ReadKind::DistinctRange).rows, N_PARTS as u64, "{:?}", st.reads);
    assert_eq!(st.reads(ReadKind::Range).rows, 0, "{:?}", st.reads);
    assert_eq!(node.row_count("media.parts").unwrap(), N_PARTS * PARTS_PER_PARTITION as usize);
    let sum = summary(&out);
    assert_eq!((sum["rows_read"].as_u64(), sum["distinct"].as_bool()), (Some(N_PARTS as u64), Some(true)));

    // A row value of a wide partition is refused with the reason and what to do instead.
    for flags in [["--size-of", "chunk"], ["--size-column", "chunk"], ["--writetime-of", "chunk"]] {
        let o = list(&node, "parts", &t.join(flags[0]), &[&key[..], &flags].concat());
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(
            e.contains(&format!("media.parts: {} chunk: the table has clustering columns (part)", flags[0]))
                && e.contains("cannot say which row's chunk is the partition's")
                && e.contains("static"),
            "{e}"
        );
    }
    // The static column's writetime is the partition's.
    assert_code(&list(&node, "parts", &t.join("wt"), &[&key[..], &["--writetime-of", "blob"]].concat()), 0);

    // Diff against S3, repair from the static blob, verify.
    let b = garage().create_bucket("issue13-parts");
    for i in (0..N_PARTS).filter(|i| i % 3 != 0) {
        garage().put_object(&b, &parts_key(i), &blob(i));
    }
    let d = list_and_diff(&node, "parts", &b, &t, "before", &[&key[..], &["--size-of", "blob"]].concat());
    let missing = d.join("missing-on-target.csv");
    let lost: Vec<String> = sorted((0..N_PARTS).filter(|i| i % 3 == 0).map(parts_key).collect());
    assert_eq!(column(&missing, "key"), lost);
    let src = [&["--source", "media.parts", "--blob-column", "blob"][..], &key].concat();
    let r = t.join("repair");
    node.reset_stats();
    let o = run(REPAIR, &node, &[&["--keys", s(&missing), "--bucket", &b, "--out", s(&r)][..], &src].concat());
    assert_code(&o, 0);
    assert_eq!(summary(&r)["outcomes"]["ok"], lost.len() as u64);
    // One row per lookup (LIMIT 1), not the partition's ten.
    assert_eq!(node.stats().reads(ReadKind::Lookup).rows, lost.len() as u64);
    for i in (0..N_PARTS).filter(|i| i % 3 == 0) {
        assert_eq!(get(&b, &parts_key(i)).as_deref(), Some(&blob(i)[..]), "object of partition {i}");
    }
    let v = t.join("verify");
    let o = run(
        VERIFY,
        &node,
        &[&["--keys", s(&r.join("ok.csv")), "--bucket", &b, "--deep", "--out", s(&v)][..], &src].concat(),
    );
    assert_code(&o, 0);

    // A per-row blob column names no one object of the partition: refused.
    let src = [&["--source", "media.parts", "--blob-column", "chunk"][..], &key].concat();
    let o =
        run(REPAIR, &node, &[&["--keys", s(&missing), "--bucket", &b, "--out", s(&t.join("r2"))][..], &src].concat());
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--blob-column chunk: the table has clustering columns (part)"), "{}", stderr(&o));
}

/// Issue 13, item 3: sizes without moving blobs.
#[test]
fn size_of_is_measured_by_the_server_where_it_has_octet_length_and_fetched_loudly_where_not() {
    let t = Workdir::new();
    // A partition without a blob: size 0 either way (octet_length of a null is null).
    let (service, id, day, sig) = composite_values(N_COMPOSITE);
    let no_blob = Row::partition([Value::Text(service), Value::Bigint(id), Value::Timestamp(day), Value::Blob(sig)]);
    let mut composite: BTreeMap<String, u64> =
        (0..N_COMPOSITE).map(|i| (composite_key(i), blob(i).len() as u64)).collect();
    composite.insert(composite_key(N_COMPOSITE), 0);
    // The clustered table's size is its static blob's, read once per partition (SELECT DISTINCT).
    let parts: BTreeMap<String, u64> = (0..N_PARTS).map(|i| (parts_key(i), blob(i).len() as u64)).collect();
    let composite_args = ["--key-column", COMPOSITE_KEY, "--size-of", "blob"];
    let parts_args = ["--key-column", "bucket,id", "--key-template", "{bucket}:{id}", "--size-of", "blob"];

    // Cassandra 4.0 and 5.0 have no octet_length (it came with 6.0); the node answers as they do.
    for (version, method) in [("4.0.7", "fetch"), ("5.0.2", "fetch"), ("6.0.0", "octet_length")] {
        let node = node_playing(version);
        node.insert("media.composite", no_blob.clone()).unwrap();
        for (table, args, want) in [("composite", &composite_args[..], &composite), ("parts", &parts_args, &parts)] {
            let ctx = format!("Cassandra {version}, media.{table}");
            let blob_bytes: u64 = want.values().sum();
            // What the node serves to list the keys alone, and with the sizes.
            let served = || node.stats().reads.values().map(|r| r.bytes).sum::<u64>();
            node.reset_stats();
            assert_code(&list(&node, table, &t.join(format!("{version}-{table}-keys")), &args[..args.len() - 2]), 0);
            let keys_only = served();
            node.reset_stats();
            let out = t.join(format!("{version}-{table}"));
            let o = list(&node, table, &out, args);
            assert_code(&o, 0);
            let with_sizes = served();
            let sizes: BTreeMap<String, u64> =
                read_set(&out).into_iter().map(|(k, m)| (String::from_utf8(k).unwrap(), m.size.unwrap())).collect();
            assert_eq!(&sizes, want, "{ctx}: exact to the blob lengths");

            let size = &summary(&out)["size"];
            assert_eq!((size["column"].as_str(), size["method"].as_str()), (Some("blob"), Some(method)), "{ctx}");
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
            assert_eq!(manifest["info"]["size_method"], method, "{ctx}");
            let err = stderr(&o);
            let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARNING")).collect();
            if method == "fetch" {
                assert_eq!(size["blob_bytes_moved"].as_u64(), Some(blob_bytes), "{ctx}");
                let refused = size["octet_length_refused"].as_str().unwrap_or_default();
                assert!(refused.contains("Unknown function 'octet_length'"), "{ctx}: {size}");
                assert!(
                    with_sizes >= keys_only + blob_bytes,
                    "{ctx}: {with_sizes} bytes served, {keys_only} for the keys"
                );
                // One line, even with -q: what it costs, and the cheap way.
                assert_eq!(warnings.len(), 1, "{ctx}: {err}");
                assert!(
                    warnings[0].contains("--size-of blob fetches every value of blob")
                        && warnings[0].contains("blob_bytes_moved")
                        && warnings[0].contains("--size-column"),
                    "{ctx}: {err}"
                );
            } else {
                assert_eq!(size["blob_bytes_moved"].as_u64(), Some(0), "{ctx}");
                assert!(size.get("octet_length_refused").is_none(), "{ctx}: {size}");
                assert!(warnings.is_empty(), "{ctx}: {err}");
                // The node measured: beyond the keys it served one int per partition (a 4-byte length and
                // 4 bytes), no blob.
                let rows = want.len() as u64;
                assert!(
                    with_sizes <= keys_only + 8 * rows,
                    "{ctx}: {with_sizes} bytes served, {keys_only} for the keys"
                );
                let st = node.stats();
                assert!(st.statements.keys().any(|q| q.contains("octet_length(blob)")), "{ctx}: {:?}", st.statements);
            }
        }
    }
}
