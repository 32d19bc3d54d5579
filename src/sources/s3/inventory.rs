//! S3 Inventory input: a report's `manifest.json` (local path or `s3://bucket/key`) names gzip'd CSV
//! files whose columns its `fileSchema` lists. The files are read in parallel, their rows become records
//! (the same fields as a listing: key, size, ETag, LastModified, storage class), sorted (memory-budgeted,
//! spilling) and written as one disjoint chunk set.
//!
//! ```text
//! manifest.json  {"sourceBucket":"src","destinationBucket":"arn:aws:s3:::dest","fileFormat":"CSV",
//!                 "fileSchema":"Bucket, Key, Size, LastModifiedDate, ETag, StorageClass",
//!                 "files":[{"key":"dest-prefix/src/config/data/UUID.csv.gz","size":N,"MD5checksum":".."}]}
//! data file      "src","photos/a%20b.jpg","1234","2024-05-01T10:00:00.000Z","9b2cf535f27731c974343645a3985328","STANDARD"
//! ```
//! Keys in CSV inventories are URL-encoded and are decoded here. Rows of versioned inventories that are
//! not the latest version, or are delete markers, are skipped (they are not keys a listing would show).
//! File keys of a local manifest are looked up relative to the manifest's directory and its ancestors
//! (a downloaded report keeps the bucket layout), then by file name beside the manifest or in `data/`.

