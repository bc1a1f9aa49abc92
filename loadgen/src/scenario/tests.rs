//! Validation: good files become plans; bad ones name line, column, field and what is allowed.

use super::*;

const GOOD: &str = r#"
name = "t"
thresholds = ["delivery.p99 < 50ms", "gaps == 0"]

[run]
warmup = "1s"
duration = "5s"

[[publishers]]
name = "pub"
protocol = "http"
path = "/sse/notifications"
rate = 10
payload_bytes = 100

[[clients]]
name = "subs"
protocol = "sse"
path = "/sse/notifications"
count = 20
arrival_rate = 100
events = ["notification"]
expect = "publisher:pub"

[[clients]]
protocol = "ws"
path = "/ws/echo"
count = 2
ramp = "1s"
send_rate = 5
latency = "rtt"
"#;

fn parse_str(text: &str) -> Result<Scenario, ScenarioError> {
    parse(text, Path::new("test.toml"))
}

#[test]
fn a_good_file_becomes_a_plan() {
    let s = parse_str(GOOD).expect("valid");
    assert_eq!(s.clients.len(), 2);
    assert_eq!(s.clients[0].expect, Expect::Publisher("pub".into()));
    assert_eq!(s.clients[1].expect, Expect::Echo);
    assert_eq!(s.clients[1].name, "group2");
    assert_eq!(s.clients[1].arrival, Arrival::Ramp(Duration::from_secs(1)));
    assert_eq!(s.run.time_limit, Duration::from_secs(1 + 10 + 60));
    assert_eq!(s.total_connections(), 22);
    assert!(s.plan().contains("20 x SSE /sse/notifications"));
    assert_eq!(s.thresholds.len(), 2);
}

/// (what to change in GOOD, expected line, expected field, expected words in the message)
fn bad(from: &str, to: &str, line: usize, field: &str, words: &str) {
    let text = GOOD.replacen(from, to, 1);
    assert_ne!(text, GOOD, "replacement of {from:?} did not apply");
    match parse_str(&text) {
        Err(ScenarioError::Invalid {
            line: l,
            field: f,
            message,
            ..
        }) => {
            assert_eq!(
                (l, f.as_str()),
                (line, field),
                "{from:?} -> {to:?}: {message}"
            );
            assert!(message.contains(words), "{from:?} -> {to:?}: {message}");
        }
        other => panic!("{from:?} -> {to:?}: expected an error, got {other:?}"),
    }
}

#[test]
fn bad_values_name_line_field_and_what_is_allowed() {
    bad(
        "count = 20",
        "count = 0",
        20,
        "clients[0].count",
        "from 1 to 1000000",
    );
    bad(
        "protocol = \"sse\"",
        "protocol = \"sse2\"",
        18,
        "clients[0].protocol",
        "\"sse\" or \"ws\"",
    );
    bad(
        "duration = \"5s\"",
        "duration = \"5\"",
        7,
        "run.duration",
        "no unit",
    );
    bad(
        "duration = \"5s\"",
        "duration = \"0s\"",
        7,
        "run.duration",
        "longer than 0",
    );
    bad(
        "arrival_rate = 100",
        "arrival_rate = -1",
        21,
        "clients[0].arrival_rate",
        "above 0",
    );
    bad(
        "path = \"/ws/echo\"",
        "path = \"ws/echo\"",
        27,
        "clients[1].path",
        "starting with `/`",
    );
    bad(
        "expect = \"publisher:pub\"",
        "expect = \"publisher:nope\"",
        23,
        "clients[0].expect",
        "\"publisher:pub\"",
    );
    bad(
        "latency = \"rtt\"",
        "latency = \"fast\"",
        31,
        "clients[1].latency",
        "\"delivery\" or \"rtt\"",
    );
    bad(
        "\"gaps == 0\"",
        "\"gaps = 0\"",
        3,
        "thresholds[1]",
        "no comparison",
    );
    bad(
        "rate = 10\n",
        "rate = 0\n",
        13,
        "publishers[0].rate",
        "above 0",
    );
    bad(
        "ramp = \"1s\"",
        "ramp = \"1s\"\narrival_rate = 5",
        29,
        "clients[1].ramp",
        "not both",
    );
    bad(
        "name = \"t\"",
        "name = \"t\"\ntarget = \"ws://example.com\"",
        3,
        "target",
        "must be an http:// or https:// URL",
    );
}

