//! What every keyrecon binary shares: size and time arguments, the flag groups (key input
//! [`FormatArgs`], load manners [`LoadArgs`], the Cassandra and S3 connections [`CassandraArgs`],
//! [`S3Args`]), and the run contract ([`main_with`], [`report`]): a summary paragraph on stderr and
//! the exit code (0 same/success, 1 differences, 2 trouble; a closed pipe downstream is not trouble).
//!
//! Every binary is: flags -> a validated config -> one library call -> [`report`] of the summary
//! (ripgrep's flags -> config split). A group is flattened into every binary that needs it, so a flag
//! has one name, one help text and one validation everywhere. Invariant: a binary never reads the raw
//! fields to connect; it calls the group's builder ([`CassandraArgs::connect`],
//! [`S3Args::client_options`], [`FormatArgs::spec`]), which applies the environment fallbacks and
//! checks. A binary whose default must differ (a scan reads at LOCAL_ONE, a LIST page may take longer
//! than a HEAD, repair reads `auto` key files) changes it with `#[command(mut_arg(..))]`, so `--help`
//! still shows the default that applies.
//!
//! One name per concept, across every tool (README "Flags"): `-j/--concurrency` (requests, streams or
//! keys in flight), `--retries` (further attempts after the first), `--rate`, `--latency-target`,
//! `--mem`, `--tmp` ([`MemArgs`]), `-o/--out`, `--resume`, `--force`, `-q/--quiet`, `--key-column` and
//! `--key-template` ([`KeyColumnArgs`]: the Cassandra partition key columns and how they are written
//! as a key), `--csv-column` (the key's column in a CSV input).

use crate::error::Error;
use crate::input::{Format, InputSpec, KeyColumn};
#[cfg(feature = "net")]
use crate::repair::fetch::{BlobSource, ClusterSource, TableRef};
#[cfg(feature = "net")]
use crate::sources::cassandra::pk::KeyFormat;
#[cfg(feature = "net")]
use crate::sources::cassandra::session::{parse_consistency, Connect, Level};
#[cfg(feature = "net")]
use crate::sources::s3::client::ClientOptions;
use crate::summary::Summary;
#[cfg(feature = "net")]
use scylla::statement::Consistency;
use std::path::PathBuf;
use std::time::Duration;

/// Parses `256M`, `1G`, `1.5GiB`, `64k`, `1000` (bytes). Suffixes are binary (K = 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (examples: 256M, 1G, 65536)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => return Err(format!("unknown size unit {other:?} in {s:?} (use K, M, G, T)")),
    };
    Ok((n * mult) as usize)
}

/// How a key input is read (see `keyrecon_engine::input`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// CSV with a header when the first line is `key` or starts with `key,`, else `lines`.
    Auto,
    /// One key per line, every byte but the `\n` (like comm); NUL-terminated with -z.
    Lines,
    /// CSV; the key in --csv-column.
    Csv,
}

/// Key-input flags, shared by keyrecon-sort, keyrecon-diff, keyrecon-repair and keyrecon-verify.
#[derive(clap::Args, Clone, Debug)]
pub struct FormatArgs {
    /// Keys are NUL-terminated instead of newline-terminated (S3 keys may contain newlines). Output key
    /// files are then NUL-terminated too.
    #[arg(short = 'z', long = "null-data")]
    pub null: bool,
    /// Input format.
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    pub format: InputFormat,
    /// CSV: the key's column, a 1-based number or (with a header) a name. Default: `key` when the CSV has
    /// a header, else 1.
    #[arg(long, value_name = "N|NAME")]
    pub csv_column: Option<String>,
    /// CSV: the first row holds column names (it is not a key).
    #[arg(long)]
    pub header: bool,
    /// CSV field delimiter (one byte).
    #[arg(long, default_value = ",")]
    pub delimiter: String,
    /// Keys longer than this go to the rejects file instead of being processed.
    #[arg(long, value_name = "BYTES", default_value_t = crate::input::DEFAULT_MAX_KEY_LEN)]
    pub max_key_len: usize,
}

impl FormatArgs {
    pub fn format(&self) -> Result<Format, String> {
        match self.format {
            InputFormat::Csv => {
                if self.null {
                    return Err("-z and --format csv cannot be combined".into());
                }
                let d = self.delimiter.as_bytes();
                if d.len() != 1 {
                    return Err(format!("--delimiter must be one byte, got {:?}", self.delimiter));
                }
                let column = match self.csv_column.as_deref() {
                    None if self.header => KeyColumn::Name("key".into()),
                    None => KeyColumn::Index(0),
                    Some(c) => match c.parse::<usize>() {
                        Ok(0) => return Err("--csv-column numbers start at 1".into()),
                        Ok(n) => KeyColumn::Index(n - 1),
                        Err(_) => KeyColumn::Name(c.to_string()),
                    },
                };
                Ok(Format::Csv { column, header: self.header, delimiter: d[0] })
            }
            InputFormat::Auto => Ok(Format::Auto { nul: self.null }),
            InputFormat::Lines if self.null => Ok(Format::Nul),
            InputFormat::Lines => Ok(Format::Lines),
        }
    }

    pub fn spec(&self, path: PathBuf) -> Result<InputSpec, String> {
        let mut s = InputSpec::new(path, self.format()?);
        s.max_key_len = self.max_key_len;
        Ok(s)
    }

    pub fn terminator(&self) -> u8 {
        if self.null {
            0
        } else {
            b'\n'
        }
    }
}

/// The sort budget of the tools that sort (keyrecon-sort, keyrecon-diff, keyrecon-repair,
/// keyrecon-verify): memory, and where what does not fit spills. The default is repair's and verify's,
/// whose sorts share a host with the keys in flight; the engine's tools raise it with `mut_arg`.
#[derive(clap::Args, Clone, Debug)]
pub struct MemArgs {
    /// Memory budget for sorting (e.g. 256M, 1G). More than this spills to --tmp.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub mem: usize,
    /// Directory for spill files (default: $TMPDIR or /tmp).
    #[arg(long, value_name = "DIR")]
    pub tmp: Option<PathBuf>,
}

