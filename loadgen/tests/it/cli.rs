//! The `loadgen` command line: exit codes and messages users see.

use std::process::Command;

use crate::support;

use support::loadgen;

#[test]
fn validate_prints_the_plan_or_names_file_line_and_field() {
    let good = support::scenarios_dir().join("fanout.toml");
    let out = loadgen(&["validate", good.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2000 x SSE /sse/notifications"), "{stdout}");

    let dir = support::temp_dir("cli-bad");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[run]\nduration = \"1s\"\n\n[[clients]]\nprotocol = \"sse\"\npath = \"/x\"\ncount = -3\n",
    )
    .expect("write");
    let out = loadgen(&["validate", bad.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:7:") && stderr.contains("clients[0].count"),
        "{stderr}"
    );

    let out = loadgen(&[
        "run",
        dir.join("missing.toml").to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read scenario"));
}

#[test]
fn usage_errors_are_exit_code_2() {
    let good = support::scenarios_dir().join("counter.toml");
    let good = good.to_str().expect("utf-8 path");
    for args in [
        &["run", good, "--duration", "soon"][..],
        &["run", good, "--max-clients", "0"][..],
        &["run", good, "--target", "ftp://127.0.0.1:80"][..],
        &["run", good, "--target", "http://[::1"][..],
        &["run", good, "--resolve", "host-without-port"][..],
        &["run", good, "--insecure", "--ca-file", "ca.pem"][..],
        &["run", good, "--ca-file", "/nonexistent/ca.pem"][..],
        &["run", good, "--raw-samples-limit", "5"][..],
        &[
            "run",
            good,
            "--raw-samples",
            "raw.csv",
            "--raw-samples-limit",
            "0",
        ][..],
        &["frobnicate"][..],
        &["calibrate", "--interval", "5ms", "--delay", "5ms"][..],
        &["calibrate", "--connections", "0"][..],
        // Same flags, same validation as rt-server: no silent fallback.
        &["serve", "--shutdown-grace-secs", "0"][..],
        &["serve", "--keepalive-secs", "-1"][..],
    ] {
        let out = loadgen(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_unreachable_target_is_exit_code_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let good = support::scenarios_dir().join("counter.toml");
    let target = format!("http://127.0.0.1:{port}");
    let out = loadgen(&[
        "run",
        good.to_str().expect("utf-8 path"),
        "--target",
        &target,
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

/// `loadgen run scenarios/counter.toml` with 3 clients for 1 s into `out`.
fn small_counter_run(out: &std::path::Path) -> std::process::Output {
    let good = support::scenarios_dir().join("counter.toml");
    loadgen(&[
        "run",
        good.to_str().expect("utf-8 path"),
        "--max-clients",
        "3",
        "--duration",
        "1s",
        "--quiet",
        "--out",
        out.to_str().expect("utf-8 path"),
    ])
}

#[test]
fn run_starts_the_bundled_server_prints_the_table_and_writes_results() {
    let dir = support::temp_dir("cli-run");
    let out = small_counter_run(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("verdict: PASS") && stdout.contains("delivery"),
        "{stdout}"
    );
    for file in [
        "summary.csv",
        "counters.csv",
        "timeseries.csv",
        "run.json",
        "delivery.hlog",
        "report.html",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
}

#[test]
fn compare_passes_a_run_against_itself_and_exits_1_on_a_regression() {
    let dir = support::temp_dir("cli-compare");
    let base = dir.join("base");
    let out = small_counter_run(&base);
    assert_eq!(out.status.code(), Some(0));
    let summary = dir.join("step-summary.md");
    let compare = |current: &std::path::Path, extra: &[&str]| {
        Command::new(support::loadgen_exe())
            .arg("compare")
            .arg(&base)
            .arg(current)
            .args(extra)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .expect("run loadgen compare")
    };

    let same = compare(&base, &[]);
    let stdout = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("| metric | baseline | current | change | verdict |"));
    assert!(stdout.contains("PASS: no regression"), "{stdout}");
    let written = std::fs::read_to_string(&summary).expect("step summary written");
    assert!(written.contains("PASS: no regression"), "{written}");

    // The same run with two gaps more: any increase in gaps is a regression.
    let worse = dir.join("worse");
    std::fs::create_dir_all(&worse).expect("dir");
    for entry in std::fs::read_dir(&base).expect("base") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, worse.join(path.file_name().expect("name"))).expect("copy");
    }
    let counters = std::fs::read_to_string(worse.join("counters.csv")).expect("counters");
    let edited = counters.replace("\ngaps,0,loadgen\n", "\ngaps,2,loadgen\n");
    assert_ne!(edited, counters, "gaps row present");
    std::fs::write(worse.join("counters.csv"), edited).expect("write");
    let regressed = compare(&worse, &[]);
    let stdout = String::from_utf8_lossy(&regressed.stdout);
    assert_eq!(regressed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("| gaps | 0 | 2 | +2 | **REGRESSION**"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&summary).expect("step summary");
    assert!(
        written.contains("PASS: no regression") && written.contains("FAIL: 1 regression(s)"),
        "appended, not overwritten: {written}"
    );

    // Unusable options and directories: exit 2 with the reason.
    for (extra, says) in [
        (&["--tolerance", "latency=lots"][..], "not a percentage"),
        (
            &["--noise-floor-ms=-1"][..],
            "'--noise-floor-ms <MS>': must be a number, 0 or more",
        ),
    ] {
        let out = compare(&base, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
    let out = compare(&dir.join("nothing-here"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let _ = std::fs::remove_dir_all(&dir);
}
