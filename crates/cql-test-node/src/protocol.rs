//! CQL native protocol v4 framing and message encoding/decoding.
//!
//! Role: turn request frame bodies into [`Request`]s and build response frames
//! (READY, AUTHENTICATE, SUPPORTED, ERROR, RESULT, AUTH_SUCCESS). Nothing here
//! knows about tables or queries; it is the wire format of
//! `doc/native_protocol_v4.spec` in apache/cassandra.
//!
//! Invariants:
//! - Every frame has a 9-byte header: version, flags, stream (i16), opcode,
//!   body length (u32). Requests carry version 0x04, responses 0x84; the response
//!   to a request always carries the request's stream id.
//! - Bodies are never compressed: the node advertises no compression, so a
//!   request with the compression flag is a protocol violation.
//! - Bodies larger than 256 MiB are refused (the spec's frame limit).
//! - A request's custom payload (flag 0x04) is skipped; tracing (0x02) is ignored
//!   and responses never carry tracing ids or warnings.
//! - Decoding never panics on malformed input: every read is bounds-checked and a
//!   short body becomes a PROTOCOL_ERROR naming the field that did not fit.

use std::collections::HashMap;

/// Frame header length in bytes.
pub const HEADER_LEN: usize = 9;
/// The protocol version byte of a v4 request.
pub const VERSION_REQUEST: u8 = 0x04;
/// The protocol version byte of a v4 response.
pub const VERSION_RESPONSE: u8 = 0x84;
/// Largest body accepted (the spec limits frames to 256 MB).
pub const MAX_BODY_LEN: usize = 256 * 1024 * 1024;

/// Frame flag bits.
pub mod flags {
    pub const COMPRESSION: u8 = 0x01;
    pub const TRACING: u8 = 0x02;
    pub const CUSTOM_PAYLOAD: u8 = 0x04;
    pub const WARNING: u8 = 0x08;
}

/// Message opcodes (spec section 2.4).
pub mod opcode {
    pub const ERROR: u8 = 0x00;
    pub const STARTUP: u8 = 0x01;
    pub const READY: u8 = 0x02;
    pub const AUTHENTICATE: u8 = 0x03;
    pub const OPTIONS: u8 = 0x05;
    pub const SUPPORTED: u8 = 0x06;
    pub const QUERY: u8 = 0x07;
    pub const RESULT: u8 = 0x08;
    pub const PREPARE: u8 = 0x09;
    pub const EXECUTE: u8 = 0x0A;
    pub const REGISTER: u8 = 0x0B;
    pub const EVENT: u8 = 0x0C;
    pub const BATCH: u8 = 0x0D;
    pub const AUTH_CHALLENGE: u8 = 0x0E;
    pub const AUTH_RESPONSE: u8 = 0x0F;
    pub const AUTH_SUCCESS: u8 = 0x10;
}

/// Error codes (spec section 9).
pub mod code {
    pub const SERVER_ERROR: u32 = 0x0000;
    pub const PROTOCOL_ERROR: u32 = 0x000A;
    pub const AUTHENTICATION_ERROR: u32 = 0x0100;
    pub const UNAVAILABLE: u32 = 0x1000;
    pub const OVERLOADED: u32 = 0x1001;
    pub const READ_TIMEOUT: u32 = 0x1200;
    pub const READ_FAILURE: u32 = 0x1300;
    pub const SYNTAX_ERROR: u32 = 0x2000;
    pub const UNAUTHORIZED: u32 = 0x2100;
    pub const INVALID: u32 = 0x2200;
    pub const UNPREPARED: u32 = 0x2500;
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub length: u32,
}

impl FrameHeader {
    pub fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            version: b[0],
            flags: b[1],
            stream: i16::from_be_bytes([b[2], b[3]]),
            opcode: b[4],
            length: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
        }
    }
}

/// Consistency levels as sent on the wire (a `[short]`).
pub type Consistency = u16;
/// `ONE`, used in errors when a request did not say.
pub const CONSISTENCY_ONE: Consistency = 0x0001;

