//! The Murmur3 token ring and its split into scan ranges.
//!
//! A range is `(lo, hi]` (what `token(k) > ? AND token(k) <= ?` selects), `lo < hi`. The Murmur3
//! partitioner never gives a key the minimum token `i64::MIN` (Cassandra maps it to `i64::MAX`), so the
//! ranges `(i64::MIN, .., i64::MAX]` cover every key.
//!
//! ```text
//!  ring tokens   t0        t1              t2
//!  MIN ─────────┼─────────┼───────────────┼──────────── MAX
//!     (MIN,t0]   (t0,t1]   (t1,t2]         (t2,MAX]       the wrapping vnode (t2,t0] is cut at MIN
//!  each vnode range is cut into parts proportional to its width, so ~`splits` ranges in total
//! ```
//! Invariant (tested): sorted by `lo`, no gaps, no overlaps, first `lo` = MIN, last `hi` = MAX. Ranges
//! follow vnode boundaries so each scan query is served by one replica set.
//!
//! Sharding (`--shard I/N`, N machines listing one table): the ring `(MIN, MAX]` is cut into N
//! contiguous slices of equal width ([`shard_slice`]), a function of I and N only, so every machine
//! computes the same slices and they cover the ring exactly once. A shard's scan ranges are the vnode
//! ranges intersected with its slice, split as above (`--splits` applies to the slice).

use crate::chunk::Shard;
use serde::{Deserialize, Serialize};

pub const MIN_TOKEN: i64 = i64::MIN;
pub const MAX_TOKEN: i64 = i64::MAX;

/// The token range `(lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenRange {
    pub lo: i64,
    pub hi: i64,
}

impl TokenRange {
    pub fn new(lo: i64, hi: i64) -> Self {
        debug_assert!(lo < hi, "empty range ({lo}, {hi}]");
        TokenRange { lo, hi }
    }

    pub fn contains(&self, t: i64) -> bool {
        t > self.lo && t <= self.hi
    }

    /// The whole ring, `(MIN, MAX]`: every token a key can have.
    pub fn ring() -> Self {
        TokenRange::new(MIN_TOKEN, MAX_TOKEN)
    }

    /// The tokens in both ranges, if any.
    pub fn intersect(&self, other: &TokenRange) -> Option<TokenRange> {
        let (lo, hi) = (self.lo.max(other.lo), self.hi.min(other.hi));
        (lo < hi).then(|| TokenRange::new(lo, hi))
    }

    /// Width in tokens (up to 2^64 - 1).
    pub fn width(&self) -> u128 {
        (self.hi as i128 - self.lo as i128) as u128
    }

    /// Cuts the range into `n` contiguous parts of (nearly) equal width; fewer if it has fewer tokens.
    pub fn split(&self, n: usize) -> Vec<TokenRange> {
        let n = (n.max(1) as u128).min(self.width()) as i128;
        let (lo, w) = (self.lo as i128, self.width() as i128);
        let mut out = Vec::with_capacity(n as usize);
        let mut prev = self.lo;
        for i in 1..=n {
            let b = if i == n { self.hi } else { (lo + w * i / n) as i64 };
            if b > prev {
                out.push(TokenRange::new(prev, b));
                prev = b;
            }
        }
        out
    }
}

impl std::fmt::Display for TokenRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {}]", self.lo, self.hi)
    }
}

/// The ring's vnode ranges for the given node tokens (any order, duplicates allowed), with the wrapping
/// range cut at the minimum token. No tokens: the whole ring as one range.
pub fn vnode_ranges(tokens: &[i64]) -> Vec<TokenRange> {
    let mut t: Vec<i64> = tokens.iter().copied().filter(|&t| t != MIN_TOKEN).collect();
    t.sort_unstable();
    t.dedup();
    let mut bounds = vec![MIN_TOKEN];
    bounds.extend(t);
    if *bounds.last().unwrap() != MAX_TOKEN {
        bounds.push(MAX_TOKEN);
    }
    bounds.windows(2).map(|w| TokenRange::new(w[0], w[1])).collect()
}

