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
//! - Rows come in ring order. A page holds at most `page_size` rows; when a page
//!   is exactly full the node sets has_more_pages even if nothing follows (as
//!   Cassandra does), so the last page may be empty.
//! - The paging state is opaque to clients: `KT`, a version byte, the kind, the
//!   resume position (last token and key, or a row offset for system tables) and
//!   the remaining LIMIT. A paging state from another query or node version is
//!   rejected with PROTOCOL_ERROR, never misread.
//! - Prepared ids are 16 bytes derived from the keyspace and query text, so the
//!   same statement gets the same id on every connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::cql::{self, Lhs, Op, Selection, Selector, Statement, Term};
use crate::murmur3;
use crate::protocol::{
    self, opcode, put_bytes, put_int, result_kind, BoundValue, ColumnSpec, CqlError, CqlType, Metadata, QueryParams,
};
use crate::schema::{self, ColumnType, NodeInfo, SysContext, SysTable, Table};
use crate::store::{self, RowKey, Store, TableData};

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

#[derive(Debug, Clone, Copy)]
enum Output {
    Key,
    Column(usize),
    Token,
    WriteTime(usize),
    Ttl(usize),
}

#[derive(Debug, Clone)]
enum Restriction {
    /// Token bounds: (term, inclusive).
    Range {
        start: Option<(Term, bool)>,
        end: Option<(Term, bool)>,
    },
    Key(Term),
}

/// A SELECT on a fixture table.
pub struct DataPlan {
    table: Arc<TableData>,
    outputs: Vec<Output>,
    result: Metadata,
    bind: Metadata,
    pk_indexes: Vec<u16>,
    restriction: Restriction,
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
    pub rows: usize,
    /// A single-key lookup that found no row.
    pub lookup_missed: bool,
}

/// The query engine shared by all connections.
pub struct Engine {
    pub store: Store,
    pub info: NodeInfo,
    prepared: Mutex<HashMap<Vec<u8>, Arc<Plan>>>,
}

const TOKEN_BIND_NAME: &str = "partition key token";
const LIMIT_BIND_NAME: &str = "[limit]";

fn invalid(msg: impl Into<String>) -> CqlError {
    CqlError::invalid(msg)
}

