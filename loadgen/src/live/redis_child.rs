//! `[server] redis = "spawn"`: a `redis-server` from `PATH` that loadgen starts for the
//! bundled instances' backplane, on a free loopback port, without persistence (nothing is
//! written to disk), and stops after the run.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use crate::live::target::TargetError;

/// The executable looked up on `PATH`.
const EXE: &str = "redis-server";

/// How long it may take to answer `PING` after starting.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Ports tried when the one picked was taken by someone else in the meantime.
const PORT_ATTEMPTS: u32 = 3;

/// A running `redis-server` of this run.
#[derive(Debug)]
pub(crate) struct SpawnedRedis {
    child: Option<Child>,
    port: u16,
}

impl SpawnedRedis {
    /// Starts one on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    /// [`TargetError::Start`] naming the package when `redis-server` is not on `PATH`, or
    /// why it did not come up.
    pub(crate) async fn start() -> Result<Self, TargetError> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut this = Self { child: None, port };
            match this.restart().await {
                Ok(()) => return Ok(this),
                Err(TargetError::Start(why)) if why.contains("exited") => last = why,
                Err(e) => return Err(e),
            }
        }
        Err(TargetError::Start(last))
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its pid while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Waits until it exits; never returns once it was taken.
    pub(crate) async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        match &mut self.child {
            Some(child) => child.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Starts it (again) on its port, empty, and waits until it answers `PING`.
    ///
    /// # Errors
    /// [`TargetError::Start`]: not on `PATH`, exited at once (its port was taken), or silent
    /// for [`START_DEADLINE`].
    pub(crate) async fn restart(&mut self) -> Result<(), TargetError> {
        if let Some(mut old) = self.child.take() {
            let _ = old.kill().await;
        }
        let port = self.port.to_string();
        let mut child = Command::new(EXE)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TargetError::Start(if e.kind() == ErrorKind::NotFound {
                    format!(
                        "[server] redis = \"spawn\" needs `{EXE}` on PATH (Debian/Ubuntu: \
                         apt-get install redis-server), or set redis = \"redis://HOST:PORT\""
                    )
                } else {
                    format!("cannot run {EXE}: {e}")
                })
            })?;
        let started = Instant::now();
        while started.elapsed() < START_DEADLINE {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(TargetError::Start(format!(
                    "{EXE} on port {port} exited at once ({status})"
                )));
            }
            if ping(self.port).await {
                self.child = Some(child);
                return Ok(());
            }
            sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill().await;
        Err(TargetError::Start(format!(
            "{EXE} on port {port} did not answer PING within {} s",
            START_DEADLINE.as_secs()
        )))
    }

    /// Stops it with SIGKILL (it keeps nothing worth a clean shutdown) and waits.
    pub(crate) async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A loopback port free right now.
fn free_port() -> Result<u16, TargetError> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TargetError::Start(format!("no free loopback port for {EXE}: {e}")))
}

/// Whether a Redis answers `PING` on `127.0.0.1:port` within a second.
async fn ping(port: u16) -> bool {
    let work = async {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 7];
        s.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"+PONG\r\n")
    };
    timeout(Duration::from_secs(1), work)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