/// An error that becomes an ERROR response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlError {
    pub code: u32,
    pub message: String,
    pub extra: ErrorExtra,
}

/// Code-specific fields that follow the message of an ERROR body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorExtra {
    None,
    Unavailable { consistency: Consistency, required: i32, alive: i32 },
    ReadTimeout { consistency: Consistency, received: i32, block_for: i32, data_present: bool },
    ReadFailure { consistency: Consistency, received: i32, block_for: i32, num_failures: i32, data_present: bool },
    Unprepared { id: Vec<u8> },
}

impl CqlError {
    pub fn new(code: u32, message: impl Into<String>) -> CqlError {
        CqlError { code, message: message.into(), extra: ErrorExtra::None }
    }
    pub fn protocol(message: impl Into<String>) -> CqlError {
        CqlError::new(code::PROTOCOL_ERROR, message)
    }
    pub fn syntax(message: impl Into<String>) -> CqlError {
        CqlError::new(code::SYNTAX_ERROR, message)
    }
    pub fn invalid(message: impl Into<String>) -> CqlError {
        CqlError::new(code::INVALID, message)
    }
    pub fn server(message: impl Into<String>) -> CqlError {
        CqlError::new(code::SERVER_ERROR, message)
    }
}

impl std::fmt::Display for CqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CQL error 0x{:04x}: {}", self.code, self.message)
    }
}

impl std::error::Error for CqlError {}

/// A bound value: `[value]` in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundValue {
    Null,
    Unset,
    Bytes(Vec<u8>),
}

/// `<query_parameters>` of QUERY and EXECUTE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryParams {
    pub consistency: Consistency,
    pub values: Vec<BoundValue>,
    pub named_values: bool,
    pub skip_metadata: bool,
    /// `None` when the page-size flag is absent; `<= 0` also means "no paging".
    pub page_size: Option<i32>,
    pub paging_state: Option<Vec<u8>>,
    pub serial_consistency: Option<Consistency>,
    pub timestamp: Option<i64>,
}

/// A decoded request message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Startup(HashMap<String, String>),
    AuthResponse(Option<Vec<u8>>),
    Options,
    Query { query: String, params: QueryParams },
    Prepare { query: String },
    Execute { id: Vec<u8>, params: QueryParams },
    Batch,
    Register(Vec<String>),
}

impl Request {
    /// Name for stats and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Startup(_) => "STARTUP",
            Request::AuthResponse(_) => "AUTH_RESPONSE",
            Request::Options => "OPTIONS",
            Request::Query { .. } => "QUERY",
            Request::Prepare { .. } => "PREPARE",
            Request::Execute { .. } => "EXECUTE",
            Request::Batch => "BATCH",
            Request::Register(_) => "REGISTER",
        }
    }
}