impl MemArgs {
    /// `--tmp`, else `$TMPDIR` or /tmp.
    pub fn tmp_dir(&self) -> PathBuf {
        self.tmp.clone().unwrap_or_else(crate::sort::default_tmp)
    }
}

/// Load flags of the tools that send requests to servers (keyrecon-list-cassandra, keyrecon-repair,
/// keyrecon-verify): how much at once, how fast, and how often to try again. The defaults are repair's;
/// a tool whose work differs changes them with `mut_arg`.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Requests in flight at most (the AIMD limit starts here and never goes above it).
    #[arg(long, short = 'j', default_value_t = 32)]
    pub concurrency: usize,
    /// Cap on work per second (objects/s for repair and verify, rows/s for a scan).
    #[arg(long, value_name = "N/S", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Halve the concurrency when the smoothed request latency exceeds this many milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub latency_target: u64,
    /// Further attempts of a failed request (timeouts, overload, 5xx) before it counts as failed.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
}

impl LoadArgs {
    pub fn latency_target(&self) -> Duration {
        Duration::from_millis(self.latency_target)
    }
    /// `--concurrency` must be at least 1.
    pub fn check(&self) -> crate::Result<()> {
        if self.concurrency < 1 {
            return Err(Error::Usage("--concurrency must be at least 1".into()));
        }
        Ok(())
    }
}

/// Parses a positive rate (`--rate`, `--bandwidth`'s number).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !r.is_finite() || r <= 0.0 {
        return Err(format!("the rate must be a positive number, got {s:?}"));
    }
    Ok(r)
}

/// Prints the summary's paragraph on stderr as `TOOL: ...` (unless `quiet`; always when the run is in
/// trouble, exit code 2, so a cron job never fails in silence) and returns the exit code.
pub fn report(tool: &str, s: &impl Summary, quiet: bool) -> i32 {
    let code = s.exit_code();
    if !quiet || code == 2 {
        eprintln!("{tool}: {}", s.paragraph());
    }
    code
}

/// The keys a tool works on (keyrecon-repair, keyrecon-verify): a file or stdin, read by the engine's
/// key reader (`--format auto` by default there: diff's missing-on-target.csv, repair's ok.csv, or
/// one key per line).
#[derive(clap::Args, Clone, Debug)]
pub struct KeysArgs {
    /// Keys: missing-on-target.csv (its `origin` column names the Cassandra key), a CSV with a `key`
    /// column (e.g. an ok.csv), a key-per-line file, or - (stdin).
    #[arg(long, value_name = "FILE|-", required = true)]
    pub keys: Option<PathBuf>,
    #[command(flatten)]
    pub fmt: FormatArgs,
}

impl KeysArgs {
    pub fn spec(&self) -> crate::Result<InputSpec> {
        let path = self.keys.clone().ok_or_else(|| Error::Usage("--keys FILE|- is required".into()))?;
        self.fmt.spec(path).map_err(Error::Usage)
    }
}

/// Keys from a fleet's queue instead of --keys (keyrecon-repair, keyrecon-verify; the queue is made
/// and watched with keyrecon-queue). The tools make --keys optional with `mut_arg`.
#[cfg(feature = "net")]
#[derive(clap::Args, Clone, Debug)]
pub struct QueueArgs {
    /// Take the keys from a fleet's queue instead of --keys: redis://HOST:PORT[/DB]/NAME, made by
    /// `keyrecon-queue enqueue`. Run the same command on every machine; see docs/fleet.md.
    #[arg(long, value_name = "URL", conflicts_with = "keys", required_unless_present = "keys", value_parser = parse_queue_url)]
    pub queue: Option<crate::queue::QueueUrl>,
    /// This process's name in the queue's consumer group; unique per running process (default:
    /// HOSTNAME-PID). A consumer restarted under its old name takes back its pending keys at once.
    #[arg(long, value_name = "NAME", requires = "queue")]
    pub consumer: Option<String>,
    /// Keys held this long by a consumer that stopped answering (or left pending by a failed try) are
    /// taken over by a live one.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub claim_idle: Duration,
    /// Deliveries of one key before it is given up: recorded as failed with the reason, and put on
    /// the queue's dead-letter stream.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_deliveries: u64,
    /// Seconds to keep retrying while Redis is unreachable (a restart, a network blip) before giving up.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    pub redis_timeout: Duration,
}

#[cfg(feature = "net")]
fn parse_queue_url(s: &str) -> Result<crate::queue::QueueUrl, String> {
    crate::queue::QueueUrl::parse(s).map_err(|e| e.to_string())
}

#[cfg(feature = "net")]
impl QueueArgs {
    /// Where the tool's keys come from: the queue, or else --keys. `batch`: keys taken from the queue
    /// at a time (the tool's concurrency); `prefix`: the tool's --prefix.
    pub fn key_source(
        &self,
        keys: &KeysArgs,
        tool: &'static str,
        batch: usize,
        prefix: &[u8],
        quiet: bool,
    ) -> crate::Result<crate::repair::keys::KeySource> {
        use crate::repair::keys::KeySource;
        let Some(url) = &self.queue else { return Ok(KeySource::Input(keys.spec()?)) };
        let consumer = match &self.consumer {
            Some(c) if c.is_empty() || c.contains('\0') => {
                return Err(Error::Usage(format!("--consumer {c:?}: a name, without NUL")))
            }
            Some(c) => c.clone(),
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                let host = host.trim();
                format!("{}-{}", if host.is_empty() { "keyrecon" } else { host }, std::process::id())
            }
        };
        Ok(KeySource::Queue(crate::queue::consume::ConsumerConfig {
            url: url.clone(),
            consumer,
            tool,
            prefix: prefix.to_vec(),
            claim_idle: self.claim_idle,
            max_deliveries: self.max_deliveries,
            batch: batch.max(1),
            redis_timeout: self.redis_timeout,
            quiet,
        }))
    }
}

