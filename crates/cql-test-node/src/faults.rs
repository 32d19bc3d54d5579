//! Fault injection and request statistics.
//!
//! Role: let a test make the node misbehave (delays, READ_TIMEOUT, UNAVAILABLE,
//! other errors, dropped connections) and observe what the client did (request
//! counts, page-request timestamps for rate checks) and what the node read for
//! it: rows returned, partitions read and bytes sent per [`ReadKind`], which is
//! how a test proves a DISTINCT listing read partitions, not rows.
//!
//! Invariants:
//! - Faults and delays apply only to *page requests*: QUERY or EXECUTE of a
//!   SELECT on a fixture table (range scans and key lookups, every page). The
//!   driver's handshake, metadata and system-table queries are never disturbed,
//!   so a fault always reaches the statement under test.
//! - Per page request the order is: delay, then "drop after N", then the
//!   `fail_next` queue (oldest rule first), then token-range rules. A request
//!   gets at most one fault.
//! - A token-range rule matches a page whose *covered tokens* intersect the
//!   rule's inclusive `[lo, hi]`. A page covers from where it resumes (range
//!   start or paging position) to its last row's token if more pages follow,
//!   else to the range end; a key lookup covers its key's token. So a scan gets
//!   pages until it reaches the bad tokens, like a bad replica region would.
//! - Every handle method is thread-safe and takes effect for the next request.
//! - Read statistics count pages that were answered; a page that got a fault
//!   counts in `page_requests` and `faults_injected` only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::protocol::{code, Consistency, CqlError, ErrorExtra};

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// READ_TIMEOUT (0x1200) with received 0, block_for 1, data_present false:
    /// scylla's default retry policy does not retry it.
    ReadTimeout,
    /// READ_TIMEOUT with chosen fields (`received >= block_for && !data_present`
    /// makes scylla's default retry policy retry once on the same node).
    ReadTimeoutWith { received: i32, block_for: i32, data_present: bool },
    /// UNAVAILABLE (0x1000) with required 1, alive 0.
    Unavailable,
    /// READ_FAILURE (0x1300) with received 0, block_for 1, one failure.
    ReadFailure,
    /// OVERLOADED (0x1001).
    Overloaded,
    /// SERVER_ERROR (0x0000).
    ServerError,
    /// Close the TCP connection instead of answering.
    DropConnection,
}

impl Fault {
    /// The ERROR to send, or `None` for [`Fault::DropConnection`].
    pub(crate) fn to_error(self, consistency: Consistency) -> Option<CqlError> {
        let (code, message, extra) = match self {
            Fault::ReadTimeout => (
                code::READ_TIMEOUT,
                "Operation timed out - received only 0 responses. (injected by cql-test-node)",
                ErrorExtra::ReadTimeout { consistency, received: 0, block_for: 1, data_present: false },
            ),
            Fault::ReadTimeoutWith { received, block_for, data_present } => (
                code::READ_TIMEOUT,
                "Operation timed out (injected by cql-test-node)",
                ErrorExtra::ReadTimeout { consistency, received, block_for, data_present },
            ),
            Fault::Unavailable => (
                code::UNAVAILABLE,
                "Cannot achieve consistency level (injected by cql-test-node)",
                ErrorExtra::Unavailable { consistency, required: 1, alive: 0 },
            ),
            Fault::ReadFailure => (
                code::READ_FAILURE,
                "Operation failed - received 0 responses and 1 failures (injected by cql-test-node)",
                ErrorExtra::ReadFailure {
                    consistency,
                    received: 0,
                    block_for: 1,
                    num_failures: 1,
                    data_present: false,
                },
            ),
            Fault::Overloaded => {
                (code::OVERLOADED, "Server is in overloaded state (injected by cql-test-node)", ErrorExtra::None)
            }
            Fault::ServerError => {
                (code::SERVER_ERROR, "Internal server error (injected by cql-test-node)", ErrorExtra::None)
            }
            Fault::DropConnection => return None,
        };
        Some(CqlError { code, message: message.to_string(), extra })
    }
}