#[test]
fn unknown_fields_and_wrong_types_are_errors_with_lines() {
    bad(
        "count = 20",
        "count = 20\ncolour = \"red\"",
        21,
        "colour",
        "unknown field",
    );
    bad("count = 20", "count = \"twenty\"", 20, "file", "integer");
    bad(
        "warmup = \"1s\"",
        "warm_up = \"1s\"",
        6,
        "warm_up",
        "expected one of",
    );
}

#[test]
fn ws_only_and_sse_only_fields_are_checked() {
    bad(
        "events = [\"notification\"]",
        "events = [\"notification\"]\non_connect = ['{}']",
        23,
        "clients[0].on_connect",
        "WebSocket groups only",
    );
    bad(
        "latency = \"rtt\"",
        "latency = \"rtt\"\nid_event = \"user\"",
        32,
        "clients[1].id_event",
        "SSE groups only",
    );
}

#[test]
fn reconnect_defaults_to_true_for_sse_and_false_for_websocket_and_can_be_set_for_both() {
    let s = parse_str(GOOD).expect("valid");
    let by_protocol = |p: Protocol| s.clients.iter().find(|c| c.protocol == p).expect("group");
    assert!(by_protocol(Protocol::Sse).reconnect);
    assert!(!by_protocol(Protocol::Ws).reconnect);
    let flipped = GOOD
        .replace("latency = \"rtt\"", "latency = \"rtt\"\nreconnect = true")
        .replace(
            "events = [\"notification\"]",
            "events = [\"notification\"]\nreconnect = false",
        );
    let s = parse_str(&flipped).expect("valid");
    assert!(
        s.clients
            .iter()
            .all(|c| c.reconnect == (c.protocol == Protocol::Ws))
    );
}

#[test]
fn scale_down_caps_counts_and_duration() {
    let mut s = parse_str(GOOD).expect("valid");
    s.scale_down(Some(3), Some(Duration::from_millis(500)));
    assert_eq!(s.clients[0].count, 3);
    assert_eq!(s.clients[1].count, 2);
    assert_eq!(s.run.duration, Duration::from_millis(500));
    assert!(s.run.time_limit >= s.run.warmup + s.run.duration);
}

#[test]
fn server_settings_become_flags() {
    let text = GOOD.replacen(
        "[run]",
        "[server]\nclient_queue = 64\nkeepalive = \"500ms\"\n\n[run]",
        1,
    );
    let s = parse_str(&text).expect("valid");
    assert_eq!(
        s.server.to_args(),
        ["--client-queue=64", "--keepalive-secs=0.5"]
    );
}

#[test]
fn settle_defaults_to_zero_and_is_bounded() {
    let s = parse_str(GOOD).expect("valid");
    assert_eq!(s.run.settle, Duration::ZERO, "no pause unless asked");
    assert!(!s.plan().contains("settle"));
    let text = GOOD.replacen("warmup = \"1s\"", "warmup = \"1s\"\nsettle = \"250ms\"", 1);
    let s = parse_str(&text).expect("valid");
    assert_eq!(s.run.settle, Duration::from_millis(250));
    assert!(s.plan().contains("settle 250ms"), "{}", s.plan());
    bad(
        "warmup = \"1s\"",
        "warmup = \"1s\"\nsettle = \"2m\"",
        7,
        "run.settle",
        "at most 60s",
    );
}

#[test]
fn source_addresses_are_ip_addresses_listed_once() {
    let text = GOOD.replacen("[run]", "source_addrs = [\"127.0.0.2\", \"::1\"]\n[run]", 1);
    let s = parse_str(&text).expect("valid");
    assert_eq!(s.source_addrs.len(), 2);
    assert!(s.plan().contains("source addresses: 127.0.0.2, ::1"));
    bad(
        "[run]",
        "source_addrs = [\"127.0.0.2\", \"lo\"]\n[run]",
        5,
        "source_addrs",
        "\"lo\" is not an IP address",
    );
    bad(
        "[run]",
        "source_addrs = [\"127.0.0.2\", \"127.0.0.2\"]\n[run]",
        5,
        "source_addrs",
        "listed twice",
    );
}

