//! The `figures` binary end to end: its instruction counts repeat exactly between runs (what
//! makes a 2% gate possible), the clients read events without allocating, and `compare`
//! fails on a figure that grew. Needs valgrind (Debian package `valgrind`, which `.ci/run`
//! installs): without it the test fails and says so.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn figures(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_figures"))
        .args(args)
        .output()
        .expect("the figures binary runs")
}

fn measure(out: &Path) {
    let o = figures(&[
        "measure",
        "--scale",
        "quick",
        "--only",
        "fanout",
        "--only",
        "sse-client",
        "--only",
        "ws-client",
        "--only",
        "server-delivery",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(
        o.status.success(),
        "figures measure failed (install the Debian package `valgrind` if it is missing):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn values(path: &Path) -> Vec<(String, f64)> {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("written")).expect("json");
    file["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().expect("name").to_owned(),
                f["value"].as_f64().expect("value"),
            )
        })
        .collect()
}

#[test]
fn instruction_counts_repeat_and_a_grown_figure_fails_the_gate() {
    let dir = tempfile_dir();
    let (first, second) = (dir.join("first.json"), dir.join("second.json"));
    measure(&first);
    measure(&second);
    let (a, b) = (values(&first), values(&second));
    let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "fanout.instructions_per_event",
        "sse-client.instructions_per_event",
        "ws-client.instructions_per_event",
        "server-delivery.instructions_per_event",
        "sse-client.heap_bytes_per_event",
        "sse-client.heap_bytes_per_connection",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if name.ends_with("instructions_per_event") {
            assert!(*x > 100.0, "{name} = {x}: nothing counted");
            let drift = (x - y).abs() / x;
            assert!(drift < 0.005, "{name}: {x} then {y} ({drift:.4} apart)");
        }
    }
    // The SSE client's read path allocates nothing per event.
    let per_event = a
        .iter()
        .find(|(n, _)| n == "sse-client.heap_bytes_per_event")
        .map(|(_, v)| *v);
    assert_eq!(per_event, Some(0.0));
    // rt-server's deliveries are counted (on its worker thread).
    let server = a
        .iter()
        .find(|(n, _)| n == "server-delivery.instructions_per_event")
        .map(|(_, v)| *v);
    assert!(
        server.is_some_and(|v| v > 500.0),
        "server-delivery counted nothing: {server:?}"
    );

    let same = figures(&["compare", path(&first), path(&second)]);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    let grown = dir.join("grown.json");
    let mut file: Value =
        serde_json::from_str(&std::fs::read_to_string(&first).expect("written")).expect("json");
    let figure = file["figures"]
        .as_array_mut()
        .expect("figures")
        .iter_mut()
        .find(|f| f["name"] == "sse-client.instructions_per_event")
        .expect("present");
    let value = figure["value"].as_f64().expect("value");
    figure["value"] = Value::from(value * 1.03);
    std::fs::write(&grown, file.to_string()).expect("write");
    let worse = figures(&["compare", path(&first), path(&grown)]);
    let stdout = String::from_utf8_lossy(&worse.stdout);
    assert_eq!(worse.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("regression: sse-client.instructions_per_event grew"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile_dir();
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"figures\": 3}").expect("write");
    let o = figures(&["compare", path(&junk), path(&junk)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a figures file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = figures(&["compare", "a.json", "b.json", "--tolerance-percent", "-5"]);
    assert_eq!(o.status.code(), Some(2));
    let o = figures(&["compare", path(&dir.join("absent.json")), path(&junk)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "figures-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
