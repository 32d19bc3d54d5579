//! The `cql-test-node` binary: flags -> listening node a driver can scan.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use scylla::client::session_builder::SessionBuilder;

/// Kills the child when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cql-test-node"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cql-test-node");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

async fn count(addr: &str, q: &str) -> usize {
    let s = SessionBuilder::new().known_node(addr).build().await.unwrap();
    s.query_unpaged(q, ()).await.unwrap().into_rows_result().unwrap().rows_num()
}

#[tokio::test]
async fn generated_rows_are_served() {
    let (_child, addr) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--table",
        "bench.objects",
        "--pk",
        "key:text",
        "--col",
        "blob:blob",
        "--rows",
        "1234",
        "--seed",
        "9",
        "--blob-size",
        "32",
    ]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(count(&addr, "SELECT key FROM bench.objects").await, 1234);
    let n =
        count(&addr, "SELECT key, blob FROM bench.objects WHERE token(key) > 0 AND token(key) <= 9223372036854775807")
            .await;
    assert!(n > 400 && n < 834, "about half the ring: {n}");
}

#[tokio::test]
async fn csv_rows_are_served() {
    let dir = std::env::temp_dir().join(format!("cql-test-node-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rows.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "# key,hex").unwrap();
    writeln!(f, "alpha,00ff").unwrap();
    writeln!(f, "beta,0xcafe").unwrap();
    drop(f);
    let (_child, addr) =
        spawn(&["--listen", "127.0.0.1:0", "--col", "blob:blob", "--rows-csv", path.to_str().unwrap()]);
    assert_eq!(count(&addr, "SELECT k FROM ks.t WHERE k = 'beta'").await, 1);
    assert_eq!(count(&addr, "SELECT k, blob FROM ks.t").await, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