impl Engine {
    pub fn new(store: Store, info: NodeInfo) -> Engine {
        Engine { store, info, prepared: Mutex::new(HashMap::new()) }
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
                plan_data(td.clone(), &sel).map(Plan::Data)
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
            for ((tok, key), row) in map.range((from, Bound::Unbounded)) {
                if end != murmur3::MIN_TOKEN && *tok > end {
                    break;
                }
                count += 1;
                bytes += key.len() as i64 + row.cells.iter().flatten().map(|c| c.len() as i64).sum::<i64>();
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

fn plan_data(td: Arc<TableData>, sel: &cql::Select) -> Result<DataPlan, CqlError> {
    let t = td.schema.clone();
    let full = format!("{}.{}", t.keyspace, t.name);
    let (pk, pk_type) = (&t.partition_key.0, t.partition_key.1);
    let undefined = |name: &str| invalid(format!("Undefined column name {name} in table {full}"));
    // Resolves a name to the key (None) or a regular column index.
    let resolve = |name: &str| -> Result<Option<usize>, CqlError> {
        if name == pk {
            Ok(None)
        } else {
            t.column_index(name).map(Some).ok_or_else(|| undefined(name))
        }
    };
    let check_token_args = |args: &[String]| -> Result<(), CqlError> {
        for a in args {
            resolve(a)?;
        }
        if args.len() != 1 || args[0] != *pk {
            return Err(invalid(format!("The token function arguments must be in the partition key order: {pk}")));
        }
        Ok(())
    };
    let regular = |func: &str, name: &str| -> Result<usize, CqlError> {
        match resolve(name)? {
            Some(i) => Ok(i),
            None => Err(invalid(format!("Cannot use selection function {func} on PRIMARY KEY part {name}"))),
        }
    };

    let mut outputs = Vec::new();
    let mut cols = Vec::new();
    let spec = |name: String, typ: CqlType| ColumnSpec { name, typ };
    match &sel.selection {
        Selection::Star => {
            for c in t.star_order() {
                match c {
                    None => {
                        outputs.push(Output::Key);
                        cols.push(spec(pk.clone(), pk_type.cql_type()));
                    }
                    Some(i) => {
                        outputs.push(Output::Column(i));
                        cols.push(spec(t.columns[i].0.clone(), t.columns[i].1.cql_type()));
                    }
                }
            }
        }
        Selection::List(list) => {
            for (s, alias) in list {
                let (out, name, typ) = match s {
                    Selector::Column(n) => match resolve(n)? {
                        None => (Output::Key, n.clone(), pk_type.cql_type()),
                        Some(i) => (Output::Column(i), n.clone(), t.columns[i].1.cql_type()),
                    },
                    Selector::Token(args) => {
                        check_token_args(args)?;
                        (Output::Token, format!("system.token({})", args.join(", ")), CqlType::Bigint)
                    }
                    Selector::WriteTime(n) => {
                        (Output::WriteTime(regular("writeTime", n)?), format!("writetime({n})"), CqlType::Bigint)
                    }
                    Selector::Ttl(n) => (Output::Ttl(regular("ttl", n)?), format!("ttl({n})"), CqlType::Int),
                };
                if sel.distinct && !matches!(out, Output::Key | Output::Token) {
                    return Err(invalid(format!(
                        "SELECT DISTINCT queries must only request partition key columns and/or static columns (not {name})"
                    )));
                }
                outputs.push(out);
                cols.push(spec(alias.clone().unwrap_or(name), typ));
            }
        }
    }
    if sel.distinct && matches!(sel.selection, Selection::Star) && !t.columns.is_empty() {
        return Err(invalid("SELECT DISTINCT queries must only request partition key columns and/or static columns"));
    }

    let mut binds: Vec<Option<ColumnSpec>> = vec![None; sel.bind_count];
    let mut pk_indexes = Vec::new();
    let mut start: Option<(Term, bool)> = None;
    let mut end: Option<(Term, bool)> = None;
    let mut key: Option<Term> = None;
    let mut token_eq = false;
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
                            "More than one restriction was found for the {which} bound on {pk}"
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
                                "{pk} cannot be restricted by more than one relation if it includes an Equal"
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
                if resolve(name)?.is_some() {
                    return Err(invalid(if sel.allow_filtering {
                        format!("filtering on regular column {name} is not supported by the test node")
                    } else {
                        "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING".to_string()
                    }));
                }
                match r.op {
                    Op::Eq => {}
                    Op::In => {
                        return Err(invalid(
                            "IN on the partition key is not supported by the test node",
                        ))
                    }
                    _ => {
                        return Err(invalid(
                            "Only EQ and IN relation are supported on the partition key (unless you use the token() function)",
                        ))
                    }
                }
                if key.is_some() {
                    return Err(invalid(format!(
                        "{pk} cannot be restricted by more than one relation if it includes an Equal"
                    )));
                }
                match (&r.rhs, pk_type) {
                    (Term::Bind(b), _) => {
                        binds[*b] = Some(spec(pk.clone(), pk_type.cql_type()));
                        pk_indexes.push(*b as u16);
                    }
                    (Term::Str(_), ColumnType::Text) | (Term::Blob(_), ColumnType::Blob) => {}
                    (other, _) => {
                        return Err(invalid(format!(
                            "Invalid constant {other:?} for \"{pk}\" of type {}",
                            pk_type.name()
                        )))
                    }
                }
                key = Some(r.rhs.clone());
            }
        }
    }
    if key.is_some() && (start.is_some() || end.is_some()) {
        return Err(invalid(format!(
            "Columns \"{pk}\" cannot be restricted by both a normal relation and a token relation"
        )));
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
    Key { pos: RowKey, remaining: Option<usize> },
    Offset { offset: usize, remaining: Option<usize> },
}

const PS_MAGIC: &[u8; 2] = b"KT";
const PS_VERSION: u8 = 1;

fn bad_paging_state() -> CqlError {
    CqlError::protocol("Invalid value for the paging state")
}

fn put_remaining(out: &mut Vec<u8>, remaining: Option<usize>) {
    out.extend_from_slice(&remaining.map_or(-1i64, |r| r as i64).to_be_bytes());
}

fn encode_key_state(pos: &RowKey, remaining: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + pos.1.len());
    out.extend_from_slice(PS_MAGIC);
    out.push(PS_VERSION);
    out.push(0);
    out.extend_from_slice(&pos.0.to_be_bytes());
    out.extend_from_slice(&(pos.1.len() as u32).to_be_bytes());
    out.extend_from_slice(&pos.1);
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
            let rem = r.long("remaining").map_err(bad)?;
            Resume::Key { pos: (token, key), remaining: (rem >= 0).then_some(rem as usize) }
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

fn encode_row(out: &mut Vec<u8>, outputs: &[Output], key: &RowKey, row: &store::StoredRow) {
    for o in outputs {
        match *o {
            Output::Key => put_bytes(out, Some(&key.1)),
            Output::Column(i) => put_bytes(out, row.cells[i].as_deref()),
            Output::Token => put_bytes(out, Some(&key.0.to_be_bytes())),
            Output::WriteTime(i) => match row.cells[i] {
                Some(_) => put_bytes(out, Some(&row.writetime.to_be_bytes())),
                None => put_bytes(out, None),
            },
            Output::Ttl(i) => match (&row.cells[i], row.ttl) {
                (Some(_), Some(ttl)) => put_bytes(out, Some(&ttl.to_be_bytes())),
                _ => put_bytes(out, None),
            },
        }
    }
}

fn run_data(stream: i16, p: &DataPlan, params: &QueryParams) -> Result<(Vec<u8>, PageInfo), CqlError> {
    let mut body = Vec::new();
    match &p.restriction {
        Restriction::Key(term) => {
            let key: Vec<u8> = match term {
                Term::Str(s) => s.as_bytes().to_vec(),
                Term::Blob(b) => b.clone(),
                Term::Bind(i) => bound_bytes(params, *i, &p.table.schema.partition_key.0)?.to_vec(),
                other => return Err(invalid(format!("invalid key {other:?}"))),
            };
            if key.is_empty() {
                return Err(invalid("Key may not be empty"));
            }
            let (pk, pk_type) = &p.table.schema.partition_key;
            pk_type.validate(&key).map_err(|e| invalid(format!("Invalid value for {pk}: {e}")))?;
            let token = murmur3::token(&key);
            let pos = (token, key);
            let map = p.table.read();
            let found = map.get(&pos);
            if let Some(row) = found {
                encode_row(&mut body, &p.outputs, &pos, row);
            }
            drop(map);
            let n = found_count(&body);
            let frame = rows_frame(stream, &p.result, None, params.skip_metadata, n, &body);
            Ok((frame, PageInfo { covered: Some((token, token)), rows: n, lookup_missed: n == 0 }))
        }
        Restriction::Range { start, end } => {
            let start = match start {
                Some((t, inc)) => Some((term_bigint(t, params)?, *inc)),
                None => None,
            };
            let end = match end {
                Some((t, inc)) => Some((term_bigint(t, params)?, *inc)),
                None => None,
            };
            let range = TokenRange::from_bounds(start, end);
            let (resume, remaining) = match &params.paging_state {
                Some(ps) => match decode_paging_state(ps)? {
                    Resume::Key { pos, remaining } => (Some(pos), remaining),
                    Resume::Offset { .. } => return Err(bad_paging_state()),
                },
                None => (None, limit_value(p.limit.as_ref(), params)?),
            };
            let page_size = page_size(params);
            let max = page_size.min(remaining.unwrap_or(usize::MAX));
            let from: Option<Bound<RowKey>> = if range.empty {
                None
            } else {
                match &resume {
                    Some(pos) => Some(Bound::Excluded(pos.clone())),
                    None => match range.lower {
                        None => Some(Bound::Unbounded),
                        Some((t, inc)) => store::lower_from_token(t, inc),
                    },
                }
            };
            let mut n = 0usize;
            let mut last: Option<RowKey> = None;
            if let Some(from) = from {
                let map = p.table.read();
                for (k, row) in map.range((from, Bound::Unbounded)) {
                    if n == max || !range.contains(k.0) {
                        break;
                    }
                    encode_row(&mut body, &p.outputs, k, row);
                    n += 1;
                    last = Some(k.clone());
                }
            }
            let remaining = remaining.map(|r| r - n);
            // Like Cassandra: a full page means "maybe more", even at the end.
            let more = page_size != usize::MAX && n == page_size && remaining != Some(0);
            let ps = match (&last, more) {
                (Some(pos), true) => Some(encode_key_state(pos, remaining)),
                _ => None,
            };
            let lo = resume.as_ref().map_or(range.first_token(), |r| r.0);
            let hi = match (&last, more) {
                (Some(pos), true) => pos.0,
                _ => range.last_token(),
            };
            let covered = (!range.empty && lo <= hi).then_some((lo, hi));
            let frame = rows_frame(stream, &p.result, ps.as_deref(), params.skip_metadata, n, &body);
            Ok((frame, PageInfo { covered, rows: n, lookup_missed: false }))
        }
    }
}

/// A lookup encodes at most one row: non-empty body means one row.
fn found_count(body: &[u8]) -> usize {
    usize::from(!body.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Row;

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
        let ps = encode_key_state(&(42, b"k".to_vec()), Some(3));
        match decode_paging_state(&ps).unwrap() {
            Resume::Key { pos, remaining } => {
                assert_eq!(pos, (42, b"k".to_vec()));
                assert_eq!(remaining, Some(3));
            }
            _ => panic!("wrong kind"),
        }
        let ps = encode_offset_state(7, None);
        assert!(matches!(decode_paging_state(&ps).unwrap(), Resume::Offset { offset: 7, remaining: None }));
        for bad in [&b""[..], b"XX\x01\x00", &ps[..ps.len() - 1]] {
            assert_eq!(decode_paging_state(bad).err().unwrap().code, protocol::code::PROTOCOL_ERROR);
        }
    }

    fn engine() -> Engine {
        let store = Store::new(
            vec![Table::new("ks", "t", "k", ColumnType::Text)
                .column("v", ColumnType::Blob)
                .column("n", ColumnType::Bigint)],
            1000,
        )
        .unwrap();
        for i in 0..50 {
            store.insert("ks.t", Row::new(format!("key{i}")).blob("v", vec![i as u8])).unwrap();
        }
        Engine::new(
            store,
            NodeInfo { cluster_name: "c".into(), host_id: [0; 16], schema_version: [0; 16], tokens: vec![0] },
        )
    }

    fn err(e: &Engine, q: &str) -> CqlError {
        match e.plan(q, None) {
            Ok(_) => panic!("planned: {q}"),
            Err(err) => err,
        }
    }

    #[test]
    fn invalid_queries_are_refused_like_cassandra() {
        let e = engine();
        for (q, needle) in [
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
        ] {
            let got = err(&e, q);
            assert!(got.message.contains(needle), "{q}: expected {needle:?} in {:?}", got.message);
        }
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
}
