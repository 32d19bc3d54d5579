//! The TCP server: accept loop, per-connection protocol state, dispatch.
//!
//! Role: speak CQL native protocol v4 to each client connection. Handshake
//! messages (OPTIONS, STARTUP, AUTH_RESPONSE, REGISTER) are answered in order by
//! the connection's reader; QUERY/PREPARE/EXECUTE/BATCH each run in their own
//! task, so one connection serves many streams concurrently (the scylla driver
//! pipelines requests on a single connection) and answers may come out of order,
//! as the protocol allows.
//!
//! Invariants:
//! - A connection must send STARTUP (and, with credentials configured, a correct
//!   SASL PLAIN AUTH_RESPONSE) before any query; otherwise PROTOCOL_ERROR.
//! - A frame whose version is not v4 gets a PROTOCOL_ERROR in v4 and the
//!   connection is closed, which is how Cassandra makes clients downgrade.
//! - Faults and delays are decided per page request (see `faults`); a
//!   DropConnection fault closes the socket without answering.
//! - With TLS configured every connection starts with a TLS handshake (bounded
//!   by a timeout) before any CQL frame; a failed handshake is counted in
//!   `Stats::tls_handshake_failures` and the socket closed.
//! - Shutdown stops the accept loop and closes every connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

use crate::exec::{ConnCtx, Engine, Plan};
use crate::faults::{Fault, FaultHandle, StatsCell};
use crate::protocol::{self, code, decode_request, CqlError, FrameHeader, QueryParams, Request, HEADER_LEN};

/// The authenticator Cassandra reports for username/password auth.
pub const PASSWORD_AUTHENTICATOR: &str = "org.apache.cassandra.auth.PasswordAuthenticator";

/// State shared by every connection of a node.
pub(crate) struct Shared {
    pub engine: Engine,
    pub faults: FaultHandle,
    pub stats: StatsCell,
    pub credentials: Option<(String, String)>,
    /// Serve TLS only, with this acceptor.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection phases.
const PHASE_NEW: u8 = 0;
const PHASE_AUTH: u8 = 1;
const PHASE_READY: u8 = 2;

struct Conn {
    shared: Arc<Shared>,
    keyspace: Mutex<Option<String>>,
    local: std::net::SocketAddr,
    phase: AtomicU8,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Signalled to drop the connection without answering.
    kill: Notify,
}

impl Conn {
    fn send_error(&self, stream: i16, e: &CqlError) {
        self.shared.stats.error(e.code, &e.message);
        self.send(protocol::error(stream, e));
    }

    fn send(&self, frame: Vec<u8>) {
        // A send fails only when the connection is already closing.
        let _ = self.tx.send(frame);
    }

    fn keyspace(&self) -> Option<String> {
        self.keyspace.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _peer)) => {
                    shared.stats.update(|s| s.connections_accepted += 1);
                    tokio::spawn(accept(sock, shared.clone(), shutdown.clone()));
                }
                // Typically EMFILE; back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = shutdown.changed() => break,
        }
    }
}

/// Sets up one accepted socket (TLS handshake if configured) and serves it.
async fn accept(sock: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = sock.set_nodelay(true);
    let Ok(local) = sock.local_addr() else {
        return;
    };
    let Some(acceptor) = shared.tls.clone() else {
        let (rd, wr) = sock.into_split();
        return connection(rd, wr, local, shared, shutdown).await;
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)) => r,
        _ = shutdown.changed() => return,
    };
    match handshake {
        Ok(Ok(tls)) => {
            shared.stats.update(|s| s.tls_handshakes += 1);
            let (rd, wr) = tokio::io::split(tls);
            connection(rd, wr, local, shared, shutdown).await
        }
        // A client that does not trust the certificate, or speaks plain CQL.
        Ok(Err(_)) | Err(_) => shared.stats.update(|s| s.tls_handshake_failures += 1),
    }
}

async fn read_frame<R: AsyncRead + Unpin>(rd: &mut BufReader<R>) -> std::io::Result<Option<(FrameHeader, Vec<u8>)>> {
    let mut h = [0u8; HEADER_LEN];
    match rd.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let header = FrameHeader::parse(&h);
    if header.version != protocol::VERSION_REQUEST || header.length as usize > protocol::MAX_BODY_LEN {
        // The caller answers and closes; the body is not read.
        return Ok(Some((header, Vec::new())));
    }
    let mut body = vec![0u8; header.length as usize];
    rd.read_exact(&mut body).await?;
    Ok(Some((header, body)))
}

