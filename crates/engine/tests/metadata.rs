//! keyrecon-diff with metadata on random chunk sets (`--compare size,etag,mtime`): the hash engine and
//! the sort engine must write byte-identical outcome files (key files, combined.txt, the CSVs with
//! metadata, differ.csv), equal to a plain in-memory model built here without the engine: the first
//! record of each key per side in a `BTreeMap`, and the comparison rules written out again over what
//! the generator knows (an ETag's value and part count, not its spelling).
//!
//! One side of each round is a chunk set of overlapping chunks (`disjoint: false`: read through the
//! k-way merge, which keeps a key's record from the lowest chunk), the other a disjoint set. Rounds and
//! budgets are chosen so that the hash engine runs both in memory and spilling.

use keyrecon_engine::chunk::set::Producer;
use keyrecon_engine::chunk::{ChunkSetWriter, ChunkSets};
use keyrecon_engine::job::{self, DiffConfig, Engine, Field, Side};
use keyrecon_engine::record::{Meta, Schema};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// What the generator knows about an object.
#[derive(Clone, Debug)]
struct Obj {
    size: Option<u64>,
    etag: Option<Etag>,
    mtime: Option<i64>,
    /// Only the source's records carry an origin.
    origin: Option<Vec<u8>>,
}

/// An ETag: which content digest it names, its part count if multipart, and how this record spells it.
#[derive(Clone, Debug)]
struct Etag {
    digest: u8,
    parts: Option<u8>,
    text: String,
}

impl Obj {
    fn meta(&self) -> Meta {
        Meta {
            size: self.size,
            etag: self.etag.as_ref().map(|e| e.text.clone().into_bytes()),
            mtime: self.mtime,
            origin: self.origin.clone(),
            class: None,
        }
    }
}

/// One side: its records in chunks (each chunk sorted, duplicate-free), and whether the chunks are
/// disjoint and in key order.
struct SideData {
    chunks: Vec<BTreeMap<Vec<u8>, Obj>>,
    disjoint: bool,
}

impl SideData {
    /// The model of the side as the diff reads it: for each key, its record in the lowest chunk.
    fn first_records(&self) -> BTreeMap<Vec<u8>, Obj> {
        let mut m = BTreeMap::new();
        for chunk in &self.chunks {
            for (k, o) in chunk {
                m.entry(k.clone()).or_insert_with(|| o.clone());
            }
        }
        m
    }
    fn records(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }
    fn write(&self, dir: &Path, schema: Schema) {
        let w = ChunkSetWriter::create(dir, schema, false).unwrap();
        for chunk in &self.chunks {
            let mut c = w.new_chunk().unwrap();
            for (k, o) in chunk {
                c.push(k, &o.meta().to_bytes()).unwrap();
            }
            w.add_chunk(c).unwrap();
        }
        w.finish(Producer::default(), self.disjoint, serde_json::Value::Null).unwrap();
    }
}

struct Gen {
    rng: StdRng,
    /// Keys both sides draw from, so that many keys are shared and repeated.
    pool: Vec<Vec<u8>>,
}

impl Gen {
    fn new(seed: u64, pool_size: usize) -> Gen {
        let mut g = Gen { rng: StdRng::seed_from_u64(seed), pool: Vec::new() };
        g.pool = (0..pool_size).map(|_| g.fresh_key()).collect();
        g
    }

    /// A random non-empty key: bytes a key may hold, CSV's special characters, UTF-8, a shared prefix.
    /// Never `\n` (the key files' terminator: such keys go to the CSVs only and make the run exit 2).
    fn fresh_key(&mut self) -> Vec<u8> {
        const PREFIXES: [&str; 4] = ["", "images/2024/01/", "é/", "😀"];
        const ALPHABET: &[u8] = b"ab,\"\r \x00\x7f\x80\xff";
        let mut k = PREFIXES[self.rng.gen_range(0..PREFIXES.len())].as_bytes().to_vec();
        let n = self.rng.gen_range(if k.is_empty() { 1 } else { 0 }..8);
        k.extend((0..n).map(|_| ALPHABET[self.rng.gen_range(0..ALPHABET.len())]));
        k
    }

    fn key(&mut self) -> Vec<u8> {
        if self.rng.gen_bool(0.1) {
            self.fresh_key()
        } else {
            self.pool[self.rng.gen_range(0..self.pool.len())].clone()
        }
    }

    fn maybe<T>(&mut self, v: T) -> Option<T> {
        self.rng.gen_bool(0.9).then_some(v)
    }