/// The partition key and how it is written as a key (keyrecon-list-cassandra, keyrecon-repair,
/// keyrecon-verify): the same flags and the same text form, so the key a listing writes is the key
/// repair and verify parse back into the columns of exactly one row.
#[cfg(feature = "net")]
#[derive(clap::Args, Clone, Debug)]
pub struct KeyColumnArgs {
    /// The partition key columns, every one in key order (checked against the table's schema).
    /// Types: text, ascii, blob, tinyint..bigint, uuid, timeuuid, timestamp, in any mix. For
    /// `PRIMARY KEY ((service, id), part)`: --key-column service,id (part is a clustering column: each
    /// partition is listed once).
    #[arg(long, value_name = "COL[,COL...]", value_delimiter = ',')]
    pub key_column: Vec<String>,
    /// How the key columns are written as the key, e.g. '{service}:{id}' -> PHOTO:12345 (`{{`/`}}`:
    /// literal braces). Default: the values joined by `/` (PHOTO/12345); a one-column key is the value
    /// itself. Values as text: integers in decimal, uuids hyphenated, blobs in hex (as they are for a
    /// one-column key without a template), timestamps 2024-03-01T12:00:00.000Z. Columns must be
    /// separated (`{a}{b}` is refused). A value holding a separator is fine while the key splits back
    /// one way only (`{service}/{id}`, id an integer); a row whose key would not is never listed under
    /// it but rejected with the reason (rejects.csv, exit status 2), and repair and verify fail a key
    /// that does not parse back ("key" stage).
    #[arg(long, value_name = "TEMPLATE")]
    pub key_template: Option<String>,
}

#[cfg(feature = "net")]
impl KeyColumnArgs {
    /// The key's form, or `None` without --key-column. A template that cannot split back is refused.
    pub fn format(&self) -> crate::Result<Option<KeyFormat>> {
        if self.key_column.is_empty() {
            return match &self.key_template {
                Some(_) => Err(Error::Usage("--key-template needs --key-column (the partition key columns)".into())),
                None => Ok(None),
            };
        }
        KeyFormat::new(&self.key_column, self.key_template.as_deref()).map(Some).map_err(Error::Usage)
    }
}

/// Where blobs are fetched (keyrecon-repair; keyrecon-verify --deep): the source table, the
/// fallbacks, the key and blob columns, the connections. Optional here so verify can go without;
/// repair makes --source and --key-column required with `mut_arg`.
///
/// Fallbacks may be on other clusters: `--cluster old=HOST:PORT,...` names one, `--fallback
/// old:KS.TABLE` reads a table there, and `--cluster-*` flags (`NAME=VALUE`, repeatable) set what
/// differs per cluster. What names or trusts a cluster is never inherited from the first one (contact
/// points, DC, TLS CA, credentials: `$KEYRECON_CASSANDRA_<NAME>_USERNAME` / `_PASSWORD`); manners are
/// (consistency, request timeout, concurrency, retries default to the tool's flags).
#[cfg(feature = "net")]
#[derive(clap::Args, Clone, Debug)]
pub struct BlobArgs {
    /// Table to fetch blobs from, as KEYSPACE.TABLE.
    #[arg(long, value_name = "KS.TABLE", value_parser = TableRef::parse)]
    pub source: Option<TableRef>,
    /// Table to try when the previous ones lack the key (repeatable). KS.TABLE is in the cluster of
    /// --contact-points; NAME:KS.TABLE in the --cluster NAME. Lookup order: --source, the fallbacks of
    /// the first cluster, then each --cluster's fallbacks (clusters in --cluster order, tables in
    /// --fallback order).
    #[arg(long, value_name = "[NAME:]KS.TABLE", value_parser = parse_fallback)]
    pub fallback: Vec<(Option<String>, TableRef)>,
    #[command(flatten)]
    pub key: KeyColumnArgs,
    /// The column holding the object's bytes (in a table with clustering columns: a static column,
    /// the one value of the partition).
    #[arg(long, default_value = "blob")]
    pub blob_column: String,
    #[command(flatten)]
    pub cassandra: CassandraArgs,
    #[command(flatten)]
    pub clusters: ClusterArgs,
}

/// The `--help` section of [`ClusterArgs`].
#[cfg(feature = "net")]
const CLUSTERS: &str = "Fallback clusters";

/// The fallback clusters' flags (see [`BlobArgs`]); every value but --cluster's is `NAME=VALUE`.
#[cfg(feature = "net")]
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Another cluster for --fallback NAME:KS.TABLE, as NAME=HOST:PORT[,HOST:PORT...] (repeatable;
    /// NAME: lowercase letters, digits, _). It gets its own session, concurrency limit and retries.
    /// Credentials: $KEYRECON_CASSANDRA_<NAME>_USERNAME / _PASSWORD (NAME in capitals; never the
    /// first cluster's). A cluster that cannot be reached at the start fails the keys that need it
    /// (stage fetch, with the reason), and the run goes on.
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=HOST:PORT,...", value_parser = parse_cluster)]
    pub cluster: Vec<(String, Vec<String>)>,
    /// A fallback cluster's datacenter to read from, as NAME=DC (default: none preferred).
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=DC", value_parser = named(|s| Ok(s.to_string())))]
    pub cluster_local_dc: Vec<(String, String)>,
    /// A fallback cluster's consistency level, as NAME=LEVEL (default: --consistency).
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=LEVEL", value_parser = named(parse_consistency))]
    pub cluster_consistency: Vec<(String, Consistency)>,
    /// Connect to a fallback cluster with TLS, verifying its nodes against a PEM CA bundle, as
    /// NAME=PEM (default: no TLS; --tls-ca is the first cluster's).
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=PEM", value_parser = named(|s| Ok(PathBuf::from(s))))]
    pub cluster_tls_ca: Vec<(String, PathBuf)>,
    /// A fallback cluster's read timeout, as NAME=SECS (default: --request-timeout).
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=SECS", value_parser = named(parse_secs))]
    pub cluster_request_timeout: Vec<(String, Duration)>,
    /// Requests in flight at most to a fallback cluster, as NAME=N (its own AIMD limit, halved on its
    /// own timeouts and latency; default: --concurrency).
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=N", value_parser = named(parse_concurrency))]
    pub cluster_concurrency: Vec<(String, usize)>,
    /// Further attempts of a failed request to a fallback cluster, as NAME=N (default: --retries).
    #[arg(long, help_heading = CLUSTERS, value_name = "NAME=N", value_parser = named(|s| s.parse::<u32>().map_err(|e| format!("{s:?}: {e}"))))]
    pub cluster_retries: Vec<(String, u32)>,
}

