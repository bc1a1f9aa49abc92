//! The `loadgen` command line: exit codes and messages users see.

use std::process::Command;

use crate::support;

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(support::loadgen_exe())
        .args(args)
        .env_remove("LOADGEN_TARGET")
        .env_remove("LOADGEN_TOKEN")
        .output()
        .expect("run loadgen")
}

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
        &["run", good, "--target", "http://example.com:80"][..],
        &["frobnicate"][..],
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

#[test]
fn run_starts_the_bundled_server_prints_the_table_and_writes_results() {
    let dir = support::temp_dir("cli-run");
    let good = support::scenarios_dir().join("counter.toml");
    let out = loadgen(&[
        "run",
        good.to_str().expect("utf-8 path"),
        "--max-clients",
        "3",
        "--duration",
        "1s",
        "--quiet",
        "--out",
        dir.to_str().expect("utf-8 path"),
    ]);
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
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
}
