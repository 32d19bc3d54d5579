//! A fault-injecting HTTP/1.1 proxy for S3 tests: forwards requests to an upstream server over a kept-
//! alive connection per client connection, except those a rule picks, which get an S3-style error
//! response (`503 SlowDown`, `500 InternalError`) without reaching the server. It can also rewrite the
//! body of a successful response (see [`start_rewriting`]), e.g. to answer like another S3 server does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Decides a request's fate from its request line (`GET /bucket?list-type=2&... HTTP/1.1`) and its
/// sequence number: `Some(status)` injects an error, `None` forwards it.
pub type Rule = Arc<dyn Fn(&str, u64) -> Option<u16> + Send + Sync>;

/// Decides how long to hold a request (same arguments as [`Rule`]) before handling it, without blocking
/// the other connections.
pub type Delay = Arc<dyn Fn(&str, u64) -> Option<std::time::Duration> + Send + Sync>;

/// The tests' standard fault pattern: of the requests whose request line starts with `method` (all
/// requests if empty), every 3rd gets `503 SlowDown` and every 7th `500 InternalError`, so each request
/// succeeds after a few attempts.
pub fn transient_faults(method: &'static str) -> Rule {
    Arc::new(move |line: &str, n: u64| {
        if !line.starts_with(method) {
            None
        } else if n % 3 == 1 {
            Some(503)
        } else if n % 7 == 5 {
            Some(500)
        } else {
            None
        }
    })
}

/// Rewrites the body of a `200` response: request line, sequence number and body in, new body out.
pub type Rewrite = Arc<dyn Fn(&str, u64, Vec<u8>) -> Vec<u8> + Send + Sync>;

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub injected: AtomicU64,
}

pub struct Proxy {
    pub endpoint: String,
    pub stats: Arc<Stats>,
}

/// Starts a proxy to `upstream` (`http://host:port`) on a free port of 127.0.0.1, served by a thread
/// that lives as long as the test process.
pub fn start(upstream: &str, rule: Rule) -> Proxy {
    start_with_delay(upstream, rule, Arc::new(|_: &str, _| None))
}

/// [`start`], holding the requests `delay` picks for the time it says.
pub fn start_with_delay(upstream: &str, rule: Rule, delay: Delay) -> Proxy {
    start_full(upstream, rule, delay, None)
}

/// A proxy that injects no errors but passes the body of every `200` response through `rewrite`
/// (counted in `stats.injected` when the body changed).
pub fn start_rewriting(upstream: &str, rewrite: Rewrite) -> Proxy {
    start_full(upstream, Arc::new(|_: &str, _| None), Arc::new(|_: &str, _| None), Some(rewrite))
}

