//! `report.html` in real headless Chromium (Debian's `chromium`, driven over DevTools): no
//! console errors, every chart present with drawn lines, readable in the dark theme, and
//! rendered to PNG. `loadgen report DIR` rebuilds the same file from the run's files.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use testkit::chromium;

use crate::support;

/// A small mixed run (SSE and WS, so delivery and WS round-trip charts) into `dir`.
async fn mixed_run(dir: &Path) {
    let path = support::scenarios_dir().join("mixed.toml");
    let mut scenario = loadgen::scenario::load(&path).expect("valid");
    scenario.scale_down(Some(6), Some(Duration::from_secs(2)));
    scenario.run.warmup = Duration::from_millis(300);
    let report = loadgen::run(support::options(scenario, None, dir))
        .await
        .expect("runs");
    assert_eq!(report.exit_code(), 0, "{}", report.table());
}

#[tokio::test]
async fn the_report_renders_in_chromium_with_every_chart_and_no_console_errors() {
    let binary = chromium::require();
    let dir = support::temp_dir("report-browser");
    mixed_run(&dir).await;
    let file = dir.join("report.html");
    let html = std::fs::read_to_string(&file).expect("report.html");
    for reference in [" src=", "href=\"http", "url(", "@import", "<script"] {
        assert!(
            !html.contains(reference),
            "self-contained: no {reference} (no network, no script)"
        );
    }
    let url = format!("file://{}", file.display());
    let (_browser, mut page) = chromium::open(&binary, &url).await;
    page.wait_for("document.readyState", |v| v == "complete")
        .await;
    assert_eq!(
        page.eval("document.getElementById('verdict').textContent")
            .await,
        "PASS"
    );

    // Every expected chart is laid out with a real size and has a drawn line.
    let charts = page
        .eval(
            "Array.from(document.querySelectorAll('svg.chart')).map(s => { \
               const r = s.getBoundingClientRect(); \
               const lines = Array.from(s.querySelectorAll('polyline.line')); \
               return {id: s.id, w: r.width, h: r.height, lines: lines.length, \
                       points: lines.reduce((n, l) => n + l.points.numberOfItems, 0)}; })",
        )
        .await;
    let charts = charts.as_array().expect("chart list").clone();
    let ids: Vec<&str> = charts.iter().filter_map(|c| c["id"].as_str()).collect();
    for id in [
        "dist-connect",
        "dist-first_event",
        "dist-delivery",
        "dist-ws_rtt",
        "ts-connections",
        "ts-events",
        "ts-errors",
        "ts-rss",
        "ts-p99",
    ] {
        assert!(ids.contains(&id), "chart {id} missing: {ids:?}");
    }
    for c in &charts {
        assert!(
            c["w"].as_f64().unwrap_or(0.0) > 200.0 && c["h"].as_f64().unwrap_or(0.0) > 80.0,
            "chart laid out: {c}"
        );
        assert!(
            c["points"].as_u64().unwrap_or(0) >= 2,
            "chart has a line: {c}"
        );
    }
    let rss_lines = charts
        .iter()
        .find(|c| c["id"] == "ts-rss")
        .map(|c| c["lines"].clone());
    assert_eq!(
        rss_lines,
        Some(json!(2)),
        "RSS of loadgen and of the target"
    );
    let thresholds = page
        .eval("document.querySelectorAll('#thresholds tr').length")
        .await;
    assert_eq!(
        thresholds,
        json!(1 + 5),
        "header and the five rules of mixed.toml"
    );

    let light = page.screenshot_png().await;
    let (w, h) = chromium::png_size(&light).expect("a PNG");
    assert!(w >= 800 && h > 2000, "the whole page: {w}x{h}");
    std::fs::write(dir.join("report-light.png"), &light).expect("write PNG");

    // Dark theme: dark page background, light chart text.
    page.call(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    let colors = page
        .eval(
            "[getComputedStyle(document.body).backgroundColor, \
              getComputedStyle(document.querySelector('svg.chart text.legend')).fill]",
        )
        .await;
    assert_eq!(colors, json!(["rgb(13, 17, 23)", "rgb(230, 237, 243)"]));
    let dark = page.screenshot_png().await;
    assert!(chromium::png_size(&dark).is_some());
    assert_ne!(light, dark, "the dark theme changes the rendering");
    std::fs::write(dir.join("report-dark.png"), &dark).expect("write PNG");

    assert!(
        page.problems.is_empty(),
        "console errors: {:?}",
        page.problems
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn loadgen_report_rebuilds_the_same_page_from_the_run_files() {
    let dir = support::temp_dir("report-cli");
    mixed_run(&dir).await;
    let file = dir.join("report.html");
    let written = std::fs::read_to_string(&file).expect("report.html");
    std::fs::remove_file(&file).expect("remove");
    let out = Command::new(support::loadgen_exe())
        .args(["report", dir.to_str().expect("utf-8 path")])
        .output()
        .expect("run loadgen report");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).expect("rebuilt"), written);

    // A directory that is not a run: exit 2 naming the missing file.
    let empty = support::temp_dir("report-empty");
    let out = Command::new(support::loadgen_exe())
        .args(["report", empty.to_str().expect("utf-8 path")])
        .output()
        .expect("run loadgen report");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run.json does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}