/// `--fallback [NAME:]KS.TABLE`.
#[cfg(feature = "net")]
fn parse_fallback(s: &str) -> Result<(Option<String>, TableRef), String> {
    match s.split_once(':') {
        Some((name, table)) => Ok((Some(cluster_name(name)?), TableRef::parse(table)?)),
        None => Ok((None, TableRef::parse(s)?)),
    }
}

/// `--cluster NAME=HOST:PORT[,HOST:PORT...]`.
#[cfg(feature = "net")]
fn parse_cluster(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, points) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=HOST:PORT[,HOST:PORT...]"))?;
    let points: Vec<String> = points.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
    if points.is_empty() {
        return Err(format!("{s:?}: no contact points after {name}="));
    }
    Ok((cluster_name(name)?, points))
}

/// A cluster name: it becomes part of flag values and of environment variable names.
#[cfg(feature = "net")]
fn cluster_name(name: &str) -> Result<String, String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!("cluster name {name:?}: lowercase letters, digits and _, starting with a letter"))
    }
}

/// A parser of `NAME=VALUE` for the per-cluster flags.
#[cfg(feature = "net")]
fn named<T>(
    parse: impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
) -> impl Fn(&str) -> Result<(String, T), String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let (name, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
        Ok((cluster_name(name)?, parse(value)?))
    }
}

#[cfg(feature = "net")]
fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: a concurrency is a whole number, at least 1")),
    }
}

/// The environment variables of a fallback cluster's credentials.
#[cfg(feature = "net")]
pub fn cluster_credential_env(name: &str) -> [String; 2] {
    let n = name.to_ascii_uppercase();
    [format!("KEYRECON_CASSANDRA_{n}_USERNAME"), format!("KEYRECON_CASSANDRA_{n}_PASSWORD")]
}

#[cfg(feature = "net")]
impl BlobArgs {
    /// The blob source, or `None` without --source.
    pub fn source(&self) -> crate::Result<Option<BlobSource>> {
        self.source_with_env(|name| std::env::var(name).ok())
    }

    /// [`Self::source`] with the environment passed in (the tests cannot share the process's).
    fn source_with_env(&self, env: impl Fn(&str) -> Option<String>) -> crate::Result<Option<BlobSource>> {
        let key = self.key.format()?;
        let Some(src) = &self.source else { return Ok(None) };
        let Some(key) = key else {
            return Err(Error::Usage("--source needs --key-column (the partition key columns)".into()));
        };
        let mut tables = vec![src.clone()];
        tables.extend(self.fallback.iter().filter(|(c, _)| c.is_none()).map(|(_, t)| t.clone()));
        let first = ClusterSource {
            connect: self.cassandra.connect_with_env(&src.keyspace, &env)?,
            tables,
            concurrency: None,
            retries: None,
        };
        let mut clusters = vec![first];
        clusters.extend(self.clusters.sources(&self.cassandra, &self.fallback, &env)?);
        Ok(Some(BlobSource { clusters, key, blob_column: self.blob_column.clone() }))
    }
}

#[cfg(feature = "net")]
impl ClusterArgs {
    /// The fallback clusters in --cluster order, each with its --fallback tables. Every name must be
    /// used: a --fallback or --cluster-* naming no --cluster, and a --cluster no --fallback reads, are
    /// refused (a typo would otherwise lose a whole cluster's lookups).
    fn sources(
        &self,
        first: &CassandraArgs,
        fallbacks: &[(Option<String>, TableRef)],
        env: &impl Fn(&str) -> Option<String>,
    ) -> crate::Result<Vec<ClusterSource>> {
        let known = |name: &str| self.cluster.iter().any(|(n, _)| n == name);
        for (name, t) in fallbacks {
            if let Some(n) = name.as_deref().filter(|n| !known(n)) {
                return Err(Error::Usage(format!(
                    "--fallback {n}:{t}: no --cluster {n}=HOST:PORT,... names that cluster"
                )));
            }
        }
        let per_cluster = [
            ("--cluster-local-dc", names(&self.cluster_local_dc)),
            ("--cluster-consistency", names(&self.cluster_consistency)),
            ("--cluster-tls-ca", names(&self.cluster_tls_ca)),
            ("--cluster-request-timeout", names(&self.cluster_request_timeout)),
            ("--cluster-concurrency", names(&self.cluster_concurrency)),
            ("--cluster-retries", names(&self.cluster_retries)),
        ];
        for (flag, names) in &per_cluster {
            for (i, n) in names.iter().enumerate() {
                if !known(n) {
                    return Err(Error::Usage(format!(
                        "{flag} {n}=...: no --cluster {n}=HOST:PORT,... names that cluster"
                    )));
                }
                if names[..i].contains(n) {
                    return Err(Error::Usage(format!("{flag}: cluster {n} is given twice")));
                }
            }
        }
        let mut out = Vec::new();
        for (i, (name, points)) in self.cluster.iter().enumerate() {
            if self.cluster[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::Usage(format!("--cluster {name}: given twice")));
            }
            let tables: Vec<TableRef> =
                fallbacks.iter().filter(|(c, _)| c.as_deref() == Some(name)).map(|(_, t)| t.clone()).collect();
            let Some(keyspace) = tables.first().map(|t| t.keyspace.clone()) else {
                return Err(Error::Usage(format!("--cluster {name}: no --fallback {name}:KS.TABLE reads from it")));
            };
            let [user_env, pass_env] = cluster_credential_env(name);
            let (username, password) = credentials(None, None, [&user_env, &pass_env], false, env)?;
            out.push(ClusterSource {
                connect: Connect {
                    contact_points: points.clone(),
                    local_dc: for_cluster(&self.cluster_local_dc, name),
                    consistency: for_cluster(&self.cluster_consistency, name).unwrap_or(first.consistency.into()),
                    username,
                    password,
                    request_timeout: for_cluster(&self.cluster_request_timeout, name).unwrap_or(first.request_timeout),
                    connect_timeout: CASSANDRA_CONNECT_TIMEOUT,
                    tls_ca: for_cluster(&self.cluster_tls_ca, name),
                    keyspace,
                    cluster: Some(name.clone()),
                },
                tables,
                concurrency: for_cluster(&self.cluster_concurrency, name),
                retries: for_cluster(&self.cluster_retries, name),
            });
        }
        Ok(out)
    }
}

