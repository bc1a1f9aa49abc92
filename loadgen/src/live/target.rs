//! The target server: the bundled one as a child process, or a remote server (any URL).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};

use crate::live::transport::{Alpn, Connector, Endpoint, ResolveError, tcp_connect_from};

/// The line `loadgen serve` prints on stdout once it listens: `LISTENING <addr>`.
pub const LISTENING: &str = "LISTENING";

/// Largest `/healthz` or `/metrics` body read, in bytes.
const MAX_PROBE_BODY: usize = 8 << 20;

/// How long the bundled server may take to start and answer `/healthz`.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Failures reaching or running the target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The bundled server could not be started.
    #[error("cannot start the bundled server: {0}")]
    Start(String),
    /// The target does not answer.
    #[error("target {addr} is unreachable: {reason}")]
    Unreachable {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// A target's host name does not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// A running target.
#[derive(Debug)]
pub struct Target {
    probe: Probe,
    child: Option<Child>,
    /// How the bundled server was started (to start it again on the same address).
    command: Option<(PathBuf, Vec<String>)>,
}

impl Target {
    /// A server someone else runs, at `endpoint` (whose addresses were checked to accept TCP;
    /// TLS and HTTP failures show per connection, with their causes).
    pub(crate) fn remote(endpoint: Arc<Endpoint>, connector: Connector) -> Self {
        Self {
            probe: Probe {
                endpoint,
                connector,
            },
            child: None,
            command: None,
        }
    }

    /// The handle that scrapes and checks it.
    pub(crate) fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Starts `exe serve --listen 127.0.0.1:0 <args>` and waits until it answers `/healthz`.
    ///
    /// # Errors
    /// [`TargetError::Start`] when it does not start or listen in time.
    pub(crate) async fn spawn(
        exe: &Path,
        args: &[String],
        connector: Connector,
    ) -> Result<Self, TargetError> {
        let (child, addr) = start_child(exe, args, "127.0.0.1:0").await?;
        let target = Self {
            probe: Probe {
                endpoint: Arc::new(Endpoint::at(addr)),
                connector,
            },
            child: Some(child),
            command: Some((exe.to_owned(), args.to_owned())),
        };
        target.wait_healthy().await?;
        Ok(target)
    }

    /// Waits until the bundled server exits and returns how; never returns for a remote
    /// target (or once the child was taken).
    pub(crate) async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        match &mut self.child {
            Some(child) => child.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Starts the bundled server again, on the address it had, and waits until it answers
    /// `/healthz`.
    ///
    /// # Errors
    /// [`TargetError::Start`] when this is no bundled server or it does not come back.
    pub(crate) async fn restart(&mut self) -> Result<(), TargetError> {
        let Some((exe, args)) = &self.command else {
            return Err(TargetError::Start(
                "a remote target is not ours to restart".to_owned(),
            ));
        };
        let listen = self.probe.endpoint.addr_for(0).to_string();
        let (child, _) = start_child(exe, args, &listen).await?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    /// Polls `/healthz` until it answers 200 and is not `degraded` (an instance over Redis
    /// whose backplane is not connected yet would miss broadcasts).
    ///
    /// # Errors
    /// [`TargetError::Unreachable`] after the start deadline.
    async fn wait_healthy(&self) -> Result<(), TargetError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < START_DEADLINE {
            match self.probe.get("/healthz").await {
                Ok((200, body)) if body.starts_with(b"degraded") => {
                    last =
                        "/healthz says degraded: its Redis backplane is not connected".to_owned();
                }
                Ok((200, _)) => return Ok(()),
                Ok((status, _)) => last = format!("/healthz answered {status}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TargetError::Unreachable {
            addr: self.probe.endpoint.addr_for(0),
            reason: last,
        })
    }

    /// The child's pid (bundled server only).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops the bundled server with SIGTERM (SIGKILL after 10 s); nothing for a remote one.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            tracing::warn!("bundled server ignored SIGTERM; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Starts `exe serve --listen <listen> <args>`; returns it and the address it reports.
async fn start_child(
    exe: &Path,
    args: &[String],
    listen: &str,
) -> Result<(Child, SocketAddr), TargetError> {
    let mut child = Command::new(exe)
        .arg("serve")
        .arg(format!("--listen={listen}"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TargetError::Start(format!("{}: {e}", exe.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| TargetError::Start("no stdout".to_owned()))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = timeout(START_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix(LISTENING) {
                return addr.trim().parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| TargetError::Start("it exited or never reported its address".to_owned()))?;
    Ok((child, addr))
}

/// Where the target is and how to reach it: `GET`s `/healthz` and `/metrics` over the same
/// transport as the load (TLS for https). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    endpoint: Arc<Endpoint>,
    connector: Connector,
}

impl Probe {
    /// The target's endpoint (URL and addresses).
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// A fresh HTTP/1.1 connection to the first address (its driver runs as a task).
    async fn http1(&self) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
        let opened = self
            .connector
            .open(
                &self.endpoint.url,
                self.endpoint.addr_for(0),
                None,
                Alpn::Http1,
            )
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(opened.stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// `GET path` on a fresh connection to the first address; returns status and body.
    ///
    /// # Errors
    /// A description of the failure.
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Bytes), String> {
        let work = async {
            let url = &self.endpoint.url;
            let mut sender = self.http1().await?;
            let req = hyper::Request::get(path)
                .header("host", url.host_header())
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            // A server that answers every path with its event stream must not hold a scrape.
            let streaming = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with(wire::sse::CONTENT_TYPE));
            if streaming {
                return Err(format!("GET {path} answered with an event stream"));
            }
            let body = http_body_util::Limited::new(res.into_body(), MAX_PROBE_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        timeout(Duration::from_secs(10), work)
            .await
            .map_err(|_| format!("GET {path} timed out"))?
    }

    /// Estimates this machine's clock offset against the target's (NTP-style): `rounds`
    /// `GET /healthz` on one kept-alive connection, each timed from just before the request
    /// to its answer; the answer's [`wire::SERVER_TIME_HEADER`] minus the midpoint is the
    /// offset, and the round with the shortest round trip wins (its error is at most half its
    /// round trip). `None` when the target sends no such header (not the bundled server).
    pub(crate) async fn clock_offset(&self, rounds: u32) -> Option<ClockOffset> {
        let work = async {
            let url = &self.endpoint.url;
            let mut sender = self.http1().await.ok()?;
            let mut best: Option<ClockOffset> = None;
            for _ in 0..rounds {
                let req = hyper::Request::get("/healthz")
                    .header("host", url.host_header())
                    .body(Empty::<Bytes>::new())
                    .ok()?;
                sender.ready().await.ok()?;
                let sent = wire::now_unix_us();
                let res = sender.send_request(req).await.ok()?;
                let answered = wire::now_unix_us();
                let server: u64 = res
                    .headers()
                    .get(wire::SERVER_TIME_HEADER)?
                    .to_str()
                    .ok()?
                    .parse()
                    .ok()?;
                let _ = res.into_body().collect().await;
                let sample = ClockOffset::from_round(sent, server, answered);
                if best.is_none_or(|b| sample.rtt_us < b.rtt_us) {
                    best = Some(sample);
                }
            }
            best
        };
        timeout(Duration::from_secs(10), work).await.ok().flatten()
    }

    /// Scrapes `/metrics` into `series -> value` (Prometheus text format); empty when the
    /// target has no such endpoint.
    pub(crate) async fn scrape(&self) -> BTreeMap<String, f64> {
        match self.get("/metrics").await {
            Ok((200, body)) => parse_metrics(&String::from_utf8_lossy(&body)),
            _ => BTreeMap::new(),
        }
    }

    /// Whether the first address accepts a TCP connection.
    pub(crate) async fn accepts(&self) -> bool {
        tcp_connect_from(self.endpoint.addr_for(0), None)
            .await
            .is_ok()
    }
}

/// This machine's clock against the target's, from one request/answer round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockOffset {
    /// Target clock minus this machine's clock, µs (positive: the target is ahead).
    pub offset_us: i64,
    /// The round trip the estimate came from, µs: the offset is true within half of it.
    pub rtt_us: u64,
}

impl ClockOffset {
    /// From a round sent at `sent`, answered at `answered` (this clock) with the target's
    /// time `server`, all Unix µs.
    #[must_use]
    pub fn from_round(sent: u64, server: u64, answered: u64) -> Self {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let midpoint = as_i64(sent) + as_i64(answered.saturating_sub(sent)) / 2;
        Self {
            offset_us: as_i64(server) - midpoint,
            rtt_us: answered.saturating_sub(sent),
        }
    }
}

/// Parses Prometheus text exposition lines (`name{labels} value`).
#[must_use]
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_offset_is_server_time_minus_the_round_s_midpoint() {
        // Sent at 1,000, answered at 1,400: midpoint 1,200; the server said 1,500.
        assert_eq!(
            ClockOffset::from_round(1_000, 1_500, 1_400),
            ClockOffset {
                offset_us: 300,
                rtt_us: 400
            }
        );
        // A server behind this clock.
        assert_eq!(ClockOffset::from_round(1_000, 900, 1_200).offset_us, -200);
    }

    #[test]
    fn prometheus_lines_parse() {
        let m = parse_metrics(
            "# HELP x y\nrt_open{a=\"b c\"} 3\nprocess_resident_memory_bytes 1e6\nbroken\n",
        );
        assert_eq!(m.get("rt_open{a=\"b c\"}"), Some(&3.0));
        assert_eq!(m.get("process_resident_memory_bytes"), Some(&1e6));
        assert_eq!(m.len(), 2);
    }
}