    /// Metadata from small ranges, so that equal, unequal and unknown values all occur often.
    fn obj(&mut self, with_origin: bool) -> Obj {
        let size = self.rng.gen_range(0..4u64);
        let etag = self.etag();
        let mtime = 1_700_000_000_000_000 + self.rng.gen_range(0..3i64);
        let origin = self.fresh_key();
        let origin = if with_origin { self.maybe(origin) } else { None };
        Obj { size: self.maybe(size), etag: self.maybe(etag), mtime: self.maybe(mtime), origin }
    }

    /// An ETag spelt as S3 and other stores do: quoted or not, either case, sometimes weak (`W/`),
    /// sometimes multipart (`-N`).
    fn etag(&mut self) -> Etag {
        let digest = self.rng.gen_range(0..3u8);
        let parts = self.rng.gen_bool(0.2).then(|| self.rng.gen_range(2..4u8));
        let mut hex = format!("{:016x}{:016x}", 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(digest as u64 + 1), digest);
        if self.rng.gen_bool(0.3) {
            hex = hex.to_uppercase();
        }
        if let Some(n) = parts {
            hex = format!("{hex}-{n}");
        }
        let text = match self.rng.gen_range(0..6) {
            0..=2 => format!("\"{hex}\""),
            3 => format!("W/\"{hex}\""),
            _ => hex,
        };
        Etag { digest, parts, text }
    }

    /// `n` records in `nchunks` chunks; a key twice in one chunk keeps its first record.
    fn side(&mut self, n: usize, nchunks: usize, disjoint: bool, with_origin: bool) -> SideData {
        let mut chunks = vec![BTreeMap::new(); nchunks];
        if disjoint {
            let mut all = BTreeMap::new();
            for _ in 0..n {
                let (k, o) = (self.key(), self.obj(with_origin));
                all.entry(k).or_insert(o);
            }
            // Consecutive key ranges, in order.
            let per = all.len().div_ceil(nchunks).max(1);
            for (i, (k, o)) in all.into_iter().enumerate() {
                chunks[i / per].insert(k, o);
            }
        } else {
            for _ in 0..n {
                let (k, o) = (self.key(), self.obj(with_origin));
                let c = self.rng.gen_range(0..nchunks);
                chunks[c].entry(k).or_insert(o);
            }
        }
        SideData { chunks, disjoint }
    }
}

/// The per-field counters of `summary.json`'s `details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fields {
    differ_size: u64,
    differ_etag: u64,
    differ_mtime: u64,
    etag_uncomparable: u64,
}

/// The model's outcome files, rendered; and its counters.
struct Model {
    files: BTreeMap<&'static str, Vec<u8>>,
    fields: Fields,
    differences: bool,
}

const FILES: [&str; 8] = [
    "missing-on-target.txt",
    "missing-on-source.txt",
    "differ.txt",
    "match.txt",
    "combined.txt",
    "missing-on-target.csv",
    "missing-on-source.csv",
    "differ.csv",
];

/// A CSV rendered in memory, `header` (comma-separated names) written.
fn csv_with_header(header: &str) -> csv::Writer<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header.split(',')).unwrap();
    w
}

fn num<T: ToString>(v: Option<T>) -> Vec<u8> {
    v.map(|x| x.to_string().into_bytes()).unwrap_or_default()
}

fn etag_text(o: &Obj) -> Vec<u8> {
    o.etag.as_ref().map(|e| e.text.clone().into_bytes()).unwrap_or_default()
}

/// The rules of `--compare size,etag,mtime`: which fields of a key in both differ (in CSV order), and
/// whether the ETags could not be compared.
fn compare(s: &Obj, t: &Obj) -> (Vec<&'static str>, bool) {
    let mut d = Vec::new();
    let mut uncomparable = false;
    if let (Some(a), Some(b)) = (s.size, t.size) {
        if a != b {
            d.push("size");
        }
    }
    if let (Some(a), Some(b)) = (&s.etag, &t.etag) {
        // A multipart ETag is a digest of part digests: it says nothing about a whole-object digest.
        if a.parts.is_some() != b.parts.is_some() {
            uncomparable = true;
        } else if (a.digest, a.parts) != (b.digest, b.parts) {
            d.push("etag");
        }
    }
    if let (Some(a), Some(b)) = (s.mtime, t.mtime) {
        // The source was written after it was copied.
        if a > b {
            d.push("mtime");
        }
    }
    (d, uncomparable)
}

