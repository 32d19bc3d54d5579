//! What a person opens in the morning: `report.html` (one static file: no scripts, no external assets,
//! an inline SVG chart of the last [`CHART_RUNS`] runs) and `report.md` (the same facts, for mail).
//!
//! Every number in the HTML is in an element with an `id` (`missing_on_target`, `new`, `resolved`...),
//! so a test (or a scraper) reads them from the rendered page and checks them against summary.json.

use super::RunSummary;
use crate::error::{IoContext, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

/// Runs the chart shows.
pub const CHART_RUNS: usize = 30;

/// Where missing keys cluster: counts by prefix (up to the second `/` when keys are paths, the first
/// when there is one, else the first 6 bytes), the `top` largest, most first.
pub fn prefixes(missing: &Path, top: usize) -> Result<Vec<(String, u64)>> {
    let Ok(f) = std::fs::File::open(missing) else { return Ok(Vec::new()) };
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    for line in std::io::BufReader::with_capacity(1 << 20, f).split(b'\n') {
        let key = line.ctx(missing)?;
        let mut slashes = key.iter().enumerate().filter(|(_, b)| **b == b'/').map(|(i, _)| i + 1);
        let first = slashes.next();
        let cut = slashes.next().or(first);
        let p = &key[..cut.unwrap_or(key.len().min(6))];
        // A map of prefixes, not of keys: bounded by the prefixes present, which are few.
        if let Some(c) = counts.get_mut(p) {
            *c += 1;
        } else if counts.len() < 1 << 16 {
            counts.insert(p.to_vec(), 1);
        }
    }
    let mut v: Vec<(String, u64)> =
        counts.into_iter().map(|(k, n)| (String::from_utf8_lossy(&k).into_owned(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(top);
    Ok(v)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64()).unwrap_or(0)
}

/// The chart: missing on target, missing on source and differ over the last runs (one polyline each).
fn chart(history: &[serde_json::Value]) -> String {
    let runs: Vec<&serde_json::Value> =
        history.iter().rev().take(CHART_RUNS).collect::<Vec<_>>().into_iter().rev().collect();
    let (w, h, pad) = (720.0, 220.0, 40.0);
    let series = [("missing_on_target", "#c0392b"), ("missing_on_source", "#2471a3"), ("differ", "#b9770e")];
    let max = runs.iter().flat_map(|r| series.iter().map(|(k, _)| n(r, k))).max().unwrap_or(0).max(1) as f64;
    let x = |i: usize| pad + (w - 2.0 * pad) * if runs.len() > 1 { i as f64 / (runs.len() - 1) as f64 } else { 0.5 };
    let y = |v: u64| h - pad - (h - 2.0 * pad) * v as f64 / max;
    let mut svg = format!(
        r#"<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="missing keys over the last {} runs">"#,
        runs.len()
    );
    let _ = write!(svg, r##"<line x1="{pad}" y1="{0}" x2="{1}" y2="{0}" stroke="#999"/>"##, h - pad, w - pad);
    let _ = write!(svg, r##"<text x="4" y="{}" font-size="11" fill="#555">{}</text>"##, pad - 4.0, max as u64);
    let _ = write!(svg, r##"<text x="4" y="{}" font-size="11" fill="#555">0</text>"##, h - pad);
    for (k, color) in series {
        let pts: Vec<String> = runs.iter().enumerate().map(|(i, r)| format!("{:.1},{:.1}", x(i), y(n(r, k)))).collect();
        let _ = write!(
            svg,
            r#"<polyline class="{k}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for (i, r) in runs.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{} {k}: {}</title></circle>"#,
                x(i),
                y(n(r, k)),
                esc(r.get("run").and_then(|v| v.as_str()).unwrap_or("")),
                n(r, k)
            );
        }
    }
    if let (Some(first), Some(last)) = (runs.first(), runs.last()) {
        for (r, anchor, xx) in [(first, "start", pad), (last, "end", w - pad)] {
            let _ = write!(
                svg,
                r##"<text x="{xx}" y="{}" font-size="11" fill="#555" text-anchor="{anchor}">{}</text>"##,
                h - pad + 16.0,
                esc(r.get("run").and_then(|v| v.as_str()).unwrap_or(""))
            );
        }
    }
    for (i, (k, color)) in series.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="14" font-size="12" fill="{color}">{}</text>"#,
            pad + i as f64 * 170.0,
            k.replace('_', " ")
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Writes report.html and report.md into the run directory.
pub fn write(dir: &Path, s: &RunSummary, history: &[serde_json::Value]) -> Result<()> {
    let status = match s.exit_code {
        0 => "in sync",
        1 => "differences found",
        _ => "TROUBLE",
    };
    let row = |id: &str, label: &str, v: String| format!("<tr><th>{label}</th><td id=\"{id}\">{}</td></tr>", esc(&v));
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>keyrecon run {run}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 3px 12px 3px 0; text-align: left; }}
td {{ text-align: right; font-variant-numeric: tabular-nums; }}
.status {{ font-size: 1.3em; }} .exit-0 {{ color: #1e8449; }} .exit-1 {{ color: #b9770e; }} .exit-2 {{ color: #c0392b; }}
</style></head><body>
<h1>keyrecon run <span id="run">{run}</span></h1>
<p class="status exit-{code}">Status: <b id="status">{status}</b> (exit status <span id="exit_code">{code}</span>)</p>
"#,
        run = esc(&s.run),
        code = s.exit_code,
    );
    if let Some(f) = &s.failed_stage {
        let _ = write!(html, "<p class=\"exit-2\">Stage failed: <b id=\"failed_stage\">{}</b></p>", esc(f));
    }
    if s.brake.tripped {
        let _ = write!(
            html,
            "<p class=\"exit-2\" id=\"brake\">Brake: {} {}</p>",
            esc(&s.brake.reasons.join("; ")),
            if s.brake.accepted {
                "(accepted with --accept-large: repair ran)"
            } else {
                "(repair did not start; after a look, <code>--resume --accept-large</code> continues this run)"
            }
        );
    }
    html.push_str("<h2>Keys</h2><table>");
    for (id, label, v) in [
        ("source_keys", "source keys", s.diff.source_keys),
        ("target_keys", "target keys", s.diff.target_keys),
        ("missing_on_target", "missing on target (to repair)", s.diff.missing_on_target),
        ("missing_on_source", "missing on source (orphans)", s.diff.missing_on_source),
        ("differ", "differ", s.diff.differ),
    ] {
        html.push_str(&row(id, label, v.to_string()));
    }
    html.push_str("</table><h2>Since the previous run");
    if let Some(p) = &s.changes.previous {
        let _ = write!(html, " (<span id=\"previous\">{}</span>)", esc(p));
    }
    html.push_str("</h2><table>");
    for (id, label, v) in [
        ("new", "new: missing tonight, not last night", s.changes.new),
        ("still", "still missing", s.changes.still),
        ("resolved", "resolved", s.changes.resolved),
    ] {
        html.push_str(&row(id, label, v.to_string()));
    }
    html.push_str("</table>");
    for (title, mode, outcomes, prefix) in
        [("Repair", &s.repair_mode, &s.repair, "repair_"), ("Verify", &s.verify_mode, &s.verify, "verify_")]
    {
        let _ = write!(html, "<h2>{title} (<span id=\"{prefix}mode\">{}</span>)</h2>", esc(mode));
        if let Some(m) = outcomes.as_object() {
            html.push_str("<table>");
            for (k, v) in m {
                html.push_str(&row(&format!("{prefix}{k}"), k, v.to_string()));
            }
            html.push_str("</table>");
        } else {
            html.push_str("<p>did not run</p>");
        }
    }
    let _ = write!(html, "<h2>The last {} runs</h2>{}", history.len().min(CHART_RUNS), chart(history));
    html.push_str("<h2>Where missing keys cluster</h2><table id=\"prefixes\"><tr><th>prefix</th><td>keys</td></tr>");
    for (p, c) in &s.prefixes {
        let _ = write!(html, "<tr><th>{}</th><td>{c}</td></tr>", esc(p));
    }
    html.push_str("</table><h2>Stages</h2><table id=\"stages\"><tr><th>stage</th><td>seconds</td><td>keys/s</td><td>exit</td></tr>");
    for st in &s.stages {
        let _ = write!(
            html,
            "<tr><th>{}</th><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            esc(&st.stage),
            st.ms as f64 / 1000.0,
            st.per_sec.map(crate::progress::human).unwrap_or_default(),
            st.exit.map(|e| e.to_string()).unwrap_or_default()
        );
    }
    let _ = writeln!(html, "</table><p>Files: <code>{}</code></p></body></html>", esc(&s.dir));
    let p = dir.join("report.html");
    std::fs::write(&p, html).ctx(&p)?;

    let mut md = format!("# keyrecon run {}: {status} (exit status {})\n\n", s.run, s.exit_code);
    if let Some(f) = &s.failed_stage {
        let _ = writeln!(md, "**Stage failed: {f}**\n");
    }
    if s.brake.tripped {
        let _ = writeln!(md, "**Brake:** {}\n", s.brake.verdict());
    }
    let _ = writeln!(
        md,
        "| | keys |\n|---|---:|\n| source | {} |\n| target | {} |\n| missing on target | {} |\n| missing on source | {} |\n| differ | {} |\n| new since {} | {} |\n| still missing | {} |\n| resolved | {} |\n",
        s.diff.source_keys,
        s.diff.target_keys,
        s.diff.missing_on_target,
        s.diff.missing_on_source,
        s.diff.differ,
        s.changes.previous.as_deref().unwrap_or("(no previous run)"),
        s.changes.new,
        s.changes.still,
        s.changes.resolved
    );
    if let Some(m) = s.repair.as_object() {
        let _ = writeln!(
            md,
            "Repair ({}): {}\n",
            s.repair_mode,
            m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        );
    }
    if !s.prefixes.is_empty() {
        let _ = writeln!(
            md,
            "Missing keys cluster under: {}\n",
            s.prefixes.iter().map(|(p, c)| format!("`{p}` {c}")).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(md, "Report: {}/report.html", s.dir);
    let p = dir.join("report.md");
    std::fs::write(&p, md).ctx(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_paths_and_of_flat_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.txt");
        std::fs::write(&p, "img/2024/a\nimg/2024/b\nimg/2025/c\nt01abcdef\nt01abcxyz\nthumbs/1\n").unwrap();
        assert_eq!(
            prefixes(&p, 10).unwrap(),
            vec![
                ("img/2024/".to_string(), 2),
                ("t01abc".to_string(), 2),
                ("img/2025/".to_string(), 1),
                ("thumbs/".to_string(), 1)
            ]
        );
        assert!(prefixes(&d.path().join("none"), 3).unwrap().is_empty());
    }

    #[test]
    fn the_chart_has_a_point_per_run_and_series() {
        let h: Vec<serde_json::Value> =
            (0..40).map(|i| serde_json::json!({"run": format!("r{i:02}"), "missing_on_target": i, "missing_on_source": 1, "differ": 0})).collect();
        let svg = chart(&h);
        assert_eq!(svg.matches("<circle").count(), 3 * CHART_RUNS);
        assert!(svg.contains("r10") && svg.contains("r39") && !svg.contains(">r09<"), "the last 30 runs");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
