//! A small hand-written parser for the CQL subset the test node serves.
//!
//! Role: turn a query string into a [`Statement`]. Deciding whether a parsed
//! SELECT is *valid* for a table (columns exist, restrictions are ones Cassandra
//! allows) is the executor's job, not the parser's.
//!
//! Grammar (keywords are case-insensitive; unquoted identifiers are lower-cased,
//! `"Quoted"` ones keep their case and use `""` for a quote):
//!
//! ```text
//! statement  := (select | use) [';']
//! use        := USE ident
//! select     := SELECT [DISTINCT] selection FROM table
//!               [WHERE relation (AND relation)*]
//!               [LIMIT term] [ALLOW FILTERING]
//! selection  := '*' | selector [AS ident] (',' selector [AS ident])*
//! selector   := ident
//!             | TOKEN '(' ident (',' ident)* ')'
//!             | WRITETIME '(' ident ')'
//!             | TTL '(' ident ')'
//!             | ident '(' [ident (',' ident)*] ')'      -- any other function
//! table      := ident ['.' ident]
//! relation   := lhs op term
//!             | ident IN ('?' | '(' term (',' term)* ')')
//! lhs        := ident | TOKEN '(' ident (',' ident)* ')'
//! op         := '=' | '<' | '<=' | '>' | '>='
//! term       := '?' | 'string' | integer | 0xHEX | uuid | TRUE | FALSE
//! ```
//!
//! Invariants: which functions exist is the executor's question (it depends on
//! the Cassandra version the node plays), so the parser accepts any call.
//! Bind markers (`?`) are numbered 0.. in textual order, which is the
//! order of values in QUERY/EXECUTE; named markers (`:name`) are not supported.
//! Errors are SYNTAX_ERROR [`CqlError`]s that quote the offending input.

use crate::protocol::CqlError;

/// A parsed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Select(Select),
    Use(String),
}