/// Bounds-checked reader over a frame body.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CqlError> {
        if self.buf.len() < n {
            return Err(CqlError::protocol(format!(
                "not enough bytes to read {what}: need {n}, have {}",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, CqlError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn short(&mut self, what: &str) -> Result<u16, CqlError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn int(&mut self, what: &str) -> Result<i32, CqlError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    pub fn long(&mut self, what: &str) -> Result<i64, CqlError> {
        let b = self.take(8, what)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    pub fn string(&mut self, what: &str) -> Result<String, CqlError> {
        let n = self.short(what)? as usize;
        utf8(self.take(n, what)?, what)
    }
    pub fn long_string(&mut self, what: &str) -> Result<String, CqlError> {
        let n = self.int(what)?;
        if n < 0 {
            return Err(CqlError::protocol(format!("negative length for {what}")));
        }
        utf8(self.take(n as usize, what)?, what)
    }
    /// `[bytes]`: `None` for a negative length (null).
    pub fn bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, CqlError> {
        let n = self.int(what)?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize, what)?))
    }
    pub fn short_bytes(&mut self, what: &str) -> Result<&'a [u8], CqlError> {
        let n = self.short(what)? as usize;
        self.take(n, what)
    }
    pub fn value(&mut self, what: &str) -> Result<BoundValue, CqlError> {
        let n = self.int(what)?;
        match n {
            -1 => Ok(BoundValue::Null),
            -2 => Ok(BoundValue::Unset),
            n if n < 0 => Err(CqlError::protocol(format!("invalid length {n} for {what}"))),
            n => Ok(BoundValue::Bytes(self.take(n as usize, what)?.to_vec())),
        }
    }
    pub fn string_list(&mut self, what: &str) -> Result<Vec<String>, CqlError> {
        let n = self.short(what)?;
        (0..n).map(|_| self.string(what)).collect()
    }
    pub fn string_map(&mut self, what: &str) -> Result<HashMap<String, String>, CqlError> {
        let n = self.short(what)?;
        let mut m = HashMap::with_capacity(n as usize);
        for _ in 0..n {
            let k = self.string(what)?;
            let v = self.string(what)?;
            m.insert(k, v);
        }
        Ok(m)
    }
    fn skip_bytes_map(&mut self, what: &str) -> Result<(), CqlError> {
        let n = self.short(what)?;
        for _ in 0..n {
            self.string(what)?;
            self.bytes(what)?;
        }
        Ok(())
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String, CqlError> {
    String::from_utf8(b.to_vec()).map_err(|_| CqlError::protocol(format!("{what} is not valid UTF-8")))
}

/// Decodes `<query_parameters>` (spec 4.1.4).
pub fn read_query_params(r: &mut Reader<'_>) -> Result<QueryParams, CqlError> {
    let consistency = r.short("consistency")?;
    let fl = r.u8("query flags")?;
    let mut p = QueryParams {
        consistency,
        named_values: fl & 0x40 != 0,
        skip_metadata: fl & 0x02 != 0,
        ..QueryParams::default()
    };
    if fl & 0x01 != 0 {
        let n = r.short("value count")?;
        for _ in 0..n {
            if p.named_values {
                r.string("value name")?;
            }
            p.values.push(r.value("bound value")?);
        }
    }
    if fl & 0x04 != 0 {
        p.page_size = Some(r.int("page size")?);
    }
    if fl & 0x08 != 0 {
        p.paging_state = r.bytes("paging state")?.map(<[u8]>::to_vec);
    }
    if fl & 0x10 != 0 {
        p.serial_consistency = Some(r.short("serial consistency")?);
    }
    if fl & 0x20 != 0 {
        p.timestamp = Some(r.long("default timestamp")?);
    }
    Ok(p)
}

/// Decodes a request body. `frame_flags` is the header's flags byte.
pub fn decode_request(op: u8, frame_flags: u8, body: &[u8]) -> Result<Request, CqlError> {
    if frame_flags & flags::COMPRESSION != 0 {
        return Err(CqlError::protocol("compressed frame received but no compression was negotiated"));
    }
    let mut r = Reader::new(body);
    if frame_flags & flags::CUSTOM_PAYLOAD != 0 {
        r.skip_bytes_map("custom payload")?;
    }
    let req = match op {
        opcode::STARTUP => Request::Startup(r.string_map("STARTUP options")?),
        opcode::AUTH_RESPONSE => Request::AuthResponse(r.bytes("auth token")?.map(<[u8]>::to_vec)),
        opcode::OPTIONS => Request::Options,
        opcode::QUERY => {
            let query = r.long_string("query string")?;
            let params = read_query_params(&mut r)?;
            Request::Query { query, params }
        }
        opcode::PREPARE => Request::Prepare { query: r.long_string("query string")? },
        opcode::EXECUTE => {
            let id = r.short_bytes("prepared id")?.to_vec();
            let params = read_query_params(&mut r)?;
            Request::Execute { id, params }
        }
        opcode::BATCH => Request::Batch,
        opcode::REGISTER => Request::Register(r.string_list("event types")?),
        other => return Err(CqlError::protocol(format!("unknown or response-only opcode 0x{other:02x} in a request"))),
    };
    Ok(req)
}

/// A CQL type as written in `[option]` type descriptions (spec 4.2.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CqlType {
    Ascii,
    Bigint,
    Blob,
    Boolean,
    Double,
    Int,
    Timestamp,
    Uuid,
    Text,
    Timeuuid,
    Inet,
    Smallint,
    Tinyint,
    List(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
    Set(Box<CqlType>),
}

impl CqlType {
    fn option_id(&self) -> u16 {
        match self {
            CqlType::Ascii => 0x0001,
            CqlType::Bigint => 0x0002,
            CqlType::Blob => 0x0003,
            CqlType::Boolean => 0x0004,
            CqlType::Double => 0x0007,
            CqlType::Int => 0x0009,
            CqlType::Timestamp => 0x000B,
            CqlType::Uuid => 0x000C,
            CqlType::Text => 0x000D,
            CqlType::Timeuuid => 0x000F,
            CqlType::Inet => 0x0010,
            CqlType::Smallint => 0x0013,
            CqlType::Tinyint => 0x0014,
            CqlType::List(_) => 0x0020,
            CqlType::Map(_, _) => 0x0021,
            CqlType::Set(_) => 0x0022,
        }
    }

    /// The CQL name, as `system_schema.columns.type` spells it.
    pub fn cql_name(&self) -> String {
        match self {
            CqlType::Ascii => "ascii".into(),
            CqlType::Bigint => "bigint".into(),
            CqlType::Blob => "blob".into(),
            CqlType::Boolean => "boolean".into(),
            CqlType::Double => "double".into(),
            CqlType::Int => "int".into(),
            CqlType::Timestamp => "timestamp".into(),
            CqlType::Uuid => "uuid".into(),
            CqlType::Text => "text".into(),
            CqlType::Timeuuid => "timeuuid".into(),
            CqlType::Inet => "inet".into(),
            CqlType::Smallint => "smallint".into(),
            CqlType::Tinyint => "tinyint".into(),
            CqlType::List(t) => format!("list<{}>", t.cql_name()),
            CqlType::Map(k, v) => format!("map<{}, {}>", k.cql_name(), v.cql_name()),
            CqlType::Set(t) => format!("set<{}>", t.cql_name()),
        }
    }

    pub fn write_option(&self, out: &mut Vec<u8>) {
        put_short(out, self.option_id());
        match self {
            CqlType::List(t) | CqlType::Set(t) => t.write_option(out),
            CqlType::Map(k, v) => {
                k.write_option(out);
                v.write_option(out);
            }
            _ => {}
        }
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}
pub fn put_short(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_int(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// `[string]`; strings longer than 65535 bytes are truncated by contract of
/// the callers (names and messages are short).
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    put_short(out, b.len() as u16);
    out.extend_from_slice(b);
}
pub fn put_string_list(out: &mut Vec<u8>, l: &[&str]) {
    put_short(out, l.len() as u16);
    for s in l {
        put_string(out, s);
    }
}
/// `[bytes]`: `None` is written as null (length -1).
pub fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_int(out, -1),
        Some(b) => {
            put_int(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}
pub fn put_short_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_short(out, b.len() as u16);
    out.extend_from_slice(b);
}

/// Starts a response frame: writes a header with a zero length to be patched
/// by [`finish_frame`].
pub fn start_frame(stream: i16, op: u8) -> Vec<u8> {
    start_frame_with_capacity(stream, op, 64)
}

pub fn start_frame_with_capacity(stream: i16, op: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.push(VERSION_RESPONSE);
    out.push(0);
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(op);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// Patches the body length into a frame started by [`start_frame`].
pub fn finish_frame(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - HEADER_LEN) as u32;
    frame[5..9].copy_from_slice(&len.to_be_bytes());
    frame
}

pub fn ready(stream: i16) -> Vec<u8> {
    finish_frame(start_frame(stream, opcode::READY))
}

pub fn authenticate(stream: i16, authenticator: &str) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::AUTHENTICATE);
    put_string(&mut f, authenticator);
    finish_frame(f)
}

pub fn auth_success(stream: i16) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::AUTH_SUCCESS);
    // Cassandra's PasswordAuthenticator finishes with a null token.
    put_bytes(&mut f, None);
    finish_frame(f)
}

