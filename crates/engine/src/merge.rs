//! K-way merge of sorted cursors through a loser tree, removing duplicate keys.
//!
//! ```text
//!            tree[0] = overall winner (smallest key)
//!                    │
//!                 [ 1 ]          internal nodes hold the LOSER of the match played there
//!                /     \
//!            [ 2 ]     [ 3 ]
//!            /  \      /  \
//!          c0   c1   c2   c3     leaves: cursors (leaf i sits at position k + i)
//! ```
//! After the winner advances only its path to the root is replayed: log2(k) comparisons per record, and
//! each comparison looks at one new key (a heap would look at two). Ties are broken by cursor index, so
//! among equal keys the record of the lowest-indexed input wins and the others count as duplicates: the
//! result is deterministic whatever the chunk sizes were.
//!
//! Each cursor's first 8 key bytes are cached next to the tree as a big-endian integer ([`prefix8`],
//! zero padded), read once when the cursor advances: a match between keys that differ in their first
//! 8 bytes is settled by one integer comparison, without reaching into the cursors' buffers; only
//! equal prefixes compare whole keys. The duplicate check uses the last key's prefix the same way.

use crate::error::Result;
use std::cmp::Ordering;

/// First 8 bytes of `key`, big endian, zero padded: where two of these differ, they order as the keys
/// do (a key that ends inside the 8 bytes is a prefix of the other, or the other goes on with a
/// larger byte); where they are equal, only the whole keys can tell.
#[inline]
pub fn prefix8(key: &[u8]) -> u64 {
    if let Some(b) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*b);
    }
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// A sorted stream of records. Implemented by chunk cursors, merges, sorter outputs and in-memory runs.
pub trait SortedCursor {
    /// Moves to the next record. `Ok(false)` at the end.
    fn advance(&mut self) -> Result<bool>;
    /// The current record's key; valid after `advance` returned true.
    fn key(&self) -> &[u8];
    /// The current record's encoded metadata (empty for keys-only).
    fn meta(&self) -> &[u8];
    /// [`prefix8`] of the current key (a cursor that has it at hand returns it without reading the key).
    #[inline]
    fn prefix(&self) -> u64 {
        prefix8(self.key())
    }
}

pub struct Merge<C: SortedCursor> {
    cursors: Vec<C>,
    live: Vec<bool>,
    /// [`prefix8`] of each live cursor's key.
    prefix: Vec<u64>,
    tree: Vec<usize>,
    started: bool,
    dedup: bool,
    last: Vec<u8>,
    last_prefix: u64,
    has_last: bool,
    duplicates: u64,
    records: u64,
}

const EMPTY: usize = usize::MAX;

impl<C: SortedCursor> Merge<C> {
    /// `dedup`: drop records whose key equals the previous output key (counted in [`duplicates`]).
    ///
    /// [`duplicates`]: Merge::duplicates
    pub fn new(cursors: Vec<C>, dedup: bool) -> Self {
        let k = cursors.len();
        Merge {
            live: vec![false; k],
            prefix: vec![0; k],
            cursors,
            tree: vec![EMPTY; k.max(1)],
            started: false,
            dedup,
            last: Vec::new(),
            last_prefix: 0,
            has_last: false,
            duplicates: 0,
            records: 0,
        }
    }

    /// Records dropped because their key equalled the previous one.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
    /// Records handed out.
    pub fn records(&self) -> u64 {
        self.records
    }
    /// The merged cursors, in input order.
    pub fn cursors(&self) -> &[C] {
        &self.cursors
    }
    pub fn into_cursors(self) -> Vec<C> {
        self.cursors
    }

    /// Does cursor `a` come before cursor `b`? Exhausted cursors come last.
    #[inline]
    fn beats(&self, a: usize, b: usize) -> bool {
        match (self.live[a], self.live[b]) {
            (false, _) => false,
            (true, false) => true,
            (true, true) => {
                let (pa, pb) = (self.prefix[a], self.prefix[b]);
                if pa != pb {
                    return pa < pb;
                }
                match self.cursors[a].key().cmp(self.cursors[b].key()) {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => a < b,
                }
            }
        }
    }