#[derive(Debug, Clone)]
struct RangeRule {
    lo: i64,
    hi: i64,
    fault: Fault,
    /// `None` = always.
    remaining: Option<u64>,
}

#[derive(Debug, Default)]
struct FaultState {
    next: VecDeque<(u64, Fault)>,
    ranges: Vec<RangeRule>,
    delay_all: Option<Duration>,
    delay_next: VecDeque<(u64, Duration)>,
    drop_after: Option<u64>,
}

/// Runtime fault controls; cheap to clone, shared with the node.
#[derive(Clone, Default)]
pub struct FaultHandle {
    state: Arc<Mutex<FaultState>>,
}

impl FaultHandle {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` page requests fail with `fault` (queued after earlier rules).
    pub fn fail_next(&self, n: u64, fault: Fault) {
        if n > 0 {
            self.lock().next.push_back((n, fault));
        }
    }

    /// Every page covering a token in `[lo, hi]` fails with `fault`, until
    /// [`FaultHandle::clear`].
    pub fn fail_token_range(&self, lo: i64, hi: i64, fault: Fault) {
        self.lock().ranges.push(RangeRule { lo: lo.min(hi), hi: lo.max(hi), fault, remaining: None });
    }

    /// Like [`FaultHandle::fail_token_range`] but only for the first `n`
    /// matching pages.
    pub fn fail_token_range_times(&self, lo: i64, hi: i64, fault: Fault, n: u64) {
        if n > 0 {
            self.lock().ranges.push(RangeRule { lo: lo.min(hi), hi: lo.max(hi), fault, remaining: Some(n) });
        }
    }

    /// Delays every page request by `d` (`None` turns it off).
    pub fn set_delay(&self, d: Option<Duration>) {
        self.lock().delay_all = d;
    }

    /// Delays the next `n` page requests by `d` (instead of the global delay).
    pub fn delay_next(&self, n: u64, d: Duration) {
        if n > 0 {
            self.lock().delay_next.push_back((n, d));
        }
    }

    /// Serves `n` more page requests, then closes the connection that carries
    /// the next one (once).
    pub fn drop_connection_after(&self, n: u64) {
        self.lock().drop_after = Some(n);
    }

    /// Removes every fault and delay.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    /// Decides the delay and pre-execution fault of one page request.
    pub(crate) fn before_page(&self) -> (Option<Duration>, Option<Fault>) {
        let mut s = self.lock();
        let delay = match s.delay_next.front_mut() {
            Some((n, d)) => {
                let d = *d;
                *n -= 1;
                if *n == 0 {
                    s.delay_next.pop_front();
                }
                Some(d)
            }
            None => s.delay_all,
        };
        if let Some(n) = s.drop_after.as_mut() {
            if *n == 0 {
                s.drop_after = None;
                return (delay, Some(Fault::DropConnection));
            }
            *n -= 1;
        }
        if let Some((n, f)) = s.next.front_mut() {
            let f = *f;
            *n -= 1;
            if *n == 0 {
                s.next.pop_front();
            }
            return (delay, Some(f));
        }
        (delay, None)
    }

    /// The fault of a page that covers tokens `[lo, hi]`, if a rule matches.
    pub(crate) fn range_fault(&self, lo: i64, hi: i64) -> Option<Fault> {
        let mut s = self.lock();
        let i = s.ranges.iter().position(|r| r.lo <= hi && lo <= r.hi)?;
        let rule = &mut s.ranges[i];
        let f = rule.fault;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                s.ranges.remove(i);
            }
        }
        Some(f)
    }
}

/// The kinds of reads a page request can be, for [`Stats::reads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadKind {
    /// A token-range (or unrestricted) scan returning every row.
    Range,
    /// `SELECT DISTINCT` over a token range: one row per partition.
    DistinctRange,
    /// A single-partition lookup (`WHERE` every partition-key column `=`).
    Lookup,
}

/// What page requests of one [`ReadKind`] read, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Page requests answered with rows (faulted ones are not counted).
    pub requests: u64,
    /// Rows returned.
    pub rows: u64,
    /// Partitions read; a partition split across pages counts on each page.
    pub partitions: u64,
    /// Bytes of the encoded rows returned (what crossed the wire as values).
    pub bytes: u64,
}

