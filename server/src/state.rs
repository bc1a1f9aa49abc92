//! What every handler shares, one per server (no global state). Its own module so that the
//! `http` handlers depend on the state, not on the router module that mounts them.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sse::chat::ChatHub;
use crate::sse::replay::ReplayHub;
use crate::ws::groups::Groups;

/// Everything handlers share. One per server; no global state.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limiter: Arc<ConnectionLimiter>,
    pub(crate) trigger: ShutdownTrigger,
    pub(crate) shutdown: Shutdown,
    pub(crate) sse_chat: Arc<ChatHub>,
    pub(crate) notifications: Arc<ReplayHub>,
    pub(crate) replay: Arc<ReplayHub>,
    /// The Redis backplane (`--redis-url`), shared by every instance; `None`: alone.
    pub(crate) backplane: Option<Arc<crate::backplane::Backplane>>,
    pub(crate) ws_chat: Arc<Groups>,
    pub(crate) rooms: Arc<Groups>,
    pub(crate) pubsub: Arc<Groups>,
}
