//! The application: its state ([`crate::state`]) and the router that serves every scenario.

use std::sync::Arc;

use salvo::prelude::*;

use crate::config::{ConfigError, ServerConfig};
use crate::http::{common, pages, sse, ws};
use crate::limits::ConnectionLimiter;
use crate::metrics::{Metrics, Scenario};
use crate::shutdown;
use crate::sse::chat::ChatHub;
use crate::sse::replay::ReplayHub;
use crate::state::AppState;
use crate::ws::groups::Groups;

/// The target server application: state plus router.
#[derive(Debug, Clone)]
pub struct App {
    state: Arc<AppState>,
}

impl App {
    /// Builds the application.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration is out of range.
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let (trigger, shutdown) = shutdown::channel();
        let queue = config.client_queue;
        let backplane = match &config.redis_url {
            Some(url) => Some(Arc::new(crate::backplane::Backplane::new(url).map_err(
                |_| ConfigError {
                    field: "redis_url",
                    problem: "is not a Redis URL (redis://HOST:PORT)",
                },
            )?)),
            None => None,
        };
        let state = AppState {
            limiter: Arc::new(ConnectionLimiter::new(config.max_connections)),
            trigger,
            shutdown,
            sse_chat: Arc::new(ChatHub::new(queue)),
            notifications: Arc::new(ReplayHub::new(
                Some("notification"),
                config.replay_capacity,
                queue,
            )),
            replay: Arc::new(ReplayHub::new(None, config.replay_capacity, queue)),
            backplane,
            ws_chat: Arc::new(Groups::new(metrics.scenario(Scenario::WsChat))),
            rooms: Arc::new(Groups::new(metrics.scenario(Scenario::Rooms))),
            pubsub: Arc::new(Groups::new(metrics.scenario(Scenario::PubSub))),
            metrics,
            config,
        };
        Ok(Self {
            state: Arc::new(state),
        })
    }

    /// The server's counters.
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.state.metrics)
    }

    /// The server-wide connection limiter.
    #[must_use]
    pub fn limiter(&self) -> &ConnectionLimiter {
        &self.state.limiter
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.state.config
    }

    /// A receiver of the shutdown signal (what [`Self::begin_shutdown`] sends).
    pub(crate) fn shutdown(&self) -> crate::shutdown::Shutdown {
        self.state.shutdown.clone()
    }

    /// With a backplane, starts one reader per shared stream and an uplink per group hub
    /// (they end at shutdown).
    pub(crate) fn start_backplane(&self) {
        let Some(backplane) = &self.state.backplane else {
            return;
        };
        let capacity = self.state.config.replay_capacity;
        for (name, hub) in [
            ("notifications", &self.state.notifications),
            ("replay", &self.state.replay),
        ] {
            let sink: Arc<dyn crate::backplane::Sink> = Arc::clone(hub) as _;
            tokio::spawn(Arc::clone(backplane).follow(name, sink, capacity, self.shutdown()));
        }
        let shutdown = self.shutdown();
        backplane.share_groups("ws_chat", &self.state.ws_chat, &shutdown);
        backplane.share_groups("rooms", &self.state.rooms, &shutdown);
        backplane.share_groups("pubsub", &self.state.pubsub, &shutdown);
        backplane.share_chat(&self.state.sse_chat, &shutdown);
    }

    /// Ends every SSE stream and sends Close 1001 to every WebSocket; new streams end at once.
    pub fn begin_shutdown(&self) {
        self.state.trigger.trigger();
    }

    /// The router serving every scenario (the combined router).
    #[must_use]
    pub fn router(&self) -> Router {
        let guarded = Router::new()
            .hoop(common::RequireToken)
            .push(Router::with_path("sse/counter").get(sse::counter))
            .push(Router::with_path("sse/chat").get(sse::chat_connect))
            .push(Router::with_path("sse/chat/{user}").post(sse::chat_post))
            .push(Router::with_path("sse/stocks").get(sse::stocks))
            .push(
                Router::with_path("sse/notifications")
                    .get(sse::notifications)
                    .post(sse::notifications_publish),
            )
            .push(
                Router::with_path("sse/replay")
                    .get(sse::replay)
                    .post(sse::replay_publish),
            )
            .push(Router::with_path("sse/metrics").get(sse::dashboard))
            .push(Router::with_path("ws/echo").get(ws::echo))
            .push(Router::with_path("ws/chat").get(ws::chat))
            .push(Router::with_path("ws/rooms").get(ws::rooms))
            .push(Router::with_path("ws/pubsub").get(ws::pubsub))
            .push(Router::with_path("publish/{topic}").post(ws::publish));
        Router::new()
            .hoop(common::InjectState(Arc::clone(&self.state)))
            .get(pages::index)
            .push(Router::with_path("healthz").get(pages::healthz))
            .push(Router::with_path("metrics").get(pages::metrics))
            .push(Router::with_path("pages/{name}").get(pages::page))
            .push(guarded)
    }
}

/// The combined router for `config` (shorthand for `App::new(config)?.router()`).
///
/// # Errors
/// [`ConfigError`] when the configuration is out of range.
pub fn router(config: ServerConfig) -> Result<Router, ConfigError> {
    Ok(App::new(config)?.router())
}
