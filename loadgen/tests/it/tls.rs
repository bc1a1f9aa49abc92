//! Real servers over TLS and HTTP/2: the bundled server with a certificate generated here
//! (a test CA trusted through `--ca-file`), loaded through `https://` and `wss://`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use loadgen::live::stats::Metric;
use loadgen::live::transport::TlsOptions;
use loadgen::scenario::{ResolvePin, TargetUrl};
use testkit::certs::{self, TestPki};

use crate::support;

/// The bundled server serving TLS (ALPN h2, http/1.1) with `pki`'s certificate.
async fn tls_server(pki: &TestPki) -> server::RunningServer {
    let config = server::ServerConfig {
        tls: Some(server::TlsIdentity {
            cert_pem: std::fs::read(&pki.server_cert).expect("cert"),
            key_pem: std::fs::read(&pki.server_key).expect("key"),
        }),
        ..server::ServerConfig::default()
    };
    server::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("TLS server starts")
}

/// Runs `scenario` against `target` with `tls` and `--resolve` pins.
async fn run_tls(
    scenario: &str,
    target: &str,
    tls: TlsOptions,
    resolve: Vec<ResolvePin>,
    out: &std::path::Path,
) -> loadgen::results::report::Report {
    let mut options = support::options(support::scenario(scenario), None, out);
    options.target = Some(TargetUrl::parse(target).expect("target URL"));
    options.tls = tls;
    options.resolve = resolve;
    loadgen::run(options).await.expect("run completes")
}

/// Runs [`ONE_STREAM`] against `https://HOST:<server's port>` with HOST pinned to
/// 127.0.0.1 by `--resolve`, trusting `pki`'s CA.
async fn run_pinned(
    host: &str,
    server: &server::RunningServer,
    pki: &TestPki,
    dir: &std::path::Path,
) -> loadgen::results::report::Report {
    let port = server.local_addr().port();
    let pin: ResolvePin = format!("{host}:{port}:127.0.0.1").parse().expect("pin");
    let target = format!("https://{host}:{port}");
    run_tls(
        ONE_STREAM,
        &target,
        trusting(pki),
        vec![pin],
        &dir.join("run"),
    )
    .await
}

fn trusting(pki: &TestPki) -> TlsOptions {
    TlsOptions {
        ca_file: Some(pki.ca_cert.clone()),
        insecure: false,
    }
}

/// `name{scenario="x"}` series of a scrape whose labels contain `label`.
fn series(scrape: &BTreeMap<String, f64>, name: &str, label: &str) -> f64 {
    scrape
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(label))
        .map(|(_, v)| *v)
        .sum()
}

const SSE_AND_WSS: &str = r#"
[run]
duration = "1s"
settle = "200ms"

[[clients]]
name = "feed"
protocol = "sse"
path = "/sse/notifications"
count = 20
events = ["notification"]
expect = "publisher:pub"

[[clients]]
name = "echo"
protocol = "ws"
path = "/ws/echo"
count = 10
send_rate = 20
latency = "rtt"

[[publishers]]
name = "pub"
protocol = "http"
path = "/sse/notifications"
rate = 20
"#;

#[tokio::test]
async fn sse_over_https_and_wss_with_a_generated_ca_lose_nothing_and_time_the_handshakes() {
    let dir = support::temp_dir("tls-ok");
    let pki = certs::generate(&dir, "ok", &[]);
    let server = tls_server(&pki).await;
    let target = format!("https://localhost:{}", server.local_addr().port());
    let report = run_tls(
        SSE_AND_WSS,
        &target,
        trusting(&pki),
        vec![],
        &dir.join("run"),
    )
    .await;
    let c = &report.counters;
    assert_eq!(
        report.exit_code(),
        0,
        "{:?} {:?}",
        report.failures(),
        report.error_samples
    );
    assert_eq!(c.connections_established, 30);
    assert_eq!(
        (c.lost(), c.gaps, c.failed_tls, c.parse_errors),
        (0, 0, 0, 0)
    );
    assert!(c.messages_received > 20 * 10, "{c:?}");
    // One handshake timed per connection (the publisher's POST connection is not a client).
    assert_eq!(report.histograms.get(Metric::Tls).len(), 30);
    assert!(!report.histograms.get(Metric::WsRtt).is_empty());
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/run.json")).expect("run.json"))
            .expect("JSON");
    assert_eq!(run_json["tls"]["insecure"], false);
    assert_eq!(run_json["tls"]["roots"], "ca_file");
    server.shutdown(std::time::Duration::from_secs(2)).await;
}

const ONE_STREAM: &str = r#"
[run]
duration = "300ms"

[[clients]]
protocol = "sse"
path = "/sse/counter?interval_ms=50"
count = 3
reconnect = false
"#;