    fn init(&mut self) -> Result<()> {
        let k = self.cursors.len();
        for i in 0..k {
            self.step(i)?;
        }
        for i in 0..k {
            let mut winner = i;
            let mut node = (i + k) / 2;
            let mut placed = false;
            while node != 0 {
                let other = self.tree[node];
                if other == EMPTY {
                    self.tree[node] = winner;
                    placed = true;
                    break;
                }
                if self.beats(other, winner) {
                    self.tree[node] = winner;
                    winner = other;
                }
                node /= 2;
            }
            if !placed {
                self.tree[0] = winner;
            }
        }
        Ok(())
    }

    #[inline]
    fn replay(&mut self, leaf: usize) {
        let k = self.cursors.len();
        let mut winner = leaf;
        let mut node = (leaf + k) / 2;
        while node != 0 {
            let other = self.tree[node];
            if self.beats(other, winner) {
                self.tree[node] = winner;
                winner = other;
            }
            node /= 2;
        }
        self.tree[0] = winner;
    }

    /// Advances cursor `i` and caches its key's prefix.
    #[inline]
    fn step(&mut self, i: usize) -> Result<()> {
        self.live[i] = self.cursors[i].advance()?;
        if self.live[i] {
            self.prefix[i] = self.cursors[i].prefix();
        }
        Ok(())
    }

    #[inline]
    fn winner(&self) -> usize {
        self.tree[0]
    }
}

impl<C: SortedCursor> SortedCursor for Merge<C> {
    fn advance(&mut self) -> Result<bool> {
        if self.cursors.is_empty() {
            return Ok(false);
        }
        if !self.started {
            self.started = true;
            self.init()?;
        } else {
            // Remember the key we handed out last, then move its cursor on.
            let w = self.winner();
            if self.dedup {
                self.last.clear();
                self.last.extend_from_slice(self.cursors[w].key());
                self.last_prefix = self.prefix[w];
                self.has_last = true;
            }
            self.step(w)?;
            self.replay(w);
        }
        loop {
            let w = self.winner();
            if !self.live[w] {
                return Ok(false);
            }
            if self.dedup
                && self.has_last
                && self.prefix[w] == self.last_prefix
                && self.cursors[w].key() == &self.last[..]
            {
                self.duplicates += 1;
                self.step(w)?;
                self.replay(w);
                continue;
            }
            self.records += 1;
            return Ok(true);
        }
    }

    #[inline]
    fn key(&self) -> &[u8] {
        self.cursors[self.winner()].key()
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        self.cursors[self.winner()].meta()
    }
    #[inline]
    fn prefix(&self) -> u64 {
        self.prefix[self.winner()]
    }
}

/// Cursors whose key ranges are disjoint and in order, read one after the other (no comparisons).
pub struct Concat<C: SortedCursor> {
    cursors: Vec<C>,
    at: usize,
}

impl<C: SortedCursor> Concat<C> {
    pub fn new(cursors: Vec<C>) -> Self {
        Concat { cursors, at: 0 }
    }
}

impl<C: SortedCursor> SortedCursor for Concat<C> {
    fn advance(&mut self) -> Result<bool> {
        while self.at < self.cursors.len() {
            if self.cursors[self.at].advance()? {
                return Ok(true);
            }
            self.at += 1;
        }
        Ok(false)
    }
    #[inline]
    fn key(&self) -> &[u8] {
        self.cursors[self.at].key()
    }
    #[inline]
    fn meta(&self) -> &[u8] {
        self.cursors[self.at].meta()
    }
    #[inline]
    fn prefix(&self) -> u64 {
        self.cursors[self.at].prefix()
    }
}

/// A sorted run in memory (tests, small outputs): records must already be sorted.
pub struct VecCursor {
    recs: Vec<(Vec<u8>, Vec<u8>)>,
    at: usize,
}

impl VecCursor {
    pub fn new(recs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        VecCursor { recs, at: usize::MAX }
    }
}

