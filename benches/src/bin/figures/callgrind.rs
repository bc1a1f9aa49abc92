//! Counting the instructions of a workload's measured region with valgrind's callgrind: the
//! workload runs in a child process of this binary under `valgrind --tool=callgrind`, which
//! collects only while [`REGION_SYMBOL`] is on the stack.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::workloads::{Measured, REGION_SYMBOL, Scale, Workload};

/// The Debian package that provides `valgrind`.
const PACKAGE_HINT: &str = "install the Debian package `valgrind` (apt-get install valgrind)";

/// valgrind's version line, or an error naming the package to install.
pub(crate) fn version() -> anyhow::Result<String> {
    let out = Command::new("valgrind").arg("--version").output();
    match out {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(out) => bail!(
            "`valgrind --version` failed ({}): {PACKAGE_HINT}",
            out.status
        ),
        Err(e) => bail!("cannot run valgrind ({e}): {PACKAGE_HINT}"),
    }
}

/// Runs `workload` at `scale` in a child process of `exe`: under callgrind (output file in
/// `dir`) when it counts instructions, else natively. Returns the instructions counted in the
/// region, if counted, and what the workload itself measured.
pub(crate) fn run(
    exe: &Path,
    workload: Workload,
    scale: Scale,
    dir: &Path,
) -> anyhow::Result<(Option<u64>, Measured)> {
    let out_file = dir.join(format!("callgrind.{}.out", workload.name()));
    let mut command = if workload.counts_instructions() {
        let mut c = Command::new("valgrind");
        c.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(format!("--toggle-collect=*{REGION_SYMBOL}*"))
            .arg("--quiet")
            .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let output = command
        .args(["run", workload.name(), "--scale", scale_name(scale)])
        .output()
        .with_context(|| format!("cannot run `{}`: {PACKAGE_HINT}", workload.name()))?;
    if !output.status.success() {
        bail!(
            "`{}` under callgrind failed ({}): {}",
            workload.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let measured: Measured = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("reading what `{}` printed", workload.name()))?;
    if !workload.counts_instructions() {
        return Ok((None, measured));
    }
    let text = std::fs::read_to_string(&out_file)
        .with_context(|| format!("reading {}", out_file.display()))?;
    let instructions = total_instructions(&text)
        .with_context(|| format!("{} has no `summary:` or `totals:` line", out_file.display()))?;
    if instructions == 0 {
        bail!("callgrind counted no instructions inside `{REGION_SYMBOL}` (was it inlined?)");
    }
    Ok((Some(instructions), measured))
}

/// The command-line spelling of `scale`.
pub(crate) fn scale_name(scale: Scale) -> &'static str {
    match scale {
        Scale::Quick => "quick",
        Scale::Full => "full",
    }
}

/// The total of the first event (instructions, `Ir`) in a callgrind output file.
pub(crate) fn total_instructions(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_or_totals_line() {
        let file = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n5 10\nsummary: 123456\n\ntotals: 123456\n";
        assert_eq!(total_instructions(file), Some(123_456));
        assert_eq!(total_instructions("events: Ir\ntotals: 77 3\n"), Some(77));
        assert_eq!(total_instructions("events: Ir\nfn=(1) main\n"), None);
        assert_eq!(total_instructions("summary: lots\n"), None);
    }
}
