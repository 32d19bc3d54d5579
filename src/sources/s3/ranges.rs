//! Key-space ranges for parallel listing, and how to split one in two.
//!
//! A range is `(after, end)`: the keys `k` with `after < k` (no lower bound when `after` is `None`) and
//! `k` admitted by `end` (below an exclusive bound, up to an inclusive one, or unbounded). This shape
//! matches what S3 offers: `StartAfter` is an exclusive lower bound, and a stream stops by itself once it
//! sees a key past its end. Splitting `(after, end)` at `mid` gives `(after, Incl(mid))` and
//! `(mid, end)`: every key lands in exactly one half, whatever `mid` is, so ranges never overlap and
//! never leave gaps; `mid` only decides how evenly the work is shared.
//!
//! S3 keys are UTF-8 and S3 sorts them in byte order, which for UTF-8 is code-point order. `mid` must be
//! valid UTF-8 itself (it is sent as `StartAfter`), so split points are computed on code points, never on
//! raw bytes (the byte midpoint of two keys is often not UTF-8). A split point is at most 1024 bytes
//! long (S3's key limit) or there is no split.
//!
//! The keys a bucket holds are unknown before listing them, so split points are guesses: an unbounded
//! end is taken as "the printable ASCII above the prefix" first (most keys are ASCII), and work stealing
//! keeps splitting the widest remaining range whenever a stream runs dry, so a bad guess costs one short
//! request, not parallelism.
//!
//! Shards (`--shard I/N`, N machines listing one bucket): shard I lists `(b[I-1], b[I]]`, where
//! `b[0]` is `--start-after` (or nothing), `b[N]` the listing's end, and the N-1 boundaries
//! ([`shard_bounds`]) depend on (prefix, start-after, end-before, N) only, so every machine computes the
//! same. They are evenly spaced over the printable-ASCII key space above the prefix (keys read as
//! base-95 fractions of ' '..='~', exact integer arithmetic), between the listing's lower end and its
//! end (or `prefix + DEL`, the soft cap, when open). Whatever the boundaries, they are non-decreasing,
//! so every key falls in exactly one shard; they only decide how evenly the shards share the keys:
//! keys above `~` after the prefix (non-ASCII) all fall in the last shard, and a key space whose ends
//! differ only in non-ASCII characters is cut by repeated bisection with [`split_point`] instead.

/// The upper end of a range.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum End {
    /// No upper bound (within the listing prefix).
    Open,
    /// Keys `<= k` (made by splits).
    Incl(Vec<u8>),
    /// Keys `< k` (`--end-before`).
    Excl(Vec<u8>),
}

impl End {
    /// True if `key` is below this end.
    #[inline]
    pub fn admits(&self, key: &[u8]) -> bool {
        match self {
            End::Open => true,
            End::Incl(k) => key <= &k[..],
            End::Excl(k) => key < &k[..],
        }
    }
    fn bound(&self) -> Option<&[u8]> {
        match self {
            End::Open => None,
            End::Incl(k) | End::Excl(k) => Some(k),
        }
    }
}

/// True if `key` is in the range of the keys after `after` (`None`: from the start) up to `end`.
pub fn contains(after: Option<&[u8]>, end: &End, key: &[u8]) -> bool {
    after.is_none_or(|a| key > a) && end.admits(key)
}

/// Longest split point we produce: S3 keys (and so useful `StartAfter` values) are at most 1024 bytes.
pub const MAX_KEY: usize = 1024;

/// The last code point of the printable ASCII range used as a soft upper end for open ranges.
const SOFT_CAP: u32 = 0x7F;

/// The first printable character (space): split points avoid control characters when they can.
const PRINTABLE: u32 = 0x20;

/// A key `mid` with `lo < mid` and `mid` strictly inside `end` (for an inclusive end, `mid < end` so
/// both halves are non-empty key spaces), valid UTF-8, or `None` if there is no such key (or only
/// keys longer than [`MAX_KEY`]). `prefix` is the listing prefix; it guides guesses for open ends.
pub fn split_point(lo: &[u8], end: &End, prefix: &[u8]) -> Option<Vec<u8>> {
    let lo_c = code_points(lo)?;
    let mid = match end.bound() {
        Some(hi) => {
            if lo >= hi {
                return None;
            }
            mid_between(&lo_c, &code_points(hi)?)?
        }
        None => {
            let mut soft = code_points(prefix)?;
            soft.push(SOFT_CAP);
            if lo_c < soft {
                mid_between(&lo_c, &soft)?
            } else {
                mid_above(&lo_c)
            }
        }
    };
    // No control characters in split points unless the keys around have them: servers echo StartAfter
    // in XML, where most control characters cannot appear (the range just stays whole).
    if mid.iter().any(|&c| c < PRINTABLE) && !lo_c.iter().any(|&c| c < PRINTABLE) {
        return None;
    }
    let mid = to_utf8(&mid);
    debug_assert!(&mid[..] > lo && end.admits(&mid) && end.bound() != Some(&mid[..]));
    (mid.len() <= MAX_KEY).then_some(mid)
}