#[test]
fn unstamped_groups_only_count_and_sse_id_is_for_sse_alone() {
    let sse = GOOD.replacen("expect = \"publisher:pub\"", "stamp = \"none\"", 1);
    let s = parse_str(&sse).expect("valid");
    assert_eq!(s.clients[0].stamp.kind, StampKind::None);
    assert_eq!(s.clients[0].expect, Expect::Nothing, "nothing can be lost");
    let ids = GOOD.replacen(
        "expect = \"publisher:pub\"",
        "expect = \"stream\"\nstamp = { seq = \"sse-id\" }",
        1,
    );
    assert_eq!(
        parse_str(&ids).expect("valid").clients[0].stamp.kind,
        StampKind::SseId
    );
    for (to, says) in [
        (
            "stamp = \"none\"\nexpect = \"stream\"",
            "can only be counted",
        ),
        ("stamp = \"nothing\"", "must be \"none\" or a table"),
        ("stamp = { seq = \"sse-id\", ts = \"t\" }", "alone"),
    ] {
        let text = GOOD.replacen("expect = \"publisher:pub\"", to, 1);
        match parse_str(&text) {
            Err(ScenarioError::Invalid { message, .. }) => {
                assert!(message.contains(says), "{to}: {message}");
            }
            other => panic!("{to}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn a_stamp_table_keeps_the_lines_of_its_fields_in_errors() {
    bad(
        "expect = \"publisher:pub\"",
        "expect = \"publisher:pub\"\nstamp = { unit = \"s\" }",
        24,
        "clients[0].stamp.unit",
        "must be \"ms\"",
    );
}

/// Like [`bad`], without pinning the line.
fn bad_field(from: &str, to: &str, field: &str, words: &str) {
    let text = GOOD.replacen(from, to, 1);
    assert_ne!(text, GOOD, "replacement of {from:?} did not apply");
    match parse_str(&text) {
        Err(ScenarioError::Invalid {
            field: f, message, ..
        }) => {
            assert_eq!(f, field, "{to:?}: {message}");
            assert!(message.contains(words), "{to:?}: {message}");
        }
        other => panic!("{to:?}: expected an error, got {other:?}"),
    }
}

const SSE_LINE: &str = "expect = \"publisher:pub\"";
const WS_LINE: &str = "latency = \"rtt\"";

#[test]
fn transport_settings_are_checked_per_protocol() {
    let ws = |extra: &str| format!("{WS_LINE}\n{extra}");
    let sse = |extra: &str| format!("{SSE_LINE}\n{extra}");
    bad_field(
        WS_LINE,
        &ws("http = \"2\""),
        "clients[1].http",
        "HTTP/1.1 upgrades",
    );
    bad_field(
        SSE_LINE,
        &sse("http = \"3\""),
        "clients[0].http",
        "\"1.1\", \"2\" or \"auto\"",
    );
    bad_field(
        SSE_LINE,
        &sse("streams_per_connection = 5"),
        "clients[0].streams_per_connection",
        "http = \"2\"",
    );
    bad_field(
        SSE_LINE,
        &sse("http = \"2\"\nstreams_per_connection = 0"),
        "clients[0].streams_per_connection",
        "",
    );
    bad_field(
        SSE_LINE,
        &sse("target = \"http://a\"\ntargets = [\"http://b\"]"),
        "clients[0].targets",
        "not both",
    );
    bad_field(
        SSE_LINE,
        &sse("targets = [\"http://a:1\", \"http://a:1\"]"),
        "clients[0].targets",
        "listed twice",
    );
    bad_field(
        SSE_LINE,
        &sse("target = \"https://\""),
        "clients[0].target",
        "missing",
    );
    bad_field(
        SSE_LINE,
        &sse("replies = { \"2\" = \"3\" }"),
        "clients[0].replies",
        "WebSocket groups only",
    );
    bad_field(
        WS_LINE,
        &ws("keepalive = { every = \"1ms\", message = \"x\" }"),
        "clients[1].keepalive.every",
        "at least 10ms",
    );
    bad_field(
        WS_LINE,
        &ws("frame = { type_pointer = \"type\" }"),
        "clients[1].frame.type_pointer",
        "JSON pointer",
    );
    bad_field(
        WS_LINE,
        &ws("stamp = { pointer = \"/1\" }"),
        "clients[1].message",
        "object there",
    );
    bad_field(
        WS_LINE,
        &ws("stamp = { pointer = \"/1\" }\nmessage = '[\"x\", 3]'"),
        "clients[1].message",
        "no JSON object at stamp.pointer",
    );
    bad_field(
        WS_LINE,
        &ws("message = '[1, 2]'"),
        "clients[1].message",
        "set stamp.pointer",
    );
}

#[test]
fn foreign_formats_targets_and_http2_parse_into_the_plan() {
    let text = GOOD
        .replacen(
            WS_LINE,
            &format!(
                "{WS_LINE}\nframe = {{ prefix = \"42\", type_pointer = \"/0\" }}\nstamp = {{ pointer = \"/1\" }}\nmessage = '[\"echo\", {{}}]'\nreplies = {{ \"2\" = \"3\" }}\nkeepalive = {{ every = \"25s\", message = \"2probe\" }}\ntargets = [\"https://a.example:8443\", \"http://[::1]:9\"]"
            ),
            1,
        )
        .replacen(SSE_LINE, &format!("{SSE_LINE}\nhttp = \"auto\""), 1);
    let s = parse_str(&text).expect("valid");
    let ws = &s.clients[1];
    assert_eq!(ws.frame.prefix, "42");
    assert_eq!(ws.frame.type_pointer, "/0");
    assert_eq!(ws.replies, [("2".to_owned(), "3".to_owned())]);
    assert_eq!(
        ws.keepalive,
        Some(Keepalive {
            every: Duration::from_secs(25),
            message: "2probe".into()
        })
    );
    assert_eq!(
        ws.send.as_ref().map(|s| s.template.clone()),
        Some(serde_json::json!(["echo", {}]))
    );
    assert_eq!(ws.targets.len(), 2);
    assert!(ws.targets[0].secure && ws.targets[1].host == "::1");
    assert_eq!(s.clients[0].http, HttpVersion::Auto);
    assert_eq!(s.clients[0].streams_per_connection, 100);
    assert_eq!(s.plan_key()["groups"][0]["http"]["version"], "auto");
}

#[test]
fn a_cluster_of_instances_needs_redis_and_is_in_the_plan() {
    let cluster = |server: &str| GOOD.replacen("[run]", &format!("[server]\n{server}\n\n[run]"), 1);
    let s = parse_str(&cluster("instances = 3\nredis = \"spawn\"")).expect("valid");
    assert_eq!(s.server.instance_count(), 3);
    assert_eq!(s.server.redis, Some(RedisSetting::Spawn));
    assert!(s.server.to_args().is_empty(), "not flags of one instance");
    assert!(
        s.plan().contains("3 instances over a spawned redis-server"),
        "{}",
        s.plan()
    );
    assert_eq!(
        s.plan_key()["deployment"],
        "3 instances over a spawned redis-server"
    );
    let single = parse_str(GOOD).expect("valid");
    assert_eq!(single.server.instance_count(), 1);
    assert!(
        single.plan_key().get("deployment").is_none(),
        "one instance alone keeps older runs' keys"
    );
    let given =
        parse_str(&cluster("instances = 2\nredis = \"redis://10.0.0.5:6379\"")).expect("valid");
    assert_eq!(
        given.server.redis,
        Some(RedisSetting::Url("redis://10.0.0.5:6379".to_owned()))
    );
    let one_over_redis = parse_str(&cluster("redis = \"spawn\"")).expect("valid");
    assert_eq!(one_over_redis.server.instance_count(), 1);

    for (server, field, words) in [
        ("instances = 3", "server.instances", "needs server.redis"),
        ("instances = 0", "server.instances", "from 1 to 16"),
        ("instances = 17", "server.instances", "from 1 to 16"),
        (
            "redis = \"mysql://x:1\"",
            "server.redis",
            "\"spawn\" or a redis://",
        ),
        ("redis = \"redis://a:notaport\"", "server.redis", "redis"),
    ] {
        match parse_str(&cluster(server)) {
            Err(ScenarioError::Invalid {
                field: f, message, ..
            }) => {
                assert_eq!(f, field, "{server}: {message}");
                assert!(message.contains(words), "{server}: {message}");
            }
            other => panic!("{server}: expected an error, got {other:?}"),
        }
    }
}
