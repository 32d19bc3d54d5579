//! The test node against the real `scylla` driver: connection and metadata,
//! token-range scans with both paging styles, lookups, auth, every fault kind,
//! reconnects, a throughput sanity run; then tables as they are in production
//! (composite partition keys of every type, clustering and static columns,
//! DISTINCT proven by the node's read statistics), octet_length per release
//! version, and TLS with password authentication.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use cql_test_node::{
    compose_key, token, ColumnType, Credentials, Fault, ReadKind, Row, RunningNode, Table, TestNode, TlsCerts, Value,
    DEFAULT_WRITETIME,
};
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::cluster::metadata::{ColumnKind, Strategy};
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{
    DbError, ExecutionError, NextPageError, NextRowError, PagerExecutionError, RequestAttemptError, RequestError,
};
use scylla::response::query_result::QueryResult;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlTimestamp, CqlTimeuuid};

const RANGE_QUERY: &str = "SELECT k, token(k) FROM ks.t WHERE token(k) > ? AND token(k) <= ?";

fn table() -> Table {
    Table::new("ks", "t", "k", ColumnType::Text).column("v", ColumnType::Blob).column("n", ColumnType::Bigint)
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            Row::new(format!("key{i}")).blob("v", format!("blob{i}").into_bytes()).set("n", Value::Bigint(i as i64))
        })
        .collect()
}

async fn node(n: usize) -> RunningNode {
    TestNode::builder().table(table()).rows(rows(n)).build().start("127.0.0.1:0").await.expect("start test node")
}

async fn session(node: &RunningNode) -> Session {
    SessionBuilder::new().known_node_addr(node.addr()).build().await.expect("connect")
}

/// Ranges `(a, b]` covering the ring exactly once, split at the node's own
/// tokens; the wrapping vnode range is split at `i64::MIN` like a scanner must.
fn ring_ranges(tokens: &[i64]) -> Vec<(i64, i64)> {
    let mut out = vec![(i64::MIN, tokens[0])];
    for w in tokens.windows(2) {
        out.push((w[0], w[1]));
    }
    out.push((*tokens.last().unwrap(), i64::MAX));
    out
}

async fn prepare_paged(s: &Session, q: &str, page: i32) -> PreparedStatement {
    let mut p = s.prepare(q).await.expect("prepare");
    p.set_page_size(page);
    p
}

/// Scans `(lo, hi]` with `execute_single_page`, checking token order.
async fn scan_manual(s: &Session, p: &PreparedStatement, lo: i64, hi: i64) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    let mut state = PagingState::start();
    loop {
        let (res, next) = s.execute_single_page(p, (lo, hi), state).await.expect("page");
        for r in res.into_rows_result().unwrap().rows::<(String, i64)>().unwrap() {
            out.push(r.unwrap());
        }
        match next.into_paging_control_flow() {
            ControlFlow::Break(()) => break,
            ControlFlow::Continue(ps) => state = ps,
        }
    }
    out
}

fn check_range(rows: &[(String, i64)], lo: i64, hi: i64) {
    for w in rows.windows(2) {
        assert!(w[0].1 <= w[1].1, "rows out of token order: {w:?}");
    }
    for (k, t) in rows {
        assert_eq!(*t, token(k.as_bytes()), "token(k) of {k}");
        assert!(*t > lo && *t <= hi, "{k} token {t} outside ({lo}, {hi}]");
    }
}

fn db_error_of_execution(e: &ExecutionError) -> Option<&DbError> {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => Some(db),
        _ => None,
    }
}