/// The cluster names of a per-cluster flag's values.
#[cfg(feature = "net")]
fn names<T>(v: &[(String, T)]) -> Vec<&str> {
    v.iter().map(|(n, _)| n.as_str()).collect()
}

/// The value a per-cluster flag gives cluster `name`.
#[cfg(feature = "net")]
fn for_cluster<T: Clone>(v: &[(String, T)], name: &str) -> Option<T> {
    v.iter().find(|(n, _)| n == name).map(|(_, x)| x.clone())
}

/// A username and a password from the flags, else from the environment, each on its own; then both
/// or neither must be set. `flags`: the message names --username / --password too.
#[cfg(feature = "net")]
fn credentials(
    username: Option<&String>,
    password: Option<&String>,
    [user_env, pass_env]: [&str; 2],
    flags: bool,
    env: &impl Fn(&str) -> Option<String>,
) -> crate::Result<(Option<String>, Option<String>)> {
    let username = username.cloned().or_else(|| env(user_env));
    let password = password.cloned().or_else(|| env(pass_env));
    if username.is_some() != password.is_some() {
        let (uf, pf) = if flags { ("--username / ", "--password / ") } else { ("", "") };
        let set = |b: bool| if b { "set" } else { "not set" };
        return Err(Error::Usage(format!(
            "give both a username and a password (or neither): {uf}${user_env} is {}, {pf}${pass_env} is {}",
            set(username.is_some()),
            set(password.is_some()),
        )));
    }
    Ok((username, password))
}

/// The bucket keys are written to or checked in (keyrecon-repair, keyrecon-verify).
#[cfg(feature = "net")]
#[derive(clap::Args, Clone, Debug)]
pub struct BucketArgs {
    /// The bucket.
    #[arg(long)]
    pub bucket: String,
    /// Prepended to every key to form the S3 key.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub s3: S3Args,
}

/// Parses a timeout in seconds (`12`, `0.5`). Zero, negative, NaN and infinite values are refused:
/// a zero timeout fails every request, and `Duration` cannot hold the others.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let n: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("the timeout must be a positive number of seconds, got {s:?}"));
    }
    Duration::try_from_secs_f64(n).map_err(|_| format!("{s:?} seconds is too long"))
}

#[cfg(feature = "net")]
/// Environment variables the Cassandra credentials default to (preferred to the flags, which show up in
/// `ps`).
pub const CASSANDRA_USERNAME_ENV: &str = "KEYRECON_CASSANDRA_USERNAME";
pub const CASSANDRA_PASSWORD_ENV: &str = "KEYRECON_CASSANDRA_PASSWORD";

#[cfg(feature = "net")]
/// How long the driver may take to open a connection to a node (not a flag: no binary ever had one).
const CASSANDRA_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(feature = "net")]
/// Cassandra connection flags, shared by keyrecon-list-cassandra, keyrecon-repair and keyrecon-verify.
/// The defaults here are the readers' (repair, verify); keyrecon-list-cassandra overrides the
/// consistency and the request timeout for its scan.
#[derive(clap::Args, Clone)]
pub struct CassandraArgs {
    /// Nodes to connect to first, as HOST:PORT,... (the driver discovers the others).
    #[arg(long, value_delimiter = ',', required = true)]
    pub contact_points: Vec<String>,
    /// Datacenter to read from (no failover to other DCs).
    #[arg(long, value_name = "DC")]
    pub local_dc: Option<String>,
    /// Consistency level of the reads.
    #[arg(long, value_enum, ignore_case = true, default_value = "LOCAL_QUORUM")]
    pub consistency: Level,
    /// Username (default: $KEYRECON_CASSANDRA_USERNAME).
    #[arg(long)]
    pub username: Option<String>,
    /// Password (default: $KEYRECON_CASSANDRA_PASSWORD; prefer the environment).
    #[arg(long)]
    pub password: Option<String>,
    /// Connect with TLS, verifying nodes against this PEM CA bundle.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Client-side timeout of one Cassandra read, in seconds.
    #[arg(long, default_value = "12", value_name = "SECS", value_parser = parse_secs)]
    pub request_timeout: Duration,
}

#[cfg(feature = "net")]
/// By hand, so that a `{:?}` of a binary's flags never prints the password.
impl std::fmt::Debug for CassandraArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraArgs")
            .field("contact_points", &self.contact_points)
            .field("local_dc", &self.local_dc)
            .field("consistency", &self.consistency)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

#[cfg(feature = "net")]
impl CassandraArgs {
    /// The session settings for `keyspace` (the keyspace whose ring the driver reads; the binary knows
    /// it, the group does not). Credentials fall back to $KEYRECON_CASSANDRA_USERNAME /
    /// $KEYRECON_CASSANDRA_PASSWORD, each on its own; then both or neither must be set.
    pub fn connect(&self, keyspace: &str) -> crate::Result<Connect> {
        self.connect_with_env(keyspace, |name| std::env::var(name).ok())
    }

