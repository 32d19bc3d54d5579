//! What a lister listed, recorded in its chunk set's manifest as `info.listing`, so that keyrecon-diff
//! can tell the shards of one listing apart from unrelated chunk sets.
//!
//! ```text
//! manifest.json  "info": { .., "listing": {"source":"s3","what":"s3://photos/2024/",
//!                                          "filters":{"start_after":"2024/03/","max_age_ms":604800000},
//!                                          "shard":{"index":2,"count":3}} }
//! ```
//! - `source`: which lister (`cassandra`, `s3`); `what`: the table (`media.objects`) or the bucket and
//!   prefix (`s3://photos/2024/`); `filters`: every flag that changes which keys are in the listing
//!   (key map, writetime window, key range, age window), as given, so that N machines running the same
//!   command at slightly different times record the same filters (`--max-age 7d`, not a timestamp).
//! - `shard`: `--shard I/N`, absent for a whole listing. Shard I of N lists a contiguous part of the
//!   source's key space (a slice of the token ring, a key range), and the N parts cover it exactly once.
//!
//! A diff side made of several chunk sets is checked by [`check_side`] before anything is read: if any
//! set is a shard, all must be shards of the same listing (source, what, filters and N equal) and each
//! index 1..=N must appear exactly once. A missing shard would otherwise show up as its keys being
//! "missing"; a doubled or foreign one would hide differences. Sets without a listing (keyrecon-sort
//! outputs) are merged without checks.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Most shards a listing may be cut into (far more machines than a listing will ever run on; keeps the
/// key-range arithmetic exact).
pub const MAX_SHARDS: u32 = 10_000;

/// Shard `index` of `count` (1-based: `2/3` is the second of three).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole listing as one shard, `1/1`.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    pub fn new(index: u32, count: u32) -> std::result::Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("the shard count must be 1 to {MAX_SHARDS}, got {count}"));
        }
        if index == 0 || index > count {
            return Err(format!("shard {index}/{count}: the index runs from 1 to {count} (1-based)"));
        }
        Ok(Shard { index, count })
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `I/N`, e.g. `2/3`. (A clap value parser.)
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("{s:?} is not a shard: use I/N, e.g. 2/3 for the second of three");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        Shard::new(i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The lister that wrote a chunk set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Cassandra,
    S3,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Cassandra => "cassandra",
            Source::S3 => "s3",
        })
    }
}

/// The flags that change which keys a listing holds, as the user gave them. Absent = not given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filters {
    /// How the partition key is written as the key: `--key-template`, or `{a}/{b}` for a key of
    /// several columns (list-cassandra; absent for a one-column key written as itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_template: Option<String>,
    /// `--key-map` rules (list-cassandra).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_map: Option<String>,
    /// `--written-after` / `--written-before`, µs since the epoch (list-cassandra).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_before: Option<i64>,
    /// `--start-after` / `--end-before` (list-s3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_before: Option<String>,
    /// `--max-age` / `--min-age` in milliseconds, relative to each listing's start (list-s3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_age_ms: Option<u64>,
    /// `--modified-since` / `--modified-before`, µs since the epoch (list-s3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_before: Option<i64>,
}

impl fmt::Display for Filters {
    /// `no filters`, or `key_map "..", written_before 1700000000000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = serde_json::to_value(self).unwrap_or_default();
        let Some(m) = v.as_object().filter(|m| !m.is_empty()) else { return f.write_str("no filters") };
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// What a chunk set lists (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub source: Source,
    /// `keyspace.table` or `s3://bucket/prefix`.
    pub what: String,
    pub filters: Filters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl Listing {
    /// The manifest key under `info`.
    pub const KEY: &'static str = "listing";

    /// The listing a manifest's `info` records, if any. `manifest` names the file in errors.
    pub fn from_info(info: &serde_json::Value, manifest: &Path) -> Result<Option<Listing>> {
        match info.get(Self::KEY) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| Error::Manifest { path: manifest.to_path_buf(), msg: format!("info.{}: {e}", Self::KEY) }),
        }
    }

    /// Same source, what and filters: shards of this listing and of `other` belong together.
    pub fn same_listing(&self, other: &Listing) -> bool {
        self.source == other.source && self.what == other.what && self.filters == other.filters
    }
}

