//! Which keys a run works on: the sorted keys ([`super::keys`]) minus those the journal says are done,
//! found by a lockstep walk (rclone's march) of two streams in key byte order, neither held in memory:
//!
//! ```text
//!  sorted keys (keys.krc)        a   b   c       e
//!  journal key states (--resume)     b   c   d   e       (states.krc: [`states_chunk`])
//!                                    ok  fail    fail+intent
//!  to the pool                   a       c       e (intent)      skipped: b
//! ```
//! - a key whose last outcome is final (`ok`, `not_found`, `exists`, `differ`) is skipped and counted;
//! - a key whose last outcome is `failed`, or that has none, is worked on again, flagged
//!   ([`Item::intent`]) when an intent follows its last final record: a PUT of an earlier run may
//!   have completed, and the worker's HEAD then tells our upload from a live writer's (`repair::mod`);
//! - journal keys not in the input are passed over (their rows stay in the outcome files).
//!
//! Without `--resume` there are no states and every key is worked on; keyrecon-verify feeds its pool
//! the same way.

use super::journal::{Journal, KeyState};
use crate::chunk::ChunkWriter;
use crate::error::{Error, Result};
use crate::keys::Item;
use crate::merge::SortedCursor;
use crate::pool::Feeder;
use crate::record::{show_key, Schema};
use std::path::{Path, PathBuf};

/// Writes the journal's key states ([`Journal::states`], sorted within `mem`, spilling to `tmp`) into
/// the chunk `dir/states.krc` for the walk; `None` when the journal holds no key. The walk needs each
/// key's last outcome and intent, not its record: the journal lines are left out.
pub fn states_chunk(journal: &Journal, mem: usize, tmp: &Path, dir: &Path) -> Result<Option<PathBuf>> {
    let path = dir.join("states.krc");
    let mut states = journal.states(mem, tmp)?;
    let mut w = ChunkWriter::create(&path, Schema::OPAQUE)?;
    let mut meta = Vec::new();
    while states.advance()? {
        let st = states.state();
        meta.clear();
        KeyState { last: st.last.map(|(o, _)| (o, &b""[..])), intent: st.intent }.encode(&mut meta);
        w.push(states.key(), &meta)?;
    }
    Ok(w.finish()?.map(|_| path))
}

/// The keys left to work on: `keys` (records of `keys::SCHEMA`) walked against `states` (records whose
/// metadata is a [`KeyState`]), both strictly increasing.
pub struct Todo<K, S> {
    keys: K,
    states: Option<S>,
    /// `states` stands on a record (false before the first advance and at its end).
    state_live: bool,
    started: bool,
    intent: bool,
    skipped: u64,
}

impl<K: SortedCursor, S: SortedCursor> Todo<K, S> {
    pub fn new(keys: K, states: Option<S>) -> Self {
        Todo { keys, states, state_live: false, started: false, intent: false, skipped: 0 }
    }

    /// Moves to the next key to work on, passing over keys that are done. False at the end.
    pub fn advance(&mut self) -> Result<bool> {
        loop {
            if !self.keys.advance()? {
                return Ok(false);
            }
            self.intent = false;
            let Some(states) = self.states.as_mut() else { return Ok(true) };
            let key = self.keys.key();
            if !self.started {
                self.started = true;
                self.state_live = states.advance()?;
            }
            while self.state_live && states.key() < key {
                self.state_live = states.advance()?;
            }
            if self.state_live && states.key() == key {
                let st = KeyState::decode(states.meta())
                    .map_err(|e| Error::Internal(format!("journal state of {:?}: {e}", show_key(key))))?;
                if st.done() {
                    self.skipped += 1;
                    continue;
                }
                self.intent = st.intent;
            }
            return Ok(true);
        }
    }

    /// The current key.
    pub fn item(&self) -> Result<Item> {
        let mut it = Item::from_record(self.keys.key(), self.keys.meta())?;
        it.intent = self.intent;
        Ok(it)
    }

    /// Keys passed over so far because the journal has their final outcome.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Walks to the end; returns the keys passed over.
    pub fn count_skipped(mut self) -> Result<u64> {
        while self.advance()? {}
        Ok(self.skipped)
    }