use super::list::{encode_meta, url_decode_into, SCHEMA};
use super::{parse_time_us, Cutoff};
use crate::chunk::set::Producer;
use crate::chunk::ChunkSetWriter;
use crate::sort::{SortConfig, Sorter};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub source_bucket: String,
    #[serde(default)]
    pub destination_bucket: String,
    #[serde(default)]
    pub file_format: String,
    pub file_schema: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ManifestFile {
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct InventoryConfig {
    /// Local path or `s3://bucket/key`.
    pub manifest: String,
    /// Only keys with this prefix (the report may cover more than wanted).
    pub prefix: String,
    pub start_after: Option<String>,
    pub end_before: Option<String>,
    pub cutoff: Cutoff,
    /// Files read at once.
    pub parallel: usize,
    /// Memory of the sort.
    pub mem: usize,
    pub tmp_dir: PathBuf,
    pub chunk_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct InventorySummary {
    pub manifest: String,
    pub source_bucket: String,
    pub files: u64,
    pub rows: u64,
    pub keys_written: u64,
    pub keys_filtered: u64,
    pub not_latest_or_deleted: u64,
    pub duplicates: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub keys_per_s: f64,
    pub peak_rss_bytes: u64,
}

impl InventorySummary {
    pub fn paragraph(&self) -> String {
        format!(
            "read {} rows from {} inventory files of s3://{} ({}) in {:.2}s ({:.0} rows/s): {} keys written, {} outside the key/age window, {} old versions or delete markers skipped, {} duplicates; peak RSS {} MiB.",
            self.rows, self.files, self.source_bucket, self.manifest, self.elapsed_s, self.keys_per_s, self.keys_written, self.keys_filtered,
            self.not_latest_or_deleted, self.duplicates, self.peak_rss_bytes >> 20
        )
    }
}

/// Column positions named by `fileSchema`.
#[derive(Clone, Copy, Debug)]
struct Columns {
    key: usize,
    size: Option<usize>,
    mtime: Option<usize>,
    etag: Option<usize>,
    class: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
}

impl Columns {
    fn parse(schema: &str) -> Result<Columns> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let find = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
        Ok(Columns {
            key: find("Key").ok_or_else(|| anyhow!("fileSchema {schema:?} has no Key column"))?,
            size: find("Size"),
            mtime: find("LastModifiedDate"),
            etag: find("ETag"),
            class: find("StorageClass"),
            is_latest: find("IsLatest"),
            is_delete_marker: find("IsDeleteMarker"),
        })
    }
}

enum Location {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

fn parse_s3_url(u: &str) -> Option<(String, String)> {
    let rest = u.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/')?;
    Some((b.to_string(), k.to_string()))
}

/// Reads the report into a new chunk set at `dir`. `client` is needed for `s3://` manifests.
pub fn read_inventory(
    client: Option<&aws_sdk_s3::Client>,
    cfg: &InventoryConfig,
    dir: &Path,
    force: bool,
) -> Result<InventorySummary> {
    let started = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    let get = |bucket: &str, key: &str| -> Result<Vec<u8>> {
        let c = client.ok_or_else(|| anyhow!("an s3:// inventory needs an S3 client"))?;
        rt.block_on(async {
            let o = c
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            Ok::<_, anyhow::Error>(
                o.body
                    .collect()
                    .await
                    .context("reading object body")?
                    .into_bytes()
                    .to_vec(),
            )
        })
        .with_context(|| format!("fetching s3://{bucket}/{key}"))
    };

    // The manifest and where its files live.
    let (body, base) = match parse_s3_url(&cfg.manifest) {
        Some((b, k)) => (get(&b, &k)?, None),
        None => {
            let p = PathBuf::from(&cfg.manifest);
            (
                std::fs::read(&p)
                    .with_context(|| format!("reading inventory manifest {}", p.display()))?,
                Some(p),
            )
        }
    };
    let m: Manifest = serde_json::from_slice(&body)
        .with_context(|| format!("parsing inventory manifest {}", cfg.manifest))?;
    if !m.file_format.is_empty() && !m.file_format.eq_ignore_ascii_case("CSV") {
        bail!(
            "inventory {}: fileFormat {:?} is not supported (only CSV)",
            cfg.manifest,
            m.file_format
        );
    }
    let cols = Columns::parse(&m.file_schema)
        .with_context(|| format!("inventory manifest {}", cfg.manifest))?;
    let dest_bucket = m
        .destination_bucket
        .rsplit(':')
        .next()
        .unwrap_or("")
        .to_string();
    let locations: Vec<Location> = m
        .files
        .iter()
        .map(|f| match &base {
            Some(mp) => resolve_local(mp, &f.key).map(Location::Local),
            None => {
                let bucket = if dest_bucket.is_empty() {
                    parse_s3_url(&cfg.manifest).unwrap().0
                } else {
                    dest_bucket.clone()
                };
                Ok(Location::S3 {
                    bucket,
                    key: f.key.clone(),
                })
            }
        })
        .collect::<Result<_>>()?;

    let out = ChunkSetWriter::create(dir, SCHEMA, force)?;
    let mut sorter = Sorter::new(SortConfig::new(cfg.mem, &cfg.tmp_dir, SCHEMA));
    let n = Counters::default();
    let (tx, rx) = crossbeam::channel::bounded::<Batch>(4);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.parallel.max(1))
        .build()
        .context("starting reader threads")?;
    let (locs, files, nref, pool, get) = (&locations, &m.files, &n, &pool, &get);
    let read_result = std::thread::scope(|s| -> Result<Result<()>> {
        let readers = s.spawn(move || {
            let tx = tx;
            pool.install(|| {
                locs.par_iter()
                    .zip(files)
                    .try_for_each(|(loc, f)| -> Result<()> {
                        let gz = match loc {
                            Location::Local(p) => std::fs::read(p)
                                .with_context(|| format!("reading {}", p.display()))?,
                            Location::S3 { bucket, key } => get(bucket, key)?,
                        };
                        read_file(&gz, cols, cfg, nref, &tx)
                            .with_context(|| format!("inventory file {}", f.key))
                    })
            })
        });
        // Ends when every reader is done (all senders dropped).
        let mut pushed = Ok(());
        for b in &rx {
            if pushed.is_ok() {
                pushed = b
                    .recs
                    .iter()
                    .try_for_each(|r| sorter.push(&b.arena[r.0..r.1], &b.arena[r.1..r.2]));
            }
        }
        let read = readers
            .join()
            .map_err(|_| anyhow!("inventory reader panicked"))?;
        pushed?;
        Ok(read)
    })?;
    read_result?;
    let st = sorter.finish_into(&out, cfg.chunk_bytes)?;
    let elapsed = started.elapsed().as_secs_f64();
    let rows = n.rows.load(Relaxed);
    let sum = InventorySummary {
        manifest: cfg.manifest.clone(),
        source_bucket: m.source_bucket.clone(),
        files: m.files.len() as u64,
        rows,
        keys_written: st.unique,
        keys_filtered: n.filtered.load(Relaxed),
        not_latest_or_deleted: n.old.load(Relaxed),
        duplicates: st.duplicates,
        bytes: n.bytes.load(Relaxed),
        elapsed_s: elapsed,
        keys_per_s: rows as f64 / elapsed.max(1e-9),
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
    };
    out.finish(
        Producer::current("keyrecon-list-s3"),
        true,
        serde_json::to_value(&sum)?,
    )?;
    let p = dir.join(super::list::SUMMARY);
    std::fs::write(&p, serde_json::to_vec_pretty(&sum)?)
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(sum)
}

#[derive(Default)]
struct Counters {
    rows: AtomicU64,
    filtered: AtomicU64,
    old: AtomicU64,
    bytes: AtomicU64,
}

/// Records of part of one file: (key start, key end = meta start, meta end) into `arena`.
struct Batch {
    arena: Vec<u8>,
    recs: Vec<(usize, usize, usize)>,
}

const BATCH_BYTES: usize = 4 << 20;

fn field(row: &csv::ByteRecord, i: Option<usize>) -> Option<&[u8]> {
    i.and_then(|i| row.get(i)).filter(|f| !f.is_empty())
}

fn read_file(
    gz: &[u8],
    cols: Columns,
    cfg: &InventoryConfig,
    n: &Counters,
    tx: &crossbeam::channel::Sender<Batch>,
) -> Result<()> {
    let dec = flate2::read::MultiGzDecoder::new(gz);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, dec));
    let mut row = csv::ByteRecord::new();
    let mut b = Batch {
        arena: Vec::with_capacity(BATCH_BYTES + 4096),
        recs: Vec::new(),
    };
    let prefix = cfg.prefix.as_bytes();
    while rdr
        .read_byte_record(&mut row)
        .with_context(|| "reading CSV (is the file gzip'd CSV?)")?
    {
        n.rows.fetch_add(1, Relaxed);
        let line = row.position().map_or(0, |p| p.line());
        if field(&row, cols.is_latest).is_some_and(|v| v.eq_ignore_ascii_case(b"false"))
            || field(&row, cols.is_delete_marker).is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
        {
            n.old.fetch_add(1, Relaxed);
            continue;
        }
        let start = b.arena.len();
        let raw = row
            .get(cols.key)
            .ok_or_else(|| anyhow!("line {line}: no Key column"))?;
        url_decode_into(raw, &mut b.arena).with_context(|| format!("line {line}: key"))?;
        let kend = b.arena.len();
        let key = &b.arena[start..kend];
        let in_keys = key.starts_with(prefix)
            && cfg.start_after.as_ref().is_none_or(|s| key > s.as_bytes())
            && cfg.end_before.as_ref().is_none_or(|e| key < e.as_bytes());
        let mtime = match field(&row, cols.mtime) {
            Some(t) => Some(
                parse_time_us(std::str::from_utf8(t).unwrap_or(""))
                    .with_context(|| format!("line {line}: LastModifiedDate"))?,
            ),
            None => None,
        };
        if !in_keys || !cfg.cutoff.admits(mtime) {
            b.arena.truncate(start);
            n.filtered.fetch_add(1, Relaxed);
            continue;
        }
        let size = match field(&row, cols.size) {
            Some(s) => Some(
                std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        anyhow!("line {line}: bad Size {:?}", String::from_utf8_lossy(s))
                    })?,
            ),
            None => None,
        };
        n.bytes.fetch_add(size.unwrap_or(0), Relaxed);
        let etag = field(&row, cols.etag).map(|e| e.to_vec());
        let class = field(&row, cols.class).map(|c| c.to_vec());
        encode_meta(&mut b.arena, size, etag.as_deref(), mtime, class.as_deref());
        b.recs.push((start, kend, b.arena.len()));
        if b.arena.len() >= BATCH_BYTES {
            let full = std::mem::replace(
                &mut b,
                Batch {
                    arena: Vec::with_capacity(BATCH_BYTES + 4096),
                    recs: Vec::new(),
                },
            );
            tx.send(full).map_err(|_| anyhow!("sorter stopped"))?;
        }
    }
    if !b.recs.is_empty() {
        tx.send(b).map_err(|_| anyhow!("sorter stopped"))?;
    }
    Ok(())
}

/// Finds a data file of a local report: `key` below the manifest's directory or one of its ancestors,
/// else its file name beside the manifest or in a `data/` directory there or one level up.
fn resolve_local(manifest: &Path, key: &str) -> Result<PathBuf> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    for anc in dir.ancestors() {
        let p = anc.join(key);
        if p.is_file() {
            return Ok(p);
        }
    }
    let name = Path::new(key)
        .file_name()
        .ok_or_else(|| anyhow!("inventory file key {key:?} has no file name"))?;
    for p in [
        dir.join(name),
        dir.join("data").join(name),
        dir.join("..").join("data").join(name),
    ] {
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "inventory file {key:?} not found below {} or its parents (nor as {}/data/{})",
        dir.display(),
        dir.display(),
        name.to_string_lossy()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_from_schema() {
        let c = Columns::parse("Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass").unwrap();
        assert_eq!(
            (c.key, c.size, c.etag, c.is_latest, c.is_delete_marker),
            (1, Some(5), Some(7), Some(3), Some(4))
        );
        assert!(Columns::parse("Bucket, Size").is_err());
    }
}