    /// [`Self::connect`] with the environment passed in (the tests cannot share the process's).
    fn connect_with_env(&self, keyspace: &str, env: impl Fn(&str) -> Option<String>) -> crate::Result<Connect> {
        let (username, password) = credentials(
            self.username.as_ref(),
            self.password.as_ref(),
            [CASSANDRA_USERNAME_ENV, CASSANDRA_PASSWORD_ENV],
            true,
            &env,
        )?;
        if self.contact_points.iter().all(|p| p.trim().is_empty()) {
            return Err(Error::Usage("--contact-points is empty: name at least one node as HOST:PORT".into()));
        }
        Ok(Connect {
            contact_points: self.contact_points.clone(),
            local_dc: self.local_dc.clone(),
            consistency: self.consistency.into(),
            username,
            password,
            request_timeout: self.request_timeout,
            connect_timeout: CASSANDRA_CONNECT_TIMEOUT,
            tls_ca: self.tls_ca.clone(),
            keyspace: keyspace.to_string(),
            cluster: None,
        })
    }
}

#[cfg(feature = "net")]
/// S3 connection flags, shared by keyrecon-list-s3, keyrecon-repair and keyrecon-verify. Credentials
/// are not flags: they follow the AWS chain (environment, ~/.aws, --profile, SSO, instance role).
///
/// The timeout is `--s3-timeout` (not `--request-timeout`, which names the Cassandra timeout in the
/// binaries that have both); keyrecon-list-s3, which called it `--request-timeout`, keeps that name as
/// a hidden alias and its longer default (a LIST page of 1000 keys is slower than a HEAD or a GET).
#[derive(clap::Args, Clone, Debug)]
pub struct S3Args {
    /// S3-compatible endpoint (Garage, Ceph, MinIO); path-style addressing then.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: from the AWS configuration, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config.
    #[arg(long)]
    pub profile: Option<String>,
    /// Virtual-host addressing even with --endpoint-url.
    #[arg(long)]
    pub virtual_host: bool,
    /// Timeout of one S3 request attempt, in seconds.
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = parse_secs)]
    pub s3_timeout: Duration,
}

#[cfg(feature = "net")]
impl S3Args {
    /// The client settings. Path-style addressing stays the client's default (on with --endpoint-url)
    /// unless --virtual-host turns it off.
    pub fn client_options(&self) -> crate::Result<ClientOptions> {
        if let Some(url) = &self.endpoint_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(Error::Usage(format!("--endpoint-url must start with http:// or https://, got {url:?}")));
            }
        }
        Ok(ClientOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            path_style: self.virtual_host.then_some(false),
            attempt_timeout: Some(self.s3_timeout),
        })
    }
}

