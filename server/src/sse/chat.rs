//! SSE chat: each stream is a user; `POST /sse/chat/{user}` broadcasts to every other user.
//!
//! Users are registered while their stream is alive and removed when it is dropped, which
//! happens as soon as hyper sees the client disconnect.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{EventSource, Initial, encode};
use crate::metrics::ScenarioMetrics;

struct Line {
    from: u64,
    event: bytes::Bytes,
}

/// Users and the broadcast channel between them.
#[derive(Debug)]
pub(crate) struct ChatHub {
    tx: broadcast::Sender<Arc<Line>>,
    users: Mutex<HashSet<u64>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Why a chat post was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PostError {
    /// No connected user has this id.
    UnknownUser,
}

impl ChatHub {
    pub(crate) fn new(queue: usize) -> Self {
        Self {
            tx: broadcast::channel(queue).0,
            users: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Registers a new user; returns its stream source and the initial `user` event.
    pub(crate) fn join(self: &Arc<Self>, metrics: Arc<ScenarioMetrics>) -> (ChatStream, Initial) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self.tx.subscribe();
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        let hello = encode(Some("user"), None, &format!("{{\"id\":{id}}}"));
        let stream = ChatStream {
            hub: Arc::clone(self),
            id,
            rx,
            metrics,
        };
        let initial = Initial {
            bytes: hello,
            events: 1,
        };
        (stream, initial)
    }

    /// Broadcasts `data` (a JSON object) from `from` to every other user; returns how many
    /// other users were connected.
    pub(crate) fn post(&self, from: u64, data: &str) -> Result<usize, PostError> {
        if !self
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&from)
        {
            return Err(PostError::UnknownUser);
        }
        let event = encode(Some("message"), None, data).into();
        let receivers = self
            .tx
            .send(Arc::new(Line { from, event }))
            .unwrap_or_default();
        Ok(receivers.saturating_sub(1))
    }
}

/// One user's stream.
#[derive(Debug)]
pub(crate) struct ChatStream {
    hub: Arc<ChatHub>,
    id: u64,
    rx: broadcast::Receiver<Arc<Line>>,
    metrics: Arc<ScenarioMetrics>,
}

impl EventSource for ChatStream {
    async fn next_event(&mut self) -> Option<bytes::Bytes> {
        loop {
            match self.rx.recv().await {
                Ok(line) if line.from == self.id => {}
                Ok(line) => return Some(line.event.clone()),
                Err(RecvError::Lagged(n)) => {
                    self.metrics.lagged(n);
                    return Some(
                        encode(Some("lagged"), None, &format!("{{\"missed\":{n}}}")).into(),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        self.hub
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}
