//! Key mapping: the rules that turn a source store's key into the comparison key it should have on the
//! other side (e.g. the Cassandra partition key -> the S3 object key the migration wrote), and the
//! validations that reject keys the migration could never have written.
//!
//! Used by keyrecon-list-cassandra (`--key-map`) and meant for keyrecon-sort on plain key dumps: parse
//! once with [`KeyMap::parse`] (or [`KeyMap::from_arg`] for `@FILE`), then call [`KeyMap::map_into`] per
//! key. The mapped key is the comparison key; callers keep the original as the record's `origin`.
//!
//! # Rule language
//! ```text
//! rules  := rule ((";" | newline) rule)*        blank lines and lines starting with # are ignored
//! rule   := ["if" cond "then"] action
//! cond   := ["not"] atom ("and" ["not"] atom)*
//! atom   := "length" ("=="|"!="|"<"|"<="|">"|">=") N     length in bytes
//!         | "starts-with" S | "ends-with" S | "contains" S | "matches" REGEX
//! action := "strip-prefix" S | "strip-suffix" S           remove S if present (no-op otherwise)
//!         | "add-prefix" S | "add-suffix" S
//!         | "replace" REGEX TEMPLATE                       first match; $1, ${name} in TEMPLATE
//!         | "require-prefix" S | "require-suffix" S       reject the key if it does not have S
//!         | "require" REGEX                                reject the key unless REGEX matches
//!         | "reject" REASON                                reject (use with "if")
//!         | "stop"                                         accept the key as it is now
//! S      := bare-word | "double quoted, \" and \\ escaped" | 'single quoted, raw'
//! ```
//! Rules run top to bottom on the *current* key: a condition sees what earlier rules made of it.
//! Regexes are `regex-lite` syntax and match UTF-8 keys only; a non-UTF-8 key that reaches a regex rule
//! is rejected with that reason. A key mapped to nothing is rejected.
//!
//! Example (the seed migration's rules):
//! ```text
//! if length == 21 and ends-with _1 then strip-suffix _1
//! if contains /d/ then replace '^(\w+)/d/(.*)$' 'd/$1/$2'
//! require-prefix t01
//! ```
//!
//! Hot path: `map_into` copies the key into a caller-owned buffer and edits it in place; it allocates
//! only for regex replacements and for the reason of a rejection.

use std::borrow::Cow;

/// A parsed rule set. Cheap to share between threads (`Sync`).
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    rules: Vec<Rule>,
    source: String,
}

#[derive(Clone, Debug)]
struct Rule {
    cond: Vec<(bool, Atom)>,
    action: Action,
    line: usize,
}

#[derive(Clone, Debug)]
enum Atom {
    Length(Cmp, usize),
    StartsWith(Vec<u8>),
    EndsWith(Vec<u8>),
    Contains(Vec<u8>),
    Matches(regex_lite::Regex),
}

#[derive(Clone, Copy, Debug)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
enum Action {
    StripPrefix(Vec<u8>),
    StripSuffix(Vec<u8>),
    AddPrefix(Vec<u8>),
    AddSuffix(Vec<u8>),
    Replace(regex_lite::Regex, String),
    RequirePrefix(Vec<u8>),
    RequireSuffix(Vec<u8>),
    Require(regex_lite::Regex),
    Reject(String),
    Stop,
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Sep(usize),
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, String> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut it = text.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            '\n' | ';' => {
                it.next();
                out.push((line, Tok::Sep(line)));
                if c == '\n' {
                    line += 1;
                }
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '#' if out.last().is_none_or(|(_, t)| matches!(t, Tok::Sep(_))) => {
                while it.peek().is_some_and(|&c| c != '\n') {
                    it.next();
                }
            }
            '"' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err(format!("line {line}: unterminated \"string\"")),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('"') => s.push('"'),
                            Some('\\') => s.push('\\'),
                            Some(o) => {
                                s.push('\\');
                                s.push(o);
                            }
                            None => return Err(format!("line {line}: unterminated \"string\"")),
                        },
                        Some('\n') => return Err(format!("line {line}: newline in \"string\"")),
                        Some(o) => s.push(o),
                    }
                }
                out.push((line, Tok::Word(s)));
            }
            '\'' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None | Some('\n') => return Err(format!("line {line}: unterminated 'string'")),
                        Some('\'') => break,
                        Some(o) => s.push(o),
                    }
                }
                out.push((line, Tok::Word(s)));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_whitespace() || c == ';' {
                        break;
                    }
                    s.push(c);
                    it.next();
                }
                out.push((line, Tok::Word(s)));
            }
        }
    }
    Ok(out)
}