#[tokio::test]
async fn a_wrong_ca_fails_every_connection_with_cause_tls_and_rustls_reason() {
    let dir = support::temp_dir("tls-wrong-ca");
    let pki = certs::generate(&dir, "real", &[]);
    let other = certs::generate(&dir, "other", &[]);
    let server = tls_server(&pki).await;
    let target = format!("https://localhost:{}", server.local_addr().port());
    let report = run_tls(
        ONE_STREAM,
        &target,
        trusting(&other),
        vec![],
        &dir.join("run"),
    )
    .await;
    assert_eq!(report.exit_code(), 3);
    assert_eq!(report.counters.connections_established, 0);
    assert_eq!(report.counters.failed_tls, 3, "{:?}", report.counters);
    let errors = report.error_samples.join(" | ");
    assert!(
        errors.contains("tls: ") && errors.contains("UnknownIssuer"),
        "{errors}"
    );
    server.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_with_cause_tls_naming_the_mismatch() {
    let dir = support::temp_dir("tls-wrong-name");
    // Valid for localhost, 127.0.0.1 and ::1 only; the run asks for another name, pinned to
    // the same server.
    let pki = certs::generate(&dir, "named", &[]);
    let server = tls_server(&pki).await;
    let report = run_pinned("not-in-the-cert.loadgen.test", &server, &pki, &dir).await;
    assert_eq!(report.exit_code(), 3);
    assert_eq!(report.counters.failed_tls, 3, "{:?}", report.counters);
    let errors = report.error_samples.join(" | ");
    assert!(
        errors.contains("certificate not valid for name"),
        "{errors}"
    );
    server.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn insecure_connects_to_an_untrusted_server_and_says_so_everywhere() {
    let dir = support::temp_dir("tls-insecure");
    let pki = certs::generate(&dir, "self", &[]);
    let server = tls_server(&pki).await;
    let target = format!("https://127.0.0.1:{}", server.local_addr().port());
    let out = dir.join("run");
    let file = dir.join("one.toml");
    std::fs::write(&file, ONE_STREAM).expect("scenario");
    let output = tokio::process::Command::new(support::loadgen_exe())
        .arg("run")
        .arg(&file)
        .args(["--target", &target, "--insecure", "--quiet", "--out"])
        .arg(&out)
        .output()
        .await
        .expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("WARNING: --insecure"), "{stderr}");
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json"))
            .expect("JSON");
    assert_eq!(run_json["tls"]["insecure"], true);
    let warnings = run_json["warnings"].to_string();
    assert!(warnings.contains("NOT verified"), "{warnings}");
    server.shutdown(std::time::Duration::from_secs(2)).await;
}

#[tokio::test]
async fn resolve_pins_a_host_name_that_host_and_sni_still_carry() {
    let dir = support::temp_dir("tls-resolve");
    // The certificate names the made-up host (besides localhost and the loopback
    // addresses); the test above shows the name checked is the URL's, not the address.
    let pki = certs::generate(&dir, "pinned", &["events.loadgen.test"]);
    let server = tls_server(&pki).await;
    let report = run_pinned("events.loadgen.test", &server, &pki, &dir).await;
    assert_eq!(report.exit_code(), 0, "{:?}", report.error_samples);
    assert_eq!(report.counters.connections_established, 3);
    // Without the pin the name does not resolve: exit 3 before any load.
    let target = format!("https://events.loadgen.test:{}", server.local_addr().port());
    let mut options = support::options(support::scenario(ONE_STREAM), None, &dir.join("nopin"));
    options.target = Some(TargetUrl::parse(&target).expect("url"));
    options.tls = trusting(&pki);
    let err = loadgen::run(options).await.expect_err("unresolvable");
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("events.loadgen.test"), "{err}");
    server.shutdown(std::time::Duration::from_secs(2)).await;
}

const H2_FANOUT: &str = r#"
[run]
duration = "1s"
settle = "300ms"

[[clients]]
name = "h2"
protocol = "sse"
http = "2"
streams_per_connection = 100
path = "/sse/notifications"
count = 1000
arrival_rate = 2000
events = ["notification"]
expect = "publisher:pub"

[[publishers]]
name = "pub"
protocol = "http"
path = "/sse/notifications"
rate = 10
"#;

#[tokio::test]
async fn http2_carries_1000_streams_on_10_connections_without_loss() {
    let dir = support::temp_dir("tls-h2");
    let pki = certs::generate(&dir, "h2", &[]);
    let server = tls_server(&pki).await;
    let addr: SocketAddr = server.local_addr();
    let target = format!("https://localhost:{}", addr.port());
    let report = run_tls(H2_FANOUT, &target, trusting(&pki), vec![], &dir.join("run")).await;
    let c = &report.counters;
    assert_eq!(
        report.exit_code(),
        0,
        "{:?} {:?}",
        report.failures(),
        report.error_samples
    );
    assert_eq!(c.connections_established, 1000);
    assert_eq!(c.h2_connections, 10, "{c:?}");
    assert_eq!(report.histograms.get(Metric::Tls).len(), 10);
    assert_eq!((c.lost(), c.gaps, c.duplicates), (0, 0, 0));
    // What the server says it sent on the notification streams is what loadgen received.
    let sent = series(
        &report.server_after,
        "rt_messages_sent_total",
        "notifications",
    ) - series(
        &report.server_before,
        "rt_messages_sent_total",
        "notifications",
    );
    assert!(c.messages_received > 0);
    assert_eq!(
        sent, c.messages_received as f64,
        "server sent vs loadgen received"
    );
    let accepted = series(
        &report.server_after,
        "rt_connections_accepted_total",
        "notifications",
    );
    assert_eq!(accepted, 1000.0);
    server.shutdown(std::time::Duration::from_secs(2)).await;
}