async fn write_loop<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(frame) = rx.recv().await {
        if w.write_all(&frame).await.is_err() {
            return;
        }
        // Batch whatever is already queued into one flush.
        while let Ok(f) = rx.try_recv() {
            if w.write_all(&f).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn connection<R, W>(
    rd: R,
    wr: W,
    local: std::net::SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(write_loop(wr, rx));
    let conn = Arc::new(Conn {
        shared,
        keyspace: Mutex::new(None),
        local,
        phase: AtomicU8::new(PHASE_NEW),
        tx,
        kill: Notify::new(),
    });
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let graceful = loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd) => f,
            _ = conn.kill.notified() => break false,
            _ = shutdown.changed() => break false,
        };
        let (header, body) = match frame {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break false,
        };
        if header.version != protocol::VERSION_REQUEST {
            let e = CqlError::protocol(format!(
                "Invalid or unsupported protocol version ({}); the lowest supported version is 4 and the greatest is 4",
                header.version & 0x7f
            ));
            conn.send_error(header.stream, &e);
            break true;
        }
        if header.length as usize > protocol::MAX_BODY_LEN {
            let e = CqlError::protocol(format!(
                "Request is too big: length {} exceeds maximum allowed length {}",
                header.length,
                protocol::MAX_BODY_LEN
            ));
            conn.send_error(header.stream, &e);
            break true;
        }
        handle_frame(&conn, header, body);
    };
    if graceful {
        // Let the error reach the client before closing.
        drop(conn);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
    }
    writer.abort();
}

fn handle_frame(conn: &Arc<Conn>, header: FrameHeader, body: Vec<u8>) {
    let stream = header.stream;
    let shared = &conn.shared;
    let req = match decode_request(header.opcode, header.flags, &body) {
        Ok(r) => r,
        Err(e) => {
            shared.stats.request("INVALID");
            conn.send_error(stream, &e);
            return;
        }
    };
    shared.stats.request(req.kind());
    let phase = conn.phase.load(Ordering::Acquire);
    match req {
        Request::Options => conn.send(protocol::supported(
            stream,
            &[("CQL_VERSION", &["3.4.5"]), ("COMPRESSION", &[]), ("PROTOCOL_VERSIONS", &["4/v4"])],
        )),
        Request::Startup(options) => match startup(conn, stream, phase, &options) {
            Ok(f) => conn.send(f),
            Err(e) => conn.send_error(stream, &e),
        },
        Request::AuthResponse(token) => match auth_response(conn, stream, phase, token.as_deref()) {
            Ok(f) => conn.send(f),
            Err(e) => conn.send_error(stream, &e),
        },
        _ if phase != PHASE_READY => {
            let expecting = if phase == PHASE_AUTH { "AUTH_RESPONSE" } else { "STARTUP" };
            conn.send_error(
                stream,
                &CqlError::protocol(format!("Unexpected message {}, expecting {expecting}", req.kind())),
            );
        }
        // Never sends events, but registering succeeds as on Cassandra.
        Request::Register(_) => conn.send(protocol::ready(stream)),
        Request::Batch => {
            conn.send_error(stream, &CqlError::invalid("BATCH is not supported: the test node is read-only over CQL"))
        }
        Request::Prepare { query } => {
            shared.stats.statement(&query);
            match shared.engine.prepare(stream, &query, conn.keyspace().as_deref()) {
                Ok(f) => conn.send(f),
                Err(e) => conn.send_error(stream, &e),
            }
        }
        Request::Query { query, params } => {
            shared.stats.statement(&query);
            let arrived = Instant::now();
            let conn = conn.clone();
            tokio::spawn(async move {
                let plan = conn.shared.engine.plan(&query, conn.keyspace().as_deref());
                run(&conn, stream, plan.map(Arc::new), params, arrived).await;
            });
        }
        Request::Execute { id, params } => {
            let arrived = Instant::now();
            let conn = conn.clone();
            tokio::spawn(async move {
                let plan = conn.shared.engine.prepared(&id);
                run(&conn, stream, plan, params, arrived).await;
            });
        }
    }
}

