//! The whole first half of keyrecon across real services: rows in the CQL test node (the real scylla
//! driver on the wire), part of them copied to a real Garage S3 server, both sides listed by their
//! listers into chunk sets, and keyrecon-diff on the two chunk sets.
mod support;
mod support_cql;
mod support_s3;

use std::process::Command;
use support::{assert_code, Workdir};
use support_cql::{cass_key, s3_key};

const DIFF: &str = env!("CARGO_BIN_EXE_keyrecon-diff");

/// Cassandra row i: key [`cass_key`] (the migration stored it as [`s3_key`]), blob of 10 + i % 50 bytes.
fn blob(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; 10 + i % 50]
}

#[test]
fn cassandra_listing_diffed_against_s3_listing_finds_exactly_what_the_migration_lost() {
    let n = 600;
    let mut rows = support_cql::blob_rows(n, cass_key, blob);
    // One row the key map must reject (no t01 prefix): it lands in rejects.csv, not in the diff.
    rows.push(cql_test_node::Row::new("zzz-legacy").blob("blob", b"x".to_vec()));
    let node = support_cql::node(vec![("objects", rows)]);

    // The migration copied every key except multiples of 7; key 10 was copied truncated; one orphan.
    let g = support_s3::garage();
    let bucket = "e2e-migration";
    let c = g.client();
    let rt = support_s3::runtime();
    rt.block_on(async {
        c.create_bucket().bucket(bucket).send().await.expect("create bucket");
        for i in (0..n).filter(|i| i % 7 != 0) {
            let mut body = blob(i);
            if i == 10 {
                body.truncate(3);
            }
            c.put_object().bucket(bucket).key(s3_key(i)).body(body.into()).send().await.expect("put");
        }
        c.put_object().bucket(bucket).key("t01orphan").body(b"o".to_vec().into()).send().await.expect("put orphan");
    });

    let dir = Workdir::new();
    let (cs, ss, out) = (dir.join("cass.chunks"), dir.join("s3.chunks"), dir.join("diff"));
    let o = support_cql::list_objects(&node, &cs, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a key-map rejection is filtering, not trouble: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&std::fs::read(cs.join("rejects.csv")).unwrap()).contains("zzz-legacy"));

    let o = g.list(&["--bucket", bucket, "--out", ss.to_str().unwrap(), "-j", "4"]);
    assert_code(&o, 0);

    let o = Command::new(DIFF)
        .args([cs.as_os_str(), ss.as_os_str()])
        .arg("--out")
        .arg(&out)
        .args(["--compare", "size", "-q"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |f: &str| String::from_utf8(std::fs::read(out.join(f)).unwrap()).unwrap();
    let mut want: Vec<String> = (0..n).filter(|i| i % 7 == 0).map(s3_key).collect();
    want.sort();
    assert_eq!(read("missing-on-target.txt"), want.iter().map(|k| format!("{k}\n")).collect::<String>());
    assert_eq!(read("missing-on-source.txt"), "t01orphan\n");
    assert_eq!(read("differ.txt"), format!("{}\n", s3_key(10)));
    // The repair input carries the original Cassandra key and the size to copy.
    let csv = read("missing-on-target.csv");
    assert!(csv.starts_with("key,size,origin\n"), "{csv}");
    assert!(csv.contains(&format!("{},{},{}\n", s3_key(7), blob(7).len(), cass_key(7))), "{csv}");
    let sum: serde_json::Value = serde_json::from_str(&read("summary.json")).unwrap();
    assert_eq!(sum["matched"], (n - want.len() - 1) as u64);
    assert_eq!(sum["details"]["differ_size"], 1);
}