fn model(src: &BTreeMap<Vec<u8>, Obj>, tgt: &BTreeMap<Vec<u8>, Obj>) -> Model {
    let mut txt: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut line = |file: &'static str, prefix: &[u8], key: &[u8]| {
        let f = txt.entry(file).or_default();
        f.extend_from_slice(prefix);
        f.extend_from_slice(key);
        f.push(b'\n');
    };
    // The CSVs' headers, as the files spell them.
    let mut mot = csv_with_header("key,size,etag,mtime,origin");
    let mut mos = csv_with_header("key,size,etag,mtime");
    let mut dif =
        csv_with_header("key,differs,source_size,target_size,source_etag,target_etag,source_mtime,target_mtime,origin");
    let mut fields = Fields::default();
    let mut differences = false;
    let mut keys: Vec<&Vec<u8>> = src.keys().chain(tgt.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (src.get(k), tgt.get(k)) {
            (Some(s), None) => {
                differences = true;
                line("missing-on-target.txt", b"", k);
                line("combined.txt", b"+ ", k);
                let o = s.origin.clone().unwrap_or_default();
                mot.write_record([k.clone(), num(s.size), etag_text(s), num(s.mtime), o]).unwrap();
            }
            (None, Some(t)) => {
                differences = true;
                line("missing-on-source.txt", b"", k);
                line("combined.txt", b"- ", k);
                mos.write_record([k.clone(), num(t.size), etag_text(t), num(t.mtime)]).unwrap();
            }
            (Some(s), Some(t)) => {
                let (d, uncomparable) = compare(s, t);
                fields.etag_uncomparable += uncomparable as u64;
                if d.is_empty() {
                    line("match.txt", b"", k);
                    line("combined.txt", b"= ", k);
                    continue;
                }
                differences = true;
                fields.differ_size += d.contains(&"size") as u64;
                fields.differ_etag += d.contains(&"etag") as u64;
                fields.differ_mtime += d.contains(&"mtime") as u64;
                line("differ.txt", b"", k);
                line("combined.txt", b"* ", k);
                let row = [
                    k.clone(),
                    d.join("+").into_bytes(),
                    num(s.size),
                    num(t.size),
                    etag_text(s),
                    etag_text(t),
                    num(s.mtime),
                    num(t.mtime),
                    s.origin.clone().unwrap_or_default(),
                ];
                dif.write_record(row).unwrap();
            }
            (None, None) => unreachable!(),
        }
    }
    let mut files: BTreeMap<&'static str, Vec<u8>> = FILES[..5].iter().map(|f| (*f, Vec::new())).collect();
    files.extend(txt);
    files.insert("missing-on-target.csv", mot.into_inner().unwrap());
    files.insert("missing-on-source.csv", mos.into_inner().unwrap());
    files.insert("differ.csv", dif.into_inner().unwrap());
    Model { files, fields, differences }
}

/// Runs keyrecon-diff's job on two chunk sets with 2 workers (the hash engine sizes its partitions by
/// the worker count: the budgets below spill the same way on any machine).
fn run(
    src: &Path,
    tgt: &Path,
    out: &Path,
    tmp: &Path,
    engine: Engine,
    mem: usize,
) -> keyrecon_engine::diff::DiffSummary {
    let cfg = DiffConfig {
        source: Side::ChunkSets(ChunkSets::open(&[src.to_path_buf()]).unwrap()),
        target: Side::ChunkSets(ChunkSets::open(&[tgt.to_path_buf()]).unwrap()),
        out_dir: out.to_path_buf(),
        compare: Some(vec![Field::Size, Field::Etag, Field::Mtime]),
        write_match: true,
        combined: true,
        term: b'\n',
        mem,
        tmp_dir: tmp.to_path_buf(),
        engine,
        quiet: true,
        merge_ranges: None,
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| job::diff(cfg)).unwrap()
}

/// Rounds: (seed, key pool, source records, source chunks, target records, target chunks). The large
/// rounds are lopsided on purpose: with a known input size the hash engine chooses partitions so that
/// both sides of one fit a worker's share, so only a much larger source fills a 1 MiB budget's 64 KiB
/// partition buffers and spills.
const ROUNDS: [(u64, usize, usize, usize, usize, usize); 7] = [
    (1, 4, 0, 1, 5, 2),
    (2, 8, 12, 3, 10, 1),
    (3, 40, 60, 5, 50, 4),
    (4, 300, 500, 7, 400, 3),
    (5, 2_000, 3_000, 4, 2_500, 6),
    (6, 100_000, 40_000, 6, 3_000, 3),
    (7, 100_000, 3_000, 2, 40_000, 5),
];

