//! Test support for the fleet queue: a real `redis-server` (Debian's, installed by
//! scripts/install-deps.sh) on a free port of 127.0.0.1, with `appendonly yes` and `appendfsync always`
//! in a temporary directory, started per test, stopped by PID (and by the kernel if the test process
//! dies: PR_SET_PDEATHSIG). It can be killed (-9) and started again on the same port and directory,
//! with its data, or wiped and started empty.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

fn redis_bin() -> PathBuf {
    for c in [std::env::var_os("REDIS_SERVER").map(PathBuf::from), Some("/usr/bin/redis-server".into())]
        .into_iter()
        .flatten()
    {
        if c.is_file() {
            return c;
        }
    }
    PathBuf::from("redis-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    /// A fresh server on a free port.
    pub fn start() -> RedisServer {
        let mut r = RedisServer { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        r.up();
        r
    }

    /// `redis://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("redis://127.0.0.1:{}/{name}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis is running").id()
    }

    /// Starts the server on its port and directory and waits until it answers PING.
    pub fn up(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let mut cmd = Command::new(redis_bin());
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the child dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| {
            panic!("starting redis-server ({e}): install it with scripts/install-deps.sh (Debian package redis-server)")
        }));
        let t0 = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server on port {} did not answer PING:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// kill -9 (by PID), and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Killed, its files removed, started again: a Redis that lost its data.
    pub fn restart_empty(&mut self) {
        self.kill();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.file_name() != "redis.log" {
                let p = e.path();
                if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.unwrap();
            }
        }
        self.up();
    }

    /// A command through redis-cli-like raw RESP, for checks (`XLEN`, `HGET` ...): the reply's first line.
    pub fn cmd(&self, args: &[&str]) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.starts_with('$') && !line.starts_with("$-1") {
            let mut v = String::new();
            r.read_line(&mut v).unwrap();
            return v.trim_end().to_string();
        }
        line.trim_end().trim_start_matches([':', '+']).to_string()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
