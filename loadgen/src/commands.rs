//! What each `loadgen` subcommand does once its arguments are parsed and validated (`main.rs`
//! only parses). Every function prints its own output and returns the process exit code:
//! 0 pass, 1 failed (thresholds, loss, interruption, time limit, a regression, calibration
//! outside its goals), 2 invalid scenario, usage or run directory, 3 target unreachable or
//! failed.

// Standard output is the interface of these commands: plans, tables, the port line.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::live::calibrate::{CalibrateError, CalibrateOptions};
use crate::live::raw_samples::RawSamplesOptions;
use crate::live::run::{Progress, RunOptions};
use crate::live::start_at::StartAt;
use crate::live::transport::TlsOptions;
use crate::results::compare::CompareOptions;
use crate::scenario::{Header, ResolvePin, RunShard, TargetUrl};

/// `loadgen run`.
#[derive(Debug)]
pub struct RunCommand {
    /// The scenario file.
    pub file: PathBuf,
    /// `--target`.
    pub target: Option<TargetUrl>,
    /// `--token`.
    pub token: Option<String>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--max-clients` (>= 1).
    pub max_clients: Option<u32>,
    /// `--duration`.
    pub duration: Option<Duration>,
    /// `--quiet`.
    pub quiet: bool,
    /// `--raw-samples` and `--raw-samples-limit`.
    pub raw_samples: Option<RawSamplesOptions>,
    /// `--header`s, added to every group and publisher.
    pub headers: Vec<Header>,
    /// `--seed`.
    pub seed: u64,
    /// `--resolve` pins.
    pub resolve: Vec<ResolvePin>,
    /// `--ca-file`, `--insecure`.
    pub tls: TlsOptions,
    /// `--shard I/N` (or `--shards N` with the job's index): run this share only.
    pub shard: Option<RunShard>,
    /// `--start-at`: start the connect phase at this instant.
    pub start_at: Option<StartAt>,
}

/// The TCP connections a plan opens at most: the streams of an `http = "2"` group share
/// connections, `streams_per_connection` each.
fn tcp_connections(scenario: &crate::scenario::Scenario) -> u64 {
    scenario
        .clients
        .iter()
        .map(|c| {
            let count = u64::from(c.count);
            if c.http == crate::scenario::HttpVersion::Http2 {
                count.div_ceil(u64::from(c.streams_per_connection.max(1)))
            } else {
                count
            }
        })
        .sum()
}

/// Runs a scenario (Ctrl-C stops it and still writes the results) and prints the table.
pub async fn run(cmd: RunCommand) -> i32 {
    let mut scenario = match crate::scenario::load(&cmd.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    scenario.scale_down(cmd.max_clients, cmd.duration);
    scenario.add_headers(&cmd.headers);
    if let Some(shard) = cmd.shard {
        scenario = match scenario.shard(shard) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        if shard.count > 1 && cmd.target.is_none() && scenario.uses_bundled_server() {
            eprintln!(
                "error: a sharded run needs one target for every shard: give --target URL (or `target` in the scenario); each shard would otherwise start its own bundled server"
            );
            return 2;
        }
    }
    // Checked before anything starts; checked again when the run is ready to start.
    if let Some(Err(e)) = cmd.start_at.map(|at| at.wait_from(wire::now_unix_us())) {
        eprintln!("error: {e}");
        return 2;
    }
    let insecure = cmd.tls.insecure;
    if insecure {
        eprintln!("WARNING: {}", crate::results::output::INSECURE_WARNING);
    }
    let connections = tcp_connections(&scenario);
    if let Some(warning) = crate::live::transport::ports::local_port_range().and_then(|range| {
        crate::live::transport::ports::crowding_warning(
            connections,
            scenario.source_addrs.len(),
            range,
        )
    }) {
        eprintln!("WARNING: {warning}");
    }
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        eprintln!("\ninterrupted: stopping and writing the results gathered so far");
        let _ = cancel_tx.send(true);
    });
    let options = RunOptions {
        scenario,
        scenario_file: Some(cmd.file),
        target: cmd.target,
        resolve: cmd.resolve,
        tls: cmd.tls,
        token: cmd.token,
        out: cmd.out,
        results_root: PathBuf::from("results/runs"),
        server_exe: std::env::current_exe().ok(),
        progress: Progress::detect(cmd.quiet),
        command_line: redacted(std::env::args()),
        cancel: Some(cancel_rx),
        raw_samples: cmd.raw_samples,
        seed: cmd.seed,
        start_at: cmd.start_at,
    };
    match crate::run(options).await {
        Ok(report) => {
            print!("{}", report.table());
            if insecure {
                eprintln!("WARNING: {}", crate::results::output::INSECURE_WARNING);
            }
            report.exit_code()
        }
        Err(e) => {
            // The run happened: its table still shows what was measured.
            if let crate::RunError::Unwritten { report, .. } = &e {
                print!("{}", report.table());
            }
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The command line with the values of `--token` and `--header` hidden (header names kept):
/// it is written to `run.json`, and those values are often credentials.
fn redacted(args: impl Iterator<Item = String>) -> Vec<String> {
    let hide = |flag: &str, value: &str| match flag {
        "--header" => value
            .split_once(':')
            .map_or_else(|| "<hidden>".to_owned(), |(n, _)| format!("{n}: <hidden>")),
        _ => "<hidden>".to_owned(),
    };
    let mut out = Vec::new();
    let mut pending: Option<&'static str> = None;
    for arg in args {
        if let Some(flag) = pending.take() {
            out.push(hide(flag, &arg));
            continue;
        }
        let secret = ["--token", "--header"]
            .into_iter()
            .find(|f| arg == *f || arg.starts_with(&format!("{f}=")));
        match secret {
            Some(flag) if arg == flag => {
                pending = Some(flag);
                out.push(arg);
            }
            Some(flag) => out.push(format!("{flag}={}", hide(flag, &arg[flag.len() + 1..]))),
            None => out.push(arg),
        }
    }
    out
}

/// Prints what a run of `file` (or of `shard`'s share of it) would do.
#[must_use]
pub fn validate(file: &Path, shard: Option<RunShard>) -> i32 {
    let scenario = crate::scenario::load(file)
        .map_err(|e| e.to_string())
        .and_then(|s| match shard {
            Some(shard) => s.shard(shard).map_err(|e| e.to_string()),
            None => Ok(s),
        });
    match scenario {
        Ok(s) => {
            print!("{}", s.plan());
            if s.run_shard().count > 1 && s.uses_bundled_server() {
                println!(
                    "note: shards must share their target: run it with --target URL (each shard would otherwise start its own bundled server)"
                );
            }
            println!("ok: {} is valid", file.display());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Merges the run directories of a sharded run into `out`; prints the table and exits as
/// `run` would (2 for directories that do not belong together).
#[must_use]
pub fn merge(dirs: &[PathBuf], out: &Path, allow_partial: bool) -> i32 {
    match crate::results::merge::merge_dirs(dirs, out, allow_partial) {
        Ok(merged) => {
            print!("{}", merged.table);
            merged.exit_code
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Rewrites `dir/report.html` from the run directory's files.
#[must_use]
pub fn report(dir: &Path) -> i32 {
    match crate::results::html::write_report(dir) {
        Ok(path) => {
            println!("wrote {}", path.display());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Compares `current` with `baseline`, prints the markdown table and appends it to
/// `$GITHUB_STEP_SUMMARY` when set. Exit 0 without regression, 1 with one, 2 when the runs
/// cannot be compared.
#[must_use]
pub fn compare(baseline: &Path, current: &Path, options: &CompareOptions) -> i32 {
    let comparisons = match crate::results::compare::compare_paths(baseline, current, options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let table = crate::results::compare::markdown(&comparisons);
    print!("{table}");
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{table}\n").as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "warning: cannot append to GITHUB_STEP_SUMMARY ({}): {e}",
                PathBuf::from(&path).display()
            );
        }
    }
    let failures: usize = comparisons
        .iter()
        .map(crate::results::compare::Comparison::failures)
        .sum();
    i32::from(failures > 0)
}

/// `loadgen calibrate`; `out: None` writes under `results/runs/calibrate-<UTC time>`.
#[derive(Debug)]
pub struct CalibrateCommand {
    /// `--duration`.
    pub duration: Duration,
    /// `--connections`.
    pub connections: u32,
    /// `--interval`.
    pub interval: Duration,
    /// `--delay-every`.
    pub delay_every: u64,
    /// `--delay`.
    pub delay: Duration,
    /// `--out`.
    pub out: Option<PathBuf>,
}

/// Measures loadgen's own error against the bundled server's truth and prints the table.
/// Exit 0 within the goals, 1 outside them or when a run fails, 2 for settings that cannot
/// work.
pub async fn calibrate(cmd: CalibrateCommand) -> i32 {
    let Ok(server_exe) = std::env::current_exe() else {
        eprintln!("error: cannot find loadgen's own executable to start the server with");
        return 1;
    };
    let out = cmd.out.unwrap_or_else(|| {
        PathBuf::from("results/runs").join(format!(
            "calibrate-{}",
            crate::results::output::compact_time(wire::now_unix_us())
        ))
    });
    let options = CalibrateOptions {
        duration: cmd.duration,
        connections: cmd.connections,
        interval: cmd.interval,
        delay_every: cmd.delay_every,
        delay: cmd.delay,
        out,
        server_exe,
    };
    match crate::live::calibrate::calibrate(options).await {
        Ok(c) => {
            print!("{}", c.table());
            i32::from(!c.within_goal())
        }
        Err(CalibrateError::Invalid(m)) => {
            eprintln!("error: {m}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Runs the bundled target server until SIGINT/SIGTERM; prints the line the parent reads to
/// learn the port. Exit 2 for flags out of range, 3 when it cannot listen.
pub async fn serve(args: &server::cli::ServeArgs) -> i32 {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let running = match server::start(config, args.listen).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 3;
        }
    };
    println!(
        "{} {}",
        crate::live::target::LISTENING,
        running.local_addr()
    );
    server::shutdown_signal().await;
    running.shutdown(args.shutdown_grace()).await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_header_values_are_hidden_in_the_recorded_command_line() {
        let args = [
            "loadgen",
            "run",
            "f.toml",
            "--token",
            "t0k",
            "--header",
            "Authorization: Bearer x",
            "--header=Cookie: sid=1",
            "--token=abc",
            "--quiet",
        ]
        .map(str::to_owned);
        assert_eq!(
            redacted(args.into_iter()),
            [
                "loadgen",
                "run",
                "f.toml",
                "--token",
                "<hidden>",
                "--header",
                "Authorization: <hidden>",
                "--header=Cookie: <hidden>",
                "--token=<hidden>",
                "--quiet",
            ]
        );
    }
}