/// The first printable ASCII character and how many there are (' '..='~'): the digits of shard
/// boundaries.
const DIGIT0: u32 = 0x20;
const DIGITS: u128 = 95;
/// Base-95 places of a position in the key space: 95^16 (~2^105) times the largest shard count still
/// fits in a u128.
const PLACES: u32 = 16;

/// The N-1 boundaries of `count` shards of the listing `prefix`, `start_after`, `end_before` (see the
/// module doc): non-decreasing, each above the listing's lower end and, where the key space allows,
/// strictly inside it. The same inputs give the same boundaries on every machine.
pub fn shard_bounds(prefix: &str, start_after: Option<&str>, end_before: Option<&str>, count: u32) -> Vec<Vec<u8>> {
    let n = count.max(1) as usize;
    let lo = start_after.map_or(prefix, |s| s.max(prefix));
    let soft = format!("{prefix}\u{7f}");
    let hi = end_before.map_or(soft.as_str(), |e| e.min(soft.as_str()));
    if n == 1 {
        return Vec::new();
    }
    if lo >= hi {
        // No key can be listed: any boundaries do; all shards are empty.
        return vec![lo.as_bytes().to_vec(); n - 1];
    }
    let (lc, hc): (Vec<char>, Vec<char>) = (lo.chars().collect(), hi.chars().collect());
    let c = lc.iter().zip(&hc).take_while(|(a, b)| a == b).count();
    let base: String = lc[..c].iter().collect();
    let (l, h) = (position(&lc[c..]), position(&hc[c..]));
    if h > l {
        // The fewest places that keep the boundaries distinct and inside (lo, hi): short StartAfter values.
        for places in 1..=PLACES {
            let unit = DIGITS.pow(PLACES - places);
            let keys: Vec<Vec<u8>> = (1..n as u128)
                .map(|j| {
                    let v = (l + (h - l) * j / n as u128) / unit;
                    let mut k = base.clone().into_bytes();
                    k.extend(digits(v, places).trim_end_matches(' ').bytes());
                    k
                })
                .collect();
            let inside = keys.first().is_some_and(|k| &k[..] > lo.as_bytes())
                && keys.last().is_some_and(|k| &k[..] < hi.as_bytes())
                && keys.windows(2).all(|w| w[0] < w[1]);
            if inside {
                return keys;
            }
        }
    }
    // The ends differ only where printable ASCII cannot tell them apart: halve with split_point.
    let end = end_before.map_or(End::Open, |e| End::Excl(e.as_bytes().to_vec()));
    let mut out = Vec::with_capacity(n - 1);
    bisect(lo.as_bytes(), &end, prefix.as_bytes(), n, &mut out);
    out
}

/// Shard `index` (1-based) of `count` of the listing: the range `(after, end)` its lister starts with.
pub fn shard_range(
    prefix: &str,
    start_after: Option<&str>,
    end_before: Option<&str>,
    index: u32,
    count: u32,
) -> (Option<Vec<u8>>, End) {
    let b = shard_bounds(prefix, start_after, end_before, count);
    let i = index.clamp(1, count.max(1)) as usize;
    // Clamped to the listing's own ends (the boundaries lie inside them already; this keeps the
    // shards inside the listing whatever they are).
    let sa = start_after.map(|s| s.as_bytes().to_vec());
    let after = if i == 1 { sa } else { Some(b[i - 2].clone()).max(sa) };
    let listing_end = end_before.map_or(End::Open, |e| End::Excl(e.as_bytes().to_vec()));
    let end = match (i == count.max(1) as usize, end_before) {
        (true, _) => listing_end,
        (false, Some(e)) if e.as_bytes() <= &b[i - 1][..] => listing_end,
        (false, _) => End::Incl(b[i - 1].clone()),
    };
    (after, end)
}