/// A snapshot of what the node has served.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Request frames received (every opcode).
    pub requests: u64,
    /// Request frames by opcode name (`OPTIONS`, `STARTUP`, `QUERY`, ...).
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Page requests (QUERY/EXECUTE of a SELECT on a fixture table).
    pub page_requests: u64,
    /// Arrival time of each page request, in order (capped at 1,000,000).
    pub page_request_times: Vec<Instant>,
    /// Rows returned by page requests.
    pub rows_served: u64,
    /// Partitions read by page requests (see [`ReadStats::partitions`]).
    pub partitions_served: u64,
    /// Rows, partitions and bytes per kind of read.
    pub reads: BTreeMap<ReadKind, ReadStats>,
    /// Faults injected (errors sent and connections dropped by faults).
    pub faults_injected: u64,
    /// Successful single-key lookups that found nothing.
    pub lookups_missed: u64,
    /// Texts of QUERY and PREPARE requests with their counts.
    pub statements: BTreeMap<String, u64>,
    /// ERROR responses sent (code, message), oldest first (capped at 1,000),
    /// injected faults included.
    pub errors: Vec<(u32, String)>,
    pub connections_accepted: u64,
    /// Connections closed by the node because of a fault.
    pub connections_dropped: u64,
    pub auth_failures: u64,
    /// TLS handshakes completed and failed (a client that does not trust the
    /// node's CA fails here).
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
}

impl Stats {
    /// Requests of one opcode, e.g. `stats.kind("EXECUTE")`.
    pub fn kind(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0)
    }

    /// What reads of one kind served, e.g. `stats.reads(ReadKind::DistinctRange).partitions`.
    pub fn reads(&self, kind: ReadKind) -> ReadStats {
        self.reads.get(&kind).copied().unwrap_or_default()
    }

    /// Page requests per second between the first and last recorded page
    /// request; `None` with fewer than two.
    pub fn page_rate(&self) -> Option<f64> {
        let (first, last) = (self.page_request_times.first()?, self.page_request_times.last()?);
        let span = last.duration_since(*first).as_secs_f64();
        if self.page_request_times.len() < 2 || span <= 0.0 {
            return None;
        }
        Some((self.page_request_times.len() - 1) as f64 / span)
    }
}

const MAX_TIMES: usize = 1_000_000;

/// Shared, thread-safe stats collector.
#[derive(Default)]
pub(crate) struct StatsCell {
    inner: Mutex<Stats>,
}