/// The part of the ring shard `shard` lists: the `shard.index`-th of `shard.count` contiguous slices of
/// equal width (1/1: the whole ring).
pub fn shard_slice(shard: Shard) -> TokenRange {
    TokenRange::ring().split(shard.count as usize)[shard.index as usize - 1]
}

/// About `splits` scan ranges covering `within` (the whole ring, or a shard's slice), cut at the vnode
/// boundaries and then evenly within each vnode range (at least one part per vnode range).
pub fn split_ring(tokens: &[i64], splits: usize, within: TokenRange) -> Vec<TokenRange> {
    let total = within.width() as f64;
    let mut out = Vec::new();
    for r in vnode_ranges(tokens).iter().filter_map(|r| r.intersect(&within)) {
        let parts = ((splits as f64) * (r.width() as f64) / total).round().max(1.0) as usize;
        out.extend(r.split(parts));
    }
    out
}

/// Checks that `ranges` cover `within` exactly once (sorted, contiguous, from its `lo` to its `hi`).
pub fn check_cover(ranges: &[TokenRange], within: TokenRange) -> Result<(), String> {
    let first = ranges.first().ok_or("no ranges")?;
    if first.lo != within.lo {
        return Err(format!("first range {first} does not start where {within} does"));
    }
    for w in ranges.windows(2) {
        if w[0].hi != w[1].lo {
            return Err(format!("{} and {} leave a gap or overlap", w[0], w[1]));
        }
    }
    for r in ranges {
        if r.lo >= r.hi {
            return Err(format!("empty range {r}"));
        }
    }
    let last = ranges.last().unwrap();
    if last.hi != within.hi {
        return Err(format!("last range {last} does not end where {within} does"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(ranges: &[TokenRange], t: i64) -> usize {
        ranges.iter().filter(|r| r.contains(t)).count()
    }

    #[test]
    fn ring_splits_cover_every_token_once() {
        let token_sets: Vec<Vec<i64>> = vec![
            vec![],
            vec![0],
            vec![MAX_TOKEN],
            vec![MIN_TOKEN],
            vec![MIN_TOKEN + 1, MAX_TOKEN - 1],
            vec![-5, 5, 5, 100, -1_000_000_000_000],
            (0..256).map(|i| (i as i64).wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)).collect(),
        ];
        for tokens in &token_sets {
            for splits in [1, 2, 3, 7, 64, 1000] {
                let r = split_ring(tokens, splits, TokenRange::ring());
                check_cover(&r, TokenRange::ring())
                    .unwrap_or_else(|e| panic!("tokens {tokens:?} splits {splits}: {e}"));
                assert!(r.len() >= splits.min(r.len()));
                // Probe the edges: ring tokens, their neighbours, the wrap-around at the minimum token.
                let mut probes = vec![MIN_TOKEN + 1, MIN_TOKEN + 2, -1, 0, 1, MAX_TOKEN - 1, MAX_TOKEN];
                for &t in tokens {
                    probes.extend([t.saturating_sub(1), t, t.saturating_add(1)]);
                }
                for b in &r {
                    probes.extend([b.lo.saturating_add(1), b.hi]);
                }
                for t in probes {
                    if t != MIN_TOKEN {
                        assert_eq!(owners(&r, t), 1, "token {t} with ring {tokens:?} / {splits} splits");
                    }
                }
                // The minimum token itself is never a key's token and belongs to no range.
                assert_eq!(owners(&r, MIN_TOKEN), 0);
            }
        }
    }

    #[test]
    fn vnode_boundaries_are_kept_and_splits_are_roughly_even() {
        let tokens = [-100, 0, 4_000_000_000_000_000_000];
        let r = split_ring(&tokens, 64, TokenRange::ring());
        for t in tokens {
            assert!(r.iter().any(|x| x.hi == t), "vnode boundary {t} kept");
        }
        assert!((60..=70).contains(&r.len()), "{}", r.len());
        let r = TokenRange::new(0, 10).split(4);
        assert_eq!(
            r,
            vec![TokenRange::new(0, 2), TokenRange::new(2, 5), TokenRange::new(5, 7), TokenRange::new(7, 10)]
        );
        assert_eq!(TokenRange::new(0, 2).split(5).len(), 2);
        assert_eq!(TokenRange::new(MIN_TOKEN, MAX_TOKEN).split(2)[0].hi, -1);
    }

    #[test]
    fn check_cover_catches_gaps_and_overlaps() {
        let ring = TokenRange::ring();
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 0), TokenRange::new(1, MAX_TOKEN)], ring).is_err());
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 5), TokenRange::new(4, MAX_TOKEN)], ring).is_err());
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 5)], ring).is_err());
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 5)], TokenRange::new(MIN_TOKEN, 5)).is_ok());
    }

    /// Shard slices: N = 1 is the whole ring; for every N the slices are contiguous, of equal width
    /// (within one token), cover the ring exactly once, and are the same on every call.
    #[test]
    fn shard_slices_cover_the_ring_once() {
        assert_eq!(shard_slice(Shard::WHOLE), TokenRange::ring());
        for n in [1u32, 2, 3, 7, 64, 1000, crate::chunk::listing::MAX_SHARDS] {
            let slices: Vec<TokenRange> = (1..=n).map(|i| shard_slice(Shard::new(i, n).unwrap())).collect();
            check_cover(&slices, TokenRange::ring()).unwrap_or_else(|e| panic!("{n} shards: {e}"));
            let (min, max) = slices.iter().fold((u128::MAX, 0), |(a, b), s| (a.min(s.width()), b.max(s.width())));
            assert!(max - min <= 1, "{n} shards: widths {min}..{max}");
            assert_eq!(slices[0], shard_slice(Shard::new(1, n).unwrap()), "deterministic");
        }
        assert_eq!(shard_slice(Shard::new(2, 2).unwrap()), TokenRange::new(-1, MAX_TOKEN));
    }

    /// A shard's scan ranges cover its slice exactly once and keep the vnode boundaries inside it; the
    /// shards' ranges together cover the ring, every token in exactly one shard.
    #[test]
    fn shard_ranges_cover_their_slice_and_together_the_ring() {
        let tokens: Vec<i64> = (0..16).map(|i| (i as i64).wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)).collect();
        for n in [1u32, 3, 7] {
            let mut all = Vec::new();
            for i in 1..=n {
                let slice = shard_slice(Shard::new(i, n).unwrap());
                let r = split_ring(&tokens, 64, slice);
                check_cover(&r, slice).unwrap_or_else(|e| panic!("shard {i}/{n}: {e}"));
                // 64 parts of the slice, give or take the rounding of each vnode piece in it.
                assert!((64 - 9..=64 + 17).contains(&r.len()), "--splits applies to the shard: {} ranges", r.len());
                for &t in &tokens {
                    if slice.contains(t) && t != slice.hi {
                        assert!(r.iter().any(|x| x.hi == t), "vnode boundary {t} kept in shard {i}/{n}");
                    }
                }
                all.extend(r);
            }
            check_cover(&all, TokenRange::ring()).unwrap_or_else(|e| panic!("{n} shards together: {e}"));
            let edges = tokens.iter().flat_map(|&t| [t.saturating_sub(1), t, t.saturating_add(1)]);
            for t in edges.chain([MIN_TOKEN + 1, -1, 0, MAX_TOKEN]).filter(|&t| t != MIN_TOKEN) {
                assert_eq!(owners(&all, t), 1, "token {t} with {n} shards");
            }
        }
    }
}
