//! Metrics for alerting, in the Prometheus text exposition format, for node_exporter's textfile
//! collector: written to a temporary file beside the target and renamed, so the collector never reads
//! half a file. Labels: `job` is the config file's stem (one recon.toml per table and bucket).
//!
//! ```text
//! keyrecon_missing_on_target{job="media-objects"} 12
//! keyrecon_new_missing{job="media-objects"} 3
//! keyrecon_repair_outcomes{job="media-objects",outcome="ok"} 12
//! keyrecon_stage_duration_seconds{job="media-objects",stage="list-source"} 81.2
//! keyrecon_last_success_timestamp_seconds{job="media-objects"} 1764640800
//! ```
//! `keyrecon_last_success_timestamp_seconds` is the end of the last run that exited 0 or 1 (no
//! trouble), from the history, so an alert on `time() - keyrecon_last_success_timestamp_seconds`
//! fires when the nightly job stops succeeding, whatever the reason.

use super::RunSummary;
use crate::error::{IoContext, Result};
use std::fmt::Write as _;
use std::path::Path;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes the metrics of run `s` to `path` (atomically).
pub fn write(path: &Path, config: &Path, s: &RunSummary, history: &[serde_json::Value]) -> Result<()> {
    let job = label(&config.file_stem().map(|x| x.to_string_lossy().into_owned()).unwrap_or_else(|| "keyrecon".into()));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{job=\"{job}\"{labels}}} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    gauge("keyrecon_source_keys", "Keys the source listed in the last run.", one(s.diff.source_keys));
    gauge("keyrecon_target_keys", "Keys the target listed in the last run.", one(s.diff.target_keys));
    gauge(
        "keyrecon_missing_on_target",
        "Keys in the source and not in the target (to repair), last run.",
        one(s.diff.missing_on_target),
    );
    gauge(
        "keyrecon_missing_on_source",
        "Keys in the target and not in the source (orphans), last run.",
        one(s.diff.missing_on_source),
    );
    gauge("keyrecon_differ", "Keys in both whose compared metadata differ, last run.", one(s.diff.differ));
    gauge("keyrecon_new_missing", "Keys missing in the last run and not in the run before.", one(s.changes.new));
    gauge("keyrecon_still_missing", "Keys missing in the last run and in the run before.", one(s.changes.still));
    gauge("keyrecon_resolved", "Keys missing in the run before and not in the last run.", one(s.changes.resolved));
    gauge(
        "keyrecon_brake_tripped",
        "1 when the brake held repair back in the last run.",
        one((s.brake.tripped && !s.brake.accepted) as u64),
    );
    gauge(
        "keyrecon_run_exit_code",
        "Exit status of the last run (0 in sync, 1 differences, 2 trouble).",
        one(s.exit_code as u64),
    );
    let outcomes = |v: &serde_json::Value| -> Vec<(String, f64)> {
        v.as_object()
            .map(|m| m.iter().map(|(k, n)| (format!(",outcome=\"{}\"", label(k)), n.as_f64().unwrap_or(0.0))).collect())
            .unwrap_or_default()
    };
    gauge("keyrecon_repair_outcomes", "Keys per repair outcome in the last run.", outcomes(&s.repair));
    gauge("keyrecon_verify_outcomes", "Keys per verify outcome in the last run.", outcomes(&s.verify));
    gauge(
        "keyrecon_stage_duration_seconds",
        "Duration of each stage of the last run.",
        s.stages.iter().map(|st| (format!(",stage=\"{}\"", label(&st.stage)), st.ms as f64 / 1000.0)).collect(),
    );
    let last_ok = history
        .iter()
        .rev()
        .find(|h| h.get("exit_code").and_then(|c| c.as_i64()).is_some_and(|c| c <= 1))
        .and_then(|h| h.get("finished_unix_ms").and_then(|t| t.as_u64()));
    if let Some(ms) = last_ok {
        gauge(
            "keyrecon_last_success_timestamp_seconds",
            "End of the last run without trouble (exit 0 or 1).",
            vec![(String::new(), (ms / 1000) as f64)],
        );
    }
    let tmp = path.with_extension("prom.tmp");
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).ctx(d)?;
    }
    std::fs::write(&tmp, out).ctx(&tmp)?;
    std::fs::rename(&tmp, path).ctx(path)
}