impl StatsCell {
    pub(crate) fn update(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn request(&self, kind: &'static str) {
        self.update(|s| {
            s.requests += 1;
            *s.by_kind.entry(kind).or_insert(0) += 1;
        });
    }

    pub(crate) fn page(&self, at: Instant) {
        self.update(|s| {
            s.page_requests += 1;
            if s.page_request_times.len() < MAX_TIMES {
                s.page_request_times.push(at);
            }
        });
    }

    /// Records a page served without a fault.
    pub(crate) fn served(&self, kind: ReadKind, rows: usize, partitions: usize, bytes: usize, lookup_missed: bool) {
        self.update(|s| {
            s.rows_served += rows as u64;
            s.partitions_served += partitions as u64;
            s.lookups_missed += lookup_missed as u64;
            let r = s.reads.entry(kind).or_default();
            r.requests += 1;
            r.rows += rows as u64;
            r.partitions += partitions as u64;
            r.bytes += bytes as u64;
        });
    }

    pub(crate) fn statement(&self, text: &str) {
        self.update(|s| {
            // Bound the map for benchmarks that send unique literal queries.
            if s.statements.len() < 10_000 || s.statements.contains_key(text) {
                *s.statements.entry(text.to_string()).or_insert(0) += 1;
            }
        });
    }

    pub(crate) fn error(&self, code: u32, message: &str) {
        self.update(|s| {
            if s.errors.len() < 1_000 {
                s.errors.push((code, message.to_string()));
            }
        });
    }

    pub(crate) fn snapshot(&self) -> Stats {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn reset(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Stats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_in_order() {
        let h = FaultHandle::default();
        h.fail_next(2, Fault::ReadTimeout);
        h.fail_next(1, Fault::Unavailable);
        let got: Vec<_> = (0..4).map(|_| h.before_page().1).collect();
        assert_eq!(got, vec![Some(Fault::ReadTimeout), Some(Fault::ReadTimeout), Some(Fault::Unavailable), None]);
    }

    #[test]
    fn drop_after_serves_n_first() {
        let h = FaultHandle::default();
        h.drop_connection_after(2);
        let got: Vec<_> = (0..4).map(|_| h.before_page().1).collect();
        assert_eq!(got, vec![None, None, Some(Fault::DropConnection), None]);
    }

    #[test]
    fn delays_next_then_global() {
        let h = FaultHandle::default();
        h.set_delay(Some(Duration::from_millis(1)));
        h.delay_next(1, Duration::from_millis(5));
        assert_eq!(h.before_page().0, Some(Duration::from_millis(5)));
        assert_eq!(h.before_page().0, Some(Duration::from_millis(1)));
        h.clear();
        assert_eq!(h.before_page(), (None, None));
    }

    #[test]
    fn range_rules_match_intersections() {
        let h = FaultHandle::default();
        h.fail_token_range(100, 10, Fault::Overloaded);
        h.fail_token_range_times(500, 600, Fault::ReadTimeout, 1);
        assert_eq!(h.range_fault(0, 9), None);
        assert_eq!(h.range_fault(0, 10), Some(Fault::Overloaded));
        assert_eq!(h.range_fault(100, 200), Some(Fault::Overloaded));
        assert_eq!(h.range_fault(550, 550), Some(Fault::ReadTimeout));
        assert_eq!(h.range_fault(550, 550), None);
        assert_eq!(h.range_fault(i64::MIN, i64::MAX), Some(Fault::Overloaded));
    }

    #[test]
    fn fault_errors_carry_spec_fields() {
        let e = Fault::ReadTimeout.to_error(4).unwrap();
        assert_eq!(e.code, code::READ_TIMEOUT);
        assert_eq!(e.extra, ErrorExtra::ReadTimeout { consistency: 4, received: 0, block_for: 1, data_present: false });
        assert!(Fault::DropConnection.to_error(1).is_none());
    }

    #[test]
    fn reads_are_summed_per_kind() {
        let c = StatsCell::default();
        c.served(ReadKind::DistinctRange, 10, 10, 100, false);
        c.served(ReadKind::DistinctRange, 5, 5, 50, false);
        c.served(ReadKind::Lookup, 0, 0, 0, true);
        let s = c.snapshot();
        assert_eq!(s.reads(ReadKind::DistinctRange), ReadStats { requests: 2, rows: 15, partitions: 15, bytes: 150 });
        assert_eq!(s.reads(ReadKind::Range), ReadStats::default());
        assert_eq!((s.rows_served, s.partitions_served, s.lookups_missed), (15, 15, 1));
    }

    #[test]
    fn page_rate_from_timestamps() {
        let t0 = Instant::now();
        let s = Stats {
            page_request_times: vec![t0, t0 + Duration::from_secs(1), t0 + Duration::from_secs(2)],
            ..Stats::default()
        };
        assert_eq!(s.page_rate(), Some(1.0));
        assert_eq!(Stats::default().page_rate(), None);
    }
}