fn regex(s: &str, line: usize) -> Result<regex_lite::Regex, String> {
    regex_lite::Regex::new(s).map_err(|e| format!("line {line}: bad regex {s:?}: {e}"))
}

impl KeyMap {
    /// Reads `@FILE` as a rules file, anything else as inline rules (`;` separates rules).
    pub fn from_arg(arg: &str) -> Result<KeyMap, String> {
        match arg.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                KeyMap::parse(&text).map_err(|e| format!("{path}: {e}"))
            }
            None => KeyMap::parse(arg),
        }
    }

    /// Parses a rule set (see the module doc for the language).
    pub fn parse(text: &str) -> Result<KeyMap, String> {
        let toks = tokenize(text)?;
        let mut rules = Vec::new();
        for stmt in toks.split(|(_, t)| matches!(t, Tok::Sep(_))) {
            if stmt.is_empty() {
                continue;
            }
            let line = stmt[0].0;
            let words: Vec<&str> = stmt
                .iter()
                .map(|(_, t)| match t {
                    Tok::Word(w) => w.as_str(),
                    Tok::Sep(_) => unreachable!(),
                })
                .collect();
            rules.push(parse_rule(&words, line)?);
        }
        Ok(KeyMap { rules, source: text.to_string() })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules as given (for manifests and summaries).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Maps `key` into `out` (cleared first). `Err(reason)` if a rule rejects the key; `out` then holds
    /// whatever the rules had made of it so far.
    pub fn map_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<(), Cow<'static, str>> {
        out.clear();
        out.extend_from_slice(key);
        for r in &self.rules {
            if !r.cond.iter().all(|(neg, a)| a.test(out).map(|t| t != *neg).unwrap_or(false)) {
                // A regex condition on a non-UTF-8 key is a rejection, not "false".
                if let Some((_, Atom::Matches(_))) =
                    r.cond.iter().find(|(_, a)| matches!(a, Atom::Matches(_)) && a.test(out).is_none())
                {
                    return Err(Cow::Borrowed("key is not UTF-8 (regex rules match UTF-8 only)"));
                }
                continue;
            }
            match &r.action {
                Action::StripPrefix(p) => {
                    if out.starts_with(p) {
                        out.drain(..p.len());
                    }
                }
                Action::StripSuffix(s) => {
                    if out.ends_with(s) {
                        out.truncate(out.len() - s.len());
                    }
                }
                Action::AddPrefix(p) => {
                    out.splice(0..0, p.iter().copied());
                }
                Action::AddSuffix(s) => out.extend_from_slice(s),
                Action::Replace(re, tmpl) => {
                    let s = std::str::from_utf8(out)
                        .map_err(|_| Cow::Borrowed("key is not UTF-8 (regex rules match UTF-8 only)"))?;
                    if let Cow::Owned(new) = re.replace(s, tmpl.as_str()) {
                        *out = new.into_bytes();
                    }
                }
                Action::RequirePrefix(p) => {
                    if !out.starts_with(p) {
                        return Err(Cow::Owned(format!(
                            "rule {}: does not start with required prefix {:?}",
                            r.line,
                            String::from_utf8_lossy(p)
                        )));
                    }
                }
                Action::RequireSuffix(s) => {
                    if !out.ends_with(s) {
                        return Err(Cow::Owned(format!(
                            "rule {}: does not end with required suffix {:?}",
                            r.line,
                            String::from_utf8_lossy(s)
                        )));
                    }
                }
                Action::Require(re) => {
                    let s = std::str::from_utf8(out)
                        .map_err(|_| Cow::Borrowed("key is not UTF-8 (regex rules match UTF-8 only)"))?;
                    if !re.is_match(s) {
                        return Err(Cow::Owned(format!(
                            "rule {}: does not match required pattern {:?}",
                            r.line,
                            re.as_str()
                        )));
                    }
                }
                Action::Reject(reason) => return Err(Cow::Owned(format!("rule {}: {reason}", r.line))),
                Action::Stop => break,
            }
        }
        if out.is_empty() {
            return Err(Cow::Borrowed("mapped key is empty"));
        }
        Ok(())
    }

    /// Convenience for callers off the hot path: the mapped key or the reason it was rejected.
    pub fn map(&self, key: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.map_into(key, &mut out).map_err(Cow::into_owned)?;
        Ok(out)
    }
}