    /// The producer of the worker pool: every key left, in key order, until the pool stops taking them.
    pub fn feed(mut self, feed: &Feeder<Item>) -> Result<()> {
        while self.advance()? {
            if !feed.send(self.item()?) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::merge::VecCursor;
    use crate::repair::journal::Outcome::{self, *};

    fn keys_of(keys: &[&[u8]]) -> VecCursor {
        VecCursor::new(keys.iter().map(|k| (k.to_vec(), vec![0])).collect())
    }

    fn states_of(states: &[(&[u8], Option<Outcome>, bool)]) -> VecCursor {
        VecCursor::new(
            states
                .iter()
                .map(|(k, last, intent)| {
                    let mut m = Vec::new();
                    KeyState { last: last.map(|o| (o, &b"{}"[..])), intent: *intent }.encode(&mut m);
                    (k.to_vec(), m)
                })
                .collect(),
        )
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn walk_skips_final_outcomes_and_flags_intents() {
        let cases: Vec<(&str, Vec<&[u8]>, Vec<(&[u8], Option<Outcome>, bool)>, Vec<(&[u8], bool)>, u64)> = vec![
            ("nothing", vec![], vec![], vec![], 0),
            ("no journal yet", vec![b"a", b"b"], vec![], vec![(b"a", false), (b"b", false)], 0),
            ("a journal, no keys", vec![], vec![(b"a", Some(Ok), false)], vec![], 0),
            (
                "final outcomes are skipped",
                vec![b"a", b"b", b"c", b"d"],
                vec![
                    (b"a", Some(Ok), false),
                    (b"b", Some(NotFound), false),
                    (b"c", Some(Exists), false),
                    (b"d", Some(Differ), false),
                ],
                vec![],
                4,
            ),
            ("failed is tried again", vec![b"a"], vec![(b"a", Some(Failed), false)], vec![(b"a", false)], 0),
            (
                "an intent after failed, or alone, is flagged",
                vec![b"a", b"b", b"c"],
                vec![(b"a", Some(Failed), true), (b"b", None, true), (b"c", None, false)],
                vec![(b"a", true), (b"b", true), (b"c", false)],
                0,
            ),
            ("a final outcome wins over a later intent", vec![b"a"], vec![(b"a", Some(Ok), true)], vec![], 1),
            (
                "journal keys before, between and after the input's are passed over",
                vec![b"b", b"d"],
                vec![(b"a", Some(Failed), true), (b"c", None, true), (b"d", Some(Ok), false), (b"e", None, true)],
                vec![(b"b", false)],
                1,
            ),
            (
                "prefixes, NUL and high bytes",
                vec![b"a", b"a\x00", b"ab", b"\xc3\xa9", b"\xff"],
                vec![
                    (b"a\x00", Some(Ok), false),
                    (b"ab", None, true),
                    (b"\xc3", Some(Ok), false),
                    (b"\xff", Some(Failed), true),
                ],
                vec![(b"a", false), (b"ab", true), (b"\xc3\xa9", false), (b"\xff", true)],
                1,
            ),
        ];
        for (name, keys, states, want, skipped) in cases {
            let mut t = Todo::new(keys_of(&keys), Some(states_of(&states)));
            let mut got = Vec::new();
            while t.advance().unwrap() {
                let it = t.item().unwrap();
                got.push((it.key, it.intent));
            }
            let want: Vec<(Vec<u8>, bool)> = want.into_iter().map(|(k, i)| (k.to_vec(), i)).collect();
            assert_eq!((got, t.skipped()), (want, skipped), "{name}");
            let again = Todo::new(keys_of(&keys), Some(states_of(&states))).count_skipped().unwrap();
            assert_eq!(again, skipped, "{name}: counting walk");
        }
        // Without states (no --resume, verify) every key, none flagged.
        let mut t = Todo::<_, VecCursor>::new(keys_of(&[b"a", b"b"]), None);
        assert!(t.advance().unwrap() && t.advance().unwrap() && !t.advance().unwrap());
        assert_eq!(t.skipped(), 0);
    }

    /// The walk over the chunks a resumed run writes: the journal's states of a real journal file.
    #[test]
    fn walk_over_a_journal_and_sorted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), false, false).unwrap();
        j.record(&super::super::journal::Done::new(Ok, b"k2", None)).unwrap();
        j.intent(b"k3").unwrap();
        let input = dir.path().join("keys.txt");
        std::fs::write(&input, "k3\nk1\nk2\n").unwrap();
        let spec = crate::input::InputSpec::new(&input, crate::input::Format::Lines);
        let rej = crate::input::Rejects::new(None);
        let sorted = keys::sort(&spec, &rej, 1 << 20, dir.path(), dir.path()).unwrap();
        let states = states_chunk(&j, 1 << 20, dir.path(), dir.path()).unwrap().unwrap();
        let mut t = Todo::new(sorted.cursor().unwrap(), Some(crate::chunk::ChunkCursor::open(&states).unwrap()));
        let mut got = Vec::new();
        while t.advance().unwrap() {
            let it = t.item().unwrap();
            got.push((String::from_utf8(it.key).unwrap(), it.intent));
        }
        assert_eq!(got, vec![("k1".to_string(), false), ("k3".to_string(), true)]);
        assert_eq!(t.skipped(), 1);
    }
}