/// SUPPORTED with a `[string multimap]` body.
pub fn supported(stream: i16, options: &[(&str, &[&str])]) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::SUPPORTED);
    put_short(&mut f, options.len() as u16);
    for (k, vs) in options {
        put_string(&mut f, k);
        put_string_list(&mut f, vs);
    }
    finish_frame(f)
}

pub fn error(stream: i16, e: &CqlError) -> Vec<u8> {
    error_with_version(stream, e, VERSION_RESPONSE)
}

/// An ERROR frame with an explicit version byte (used to answer a request in an
/// unsupported protocol version).
pub fn error_with_version(stream: i16, e: &CqlError, version: u8) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::ERROR);
    f[0] = version;
    put_int(&mut f, e.code as i32);
    put_string(&mut f, &e.message);
    match &e.extra {
        ErrorExtra::None => {}
        ErrorExtra::Unavailable { consistency, required, alive } => {
            put_short(&mut f, *consistency);
            put_int(&mut f, *required);
            put_int(&mut f, *alive);
        }
        ErrorExtra::ReadTimeout { consistency, received, block_for, data_present } => {
            put_short(&mut f, *consistency);
            put_int(&mut f, *received);
            put_int(&mut f, *block_for);
            put_u8(&mut f, *data_present as u8);
        }
        ErrorExtra::ReadFailure { consistency, received, block_for, num_failures, data_present } => {
            put_short(&mut f, *consistency);
            put_int(&mut f, *received);
            put_int(&mut f, *block_for);
            put_int(&mut f, *num_failures);
            put_u8(&mut f, *data_present as u8);
        }
        ErrorExtra::Unprepared { id } => put_short_bytes(&mut f, id),
    }
    finish_frame(f)
}

