//! Request headers (scenario, `--header`, `${VAR}`), per-connection templates (`{conn}`,
//! `{group_conn}`, `{rand:A..B}` with `--seed`) and source addresses reach the server as
//! written.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use crate::support::{self, Handler, SSE_HEAD, event, fake_server, hold_open, respond};
use tokio::io::AsyncWriteExt;

/// Answers `/t...` with one event and holds the stream open; records every request.
fn one_event_streams() -> Handler {
    Arc::new(|seen, mut stream| {
        Box::pin(async move {
            if !seen.path.starts_with("/t") {
                return respond(stream, "404 Not Found", "text/plain").await;
            }
            let mut out = SSE_HEAD.to_vec();
            out.extend(event(1, 1, wire::now_unix_us()));
            if stream.write_all(&out).await.is_ok() {
                hold_open(stream).await;
            }
        })
    })
}

const TEMPLATED: &str = r#"
[run]
duration = "300ms"

[[clients]]
protocol = "sse"
path = "/t?user={conn}&g={group_conn}&r={rand:1..1000000}"
count = 5
reconnect = false
headers = { X-User = "u{conn}", Cookie = "sid=fixed" }
"#;

/// user -> (group_conn, rand, x-user, cookie) of every request of one run with `seed`.
async fn requests_with_seed(seed: u64) -> BTreeMap<u64, (u64, u64, String, String)> {
    let (addr, seen) = fake_server(one_event_streams()).await;
    let dir = support::temp_dir("templates");
    let mut options = support::options(support::scenario(TEMPLATED), Some(addr), &dir);
    options.seed = seed;
    let report = loadgen::run(options).await.expect("runs");
    assert_eq!(report.counters.connections_established, 5);
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    seen.iter()
        .filter(|s| s.path.starts_with("/t"))
        .map(|s| {
            let query: BTreeMap<&str, u64> = s
                .path
                .split_once('?')
                .expect("query")
                .1
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.parse().expect("a number")))
                .collect();
            let header = |n: &str| s.header(n).unwrap_or("").to_owned();
            (
                query["user"],
                (query["g"], query["r"], header("x-user"), header("cookie")),
            )
        })
        .collect()
}

#[tokio::test]
async fn templates_make_every_connection_its_own_and_a_seed_makes_them_reproducible() {
    let first = requests_with_seed(1).await;
    assert_eq!(first.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    for (user, (group_conn, rand, x_user, cookie)) in &first {
        assert_eq!(group_conn, user, "one group: the same index");
        assert!((1..=1_000_000).contains(rand));
        assert_eq!(x_user, &format!("u{user}"), "placeholders in header values");
        assert_eq!(cookie, "sid=fixed");
    }
    assert_eq!(requests_with_seed(1).await, first, "same seed, same values");
    let other: Vec<u64> = requests_with_seed(2).await.values().map(|v| v.1).collect();
    assert_ne!(other, first.values().map(|v| v.1).collect::<Vec<_>>());
}

/// A scenario file for one SSE client of the token-protected counter, with `headers`.
fn token_scenario(dir: &std::path::Path, name: &str, headers: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[run]\nduration = \"300ms\"\n\n[[clients]]\nprotocol = \"sse\"\npath = \"/sse/counter?interval_ms=50\"\ncount = 2\nreconnect = false\n{headers}\n"
    );
    std::fs::write(&path, text).expect("scenario written");
    path
}

#[tokio::test]
async fn headers_from_the_environment_and_the_command_line_reach_a_protected_server() {
    let config = server::ServerConfig {
        token: Some("s3cret".to_owned()),
        ..server::ServerConfig::default()
    };
    let server = server::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("server");
    let target = format!("http://{}", server.local_addr());
    let dir = support::temp_dir("headers");
    let with_env = token_scenario(
        &dir,
        "with-env",
        r#"headers = { Authorization = "Bearer ${LOADGEN_TEST_TOKEN}" }"#,
    );
    let plain = token_scenario(&dir, "plain", "");
    // Async: the server runs on this test's runtime, which a blocking wait would starve.
    let run = async |file: &std::path::Path, env: Option<&str>, extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(support::loadgen_exe());
        cmd.arg("run")
            .arg(file)
            .args(["--target", &target, "--quiet", "--out"])
            .arg(dir.join("out"))
            .args(extra)
            .env_remove("LOADGEN_TEST_TOKEN");
        if let Some(token) = env {
            cmd.env("LOADGEN_TEST_TOKEN", token);
        }
        cmd.output().await.expect("loadgen runs")
    };
    let ok = run(&with_env, Some("s3cret"), &[]).await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let unset = run(&with_env, None, &[]).await;
    assert_eq!(unset.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert!(
        stderr.contains("environment variable `LOADGEN_TEST_TOKEN` is not set")
            && stderr.contains("clients[0].headers.Authorization"),
        "{stderr}"
    );
    let refused = run(&plain, None, &[]).await;
    assert_eq!(
        refused.status.code(),
        Some(3),
        "no header: every connection 401"
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("HTTP status 401"));
    let cli = run(&plain, None, &["--header", "Authorization: Bearer s3cret"]).await;
    assert_eq!(
        cli.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cli.stdout)
    );
    let json = std::fs::read_to_string(dir.join("out/run.json")).expect("run.json");
    assert!(
        json.contains("authorization") && !json.contains("s3cret"),
        "names only"
    );
}

#[tokio::test]
async fn connections_leave_from_every_source_address_round_robin() {
    let (addr, seen) = fake_server(one_event_streams()).await;
    let dir = support::temp_dir("sources");
    let text = TEMPLATED.replacen(
        "[run]",
        "source_addrs = [\"127.0.0.1\", \"127.0.0.2\"]\n\n[run]",
        1,
    );
    let report = loadgen::run(support::options(support::scenario(&text), Some(addr), &dir))
        .await
        .expect("runs");
    assert_eq!(report.counters.connections_established, 5);
    let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
    for s in seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|s| s.path.starts_with("/t"))
    {
        *by_source.entry(s.peer.ip().to_string()).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = [("127.0.0.1".to_owned(), 3), ("127.0.0.2".to_owned(), 2)]
        .into_iter()
        .collect();
    assert_eq!(
        by_source, want,
        "connections 0, 2, 4 from .1 and 1, 3 from .2"
    );
}

/// Rooms members on the real server: `room` is the room template of every connection.
async fn rooms_run(room: &str) -> loadgen::results::report::Report {
    let server = support::rt_server().await;
    let text = format!(
        r#"
[run]
settle = "200ms"
duration = "600ms"

[[clients]]
protocol = "ws"
path = "/ws/rooms"
count = 4
on_connect = ['{{"type":"join","room":"{room}"}}']
send_rate = 20
message = '{{"type":"broadcast","room":"{room}"}}'
types = ["broadcast"]
expect = "peers"
"#
    );
    let report = support::run_against(&server, "rooms-templates", &text).await;
    server.shutdown(std::time::Duration::from_secs(2)).await;
    report
}

#[tokio::test]
async fn conn_templates_put_every_connection_in_its_own_room() {
    // One shared room: each broadcast reaches the 3 others.
    let shared = rooms_run("lobby").await.counters;
    assert!(shared.messages_sent > 0);
    assert_eq!(
        shared.messages_received,
        shared.messages_sent * 3,
        "{shared:?}"
    );
    // A room per connection (`r{conn}` in on_connect and in the message): nobody else is in
    // any member's room, so no broadcast is delivered.
    let alone = rooms_run("r{conn}").await.counters;
    assert!(alone.messages_sent > 0);
    assert_eq!(alone.messages_received, 0, "{alone:?}");
}
