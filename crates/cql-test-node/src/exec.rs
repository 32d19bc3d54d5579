//! Planning and executing statements against fixture and system tables.
//!
//! Role: validate a parsed [`Statement`] against the schema the way Cassandra
//! would (which restrictions are allowed, which columns exist), remember
//! prepared statements, and run a plan with bound values into a RESULT frame.
//!
//! Invariants:
//! - Token restrictions follow Cassandra's `SelectStatement
//!   .getPartitionKeyBoundsForTokenRestrictions`: a missing bound is the minimum
//!   token; if neither bound is the minimum token and start > end (or they are
//!   equal and either is exclusive) the result is empty (CASSANDRA-5573);
//!   otherwise the range is (start, end] over ring positions, where an end at
//!   the minimum token means "to the end of the ring". So `token(k) > X` with
//!   nothing above X returns no rows, and `token(k) > X AND token(k) <= i64::MIN`
//!   returns everything above X.
//! - Partitions come in ring order, rows of a partition in clustering order. A
//!   page holds at most `page_size` rows and may end inside a partition; when a
//!   page is exactly full the node sets has_more_pages even if nothing follows
//!   (as Cassandra does), so the last page may be empty. Single-partition
//!   lookups page the same way.
//! - `SELECT DISTINCT` yields one row per partition and reads no row of it
//!   (only its key and static row); a partition holding only static cells
//!   yields one row with null clustering and regular columns, as in Cassandra.
//! - Restrictions follow Cassandra's rules: `token(..)` takes the partition key
//!   columns in key order; a lookup restricts every partition-key column by
//!   `=` (in any order in the WHERE clause) and may add `=` on a prefix of the
//!   clustering columns; DISTINCT selects only partition key columns, static
//!   columns and `token(..)` (and all key columns for a range). Anything else
//!   is an InvalidRequest with Cassandra's message, or one saying the test node
//!   does not support it (IN, slices, filtering).
//! - Functions exist per the version the node plays: `octet_length` from 6.0
//!   on, otherwise "Unknown function 'octet_length'" like Cassandra 4 and 5.
//! - The paging state is opaque to clients: `KT`, a version byte, the kind, the
//!   resume position (last token and key plus the last row's clustering order
//!   key, or a row offset for system tables) and the remaining LIMIT. A paging
//!   state from another query or node version is rejected with PROTOCOL_ERROR,
//!   never misread.
//! - Prepared ids are 16 bytes derived from the keyspace and query text, so the
//!   same statement gets the same id on every connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::cql::{self, Lhs, Op, Selection, Selector, Statement, Term};
use crate::faults::ReadKind;
use crate::murmur3;
use crate::protocol::{
    self, opcode, put_bytes, put_int, result_kind, BoundValue, ColumnSpec, CqlError, CqlType, Metadata, QueryParams,
};
use crate::schema::{self, ColumnRef, ColumnType, NodeInfo, SysContext, SysTable, Table, Version};
use crate::store::{self, RowKey, Store, StoredRow, TableData};

/// Per-connection context.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    pub keyspace: Option<String>,
    pub local: SocketAddr,
}

/// A planned statement, reusable across executions.
pub enum Plan {
    Data(DataPlan),
    System(SysPlan),
    Use(String),
}

impl Plan {
    /// True for statements that read a fixture table (faults apply to these).
    pub fn is_page_request(&self) -> bool {
        matches!(self, Plan::Data(_))
    }
}

/// What one selector yields for each row.
#[derive(Debug, Clone, Copy)]
enum Output {
    Column(ColumnRef),
    Token,
    WriteTime(ColumnRef),
    Ttl(ColumnRef),
    /// `octet_length(col)`: the byte length of the value, null for null.
    OctetLength(ColumnRef),
}

/// A primary-key value in a WHERE clause: a literal serialized at planning,
/// or a bind marker.
#[derive(Debug, Clone)]
enum KeyTerm {
    Literal(Vec<u8>),
    Bind(usize),
}

#[derive(Debug, Clone)]
enum Restriction {
    /// Token bounds: (term, inclusive).
    Range { start: Option<(Term, bool)>, end: Option<(Term, bool)> },
    /// One term per partition-key column, in key order: a single partition.
    Key(Vec<KeyTerm>),
}

/// A SELECT on a fixture table.
pub struct DataPlan {
    table: Arc<TableData>,
    outputs: Vec<Output>,
    result: Metadata,
    bind: Metadata,
    pk_indexes: Vec<u16>,
    restriction: Restriction,
    /// EQ terms on a prefix of the clustering columns.
    clustering: Vec<KeyTerm>,
    /// One row per partition.
    distinct: bool,
    limit: Option<Term>,
}

/// A SELECT on a system table.
pub struct SysPlan {
    table: SysTable,
    outputs: Vec<usize>,
    result: Metadata,
    bind: Metadata,
    /// (column, op Eq/In, term)
    filters: Vec<(usize, Op, Term)>,
    limit: Option<Term>,
}

/// What executing a plan produced.
pub struct Executed {
    pub frame: Vec<u8>,
    pub set_keyspace: Option<String>,
    pub page: Option<PageInfo>,
}

/// Facts about a served fixture-table page, for faults and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// Inclusive token interval the page covers; `None` when it covers nothing.
    pub covered: Option<(i64, i64)>,
    pub kind: ReadKind,
    /// Rows returned.
    pub rows: usize,
    /// Partitions the page read from (a partition split across pages counts
    /// on each).
    pub partitions: usize,
    /// Bytes of the encoded rows.
    pub bytes: usize,
    /// A single-partition lookup that found no row.
    pub lookup_missed: bool,
}

/// The query engine shared by all connections.
pub struct Engine {
    pub store: Store,
    pub info: NodeInfo,
    /// The Cassandra version the node behaves like (which functions exist).
    version: Version,
    prepared: Mutex<HashMap<Vec<u8>, Arc<Plan>>>,
}

const TOKEN_BIND_NAME: &str = "partition key token";
const LIMIT_BIND_NAME: &str = "[limit]";

fn invalid(msg: impl Into<String>) -> CqlError {
    CqlError::invalid(msg)
}

impl Engine {
    /// # Panics
    /// If `info.release_version` is not a version (the builder checks it).
    pub fn new(store: Store, info: NodeInfo) -> Engine {
        let version = Version::parse(&info.release_version).expect("a release version checked by the builder");
        Engine { store, info, version, prepared: Mutex::new(HashMap::new()) }
    }

    /// Parses and plans `query` for a connection using `keyspace`.
    pub fn plan(&self, query: &str, keyspace: Option<&str>) -> Result<Plan, CqlError> {
        match cql::parse(query)? {
            Statement::Use(ks) => {
                if self.store.has_keyspace(&ks) || schema::is_system_keyspace(&ks) {
                    Ok(Plan::Use(ks))
                } else {
                    Err(invalid(format!("Keyspace '{ks}' does not exist")))
                }
            }
            Statement::Select(sel) => {
                let ks =
                    match sel.keyspace.as_deref().or(keyspace) {
                        Some(ks) => ks.to_string(),
                        None => return Err(invalid(
                            "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename",
                        )),
                    };
                if schema::is_system_keyspace(&ks) {
                    let t = schema::sys_table(&ks, &sel.table)
                        .ok_or_else(|| invalid(format!("unconfigured table {}", sel.table)))?;
                    return plan_system(t, &sel).map(Plan::System);
                }
                if !self.store.has_keyspace(&ks) {
                    return Err(invalid(format!("Keyspace {ks} does not exist")));
                }
                let td = self
                    .store
                    .table(&ks, &sel.table)
                    .ok_or_else(|| invalid(format!("unconfigured table {}", sel.table)))?;
                plan_data(td.clone(), &sel, self.version).map(Plan::Data)
            }
        }
    }

