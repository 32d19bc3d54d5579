//! Test support for the S3 side: a Garage server started once per test binary ([`garage`]), an S3
//! client and bucket/object fixtures, a fault-injecting HTTP proxy ([`proxy`]), and the keyrecon
//! binaries run against it with clean credentials ([`Garage::command`]). The helpers every test binary
//! shares (work directory, summary and CSV readers) are in `support`.
//!
//! Garage runs from the installed binary (`$GARAGE_BIN`, `PATH` or `~/.cargo/bin`); without it the
//! tests fail and say to run `scripts/install-garage.sh`. It listens on random free ports of 127.0.0.1,
//! keeps its data in a temporary directory, and dies with the test process (`PR_SET_PDEATHSIG` on a
//! thread that lives as long as the process). `KEYRECON_TEST_S3_ENDPOINT` (with `_REGION`, `_ACCESS_KEY`,
//! `_SECRET_KEY`) runs the same tests against another S3 server instead.
#![allow(dead_code)]

pub mod proxy;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use rand::Rng;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const REGION: &str = "garage";

pub struct Garage {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub dir: PathBuf,
    pub pid: u32,
}

static GARAGE: OnceLock<Garage> = OnceLock::new();

/// The Garage of this test binary, started on first use.
pub fn garage() -> &'static Garage {
    GARAGE.get_or_init(start_garage)
}

fn find_garage() -> PathBuf {
    let mut cands = Vec::new();
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        cands.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        cands.extend(std::env::split_paths(&path).map(|d| d.join("garage")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        cands.push(Path::new(&home).join(".cargo/bin/garage"));
    }
    cands.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("garage binary not found ($GARAGE_BIN, PATH, ~/.cargo/bin): run scripts/install-garage.sh (or scripts/install-deps.sh)")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rand_hex(n: usize) -> String {
    let mut r = rand::thread_rng();
    (0..n).map(|_| format!("{:x}", r.gen_range(0..16u8))).collect()
}

fn start_garage() -> Garage {
    // Opt-in: the same tests against another S3 server (Ceph, MinIO, moto), never a silent skip.
    if let Ok(endpoint) = std::env::var("KEYRECON_TEST_S3_ENDPOINT") {
        let var = |n: &str, d: &str| std::env::var(n).unwrap_or_else(|_| d.to_string());
        return Garage {
            endpoint,
            region: var("KEYRECON_TEST_S3_REGION", "us-east-1"),
            access_key: var("KEYRECON_TEST_S3_ACCESS_KEY", "test"),
            secret_key: var("KEYRECON_TEST_S3_SECRET_KEY", "test"),
            dir: std::env::temp_dir(),
            pid: 0,
        };
    }
    let bin = find_garage();
    let base = std::env::temp_dir();
    // Data directories of earlier test processes that are gone.
    if let Ok(rd) = std::fs::read_dir(&base) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("keyrecon-test-garage-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = base.join(format!("keyrecon-test-garage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (s3_port, rpc_port) = (free_port(), free_port());
    let access_key = format!("GK{}", rand_hex(24));
    let secret_key = rand_hex(64);
    let conf = dir.join("garage.toml");
    std::fs::write(
        &conf,
        format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"
"#,
            d = dir.display(),
            rpc_secret = rand_hex(64)
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("garage.log")).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&conf)
        .args(["server", "--single-node", "--default-bucket"])
        .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
        .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
        .env("GARAGE_DEFAULT_BUCKET", "default")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    // PDEATHSIG fires when the forking *thread* ends: fork from a thread that lives until exit.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = cmd.spawn();
        match r {
            Ok(mut child) => {
                tx.send(Ok(child.id())).unwrap();
                let _ = child.wait();
                std::thread::park();
            }
            Err(e) => tx.send(Err(e)).unwrap(),
        }
    });
    let pid = rx.recv().unwrap().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let g = Garage {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        region: REGION.to_string(),
        access_key,
        secret_key,
        dir,
        pid,
    };
    g.wait_ready();
    g
}

