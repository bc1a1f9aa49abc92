//! `report.html`: a self-contained page (inline CSS and SVG, no script, no network) built from
//! the files of a run directory, so `loadgen report DIR` regenerates exactly what `run` wrote.
//!
//! Sections: verdict and failures, thresholds, latency summary, one percentile-distribution
//! chart per latency metric (log-scaled percentile axis), time series (open connections,
//! events/s, errors/s, RSS of both processes, per-second p99), counters, the shards of a
//! merged run, run facts.

mod chart;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chart::{Chart, Series, XAxis, percentile_x};

use crate::live::stats::Metric;
use crate::results::report::Row;
use crate::results::rundir::{self, RunData, RunDirError};

/// File name of the report inside a run directory.
pub const REPORT_FILE: &str = "report.html";

/// Escapes text for HTML content and attribute values.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Reads the run directory and (re)writes its `report.html`; returns the file's path.
///
/// # Errors
/// [`RunDirError`] when the directory cannot be read or the file cannot be written.
pub fn write_report(dir: &Path) -> Result<PathBuf, RunDirError> {
    let run = rundir::load(dir)?;
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, render(&run)).map_err(|source| RunDirError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

const STYLE: &str = r"
:root{color-scheme:light dark;--bg:#ffffff;--fg:#1f2328;--muted:#59636e;--grid:#d1d9e0;--panel:#f6f8fa;
--s0:#0969da;--s1:#cf222e;--s2:#1a7f37;--s3:#8250df;--s4:#bc4c00;--pass:#1a7f37;--fail:#cf222e}
@media (prefers-color-scheme: dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--grid:#30363d;
--panel:#151b23;--s0:#4493f8;--s1:#f85149;--s2:#3fb950;--s3:#ab7df8;--s4:#f0883e;--pass:#3fb950;--fail:#f85149}}
body{background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;
margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid var(--grid)}
.muted{color:var(--muted)}
.verdict{display:inline-block;font-weight:700;padding:4px 14px;border-radius:6px;color:#fff;margin:8px 0}
.verdict.pass{background:var(--pass)}.verdict.fail{background:var(--fail)}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid var(--grid);text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--pass);font-weight:600}.bad{color:var(--fail);font-weight:600}.warn{color:var(--s4);font-weight:600}
pre{background:var(--panel);padding:10px;overflow-x:auto;border-radius:6px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:12px}
figure{margin:0;background:var(--panel);border-radius:6px;padding:8px}
figcaption{font-weight:600;margin:0 0 4px 8px}
svg.chart{width:100%;height:auto;display:block;color:var(--fg)}
svg .grid{stroke:var(--grid);stroke-width:1}svg .axis{stroke:var(--muted);stroke-width:1.2}
svg text{fill:currentColor;font-size:15px}svg .tick{fill:var(--muted)}
svg .line{fill:none;stroke-width:2;stroke-linejoin:round}
svg .s0{stroke:var(--s0);fill:var(--s0)}svg .s1{stroke:var(--s1);fill:var(--s1)}
svg .s2{stroke:var(--s2);fill:var(--s2)}svg .s3{stroke:var(--s3);fill:var(--s3)}
svg .s4{stroke:var(--s4);fill:var(--s4)}svg polyline.line{fill:none}
";

/// The whole page.
#[must_use]
pub fn render(run: &RunData) -> String {
    let j = &run.run_json;
    let scenario = run.scenario();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\">\
<title>loadgen: {}</title><style>{STYLE}</style></head><body>",
        esc(scenario)
    );
    let _ = write!(
        out,
        "<h1>loadgen report: {}</h1><p class=\"muted\">{}</p>",
        esc(scenario),
        esc(j["scenario"]["description"].as_str().unwrap_or(""))
    );
    verdict(&mut out, run);
    thresholds(&mut out, run);
    latency_table(&mut out, run);
    distribution_charts(&mut out, run);
    timeseries_charts(&mut out, &run.timeseries);
    counters(&mut out, run);
    shards(&mut out, run);
    facts(&mut out, run);
    let _ = writeln!(
        out,
        "<p class=\"muted\">Written by loadgen {} from <code>{}</code>; regenerate with \
<code>loadgen report {}</code>.</p></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&run.dir.display().to_string()),
        esc(&run.dir.display().to_string())
    );
    out
}

fn verdict(out: &mut String, run: &RunData) {
    let passed = run.exit_code() == Some(0);
    let _ = write!(
        out,
        "<div id=\"verdict\" class=\"verdict {}\">{}</div>",
        if passed { "pass" } else { "fail" },
        if passed { "PASS" } else { "FAIL" }
    );
    let j = &run.run_json;
    let _ = write!(
        out,
        "<p class=\"muted\">outcome {}, exit code {}, started {}, {:.1} s in all{}</p>",
        esc(j["outcome"].as_str().unwrap_or("?")),
        run.exit_code().map_or("?".to_owned(), |c| c.to_string()),
        esc(j["started_at"].as_str().unwrap_or("?")),
        j["elapsed_s"].as_f64().unwrap_or(0.0),
        j["measured_s"]
            .as_f64()
            .map_or(String::new(), |s| format!(" ({s} s measured)"))
    );
    let failures = run.failures();
    if !failures.is_empty() {
        out.push_str("<ul id=\"failures\">");
        for f in failures {
            let _ = write!(out, "<li class=\"bad\">{}</li>", esc(&f));
        }
        out.push_str("</ul>");
    }
    let warnings = run.warnings();
    if !warnings.is_empty() {
        out.push_str("<ul id=\"warnings\">");
        for w in warnings {
            let _ = write!(out, "<li class=\"warn\">warning: {}</li>", esc(&w));
        }
        out.push_str("</ul>");
    }
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn thresholds(out: &mut String, run: &RunData) {
    out.push_str("<h2>Thresholds</h2>");
    let all = run.thresholds();
    if all.is_empty() {
        out.push_str("<p class=\"muted\">The scenario sets no thresholds.</p>");
        return;
    }
    out.push_str(
        "<table id=\"thresholds\"><tr><th>rule</th><th class=\"num\">actual</th><th>result</th></tr>",
    );
    for t in all {
        // Latency values are µs; run.json of older runs has no unit, but latency rules
        // name `metric.stat`.
        let latency = t.unit.as_deref().map_or_else(
            || {
                t.rule
                    .split_whitespace()
                    .next()
                    .is_some_and(|s| s.contains('.'))
            },
            |u| u == "us",
        );
        let actual = t.actual.map_or("no samples".to_owned(), |a| {
            if latency { ms(a) } else { format!("{a}") }
        });
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"{}\">{}</td></tr>",
            esc(&t.rule),
            esc(&actual),
            if t.passed { "ok" } else { "bad" },
            if t.passed { "pass" } else { "FAIL" }
        );
    }
    out.push_str("</table>");
}

fn latency_table(out: &mut String, run: &RunData) {
    out.push_str("<h2>Latency</h2>");
    let rows: Vec<_> = run
        .summary
        .iter()
        .filter(|r| r.unit == "us" && r.count > 0)
        .collect();
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">No latency samples.</p>");
        return;
    }
    out.push_str("<table id=\"latency\"><tr><th>metric</th><th class=\"num\">count</th><th class=\"num\">min</th><th class=\"num\">p50</th><th class=\"num\">p90</th><th class=\"num\">p99</th><th class=\"num\">p99.9</th><th class=\"num\">max</th><th class=\"num\">mean</th></tr>");
    for r in rows {
        let cell = |v: Option<f64>| v.map_or("-".to_owned(), ms);
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td>",
            esc(&r.metric),
            r.count
        );
        for v in [r.min]
            .into_iter()
            .chain(r.percentiles)
            .chain([r.max, r.mean])
        {
            let _ = write!(out, "<td class=\"num\">{}</td>", cell(v));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn figure(out: &mut String, caption: &str, chart: &Chart) {
    let _ = write!(
        out,
        "<figure><figcaption>{}</figcaption>{}</figure>",
        esc(caption),
        chart.svg()
    );
}

fn y_ms(v: f64) -> String {
    let ms = v / 1000.0;
    if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

fn y_count(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

const MIB: f64 = 1_048_576.0;

fn distribution_charts(out: &mut String, run: &RunData) {
    out.push_str("<h2>Latency distribution</h2><div class=\"charts\">");
    let mut any = false;
    for metric in Metric::ALL {
        let h = run.histograms.get(metric);
        if h.is_empty() {
            continue;
        }
        any = true;
        // Nines to show: enough for the sample count (1 in 10^n), 2 to 6.
        let decades = h.len().max(1).ilog10().clamp(2, 6);
        let points: Vec<(f64, f64)> = h
            .iter_quantiles(5)
            .map(|v| {
                (
                    percentile_x(v.quantile_iterated_to(), decades),
                    h.highest_equivalent(v.value_iterated_to()) as f64,
                )
            })
            .collect();
        let chart = Chart {
            id: format!("dist-{}", metric.name()),
            label: format!(
                "{} latency by percentile, {} samples",
                metric.name(),
                h.len()
            ),
            x: XAxis::Percentile { decades },
            y_label: "latency (ms)".to_owned(),
            y_format: y_ms,
            series: vec![Series {
                name: metric.name().to_owned(),
                points,
            }],
        };
        figure(
            out,
            &format!(
                "{}: latency by percentile ({} samples)",
                metric.name(),
                h.len()
            ),
            &chart,
        );
    }
    out.push_str("</div>");
    if !any {
        out.push_str(
            "<p class=\"muted\">No latency samples (no <code>.hlog</code> intervals).</p>",
        );
    }
}

fn timeseries_charts(out: &mut String, rows: &[Row]) {
    out.push_str("<h2>Over time</h2><div class=\"charts\">");
    type Pick = fn(&Row) -> Option<f64>;
    let line = |name: &str, pick: Pick| Series {
        name: name.to_owned(),
        points: rows
            .iter()
            .filter_map(|r| pick(r).map(|v| (r.t_s, v)))
            .collect(),
    };
    // One time axis for every chart: the whole run.
    let end = rows.iter().map(|r| r.t_s).fold(0.0, f64::max);
    let chart = |id: &str,
                 caption: &str,
                 y_label: &str,
                 y_format: fn(f64) -> String,
                 series: Vec<Series>| Chart {
        id: id.to_owned(),
        label: caption.to_owned(),
        x: XAxis::Seconds { end },
        y_label: y_label.to_owned(),
        y_format,
        series: series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .collect(),
    };
    let charts = [
        chart(
            "ts-connections",
            "Open connections",
            "connections",
            y_count,
            vec![line("open", |r| Some(r.connections_open as f64))],
        ),
        chart(
            "ts-events",
            "Measured messages received per second",
            "events/s",
            y_count,
            vec![line("events/s", |r| Some(r.events_per_s as f64))],
        ),
        chart(
            "ts-errors",
            "Errors per second",
            "errors/s",
            y_count,
            vec![line("errors", |r| Some(r.errors as f64))],
        ),
        chart(
            "ts-rss",
            "Resident memory of both processes",
            "RSS (MiB)",
            y_count,
            vec![
                line("loadgen", |r| r.client_rss_bytes.map(|v| v as f64 / MIB)),
                line("target", |r| r.server_rss_bytes.map(|v| v as f64 / MIB)),
            ],
        ),
        chart(
            "ts-p99",
            "p99 latency of each second",
            "p99 (ms)",
            y_ms,
            vec![
                line("delivery", |r| r.delivery_p99_us.map(|v| v as f64)),
                line("ws_rtt", |r| r.ws_rtt_p99_us.map(|v| v as f64)),
                line("connect", |r| r.connect_p99_us.map(|v| v as f64)),
            ],
        ),
    ];
    for c in &charts {
        figure(out, &c.label, c);
    }
    out.push_str("</div>");
}

fn counters(out: &mut String, run: &RunData) {
    out.push_str("<h2>Counters</h2><table id=\"counters\"><tr><th>name</th><th class=\"num\">value</th><th>source</th></tr>");
    for c in &run.counters {
        let value = c.value.map_or("-".to_owned(), |v| format!("{v}"));
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"muted\">{}</td></tr>",
            esc(&c.name),
            esc(&value),
            esc(&c.source)
        );
    }
    out.push_str("</table>");
}

fn facts(out: &mut String, run: &RunData) {
    let j = &run.run_json;
    out.push_str("<h2>Run</h2><table id=\"facts\">");
    let command = j["command_line"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let mut rows = vec![
        ("target", j["target"].as_str().unwrap_or("").to_owned()),
        ("command", command),
        (
            "scenario file",
            j["scenario"]["file"].as_str().unwrap_or("").to_owned(),
        ),
    ];
    for section in ["versions", "machine"] {
        if let Some(map) = j[section].as_object() {
            for (k, v) in map {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                rows.push((section, format!("{k}: {v}")));
            }
        }
    }
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    let _ = write!(out, "</table><pre id=\"plan\">{}</pre>", esc(run.plan()));
}

/// A merged run's shards: one row each (host, clock, start, connections, outcome).
fn shards(out: &mut String, run: &RunData) {
    let Some(list) = run.run_json["shards"].as_array() else {
        return;
    };
    out.push_str("<h2>Shards</h2><table id=\"shards\"><tr><th class=\"num\">shard</th><th>host</th><th>clock source</th><th>started</th><th class=\"num\">start offset</th><th class=\"num\">clock vs target</th><th class=\"num\">connections</th><th>outcome</th><th>run directory</th></tr>");
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    for s in list {
        let offset = s["start_offset_us"]
            .as_i64()
            .map_or("-".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0));
        let clock = match (
            s["clock_offset_us"].as_i64(),
            s["clock_probe_rtt_us"].as_u64(),
        ) {
            (Some(off), Some(rtt)) => format!(
                "{:+.3} ms (± {:.3})",
                off as f64 / 1000.0,
                rtt as f64 / 2000.0
            ),
            _ => "-".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&s["index"])),
            esc(&text(&s["host"])),
            esc(&text(&s["clock_source"])),
            esc(&text(&s["started_at"])),
            esc(&offset),
            esc(&clock),
            esc(&text(&s["connections"])),
            esc(&text(&s["outcome"])),
            esc(&text(&s["dir"])),
        );
    }
    out.push_str("</table>");
    if let Some(note) = run.run_json["merged"]["clock"].as_str() {
        let _ = write!(out, "<p class=\"muted\">{}</p>", esc(note));
    }
}