impl Atom {
    /// `None`: cannot be evaluated (regex on a non-UTF-8 key).
    fn test(&self, key: &[u8]) -> Option<bool> {
        Some(match self {
            Atom::Length(c, n) => {
                let l = key.len();
                match c {
                    Cmp::Eq => l == *n,
                    Cmp::Ne => l != *n,
                    Cmp::Lt => l < *n,
                    Cmp::Le => l <= *n,
                    Cmp::Gt => l > *n,
                    Cmp::Ge => l >= *n,
                }
            }
            Atom::StartsWith(p) => key.starts_with(p),
            Atom::EndsWith(s) => key.ends_with(s),
            Atom::Contains(s) => memchr::memmem::find(key, s).is_some(),
            Atom::Matches(re) => re.is_match(std::str::from_utf8(key).ok()?),
        })
    }
}

fn parse_rule(words: &[&str], line: usize) -> Result<Rule, String> {
    let mut cond = Vec::new();
    let mut rest = words;
    if words.first() == Some(&"if") {
        let then =
            words.iter().position(|w| *w == "then").ok_or_else(|| format!("line {line}: `if` without `then`"))?;
        let mut c = &words[1..then];
        if c.is_empty() {
            return Err(format!("line {line}: `if` without a condition"));
        }
        loop {
            let neg = c.first() == Some(&"not");
            if neg {
                c = &c[1..];
            }
            let (atom, used) = parse_atom(c, line)?;
            cond.push((neg, atom));
            c = &c[used..];
            match c.first() {
                None => break,
                Some(&"and") => c = &c[1..],
                Some(w) => return Err(format!("line {line}: expected `and` or `then`, found {w:?}")),
            }
        }
        rest = &words[then + 1..];
    }
    let arg = |i: usize, what: &str| -> Result<&str, String> {
        rest.get(i).copied().ok_or_else(|| format!("line {line}: {} needs {what}", rest[0]))
    };
    let b = |s: &str| s.as_bytes().to_vec();
    let (action, n) = match rest.first().copied() {
        None => return Err(format!("line {line}: missing action after `then`")),
        Some("strip-prefix") => (Action::StripPrefix(b(arg(1, "a prefix")?)), 2),
        Some("strip-suffix") => (Action::StripSuffix(b(arg(1, "a suffix")?)), 2),
        Some("add-prefix") => (Action::AddPrefix(b(arg(1, "a prefix")?)), 2),
        Some("add-suffix") => (Action::AddSuffix(b(arg(1, "a suffix")?)), 2),
        Some("replace") => (Action::Replace(regex(arg(1, "a regex and a template")?, line)?, arg(2, "a template")?.to_string()), 3),
        Some("require-prefix") => (Action::RequirePrefix(b(arg(1, "a prefix")?)), 2),
        Some("require-suffix") => (Action::RequireSuffix(b(arg(1, "a suffix")?)), 2),
        Some("require") => (Action::Require(regex(arg(1, "a regex")?, line)?), 2),
        Some("reject") => (Action::Reject(if rest.len() > 1 { rest[1..].join(" ") } else { "rejected by rule".into() }), rest.len().max(1)),
        Some("stop") => (Action::Stop, 1),
        Some(w) => {
            return Err(format!(
                "line {line}: unknown action {w:?} (strip-prefix, strip-suffix, add-prefix, add-suffix, replace, require-prefix, require-suffix, require, reject, stop)"
            ))
        }
    };
    if rest.len() > n {
        return Err(format!("line {line}: unexpected {:?} after {}", rest[n], rest[0]));
    }
    Ok(Rule { cond, action, line })
}