/// RESULT kinds (spec 4.2.5).
pub mod result_kind {
    pub const VOID: i32 = 0x0001;
    pub const ROWS: i32 = 0x0002;
    pub const SET_KEYSPACE: i32 = 0x0003;
    pub const PREPARED: i32 = 0x0004;
}

pub fn result_void(stream: i16) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::RESULT);
    put_int(&mut f, result_kind::VOID);
    finish_frame(f)
}

pub fn result_set_keyspace(stream: i16, keyspace: &str) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::RESULT);
    put_int(&mut f, result_kind::SET_KEYSPACE);
    put_string(&mut f, keyspace);
    finish_frame(f)
}

/// A column in result or bind metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub typ: CqlType,
}

/// Result or bind metadata: all columns of one table (Global_tables_spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub keyspace: String,
    pub table: String,
    pub columns: Vec<ColumnSpec>,
}

/// Writes `<metadata>` of a Rows result (spec 4.2.5.2).
pub fn put_rows_metadata(out: &mut Vec<u8>, meta: &Metadata, paging_state: Option<&[u8]>, no_metadata: bool) {
    let mut fl = 0i32;
    if !no_metadata {
        fl |= 0x0001;
    }
    if paging_state.is_some() {
        fl |= 0x0002;
    }
    if no_metadata {
        fl |= 0x0004;
    }
    put_int(out, fl);
    put_int(out, meta.columns.len() as i32);
    if let Some(ps) = paging_state {
        put_bytes(out, Some(ps));
    }
    if !no_metadata {
        put_string(out, &meta.keyspace);
        put_string(out, &meta.table);
        for c in &meta.columns {
            put_string(out, &c.name);
            c.typ.write_option(out);
        }
    }
}

