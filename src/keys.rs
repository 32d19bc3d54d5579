//! The keys to repair (or verify), as the engine's key reader ([`crate::input`]) gives them: from
//! keyrecon-diff's `missing-on-target.csv`, a repair/verify outcome CSV, a plain key file, or stdin.
//!
//! With `--format auto` (the default of repair and verify) a file whose first line is `key` or starts
//! with `key,` is a CSV with a header: the `key` column is the target key (the comparison key after key
//! mapping); `origin`, when present and not empty, is the Cassandra key it was mapped from; `size`, when
//! present, the source size. Anything else is one key per line (`-z`: NUL-terminated); empty lines are
//! skipped. Rows that cannot be used go to `OUT/rejects.csv` with the reason (exit status 2).
//!
//! Keys are bytes. They go through the engine's external sorter ([`sort`]: within `--mem`, spilling to
//! `--tmp`) into one chunk of the run's scratch directory, in key byte order, each key once (a key given
//! twice is worked on once: the first occurrence wins; counted), with its origin and size as record
//! metadata ([`SCHEMA`]). The pool is fed from that chunk, so no list of keys is held in memory, whatever
//! the input holds; and the counts are exact before the first key goes out.

use crate::chunk::ChunkCursor;
use crate::error::{Error, Result};
use crate::input::{for_each_record, InputSpec, InputStats, Rejects};
use crate::merge::Concat;
use crate::record::{show_key, MetaRef, Schema};
use crate::sort::{write_chunk, SortConfig, SortStats, Sorter};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// What a sorted key record carries beside the key: the input's origin and size cells.
pub const SCHEMA: Schema = Schema(Schema::ORIGIN | Schema::SIZE);

/// One key to work on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The target key (before `--prefix`).
    pub key: Vec<u8>,
    /// The Cassandra key, when the input names one that differs from `key`.
    pub origin: Option<Vec<u8>>,
    /// Size the listing saw in the source (from a `size` column).
    pub size: Option<u64>,
    /// The journal holds an intent for the key that no final record followed: a PUT of an earlier run
    /// may have completed (`--resume`; see `crate::repair::resume`). What this run knows, not part of the key:
    /// not serialized.
    #[serde(skip)]
    pub intent: bool,
}

impl Item {
    /// The key to look up in Cassandra.
    pub fn origin(&self) -> &[u8] {
        self.origin.as_deref().unwrap_or(&self.key)
    }

    /// The item of a sorted key record ([`SCHEMA`]).
    pub fn from_record(key: &[u8], meta: &[u8]) -> Result<Item> {
        let m = MetaRef::decode(meta)
            .map_err(|e| Error::Internal(format!("sorted key {:?}: its metadata: {e}", show_key(key))))?;
        Ok(Item { key: key.to_vec(), origin: m.origin.map(<[u8]>::to_vec), size: m.size, intent: false })
    }
}

/// The keys of one input, sorted into a chunk, and what was dropped on the way.
#[derive(Debug)]
pub struct SortedKeys {
    /// The input's name (`<stdin>` for `-`).
    pub source: String,
    /// Distinct keys.
    pub count: u64,
    pub duplicates: u64,
    pub input: InputStats,
    pub sort: SortStats,
    /// `None`: no keys.
    chunk: Option<PathBuf>,
}

impl SortedKeys {
    /// The keys in byte order, as records of [`SCHEMA`] ([`Item::from_record`]).
    pub fn cursor(&self) -> Result<Concat<ChunkCursor>> {
        Ok(Concat::new(self.chunk.iter().map(ChunkCursor::open).collect::<Result<Vec<_>>>()?))
    }
}

/// Reads every key of `spec` through a sorter of `mem` bytes (spilling to `tmp`) into the chunk
/// `dir/keys.krc`, dropping repeated keys; unusable rows go to `rejects`.
pub fn sort(spec: &InputSpec, rejects: &Rejects, mem: usize, tmp: &Path, dir: &Path) -> Result<SortedKeys> {
    let mut sorter = Sorter::new(SortConfig::new(mem, tmp, SCHEMA));
    let mut meta = Vec::new();
    let input = for_each_record(spec, rejects, &AtomicU64::new(0), |r| {
        meta.clear();
        let origin = r.origin.filter(|o| *o != r.key);
        MetaRef { origin, size: r.size, ..MetaRef::default() }.encode(&mut meta);
        sorter.push(r.key, &meta)
    })?;
    let mut sorted = sorter.finish()?;
    let path = dir.join("keys.krc");
    let written = write_chunk(&mut sorted, &path, SCHEMA)?;
    let sort = sorted.stats();
    Ok(SortedKeys {
        source: spec.display(),
        count: written.as_ref().map_or(0, |w| w.records),
        duplicates: sort.duplicates,
        input,
        sort,
        chunk: written.map(|_| path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Format;
    use crate::merge::SortedCursor;

    /// The items of `data` in the order the pool gets them, the duplicates, rejects and their file.
    fn keys(data: &[u8], nul: bool) -> (Vec<Item>, SortedKeys, u64, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("in.csv");
        std::fs::write(&p, data).unwrap();
        let rej = Rejects::new(Some(d.path().join("rejects.csv")));
        let k = sort(&InputSpec::new(&p, Format::Auto { nul }), &rej, 1 << 20, d.path(), d.path()).unwrap();
        rej.flush().unwrap();
        let text = std::fs::read_to_string(d.path().join("rejects.csv")).unwrap_or_default();
        let mut items = Vec::new();
        let mut c = k.cursor().unwrap();
        while c.advance().unwrap() {
            items.push(Item::from_record(c.key(), c.meta()).unwrap());
        }
        assert_eq!(items.len() as u64, k.count);
        (items, k, rej.count(), text)
    }

    fn item(key: &[u8], origin: Option<&[u8]>, size: Option<u64>) -> Item {
        Item { key: key.to_vec(), origin: origin.map(<[u8]>::to_vec), size, intent: false }
    }

    #[test]
    fn missing_on_target_csv_with_origin_and_size_first_wins() {
        let (items, k, rejected, _) =
            keys(b"key,size,origin\nt01a,10,t01a_1\n\"t0,2\",,\nt01a,11,other\nt3,,t3\n", false);
        assert_eq!(
            items,
            vec![
                item(b"t0,2", None, None),
                item(b"t01a", Some(b"t01a_1"), Some(10)),
                item(b"t3", None, None), // an origin equal to the key is no origin
            ]
        );
        assert_eq!((k.duplicates, rejected), (1, 0));
        assert_eq!(items[0].origin(), b"t0,2");
    }

    #[test]
    fn plain_lines_nul_and_bytes() {
        let (items, k, _, _) = keys(b"b\n\na\xff\n", false);
        assert_eq!(items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![b"a\xff".to_vec(), b"b".to_vec()]);
        assert_eq!(k.input.blank, 1);
        let (items, _, _, _) = keys(b"key,x\0b\nc\0", true);
        assert_eq!(items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![b"b\nc".to_vec(), b"key,x".to_vec()]);
        let (items, k, _, _) = keys(b"", false);
        assert_eq!((items.len(), k.count), (0, 0));
    }

    #[test]
    fn bad_rows_are_rejected_with_their_line() {
        let (items, k, rejected, text) = keys(b"key,size\na,1\nb,zz\n", false);
        assert_eq!((items.len(), rejected, k.input.rejected), (1, 1, 1));
        assert!(text.contains(",3,") && text.contains("zz"), "{text}");
    }
}