fn startup(conn: &Conn, stream: i16, phase: u8, options: &HashMap<String, String>) -> Result<Vec<u8>, CqlError> {
    if phase != PHASE_NEW {
        return Err(CqlError::protocol("Unexpected message STARTUP, the connection is already initialized"));
    }
    if let Some(c) = options.get("COMPRESSION") {
        return Err(CqlError::protocol(format!(
            "Unknown compression algorithm: {c} (the test node supports no compression)"
        )));
    }
    if !options.contains_key("CQL_VERSION") {
        return Err(CqlError::protocol("Missing value CQL_VERSION in STARTUP message"));
    }
    if conn.shared.credentials.is_some() {
        conn.phase.store(PHASE_AUTH, Ordering::Release);
        Ok(protocol::authenticate(stream, PASSWORD_AUTHENTICATOR))
    } else {
        conn.phase.store(PHASE_READY, Ordering::Release);
        Ok(protocol::ready(stream))
    }
}

/// Checks a SASL PLAIN token (`authzid NUL authcid NUL password`).
fn auth_response(conn: &Conn, stream: i16, phase: u8, token: Option<&[u8]>) -> Result<Vec<u8>, CqlError> {
    if phase != PHASE_AUTH {
        return Err(CqlError::protocol("Unexpected message AUTH_RESPONSE"));
    }
    let Some((user, pass)) = &conn.shared.credentials else {
        return Err(CqlError::protocol("authentication is not enabled"));
    };
    let token = token.unwrap_or_default();
    let mut parts = token.split(|b| *b == 0);
    let (_authz, got_user, got_pass) = (parts.next(), parts.next(), parts.next());
    if got_user == Some(user.as_bytes()) && got_pass == Some(pass.as_bytes()) {
        conn.phase.store(PHASE_READY, Ordering::Release);
        return Ok(protocol::auth_success(stream));
    }
    conn.shared.stats.update(|s| s.auth_failures += 1);
    let shown = got_user.map(String::from_utf8_lossy).unwrap_or_default();
    Err(CqlError::new(code::AUTHENTICATION_ERROR, format!("Provided username {shown} and/or password are incorrect")))
}

/// Runs one QUERY/EXECUTE: faults, delay, execution, answer.
async fn run(conn: &Arc<Conn>, stream: i16, plan: Result<Arc<Plan>, CqlError>, params: QueryParams, arrived: Instant) {
    let shared = &conn.shared;
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return conn.send_error(stream, &e),
    };
    let consistency = params.consistency;
    let inject = |f: Fault| {
        shared.stats.update(|s| s.faults_injected += 1);
        match f.to_error(consistency) {
            Some(e) => conn.send_error(stream, &e),
            None => {
                shared.stats.update(|s| s.connections_dropped += 1);
                conn.kill.notify_one();
            }
        }
    };
    if plan.is_page_request() {
        shared.stats.page(arrived);
        let (delay, fault) = shared.faults.before_page();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(f) = fault {
            return inject(f);
        }
    }
    let ctx = ConnCtx { keyspace: conn.keyspace(), local: conn.local };
    match shared.engine.execute(stream, &plan, &params, &ctx) {
        Ok(ex) => {
            if let Some(ks) = ex.set_keyspace {
                *conn.keyspace.lock().unwrap_or_else(|e| e.into_inner()) = Some(ks);
            }
            if let Some(page) = ex.page {
                if let Some((lo, hi)) = page.covered {
                    if let Some(f) = shared.faults.range_fault(lo, hi) {
                        return inject(f);
                    }
                }
                shared.stats.served(page.kind, page.rows, page.partitions, page.bytes, page.lookup_missed);
            }
            conn.send(ex.frame);
        }
        Err(e) => conn.send_error(stream, &e),
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::opcode;

    #[test]
    fn opcodes_are_distinct() {
        // Guards against a typo in the opcode table used by dispatch.
        let all = [
            opcode::ERROR,
            opcode::STARTUP,
            opcode::READY,
            opcode::AUTHENTICATE,
            opcode::OPTIONS,
            opcode::SUPPORTED,
            opcode::QUERY,
            opcode::RESULT,
            opcode::PREPARE,
            opcode::EXECUTE,
            opcode::REGISTER,
            opcode::EVENT,
            opcode::BATCH,
            opcode::AUTH_CHALLENGE,
            opcode::AUTH_RESPONSE,
            opcode::AUTH_SUCCESS,
        ];
        let mut v = all.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), all.len());
    }
}