/// A PREPARED result (spec 4.2.5.4).
pub fn result_prepared(stream: i16, id: &[u8], bind: &Metadata, pk_indexes: &[u16], result: &Metadata) -> Vec<u8> {
    let mut f = start_frame(stream, opcode::RESULT);
    put_int(&mut f, result_kind::PREPARED);
    put_short_bytes(&mut f, id);
    put_int(&mut f, 0x0001);
    put_int(&mut f, bind.columns.len() as i32);
    put_int(&mut f, pk_indexes.len() as i32);
    for i in pk_indexes {
        put_short(&mut f, *i);
    }
    put_string(&mut f, &bind.keyspace);
    put_string(&mut f, &bind.table);
    for c in &bind.columns {
        put_string(&mut f, &c.name);
        c.typ.write_option(&mut f);
    }
    put_rows_metadata(&mut f, result, None, false);
    finish_frame(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let f = ready(-3);
        let h = FrameHeader::parse(f[..HEADER_LEN].try_into().unwrap());
        assert_eq!(
            h,
            FrameHeader { version: VERSION_RESPONSE, flags: 0, stream: -3, opcode: opcode::READY, length: 0 }
        );
    }

    #[test]
    fn decodes_query_with_all_params() {
        let mut b = Vec::new();
        put_int(&mut b, 6);
        b.extend_from_slice(b"SELECT");
        put_short(&mut b, 1); // ONE
        put_u8(&mut b, 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20);
        put_short(&mut b, 3);
        put_bytes(&mut b, Some(&7i64.to_be_bytes()));
        put_int(&mut b, -1);
        put_int(&mut b, -2);
        put_int(&mut b, 100);
        put_bytes(&mut b, Some(b"ps"));
        put_short(&mut b, 8);
        put_long(&mut b, 42);
        let r = decode_request(opcode::QUERY, 0, &b).unwrap();
        let Request::Query { query, params } = r else { panic!("not a query") };
        assert_eq!(query, "SELECT");
        assert_eq!(params.consistency, 1);
        assert!(params.skip_metadata);
        assert_eq!(
            params.values,
            vec![BoundValue::Bytes(7i64.to_be_bytes().to_vec()), BoundValue::Null, BoundValue::Unset]
        );
        assert_eq!(params.page_size, Some(100));
        assert_eq!(params.paging_state.as_deref(), Some(&b"ps"[..]));
        assert_eq!(params.serial_consistency, Some(8));
        assert_eq!(params.timestamp, Some(42));
    }

    #[test]
    fn truncated_body_is_protocol_error_not_panic() {
        let mut b = Vec::new();
        put_int(&mut b, 100);
        b.extend_from_slice(b"SEL");
        let e = decode_request(opcode::QUERY, 0, &b).unwrap_err();
        assert_eq!(e.code, code::PROTOCOL_ERROR);
        assert!(e.message.contains("query string"), "{}", e.message);
        for cut in 0..b.len() {
            let _ = decode_request(opcode::EXECUTE, 0, &b[..cut]);
            let _ = decode_request(opcode::STARTUP, 0, &b[..cut]);
        }
    }

    #[test]
    fn compressed_frames_are_refused() {
        let e = decode_request(opcode::OPTIONS, flags::COMPRESSION, &[]).unwrap_err();
        assert_eq!(e.code, code::PROTOCOL_ERROR);
    }

    #[test]
    fn read_timeout_error_layout() {
        let e = CqlError {
            code: code::READ_TIMEOUT,
            message: "m".into(),
            extra: ErrorExtra::ReadTimeout { consistency: 1, received: 0, block_for: 1, data_present: false },
        };
        let f = error(5, &e);
        assert_eq!(&f[HEADER_LEN..], &[0, 0, 0x12, 0, 0, 1, b'm', 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn type_names() {
        let t = CqlType::Map(Box::new(CqlType::Text), Box::new(CqlType::Text));
        assert_eq!(t.cql_name(), "map<text, text>");
        let mut o = Vec::new();
        t.write_option(&mut o);
        assert_eq!(o, vec![0, 0x21, 0, 0x0D, 0, 0x0D]);
    }
}
