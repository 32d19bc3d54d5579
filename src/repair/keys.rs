//! The keys to repair (or verify), as the engine's key reader ([`crate::input`]) gives them: from
//! keyrecon-diff's `missing-on-target.csv`, a repair/verify outcome CSV, a plain key file, or stdin.
//!
//! With `--format auto` (the default of repair and verify) a file whose first line is `key` or starts
//! with `key,` is a CSV with a header: the `key` column is the target key (the comparison key after key
//! mapping); `origin`, when present and not empty, is the Cassandra key it was mapped from; `size`, when
//! present, the source size. Anything else is one key per line (`-z`: NUL-terminated); empty lines are
//! skipped. Rows that cannot be used go to `OUT/rejects.csv` with the reason (exit status 2).
//!
//! Keys are bytes. A key given twice is worked on once (the first occurrence wins; counted).

use crate::error::Result;
use crate::input::{for_each_record, InputSpec, InputStats, Rejects};
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

/// One key to work on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The target key (before `--prefix`).
    pub key: Vec<u8>,
    /// The Cassandra key, when the input names one that differs from `key`.
    pub origin: Option<Vec<u8>>,
    /// Size the listing saw in the source (from a `size` column).
    pub size: Option<u64>,
}

impl Item {
    /// The key to look up in Cassandra.
    pub fn origin(&self) -> &[u8] {
        self.origin.as_deref().unwrap_or(&self.key)
    }
}

/// The keys of one input and what was dropped on the way.
#[derive(Debug, Default)]
pub struct Keys {
    pub items: Vec<Item>,
    pub duplicates: u64,
    pub input: InputStats,
    /// The input's name (`<stdin>` for `-`).
    pub source: String,
}

/// Reads every key of `spec`, dropping repeated keys; unusable rows go to `rejects`.
pub fn read(spec: &InputSpec, rejects: &Rejects) -> Result<Keys> {
    let mut items = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut duplicates = 0;
    let input = for_each_record(spec, rejects, &AtomicU64::new(0), |r| {
        if !seen.insert(r.key.to_vec()) {
            duplicates += 1;
            return Ok(());
        }
        let origin = r.origin.filter(|o| *o != r.key).map(<[u8]>::to_vec);
        items.push(Item { key: r.key.to_vec(), origin, size: r.size });
        Ok(())
    })?;
    Ok(Keys { items, duplicates, input, source: spec.display() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Format;

    fn keys(data: &[u8], nul: bool) -> (Keys, u64, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("in.csv");
        std::fs::write(&p, data).unwrap();
        let rej = Rejects::new(Some(d.path().join("rejects.csv")));
        let k = read(&InputSpec::new(&p, Format::Auto { nul }), &rej).unwrap();
        rej.flush().unwrap();
        let text = std::fs::read_to_string(d.path().join("rejects.csv")).unwrap_or_default();
        (k, rej.count(), text)
    }

    #[test]
    fn missing_on_target_csv_with_origin_and_size() {
        let (k, rejected, _) = keys(b"key,size,origin\nt01a,10,t01a_1\n\"t0,2\",,\nt01a,10,t01a_1\n", false);
        assert_eq!(
            k.items,
            vec![
                Item { key: b"t01a".to_vec(), origin: Some(b"t01a_1".to_vec()), size: Some(10) },
                Item { key: b"t0,2".to_vec(), origin: None, size: None }
            ]
        );
        assert_eq!((k.duplicates, rejected), (1, 0));
        assert_eq!(k.items[1].origin(), b"t0,2");
    }

    #[test]
    fn plain_lines_nul_and_bytes() {
        let (k, _, _) = keys(b"a\xff\n\nb\n", false);
        assert_eq!(k.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![b"a\xff".to_vec(), b"b".to_vec()]);
        assert_eq!(k.input.blank, 1);
        let (k, _, _) = keys(b"key,x\0b\nc\0", true);
        assert_eq!(
            k.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(),
            vec![b"key,x".to_vec(), b"b\nc".to_vec()]
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_their_line() {
        let (k, rejected, text) = keys(b"key,size\na,1\nb,zz\n", false);
        assert_eq!((k.items.len(), rejected, k.input.rejected), (1, 1, 1));
        assert!(text.contains(",3,") && text.contains("zz"), "{text}");
    }
}
