//! keyrecon's sorter against the `extsort` crate used plainly, on the same key file and memory budget.
//! Run through scripts/bench-sort.sh (it alternates the two and measures peak RSS); by hand:
//!
//!     cargo bench --bench sort_vs_extsort -- keyrecon|extsort FILE MEM_BYTES
//!
//! Both read the file line by line, sort in byte order and count unique keys. extsort gets a segment
//! size (records per run) that fills about the same memory, with parallel sorting on.
use keyrecon::input::{for_each_key, Format, InputSpec, Rejects};
use keyrecon::merge::SortedCursor;
use keyrecon::record::Schema;
use keyrecon::sort::{SortConfig, Sorter};
#[allow(unused_imports)]
use std::io::BufRead as _;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key(Vec<u8>);

impl extsort::Sortable for Key {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&(self.0.len() as u32).to_le_bytes())?;
        w.write_all(&self.0)
    }
    fn decode<R: Read>(r: &mut R) -> std::io::Result<Self> {
        let mut n = [0u8; 4];
        r.read_exact(&mut n)?;
        let mut v = vec![0u8; u32::from_le_bytes(n) as usize];
        r.read_exact(&mut v)?;
        Ok(Key(v))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() < 4 {
        eprintln!("usage: sort_vs_extsort keyrecon|extsort FILE MEM_BYTES");
        return;
    }
    let (which, file, mem): (&str, &str, usize) = (&args[1], &args[2], args[3].parse().expect("MEM_BYTES"));
    let spec = InputSpec::new(file, Format::Lines);
    let tmp = std::env::temp_dir();
    let t0 = Instant::now();
    let unique = match which {
        "keyrecon" => {
            let mut s = Sorter::new(SortConfig::new(mem, &tmp, Schema::KEYS_ONLY));
            for_each_key(&spec, &Rejects::new(None), &AtomicU64::new(0), |k, _| s.push(k, b"")).unwrap();
            let mut out = s.finish().unwrap();
            let mut n = 0u64;
            while out.advance().unwrap() {
                n += 1;
            }
            n
        }
        "extsort" => {
            use std::io::BufRead;
            let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file).unwrap());
            let keys = f.split(b'\n').map(|l| Key(l.unwrap())).filter(|k| !k.0.is_empty());
            // ~32-byte keys in a Vec cost ~56 bytes each (24 B header + heap block).
            let seg = mem / 56;
            let sorted = extsort::ExternalSorter::new()
                .with_segment_size(seg)
                .with_sort_dir(tmp)
                .with_parallel_sort()
                .sort(keys)
                .unwrap();
            let mut n = 0u64;
            let mut last: Option<Key> = None;
            for k in sorted {
                let k = k.expect("extsort read back a run");
                if last.as_ref() != Some(&k) {
                    n += 1;
                }
                last = Some(k);
            }
            n
        }
        other => panic!("unknown sorter {other}"),
    };
    println!("{which}: {unique} unique keys in {:.2}s", t0.elapsed().as_secs_f64());
}