fn start_full(upstream: &str, rule: Rule, delay: Delay, rewrite: Option<Rewrite>) -> Proxy {
    let up: SocketAddr = upstream.trim_start_matches("http://").parse().expect("upstream host:port");
    let stats = Arc::new(Stats::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let st = stats.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let Ok((c, _)) = l.accept().await else {
                    continue;
                };
                let (rule, delay, rewrite, st) = (rule.clone(), delay.clone(), rewrite.clone(), st.clone());
                tokio::spawn(async move {
                    let _ = serve(c, up, rule, delay, rewrite, st).await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    Proxy { endpoint: format!("http://{addr}"), stats }
}

async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(std::io::Error::other("truncated HTTP head")) };
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            return Ok(Some(head));
        }
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

async fn copy_exact<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    mut n: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = r.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(std::io::Error::other("upstream closed mid-body"));
        }
        w.write_all(&buf[..got]).await?;
        n -= got as u64;
    }
    Ok(())
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    rule: Rule,
    delay: Delay,
    rewrite: Option<Rewrite>,
    st: Arc<Stats>,
) -> std::io::Result<()> {
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::new(cr);
    let mut up: Option<(BufReader<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf)> = None;
    while let Some(head) = read_head(&mut cr).await? {
        let text = String::from_utf8_lossy(&head).into_owned();
        let line = text.lines().next().unwrap_or("").to_string();
        let clen: u64 = header(&text, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; clen as usize];
        cr.read_exact(&mut body).await?;
        let n = st.requests.fetch_add(1, Relaxed);
        if let Some(d) = delay(&line, n) {
            tokio::time::sleep(d).await;
        }
        if let Some(status) = rule(&line, n) {
            st.injected.fetch_add(1, Relaxed);
            let (reason, code) = match status {
                503 => ("Slow Down", "SlowDown"),
                _ => ("Internal Server Error", "InternalError"),
            };
            // A response to HEAD has no body (the client would read it as the next response's start).
            let b = if line.starts_with("HEAD ") {
                String::new()
            } else {
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>")
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
            cw.write_all(resp.as_bytes()).await?;
            continue;
        }
        if up.is_none() {
            let (r, w) = TcpStream::connect(upstream).await?.into_split();
            up = Some((BufReader::new(r), w));
        }
        let (ur, uw) = up.as_mut().unwrap();
        uw.write_all(&head).await?;
        uw.write_all(&body).await?;
        let rhead = read_head(ur).await?.ok_or_else(|| std::io::Error::other("upstream closed"))?;
        let rtext = String::from_utf8_lossy(&rhead).into_owned();
        let status: u16 = rtext.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if line.starts_with("HEAD ") || status == 204 || status == 304 || (100..200).contains(&status) {
            cw.write_all(&rhead).await?;
            continue;
        }
        let chunked = header(&rtext, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let clen = header(&rtext, "content-length").and_then(|v| v.parse::<u64>().ok());
        if let (Some(rw), 200, true) = (&rewrite, status, chunked || clen.is_some()) {
            // Read the whole body, rewrite it, and send it with a Content-Length of its new size.
            let mut body = Vec::new();
            copy_body(ur, &mut body, chunked, clen).await?;
            let new = rw(&line, n, body.clone());
            if new != body {
                st.injected.fetch_add(1, Relaxed);
            }
            let mut head = String::new();
            for l in rtext.trim_end().split("\r\n") {
                let name = l.split(':').next().unwrap_or("").trim();
                if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("transfer-encoding") {
                    head.push_str(l);
                    head.push_str("\r\n");
                }
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", new.len()));
            cw.write_all(head.as_bytes()).await?;
            cw.write_all(&new).await?;
            continue;
        }
        cw.write_all(&rhead).await?;
        if chunked || clen.is_some() {
            copy_body(ur, &mut cw, chunked, clen).await?;
        } else {
            tokio::io::copy(ur, &mut cw).await?;
            return Ok(());
        }
    }
    Ok(())
}

/// Copies a response body framed by `chunked` transfer encoding (framing kept when writing to the client,
/// dropped when writing into a `Vec`, see [`Sink`]) or by a Content-Length.
async fn copy_body<R: AsyncBufRead + Unpin, W: Sink>(
    r: &mut R,
    w: &mut W,
    chunked: bool,
    clen: Option<u64>,
) -> std::io::Result<()> {
    if !chunked {
        return copy_exact(r, w, clen.unwrap_or(0)).await;
    }
    loop {
        let mut sz = Vec::new();
        r.read_until(b'\n', &mut sz).await?;
        w.framing(&sz).await?;
        let n = u64::from_str_radix(String::from_utf8_lossy(&sz).trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if n == 0 {
            loop {
                let mut t = Vec::new();
                r.read_until(b'\n', &mut t).await?;
                w.framing(&t).await?;
                if t == b"\r\n" || t.is_empty() {
                    return Ok(());
                }
            }
        }
        copy_exact(r, w, n).await?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).await?;
        w.framing(&crlf).await?;
    }
}

/// Where a body goes: the client connection (chunk framing passed on) or a buffer (framing dropped).
trait Sink: AsyncWrite + Unpin {
    async fn framing(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl Sink for tokio::net::tcp::OwnedWriteHalf {
    async fn framing(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await
    }
}

impl Sink for Vec<u8> {
    async fn framing(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}
