//! SSE chat: each stream is a user; `POST /sse/chat/{user}` broadcasts to every other user.
//!
//! Users are registered while their stream is alive and removed when it is dropped, which
//! happens as soon as hyper sees the client disconnect.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

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
    /// Set when instances share the chat (`--redis-url`): posts and leaves go to the
    /// backplane; posts come back to every instance through [`ChatHub::deliver_shared`].
    uplink: OnceLock<mpsc::Sender<ChatUp>>,
}

/// What the chat sends up to the backplane.
#[derive(Debug)]
pub(crate) enum ChatUp {
    /// A post of `from` (a JSON object) for every other user on every instance.
    Post { from: u64, data: String },
    /// User `id`'s stream ended.
    Leave(u64),
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
    /// The backplane's queue is full: the post was not taken.
    Backplane,
}

impl ChatHub {
    pub(crate) fn new(queue: usize) -> Self {
        Self {
            tx: broadcast::channel(queue).0,
            users: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
            uplink: OnceLock::new(),
        }
    }

    /// From now on posts and leaves go to `uplink` (the backplane).
    pub(crate) fn set_uplink(&self, uplink: mpsc::Sender<ChatUp>) {
        let _ = self.uplink.set(uplink);
    }

    /// Whether user `id` has a stream on this instance.
    pub(crate) fn is_here(&self, id: u64) -> bool {
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }

    /// Registers a new user; returns its stream source and the initial `user` event.
    pub(crate) fn join(self: &Arc<Self>, metrics: Arc<ScenarioMetrics>) -> (ChatStream, Initial) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.join_as(id, metrics)
    }

    /// Registers user `id` (unique over every instance: the backplane hands ids out).
    pub(crate) fn join_as(
        self: &Arc<Self>,
        id: u64,
        metrics: Arc<ScenarioMetrics>,
    ) -> (ChatStream, Initial) {
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
    /// other users were connected (with a backplane: on this instance; the caller has checked
    /// that `from` is connected somewhere).
    pub(crate) fn post(&self, from: u64, data: &str) -> Result<usize, PostError> {
        if let Some(uplink) = self.uplink.get() {
            let here = self
                .tx
                .receiver_count()
                .saturating_sub(usize::from(self.is_here(from)));
            let post = ChatUp::Post {
                from,
                data: data.to_owned(),
            };
            return if uplink.try_send(post).is_ok() {
                Ok(here)
            } else {
                Err(PostError::Backplane)
            };
        }
        if !self.is_here(from) {
            return Err(PostError::UnknownUser);
        }
        Ok(self.deliver_shared(from, data).saturating_sub(1))
    }

    /// Broadcasts a post (from the backplane, or local) to every user here but `from`;
    /// returns the streams reached, `from`'s included.
    pub(crate) fn deliver_shared(&self, from: u64, data: &str) -> usize {
        let event = encode(Some("message"), None, data).into();
        self.tx
            .send(Arc::new(Line { from, event }))
            .unwrap_or_default()
    }

    /// Tells every user here that `n` posts were lost on the backplane (a `lagged` event).
    pub(crate) fn missed(&self, n: u64) {
        let event = encode(Some("lagged"), None, &format!("{{\"missed\":{n}}}")).into();
        let _ = self.tx.send(Arc::new(Line { from: 0, event }));
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
        if let Some(uplink) = self.hub.uplink.get() {
            let _ = uplink.try_send(ChatUp::Leave(self.id));
        }
    }
}