    /// Prepares `query`, returning the PREPARED response frame.
    pub fn prepare(&self, stream: i16, query: &str, keyspace: Option<&str>) -> Result<Vec<u8>, CqlError> {
        let plan = self.plan(query, keyspace)?;
        let (bind, pk, result) = match &plan {
            Plan::Data(p) => (&p.bind, p.pk_indexes.as_slice(), &p.result),
            Plan::System(p) => (&p.bind, &[][..], &p.result),
            Plan::Use(_) => {
                return Err(invalid("USE statements cannot be prepared on the test node; send them as QUERY"))
            }
        };
        let id = prepared_id(keyspace, query);
        let frame = protocol::result_prepared(stream, &id, bind, pk, result);
        self.prepared.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::new(plan));
        Ok(frame)
    }

    /// Looks up a prepared plan; UNPREPARED if unknown.
    pub fn prepared(&self, id: &[u8]) -> Result<Arc<Plan>, CqlError> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().ok_or_else(|| CqlError {
            code: protocol::code::UNPREPARED,
            message: format!("Prepared query with ID {} not found", hex(id)),
            extra: protocol::ErrorExtra::Unprepared { id: id.to_vec() },
        })
    }

    /// Runs a plan with the request's parameters.
    pub fn execute(
        &self,
        stream: i16,
        plan: &Plan,
        params: &QueryParams,
        conn: &ConnCtx,
    ) -> Result<Executed, CqlError> {
        match plan {
            Plan::Use(ks) => Ok(Executed {
                frame: protocol::result_set_keyspace(stream, ks),
                set_keyspace: Some(ks.clone()),
                page: None,
            }),
            Plan::Data(p) => {
                check_bind_count(p.bind.columns.len(), params)?;
                let (frame, page) = run_data(stream, p, params)?;
                Ok(Executed { frame, set_keyspace: None, page: Some(page) })
            }
            Plan::System(p) => {
                check_bind_count(p.bind.columns.len(), params)?;
                let frame = self.run_system(stream, p, params, conn)?;
                Ok(Executed { frame, set_keyspace: None, page: None })
            }
        }
    }

    fn run_system(&self, stream: i16, p: &SysPlan, params: &QueryParams, conn: &ConnCtx) -> Result<Vec<u8>, CqlError> {
        let tables = self.store.schemas();
        let estimate = |t: &Table, start: i64, end: i64| -> (i64, i64) {
            let Some(td) = self.store.table(&t.keyspace, &t.name) else {
                return (0, 0);
            };
            let map = td.read();
            let from = match store::lower_from_token(start, start == murmur3::MIN_TOKEN) {
                Some(b) => b,
                None => return (0, 0),
            };
            let mut count = 0i64;
            let mut bytes = 0i64;
            for ((tok, key), part) in map.range((from, Bound::Unbounded)) {
                if end != murmur3::MIN_TOKEN && *tok > end {
                    break;
                }
                count += 1;
                bytes += (key.len() + part.value_bytes()) as i64;
            }
            (count, bytes)
        };
        let cx = SysContext {
            info: &self.info,
            tables: &tables,
            local_ip: conn.local.ip(),
            local_port: conn.local.port(),
            estimates: Some(&estimate),
        };
        let mut rows = schema::sys_rows(&p.table, &cx);
        for (col, op, term) in &p.filters {
            let typ = &p.table.columns[*col].1;
            let allowed = allowed_values(term, *op, typ, params)?;
            rows.retain(|r| {
                let v = r[*col].serialize();
                allowed.iter().any(|a| Some(a) == v.as_ref())
            });
        }
        let (offset, remaining) = match &params.paging_state {
            Some(ps) => match decode_paging_state(ps)? {
                Resume::Offset { offset, remaining } => (offset, remaining),
                Resume::Key { .. } => return Err(bad_paging_state()),
            },
            None => (0, limit_value(p.limit.as_ref(), params)?),
        };
        let page_size = page_size(params);
        let max = page_size.min(remaining.unwrap_or(usize::MAX));
        let page: Vec<_> = rows.iter().skip(offset).take(max).collect();
        let n = page.len();
        let remaining = remaining.map(|r| r - n);
        let more = offset + n < rows.len() && n == max && remaining != Some(0);
        let ps = more.then(|| encode_offset_state(offset + n, remaining));
        let mut body = Vec::new();
        for r in &page {
            for c in &p.outputs {
                put_bytes(&mut body, r[*c].serialize().as_deref());
            }
        }
        Ok(rows_frame(stream, &p.result, ps.as_deref(), params.skip_metadata, n, &body))
    }
}

fn check_bind_count(expected: usize, params: &QueryParams) -> Result<(), CqlError> {
    if params.values.len() != expected {
        return Err(invalid(format!(
            "Invalid amount of bind variables: expected {expected}, got {}",
            params.values.len()
        )));
    }
    Ok(())
}