impl Garage {
    fn wait_ready(&self) {
        let rt = runtime();
        let c = self.client();
        let t0 = Instant::now();
        loop {
            if rt.block_on(c.head_bucket().bucket("default").send()).is_ok() {
                return;
            }
            let alive = Path::new("/proc").join(self.pid.to_string()).exists()
                && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default().contains(") Z");
            if !alive || t0.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default();
                panic!(
                    "garage did not come up at {} ({}):\n{log}",
                    self.endpoint,
                    if alive { "timeout" } else { "exited" }
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client for fixtures (in-memory bodies, checksums only when required: Garage rejects the
    /// SDK's default streaming checksums).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(self.region.clone()))
            .credentials_provider(Credentials::new(&self.access_key, &self.secret_key, None, None, "test"))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Every object of `bucket`: key -> (bytes, content type).
    pub fn objects(&self, bucket: &str) -> std::collections::BTreeMap<String, (Vec<u8>, Option<String>)> {
        let c = self.client();
        runtime().block_on(async {
            let mut out = std::collections::BTreeMap::new();
            let mut p = c.list_objects_v2().bucket(bucket).into_paginator().send();
            while let Some(page) = p.next().await {
                for o in page.expect("list").contents() {
                    let k = o.key().unwrap().to_string();
                    let g = c.get_object().bucket(bucket).key(&k).send().await.expect("get");
                    let ct = g.content_type().map(str::to_string);
                    let b = g.body.collect().await.unwrap().into_bytes().to_vec();
                    out.insert(k, (b, ct));
                }
            }
            out
        })
    }

    /// Creates bucket `name` and uploads `keys` (body = the key bytes, 64 PUTs in flight).
    pub fn bucket_with(&self, name: &str, keys: &[String]) {
        let rt = runtime();
        let c = self.client();
        rt.block_on(async {
            c.create_bucket()
                .bucket(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create bucket {name}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
            self.put_async(&c, name, keys).await;
        });
    }

    pub fn put(&self, bucket: &str, keys: &[String]) {
        let rt = runtime();
        let c = self.client();
        rt.block_on(self.put_async(&c, bucket, keys));
    }

    async fn put_async(&self, c: &aws_sdk_s3::Client, bucket: &str, keys: &[String]) {
        use futures::StreamExt;
        futures::stream::iter(keys)
            .map(|k| async move {
                c.put_object()
                    .bucket(bucket)
                    .key(k)
                    .body(aws_sdk_s3::primitives::ByteStream::from(k.as_bytes().to_vec()))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {k:?}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
    }

    /// Runs keyrecon-list-s3 against `endpoint` (Garage or a proxy in front of it) with credentials in
    /// the environment, as a user would.
    pub fn list_via(&self, endpoint: &str, args: &[&str]) -> Output {
        self.command_via(endpoint, args).output().expect("running keyrecon-list-s3")
    }

    /// The keyrecon-list-s3 command for `endpoint`, credentials in a clean environment (to spawn and kill).
    pub fn command_via(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = self.command(env!("CARGO_BIN_EXE_keyrecon-list-s3"), endpoint);
        c.args(args);
        c
    }

    /// A keyrecon binary pointed at `endpoint` (this Garage, or a proxy in front of it) with `--endpoint-url`
    /// and `--region`, this Garage's credentials in the environment as a user would set them, and nothing
    /// else: no AWS config or credentials of the machine running the tests leak in.
    pub fn command(&self, bin: &str, endpoint: &str) -> Command {
        let mut c = Command::new(bin);
        c.args(["--endpoint-url", endpoint, "--region", &self.region])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        c
    }

    /// Creates bucket `name` (empty); returns its name.
    pub fn create_bucket(&self, name: &str) -> String {
        self.bucket_with(name, &[]);
        name.to_string()
    }

    /// Uploads one object from memory.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let c = self.client();
        runtime().block_on(async {
            c.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.to_vec().into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key:?}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))
        });
    }

    pub fn list(&self, args: &[&str]) -> Output {
        self.list_via(&self.endpoint, args)
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