#[test]
fn hash_and_sort_engines_equal_the_model_with_metadata() {
    let mut spilled = 0;
    let mut seen = Fields::default();
    for (round, (seed, pool, ns, cs, nt, ct)) in ROUNDS.into_iter().enumerate() {
        let mut g = Gen::new(seed, pool);
        // The overlapping side alternates, so that each engine reads each kind of set on each side.
        let src_disjoint = round % 2 == 1;
        let src = g.side(ns, cs, src_disjoint, true);
        let tgt = g.side(nt, ct, !src_disjoint, false);
        let dir = tempfile::tempdir().unwrap();
        let (sdir, tdir) = (dir.path().join("s.chunks"), dir.path().join("t.chunks"));
        src.write(&sdir, Schema(Schema::SIZE | Schema::ETAG | Schema::MTIME | Schema::ORIGIN));
        tgt.write(&tdir, Schema(Schema::SIZE | Schema::ETAG | Schema::MTIME));
        let (sm, tm) = (src.first_records(), tgt.first_records());
        let want = model(&sm, &tm);
        seen.differ_size += want.fields.differ_size;
        seen.differ_etag += want.fields.differ_etag;
        seen.differ_mtime += want.fields.differ_mtime;
        seen.etag_uncomparable += want.fields.etag_uncomparable;
        let mut first: Option<(String, BTreeMap<&str, Vec<u8>>)> = None;

        for (engine, mem) in
            [(Engine::Hash, 1 << 20), (Engine::Hash, 4 << 20), (Engine::Hash, 1 << 30), (Engine::Sort, 1 << 20)]
        {
            let ctx = format!("round {round} (seed {seed}), {engine:?} engine, --mem {mem}");
            let out = dir.path().join(format!("out-{engine:?}-{mem}"));
            let sum = run(&sdir, &tdir, &out, dir.path(), engine, mem);
            let files: BTreeMap<&str, Vec<u8>> = FILES
                .into_iter()
                .map(|f| (f, std::fs::read(out.join(f)).unwrap_or_else(|e| panic!("{ctx}: {f}: {e}"))))
                .collect();
            // The engines agree with each other, byte for byte...
            if let Some((first_ctx, first_files)) = &first {
                for f in FILES {
                    assert!(files[f] == first_files[f], "{ctx}: {f} differs from that of {first_ctx}");
                }
            }
            // ...and with the model.
            for f in FILES {
                let got = &files[f];
                assert!(
                    *got == want.files[f],
                    "{ctx}: {f} differs from the model\n--- got:\n{}\n--- want:\n{}",
                    String::from_utf8_lossy(got).escape_debug(),
                    String::from_utf8_lossy(&want.files[f]).escape_debug()
                );
            }
            let d = &sum.details;
            let fields = Fields {
                differ_size: d.differ_size,
                differ_etag: d.differ_etag,
                differ_mtime: d.differ_mtime,
                etag_uncomparable: d.etag_uncomparable,
            };
            assert_eq!(fields, want.fields, "{ctx}");
            assert_eq!(sum.exit_code, want.differences as i32, "{ctx}: {:?}", sum.errors);
            for (name, side, data, m) in [("source", &sum.source, &src, &sm), ("target", &sum.target, &tgt, &tm)] {
                assert_eq!(side.unique_keys, m.len() as u64, "{ctx}: {name} unique keys");
                assert_eq!(side.duplicates, data.records() - m.len() as u64, "{ctx}: {name} duplicates");
                assert_eq!(side.records_read, data.records(), "{ctx}: {name} records read");
            }
            if sum.engine_stats["spilled_bytes"].as_u64().unwrap_or(0) > 0 {
                spilled += 1;
            }
            first.get_or_insert((ctx, files));
        }
        // Spill files are removed; only the chunk sets and the outcome directories remain.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2 + 4, "round {round}: leftovers");
    }
    assert!(spilled >= 2, "the 1 MiB budget must make the hash engine spill in the large rounds ({spilled} did)");
    let Fields { differ_size, differ_etag, differ_mtime, etag_uncomparable } = seen;
    assert!(
        differ_size > 0 && differ_etag > 0 && differ_mtime > 0 && etag_uncomparable > 0,
        "the rounds must exercise every rule: {seen:?}"
    );
}