/// Where a key tail sits in the printable-ASCII key space: a [`PLACES`]-digit base-95 number whose
/// digits are the characters ' '..='~'. A control character counts as the lowest digit and a character
/// above '~' as one past the highest (carrying into the place before), and both end the number; so
/// the position never decreases as keys increase.
fn position(tail: &[char]) -> u128 {
    let mut v = 0u128;
    for (i, &c) in tail.iter().take(PLACES as usize).enumerate() {
        let w = DIGITS.pow(PLACES - 1 - i as u32);
        let c = c as u32;
        if c < DIGIT0 {
            break;
        }
        if c as u128 >= DIGIT0 as u128 + DIGITS {
            v += DIGITS * w;
            break;
        }
        v += (c - DIGIT0) as u128 * w;
    }
    v
}

/// `v` (< 95^places) as `places` printable ASCII characters.
fn digits(mut v: u128, places: u32) -> String {
    let mut d = vec![' '; places as usize];
    for slot in d.iter_mut().rev() {
        *slot = char::from_u32(DIGIT0 + (v % DIGITS) as u32).unwrap_or('~');
        v /= DIGITS;
    }
    d.into_iter().collect()
}

/// The boundaries of `n` parts of `(lo, end)` by repeated halving at [`split_point`]; where a part cannot
/// be split, its lower parts are empty (boundary = `lo`).
fn bisect(lo: &[u8], end: &End, prefix: &[u8], n: usize, out: &mut Vec<Vec<u8>>) {
    if n <= 1 {
        return;
    }
    match split_point(lo, end, prefix) {
        None => out.extend(std::iter::repeat_n(lo.to_vec(), n - 1)),
        Some(mid) => {
            let left = n / 2;
            bisect(lo, &End::Incl(mid.clone()), prefix, left, out);
            out.push(mid.clone());
            bisect(&mid, end, prefix, n - left, out);
        }
    }
}

/// An estimate of how many keys could lie in `(lo, end)`, as log2 of the width of that interval when
/// keys are read as base-256 fractions. Only compared with other widths (which range to split next, is
/// a range still wider than a page). `-inf` for an empty interval.
pub fn width(lo: &[u8], end: &End, prefix: &[u8]) -> f64 {
    let soft;
    let hi: &[u8] = match end.bound() {
        Some(h) => h,
        None => {
            let mut s = prefix.to_vec();
            s.push(if lo.get(prefix.len()).is_some_and(|&b| b as u32 >= SOFT_CAP) { 0xF5 } else { 0x80 });
            soft = s;
            &soft
        }
    };
    span(lo, hi)
}

/// log2 of `hi - lo` read as base-256 fractions (8 significant bytes after their common prefix).
pub fn span(lo: &[u8], hi: &[u8]) -> f64 {
    if lo >= hi {
        return f64::NEG_INFINITY;
    }
    let c = lo.iter().zip(hi).take_while(|(a, b)| a == b).count();
    let frac =
        |k: &[u8]| (0..8).fold(0.0f64, |acc, i| acc + *k.get(c + i).unwrap_or(&0) as f64 / 256f64.powi(i as i32 + 1));
    let d = frac(hi) - frac(lo);
    // A positive difference beyond 8 bytes rounds to 0: call it one unit of the last byte.
    let d = if d > 0.0 { d } else { 256f64.powi(-8) };
    d.log2() - 8.0 * c as f64
}

fn code_points(b: &[u8]) -> Option<Vec<u32>> {
    std::str::from_utf8(b).ok().map(|s| s.chars().map(|c| c as u32).collect())
}

fn to_utf8(cps: &[u32]) -> Vec<u8> {
    cps.iter().filter_map(|&c| char::from_u32(c)).collect::<String>().into_bytes()
}

fn is_scalar(c: u32) -> bool {
    char::from_u32(c).is_some()
}

/// A code point strictly between `a` and `b`, near their middle, or `None`.
fn between(a: u32, b: u32) -> Option<u32> {
    if b <= a + 1 {
        return None;
    }
    let mut m = a + (b - a) / 2;
    // Prefer a printable split point: servers echo StartAfter in XML, where control characters break.
    if m < PRINTABLE && a < PRINTABLE && PRINTABLE < b {
        m = PRINTABLE;
    }
    if is_scalar(m) {
        return Some(m);
    }
    // Surrogates (U+D800..U+DFFF) are not characters: step over the gap.
    [0xE000, 0xD7FF].into_iter().find(|&m| a < m && m < b)
}

