//! Connecting the way Cassandra operators expect: contact points, local datacenter, consistency level,
//! PasswordAuthenticator credentials, TLS, request timeout; and building the scan statement.
//!
//! `--size-of COL` asks for a value's byte length. The server measures it where it can (`octet_length`,
//! Cassandra 6.0 on; not Cassandra 4.x/5.0 nor ScyllaDB), and only there is no blob moved: the probe
//! is preparing the scan with `octet_length(COL)` once at start ([`prepare_scan`]), so the answer is
//! the server's own, whatever version it reports (ScyllaDB reports 3.0.8).
//!
//! Credentials are held only in [`Connect`] and handed to the driver; they never reach logs, summaries
//! or manifests (see `redacted_args`).
//!
//! A session that cannot be opened says what to act on, once (the driver's error repeats its causes):
//! a node certificate the `--tls-ca` bundle does not trust (naming the file), a CA file without a
//! certificate, refused credentials (naming the user, never the password), or a node that closed the
//! connection during the handshake (perhaps it requires TLS).

use crate::error::{Error, Result};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, PrepareError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the cluster.
#[derive(Clone)]
pub struct Connect {
    pub contact_points: Vec<String>,
    pub local_dc: Option<String>,
    pub consistency: Consistency,
    pub username: Option<String>,
    pub password: Option<String>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// PEM CA bundle to verify the nodes with; `Some` turns TLS on.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Keyspace whose replication the driver should read (for the ring).
    pub keyspace: String,
    /// The name of a fallback cluster (`--cluster NAME=...` of repair and verify), for messages; `None`
    /// for the cluster of `--contact-points`.
    pub cluster: Option<String>,
}

impl Connect {
    /// How messages name the cluster: `127.0.0.1:9042`, or `cluster old (10.1.0.1:9042)`.
    pub fn label(&self) -> String {
        let points = self.contact_points.join(",");
        match &self.cluster {
            Some(name) => format!("cluster {name} ({points})"),
            None => points,
        }
    }
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("contact_points", &self.contact_points)
            .field("local_dc", &self.local_dc)
            .field("consistency", &self.consistency)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// A consistency level as the flags take it: cqlsh's spelling, in any case (`LOCAL_ONE`, `quorum`,
/// `local-one`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    #[value(alias = "local-quorum")]
    LocalQuorum,
    #[value(alias = "each-quorum")]
    EachQuorum,
    #[value(alias = "local-one")]
    LocalOne,
}

impl From<Level> for Consistency {
    fn from(l: Level) -> Consistency {
        match l {
            Level::Any => Consistency::Any,
            Level::One => Consistency::One,
            Level::Two => Consistency::Two,
            Level::Three => Consistency::Three,
            Level::Quorum => Consistency::Quorum,
            Level::All => Consistency::All,
            Level::LocalQuorum => Consistency::LocalQuorum,
            Level::EachQuorum => Consistency::EachQuorum,
            Level::LocalOne => Consistency::LocalOne,
        }
    }
}

/// Parses a consistency level ([`Level`]), for flags that carry one inside another value
/// (`--cluster-consistency NAME=LEVEL`).
pub fn parse_consistency(s: &str) -> std::result::Result<Consistency, String> {
    use clap::ValueEnum;
    Level::from_str(s, true).map(Into::into).map_err(|_| {
        let all: Vec<String> = Level::value_variants()
            .iter()
            .filter_map(|l| l.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        format!("unknown consistency level {s:?} (one of {})", all.join(", "))
    })
}

/// Opens a session. Retries are ours (see `scan`), so the driver's retry policy is fallthrough.
pub async fn connect(c: &Connect) -> Result<Session> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &c.local_dc {
        policy = policy.prefer_datacenter(dc.clone()).permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(c.consistency)
        .request_timeout(Some(c.request_timeout))
        .load_balancing_policy(policy.build())
        .retry_policy(Arc::new(FallthroughRetryPolicy))
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(&c.contact_points)
        .connection_timeout(c.connect_timeout)
        .keyspaces_to_fetch([c.keyspace.clone()])
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(u), Some(p)) = (&c.username, &c.password) {
        b = b.user(u.clone(), p.clone());
    }
    if let Some(ca) = &c.tls_ca {
        b = tls(b, ca)?;
    }
    b.build().await.map_err(|e| connect_error(c, &e))
}