/// A parsed SELECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    pub distinct: bool,
    pub selection: Selection,
    pub keyspace: Option<String>,
    pub table: String,
    pub relations: Vec<Relation>,
    pub limit: Option<Term>,
    pub allow_filtering: bool,
    /// Number of `?` markers in the statement.
    pub bind_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Star,
    /// Selectors with their optional `AS` alias.
    List(Vec<(Selector, Option<String>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Column(String),
    Token(Vec<String>),
    WriteTime(String),
    Ttl(String),
    /// Any other function call: name (lower-cased unless quoted) and column
    /// arguments.
    Call(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub lhs: Lhs,
    pub op: Op,
    pub rhs: Term,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lhs {
    Column(String),
    Token(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The n-th bind marker of the statement.
    Bind(usize),
    Str(String),
    Int(i128),
    Blob(Vec<u8>),
    Uuid([u8; 16]),
    Bool(bool),
    List(Vec<Term>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Identifier or keyword; `quoted` identifiers are never keywords.
    Ident {
        text: String,
        quoted: bool,
    },
    Str(String),
    Int(i128),
    Hex(Vec<u8>),
    Uuid([u8; 16]),
    Sym(&'static str),
}

/// A UUID literal (`8-4-4-4-12` hex digits) at the start of `b`.
fn uuid_literal(b: &[u8]) -> Option<[u8; 16]> {
    let text = b.get(..36)?;
    if b.get(36).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        return None;
    }
    let mut hex = Vec::with_capacity(32);
    for (i, c) in text.iter().enumerate() {
        match i {
            8 | 13 | 18 | 23 if *c == b'-' => {}
            8 | 13 | 18 | 23 => return None,
            _ if c.is_ascii_hexdigit() => hex.push(*c),
            _ => return None,
        }
    }
    let mut u = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        u[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(u)
}

fn lex(q: &str) -> Result<Vec<Tok>, CqlError> {
    let b = q.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Comments: `-- ...` and `// ...` to end of line.
        if (c == b'-' && b.get(i + 1) == Some(&b'-')) || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        // Before numbers and identifiers, which a UUID may start like.
        if let Some(u) = uuid_literal(&b[i..]) {
            out.push(Tok::Uuid(u));
            i += 36;
            continue;
        }
        if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
            let start = i + 2;
            let mut j = start;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            let hex = &q[start..j];
            if hex.len() & 1 == 1 {
                return Err(CqlError::syntax(format!("odd number of hex digits in blob literal 0x{hex}")));
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).expect("hex digits"))
                .collect();
            out.push(Tok::Hex(bytes));
            i = j;
            continue;
        }
        if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let text = &q[start..i];
            let v: i128 =
                text.parse().map_err(|_| CqlError::syntax(format!("integer literal {text} is out of range")))?;
            out.push(Tok::Int(v));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident { text: q[start..i].to_ascii_lowercase(), quoted: false });
            continue;
        }
        if c == b'\'' || c == b'"' {
            let quote = c;
            let mut s = Vec::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(CqlError::syntax(format!(
                            "unterminated {} in: {q}",
                            if quote == b'\'' { "string" } else { "quoted identifier" }
                        )))
                    }
                    Some(&ch) if ch == quote => {
                        if b.get(i + 1) == Some(&quote) {
                            s.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            // Slicing a &str between quote bytes keeps UTF-8 valid.
            let s = String::from_utf8(s).expect("sliced between ASCII quotes");
            out.push(if quote == b'\'' { Tok::Str(s) } else { Tok::Ident { text: s, quoted: true } });
            continue;
        }
        let two = q.get(i..i + 2);
        let sym: &'static str = match (c, two) {
            (_, Some("<=")) => "<=",
            (_, Some(">=")) => ">=",
            (b'<', _) => "<",
            (b'>', _) => ">",
            (b'=', _) => "=",
            (b'(', _) => "(",
            (b')', _) => ")",
            (b',', _) => ",",
            (b'.', _) => ".",
            (b'*', _) => "*",
            (b'?', _) => "?",
            (b';', _) => ";",
            _ => {
                let ch = q[i..].chars().next().expect("non-empty");
                return Err(CqlError::syntax(format!("line 1:{i} unexpected character {ch:?} in: {q}")));
            }
        };
        i += sym.len();
        out.push(Tok::Sym(sym));
    }
    Ok(out)
}

struct Parser<'q> {
    query: &'q str,
    toks: Vec<Tok>,
    pos: usize,
    binds: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn err(&self, expected: &str) -> CqlError {
        let found = match self.peek() {
            None => "end of input".to_string(),
            Some(t) => format!("{t:?}"),
        };
        CqlError::syntax(format!("line 1: expected {expected}, found {found} in: {}", self.query))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident { text, quoted: false }) if text == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), CqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err(&kw.to_ascii_uppercase()))
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), CqlError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.err(&format!("'{s}'")))
        }
    }

    fn ident(&mut self) -> Result<String, CqlError> {
        match self.peek() {
            Some(Tok::Ident { text, .. }) => {
                let t = text.clone();
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.err("an identifier")),
        }
    }

    /// `'(' ident (',' ident)* ')'`
    fn ident_list(&mut self) -> Result<Vec<String>, CqlError> {
        self.expect_sym("(")?;
        let mut v = vec![self.ident()?];
        while self.eat_sym(",") {
            v.push(self.ident()?);
        }
        self.expect_sym(")")?;
        Ok(v)
    }

    /// Is the next token `name (` — a function call rather than a column?
    fn is_call(&self, name: &str) -> bool {
        self.is_kw(name) && matches!(self.toks.get(self.pos + 1), Some(Tok::Sym("(")))
    }

    fn selector(&mut self) -> Result<Selector, CqlError> {
        if self.is_call("token") {
            self.pos += 1;
            return Ok(Selector::Token(self.ident_list()?));
        }
        for (name, make) in [("writetime", Selector::WriteTime as fn(String) -> Selector), ("ttl", Selector::Ttl)] {
            if self.is_call(name) {
                self.pos += 1;
                let args = self.ident_list()?;
                if args.len() != 1 {
                    return Err(CqlError::syntax(format!(
                        "{name}() takes exactly one column, got {} in: {}",
                        args.len(),
                        self.query
                    )));
                }
                return Ok(make(args.into_iter().next().expect("one arg")));
            }
        }
        let name = self.ident()?;
        if self.eat_sym("(") {
            let mut args = Vec::new();
            if !self.eat_sym(")") {
                args.push(self.ident()?);
                while self.eat_sym(",") {
                    args.push(self.ident()?);
                }
                self.expect_sym(")")?;
            }
            return Ok(Selector::Call(name, args));
        }
        Ok(Selector::Column(name))
    }

    fn term(&mut self) -> Result<Term, CqlError> {
        let t = match self.peek() {
            Some(Tok::Sym("?")) => {
                let n = self.binds;
                self.binds += 1;
                Term::Bind(n)
            }
            Some(Tok::Str(s)) => Term::Str(s.clone()),
            Some(Tok::Int(v)) => Term::Int(*v),
            Some(Tok::Hex(b)) => Term::Blob(b.clone()),
            Some(Tok::Uuid(u)) => Term::Uuid(*u),
            Some(Tok::Ident { text, quoted: false }) if text == "true" || text == "false" => Term::Bool(text == "true"),
            _ => return Err(self.err("a literal or '?'")),
        };
        self.pos += 1;
        Ok(t)
    }

    fn relation(&mut self) -> Result<Relation, CqlError> {
        let lhs = if self.is_call("token") {
            self.pos += 1;
            Lhs::Token(self.ident_list()?)
        } else {
            Lhs::Column(self.ident()?)
        };
        if self.eat_kw("in") {
            let rhs = if self.eat_sym("(") {
                let mut v = vec![self.term()?];
                while self.eat_sym(",") {
                    v.push(self.term()?);
                }
                self.expect_sym(")")?;
                Term::List(v)
            } else {
                self.term()?
            };
            return Ok(Relation { lhs, op: Op::In, rhs });
        }
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            _ => return Err(self.err("a comparison operator")),
        };
        self.pos += 1;
        let rhs = self.term()?;
        Ok(Relation { lhs, op, rhs })
    }

    fn select(&mut self) -> Result<Select, CqlError> {
        let distinct = self.eat_kw("distinct");
        let selection = if self.eat_sym("*") {
            Selection::Star
        } else {
            let mut v = Vec::new();
            loop {
                let s = self.selector()?;
                let alias = if self.eat_kw("as") { Some(self.ident()?) } else { None };
                v.push((s, alias));
                if !self.eat_sym(",") {
                    break;
                }
            }
            Selection::List(v)
        };
        self.expect_kw("from")?;
        let first = self.ident()?;
        let (keyspace, table) = if self.eat_sym(".") { (Some(first), self.ident()?) } else { (None, first) };
        let mut relations = Vec::new();
        if self.eat_kw("where") {
            relations.push(self.relation()?);
            while self.eat_kw("and") {
                relations.push(self.relation()?);
            }
        }
        let limit = if self.eat_kw("limit") { Some(self.term()?) } else { None };
        let allow_filtering = if self.eat_kw("allow") {
            self.expect_kw("filtering")?;
            true
        } else {
            false
        };
        Ok(Select { distinct, selection, keyspace, table, relations, limit, allow_filtering, bind_count: 0 })
    }
}

