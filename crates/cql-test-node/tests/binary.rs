//! The `cql-test-node` binary: flags -> listening node a driver can scan,
//! including composite keys, clustering rows, a release version and TLS.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

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
    let (child, addr, _) = spawn_reading(args);
    (child, addr)
}

/// Spawns the node; its address and the rest of its stdout.
fn spawn_reading(args: &[&str]) -> (Killed, String, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cql-test-node"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cql-test-node");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut line = String::new();
    let mut out = BufReader::new(stdout);
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr, out)
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

#[tokio::test]
async fn composite_clustered_tables_and_a_release_version() {
    let (_child, addr) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--table",
        "bench.parts",
        "--pk",
        "bucket:text,id:bigint",
        "--clustering",
        "4",
        "--col",
        "data:blob",
        "--rows",
        "25",
        "--release-version",
        "6.0.0",
    ]);
    assert_eq!(count(&addr, "SELECT bucket, id, c FROM bench.parts").await, 100);
    assert_eq!(count(&addr, "SELECT DISTINCT bucket, id FROM bench.parts").await, 25);
    assert_eq!(count(&addr, "SELECT octet_length(data) FROM bench.parts").await, 100);
}

#[tokio::test]
async fn tls_with_the_ca_written_for_clients() {
    let dir = std::env::temp_dir().join(format!("cql-test-node-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let (_child, addr) = spawn(&["--listen", "127.0.0.1:0", "--rows", "7", "--tls-ca-out", ca.to_str().unwrap()]);
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(&ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(cql_test_node::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let s =
        SessionBuilder::new().known_node(&addr).tls_context(Some(std::sync::Arc::new(config))).build().await.unwrap();
    let n = s.query_unpaged("SELECT k FROM ks.t", ()).await.unwrap().into_rows_result().unwrap().rows_num();
    assert_eq!(n, 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGUSR1: one line of what was read since the last one, for benchmarks that compare clients.
#[tokio::test]
async fn sigusr1_prints_the_rows_read_since_the_last_one() {
    let args = ["--listen", "127.0.0.1:0", "--table", "bench.parts", "--pk", "k:text", "--clustering", "10"];
    let (child, addr, mut out) = spawn_reading(&[&args[..], &["--rows", "30"]].concat());
    let mut stats = || {
        let ok = Command::new("kill").args(["-USR1", &child.0.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -USR1");
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(count(&addr, "SELECT DISTINCT k FROM bench.parts").await, 30);
    let s = stats();
    assert!(
        s.starts_with("stats page_requests=1 rows=30 partitions=30 ") && s.contains(" range_rows=0 distinct_rows=30 "),
        "{s}"
    );
    assert_eq!(count(&addr, "SELECT k, c FROM bench.parts").await, 300);
    let s = stats();
    assert!(s.contains(" rows=300 partitions=30 ") && s.contains(" range_rows=300 distinct_rows=0 "), "{s}");
}
