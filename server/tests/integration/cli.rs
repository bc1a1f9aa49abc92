//! The `rt-server` command line: help text and flag validation.

use std::process::Command;

fn rt_server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rt-server"))
        .args(args)
        .env_remove("RT_TOKEN")
        .output()
        .expect("run rt-server")
}

#[test]
fn help_explains_every_flag_and_its_env_override() {
    let out = rt_server(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--listen", "RT_LISTEN"),
        ("--token", "RT_TOKEN"),
        ("--max-connections", "RT_MAX_CONNECTIONS"),
        ("--max-message-bytes", "RT_MAX_MESSAGE_BYTES"),
        ("--max-body-bytes", "RT_MAX_BODY_BYTES"),
        ("--keepalive-secs", "RT_KEEPALIVE_SECS"),
        ("--retry-ms", "RT_RETRY_MS"),
        ("--ping-secs", "RT_PING_SECS"),
        ("--replay-capacity", "RT_REPLAY_CAPACITY"),
        ("--client-queue", "RT_CLIENT_QUEUE"),
        ("--counter-interval-ms", "RT_COUNTER_INTERVAL_MS"),
        ("--stock-symbols", "RT_STOCK_SYMBOLS"),
        ("--stock-rate", "RT_STOCK_RATE"),
        ("--ws-read-buffer", "RT_WS_READ_BUFFER"),
        ("--backlog", "RT_BACKLOG"),
        ("--shutdown-grace-secs", "RT_SHUTDOWN_GRACE_SECS"),
        ("--header-timeout-secs", "RT_HEADER_TIMEOUT_SECS"),
        ("--write-stall-secs", "RT_WRITE_STALL_SECS"),
        ("--redis-url", "RT_REDIS_URL"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(help.contains(env), "--help lacks {env}");
    }
}

#[test]
fn out_of_range_flags_are_refused_by_name() {
    for (args, needle) in [
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--keepalive-secs", "0"][..], "--keepalive-secs"),
        (&["--ping-secs=-1"][..], "--ping-secs"),
        (&["--listen", "not-an-address"][..], "--listen"),
        (&["--token", ""][..], "--token"),
        (&["--redis-url", "http://redis.invalid"][..], "--redis-url"),
        (&["--header-timeout-secs", "0"][..], "--header-timeout-secs"),
        (&["--write-stall-secs", "0"][..], "--write-stall-secs"),
    ] {
        let out = rt_server(args);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