/// Parses one statement of the supported subset.
pub fn parse(query: &str) -> Result<Statement, CqlError> {
    let toks = lex(query)?;
    let mut p = Parser { query, toks, pos: 0, binds: 0 };
    let stmt = if p.eat_kw("select") {
        let mut s = p.select()?;
        s.bind_count = p.binds;
        Statement::Select(s)
    } else if p.eat_kw("use") {
        Statement::Use(p.ident()?)
    } else {
        return Err(CqlError::syntax(format!(
            "unsupported statement (the test node serves SELECT and USE only): {query}"
        )));
    };
    p.eat_sym(";");
    if p.peek().is_some() {
        return Err(p.err("end of statement"));
    }
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code;

    fn select(q: &str) -> Select {
        match parse(q).unwrap() {
            Statement::Select(s) => s,
            other => panic!("not a select: {other:?}"),
        }
    }

    #[test]
    fn token_range_scan() {
        let s = select("SELECT k, token(k), writetime(v) FROM ks.t WHERE token(k) > ? AND token(k) <= ?");
        assert_eq!(s.keyspace.as_deref(), Some("ks"));
        assert_eq!(s.table, "t");
        assert_eq!(
            s.selection,
            Selection::List(vec![
                (Selector::Column("k".into()), None),
                (Selector::Token(vec!["k".into()]), None),
                (Selector::WriteTime("v".into()), None),
            ])
        );
        assert_eq!(
            s.relations,
            vec![
                Relation { lhs: Lhs::Token(vec!["k".into()]), op: Op::Gt, rhs: Term::Bind(0) },
                Relation { lhs: Lhs::Token(vec!["k".into()]), op: Op::Le, rhs: Term::Bind(1) },
            ]
        );
        assert_eq!(s.bind_count, 2);
    }

    #[test]
    fn literals_limit_and_case() {
        let s = select(
            "select DISTINCT \"Key\" AS x FROM T where TOKEN(\"Key\") >= -9223372036854775808 and token(\"Key\") < 10 LIMIT 5 ALLOW FILTERING;",
        );
        assert!(s.distinct && s.allow_filtering);
        assert_eq!(s.table, "t");
        assert_eq!(s.keyspace, None);
        assert_eq!(s.selection, Selection::List(vec![(Selector::Column("Key".into()), Some("x".into()))]));
        assert_eq!(s.relations[0].rhs, Term::Int(i64::MIN as i128));
        assert_eq!(s.relations[1].op, Op::Lt);
        assert_eq!(s.limit, Some(Term::Int(5)));
    }

    #[test]
    fn strings_blobs_and_in() {
        let s = select(
            "SELECT * FROM system.local WHERE key='lo''cal' AND b = 0xCAFE AND ks IN ? AND x IN ('a', 'b') LIMIT ?",
        );
        assert_eq!(s.selection, Selection::Star);
        assert_eq!(s.relations[0].rhs, Term::Str("lo'cal".into()));
        assert_eq!(s.relations[1].rhs, Term::Blob(vec![0xca, 0xfe]));
        assert_eq!(s.relations[2].op, Op::In);
        assert_eq!(s.relations[2].rhs, Term::Bind(0));
        assert_eq!(s.relations[3].rhs, Term::List(vec![Term::Str("a".into()), Term::Str("b".into())]));
        assert_eq!(s.limit, Some(Term::Bind(1)));
    }

    #[test]
    fn ttl_and_a_column_named_token() {
        let s = select("SELECT ttl(v), token FROM t");
        assert_eq!(
            s.selection,
            Selection::List(vec![(Selector::Ttl("v".into()), None), (Selector::Column("token".into()), None),])
        );
    }

    #[test]
    fn composite_tokens_calls_and_uuids() {
        let s = select(
            "SELECT DISTINCT a, b, token(a, b), octet_length(v), now() FROM ks.t \
             WHERE a = 123e4567-e89b-12d3-a456-426614174000 AND b = ? AND token(a, b) > ?",
        );
        assert_eq!(
            s.selection,
            Selection::List(vec![
                (Selector::Column("a".into()), None),
                (Selector::Column("b".into()), None),
                (Selector::Token(vec!["a".into(), "b".into()]), None),
                (Selector::Call("octet_length".into(), vec!["v".into()]), None),
                (Selector::Call("now".into(), vec![]), None),
            ])
        );
        let mut u = [0u8; 16];
        u.copy_from_slice(&[
            0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00,
        ]);
        assert_eq!(s.relations[0].rhs, Term::Uuid(u));
        assert_eq!(s.relations[1].rhs, Term::Bind(0));
        assert_eq!(s.relations[2].lhs, Lhs::Token(vec!["a".into(), "b".into()]));
        // Not a UUID: a number followed by an identifier stays a syntax error.
        assert_eq!(parse("SELECT k FROM t WHERE k = 123e4567").unwrap_err().code, code::SYNTAX_ERROR);
    }

    #[test]
    fn use_statement() {
        assert_eq!(parse("USE \"MyKs\"").unwrap(), Statement::Use("MyKs".into()));
        assert_eq!(parse("use ks;").unwrap(), Statement::Use("ks".into()));
    }

    #[test]
    fn errors_are_syntax_errors() {
        for q in [
            "INSERT INTO t (k) VALUES (1)",
            "SELECT FROM t",
            "SELECT k FROM t WHERE",
            "SELECT k FROM t WHERE k ~ 1",
            "SELECT k FROM t garbage",
            "SELECT k FROM t WHERE k = 'unterminated",
            "SELECT k FROM t WHERE b = 0xabc",
            "SELECT writetime(a, b) FROM t",
            "",
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.code, code::SYNTAX_ERROR, "{q}: {e}");
        }
    }
}