/// Runs a binary's body and exits with its code. Errors print as `TOOL: error: ...` with their whole
/// context chain and exit 2; an error caused by a closed stdout/pipe exits 0 silently (like `| head`).
pub fn main_with(tool: &str, body: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    let code = match body() {
        Ok(c) => c,
        Err(e) => {
            if e.chain().any(crate::error::is_broken_pipe) {
                0
            } else {
                eprintln!("{tool}: error: {e:#}");
                2
            }
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
    }

    #[derive(Parser, Debug)]
    struct Keys {
        #[command(flatten)]
        fmt: FormatArgs,
    }

    fn format(args: &[&str]) -> Result<Format, String> {
        Keys::try_parse_from(["t"].iter().chain(args)).map_err(|e| e.to_string())?.fmt.format()
    }

    #[test]
    fn key_input_formats() {
        assert_eq!(format(&[]).unwrap(), Format::Lines);
        assert_eq!(format(&["-z"]).unwrap(), Format::Nul);
        assert_eq!(format(&["--format", "auto", "-z"]).unwrap(), Format::Auto { nul: true });
        let csv = |column, header| Format::Csv { column, header, delimiter: b',' };
        assert_eq!(format(&["--format", "csv"]).unwrap(), csv(KeyColumn::Index(0), false));
        assert_eq!(format(&["--format", "csv", "--header"]).unwrap(), csv(KeyColumn::Name("key".into()), true));
        assert_eq!(format(&["--format", "csv", "--csv-column", "3"]).unwrap(), csv(KeyColumn::Index(2), false));
        assert!(format(&["--format", "csv", "--csv-column", "0"]).unwrap_err().contains("start at 1"));
        assert!(format(&["--format", "csv", "-z"]).is_err());
        assert!(format(&["--format", "tsv"]).is_err(), "choices are checked by clap");
    }
}

#[cfg(all(test, feature = "net"))]
mod net_tests {
    use super::*;

    use clap::Parser;

    /// What a binary does: flatten the groups into its own flags.
    #[derive(Parser, Debug)]
    struct Cass {
        #[command(flatten)]
        cassandra: CassandraArgs,
    }

    #[derive(Parser, Debug)]
    struct S3 {
        #[command(flatten)]
        s3: S3Args,
    }

    /// keyrecon-list-cassandra's overrides, as it writes them.
    #[derive(Parser, Debug)]
    #[command(mut_arg("consistency", |a| a.default_value("LOCAL_ONE")))]
    #[command(mut_arg("request_timeout", |a| a.default_value("30")))]
    struct ListCass {
        #[command(flatten)]
        cassandra: CassandraArgs,
    }

    /// keyrecon-list-s3's override: its own default and its old flag name.
    #[derive(Parser, Debug)]
    #[command(mut_arg("s3_timeout", |a| a.default_value("120").alias("request-timeout")))]
    struct ListS3 {
        #[command(flatten)]
        s3: S3Args,
    }

    fn cass(args: &[&str]) -> Result<Cass, clap::Error> {
        Cass::try_parse_from(["t"].iter().chain(args))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn cassandra_defaults_and_values() {
        let c = cass(&["--contact-points", "a:9042,b:9042"]).unwrap().cassandra.connect_with_env("ks", no_env).unwrap();
        assert_eq!(c.contact_points, ["a:9042", "b:9042"]);
        assert_eq!(c.consistency, Consistency::LocalQuorum);
        assert_eq!(c.request_timeout, Duration::from_secs(12));
        assert_eq!(c.connect_timeout, CASSANDRA_CONNECT_TIMEOUT);
        assert_eq!(c.keyspace, "ks");
        assert_eq!((c.username, c.password, c.local_dc, c.tls_ca), (None, None, None, None));

        let a = cass(&[
            "--contact-points=a:1",
            "--local-dc",
            "dc1",
            "--consistency",
            "local-one",
            "--request-timeout",
            "0.5",
            "--tls-ca",
            "ca.pem",
        ])
        .unwrap();
        let c = a.cassandra.connect_with_env("media", no_env).unwrap();
        assert_eq!(c.local_dc.as_deref(), Some("dc1"));
        assert_eq!(c.consistency, Consistency::LocalOne);
        assert_eq!(c.request_timeout, Duration::from_millis(500));
        assert_eq!(c.tls_ca, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn cassandra_credentials_fall_back_to_the_environment() {
        let env = |name: &str| match name {
            CASSANDRA_USERNAME_ENV => Some("env-user".to_string()),
            CASSANDRA_PASSWORD_ENV => Some("env-pass".to_string()),
            _ => None,
        };
        let a = cass(&["--contact-points", "h:1"]).unwrap();
        let c = a.cassandra.connect_with_env("ks", env).unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("env-user"), Some("env-pass")));
        // A flag wins over its variable, each on its own.
        let a = cass(&["--contact-points", "h:1", "--username", "flag-user"]).unwrap();
        let c = a.cassandra.connect_with_env("ks", env).unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("flag-user"), Some("env-pass")));
        // The flags alone are enough.
        let a = cass(&["--contact-points", "h:1", "--username", "u", "--password", "p"]).unwrap();
        let c = a.cassandra.connect_with_env("ks", no_env).unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("u"), Some("p")));
    }

    #[test]
    fn cassandra_credentials_both_or_neither() {
        let user_only = |name: &str| (name == CASSANDRA_USERNAME_ENV).then(|| "env-user".to_string());
        for (args, env) in [
            (&["--username", "u"][..], no_env as fn(&str) -> Option<String>),
            (&["--password", "secret-pw"][..], no_env),
            (&[][..], user_only),
        ] {
            let a = Cass::try_parse_from(["t", "--contact-points", "h:1"].iter().chain(args)).unwrap();
            let e = format!("{:#}", a.cassandra.connect_with_env("ks", env).unwrap_err());
            assert!(e.contains("both a username and a password"), "{args:?}: {e}");
            assert!(!e.contains("secret-pw") && !e.contains("env-user"), "a secret in the error: {e}");
        }
        // The Debug of the flags does not show the password either.
        let a = cass(&["--contact-points", "h:1", "--username", "u", "--password", "secret-pw"]).unwrap();
        assert!(!format!("{a:?}").contains("secret-pw"));
    }

    #[test]
    fn cassandra_bad_values() {
        assert!(cass(&[]).is_err(), "--contact-points is required");
        let e = cass(&["--contact-points", "h:1", "--consistency", "MOST"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
        assert!(e.to_string().contains("LOCAL_QUORUM"), "the levels are listed: {e}");
        for bad in [
            &["--contact-points", "h:1", "--request-timeout", "0"][..],
            &["--contact-points", "h:1", "--request-timeout=-1"],
            &["--contact-points", "h:1", "--request-timeout", "inf"],
            &["--contact-points", "h:1", "--request-timeout", "NaN"],
            &["--contact-points", "h:1", "--request-timeout", "12s"],
        ] {
            let e = cass(bad).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}: {e}");
        }
        let a = cass(&["--contact-points", ","]).unwrap();
        let e = a.cassandra.connect_with_env("ks", no_env).unwrap_err().to_string();
        assert!(e.contains("--contact-points"), "{e}");
    }

    #[derive(Parser, Debug)]
    struct Blobs {
        #[command(flatten)]
        blobs: BlobArgs,
    }

    fn blobs(args: &[&str], env: impl Fn(&str) -> Option<String>) -> crate::Result<BlobSource> {
        let base = ["t", "--contact-points", "a:1", "--source", "ks.t", "--key-column", "id"];
        let a = Blobs::try_parse_from(base.iter().chain(args)).map_err(|e| Error::Usage(e.to_string()))?;
        Ok(a.blobs.source_with_env(env)?.expect("--source is given"))
    }

    #[test]
    fn fallback_clusters_lookup_order_settings_and_credentials() {
        let env = |name: &str| match name {
            CASSANDRA_USERNAME_ENV => Some("first-user".to_string()),
            CASSANDRA_PASSWORD_ENV => Some("first-pw".to_string()),
            "KEYRECON_CASSANDRA_OLD_USERNAME" => Some("old-user".to_string()),
            "KEYRECON_CASSANDRA_OLD_PASSWORD" => Some("old-pw".to_string()),
            _ => None,
        };
        let src = blobs(
            &[
                "--fallback=old:media_old.objects",
                "--fallback=ks.older",
                "--cluster=archive=c:1",
                "--fallback=archive:arch.t",
                "--fallback=old:media_old.more",
                "--cluster=old=b:1, b2:1",
                "--cluster-local-dc=old=dc2",
                "--cluster-consistency=old=local_one",
                "--cluster-tls-ca=old=old-ca.pem",
                "--cluster-request-timeout=archive=30",
                "--cluster-concurrency=old=4",
                "--cluster-retries=archive=1",
                "--tls-ca=first-ca.pem",
            ],
            env,
        )
        .unwrap();
        // The source, the first cluster's fallbacks, then the clusters in --cluster order.
        assert_eq!(
            src.table_names(),
            ["ks.t", "ks.older", "archive:arch.t", "old:media_old.objects", "old:media_old.more"]
        );
        let [first, archive, old] = &src.clusters[..] else { panic!("three clusters: {:?}", src.clusters) };
        assert_eq!((first.connect.cluster.as_deref(), first.connect.username.as_deref()), (None, Some("first-user")));
        assert_eq!(archive.connect.contact_points, ["c:1"]);
        assert_eq!(archive.connect.keyspace, "arch");
        // What names or trusts a cluster is its own, never the first cluster's.
        assert_eq!((archive.connect.username.as_deref(), archive.connect.password.as_deref()), (None, None));
        assert_eq!((archive.connect.tls_ca.as_ref(), archive.connect.local_dc.as_ref()), (None, None));
        // Manners default to the tool's flags.
        assert_eq!(archive.connect.consistency, Consistency::LocalQuorum);
        assert_eq!(archive.connect.request_timeout, Duration::from_secs(30));
        assert_eq!((archive.concurrency, archive.retries), (None, Some(1)));
        assert_eq!(old.connect.contact_points, ["b:1", "b2:1"]);
        assert_eq!(old.connect.cluster.as_deref(), Some("old"));
        assert_eq!(
            (old.connect.username.as_deref(), old.connect.password.as_deref()),
            (Some("old-user"), Some("old-pw"))
        );
        assert_eq!(old.connect.local_dc.as_deref(), Some("dc2"));
        assert_eq!(old.connect.consistency, Consistency::LocalOne);
        assert_eq!(old.connect.tls_ca, Some(PathBuf::from("old-ca.pem")));
        assert_eq!(old.connect.request_timeout, Duration::from_secs(12));
        assert_eq!((old.concurrency, old.retries), (Some(4), None));
        assert_eq!(old.connect.keyspace, "media_old");
    }

    #[test]
    fn fallback_cluster_mistakes_are_named() {
        for (args, want) in [
            (&["--fallback", "old:ks.t"][..], "no --cluster old=HOST:PORT"),
            (&["--cluster", "old=h:1"], "no --fallback old:KS.TABLE"),
            (
                &["--cluster", "old=h:1", "--fallback", "old:ks.t", "--cluster-retries", "olf=2"],
                "--cluster-retries olf=",
            ),
            (&["--cluster", "old=h:1", "--cluster", "old=i:1", "--fallback", "old:ks.t"], "given twice"),
            (
                &[
                    "--cluster",
                    "old=h:1",
                    "--fallback",
                    "old:ks.t",
                    "--cluster-local-dc",
                    "old=a",
                    "--cluster-local-dc",
                    "old=b",
                ],
                "given twice",
            ),
            (&["--cluster", "Old=h:1"], "lowercase letters"),
            (&["--cluster", "old="], "no contact points"),
            (&["--cluster", "old"], "NAME=HOST:PORT"),
            (&["--cluster-concurrency", "old=0"], "at least 1"),
            (&["--cluster-request-timeout", "old=0"], "positive"),
            (&["--fallback", "old:kst"], "KEYSPACE.TABLE"),
        ] {
            let e = format!("{:#}", blobs(args, no_env).unwrap_err());
            assert!(e.contains(want), "{args:?}: {e}");
        }
        // A fallback cluster's credentials: both or neither, named by their variables, never shown.
        let half = |name: &str| (name == "KEYRECON_CASSANDRA_OLD_PASSWORD").then(|| "secret-pw".to_string());
        let e = format!("{:#}", blobs(&["--cluster", "old=h:1", "--fallback", "old:ks.t"], half).unwrap_err());
        assert!(e.contains("$KEYRECON_CASSANDRA_OLD_USERNAME is not set") && !e.contains("secret-pw"), "{e}");
    }

    #[test]
    fn s3_defaults_values_and_bad_values() {
        let o = S3::try_parse_from(["t"]).unwrap().s3.client_options().unwrap();
        assert_eq!((o.endpoint_url, o.region, o.profile, o.path_style), (None, None, None, None));
        assert_eq!(o.attempt_timeout, Some(Duration::from_secs(60)));

        let a = S3::try_parse_from([
            "t",
            "--endpoint-url",
            "http://127.0.0.1:3900",
            "--region",
            "garage",
            "--profile",
            "p",
            "--s3-timeout",
            "5",
        ])
        .unwrap();
        let o = a.s3.client_options().unwrap();
        assert_eq!(o.endpoint_url.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!((o.region.as_deref(), o.profile.as_deref()), (Some("garage"), Some("p")));
        assert_eq!(o.path_style, None, "path-style is the client's default with an endpoint");
        assert_eq!(o.attempt_timeout, Some(Duration::from_secs(5)));
        let a = S3::try_parse_from(["t", "--virtual-host"]).unwrap();
        assert_eq!(a.s3.client_options().unwrap().path_style, Some(false));

        for t in ["0", "-5", "soon"] {
            let e = S3::try_parse_from(["t".to_string(), format!("--s3-timeout={t}")]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{t}: {e}");
        }
        let a = S3::try_parse_from(["t", "--endpoint-url", "127.0.0.1:3900"]).unwrap();
        assert!(a.s3.client_options().unwrap_err().to_string().contains("http://"));
        // --request-timeout is keyrecon-list-s3's old name, not the group's.
        assert!(S3::try_parse_from(["t", "--request-timeout", "5"]).is_err());
    }

    #[test]
    fn a_binary_can_override_defaults_and_keep_an_old_name() {
        let a = ListCass::try_parse_from(["t", "--contact-points", "h:1"]).unwrap();
        assert_eq!(a.cassandra.consistency, Level::LocalOne);
        assert_eq!(a.cassandra.request_timeout, Duration::from_secs(30));
        let a = ListS3::try_parse_from(["t"]).unwrap();
        assert_eq!(a.s3.s3_timeout, Duration::from_secs(120));
        let a = ListS3::try_parse_from(["t", "--request-timeout", "7"]).unwrap();
        assert_eq!(a.s3.s3_timeout, Duration::from_secs(7));
        assert!(ListS3::try_parse_from(["t", "--request-timeout", "0"]).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_secs("12").unwrap(), Duration::from_secs(12));
        assert_eq!(parse_secs(" 0.25 ").unwrap(), Duration::from_millis(250));
        for bad in ["0", "-0.1", "inf", "NaN", "", "1e400", "12s"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        assert!(parse_secs("1e30").is_err(), "longer than a Duration holds");
    }
}
