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

/// About `splits` scan ranges covering the whole ring, cut at the vnode boundaries and then evenly
/// within each vnode range (at least one part per vnode range).
pub fn split_ring(tokens: &[i64], splits: usize) -> Vec<TokenRange> {
    let total = u64::MAX as f64;
    let mut out = Vec::new();
    for r in vnode_ranges(tokens) {
        let parts = ((splits as f64) * (r.width() as f64) / total).round().max(1.0) as usize;
        out.extend(r.split(parts));
    }
    out
}

/// Checks that `ranges` cover the ring exactly once (sorted, contiguous, MIN to MAX).
pub fn check_cover(ranges: &[TokenRange]) -> Result<(), String> {
    let first = ranges.first().ok_or("no ranges")?;
    if first.lo != MIN_TOKEN {
        return Err(format!("first range {first} does not start at the minimum token"));
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
    if last.hi != MAX_TOKEN {
        return Err(format!("last range {last} does not end at the maximum token"));
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
                let r = split_ring(tokens, splits);
                check_cover(&r).unwrap_or_else(|e| panic!("tokens {tokens:?} splits {splits}: {e}"));
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
        let r = split_ring(&tokens, 64);
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
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 0), TokenRange::new(1, MAX_TOKEN)]).is_err());
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 5), TokenRange::new(4, MAX_TOKEN)]).is_err());
        assert!(check_cover(&[TokenRange::new(MIN_TOKEN, 5)]).is_err());
    }
}
