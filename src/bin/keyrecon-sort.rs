//! keyrecon-sort: key files into a sorted, deduplicated chunk set.
use clap::Parser;
use keyrecon::cli::{main_with, parse_size, report, FormatArgs, MemArgs};
use keyrecon::job::{self, SortJobConfig};
use std::path::PathBuf;

/// Sort and deduplicate keys into a chunk set that keyrecon-diff reads directly.
///
/// INPUT is a key file or - for stdin (lines by default; -z for NUL-terminated; --format csv).
/// The result is a directory of sorted chunk files plus manifest.json. Memory stays within --mem:
/// larger inputs spill sorted chunks to --tmp and are merged. Keys that cannot be used (too long, CSV
/// rows without the key column) go to CHUNKSET/rejects.csv with the reason, and the exit status is 2.
/// Keys a --key-map rule rejects also go to rejects.csv and are counted, but are not trouble (exit 0).
///
/// Example:
///   keyrecon-sort dump-*.txt --out source.chunks --mem 512M
///   aws s3api list-objects-v2 ... | jq -r '.Contents[].Key' | keyrecon-sort - --out target.chunks
#[derive(Parser, Debug)]
#[command(name = "keyrecon-sort", version, verbatim_doc_comment)]
#[command(mut_arg("mem", |a| a.default_value("1G").help("Memory budget (e.g. 256M, 1G).")))]
struct Args {
    /// Key files, or - for stdin.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Chunk set directory to write.
    #[arg(long, short = 'o', value_name = "CHUNKSET")]
    out: PathBuf,
    /// Replace an existing chunk set in --out.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    sort: MemArgs,
    /// Target size of each chunk file.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    chunk_size: usize,
    /// Map each key before sorting (rules inline, `;`-separated, or @FILE; language in keyrecon-list-cassandra
    /// --help and crates/engine/src/keymap.rs). The chunk set then carries the original key as `origin`; keys a rule
    /// rejects go to rejects.csv with the reason. Example: 'if length == 21 and ends-with _1 then strip-suffix _1'
    #[arg(long, value_name = "RULES")]
    key_map: Option<String>,
    /// No progress bar, no summary on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    fmt: FormatArgs,
}

fn main() {
    main_with("keyrecon-sort", || {
        let a = Args::parse();
        if a.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
            anyhow::bail!("- (stdin) can be given only once");
        }
        let inputs = a
            .inputs
            .iter()
            .map(|p| a.fmt.spec(p.clone()).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let s = job::sort(SortJobConfig {
            inputs,
            out: a.out.clone(),
            overwrite: a.force,
            mem: a.sort.mem,
            tmp_dir: a.sort.tmp_dir(),
            chunk_bytes: a.chunk_size as u64,
            quiet: a.quiet,
            key_map: a
                .key_map
                .as_deref()
                .map(keyrecon::keymap::KeyMap::from_arg)
                .transpose()
                .map_err(anyhow::Error::msg)?,
        })?;
        Ok(report("keyrecon-sort", &s, a.quiet))
    })
}