/// A failed connect as one clear line: what to act on, then the innermost cause the driver gave.
fn connect_error(c: &Connect, e: &(dyn std::error::Error + 'static)) -> Error {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let said = crate::error::chain(e);
    let tls = if c.tls_ca.is_some() { " with TLS" } else { "" };
    let what = if said.contains("invalid peer certificate") {
        match &c.tls_ca {
            Some(ca) => format!("the node's TLS certificate is not trusted by the CA bundle {}", ca.display()),
            None => "the node's TLS certificate is not trusted".to_string(),
        }
    } else if said.contains("Authentication") || said.contains("bad credentials") {
        match &c.username {
            Some(u) => format!("authentication failed: the cluster refused user {u:?} with the password given"),
            None => "authentication failed: the cluster requires a username and a password".to_string(),
        }
    } else if ["Connection refused", "timed out", "No route to host"].iter().any(|w| said.contains(w)) {
        "no node answered (are the nodes up, and are the contact points right?)".to_string()
    } else if c.tls_ca.is_none()
        && said.contains("Failed to perform a connection setup request")
        && said.contains("eof")
    {
        "the node closed the connection during the handshake (does the cluster require TLS? --tls-ca)".to_string()
    } else {
        "could not open a session".to_string()
    };
    Error::remote(format!("connecting to {}{tls}: {what}", c.label()), cause.to_string())
}

fn tls(b: SessionBuilder, ca: &std::path::Path) -> Result<SessionBuilder> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let bad_ca = |e: &dyn std::fmt::Display| Error::Usage(format!("TLS CA bundle {}: {e}", ca.display()));
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad_ca(&e))? {
        let cert = cert.map_err(|e| bad_ca(&e))?;
        roots.add(cert).map_err(|e| bad_ca(&e))?;
    }
    if roots.is_empty() {
        // Else every node would fail its handshake with "UnknownIssuer", far from the cause.
        return Err(bad_ca(&"no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----)"));
    }
    // The aws-lc provider explicitly: the process may hold more than one, and then `builder()` cannot choose.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(b.tls_context(Some(Arc::new(cfg))))
}

/// Quotes a CQL identifier unless it is a plain lowercase one (Cassandra folds unquoted names).
pub fn ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Which columns a scan selects, in this order: the partition key columns, their token,
/// [writetime(col)], [size source].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Selection {
    pub keyspace: String,
    pub table: String,
    /// The partition key columns in key order. Written as `"a,b"` (`"id"` for one column: journals of
    /// runs from before composite keys still resume).
    #[serde(rename = "key_column", serialize_with = "comma_list")]
    pub key_columns: Vec<String>,
    /// `--key-template`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_template: Option<String>,
    pub writetime_of: Option<String>,
    pub size: Option<SizeSource>,
}

fn comma_list<S: serde::Serializer>(v: &[String], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.join(","))
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SizeSource {
    /// The byte length of a column's value (`--size-of`), measured as [`Measure`] says.
    BlobLength(String),
    /// An integer column that holds the length.
    Column(String),
}

/// How a [`SizeSource::BlobLength`] is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// The server's `octet_length(col)`: an int per row, no blob moves.
    OctetLength,
    /// The value itself is fetched and measured here: every blob crosses the network.
    Fetch,
}

impl Selection {
    /// The scan statement. `distinct`: the table has clustering columns, so each partition is read once
    /// (`SELECT DISTINCT`) instead of row by row. `measure`: how `--size-of` is selected.
    pub fn cql(&self, distinct: bool, measure: Measure) -> String {
        let key: Vec<String> = self.key_columns.iter().map(|c| ident(c)).collect();
        let token = format!("token({})", key.join(", "));
        let mut cols = key.clone();
        cols.push(token.clone());
        if let Some(w) = &self.writetime_of {
            cols.push(format!("writetime({})", ident(w)));
        }
        match (&self.size, measure) {
            (Some(SizeSource::BlobLength(c)), Measure::OctetLength) => cols.push(format!("octet_length({})", ident(c))),
            (Some(SizeSource::BlobLength(c)) | Some(SizeSource::Column(c)), _) => cols.push(ident(c)),
            (None, _) => {}
        }
        format!(
            "SELECT {}{} FROM {}.{} WHERE {token} > ? AND {token} <= ?",
            if distinct { "DISTINCT " } else { "" },
            cols.join(", "),
            ident(&self.keyspace),
            ident(&self.table)
        )
    }
}

