//! The range scheduler of keyrecon-list-s3: which key range each stream lists next, work stealing by
//! splitting the widest active range, and how many keys each page asks for.
//!
//! ```text
//!  Sched (under one mutex): ranges [(after, end, pos, state)]
//!   pending ───────────────────────────────► a stream takes a pending range, or
//!   split(widest active) = (after, Incl(mid)) + (mid, end)   steals the upper half of the widest one
//!   pos := last key of each page (admit) ◄── the keys of a page that its range's end admits
//! ```
//! Invariants: a key is written only by the range that holds it, and only after `pos` (under the
//! mutex) covers it, and a split point is always above `pos`; so a split never takes a key already
//! written, and never leaves one out.

use super::checkpoint::{CheckpointSettings, SavedRange, Snapshot};
use super::listxml::Page;
use super::ranges::{self, End};
use crate::error::Result;
use std::collections::VecDeque;

/// Keys asked for in the first page of a range split off another: it may well be empty (a split point
/// in a gap of the key space), and then a full page would be server work thrown away.
const PROBE_KEYS: i32 = 100;
/// log2 of the number of pages a range must have left (by its last page's width) to be split.
const MIN_SPLIT_PAGES_LOG2: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum St {
    Pending,
    Active,
    Done,
    Failed,
}

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) after: Option<Vec<u8>>,
    pub(super) end: End,
    /// Last key listed (and written, if inside the age window) by this range's stream.
    pub(super) pos: Option<Vec<u8>>,
    pub(super) state: St,
    /// log2 width of the last page (see [`ranges::width`]); a range narrower than 8 pages is not split.
    pub(super) page_width: f64,
    /// The range this one was split from, and keys this one listed: an empty split-off range means the
    /// parent's split point was a bad guess (e.g. the empty key space above the last key).
    pub(super) parent: Option<usize>,
    pub(super) listed: u64,
    /// log2 of extra pages required before this range is split again (+1 per empty split-off range).
    pub(super) split_penalty: f64,
}

impl Slot {
    pub(super) fn new(after: Option<Vec<u8>>, end: End) -> Slot {
        Slot {
            after,
            end,
            pos: None,
            state: St::Pending,
            page_width: f64::NEG_INFINITY,
            parent: None,
            listed: 0,
            split_penalty: 0.0,
        }
    }
    pub(super) fn lo<'a>(&'a self, prefix: &'a [u8]) -> &'a [u8] {
        self.pos.as_deref().or(self.after.as_deref()).map_or(prefix, |k| k.max(prefix))
    }
    /// A range of an interrupted run, continuing after the last key its chunks hold.
    pub(super) fn resumed(r: SavedRange) -> Slot {
        let mut s = Slot::new(r.after, r.end);
        s.pos = r.pos;
        if r.done {
            s.state = St::Done;
        }
        s
    }
}

pub(super) enum Next {
    Work(usize),
    Wait,
    Finished,
}

pub(super) struct Sched {
    pub(super) slots: Vec<Slot>,
    /// Ranges may be split blindly (before their first page) until there are this many.
    pub(super) initial_streams: usize,
    pub(super) pending: VecDeque<usize>,
    pub(super) active: usize,
    pub(super) splits: u64,
    /// What the checkpoint records besides the ranges (`None`: nothing is checkpointed, lines output),
    /// and how many times the range set changed.
    pub(super) checkpoint: Option<CheckpointSettings>,
    pub(super) version: u64,
}

impl Sched {
    /// The next range to list, and the snapshot to persist when the range set changed (a split).
    pub(super) fn next_work(&mut self, prefix: &[u8]) -> Result<(Next, Option<Snapshot>)> {
        if let Some(i) = self.pending.pop_front() {
            self.slots[i].state = St::Active;
            self.active += 1;
            return Ok((Next::Work(i), None));
        }
        if self.active == 0 {
            return Ok((Next::Finished, None));
        }
        // Work stealing: split the widest active range that is more than two pages wide.
        let mut best: Option<(f64, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if s.state != St::Active {
                continue;
            }
            // Only a stream that has returned a page is split (its page width says how much is left;
            // splitting fresh ranges would let idle workers split each other's empty ranges forever),
            // except for the first range, before any page, to start all streams at once.
            let fresh = s.pos.is_none() && self.slots.len() < self.initial_streams;
            if s.pos.is_none() && !fresh {
                continue;
            }
            let w = ranges::width(s.lo(prefix), &s.end, prefix);
            // Each split wastes about one page (the old stream's page that crosses the split point), so
            // only ranges with an estimated 8+ pages left are worth it.
            if w == f64::NEG_INFINITY || (s.pos.is_some() && w <= s.page_width + MIN_SPLIT_PAGES_LOG2 + s.split_penalty)
            {
                continue;
            }
            if best.is_none_or(|(bw, _)| w > bw) {
                best = Some((w, i));
            }
        }
        let Some((_, i)) = best else {
            return Ok((Next::Wait, None));
        };
        let s = &self.slots[i];
        let Some(mid) = ranges::split_point(s.lo(prefix), &s.end, prefix) else {
            return Ok((Next::Wait, None));
        };
        let upper = std::mem::replace(&mut self.slots[i].end, End::Incl(mid.clone()));
        let mut new = Slot::new(Some(mid), upper);
        new.state = St::Active;
        new.parent = Some(i);
        self.slots.push(new);
        self.active += 1;
        self.splits += 1;
        Ok((Next::Work(self.slots.len() - 1), self.snapshot()?))
    }