impl fmt::Display for Listing {
    /// `media.objects`, `s3://photos/ shard 2/3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        if let Some(s) = self.shard {
            write!(f, " shard {s}")?;
        }
        Ok(())
    }
}

/// Checks the chunk sets of one diff side, given as `(name, listing)` in the order the user gave them,
/// and returns the order to merge them in: by shard index when they are shards (so ties between equal
/// keys go to the lowest shard, as in an unsharded listing), else as given.
///
/// Errors name the problem and the sets: `shard 2/3 of s3://photos/ is missing`, `shard 1/3 is given
/// twice (a/ and b/)`, `a/ lists media.objects, b/ lists media.other`, `a/ is a shard of 3, b/ of 4`.
pub fn check_side(sets: &[(String, Option<Listing>)]) -> Result<Vec<usize>> {
    let Some(first) = sets.iter().position(|(_, l)| l.as_ref().is_some_and(|l| l.shard.is_some())) else {
        return Ok((0..sets.len()).collect());
    };
    let (fname, fl) = (&sets[first].0, sets[first].1.as_ref().unwrap());
    let fshard = fl.shard.unwrap();
    let err = |msg: String| Err(Error::Shards(msg));
    for (name, l) in sets {
        let Some(l) = l else {
            return err(format!(
                "{fname} is shard {fshard} of {}, {name} is not a shard of a listing: a side made of shards \
                 takes only the shards of one listing",
                fl.what
            ));
        };
        if l.source != fl.source || l.what != fl.what {
            return err(format!("{fname} lists {}, {name} lists {}", fl.what, l.what));
        }
        if l.filters != fl.filters {
            return err(format!("{fname} lists {} with {}, {name} lists it with {}", fl.what, fl.filters, l.filters));
        }
        let Some(s) = l.shard else {
            return err(format!("{fname} is shard {fshard} of {}, {name} is the whole listing", fl.what));
        };
        if s.count != fshard.count {
            return err(format!("{fname} is a shard of {}, {name} of {}", fshard.count, s.count));
        }
    }
    let n = fshard.count as usize;
    let mut by_index: Vec<Option<usize>> = vec![None; n];
    for (i, (name, l)) in sets.iter().enumerate() {
        let s = l.as_ref().and_then(|l| l.shard).unwrap();
        let slot = &mut by_index[s.index as usize - 1];
        if let Some(j) = *slot {
            return err(format!("shard {s} is given twice ({} and {name})", sets[j].0));
        }
        *slot = Some(i);
    }
    let missing: Vec<String> = (0..n)
        .filter(|&i| by_index[i].is_none())
        .map(|i| Shard { index: i as u32 + 1, count: n as u32 }.to_string())
        .collect();
    match missing.len() {
        0 => Ok(by_index.into_iter().map(|i| i.unwrap()).collect()),
        1 => err(format!("shard {} of {} is missing", missing[0], fl.what)),
        _ => err(format!("shards {} of {} are missing", missing.join(", "), fl.what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(prefix: &str, shard: Option<(u32, u32)>) -> Option<Listing> {
        Some(Listing {
            source: Source::S3,
            what: format!("s3://photos/{prefix}"),
            filters: Filters::default(),
            shard: shard.map(|(index, count)| Shard { index, count }),
        })
    }

    fn check(sets: Vec<(&str, Option<Listing>)>) -> std::result::Result<Vec<usize>, String> {
        let sets: Vec<(String, Option<Listing>)> = sets.into_iter().map(|(n, l)| (n.to_string(), l)).collect();
        check_side(&sets).map_err(|e| e.to_string())
    }

    #[test]
    fn shards_parse_and_print() {
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { index: 2, count: 3 });
        assert_eq!(" 1 / 1 ".parse::<Shard>().unwrap(), Shard::WHOLE);
        assert_eq!(Shard { index: 7, count: 7 }.to_string(), "7/7");
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "-1/3", "1/10001", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
        assert!("0/3".parse::<Shard>().unwrap_err().contains("1-based"));
    }

    #[test]
    fn side_checks_table() {
        // Sets that are not shards: merged as given, without checks.
        assert_eq!(check(vec![("a/", None), ("b/", None)]), Ok(vec![0, 1]));
        assert_eq!(check(vec![("a/", s3("", None)), ("b/", s3("x/", None))]), Ok(vec![0, 1]));
        // A complete set of shards, in any order, comes back in shard order.
        assert_eq!(
            check(vec![("c/", s3("", Some((3, 3)))), ("a/", s3("", Some((1, 3)))), ("b/", s3("", Some((2, 3))))]),
            Ok(vec![1, 2, 0])
        );
        assert_eq!(check(vec![("a/", s3("", Some((1, 1))))]), Ok(vec![0]));
        type Case<'a> = (Vec<(&'a str, Option<Listing>)>, &'a str);
        let cases: Vec<Case> = vec![
            (vec![("a/", s3("", Some((1, 3)))), ("c/", s3("", Some((3, 3))))], "shard 2/3 of s3://photos/ is missing"),
            (vec![("b/", s3("", Some((2, 3))))], "shards 1/3, 3/3 of s3://photos/ are missing"),
            (
                vec![("a/", s3("", Some((1, 3)))), ("b/", s3("", Some((1, 3)))), ("c/", s3("", Some((2, 3))))],
                "shard 1/3 is given twice (a/ and b/)",
            ),
            (
                vec![("a/", s3("", Some((1, 2)))), ("b/", s3("x/", Some((2, 2))))],
                "a/ lists s3://photos/, b/ lists s3://photos/x/",
            ),
            (vec![("a/", s3("", Some((1, 3)))), ("b/", s3("", Some((2, 4))))], "a/ is a shard of 3, b/ of 4"),
            (vec![("a/", None), ("b/", s3("", Some((1, 1))))], "b/ is shard 1/1 of s3://photos/, a/ is not a shard"),
            (vec![("a/", s3("", Some((1, 2)))), ("b/", s3("", None))], "b/ is the whole listing"),
        ];
        for (sets, want) in cases {
            let got = check(sets.clone()).unwrap_err();
            assert!(got.contains(want), "{sets:?}:\n got {got}\nwant {want}");
        }
        // Other filters: a different listing, named with both filter sets.
        let mut other = s3("", Some((2, 2))).unwrap();
        other.filters.max_age_ms = Some(1000);
        let e = check(vec![("a/", s3("", Some((1, 2)))), ("b/", Some(other))]).unwrap_err();
        assert!(e.contains("a/ lists s3://photos/ with no filters, b/ lists it with max_age_ms 1000"), "{e}");
        // Another source with the same name is another listing.
        let mut cass = s3("", Some((2, 2))).unwrap();
        cass.source = Source::Cassandra;
        assert!(check(vec![("a/", s3("", Some((1, 2)))), ("b/", Some(cass))]).is_err());
    }

    #[test]
    fn listing_round_trips_through_manifest_info() {
        let l = s3("2024/", Some((2, 3))).unwrap();
        let info = serde_json::json!({ "bucket": "photos", Listing::KEY: l });
        assert_eq!(Listing::from_info(&info, Path::new("m")).unwrap(), Some(l));
        assert_eq!(Listing::from_info(&serde_json::json!({}), Path::new("m")).unwrap(), None);
        assert_eq!(Listing::from_info(&serde_json::Value::Null, Path::new("m")).unwrap(), None);
        let e = Listing::from_info(&serde_json::json!({"listing": {"source": "ftp"}}), Path::new("m")).unwrap_err();
        assert!(e.to_string().starts_with("m: info.listing:"), "{e}");
    }
}
