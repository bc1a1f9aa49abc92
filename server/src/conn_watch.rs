//! Every plain-HTTP connection's protection and accounting, through salvo's fuse: the
//! request-head timeout (slowloris) and the write-stall timeout (a client that stopped
//! reading; WebSockets are exempt, salvo relaxes it on upgrade: they have their own
//! heartbeat), and a count of the connections that ended before the server wrote a byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use salvo::async_trait;
use salvo::conn::ConnCtrl;
use salvo::fuse::{ArcConnObserver, ConnObserver, FuseAction, FuseConfig, FuseInfo, FusePolicy};

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// The fuse policy: the same timeouts for every connection, and an observer on each.
#[derive(Debug)]
pub(crate) struct ConnWatch {
    fuse: FuseConfig,
    metrics: Arc<Metrics>,
}

impl ConnWatch {
    /// The header and write-stall timeouts of `config`; unanswered connections counted in
    /// `metrics`.
    pub(crate) fn new(config: &ServerConfig, metrics: Arc<Metrics>) -> Self {
        let fuse = FuseConfig::default()
            .with_http1_header_timeout(config.header_timeout)
            .with_write_stall_timeout(config.write_stall_timeout);
        Self { fuse, metrics }
    }
}

#[async_trait]
impl FusePolicy for ConnWatch {
    async fn decide(&self, _info: &FuseInfo) -> FuseAction {
        FuseAction::Accept(self.fuse)
    }

    fn observe(&self, _info: &FuseInfo, _ctrl: &ConnCtrl) -> Option<ArcConnObserver> {
        Some(Arc::new(Traffic {
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            metrics: Arc::clone(&self.metrics),
        }))
    }
}

/// Bytes one connection read and wrote; counts it as unanswered when it ends with none
/// written.
struct Traffic {
    read: AtomicU64,
    written: AtomicU64,
    metrics: Arc<Metrics>,
}

impl ConnObserver for Traffic {
    fn on_read(&self, bytes: usize) {
        self.read.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn on_write(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        if self.written.load(Ordering::Relaxed) == 0 {
            self.metrics
                .unanswered(self.read.load(Ordering::Relaxed) > 0);
        }
    }
}