/// A sequence greater than `r` (no upper bound), a modest step above it.
fn mid_above(r: &[u32]) -> Vec<u32> {
    for (i, &c) in r.iter().enumerate() {
        let cap = if c < SOFT_CAP - 1 { SOFT_CAP } else { 0x11_0000 };
        if let Some(m) = between(c, cap) {
            let mut v = r[..i].to_vec();
            v.push(m);
            return v;
        }
    }
    let mut v = r.to_vec();
    v.push(0x40);
    v
}

/// A sequence strictly between `lo` and `hi` (`lo < hi`), or `None` if there is none.
fn mid_between(lo: &[u32], hi: &[u32]) -> Option<Vec<u32>> {
    let c = lo.iter().zip(hi).take_while(|(a, b)| a == b).count();
    if c == lo.len() {
        // lo is a proper prefix of hi: lo + [m] with m < hi[c] fits, as does lo + [0] when hi goes on.
        let b = hi[c];
        let mut v = lo.to_vec();
        if b >= 1 {
            let m = if b > PRINTABLE { (b / 2).max(PRINTABLE) } else { b / 2 };
            v.push(if is_scalar(m) { m } else { 0xD7FF });
            return Some(v);
        }
        if hi.len() > c + 1 {
            v.push(0);
            return Some(v);
        }
        return None;
    }
    let (a, b) = (lo[c], hi[c]);
    let mut v = lo[..c].to_vec();
    match between(a, b) {
        Some(m) => v.push(m),
        None => {
            // Adjacent characters: keep lo's and go one level deeper, anything above lo's tail fits.
            v.push(a);
            v.extend(mid_above(&lo[c + 1..]));
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lo: &str, end: End, prefix: &str) -> Option<String> {
        let m = split_point(lo.as_bytes(), &end, prefix.as_bytes())?;
        let s = String::from_utf8(m.clone()).expect("split point is UTF-8");
        assert!(m.as_slice() > lo.as_bytes(), "{s:?} > {lo:?}");
        assert!(end.admits(&m), "{s:?} inside {end:?}");
        if let End::Incl(h) = &end {
            assert!(m < *h, "{s:?} < {h:?} so both halves are non-empty");
        }
        Some(s)
    }

    #[test]
    fn split_points_table() {
        let cases: &[(&str, End, &str)] = &[
            ("", End::Open, ""),
            ("", End::Incl(b"b".to_vec()), ""),
            ("a", End::Incl(b"b".to_vec()), ""),
            ("a", End::Incl(b"a0".to_vec()), ""),
            ("a\x01", End::Excl(b"a\x03".to_vec()), ""),
            ("ab", End::Incl(b"ac".to_vec()), ""),
            ("abz~~", End::Incl(b"ac".to_vec()), ""),
            ("0000", End::Open, ""),
            ("logs/2024/01/05/abc", End::Open, "logs/"),
            ("logs/", End::Open, "logs/"),
            ("é", End::Incl("ê".as_bytes().to_vec()), ""),
            ("\u{D7FF}", End::Incl("\u{E001}".as_bytes().to_vec()), ""),
            ("\u{D7FE}", End::Incl("\u{E000}".as_bytes().to_vec()), ""),
            ("~~~", End::Open, ""),
            ("\u{10FFFF}\u{10FFFF}", End::Open, ""),
            ("日本", End::Open, ""),
            ("a b+c%20/", End::Incl("a b+c%20/x".as_bytes().to_vec()), ""),
        ];
        for (lo, end, prefix) in cases {
            assert!(check(lo, end.clone(), prefix).is_some(), "no split point for {lo:?} {end:?}");
        }
        // No key strictly between a key and its successor-by-NUL, or past an exclusive end.
        assert_eq!(check("a", End::Incl(b"a\0".to_vec()), ""), None);
        assert_eq!(check("", End::Incl(b" ".to_vec()), ""), None, "only control characters below a space");
        assert_eq!(check("b", End::Excl(b"b".to_vec()), ""), None);
        assert_eq!(check("c", End::Incl(b"b".to_vec()), ""), None);
        // Too long to be a key.
        let long = "x".repeat(MAX_KEY);
        let long_hi = format!("{long}\u{1}");
        assert_eq!(check(&long, End::Incl(long_hi.into_bytes()), ""), None);
    }

    #[test]
    fn split_points_avoid_control_characters() {
        for (lo, hi) in [("", "0"), ("", "\""), ("a", "a0"), ("ab", "b")] {
            let m = check(lo, End::Incl(hi.as_bytes().to_vec()), "").unwrap();
            assert!(m.chars().all(|c| c >= ' '), "{lo:?} {hi:?} -> {m:?}");
        }
    }

    #[test]
    fn split_points_stay_in_ascii_for_ascii_keys() {
        let m = check("", End::Open, "").unwrap();
        assert!(m.is_ascii() && m.as_str() > "" && m.as_str() < "\u{7f}", "{m:?}");
        let m = check("data/", End::Open, "data/").unwrap();
        assert!(m.starts_with("data/"), "{m:?}");
    }

    /// Repeated splitting of random ranges over random UTF-8 keys: each split partitions the keys
    /// exactly (the property the parallel lister relies on).
    #[test]
    fn splits_partition_random_keys() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "ab/ ~+%\u{0}\u{7f}é日\u{D7FF}\u{E000}\u{10FFFF}".chars().collect();
        let mut keys: Vec<Vec<u8>> = (0..2000)
            .map(|_| {
                let n = rng.gen_range(0..6);
                (0..n).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect::<String>().into_bytes()
            })
            .collect();
        keys.sort();
        keys.dedup();
        let mut ranges = vec![(None::<Vec<u8>>, End::Open)];
        for _ in 0..300 {
            let i = rng.gen_range(0..ranges.len());
            let (after, end) = ranges[i].clone();
            let lo = after.clone().unwrap_or_default();
            if let Some(mid) = split_point(&lo, &end, b"") {
                ranges[i].1 = End::Incl(mid.clone());
                ranges.push((Some(mid), end));
            }
        }
        assert!(ranges.len() > 100);
        for k in &keys {
            let n = ranges.iter().filter(|(a, e)| a.as_ref().is_none_or(|a| k > a) && e.admits(k)).count();
            assert_eq!(n, 1, "key {k:?} in {n} ranges");
        }
    }

    /// Is `key` in the shard range `(after, end)`?
    fn in_range(key: &[u8], (after, end): &(Option<Vec<u8>>, End)) -> bool {
        after.as_ref().is_none_or(|a| key > &a[..]) && end.admits(key)
    }

    #[test]
    fn one_shard_is_the_whole_listing() {
        assert!(shard_bounds("", None, None, 1).is_empty());
        assert_eq!(shard_range("", None, None, 1, 1), (None, End::Open));
        assert_eq!(
            shard_range("p/", Some("p/a"), Some("p/z"), 1, 1),
            (Some(b"p/a".to_vec()), End::Excl(b"p/z".to_vec()))
        );
    }

    /// The boundaries are part of what shards of one listing agree on, across machines and versions: a
    /// change here makes shards listed by different keyrecon versions overlap or leave gaps. Pinned.
    #[test]
    fn shard_boundaries_are_pinned() {
        let s = |v: Vec<Vec<u8>>| v.into_iter().map(|k| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
        assert_eq!(s(shard_bounds("", None, None, 3)), ["?", "_"]);
        assert_eq!(s(shard_bounds("", None, None, 7)), ["-", ";", "H", "V", "c", "q"]);
        assert_eq!(s(shard_bounds("logs/", None, None, 2)), ["logs/O"]);
        // Between --start-after and --end-before: evenly spaced between them, one place deeper.
        assert_eq!(s(shard_bounds("", Some("a"), Some("b"), 3)), ["a?", "a_"]);
        for _ in 0..3 {
            assert_eq!(shard_bounds("x/", Some("x/2024"), None, 7), shard_bounds("x/", Some("x/2024"), None, 7));
        }
    }

    /// The property sharding relies on: every key of the listing is in exactly one shard, every other
    /// key in none, whatever the prefix, bounds and shard count; boundaries are UTF-8 and in order.
    #[test]
    fn every_key_is_in_exactly_one_shard() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let alphabet: Vec<char> = "ab/ ~+%0\u{0}\u{1f}\u{7f}é日\u{D7FF}\u{E000}\u{10FFFF}".chars().collect();
        let random_key = |rng: &mut rand::rngs::StdRng, prefix: &str| {
            let n = rng.gen_range(0..6);
            let tail: String = (0..n).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
            if rng.gen_bool(0.8) {
                format!("{prefix}{tail}")
            } else {
                tail
            }
        };
        let listings: Vec<(&str, Option<&str>, Option<&str>)> = vec![
            ("", None, None),
            ("a", None, None),
            ("a/", Some("a/b"), None),
            ("", Some("a"), Some("b")),
            ("", Some("b"), Some("a")),
            ("", None, Some("a/\u{7f}")),
            ("日", None, None),
            ("", Some("t\u{3042}"), Some("t\u{3044}")),
            ("", Some("a\u{1}"), Some("a\u{2}")),
            ("~", Some("~~~~~~~~~~~~~~~~~~~~"), None),
            ("", Some("~"), Some("~\u{0}")),
        ];
        for (prefix, sa, eb) in listings {
            for n in [1u32, 2, 3, 7, 64] {
                let b = shard_bounds(prefix, sa, eb, n);
                assert_eq!(b.len(), n as usize - 1);
                assert!(b.windows(2).all(|w| w[0] <= w[1]), "{prefix:?} {sa:?} {eb:?} {n}: not in order {b:?}");
                for k in &b {
                    assert!(std::str::from_utf8(k).is_ok() && k.len() <= MAX_KEY, "{k:?}");
                }
                let shards: Vec<_> = (1..=n).map(|i| shard_range(prefix, sa, eb, i, n)).collect();
                let mut keys: Vec<Vec<u8>> = (0..1500).map(|_| random_key(&mut rng, prefix).into_bytes()).collect();
                for k in &b {
                    let mut next = k.clone();
                    next.push(0);
                    keys.extend([k.clone(), next, [&k[..], b" "].concat(), k[..k.len().saturating_sub(1)].to_vec()]);
                }
                keys.extend([sa, eb].into_iter().flatten().map(|k| k.as_bytes().to_vec()));
                keys.push(prefix.as_bytes().to_vec());
                for k in &keys {
                    let listed = k.starts_with(prefix.as_bytes())
                        && sa.is_none_or(|a| &k[..] > a.as_bytes())
                        && eb.is_none_or(|e| &k[..] < e.as_bytes());
                    let owners = shards.iter().filter(|r| in_range(k, r)).count();
                    // A key outside the prefix may sit inside a range (the lister never sees it).
                    if k.starts_with(prefix.as_bytes()) {
                        assert_eq!(
                            owners, listed as usize,
                            "{k:?} in {owners} of {n} shards of {prefix:?} {sa:?} {eb:?}: {b:?}"
                        );
                    } else {
                        assert!(owners <= 1, "{k:?} in {owners} shards");
                    }
                }
            }
        }
    }

    #[test]
    fn shard_boundaries_are_distinct_and_spread_when_the_key_space_allows() {
        use rand::{Rng, SeedableRng};
        for (prefix, sa, eb) in [
            ("", None, None),
            ("img/", None, None),
            ("", Some("t01"), Some("t02")),
            ("", Some("t\u{3042}"), Some("t\u{3044}")),
        ] {
            let b = shard_bounds(prefix, sa, eb, 7);
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{prefix:?} {sa:?} {eb:?}: {b:?}");
        }
        // Uniform printable keys under a prefix: every one of 7 shards gets a fair part.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let shards: Vec<_> = (1..=7).map(|i| shard_range("img/", None, None, i, 7)).collect();
        let mut counts = [0usize; 7];
        for _ in 0..7000 {
            let k: String = (0..8).map(|_| char::from(rng.gen_range(0x20u8..0x7f))).collect();
            let k = format!("img/{k}");
            counts[shards.iter().position(|r| in_range(k.as_bytes(), r)).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| (700..=1300).contains(&c)), "{counts:?}");
    }

    #[test]
    fn widths_order_ranges() {
        assert!(width(b"", &End::Open, b"") > width(b"m", &End::Open, b""));
        assert!(width(b"a", &End::Incl(b"z".to_vec()), b"") > width(b"a", &End::Incl(b"b".to_vec()), b""));
        assert!(width(b"abc", &End::Incl(b"abd".to_vec()), b"") > width(b"abcd", &End::Incl(b"abce".to_vec()), b""));
        assert_eq!(width(b"b", &End::Incl(b"a".to_vec()), b""), f64::NEG_INFINITY);
    }
}
