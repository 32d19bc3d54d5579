//! Outcome files of a repair, rendered from the journal's final records (one row per key, keys in
//! byte order), so they are exact even across kill -9 and `--resume`. [`write`] streams them from the
//! journal's sorted key states ([`super::journal::states`]); [`Writer`] writes rows as they come (the
//! fleet report, `queue::report`, writes through it too), so nothing is held per key:
//!
//! | file | columns |
//! |---|---|
//! | `ok.csv` (`would-copy.csv` with `--dry-run`) | key, origin, target_key, size, table, md5, content_type, parts, attempts, note |
//! | `not-found.csv` | key, origin, tables (the tables tried) |
//! | `failed.csv` | key, origin, stage (key, fetch, head, put), attempts, error (the last one) |
//! | `exists.csv` | key, origin, outcome (`exists`: same size, `differ`: other size), existing_size, size |
//!
//! `origin` is empty when the Cassandra key is the key itself.

use super::journal::{Done, KeyStates, Outcome};
use crate::csvout::CsvOut;
use crate::error::{Error, Result};
use crate::merge::SortedCursor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub not_found: u64,
    pub failed: u64,
    pub exists: u64,
    pub differ: u64,
}

impl Counts {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::NotFound => self.not_found += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Exists => self.exists += 1,
            Outcome::Differ => self.differ += 1,
        }
    }
    pub fn total(&self) -> u64 {
        self.ok + self.not_found + self.failed + self.exists + self.differ
    }
    /// 0: every key ok/exists; 1: some not found or existing with another size; 2: some failed.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 {
            2
        } else if self.not_found > 0 || self.differ > 0 {
            1
        } else {
            0
        }
    }
}

fn num(v: Option<u64>) -> Vec<u8> {
    v.map(|v| v.to_string().into_bytes()).unwrap_or_default()
}

/// Writes the outcome files of every key in `states` (its last final record; keys without one, an
/// intent alone, have no row) into `dir` and returns the counts.
pub fn write(dir: &Path, states: &mut KeyStates, prefix: &[u8], dry_run: bool) -> Result<Counts> {
    let mut w = Writer::create(dir, prefix, dry_run)?;
    while states.advance()? {
        if let Some(d) = states.state().record()? {
            w.row(&d)?;
        }
    }
    w.finish()
}

/// The four outcome files, written a row at a time. Rows come one per key in key byte order (the
/// caller's sorted stream), so the files are in that order too.
pub struct Writer<'a> {
    prefix: &'a [u8],
    ok: CsvOut,
    not_found: CsvOut,
    failed: CsvOut,
    exists: CsvOut,
    counts: Counts,
}