impl SortedCursor for VecCursor {
    fn advance(&mut self) -> Result<bool> {
        self.at = self.at.wrapping_add(1);
        Ok(self.at < self.recs.len())
    }
    fn key(&self) -> &[u8] {
        &self.recs[self.at].0
    }
    fn meta(&self) -> &[u8] {
        &self.recs[self.at].1
    }
}

impl SortedCursor for Box<dyn SortedCursor + Send> {
    fn advance(&mut self) -> Result<bool> {
        (**self).advance()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn meta(&self) -> &[u8] {
        (**self).meta()
    }
    fn prefix(&self) -> u64 {
        (**self).prefix()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn run(inputs: Vec<Vec<&[u8]>>) -> (Vec<Vec<u8>>, u64) {
        let cursors =
            inputs.into_iter().map(|v| VecCursor::new(v.into_iter().map(|k| (k.to_vec(), vec![])).collect())).collect();
        let mut m = Merge::new(cursors, true);
        let mut out = Vec::new();
        while m.advance().unwrap() {
            out.push(m.key().to_vec());
        }
        (out, m.duplicates())
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn table() {
        let cases: Vec<(Vec<Vec<&[u8]>>, Vec<&[u8]>, u64)> = vec![
            (vec![], vec![], 0),
            (vec![vec![]], vec![], 0),
            (vec![vec![], vec![]], vec![], 0),
            (vec![vec![b"a"]], vec![b"a"], 0),
            (vec![vec![b"a", b"c"], vec![b"b"]], vec![b"a", b"b", b"c"], 0),
            (vec![vec![b"a"], vec![b"a"], vec![b"a"]], vec![b"a"], 2),
            (vec![vec![b"ab", b"abc"], vec![b"a", b"abc\xff"]], vec![b"a", b"ab", b"abc", b"abc\xff"], 0),
            (
                vec![vec![b"\xff"], vec![b"\x00"], vec![b"\x7f"], vec![], vec![b"\x00"]],
                vec![b"\x00", b"\x7f", b"\xff"],
                1,
            ),
        ];
        for (inp, want, dups) in cases {
            let (got, d) = run(inp.clone());
            assert_eq!(got, want.iter().map(|k| k.to_vec()).collect::<Vec<_>>(), "inputs {inp:?}");
            assert_eq!(d, dups, "inputs {inp:?}");
        }
    }

    #[test]
    fn ties_go_to_the_lowest_input() {
        let a = VecCursor::new(vec![(b"k".to_vec(), b"from0".to_vec())]);
        let b = VecCursor::new(vec![(b"k".to_vec(), b"from1".to_vec())]);
        let mut m = Merge::new(vec![b, a], true);
        assert!(m.advance().unwrap());
        assert_eq!(m.meta(), b"from1");
        assert!(!m.advance().unwrap());
    }

    #[test]
    fn random_against_sort_dedup() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for k in [1usize, 2, 3, 5, 8, 13, 64, 100] {
            let mut all = Vec::new();
            let inputs: Vec<Vec<Vec<u8>>> = (0..k)
                .map(|_| {
                    let n = rng.gen_range(0..200);
                    // Short keys (zero bytes against the prefix's zero padding) and keys that tie on
                    // their first 8 bytes or more (the cached prefixes cannot settle those).
                    let mut v: Vec<Vec<u8>> = (0..n)
                        .map(|i| {
                            let mut key = if i % 2 == 0 { b"images/2024/".to_vec() } else { vec![] };
                            key.extend((0..rng.gen_range(0..4)).map(|_| rng.gen_range(0..3u8) * 127));
                            key
                        })
                        .collect();
                    v.sort();
                    v.dedup();
                    all.extend(v.iter().cloned());
                    v
                })
                .collect();
            let n_all = all.len() as u64;
            all.sort();
            all.dedup();
            let cursors =
                inputs.into_iter().map(|v| VecCursor::new(v.into_iter().map(|k| (k, vec![])).collect())).collect();
            let mut m = Merge::new(cursors, true);
            let mut out = Vec::new();
            while m.advance().unwrap() {
                out.push(m.key().to_vec());
            }
            assert_eq!(out, all, "k={k}");
            assert_eq!(m.duplicates() + out.len() as u64, n_all);
        }
    }
}