fn parse_atom(c: &[&str], line: usize) -> Result<(Atom, usize), String> {
    let arg = |i: usize| c.get(i).copied().ok_or_else(|| format!("line {line}: incomplete condition"));
    let b = |s: &str| s.as_bytes().to_vec();
    Ok(match c.first().copied() {
        Some("length") => {
            let op = match arg(1)? {
                "==" | "=" | "is" => Cmp::Eq,
                "!=" => Cmp::Ne,
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                o => return Err(format!("line {line}: unknown comparison {o:?} (==, !=, <, <=, >, >=)")),
            };
            let n = arg(2)?.parse().map_err(|_| format!("line {line}: length needs a number, got {:?}", c[2]))?;
            (Atom::Length(op, n), 3)
        }
        Some("starts-with") => (Atom::StartsWith(b(arg(1)?)), 2),
        Some("ends-with") => (Atom::EndsWith(b(arg(1)?)), 2),
        Some("contains") => (Atom::Contains(b(arg(1)?)), 2),
        Some("matches") => (Atom::Matches(regex(arg(1)?, line)?), 2),
        Some(w) => {
            return Err(format!(
                "line {line}: unknown condition {w:?} (length, starts-with, ends-with, contains, matches)"
            ))
        }
        None => return Err(format!("line {line}: missing condition")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rules: &str, key: &str) -> Result<String, String> {
        KeyMap::parse(rules).unwrap().map(key.as_bytes()).map(|k| String::from_utf8(k).unwrap())
    }

    #[test]
    fn seed_migration_rules() {
        let rules = "if length == 21 and ends-with _1 then strip-suffix _1\n\
                     # custom keys\n\
                     if contains /d/ then replace '^(\\w+)/d/(.*)$' 'd/$1/$2'\n\
                     require-prefix t01";
        assert_eq!(m(rules, "t01aaaaaaaaaaaaaaaa_1").unwrap(), "t01aaaaaaaaaaaaaaaa");
        // 22 bytes: the conditional does not fire.
        assert_eq!(m(rules, "t01aaaaaaaaaaaaaaaaa_1").unwrap(), "t01aaaaaaaaaaaaaaaaa_1");
        assert!(m(rules, "x01aaaaaaaaaaaaaaaa_1").unwrap_err().contains("required prefix \"t01\""));
        assert!(m(rules, "t01x/d/rest").unwrap_err().contains("required prefix"));
        assert_eq!(
            m("if contains /d/ then replace '^(\\w+)/d/(.*)$' 'd/$1/$2'", "t01x/d/rest").unwrap(),
            "d/t01x/rest"
        );
    }

    #[test]
    fn table_of_actions() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("strip-prefix ab", "abc", Ok("c")),
            ("strip-prefix zz", "abc", Ok("abc")),
            ("strip-suffix bc", "abc", Ok("a")),
            ("add-prefix \"x y\"; add-suffix '\\n'", "k", Ok("x yk\\n")),
            ("replace '(\\d+)' '<$1>'", "a12b34", Ok("a<12>b34")),
            ("replace '(?P<n>\\d+)' '${n}x'", "a12", Ok("a12x")),
            ("require '^[a-z]+$'", "abc", Ok("abc")),
            ("require '^[a-z]+$'", "ab1", Err("required pattern")),
            ("require-suffix .jpg", "a.png", Err("required suffix")),
            ("if length > 3 then reject too long", "abcd", Err("rule 1: too long")),
            ("if length > 3 then reject too long", "abc", Ok("abc")),
            ("if not starts-with t then stop; add-prefix x", "abc", Ok("abc")),
            ("if not starts-with t then stop; add-prefix x", "tbc", Ok("xtbc")),
            ("if matches '^a' and length <= 3 then add-suffix !", "abc", Ok("abc!")),
            ("strip-prefix abc", "abc", Err("empty")),
            ("", "abc", Ok("abc")),
            ("# only a comment\n\n", "abc", Ok("abc")),
            ("add-prefix \"q\\\"\"", "k", Ok("q\"k")),
        ];
        for (rules, key, want) in cases {
            let got = m(rules, key);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{rules} on {key}"),
                Err(w) => assert!(got.as_ref().is_err_and(|e| e.contains(w)), "{rules} on {key}: {got:?}"),
            }
        }
    }

    #[test]
    fn non_utf8_keys_are_rejected_by_regex_rules_only() {
        let km = KeyMap::parse("strip-prefix \u{1}").unwrap();
        assert_eq!(km.map(b"\xff\xfe").unwrap(), b"\xff\xfe");
        let km = KeyMap::parse("replace a b").unwrap();
        assert!(km.map(b"\xffa").unwrap_err().contains("UTF-8"));
        let km = KeyMap::parse("if matches a then stop").unwrap();
        assert!(km.map(b"\xffa").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn parse_errors_say_where() {
        for (rules, want) in [
            ("strip-prefix", "needs a prefix"),
            ("if length == 3 strip-prefix a", "without `then`"),
            ("frobnicate x", "unknown action"),
            ("ok; if length ~ 3 then stop", "line 1: unknown action"),
            ("stop\nif length ~ 3 then stop", "line 2: unknown comparison"),
            ("replace '(' x", "bad regex"),
            ("add-prefix \"abc", "unterminated"),
            ("strip-prefix a b", "unexpected"),
        ] {
            let e = KeyMap::parse(rules).unwrap_err();
            assert!(e.contains(want), "{rules}: {e}");
        }
    }
}