    pub(super) fn finish(&mut self, i: usize, state: St) -> Result<Option<Snapshot>> {
        self.slots[i].state = state;
        if state == St::Done && self.slots[i].listed == 0 {
            if let Some(p) = self.slots[i].parent {
                self.slots[p].split_penalty += 1.0;
            }
        }
        self.active -= 1;
        self.snapshot()
    }

    /// Serializes the range set after a change, to be written by [`CheckpointFile::persist`] once the
    /// mutex is released. `None` when nothing is checkpointed (lines output).
    pub(super) fn snapshot(&mut self) -> Result<Option<Snapshot>> {
        let Some(settings) = &self.checkpoint else { return Ok(None) };
        self.version += 1;
        let ranges = self.slots.iter().map(|s| (s.after.as_deref(), &s.end, s.state == St::Done));
        Snapshot::of(settings, ranges, self.version).map(Some)
    }

    /// MaxKeys of range `i`'s next page, and whether it is the range's one trimmed page (see
    /// [`crossing_page_keys`]). The first page of a split-off range is a probe: the split point may have
    /// fallen in a gap of the key space, and then the whole page belongs to the ranges above.
    pub(super) fn page_keys(&self, i: usize, page_size: i32, prefix: &[u8], trimmed: bool) -> (i32, bool) {
        let s = &self.slots[i];
        if s.pos.is_none() && s.parent.is_some() {
            (PROBE_KEYS.min(page_size), false)
        } else if trimmed || matches!(s.end, End::Open) {
            (page_size, false)
        } else {
            let k = crossing_page_keys(page_size, s.page_width, ranges::width(s.lo(prefix), &s.end, prefix));
            (k, k < page_size)
        }
    }

    /// Takes for range `i` the keys of `page` that belong to it (the first ones, up to its end), moves
    /// its position over them and returns how many. Under the scheduler's mutex, so a split of this
    /// range never takes a key it already wrote (module doc of `list`).
    pub(super) fn admit(&mut self, i: usize, page: &Page, page_size: i32, prefix: &[u8]) -> usize {
        let s = &mut self.slots[i];
        let n = (0..page.recs.len()).take_while(|&j| s.end.admits(page.key(j))).count();
        s.listed += n as u64;
        if n > 0 {
            let last = page.key(n - 1);
            // Width of a full page at this page's density (short pages are normal).
            s.page_width = ranges::span(s.lo(prefix), last) + (page_size as f64 / n as f64).log2();
            s.pos = Some(last.to_vec());
        }
        n
    }
}

/// MaxKeys for the next page of a range where a full page spans a log2 width of `page_width` (from
/// the range's last page, or inherited from the range it was split from) and a log2 width of `left`
/// is left before the range's end. When less than a page is estimated to be left, asks for about that
/// many keys (+30% and 8) instead of a full page: keys past the end belong to the next range and are
/// thrown away, and the server's work for them (on Garage, most of the cost of a page) is wasted.
/// Only one page per range is trimmed: if the estimate was short, the range continues with full pages.
fn crossing_page_keys(page_size: i32, page_width: f64, left: f64) -> i32 {
    if !page_width.is_finite() || left == f64::INFINITY {
        return page_size;
    }
    if left == f64::NEG_INFINITY {
        return 1.min(page_size);
    }
    let est = page_size as f64 * (left - page_width).exp2();
    if est >= page_size as f64 {
        return page_size;
    }
    ((est * 1.3).ceil() as i32 + 8).clamp(1, page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_page_is_trimmed_to_what_is_left() {
        // A full page spans width 10: 1/8 of that left = ~125 keys, ask for 125*1.3+8.
        assert_eq!(crossing_page_keys(1000, 10.0, 7.0), 171);
        // More than a page left, unknown density, an open end: full pages.
        assert_eq!(crossing_page_keys(1000, 10.0, 10.5), 1000);
        assert_eq!(crossing_page_keys(1000, f64::NEG_INFINITY, 7.0), 1000);
        assert_eq!(crossing_page_keys(1000, 10.0, f64::INFINITY), 1000);
        // Nothing left by the estimate: one key confirms the end.
        assert_eq!(crossing_page_keys(1000, 10.0, f64::NEG_INFINITY), 1);
        // Never more than the page size, never less than 1.
        assert_eq!(crossing_page_keys(20, 10.0, 9.9), 20);
        assert_eq!(crossing_page_keys(1000, 10.0, -40.0), 9);
    }
}