fn db_error_of_row(e: &NextRowError) -> Option<&DbError> {
    match e {
        NextRowError::NextPageError(NextPageError::RequestFailure(RequestError::LastAttemptError(
            RequestAttemptError::DbError(db, _),
        ))) => Some(db),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_connects_and_reads_schema_and_ring() {
    let node = node(10).await;
    let s = session(&node).await;
    s.refresh_metadata().await.expect("metadata refresh");
    let state = s.get_cluster_state();
    let ks = state.get_keyspace("ks").expect("keyspace ks in driver metadata");
    assert!(matches!(ks.strategy, Strategy::SimpleStrategy { replication_factor: 1 }));
    let t = ks.tables.get("t").expect("table t in driver metadata");
    assert_eq!(t.partition_key, vec!["k".to_string()]);
    assert!(t.clustering_key.is_empty());
    assert_eq!(t.columns.len(), 3);
    assert_eq!(state.get_nodes_info().len(), 1);
    let ring: Vec<i64> = state.replica_locator().ring().iter().map(|(t, _)| t.value()).collect();
    assert_eq!(ring, node.ring_tokens());
    // The driver's token computation agrees with the node's.
    for k in ["key1", "test", "kremówki"] {
        let t = state.compute_token("ks", "t", &(k,)).unwrap();
        assert_eq!(t.value(), token(k.as_bytes()), "{k}");
    }
    // Every metadata query succeeded except the ScyllaDB-only tables, which
    // must fail with INVALID "unconfigured table" exactly as on Cassandra.
    let stats = node.stats();
    for (q, n) in &stats.statements {
        println!("driver sent {n}x: {q}");
    }
    assert!(stats.kind("PREPARE") > 0 && stats.kind("EXECUTE") > 0, "{stats:?}");
    for (code, msg) in &stats.errors {
        assert!(*code == 0x2200 && msg.contains("unconfigured table scylla_"), "unexpected error {code:#x} {msg}");
    }
    // Restricting the schema fetch makes the driver bind `keyspace_name IN ?`.
    let s2 = SessionBuilder::new().known_node_addr(node.addr()).keyspaces_to_fetch(["ks"]).build().await.unwrap();
    let state = s2.get_cluster_state();
    assert!(state.get_keyspace("ks").unwrap().tables.contains_key("t"));
    assert!(state.get_keyspace("system_auth").is_none());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_partition_keys_and_select_star() {
    let t = Table::new("ks", "b", "id", ColumnType::Blob)
        .column("payload", ColumnType::Blob)
        .column("name", ColumnType::Text);
    let node = TestNode::builder()
        .table(t)
        .rows(
            (0u8..20)
                .map(|i| Row::new(vec![0xfe, i]).blob("payload", vec![i; 3]).set("name", Value::Text(format!("n{i}")))),
        )
        .build()
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let s = session(&node).await;
    let state = s.get_cluster_state();
    let key = vec![0xfeu8, 7];
    let driver_token = state.compute_token("ks", "b", &(key.clone(),)).unwrap();
    assert_eq!(driver_token.value(), token(&key));
    let p = s.prepare("SELECT * FROM ks.b WHERE id = ?").await.unwrap();
    let row = s
        .execute_unpaged(&p, (key.clone(),))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(Vec<u8>, String, Vec<u8>)>()
        .unwrap();
    // SELECT * is partition key, then regular columns by name (Cassandra's order).
    assert_eq!(row, (key, "n7".to_string(), vec![7; 3]));
    let n = s
        .query_unpaged("SELECT token(id), id FROM ks.b WHERE id = 0xfe03", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i64, Vec<u8>)>()
        .unwrap();
    assert_eq!(n, (token(&[0xfe, 3]), vec![0xfe, 3]));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_range_scans_cover_the_ring_exactly_once() {
    let n = 1000;
    let node = node(n).await;
    let s = session(&node).await;
    let p = prepare_paged(&s, RANGE_QUERY, 7).await;
    // The prepared metadata has two bigint markers and no pk index.
    assert_eq!(p.get_variable_col_specs().len(), 2);
    assert!(p.get_variable_pk_indexes().is_empty());

    let ranges = ring_ranges(&node.ring_tokens());
    let mut manual = Vec::new();
    let mut iter = Vec::new();
    for &(lo, hi) in &ranges {
        let m = scan_manual(&s, &p, lo, hi).await;
        check_range(&m, lo, hi);
        let it: Vec<(String, i64)> = s
            .execute_iter(p.clone(), (lo, hi))
            .await
            .unwrap()
            .rows_stream::<(String, i64)>()
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(m, it, "both paging styles agree on ({lo}, {hi}]");
        manual.extend(m);
        iter.extend(it);
    }
    let keys: BTreeSet<String> = manual.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(manual.len(), n, "every row exactly once");
    assert_eq!(keys.len(), n);
    let want: BTreeSet<String> = (0..n).map(|i| format!("key{i}")).collect();
    assert_eq!(keys, want);
    // Concatenated ranges are the whole table in token order.
    check_range(&manual, i64::MIN, i64::MAX);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_semantics_match_cassandra_edges() {
    let node = node(200).await;
    let s = session(&node).await;
    let count = |q: &'static str| {
        let s = &s;
        async move {
            s.query_unpaged(q, ()).await.unwrap_or_else(|e| panic!("{q}: {e}")).into_rows_result().unwrap().rows_num()
        }
    };
    let tokens: Vec<i64> = node.keys("ks.t").unwrap().iter().map(|k| token(k)).collect();
    let max = *tokens.last().unwrap();
    let min = tokens[0];
    // Nothing above the largest token: empty, not a wrap.
    let q = format!("SELECT k FROM ks.t WHERE token(k) > {max}");
    assert_eq!(count(Box::leak(q.into_boxed_str())).await, 0);
    // start > end: empty (CASSANDRA-5573).
    assert_eq!(count("SELECT k FROM ks.t WHERE token(k) > 100 AND token(k) <= -100").await, 0);
    // End at the minimum token = end of ring (Cassandra quirk).
    let q = format!("SELECT k FROM ks.t WHERE token(k) > {min} AND token(k) <= -9223372036854775808");
    assert_eq!(count(Box::leak(q.into_boxed_str())).await, 199);
    // Inclusive bounds and single-token ranges.
    let q = format!("SELECT k FROM ks.t WHERE token(k) >= {min} AND token(k) <= {min}");
    assert_eq!(count(Box::leak(q.into_boxed_str())).await, 1);
    let q = format!("SELECT k FROM ks.t WHERE token(k) > {min} AND token(k) <= {min}");
    assert_eq!(count(Box::leak(q.into_boxed_str())).await, 0);
    assert_eq!(count("SELECT k FROM ks.t").await, 200);
    assert_eq!(count("SELECT k FROM ks.t LIMIT 5").await, 5);
    assert_eq!(count("SELECT DISTINCT k FROM ks.t").await, 200);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_by_key_returns_blob_writetime_and_ttl() {
    let node = TestNode::builder()
        .table(table())
        .rows(vec![
            Row::new("a").blob("v", vec![1, 2, 3]),
            Row::new("b").blob("v", vec![9]).set("n", Value::Bigint(5)).writetime(42).ttl(3600),
        ])
        .build()
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let s = session(&node).await;
    let p = s.prepare("SELECT v, writetime(v), ttl(v), writetime(n) FROM ks.t WHERE k = ?").await.unwrap();
    // Token-aware routing needs the pk index.
    assert_eq!(p.get_variable_pk_indexes().len(), 1);
    type R = (Vec<u8>, i64, Option<i32>, Option<i64>);
    let get = |k: &'static str| {
        let (s, p) = (&s, &p);
        async move { s.execute_unpaged(p, (k,)).await.unwrap().into_rows_result().unwrap().maybe_first_row::<R>().unwrap() }
    };
    assert_eq!(get("a").await, Some((vec![1, 2, 3], DEFAULT_WRITETIME, None, None)));
    assert_eq!(get("b").await, Some((vec![9], 42, Some(3600), Some(42))));
    assert_eq!(get("missing").await, None);

    // Rows can change while the node serves.
    node.insert("ks.t", Row::new("missing").blob("v", vec![7])).unwrap();
    assert_eq!(get("missing").await.unwrap().0, vec![7]);
    assert!(node.delete("ks.t", b"a").unwrap());
    assert_eq!(get("a").await, None);
    assert_eq!(node.stats().lookups_missed, 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_keyspace_and_unqualified_tables() {
    let node = node(3).await;
    let s = session(&node).await;
    s.use_keyspace("ks", false).await.expect("USE ks");
    let r = s
        .query_unpaged("SELECT n FROM t WHERE k = 'key2'", ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i64,)>()
        .unwrap();
    assert_eq!(r, (2,));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_invalid_queries_fail_cleanly() {
    let node = node(1).await;
    let s = session(&node).await;
    for (q, want_syntax) in [
        ("INSERT INTO ks.t (k) VALUES ('x')", true),
        ("SELEKT k FROM ks.t", true),
        ("SELECT k FROM ks.nope", false),
        ("SELECT nope FROM ks.t", false),
        ("SELECT k FROM ks.t WHERE v = 0x00", false),
    ] {
        let e = s.query_unpaged(q, ()).await.unwrap_err();
        let db = db_error_of_execution(&e).unwrap_or_else(|| panic!("{q}: {e:?}"));
        if want_syntax {
            assert_eq!(*db, DbError::SyntaxError, "{q}");
        } else {
            assert_eq!(*db, DbError::Invalid, "{q}");
        }
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_success_and_failure() {
    let node = TestNode::builder()
        .table(table())
        .rows(rows(2))
        .credentials(Credentials::new("alice", "s3cret"))
        .build()
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let ok = SessionBuilder::new()
        .known_node_addr(node.addr())
        .user("alice", "s3cret")
        .build()
        .await
        .expect("login with right password");
    let n = ok.query_unpaged("SELECT k FROM ks.t", ()).await.unwrap().into_rows_result().unwrap().rows_num();
    assert_eq!(n, 2);
    let bad = SessionBuilder::new().known_node_addr(node.addr()).user("alice", "not-the-pa55word").build().await;
    let Err(e) = bad else {
        panic!("wrong password must fail");
    };
    check_wrong_password(&e, "alice", "not-the-pa55word");
    let none = SessionBuilder::new().known_node_addr(node.addr()).build().await;
    assert!(none.is_err(), "no credentials must fail");
    assert!(node.stats().auth_failures >= 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kind_reaches_the_driver_as_its_error() {
    let node = node(50).await;
    let s = session(&node).await;
    let p = prepare_paged(&s, RANGE_QUERY, 10).await;
    let faults = node.faults();
    type IsExpected = fn(&DbError) -> bool;
    let cases: Vec<(Fault, IsExpected)> = vec![
        (Fault::ReadTimeout, |e| {
            matches!(e, DbError::ReadTimeout { received: 0, required: 1, data_present: false, .. })
        }),
        (Fault::Unavailable, |e| matches!(e, DbError::Unavailable { required: 1, alive: 0, .. })),
        (Fault::ReadFailure, |e| matches!(e, DbError::ReadFailure { numfailures: 1, .. })),
        (Fault::Overloaded, |e| matches!(e, DbError::Overloaded)),
        (Fault::ServerError, |e| matches!(e, DbError::ServerError)),
    ];
    for (fault, is_expected) in cases {
        // execute_single_page: one page request, the error as ExecutionError.
        node.reset_stats();
        // Enough for the default policy's retries; the rest is cleared below.
        faults.fail_next(5, fault);
        let e = s.execute_single_page(&p, (i64::MIN, i64::MAX), PagingState::start()).await.unwrap_err();
        let db = db_error_of_execution(&e).unwrap_or_else(|| panic!("{fault:?}: {e:?}"));
        assert!(is_expected(db), "{fault:?} surfaced as {db:?}");
        let attempts = node.stats().page_requests;
        println!("{fault:?}: {attempts} attempt(s) with the default retry policy");
        faults.clear();

        // execute_iter: the first page fails inside the pager.
        faults.fail_next(5, fault);
        let res = s.execute_iter(p.clone(), (i64::MIN, i64::MAX)).await;
        let db = match res {
            Err(PagerExecutionError::NextPageError(NextPageError::RequestFailure(RequestError::LastAttemptError(
                RequestAttemptError::DbError(db, _),
            )))) => {
                println!("{fault:?}: execute_iter itself failed (first page)");
                db
            }
            Err(other) => panic!("{fault:?}: {other:?}"),
            Ok(pager) => {
                println!("{fault:?}: execute_iter returned a pager, the stream failed");
                let e = pager.rows_stream::<(String, i64)>().unwrap().try_collect::<Vec<_>>().await.unwrap_err();
                db_error_of_row(&e).unwrap_or_else(|| panic!("{fault:?}: {e:?}")).clone()
            }
        };
        assert!(is_expected(&db), "{fault:?} via pager surfaced as {db:?}");
        faults.clear();
    }
    // A later page of a pager scan fails mid-stream after earlier rows came.
    let keys = node.keys("ks.t").unwrap();
    let late = token(&keys[30]);
    faults.fail_token_range(late, late, Fault::ReadTimeout);
    let mut stream = s
        .execute_iter(p.clone(), (i64::MIN, i64::MAX))
        .await
        .expect("first page is fine")
        .rows_stream::<(String, i64)>()
        .unwrap();
    let mut got = 0;
    let err = loop {
        match stream.try_next().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("scan passed the failing range"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 30, "three full pages of 10 arrived before the error");
    assert!(matches!(db_error_of_row(&err), Some(DbError::ReadTimeout { .. })), "{err:?}");
    faults.clear();

    // A read timeout the default policy considers retryable is retried once on
    // the same node, so one injected fault is invisible to the caller.
    node.reset_stats();
    faults.fail_next(1, Fault::ReadTimeoutWith { received: 1, block_for: 1, data_present: false });
    let (r, _) = s.execute_single_page(&p, (i64::MIN, i64::MAX), PagingState::start()).await.expect("retried");
    assert_eq!(r.into_rows_result().unwrap().rows_num(), 10);
    assert_eq!(node.stats().page_requests, 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_range_fails_until_split_around() {
    let node = node(500).await;
    let s = session(&node).await;
    let p = prepare_paged(&s, RANGE_QUERY, 1000).await;
    let keys = node.keys("ks.t").unwrap();
    let bad = token(&keys[250]);
    node.faults().fail_token_range(bad, bad, Fault::ReadTimeout);
    let e = s.execute_single_page(&p, (i64::MIN, i64::MAX), PagingState::start()).await.unwrap_err();
    assert!(matches!(db_error_of_execution(&e), Some(DbError::ReadTimeout { .. })));
    // Halves: the one holding the bad token keeps failing, the other works.
    let left = scan_manual(&s, &p, i64::MIN, bad - 1).await;
    assert_eq!(left.len(), 250);
    let e = s.execute_single_page(&p, (bad - 1, bad), PagingState::start()).await.unwrap_err();
    assert!(matches!(db_error_of_execution(&e), Some(DbError::ReadTimeout { .. })));
    let right = scan_manual(&s, &p, bad, i64::MAX).await;
    assert_eq!(right.len(), 249);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_an_error_then_the_driver_reconnects() {
    let node = node(20).await;
    let s = session(&node).await;
    let p = prepare_paged(&s, RANGE_QUERY, 100).await;
    node.faults().drop_connection_after(0);
    let e = s.execute_single_page(&p, (i64::MIN, i64::MAX), PagingState::start()).await.unwrap_err();
    println!("dropped connection surfaced as: {e:?}");
    assert!(
        matches!(
            e,
            ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_))
                | ExecutionError::ConnectionPoolError(_)
        ),
        "{e:?}"
    );
    assert_eq!(node.stats().connections_dropped, 1);
    // The pool reconnects in the background.
    let dropped_at = Instant::now();
    let deadline = dropped_at + Duration::from_secs(10);
    loop {
        match s.execute_single_page(&p, (i64::MIN, i64::MAX), PagingState::start()).await {
            Ok((r, _)) => {
                assert_eq!(r.into_rows_result().unwrap().rows_num(), 20);
                println!("reconnected after {:?}", dropped_at.elapsed());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                println!("not reconnected yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("driver did not reconnect: {e:?}"),
        }
    }
    assert!(node.stats().connections_accepted >= 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_trip_client_timeouts_and_rates_are_observable() {
    let node = node(20).await;
    let s = session(&node).await;
    let mut p = prepare_paged(&s, RANGE_QUERY, 5).await;
    p.set_request_timeout(Some(Duration::from_millis(100)));
    node.faults().delay_next(1, Duration::from_millis(500));
    let e = s.execute_single_page(&p, (i64::MIN, i64::MAX), PagingState::start()).await.unwrap_err();
    assert!(matches!(e, ExecutionError::RequestTimeout(_)), "{e:?}");
    node.reset_stats();
    node.faults().set_delay(Some(Duration::from_millis(20)));
    let rows = scan_manual(&s, &p, i64::MIN, i64::MAX).await;
    assert_eq!(rows.len(), 20);
    let st = node.stats();
    // 20 rows / 5 per page = 4 full pages + the empty last page Cassandra sends.
    assert_eq!(st.page_requests, 5);
    let rate = st.page_rate().unwrap();
    assert!(rate < 60.0, "20ms delay bounds the rate: {rate}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_state_resumes_across_sessions() {
    let node = node(30).await;
    let s1 = session(&node).await;
    let p1 = prepare_paged(&s1, RANGE_QUERY, 10).await;
    let (_, next) = s1.execute_single_page(&p1, (i64::MIN, i64::MAX), PagingState::start()).await.unwrap();
    let PagingStateResponse::HasMorePages { state } = next else {
        panic!("expected more pages");
    };
    // A paging state is bytes: a scanner may checkpoint it and resume elsewhere.
    let raw = state.as_bytes_slice().unwrap().to_vec();
    let s2 = session(&node).await;
    let p2 = prepare_paged(&s2, RANGE_QUERY, 10).await;
    let (r, _) = s2.execute_single_page(&p2, (i64::MIN, i64::MAX), PagingState::new_from_raw_bytes(raw)).await.unwrap();
    let second: Vec<(String, i64)> =
        r.into_rows_result().unwrap().rows::<(String, i64)>().unwrap().map(Result::unwrap).collect();
    let all: Vec<(String, i64)> = scan_manual(&s2, &p2, i64::MIN, i64::MAX).await;
    assert_eq!(second, all[10..20]);
    // A forged paging state is a protocol error, not garbage rows.
    let e = s2
        .execute_single_page(&p2, (i64::MIN, i64::MAX), PagingState::new_from_raw_bytes(&b"garbage"[..]))
        .await
        .unwrap_err();
    assert!(matches!(db_error_of_execution(&e), Some(DbError::ProtocolError)), "{e:?}");
    node.shutdown().await;
}

#[test]
fn blocking_node_serves_a_sync_caller() {
    let node = TestNode::builder().table(table()).rows(rows(5)).build().start_blocking("127.0.0.1:0").unwrap();
    let addr = node.addr();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let n = rt.block_on(async {
        let s = SessionBuilder::new().known_node_addr(addr).build().await.unwrap();
        s.query_unpaged(Statement::new("SELECT k FROM ks.t"), ()).await.unwrap().into_rows_result().unwrap().rows_num()
    });
    assert_eq!(n, 5);
    assert_eq!(node.len("ks.t").unwrap(), 5);
    node.shutdown();
}

/// Throughput sanity (no timing assertion): 200k rows through paging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_rows_page_through() {
    let n = 200_000;
    let t0 = Instant::now();
    let node = TestNode::builder().table(table()).rows(rows(n)).build().start("127.0.0.1:0").await.unwrap();
    let loaded = t0.elapsed();
    let s = session(&node).await;
    let p = prepare_paged(&s, RANGE_QUERY, 5000).await;
    let t1 = Instant::now();
    let got: Vec<(String, i64)> = s
        .execute_iter(p, (i64::MIN, i64::MAX))
        .await
        .unwrap()
        .rows_stream::<(String, i64)>()
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    println!("200k rows: load {:?}, scan {:?} over {} pages", loaded, t1.elapsed(), node.stats().page_requests);
    assert_eq!(got.len(), n);

    // All ring ranges at once over the one pooled connection: responses come
    // back out of order and every row still arrives exactly once.
    let t2 = Instant::now();
    let p = prepare_paged(&s, RANGE_QUERY, 5000).await;
    let scans = ring_ranges(&node.ring_tokens()).into_iter().map(|(lo, hi)| {
        let (s, p) = (&s, p.clone());
        async move {
            s.execute_iter(p, (lo, hi))
                .await
                .unwrap()
                .rows_stream::<(String, i64)>()
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        }
    });
    let parts = futures::future::join_all(scans).await;
    let total: usize = parts.iter().map(Vec::len).sum();
    let distinct: BTreeSet<&String> = parts.iter().flatten().map(|(k, _)| k).collect();
    println!("200k rows in 17 parallel range scans: {:?}", t2.elapsed());
    assert_eq!((total, distinct.len()), (n, n));
    node.shutdown().await;
}

/// A wrong password fails as Cassandra's PasswordAuthenticator fails it, and
/// the error does not repeat the password.
fn check_wrong_password(e: &impl std::fmt::Debug, user: &str, password: &str) {
    let shown = format!("{e:?}");
    assert!(shown.contains("AuthenticationError"), "error names authentication: {shown}");
    assert!(
        shown.contains(&format!("Provided username {user} and/or password are incorrect")),
        "Cassandra's message: {shown}"
    );
    assert!(!shown.contains(password), "the password leaked: {shown}");
}

// ---- Tables as they are in production: composite keys, clustering, statics ----

/// `PRIMARY KEY ((bucket, id), part)` with a static `meta` and a regular `data`:
/// `partitions` partitions of `parts` rows each.
fn objects_table() -> Table {
    Table::new("ks", "objects", "bucket", ColumnType::Text)
        .partition_key_column("id", ColumnType::Bigint)
        .clustering_column("part", ColumnType::Int)
        .static_column("meta", ColumnType::Blob)
        .column("data", ColumnType::Blob)
}

fn objects(partitions: i64, parts: i32) -> Vec<Row> {
    let mut rows = Vec::new();
    for id in 0..partitions {
        let bucket = if id % 2 == 0 { "photos" } else { "PHOTO:12345/odd" };
        for part in 0..parts {
            let mut r = Row::partition([Value::Text(bucket.into()), Value::Bigint(id)])
                .clustering([Value::Int(part)])
                .blob("data", vec![part as u8; 10 + part as usize]);
            if part == 0 {
                r = r.blob("meta", format!("meta{id}").into_bytes());
            }
            rows.push(r);
        }
    }
    rows
}

/// The rows of a result, decoded as `T`.
fn decoded<T>(r: QueryResult) -> Vec<T>
where
    T: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    r.into_rows_result().unwrap().rows::<T>().unwrap().map(Result::unwrap).collect()
}

fn objects_key(bucket: &str, id: i64) -> Vec<u8> {
    compose_key(&[bucket.as_bytes(), &id.to_be_bytes()])
}

const OBJECTS_RANGE: &str =
    "SELECT bucket, id, token(bucket, id), part FROM ks.objects WHERE token(bucket, id) > ? AND token(bucket, id) <= ?";
const OBJECTS_DISTINCT: &str = "SELECT DISTINCT bucket, id, token(bucket, id) FROM ks.objects \
     WHERE token(bucket, id) > ? AND token(bucket, id) <= ?";

async fn objects_node(partitions: i64, parts: i32) -> RunningNode {
    TestNode::builder()
        .table(objects_table())
        .rows(objects(partitions, parts))
        .build()
        .start("127.0.0.1:0")
        .await
        .expect("start test node")
}

fn db_error_message(e: &ExecutionError) -> (DbError, String) {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, msg)) => (db.clone(), msg.clone()),
        other => panic!("not a database error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_and_clustering_columns_in_driver_metadata() {
    let node = objects_node(4, 2).await;
    let s = session(&node).await;
    let state = s.get_cluster_state();
    let t = state.get_keyspace("ks").unwrap().tables.get("objects").expect("table objects");
    assert_eq!(t.partition_key, ["bucket", "id"]);
    assert_eq!(t.clustering_key, ["part"]);
    assert_eq!(t.columns["meta"].kind, ColumnKind::Static);
    assert_eq!(t.columns["data"].kind, ColumnKind::Regular);
    assert_eq!(t.columns["id"].kind, ColumnKind::PartitionKey);
    // The driver computes the token of a composite key as the node does.
    for (bucket, id) in [("photos", 0i64), ("PHOTO:12345/odd", 1), ("", i64::MIN)] {
        let driver = state.compute_token("ks", "objects", &(bucket, id)).unwrap();
        assert_eq!(driver.value(), token(&objects_key(bucket, id)), "({bucket:?}, {id})");
    }
    // A prepared lookup names each key column's marker, whatever the WHERE order.
    let p = s.prepare("SELECT part, data FROM ks.objects WHERE id = ? AND bucket = ?").await.unwrap();
    // (marker, position in the key), sorted by marker: marker 0 (id) is key column 1.
    let idx: Vec<(u16, u16)> = p.get_variable_pk_indexes().iter().map(|i| (i.index, i.sequence)).collect();
    assert_eq!(idx, [(0, 1), (1, 0)]);
    let routed = p.calculate_token(&(3i64, "PHOTO:12345/odd")).unwrap().unwrap();
    assert_eq!(routed.value(), token(&objects_key("PHOTO:12345/odd", 3)));
    let rows: Vec<(i32, Vec<u8>)> = decoded(s.execute_unpaged(&p, (3i64, "PHOTO:12345/odd")).await.unwrap());
    assert_eq!(rows, [(0, vec![0; 10]), (1, vec![1; 11])]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustered_scans_page_inside_partitions_and_distinct_reads_partitions() {
    let (partitions, parts) = (60, 7);
    let node = objects_node(partitions, parts).await;
    let s = session(&node).await;
    let all = (i64::MIN, i64::MAX);

    // Every row, in token then clustering order, with pages that end inside partitions.
    node.reset_stats();
    let p = prepare_paged(&s, OBJECTS_RANGE, 5).await;
    let mut rows: Vec<(String, i64, i64, i32)> = Vec::new();
    let mut state = PagingState::start();
    loop {
        let (res, next) = s.execute_single_page(&p, all, state).await.unwrap();
        rows.extend(decoded::<(String, i64, i64, i32)>(res));
        match next.into_paging_control_flow() {
            ControlFlow::Break(()) => break,
            ControlFlow::Continue(ps) => state = ps,
        }
    }
    assert_eq!(rows.len(), (partitions * parts as i64) as usize);
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(a.2 < b.2 || (a.2 == b.2 && a.3 < b.3), "token then clustering order: {a:?} {b:?}");
    }
    for r in &rows {
        assert_eq!(r.2, token(&objects_key(&r.0, r.1)));
    }
    let range = node.stats().reads(ReadKind::Range);
    assert_eq!(range.rows, rows.len() as u64);
    assert!(range.partitions >= partitions as u64);

    // DISTINCT: one row per partition, and the node read partitions, not rows.
    node.reset_stats();
    let p = prepare_paged(&s, OBJECTS_DISTINCT, 7).await;
    let keys: Vec<(String, i64, i64)> =
        s.execute_iter(p, all).await.unwrap().rows_stream::<(String, i64, i64)>().unwrap().try_collect().await.unwrap();
    assert_eq!(keys.len(), partitions as usize);
    let distinct: BTreeSet<(String, i64)> = keys.iter().map(|k| (k.0.clone(), k.1)).collect();
    assert_eq!(distinct.len(), partitions as usize);
    let stats = node.stats();
    let d = stats.reads(ReadKind::DistinctRange);
    assert_eq!((d.rows, d.partitions), (partitions as u64, partitions as u64));
    assert_eq!(stats.reads(ReadKind::Range).rows, 0);
    assert_eq!(stats.rows_served, partitions as u64, "{partitions} rows for {} stored", partitions * parts as i64);

    // Cassandra's refusals reach the driver as InvalidRequest.
    for (q, needle) in [
        ("SELECT part FROM ks.objects WHERE bucket = 'photos'", "ALLOW FILTERING"),
        ("SELECT DISTINCT bucket, id, part FROM ks.objects", "(not part)"),
        ("SELECT DISTINCT bucket FROM ks.objects", "(missing id)"),
        ("SELECT part FROM ks.objects WHERE token(id, bucket) > 0", "partition key order: bucket, id"),
    ] {
        let e = s.query_unpaged(q, ()).await.unwrap_err();
        let (db, msg) = db_error_message(&e);
        assert_eq!(db, DbError::Invalid, "{q}");
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    node.shutdown().await;
}

/// Every supported type in one composite partition key, plus a static-only
/// partition and a descending clustering column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type_in_a_composite_key() {
    let names = ["t", "a", "bl", "bi", "i", "si", "ti", "u", "tu", "ts"];
    let types = [
        ColumnType::Text,
        ColumnType::Ascii,
        ColumnType::Blob,
        ColumnType::Bigint,
        ColumnType::Int,
        ColumnType::Smallint,
        ColumnType::Tinyint,
        ColumnType::Uuid,
        ColumnType::Timeuuid,
        ColumnType::Timestamp,
    ];
    let mut t = Table::new("ks", "wide", names[0], types[0]);
    for (n, typ) in names.iter().zip(types).skip(1) {
        t = t.partition_key_column(n, typ);
    }
    let t = t
        .clustering_column_desc("c", ColumnType::Int)
        .static_column("s", ColumnType::Text)
        .column("v", ColumnType::Blob);
    let uuid4 = uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
    let timeuuid = uuid::Uuid::from_u128(0x5b6e_0a30_8b6b_11ee_b962_0242_ac12_0002);
    let parts = |i: i64| {
        vec![
            Value::Text(format!("tëxt/{i}")),
            Value::Ascii(format!("ascii:{i}")),
            Value::Blob(vec![0, i as u8, 0xff]),
            Value::Bigint(-i),
            Value::Int(i as i32),
            Value::Smallint(-(i as i16)),
            Value::Tinyint(i as i8),
            Value::Uuid(*uuid4.as_bytes()),
            Value::Timeuuid(*timeuuid.as_bytes()),
            Value::Timestamp(1_700_000_000_000 + i),
        ]
    };
    let mut rows = Vec::new();
    for i in 0..5 {
        for c in 0..3 {
            rows.push(Row::partition(parts(i)).clustering([Value::Int(c)]).blob("v", vec![c as u8]));
        }
    }
    rows.push(Row::partition(parts(99)).set("s", Value::Text("static only".into())));
    let node = TestNode::builder().table(t).rows(rows).build().start("127.0.0.1:0").await.unwrap();
    let s = session(&node).await;

    type Key = (String, String, Vec<u8>, i64, i32, i16, i8, uuid::Uuid, CqlTimeuuid, CqlTimestamp);
    let key = |i: i64| -> Key {
        (
            format!("tëxt/{i}"),
            format!("ascii:{i}"),
            vec![0, i as u8, 0xff],
            -i,
            i as i32,
            -(i as i16),
            i as i8,
            uuid4,
            CqlTimeuuid::from(timeuuid),
            CqlTimestamp(1_700_000_000_000 + i),
        )
    };
    let state = s.get_cluster_state();
    for i in [0, 4, 99] {
        let ours = token(&Row::partition(parts(i)).key);
        assert_eq!(state.compute_token("ks", "wide", &key(i)).unwrap().value(), ours, "key {i}");
    }
    let where_all = names.iter().map(|n| format!("{n} = ?")).collect::<Vec<_>>().join(" AND ");
    let p = s.prepare(format!("SELECT c, v, s, {} FROM ks.wide WHERE {where_all}", names.join(", "))).await.unwrap();
    assert_eq!(p.get_variable_pk_indexes().len(), 10);
    // The selected columns: c, v, s, then the ten key columns.
    type Wide = (
        Option<i32>,
        Option<Vec<u8>>,
        Option<String>,
        String,
        String,
        Vec<u8>,
        i64,
        i32,
        i16,
        i8,
        uuid::Uuid,
        CqlTimeuuid,
        CqlTimestamp,
    );
    let got: Vec<Wide> = decoded(s.execute_unpaged(&p, key(2)).await.unwrap());
    // c DESC; every key column decodes back to what was stored.
    let cs: Vec<Option<i32>> = got.iter().map(|r| r.0).collect();
    assert_eq!(cs, [Some(2), Some(1), Some(0)]);
    for r in got {
        assert_eq!((r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12), key(2));
    }
    // The static-only partition is one row with a null clustering column.
    let only: Vec<Wide> = decoded(s.execute_unpaged(&p, key(99)).await.unwrap());
    assert_eq!(only.len(), 1);
    assert_eq!((only[0].0, only[0].2.as_deref()), (None, Some("static only")));
    // A key column given twice is refused.
    let e = s.query_unpaged("SELECT c FROM ks.wide WHERE t = 'x' AND t = 'y'", ()).await.unwrap_err();
    assert!(db_error_message(&e).1.contains("more than one relation"), "{e:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octet_length_follows_the_release_version() {
    // octet_length came with Cassandra 6.0 (CASSANDRA-20102); 5.0 does not have it.
    let versions = [("4.0.7", false), (cql_test_node::Version::DEFAULT, false), ("5.0.2", false), ("6.0.0", true)];
    for (version, has) in versions {
        let node = TestNode::builder()
            .table(objects_table())
            .rows(objects(10, 3))
            .release_version(version)
            .build()
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let s = session(&node).await;
        let reported: Vec<(String,)> =
            decoded(s.query_unpaged("SELECT release_version FROM system.local", ()).await.unwrap());
        assert_eq!(reported, [(version.to_string(),)]);
        let q = "SELECT part, octet_length(data), octet_length(meta) FROM ks.objects WHERE bucket = ? AND id = ?";
        if !has {
            let e = s.prepare(q).await.unwrap_err();
            assert!(format!("{e:?}").contains("Unknown function 'octet_length'"), "{version}: {e:?}");
            node.shutdown().await;
            continue;
        }
        let p = s.prepare(q).await.unwrap();
        node.reset_stats();
        let sizes: Vec<(i32, Option<i32>, Option<i32>)> =
            decoded(s.execute_unpaged(&p, ("photos", 4i64)).await.unwrap());
        // data is 10 + part bytes; meta is static ("meta4"), so every row shows it.
        assert_eq!(sizes, [(0, Some(10), Some(5)), (1, Some(11), Some(5)), (2, Some(12), Some(5))]);
        let sized = node.stats().reads(ReadKind::Lookup).bytes;
        node.reset_stats();
        let q = "SELECT part, data, meta FROM ks.objects WHERE bucket = 'photos' AND id = 4";
        let blobs: Vec<(i32, Vec<u8>, Vec<u8>)> = decoded(s.query_unpaged(q, ()).await.unwrap());
        assert_eq!(blobs.len(), 3);
        let fetched = node.stats().reads(ReadKind::Lookup).bytes;
        println!("{version}: octet_length moved {sized} bytes, fetching the values {fetched}");
        assert!(sized < fetched);
        node.shutdown().await;
    }
}

async fn tls_session(node: &RunningNode, certs: &TlsCerts, user: Option<(&str, &str)>) -> Result<Session, String> {
    let mut b = SessionBuilder::new().known_node_addr(node.addr()).tls_context(Some(certs.client_config()));
    if let Some((u, p)) = user {
        b = b.user(u, p);
    }
    b.build().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_password_lists_and_looks_up_and_refuses_strangers() {
    let certs = TlsCerts::generate().unwrap();
    let node = TestNode::builder()
        .table(objects_table())
        .rows(objects(30, 2))
        .credentials(Credentials::new("lister", "pa55-w0rd"))
        .tls(&certs)
        .build()
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let s = tls_session(&node, &certs, Some(("lister", "pa55-w0rd"))).await.expect("TLS session");
    let p = prepare_paged(&s, OBJECTS_DISTINCT, 4).await;
    let keys: Vec<(String, i64, i64)> =
        s.execute_iter(p, (i64::MIN, i64::MAX)).await.unwrap().rows_stream().unwrap().try_collect().await.unwrap();
    assert_eq!(keys.len(), 30);
    let p = s.prepare("SELECT data FROM ks.objects WHERE bucket = ? AND id = ? AND part = ?").await.unwrap();
    let data: Vec<(Vec<u8>,)> = decoded(s.execute_unpaged(&p, ("photos", 2i64, 1i32)).await.unwrap());
    assert_eq!(data, [(vec![1; 11],)]);
    let ok_handshakes = node.stats().tls_handshakes;
    assert!(ok_handshakes >= 1);

    // A wrong password over TLS fails as it does in plain text.
    let e = tls_session(&node, &certs, Some(("lister", "guessed-Pa55"))).await.unwrap_err();
    check_wrong_password(&e, "lister", "guessed-Pa55");

    // A client trusting another CA never gets to speak CQL.
    let stranger = TlsCerts::generate().unwrap();
    let failures = node.stats().tls_handshake_failures;
    let e = tls_session(&node, &stranger, Some(("lister", "pa55-w0rd"))).await.unwrap_err();
    println!("untrusted CA: {e}");
    assert!(e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"), "{e}");
    // The client gives up as soon as it has sent its alert; the node counts the failed handshake when
    // it reads that alert, which may be a moment later.
    let t0 = Instant::now();
    while node.stats().tls_handshake_failures == failures && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(node.stats().tls_handshake_failures > failures);

    // Nor does a plain-text client.
    let plain = SessionBuilder::new()
        .known_node_addr(node.addr())
        .user("lister", "pa55-w0rd")
        .connection_timeout(Duration::from_secs(3))
        .build()
        .await;
    assert!(plain.is_err(), "plain text to a TLS node must fail");
    node.shutdown().await;
}