impl<'a> Writer<'a> {
    /// Creates the files in `dir` (`would-copy.csv` instead of ok.csv for a dry run); `prefix` + key
    /// is the target key.
    pub fn create(dir: &Path, prefix: &'a [u8], dry_run: bool) -> Result<Writer<'a>> {
        let ok_name = if dry_run { "would-copy.csv" } else { "ok.csv" };
        Ok(Writer {
            prefix,
            ok: CsvOut::create(
                dir,
                ok_name,
                &["key", "origin", "target_key", "size", "table", "md5", "content_type", "parts", "attempts", "note"],
            )?,
            not_found: CsvOut::create(dir, "not-found.csv", &["key", "origin", "tables"])?,
            failed: CsvOut::create(dir, "failed.csv", &["key", "origin", "stage", "attempts", "error"])?,
            exists: CsvOut::create(dir, "exists.csv", &["key", "origin", "outcome", "existing_size", "size"])?,
            counts: Counts::default(),
        })
    }

    /// Writes the row of `d` into the file of its outcome.
    pub fn row(&mut self, d: &Done) -> Result<()> {
        self.counts.add(d.outcome);
        let s = |o: &Option<String>| o.clone().unwrap_or_default().into_bytes();
        let origin = d.origin.clone().unwrap_or_default();
        match d.outcome {
            Outcome::Ok => {
                let tk = [self.prefix, &d.key].concat();
                self.ok.row([
                    &d.key,
                    &origin,
                    &tk,
                    &num(d.size),
                    &s(&d.table),
                    &s(&d.md5),
                    &s(&d.content_type),
                    d.parts.to_string().as_bytes(),
                    d.attempts.to_string().as_bytes(),
                    &s(&d.error),
                ])
            }
            Outcome::NotFound => self.not_found.row([&d.key, &origin, &s(&d.error)]),
            Outcome::Failed => {
                self.failed.row([&d.key, &origin, &s(&d.stage), d.attempts.to_string().as_bytes(), &s(&d.error)])
            }
            Outcome::Exists | Outcome::Differ => {
                self.exists.row([&d.key, &origin, d.outcome.name().as_bytes(), &num(d.existing), &num(d.size)])
            }
        }
    }

    /// Flushes the files; the counts of the rows written.
    pub fn finish(self) -> Result<Counts> {
        self.ok.finish()?;
        self.not_found.finish()?;
        self.failed.finish()?;
        self.exists.finish()?;
        Ok(self.counts)
    }
}

/// A fleet report's rows: the final records consumers acknowledged ([`journal::decode_final`]).
impl crate::queue::report::Render for Writer<'_> {
    fn row(&mut self, record: &[u8]) -> Result<()> {
        let d = super::journal::decode_final(record)
            .map_err(|e| Error::Internal(format!("an outcome record that does not decode: {e}")))?;
        Writer::row(self, &d)
    }
    fn finish(self: Box<Self>) -> Result<(BTreeMap<String, u64>, i32)> {
        let c = Writer::finish(*self)?;
        let code = c.exit_code();
        let m = [
            ("ok", c.ok),
            ("not_found", c.not_found),
            ("failed", c.failed),
            ("exists", c.exists),
            ("differ", c.differ),
        ];
        Ok((m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_key_with_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vec![
            Done::new(Outcome::Ok, b"a\xff", None),
            Done::new(Outcome::Ok, b"b", Some(b"b_1")),
            Done::new(Outcome::Differ, b"c", None),
        ];
        v[1].size = Some(3);
        let mut f = Done::new(Outcome::Failed, b"d", None);
        f.error = Some("PUT \"d\": 503 SlowDown".into());
        f.stage = Some("put".into());
        v.push(f);
        let mut w = Writer::create(dir.path(), b"p/", false).unwrap();
        for d in &v {
            w.row(d).unwrap();
        }
        let c = w.finish().unwrap();
        assert_eq!(c, Counts { ok: 2, not_found: 0, failed: 1, exists: 0, differ: 1 });
        assert_eq!(c.exit_code(), 2);
        let ok = std::fs::read(dir.path().join("ok.csv")).unwrap();
        assert!(
            ok.starts_with(b"key,origin,target_key,size,table,md5,content_type,parts,attempts,note\na\xff,,p/a\xff,"),
            "{}",
            String::from_utf8_lossy(&ok)
        );
        assert!(String::from_utf8_lossy(&ok).contains("\nb,b_1,p/b,3,"));
        let failed = std::fs::read_to_string(dir.path().join("failed.csv")).unwrap();
        assert!(failed.contains("d,,put,0,\"PUT \"\"d\"\": 503 SlowDown\""), "{failed}");
        assert_eq!(Counts { differ: 1, ..Counts::default() }.exit_code(), 1);
        assert_eq!(Counts { ok: 1, exists: 1, ..Counts::default() }.exit_code(), 0);
    }

    /// From a journal: the last final record of each key, in key byte order; an intent alone is no row.
    #[test]
    fn written_from_the_journal_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = super::super::journal::Journal::create(&dir.path().join("j.jsonl")).unwrap();
        j.record(&Done::new(Outcome::Failed, b"b", None)).unwrap();
        j.record(&Done::new(Outcome::NotFound, b"a", None)).unwrap();
        j.intent(b"c").unwrap();
        j.intent(b"b").unwrap();
        j.record(&Done::new(Outcome::Ok, b"b", Some(b"b_1"))).unwrap();
        let c = write(dir.path(), &mut j.states(1 << 20, dir.path()).unwrap(), b"", true).unwrap();
        assert_eq!(c, Counts { ok: 1, not_found: 1, ..Counts::default() });
        let ok = std::fs::read_to_string(dir.path().join("would-copy.csv")).unwrap();
        assert_eq!(ok.lines().skip(1).collect::<Vec<_>>(), vec!["b,b_1,b,,,,,0,0,"]);
        let nf = std::fs::read_to_string(dir.path().join("not-found.csv")).unwrap();
        assert_eq!(nf, "key,origin,tables\na,,\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("failed.csv")).unwrap().lines().count(), 1);
    }
}