fn page_size(params: &QueryParams) -> usize {
    match params.page_size {
        Some(p) if p > 0 => p as usize,
        _ => usize::MAX,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn prepared_id(keyspace: Option<&str>, query: &str) -> Vec<u8> {
    let mut s = keyspace.unwrap_or("").as_bytes().to_vec();
    s.push(0);
    s.extend_from_slice(query.as_bytes());
    let (a, b) = murmur3::hash3_x64_128(&s, 0);
    let mut id = a.to_be_bytes().to_vec();
    id.extend_from_slice(&b.to_be_bytes());
    id
}

/// Assembles a Rows RESULT frame from pre-encoded row bytes.
fn rows_frame(
    stream: i16,
    meta: &Metadata,
    paging_state: Option<&[u8]>,
    skip_metadata: bool,
    count: usize,
    rows: &[u8],
) -> Vec<u8> {
    let mut f = protocol::start_frame_with_capacity(stream, opcode::RESULT, rows.len() + 256);
    put_int(&mut f, result_kind::ROWS);
    protocol::put_rows_metadata(&mut f, meta, paging_state, skip_metadata);
    put_int(&mut f, count as i32);
    f.extend_from_slice(rows);
    protocol::finish_frame(f)
}

fn plan_system(table: SysTable, sel: &cql::Select) -> Result<SysPlan, CqlError> {
    let full = format!("{}.{}", table.keyspace, table.name);
    let find = |name: &str| {
        table
            .columns
            .iter()
            .position(|(c, _)| *c == name)
            .ok_or_else(|| invalid(format!("Undefined column name {name} in table {full}")))
    };
    let mut outputs = Vec::new();
    let mut cols = Vec::new();
    match &sel.selection {
        Selection::Star => {
            for (i, (c, t)) in table.columns.iter().enumerate() {
                outputs.push(i);
                cols.push(ColumnSpec { name: c.to_string(), typ: t.clone() });
            }
        }
        Selection::List(list) => {
            for (s, alias) in list {
                let Selector::Column(name) = s else {
                    return Err(invalid(format!("the test node only selects plain columns from {full}")));
                };
                let i = find(name)?;
                outputs.push(i);
                cols.push(ColumnSpec {
                    name: alias.clone().unwrap_or_else(|| name.clone()),
                    typ: table.columns[i].1.clone(),
                });
            }
        }
    }
    let mut binds: Vec<Option<ColumnSpec>> = vec![None; sel.bind_count];
    let mut filters = Vec::new();
    for r in &sel.relations {
        let Lhs::Column(name) = &r.lhs else {
            return Err(invalid(format!("token() restrictions are not supported on {full} by the test node")));
        };
        let i = find(name)?;
        let typ = table.columns[i].1.clone();
        match r.op {
            Op::Eq => {
                if let Term::Bind(b) = r.rhs {
                    binds[b] = Some(ColumnSpec { name: name.clone(), typ });
                }
            }
            Op::In => {
                if let Term::Bind(b) = r.rhs {
                    binds[b] = Some(ColumnSpec { name: format!("in({name})"), typ: CqlType::List(Box::new(typ)) });
                }
            }
            _ => return Err(invalid(format!("only = and IN restrictions are supported on {full} by the test node"))),
        }
        filters.push((i, r.op, r.rhs.clone()));
    }
    if let Some(Term::Bind(b)) = &sel.limit {
        binds[*b] = Some(ColumnSpec { name: LIMIT_BIND_NAME.into(), typ: CqlType::Int });
    }
    let bind_cols = binds
        .into_iter()
        .map(|b| b.ok_or_else(|| invalid("bind marker in an unsupported position")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SysPlan {
        result: Metadata { keyspace: table.keyspace.to_string(), table: table.name.clone(), columns: cols },
        bind: Metadata { keyspace: table.keyspace.to_string(), table: table.name.clone(), columns: bind_cols },
        table,
        outputs,
        filters,
        limit: sel.limit.clone(),
    })
}

/// Serialized values a system-table filter accepts.
fn allowed_values(term: &Term, op: Op, typ: &CqlType, params: &QueryParams) -> Result<Vec<Vec<u8>>, CqlError> {
    let literal = |t: &Term| -> Result<Vec<u8>, CqlError> {
        match (t, typ) {
            (Term::Str(s), CqlType::Text) => Ok(s.as_bytes().to_vec()),
            (Term::Int(v), CqlType::Int) => Ok((*v as i32).to_be_bytes().to_vec()),
            (Term::Bool(b), CqlType::Boolean) => Ok(vec![*b as u8]),
            (Term::Blob(b), _) => Ok(b.clone()),
            (Term::Bind(i), _) => match &params.values[*i] {
                BoundValue::Bytes(b) => Ok(b.clone()),
                _ => Err(invalid("Invalid null or unset value in a system table filter")),
            },
            _ => Err(invalid(format!("literal {t:?} does not match column type {}", typ.cql_name()))),
        }
    };
    match (op, term) {
        (Op::In, Term::List(items)) => items.iter().map(literal).collect(),
        (Op::In, Term::Bind(i)) => match &params.values[*i] {
            BoundValue::Bytes(b) => decode_list(b),
            _ => Err(invalid("Invalid null or unset value for IN")),
        },
        (Op::In, _) => Err(invalid("IN needs a list or a bind marker")),
        (_, t) => Ok(vec![literal(t)?]),
    }
}

/// Decodes a serialized `list<...>`/`set<...>` into its element bytes.
fn decode_list(b: &[u8]) -> Result<Vec<Vec<u8>>, CqlError> {
    let mut r = protocol::Reader::new(b);
    let n = r.int("list length").map_err(|e| invalid(e.message))?;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        match r.bytes("list element").map_err(|e| invalid(e.message))? {
            Some(e) => out.push(e.to_vec()),
            None => return Err(invalid("null element in IN list")),
        }
    }
    Ok(out)
}

/// Cassandra's answer to a restriction it could only serve by filtering.
fn needs_filtering(allow_filtering: bool, what: &str) -> CqlError {
    invalid(if allow_filtering {
        format!("filtering on {what} is not supported by the test node")
    } else {
        "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING".to_string()
    })
}

/// Serializes a literal for a primary-key column of type `typ` (values are
/// checked with the bound ones, at execution).
fn literal_bytes(term: &Term, typ: ColumnType, name: &str) -> Result<Vec<u8>, CqlError> {
    use ColumnType as C;
    let bad = || invalid(format!("Invalid constant {term:?} for \"{name}\" of type {}", typ.name()));
    let int = |v: i128, bytes: usize| -> Result<Vec<u8>, CqlError> {
        let bits = 8 * bytes as u32;
        let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
        if v < min || v > max {
            return Err(invalid(format!("Invalid constant {v} for \"{name}\": out of range for {}", typ.name())));
        }
        Ok(v.to_be_bytes()[16 - bytes..].to_vec())
    };
    match (typ, term) {
        (C::Text | C::Ascii, Term::Str(s)) => Ok(s.as_bytes().to_vec()),
        (C::Blob, Term::Blob(b)) => Ok(b.clone()),
        (C::Uuid | C::Timeuuid, Term::Uuid(u)) => Ok(u.to_vec()),
        (_, Term::Int(v)) => match typ.fixed_width() {
            Some(w) if w <= 8 => int(*v, w),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// The value of a primary-key term for this execution.
fn key_value<'a>(term: &'a KeyTerm, params: &'a QueryParams, name: &str) -> Result<&'a [u8], CqlError> {
    match term {
        KeyTerm::Literal(b) => Ok(b),
        KeyTerm::Bind(i) => bound_bytes(params, *i, name),
    }
}

fn plan_data(td: Arc<TableData>, sel: &cql::Select, version: Version) -> Result<DataPlan, CqlError> {
    let t = td.schema.clone();
    let full = format!("{}.{}", t.keyspace, t.name);
    let pk_names = t.partition_key_names();
    let resolve =
        |name: &str| t.resolve(name).ok_or_else(|| invalid(format!("Undefined column name {name} in table {full}")));
    let check_token_args = |args: &[String]| -> Result<(), CqlError> {
        for a in args {
            resolve(a)?;
        }
        let in_key_order =
            args.len() == t.partition_key.len() && args.iter().zip(&t.partition_key).all(|(a, (pk, _))| a == pk);
        if !in_key_order {
            return Err(invalid(format!(
                "The token function arguments must be in the partition key order: {pk_names}"
            )));
        }
        Ok(())
    };
    // writetime() and ttl() read a cell's metadata: static and regular columns only.
    let cell = |func: &str, name: &str| -> Result<ColumnRef, CqlError> {
        match resolve(name)? {
            c @ (ColumnRef::Static(_) | ColumnRef::Regular(_)) => Ok(c),
            _ => Err(invalid(format!("Cannot use selection function {func} on PRIMARY KEY part {name}"))),
        }
    };
    let spec = |name: String, typ: CqlType| ColumnSpec { name, typ };

    let mut outputs = Vec::new();
    let mut cols = Vec::new();
    // Columns the selection reads, function arguments included (DISTINCT's rules).
    let mut requested: Vec<ColumnRef> = Vec::new();
    match &sel.selection {
        Selection::Star => {
            for c in t.star_order() {
                outputs.push(Output::Column(c));
                cols.push(spec(t.column_name(c).to_string(), t.column_type(c).cql_type()));
                requested.push(c);
            }
        }
        Selection::List(list) => {
            for (s, alias) in list {
                let (out, name, typ) = match s {
                    Selector::Column(n) => {
                        let c = resolve(n)?;
                        requested.push(c);
                        (Output::Column(c), n.clone(), t.column_type(c).cql_type())
                    }
                    Selector::Token(args) => {
                        check_token_args(args)?;
                        requested.extend((0..t.partition_key.len()).map(ColumnRef::PartitionKey));
                        (Output::Token, format!("system.token({})", args.join(", ")), CqlType::Bigint)
                    }
                    Selector::WriteTime(n) => {
                        let c = cell("writeTime", n)?;
                        requested.push(c);
                        (Output::WriteTime(c), format!("writetime({n})"), CqlType::Bigint)
                    }
                    Selector::Ttl(n) => {
                        let c = cell("ttl", n)?;
                        requested.push(c);
                        (Output::Ttl(c), format!("ttl({n})"), CqlType::Int)
                    }
                    Selector::Call(f, args) => {
                        let arg_cols = args.iter().map(|a| resolve(a)).collect::<Result<Vec<_>, _>>()?;
                        requested.extend(&arg_cols);
                        match (f.as_str(), arg_cols.as_slice()) {
                            ("octet_length", [c]) if version.has_octet_length() => {
                                (Output::OctetLength(*c), format!("system.octet_length({})", args[0]), CqlType::Int)
                            }
                            ("octet_length", _) if version.has_octet_length() => {
                                return Err(invalid(format!(
                                    "Invalid number of arguments in call to function system.octet_length: 1 required but {} provided",
                                    args.len()
                                )))
                            }
                            // Cassandra's answer for a function its version lacks.
                            _ => return Err(invalid(format!("Unknown function '{f}'"))),
                        }
                    }
                };
                outputs.push(out);
                cols.push(spec(alias.clone().unwrap_or(name), typ));
            }
        }
    }

    let mut binds: Vec<Option<ColumnSpec>> = vec![None; sel.bind_count];
    let mut start: Option<(Term, bool)> = None;
    let mut end: Option<(Term, bool)> = None;
    let mut token_eq = false;
    let mut key_terms: Vec<Option<KeyTerm>> = vec![None; t.partition_key.len()];
    let mut ck_terms: Vec<Option<KeyTerm>> = vec![None; t.clustering.len()];
    for r in &sel.relations {
        match &r.lhs {
            Lhs::Token(args) => {
                check_token_args(args)?;
                match &r.rhs {
                    Term::Bind(b) => {
                        binds[*b] = Some(spec(TOKEN_BIND_NAME.into(), CqlType::Bigint));
                    }
                    Term::Int(v) if i64::try_from(*v).is_ok() => {}
                    other => {
                        return Err(invalid(format!(
                            "Invalid constant {other:?} for \"{TOKEN_BIND_NAME}\" of type bigint"
                        )))
                    }
                }
                let set = |slot: &mut Option<(Term, bool)>, which: &str, inc: bool| {
                    if slot.is_some() || token_eq {
                        return Err(invalid(format!(
                            "More than one restriction was found for the {which} bound on {pk_names}"
                        )));
                    }
                    *slot = Some((r.rhs.clone(), inc));
                    Ok(())
                };
                match r.op {
                    Op::Gt => set(&mut start, "start", false)?,
                    Op::Ge => set(&mut start, "start", true)?,
                    Op::Lt => set(&mut end, "end", false)?,
                    Op::Le => set(&mut end, "end", true)?,
                    Op::Eq => {
                        if start.is_some() || end.is_some() || token_eq {
                            return Err(invalid(format!(
                                "{pk_names} cannot be restricted by more than one relation if it includes an Equal"
                            )));
                        }
                        start = Some((r.rhs.clone(), true));
                        end = Some((r.rhs.clone(), true));
                        token_eq = true;
                    }
                    Op::In => return Err(invalid("IN on token() is not supported by the test node")),
                }
            }
            Lhs::Column(name) => {
                let c = resolve(name)?;
                let slot = match c {
                    ColumnRef::PartitionKey(i) => &mut key_terms[i],
                    ColumnRef::Clustering(i) => &mut ck_terms[i],
                    _ => return Err(needs_filtering(sel.allow_filtering, &format!("column {name}"))),
                };
                match (r.op, c) {
                    (Op::Eq, _) => {}
                    (Op::In, _) => {
                        return Err(invalid(format!("IN on primary key column {name} is not supported by the test node")))
                    }
                    (_, ColumnRef::PartitionKey(_)) => {
                        return Err(invalid(
                            "Only EQ and IN relation are supported on the partition key (unless you use the token() function)",
                        ))
                    }
                    _ => {
                        return Err(invalid(format!(
                            "slices on clustering column {name} are not supported by the test node"
                        )))
                    }
                }
                if slot.is_some() {
                    return Err(invalid(format!(
                        "{name} cannot be restricted by more than one relation if it includes an Equal"
                    )));
                }
                let typ = t.column_type(c);
                *slot = Some(match &r.rhs {
                    Term::Bind(b) => {
                        binds[*b] = Some(spec(name.clone(), typ.cql_type()));
                        KeyTerm::Bind(*b)
                    }
                    lit => KeyTerm::Literal(literal_bytes(lit, typ, name)?),
                });
            }
        }
    }

    // The partition key: every column by EQ (in any order, as Cassandra
    // allows), or none of them.
    let key = if key_terms.iter().any(Option::is_some) {
        if start.is_some() || end.is_some() {
            return Err(invalid(format!(
                "Columns \"{pk_names}\" cannot be restricted by both a normal relation and a token relation"
            )));
        }
        if key_terms.iter().any(Option::is_none) {
            return Err(needs_filtering(sel.allow_filtering, "part of the partition key"));
        }
        Some(key_terms.into_iter().flatten().collect::<Vec<_>>())
    } else {
        None
    };
    // The clustering columns: a prefix by EQ.
    let prefix = ck_terms.iter().take_while(|c| c.is_some()).count();
    if let Some(j) = ck_terms[prefix..].iter().position(Option::is_some) {
        return Err(invalid(format!(
            "PRIMARY KEY column \"{}\" cannot be restricted as preceding column \"{}\" is not restricted",
            t.clustering[prefix + j].0,
            t.clustering[prefix].0
        )));
    }
    let clustering: Vec<KeyTerm> = ck_terms.into_iter().flatten().collect();
    if !clustering.is_empty() && key.is_none() {
        return Err(needs_filtering(sel.allow_filtering, "clustering columns without the partition key"));
    }

    if sel.distinct {
        // Cassandra's SelectStatement.validateDistinctSelection.
        if !clustering.is_empty() {
            return Err(invalid(
                "SELECT DISTINCT with WHERE clause only supports restriction by partition key and/or static columns.",
            ));
        }
        if let Some(c) = requested.iter().find(|c| !matches!(c, ColumnRef::PartitionKey(_) | ColumnRef::Static(_))) {
            return Err(invalid(format!(
                "SELECT DISTINCT queries must only request partition key columns and/or static columns (not {})",
                t.column_name(*c)
            )));
        }
        if key.is_none() {
            if let Some(i) = (0..t.partition_key.len()).find(|i| !requested.contains(&ColumnRef::PartitionKey(*i))) {
                return Err(invalid(format!(
                    "SELECT DISTINCT queries must request all the partition key columns (missing {})",
                    t.partition_key[i].0
                )));
            }
        }
    }

    match &sel.limit {
        Some(Term::Bind(b)) => binds[*b] = Some(spec(LIMIT_BIND_NAME.into(), CqlType::Int)),
        Some(Term::Int(v)) if *v > 0 && *v <= i32::MAX as i128 => {}
        Some(Term::Int(_)) => return Err(invalid("LIMIT must be strictly positive")),
        Some(other) => {
            return Err(invalid(format!("Invalid constant {other:?} for \"{LIMIT_BIND_NAME}\" of type int")))
        }
        None => {}
    }
    let bind_cols = binds
        .into_iter()
        .map(|b| b.ok_or_else(|| invalid("bind marker in an unsupported position")))
        .collect::<Result<Vec<_>, _>>()?;
    // Like Cassandra: the marker of each partition-key column in key order,
    // when every one is a marker, so the driver can route by token.
    let pk_indexes = match &key {
        Some(terms) => terms
            .iter()
            .map(|k| match k {
                KeyTerm::Bind(b) => Some(*b as u16),
                KeyTerm::Literal(_) => None,
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let restriction = match key {
        Some(k) => Restriction::Key(k),
        None => Restriction::Range { start, end },
    };
    Ok(DataPlan {
        result: Metadata { keyspace: t.keyspace.clone(), table: t.name.clone(), columns: cols },
        bind: Metadata { keyspace: t.keyspace.clone(), table: t.name.clone(), columns: bind_cols },
        table: td,
        outputs,
        pk_indexes,
        restriction,
        clustering,
        distinct: sel.distinct,
        limit: sel.limit.clone(),
    })
}

fn bound_bytes<'a>(params: &'a QueryParams, i: usize, what: &str) -> Result<&'a [u8], CqlError> {
    match &params.values[i] {
        BoundValue::Bytes(b) => Ok(b),
        BoundValue::Null => Err(invalid(format!("Invalid null value for {what}"))),
        BoundValue::Unset => Err(invalid(format!("Invalid unset value for {what}"))),
    }
}

fn term_bigint(t: &Term, params: &QueryParams) -> Result<i64, CqlError> {
    match t {
        Term::Int(v) => i64::try_from(*v).map_err(|_| invalid("token literal out of range")),
        Term::Bind(i) => {
            let b = bound_bytes(params, *i, TOKEN_BIND_NAME)?;
            let arr: [u8; 8] =
                b.try_into().map_err(|_| invalid(format!("Expected 8 or 0 byte long for bigint ({})", b.len())))?;
            Ok(i64::from_be_bytes(arr))
        }
        other => Err(invalid(format!("invalid token bound {other:?}"))),
    }
}

fn limit_value(limit: Option<&Term>, params: &QueryParams) -> Result<Option<usize>, CqlError> {
    match limit {
        None => Ok(None),
        Some(Term::Int(v)) => Ok(Some(*v as usize)),
        Some(Term::Bind(i)) => {
            let b = bound_bytes(params, *i, LIMIT_BIND_NAME)?;
            let arr: [u8; 4] = b.try_into().map_err(|_| invalid(format!("Expected 4 or 0 byte int ({})", b.len())))?;
            let v = i32::from_be_bytes(arr);
            if v <= 0 {
                return Err(invalid("LIMIT must be strictly positive"));
            }
            Ok(Some(v as usize))
        }
        Some(other) => Err(invalid(format!("invalid LIMIT {other:?}"))),
    }
}

/// A token range in Cassandra's CQL semantics (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    /// `None` = from the start of the ring.
    pub lower: Option<(i64, bool)>,
    /// `None` = to the end of the ring.
    pub upper: Option<(i64, bool)>,
    /// CASSANDRA-5573: a non-wrapping query range that selects nothing.
    pub empty: bool,
}

impl TokenRange {
    /// Mirrors `getPartitionKeyBoundsForTokenRestrictions`: missing bounds are
    /// the minimum token; a bound at the minimum token disables the emptiness
    /// check, and an end at the minimum token is the end of the ring.
    pub fn from_bounds(start: Option<(i64, bool)>, end: Option<(i64, bool)>) -> TokenRange {
        let (s, s_inc) = start.unwrap_or((murmur3::MIN_TOKEN, true));
        let (e, e_inc) = end.unwrap_or((murmur3::MIN_TOKEN, true));
        let min = murmur3::MIN_TOKEN;
        let empty = s != min && e != min && (s > e || (s == e && !(s_inc && e_inc)));
        TokenRange {
            // No partition has the minimum token, so a start there is no bound.
            lower: (s != min).then_some((s, s_inc)),
            upper: (e != min).then_some((e, e_inc)),
            empty,
        }
    }

    pub fn contains(&self, t: i64) -> bool {
        !self.empty
            && self.lower.is_none_or(|(s, inc)| if inc { t >= s } else { t > s })
            && self.upper.is_none_or(|(e, inc)| if inc { t <= e } else { t < e })
    }

    fn first_token(&self) -> i64 {
        match self.lower {
            None => i64::MIN,
            Some((s, true)) => s,
            Some((s, false)) => s.saturating_add(1),
        }
    }

    fn last_token(&self) -> i64 {
        match self.upper {
            None => i64::MAX,
            Some((e, true)) => e,
            Some((e, false)) => e.saturating_sub(1),
        }
    }
}

enum Resume {
    /// Continue after partition `pos`: after the row with clustering order
    /// key `row` in it, or after the whole partition for `None`.
    Key {
        pos: RowKey,
        row: Option<Vec<u8>>,
        remaining: Option<usize>,
    },
    Offset {
        offset: usize,
        remaining: Option<usize>,
    },
}

const PS_MAGIC: &[u8; 2] = b"KT";
/// 2: the resume position carries a row inside the partition.
const PS_VERSION: u8 = 2;

fn bad_paging_state() -> CqlError {
    CqlError::protocol("Invalid value for the paging state")
}

fn put_remaining(out: &mut Vec<u8>, remaining: Option<usize>) {
    out.extend_from_slice(&remaining.map_or(-1i64, |r| r as i64).to_be_bytes());
}

fn encode_key_state(pos: &RowKey, row: Option<&[u8]>, remaining: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + pos.1.len() + row.map_or(0, <[u8]>::len));
    out.extend_from_slice(PS_MAGIC);
    out.push(PS_VERSION);
    out.push(0);
    out.extend_from_slice(&pos.0.to_be_bytes());
    out.extend_from_slice(&(pos.1.len() as u32).to_be_bytes());
    out.extend_from_slice(&pos.1);
    protocol::put_bytes(&mut out, row);
    put_remaining(&mut out, remaining);
    out
}

fn encode_offset_state(offset: usize, remaining: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(PS_MAGIC);
    out.push(PS_VERSION);
    out.push(1);
    out.extend_from_slice(&(offset as u64).to_be_bytes());
    put_remaining(&mut out, remaining);
    out
}

fn decode_paging_state(b: &[u8]) -> Result<Resume, CqlError> {
    let mut r = protocol::Reader::new(b);
    let bad = |_| bad_paging_state();
    if r.short("magic").map_err(bad)? != u16::from_be_bytes(*PS_MAGIC) || r.u8("version").map_err(bad)? != PS_VERSION {
        return Err(bad_paging_state());
    }
    let kind = r.u8("kind").map_err(bad)?;
    let resume = match kind {
        0 => {
            let token = r.long("token").map_err(bad)?;
            let n = r.int("key length").map_err(bad)?;
            if n < 0 || n as usize > r.remaining() {
                return Err(bad_paging_state());
            }
            let mut key = vec![0u8; n as usize];
            for k in key.iter_mut() {
                *k = r.u8("key").map_err(bad)?;
            }
            let row = r.bytes("row").map_err(bad)?.map(<[u8]>::to_vec);
            let rem = r.long("remaining").map_err(bad)?;
            Resume::Key { pos: (token, key), row, remaining: (rem >= 0).then_some(rem as usize) }
        }
        1 => {
            let offset = r.long("offset").map_err(bad)?;
            let rem = r.long("remaining").map_err(bad)?;
            Resume::Offset { offset: offset.max(0) as usize, remaining: (rem >= 0).then_some(rem as usize) }
        }
        _ => return Err(bad_paging_state()),
    };
    if r.remaining() != 0 {
        return Err(bad_paging_state());
    }
    Ok(resume)
}

/// What one output row is made of: its partition's key values, the row
/// (`None` for a DISTINCT row or a partition with only static cells) and the
/// partition's static row.
struct RowSource<'r> {
    token: i64,
    key: &'r [&'r [u8]],
    row: Option<&'r StoredRow>,
    statics: Option<&'r StoredRow>,
}

impl<'r> RowSource<'r> {
    /// A column's value and the stored row holding its cell metadata.
    fn value(&self, c: ColumnRef) -> (Option<&'r [u8]>, Option<&'r StoredRow>) {
        match c {
            ColumnRef::PartitionKey(i) => (Some(self.key[i]), None),
            ColumnRef::Clustering(i) => (self.row.map(|r| r.clustering[i].as_slice()), None),
            ColumnRef::Static(i) => (self.statics.and_then(|s| s.cells[i].as_deref()), self.statics),
            ColumnRef::Regular(i) => (self.row.and_then(|r| r.cells[i].as_deref()), self.row),
        }
    }

    fn encode(&self, out: &mut Vec<u8>, outputs: &[Output]) {
        for o in outputs {
            match *o {
                Output::Column(c) => put_bytes(out, self.value(c).0),
                Output::Token => put_bytes(out, Some(&self.token.to_be_bytes())),
                Output::WriteTime(c) => match self.value(c) {
                    (Some(_), Some(r)) => put_bytes(out, Some(&r.writetime.to_be_bytes())),
                    _ => put_bytes(out, None),
                },
                Output::Ttl(c) => match self.value(c) {
                    (Some(_), Some(StoredRow { ttl: Some(ttl), .. })) => put_bytes(out, Some(&ttl.to_be_bytes())),
                    _ => put_bytes(out, None),
                },
                Output::OctetLength(c) => match self.value(c).0 {
                    Some(v) => put_bytes(out, Some(&(v.len() as i32).to_be_bytes())),
                    None => put_bytes(out, None),
                },
            }
        }
    }
}

/// Where a page stopped: the partition, and the last row served in it
/// (`None` when the partition is done).
type Position = (RowKey, Option<Vec<u8>>);

/// One page of a scan over partitions in ring order.
struct Page {
    body: Vec<u8>,
    rows: usize,
    partitions: usize,
    last: Option<Position>,
}

/// Serves up to `max` rows from partitions starting at `from` (inclusive)
/// while `in_range` holds, resuming inside `resume`'s partition.
fn scan_page(
    p: &DataPlan,
    from: Bound<RowKey>,
    in_range: impl Fn(&RowKey) -> bool,
    resume: Option<&Position>,
    clustering_prefix: &[u8],
    max: usize,
) -> Page {
    let t = &p.table.schema;
    let mut page = Page { body: Vec::new(), rows: 0, partitions: 0, last: None };
    // Borrowed while scanning; owned once, when the page is done.
    let mut last: Option<(&RowKey, Option<&Vec<u8>>)> = None;
    let map = p.table.read();
    'partitions: for (pos, part) in map.range((from, Bound::Unbounded)) {
        if page.rows == max || !in_range(pos) {
            break;
        }
        let after = match resume {
            Some((rpos, row)) if rpos == pos => match row {
                None => continue,
                Some(row) => Some(row.as_slice()),
            },
            _ => None,
        };
        page.partitions += 1;
        let key = schema::split_key(&pos.1, t.partition_key.len()).expect("stored keys were checked on insert");
        let mut src = RowSource { token: pos.0, key: &key, row: None, statics: part.statics.as_ref() };
        // DISTINCT, or a partition with only static cells: one row, with
        // null clustering and regular columns.
        if p.distinct || (part.rows.is_empty() && clustering_prefix.is_empty() && after.is_none()) {
            if p.distinct || part.statics.is_some() {
                src.encode(&mut page.body, &p.outputs);
                page.rows += 1;
                last = Some((pos, None));
            }
            continue;
        }
        // Rows matching the clustering prefix are contiguous in clustering order.
        let first = part.rows_after(after).max(part.rows.partition_point(|(o, _)| o.as_slice() < clustering_prefix));
        for (order, row) in &part.rows[first..] {
            if !order.starts_with(clustering_prefix) {
                break;
            }
            if page.rows == max {
                break 'partitions;
            }
            src.row = Some(row);
            src.encode(&mut page.body, &p.outputs);
            page.rows += 1;
            last = Some((pos, Some(order)));
        }
    }
    page.last = last.map(|(pos, row)| (pos.clone(), row.cloned()));
    page
}

fn run_data(stream: i16, p: &DataPlan, params: &QueryParams) -> Result<(Vec<u8>, PageInfo), CqlError> {
    let t = &p.table.schema;
    let mut clustering_values = Vec::with_capacity(p.clustering.len());
    for (term, (name, typ, _)) in p.clustering.iter().zip(&t.clustering) {
        let v = key_value(term, params, name)?;
        typ.validate_key(v).map_err(|e| invalid(format!("Invalid value for {name}: {e}")))?;
        clustering_values.push(v);
    }
    let clustering_prefix = t.clustering_order_key(&clustering_values);
    let (resume, remaining) = match &params.paging_state {
        Some(ps) => match decode_paging_state(ps)? {
            Resume::Key { pos, row, remaining } => (Some((pos, row)), remaining),
            Resume::Offset { .. } => return Err(bad_paging_state()),
        },
        None => (None, limit_value(p.limit.as_ref(), params)?),
    };
    let page_size = page_size(params);
    let max = page_size.min(remaining.unwrap_or(usize::MAX));
    // The resume partition is scanned again: `scan_page` continues inside it.
    let resume_from = |first: Bound<RowKey>| resume.as_ref().map_or(first, |(pos, _)| Bound::Included(pos.clone()));
    let (page, kind, range) = match &p.restriction {
        Restriction::Key(terms) => {
            let mut parts = Vec::with_capacity(terms.len());
            for (term, (name, _)) in terms.iter().zip(&t.partition_key) {
                parts.push(key_value(term, params, name)?);
            }
            let key = schema::compose_key(&parts);
            // "Key may not be empty", or "partition key b: <why>".
            t.key_parts(&key)
                .map_err(|e| invalid(if key.is_empty() { e } else { format!("Invalid value for {e}") }))?;
            let pos = (murmur3::token(&key), key);
            let page = scan_page(
                p,
                resume_from(Bound::Included(pos.clone())),
                |k| *k == pos,
                resume.as_ref(),
                &clustering_prefix,
                max,
            );
            (page, ReadKind::Lookup, TokenRange::from_bounds(Some((pos.0, true)), Some((pos.0, true))))
        }
        Restriction::Range { start, end } => {
            let bound = |b: &Option<(Term, bool)>| match b {
                Some((t, inc)) => term_bigint(t, params).map(|v| Some((v, *inc))),
                None => Ok(None),
            };
            let range = TokenRange::from_bounds(bound(start)?, bound(end)?);
            let from = match range.lower {
                _ if range.empty => None,
                None => Some(Bound::Unbounded),
                Some((t, inc)) => store::lower_from_token(t, inc),
            };
            let page = match from {
                Some(from) => {
                    scan_page(p, resume_from(from), |k| range.contains(k.0), resume.as_ref(), &clustering_prefix, max)
                }
                None => Page { body: Vec::new(), rows: 0, partitions: 0, last: None },
            };
            let kind = if p.distinct { ReadKind::DistinctRange } else { ReadKind::Range };
            (page, kind, range)
        }
    };
    let n = page.rows;
    let remaining = remaining.map(|r| r - n);
    // Like Cassandra: a full page means "maybe more", even at the end.
    let more = page_size != usize::MAX && n == page_size && remaining != Some(0);
    let ps = match (&page.last, more) {
        (Some((pos, row)), true) => Some(encode_key_state(pos, row.as_deref(), remaining)),
        _ => None,
    };
    let lo = resume.as_ref().map_or(range.first_token(), |r| r.0 .0);
    let hi = match (&page.last, more) {
        (Some((pos, _)), true) => pos.0,
        _ => range.last_token(),
    };
    let covered = (!range.empty && lo <= hi).then_some((lo, hi));
    let frame = rows_frame(stream, &p.result, ps.as_deref(), params.skip_metadata, n, &page.body);
    let info = PageInfo {
        covered,
        kind,
        rows: n,
        partitions: page.partitions,
        bytes: page.body.len(),
        lookup_missed: kind == ReadKind::Lookup && n == 0,
    };
    Ok((frame, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{compose_key, Row, Value};

    const MIN: i64 = i64::MIN;

    #[test]
    fn cassandra_token_range_semantics() {
        let r = |s, e| TokenRange::from_bounds(s, e);
        // (a, b]
        let x = r(Some((10, false)), Some((20, true)));
        assert!(!x.contains(10) && x.contains(11) && x.contains(20) && !x.contains(21));
        // start > end: empty (CASSANDRA-5573), not a wrapping range.
        assert!(r(Some((20, false)), Some((10, true))).empty);
        // (a, a] and [a, a) are empty, [a, a] is not.
        assert!(r(Some((5, false)), Some((5, true))).empty);
        assert!(r(Some((5, true)), Some((5, false))).empty);
        assert!(r(Some((5, true)), Some((5, true))).contains(5));
        // Only a lower bound: to the end of the ring; nothing above MAX.
        assert!(r(Some((i64::MAX, false)), None).lower.is_some());
        assert!(!r(Some((i64::MAX, false)), None).contains(i64::MAX));
        // An end at the minimum token means the end of the ring.
        let y = r(Some((100, false)), Some((MIN, true)));
        assert!(!y.empty && y.contains(i64::MAX) && !y.contains(100));
        // A start at the minimum token is the start of the ring.
        let z = r(Some((MIN, false)), Some((0, true)));
        assert!(z.contains(MIN + 1) && z.contains(0) && !z.contains(1));
        // (MIN, MIN] is the whole ring.
        let w = r(Some((MIN, false)), Some((MIN, true)));
        assert!(w.contains(0) && w.contains(i64::MAX) && w.contains(MIN + 1));
    }

    #[test]
    fn paging_state_round_trip_and_rejection() {
        for row in [None, Some(&b"ck"[..])] {
            let ps = encode_key_state(&(42, b"k".to_vec()), row, Some(3));
            match decode_paging_state(&ps).unwrap() {
                Resume::Key { pos, row: got, remaining } => {
                    assert_eq!(pos, (42, b"k".to_vec()));
                    assert_eq!(got.as_deref(), row);
                    assert_eq!(remaining, Some(3));
                }
                _ => panic!("wrong kind"),
            }
        }
        let ps = encode_offset_state(7, None);
        assert!(matches!(decode_paging_state(&ps).unwrap(), Resume::Offset { offset: 7, remaining: None }));
        for bad in [&b""[..], b"XX\x01\x00", &ps[..ps.len() - 1]] {
            assert_eq!(decode_paging_state(bad).err().unwrap().code, protocol::code::PROTOCOL_ERROR);
        }
    }

    /// `ks.t`: 50 one-row partitions. `ks.c` ([`schema::clustered_test_table`],
    /// c ASC, d DESC): partition `p{i}` has `i % 4`
    /// rows (`c` 0.., `d` "d") and static `s` = `[i]`, so every fourth one
    /// holds only static cells; `p3` has two more rows `(0, "a")`, `(0, "z")`.
    /// 20 partitions, 37 rows as a SELECT returns them.
    fn engine_playing(version: &str) -> Engine {
        let store = Store::new(
            vec![
                Table::new("ks", "t", "k", ColumnType::Text)
                    .column("v", ColumnType::Blob)
                    .column("n", ColumnType::Bigint),
                schema::clustered_test_table(),
            ],
            1000,
        )
        .unwrap();
        for i in 0..50 {
            store.insert("ks.t", Row::new(format!("key{i}")).blob("v", vec![i as u8])).unwrap();
        }
        for i in 0..20i32 {
            let part = || Row::partition([Value::Text(format!("p{i}")), Value::Int(i)]);
            store.insert("ks.c", part().blob("s", vec![i as u8]).ttl(60)).unwrap();
            let mut rows: Vec<(i32, &str)> = (0..i % 4).map(|c| (c, "d")).collect();
            if i == 3 {
                rows.extend([(0, "a"), (0, "z")]);
            }
            for (c, d) in rows {
                let row = part().clustering([Value::Int(c), Value::Text(d.into())]);
                store.insert("ks.c", if c == 1 { row } else { row.blob("v", vec![0; c as usize + 1]) }).unwrap();
            }
        }
        Engine::new(
            store,
            NodeInfo {
                cluster_name: "c".into(),
                host_id: [0; 16],
                schema_version: [0; 16],
                tokens: vec![0],
                release_version: version.into(),
            },
        )
    }

    fn engine() -> Engine {
        engine_playing(Version::DEFAULT)
    }

    fn err(e: &Engine, q: &str) -> CqlError {
        match e.plan(q, None) {
            Ok(_) => panic!("planned: {q}"),
            Err(err) => err,
        }
    }

    /// Each query is refused at planning with a message containing its needle.
    fn assert_refused(e: &Engine, cases: &[(&str, &str)]) {
        for (q, needle) in cases {
            let got = err(e, q);
            assert!(matches!(got.code, protocol::code::INVALID | protocol::code::SYNTAX_ERROR), "{q}: {got}");
            assert!(got.message.contains(needle), "{q}: expected {needle:?} in {:?}", got.message);
        }
    }

    #[test]
    fn invalid_queries_are_refused_like_cassandra() {
        let e = engine();
        assert_refused(
            &e,
            &[
                ("SELECT k FROM t", "No keyspace"),
                ("SELECT k FROM nope.t", "Keyspace nope does not exist"),
                ("SELECT k FROM ks.nope", "unconfigured table nope"),
                ("SELECT x FROM ks.t", "Undefined column name x"),
                ("SELECT writetime(k) FROM ks.t", "PRIMARY KEY part k"),
                ("SELECT k FROM ks.t WHERE v = 0x00", "ALLOW FILTERING"),
                ("SELECT k FROM ks.t WHERE k > 'a'", "Only EQ and IN"),
                ("SELECT k FROM ks.t WHERE token(k) > 1 AND token(k) > 2", "start bound"),
                ("SELECT k FROM ks.t WHERE token(k) > 1 AND k = 'a'", "both a normal relation and a token"),
                ("SELECT k FROM ks.t WHERE token(v) > 1", "partition key order"),
                ("SELECT k FROM ks.t WHERE token(k) > 'a'", "bigint"),
                ("SELECT k FROM ks.t WHERE k = 5", "of type text"),
                ("SELECT k FROM ks.t LIMIT 0", "strictly positive"),
                ("SELECT DISTINCT v FROM ks.t", "DISTINCT"),
                ("SELECT x FROM system_schema.scylla_tables", "unconfigured table scylla_tables"),
                ("SELECT nope FROM system.local", "Undefined column name nope"),
                ("USE nope", "does not exist"),
            ],
        );
    }

    fn exec(e: &Engine, q: &str, values: Vec<BoundValue>, page: Option<i32>, ps: Option<Vec<u8>>) -> Executed {
        let plan = e.plan(q, Some("ks")).unwrap();
        let params =
            QueryParams { consistency: 1, values, page_size: page, paging_state: ps, ..QueryParams::default() };
        let conn = ConnCtx { keyspace: Some("ks".into()), local: "127.0.0.1:9042".parse().unwrap() };
        e.execute(0, &plan, &params, &conn).unwrap()
    }

    /// Extracts the paging state from a Rows frame.
    fn paging_state(frame: &[u8]) -> Option<Vec<u8>> {
        let mut r = protocol::Reader::new(&frame[protocol::HEADER_LEN..]);
        assert_eq!(r.int("kind").unwrap(), result_kind::ROWS);
        let flags = r.int("flags").unwrap();
        r.int("cols").unwrap();
        (flags & 2 != 0).then(|| r.bytes("ps").unwrap().unwrap().to_vec())
    }

    #[test]
    fn paging_covers_range_exactly_with_empty_last_page() {
        let e = engine();
        // 50 rows, page size 10: five full pages then an empty one.
        let mut ps = None;
        let mut total = 0;
        let mut pages = 0;
        loop {
            let x = exec(&e, "SELECT k FROM t", vec![], Some(10), ps.clone());
            let info = x.page.unwrap();
            total += info.rows;
            pages += 1;
            ps = paging_state(&x.frame);
            if ps.is_none() {
                break;
            }
        }
        assert_eq!((total, pages), (50, 6));
    }

    #[test]
    fn limit_spans_pages() {
        let e = engine();
        let x = exec(&e, "SELECT k FROM t LIMIT 15", vec![], Some(10), None);
        assert_eq!(x.page.unwrap().rows, 10);
        let ps = paging_state(&x.frame);
        let y = exec(&e, "SELECT k FROM t LIMIT 15", vec![], Some(10), ps);
        assert_eq!(y.page.unwrap().rows, 5);
        assert!(paging_state(&y.frame).is_none());
    }

    #[test]
    fn token_bounds_from_bind_markers() {
        let e = engine();
        let b = |v: i64| BoundValue::Bytes(v.to_be_bytes().to_vec());
        let q = "SELECT k FROM t WHERE token(k) > ? AND token(k) <= ?";
        let all = exec(&e, q, vec![b(MIN), b(i64::MAX)], None, None);
        assert_eq!(all.page.unwrap().rows, 50);
        let left = exec(&e, q, vec![b(MIN), b(0)], None, None).page.unwrap().rows;
        let right = exec(&e, q, vec![b(0), b(i64::MAX)], None, None).page.unwrap().rows;
        assert_eq!(left + right, 50);
        let none = exec(&e, q, vec![b(5), b(-5)], None, None).page.unwrap();
        assert_eq!((none.rows, none.covered), (0, None));
    }

    #[test]
    fn prepared_ids_are_stable() {
        let e = engine();
        let a = e.prepare(1, "SELECT k FROM ks.t WHERE k = ?", None).unwrap();
        let b = e.prepare(2, "SELECT k FROM ks.t WHERE k = ?", None).unwrap();
        assert_eq!(a[protocol::HEADER_LEN..], b[protocol::HEADER_LEN..]);
        let id = prepared_id(None, "SELECT k FROM ks.t WHERE k = ?");
        assert!(e.prepared(&id).is_ok());
        assert_eq!(e.prepared(b"nope").err().unwrap().code, protocol::code::UNPREPARED);
    }

    fn bytes(b: &[u8]) -> BoundValue {
        BoundValue::Bytes(b.to_vec())
    }

    fn long(v: i64) -> BoundValue {
        BoundValue::Bytes(v.to_be_bytes().to_vec())
    }

    type Cells = Vec<Option<Vec<u8>>>;

    /// The rows of a Rows frame (metadata with simple types only).
    fn rows_of(frame: &[u8]) -> Vec<Cells> {
        let mut r = protocol::Reader::new(&frame[protocol::HEADER_LEN..]);
        assert_eq!(r.int("kind").unwrap(), result_kind::ROWS);
        let flags = r.int("flags").unwrap();
        let cols = r.int("cols").unwrap();
        if flags & 2 != 0 {
            r.bytes("ps").unwrap();
        }
        if flags & 4 == 0 {
            r.string("ks").unwrap();
            r.string("table").unwrap();
            for _ in 0..cols {
                r.string("name").unwrap();
                r.short("type").unwrap();
            }
        }
        let n = r.int("rows").unwrap();
        (0..n).map(|_| (0..cols).map(|_| r.bytes("cell").unwrap().map(<[u8]>::to_vec)).collect()).collect()
    }

    fn text(c: &Option<Vec<u8>>) -> &str {
        std::str::from_utf8(c.as_deref().unwrap()).unwrap()
    }

    fn int(c: &Option<Vec<u8>>) -> i64 {
        let b = c.as_deref().unwrap();
        let mut v = if b[0] & 0x80 != 0 { -1i64 } else { 0 };
        for x in b {
            v = (v << 8) | *x as i64;
        }
        v
    }

    /// Runs `q` to the end with page size `page`: rows and pages.
    fn all_pages(e: &Engine, q: &str, values: Vec<BoundValue>, page: i32) -> (Vec<Cells>, Vec<PageInfo>) {
        let (mut rows, mut infos, mut ps) = (Vec::new(), Vec::new(), None);
        loop {
            let x = exec(e, q, values.clone(), Some(page), ps);
            rows.extend(rows_of(&x.frame));
            infos.push(x.page.unwrap());
            ps = paging_state(&x.frame);
            if ps.is_none() {
                return (rows, infos);
            }
        }
    }

    const RANGE_C: &str = "SELECT a, b, token(a, b), c, d FROM c WHERE token(a, b) > ? AND token(a, b) <= ?";

    #[test]
    fn composite_keys_scan_in_token_then_clustering_order() {
        let e = engine();
        let x = exec(&e, RANGE_C, vec![long(MIN), long(MIN)], None, None);
        let rows = rows_of(&x.frame);
        assert_eq!(rows.len(), 37);
        let info = x.page.unwrap();
        assert_eq!((info.kind, info.rows, info.partitions), (ReadKind::Range, 37, 20));
        for r in &rows {
            // token(a, b) is Murmur3 of the composite serialization.
            let key = compose_key(&[r[0].clone().unwrap(), r[1].clone().unwrap()]);
            assert_eq!(int(&r[2]), murmur3::token(&key), "{}", text(&r[0]));
        }
        assert!(rows.windows(2).all(|w| int(&w[0][2]) <= int(&w[1][2])), "token order");
        let p3: Vec<(i64, &str)> =
            rows.iter().filter(|r| text(&r[0]) == "p3").map(|r| (int(&r[3]), text(&r[4]))).collect();
        // c ascending, then d descending.
        assert_eq!(p3, vec![(0, "z"), (0, "d"), (0, "a"), (1, "d"), (2, "d")]);
        // A partition with only static cells is one row with null clustering columns.
        let p4: Vec<&Cells> = rows.iter().filter(|r| text(&r[0]) == "p4").collect();
        assert_eq!((p4.len(), &p4[0][3], &p4[0][4]), (1, &None, &None));
    }

    #[test]
    fn lookups_take_key_columns_in_any_order_and_a_clustering_prefix() {
        let e = engine();
        let three = || bytes(&3i32.to_be_bytes());
        let x = exec(&e, "SELECT c, d FROM c WHERE b = ? AND a = ?", vec![three(), bytes(b"p3")], None, None);
        assert_eq!(rows_of(&x.frame).len(), 5);
        let info = x.page.unwrap();
        assert_eq!((info.kind, info.rows, info.partitions, info.lookup_missed), (ReadKind::Lookup, 5, 1, false));
        let key = compose_key(&[&b"p3"[..], &3i32.to_be_bytes()]);
        let t = murmur3::token(&key);
        assert_eq!(info.covered, Some((t, t)));
        let x = exec(&e, "SELECT d FROM c WHERE a = 'p3' AND b = 3 AND c = 0", vec![], None, None);
        let d: Vec<String> = rows_of(&x.frame).iter().map(|r| text(&r[0]).to_string()).collect();
        assert_eq!(d, ["z", "d", "a"]);
        let x = exec(
            &e,
            "SELECT v FROM c WHERE a = 'p3' AND b = 3 AND c = ? AND d = ?",
            vec![bytes(&0i32.to_be_bytes()), bytes(b"a")],
            None,
            None,
        );
        assert_eq!(rows_of(&x.frame), vec![vec![Some(vec![0])]]);
        let x = exec(&e, "SELECT c, s FROM c WHERE a = 'p4' AND b = 4", vec![], None, None);
        assert_eq!(rows_of(&x.frame), vec![vec![None, Some(vec![4])]]);
        let x = exec(&e, "SELECT c FROM c WHERE a = 'p4' AND b = 5", vec![], None, None);
        assert!(x.page.unwrap().lookup_missed);
    }

    #[test]
    fn distinct_reads_partitions_not_rows() {
        let e = engine();
        let q = "SELECT DISTINCT a, b, token(a, b), s FROM c WHERE token(a, b) > ? AND token(a, b) <= ?";
        let (rows, pages) = all_pages(&e, q, vec![long(MIN), long(MIN)], 3);
        assert_eq!(rows.len(), 20);
        let mut names: Vec<&str> = rows.iter().map(|r| text(&r[0])).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 20, "each partition once");
        assert!(rows.iter().all(|r| r[3] == Some(vec![int(&r[1]) as u8])), "static cells come along");
        assert!(pages.iter().all(|p| p.kind == ReadKind::DistinctRange && p.rows == p.partitions));
        assert_eq!(pages.iter().map(|p| p.partitions).sum::<usize>(), 20);
        // The same scan without DISTINCT returns every row of the same partitions.
        let (rows, pages) = all_pages(&e, RANGE_C, vec![long(MIN), long(MIN)], 3);
        assert_eq!(rows.len(), 37);
        assert!(pages.iter().map(|p| p.partitions).sum::<usize>() >= 20);
        // DISTINCT on a single partition need not select every key column.
        let x = exec(&e, "SELECT DISTINCT s FROM c WHERE a = 'p3' AND b = 3", vec![], None, None);
        assert_eq!(rows_of(&x.frame), vec![vec![Some(vec![3])]]);
    }

    #[test]
    fn paging_inside_and_across_partitions_loses_and_repeats_nothing() {
        let e = engine();
        let whole = rows_of(&exec(&e, RANGE_C, vec![long(MIN), long(MIN)], None, None).frame);
        for page in 1..=8 {
            let (rows, pages) = all_pages(&e, RANGE_C, vec![long(MIN), long(MIN)], page);
            assert_eq!(rows, whole, "page size {page}");
            // Full pages, then a last page that is short (or empty when 37 divides).
            let expect = 37 / page as usize + 1;
            assert_eq!(pages.len(), expect, "page size {page}");
        }
        let q = "SELECT c, d FROM c WHERE a = ? AND b = ?";
        let (rows, pages) = all_pages(&e, q, vec![bytes(b"p3"), bytes(&3i32.to_be_bytes())], 2);
        assert_eq!(rows.len(), 5);
        assert_eq!(pages.len(), 3);
        // LIMIT counts rows across pages and partitions.
        let (rows, _) = all_pages(&e, &format!("{RANGE_C} LIMIT 9"), vec![long(MIN), long(MIN)], 4);
        assert_eq!(rows, whole[..9]);
    }

    #[test]
    fn prepared_lookups_name_partition_key_markers_in_key_order() {
        let e = engine();
        let plan = |q: &str| match e.plan(q, Some("ks")).unwrap() {
            Plan::Data(p) => p,
            _ => panic!("not a data plan"),
        };
        let p = plan("SELECT v FROM c WHERE b = ? AND a = ?");
        assert_eq!(p.pk_indexes, vec![1, 0]);
        let names: Vec<&str> = p.bind.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(p.bind.columns[0].typ, CqlType::Int);
        assert_eq!(plan("SELECT v FROM c WHERE a = ? AND b = ? AND c = ?").pk_indexes, vec![0, 1]);
        assert!(plan("SELECT v FROM c WHERE a = ? AND b = 3").pk_indexes.is_empty());
        assert!(plan(RANGE_C).pk_indexes.is_empty());
        assert_eq!(plan("SELECT k FROM t WHERE k = ?").pk_indexes, vec![0]);
    }

    #[test]
    fn composite_and_clustered_queries_are_refused_like_cassandra() {
        let e = engine();
        assert_refused(
            &e,
            &[
                ("SELECT a FROM ks.c WHERE a = 'x'", "use ALLOW FILTERING"),
                ("SELECT a FROM ks.c WHERE b = ?", "use ALLOW FILTERING"),
                ("SELECT a FROM ks.c WHERE a = 'x' ALLOW FILTERING", "not supported by the test node"),
                ("SELECT a FROM ks.c WHERE token(b, a) > 0", "partition key order: a, b"),
                ("SELECT a FROM ks.c WHERE token(a) > 0", "partition key order: a, b"),
                ("SELECT token(a) FROM ks.c", "partition key order: a, b"),
                (
                    "SELECT a FROM ks.c WHERE a = 'x' AND b = 1 AND d = 'y'",
                    "PRIMARY KEY column \"d\" cannot be restricted as preceding column \"c\" is not restricted",
                ),
                ("SELECT a FROM ks.c WHERE token(a, b) > 0 AND c = 1", "use ALLOW FILTERING"),
                (
                    "SELECT a FROM ks.c WHERE a = 'x' AND b = 1 AND a = 'y'",
                    "a cannot be restricted by more than one relation",
                ),
                ("SELECT a FROM ks.c WHERE a = 'x' AND b = 'y'", "of type int"),
                ("SELECT a FROM ks.c WHERE a = 'x' AND b = 3000000000", "out of range for int"),
                (
                    "SELECT a FROM ks.c WHERE a = 'x' AND b = 1 AND token(a, b) > 0",
                    "both a normal relation and a token relation",
                ),
                ("SELECT a FROM ks.c WHERE a = 'x' AND b = 1 AND c > 1", "slices on clustering column c"),
                ("SELECT a FROM ks.c WHERE a IN ('x') AND b = 1", "IN on primary key column a"),
                ("SELECT a FROM ks.c WHERE s = 0x00", "use ALLOW FILTERING"),
                ("SELECT DISTINCT a, b, c FROM ks.c", "partition key columns and/or static columns (not c)"),
                ("SELECT DISTINCT a, b, writetime(v) FROM ks.c", "(not v)"),
                ("SELECT DISTINCT * FROM ks.c", "(not c)"),
                ("SELECT DISTINCT a FROM ks.c", "must request all the partition key columns (missing b)"),
                (
                    "SELECT DISTINCT a, b FROM ks.c WHERE a = 'x' AND b = 1 AND c = 1",
                    "SELECT DISTINCT with WHERE clause",
                ),
                ("SELECT writetime(c) FROM ks.c", "Cannot use selection function writeTime on PRIMARY KEY part c"),
                ("SELECT ttl(a) FROM ks.c", "Cannot use selection function ttl on PRIMARY KEY part a"),
                ("SELECT octet_length(v) FROM ks.c", "Unknown function 'octet_length'"),
                ("SELECT octet_length(nope) FROM ks.c", "Undefined column name nope"),
            ],
        );
        // token(a, b) requests every key column: a valid DISTINCT.
        assert!(e.plan("SELECT DISTINCT s, token(a, b) FROM ks.c WHERE token(a, b) > 0", None).is_ok());
    }

    #[test]
    fn bad_key_values_are_refused_at_execution() {
        let e = engine();
        let plan = e.plan("SELECT v FROM ks.c WHERE a = ? AND b = ?", None).unwrap();
        let conn = ConnCtx { keyspace: None, local: "127.0.0.1:9042".parse().unwrap() };
        for (values, needle) in [
            (vec![bytes(b"x"), bytes(&[0, 1])], "partition key b: Expected 4 or 0 byte int (2)"),
            (vec![bytes(b"x"), bytes(&[])], "empty int value"),
            (vec![bytes(&[0xff]), bytes(&[0, 0, 0, 1])], "String didn't validate"),
            (vec![BoundValue::Null, bytes(&[0, 0, 0, 1])], "Invalid null value for a"),
        ] {
            let params = QueryParams { values, ..QueryParams::default() };
            let got = e.execute(0, &plan, &params, &conn).err().expect("refused");
            assert!(got.message.contains(needle), "expected {needle:?} in {:?}", got.message);
        }
    }

    #[test]
    fn octet_length_exists_from_cassandra_6() {
        let q = "SELECT c, octet_length(v), octet_length(a), octet_length(s), writetime(s), ttl(s) FROM ks.c WHERE a = 'p3' AND b = 3 AND c = 0";
        for old in ["4.0.7", "5.0.2"] {
            assert_eq!(err(&engine_playing(old), q).message, "Unknown function 'octet_length'", "{old}");
        }
        let new = engine_playing("6.0.0");
        let rows = rows_of(&exec(&new, q, vec![], None, None).frame);
        assert_eq!(rows.len(), 3);
        for r in &rows {
            // v is one byte at c = 0; a is "p3"; s is one byte.
            assert_eq!((int(&r[1]), int(&r[2]), int(&r[3])), (1, 2, 1));
            assert_eq!((int(&r[4]), int(&r[5])), (1000, 60));
        }
        let nulls = rows_of(
            &exec(&new, "SELECT octet_length(v) FROM c WHERE a = 'p3' AND b = 3 AND c = 1", vec![], None, None).frame,
        );
        assert_eq!(nulls, vec![vec![None]], "null for a null value");
        let e = err(&new, "SELECT octet_length(v, a) FROM ks.c");
        assert!(e.message.contains("1 required but 2 provided"), "{}", e.message);
        assert_eq!(err(&new, "SELECT length2(v) FROM ks.c").message, "Unknown function 'length2'");
    }
}