/// The prepared scan, and how `--size-of` will be measured by it.
pub struct Prepared {
    pub stmt: PreparedStatement,
    pub measure: Measure,
    /// The server's answer to `octet_length`, when it refused it (and the blobs are fetched).
    pub refused: Option<String>,
}

/// Prepares the scan statement; with `--size-of`, this is the probe: `octet_length(col)` first, and a
/// server that refuses it as a request (invalid or a syntax error: "Unknown function 'octet_length'")
/// gets the statement that fetches the value. Any other failure (the network, auth) is an error, as is
/// a refusal of the fetching statement too (then the column or table is what is wrong).
pub async fn prepare_scan(session: &Session, sel: &Selection, distinct: bool) -> Result<Prepared> {
    let prepare =
        |cql: String| async move { session.prepare(cql.as_str()).await.map_err(|e| (format!("preparing {cql:?}"), e)) };
    let mut refused = None;
    if matches!(sel.size, Some(SizeSource::BlobLength(_))) {
        match prepare(sel.cql(distinct, Measure::OctetLength)).await {
            Ok(stmt) => return Ok(Prepared { stmt, measure: Measure::OctetLength, refused }),
            Err((
                _,
                PrepareError::AllAttemptsFailed {
                    first_attempt: RequestAttemptError::DbError(DbError::Invalid | DbError::SyntaxError, msg),
                },
            )) => refused = Some(msg),
            Err((what, e)) => return Err(Error::remote(what, e)),
        }
    }
    let stmt = prepare(sel.cql(distinct, Measure::Fetch)).await.map_err(|(what, e)| Error::remote(what, e))?;
    Ok(Prepared { stmt, measure: Measure::Fetch, refused })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cql_text_and_identifiers() {
        let s = Selection {
            keyspace: "ks".into(),
            table: "Objects".into(),
            key_columns: vec!["k".into()],
            key_template: None,
            writetime_of: Some("blob".into()),
            size: Some(SizeSource::BlobLength("blob".into())),
        };
        assert_eq!(
            s.cql(false, Measure::Fetch),
            "SELECT k, token(k), writetime(blob), blob FROM ks.\"Objects\" WHERE token(k) > ? AND token(k) <= ?"
        );
        assert_eq!(
            s.cql(true, Measure::OctetLength),
            "SELECT DISTINCT k, token(k), writetime(blob), octet_length(blob) FROM ks.\"Objects\" \
             WHERE token(k) > ? AND token(k) <= ?"
        );
        let column = Selection { size: Some(SizeSource::Column("Len".into())), ..s.clone() };
        assert!(
            column.cql(false, Measure::OctetLength).contains("writetime(blob), \"Len\" FROM"),
            "a length column is read as is"
        );
        assert_eq!(serde_json::to_value(&s).unwrap()["key_column"], "k", "journals of older runs still resume");
        let wide = Selection {
            key_columns: vec!["bucket".into(), "Id".into()],
            key_template: Some("{bucket}:{Id}".into()),
            writetime_of: None,
            size: None,
            ..s
        };
        assert_eq!(
            wide.cql(true, Measure::OctetLength),
            "SELECT DISTINCT bucket, \"Id\", token(bucket, \"Id\") FROM ks.\"Objects\" \
             WHERE token(bucket, \"Id\") > ? AND token(bucket, \"Id\") <= ?"
        );
        let v = serde_json::to_value(&wide).unwrap();
        assert_eq!((v["key_column"].as_str(), v["key_template"].as_str()), (Some("bucket,Id"), Some("{bucket}:{Id}")));
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert!(parse_consistency("local_one").is_ok());
        assert!(parse_consistency("SOME").is_err());
        let c = Connect {
            contact_points: vec!["h:1".into()],
            local_dc: None,
            consistency: Consistency::LocalOne,
            username: Some("u".into()),
            password: Some("hunter2".into()),
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            tls_ca: None,
            keyspace: "ks".into(),
            cluster: Some("old".into()),
        };
        assert_eq!(c.label(), "cluster old (h:1)");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
