//! The Redis backplane (`--redis-url`): several instances share the notifications and replay
//! streams, WebSocket chat, rooms and pub/sub through Redis Streams, so a publisher on one
//! instance reaches subscribers on every other, and event ids are the same everywhere (a
//! client resumes with `Last-Event-ID` on any instance). Group messages (chat, rooms,
//! pub/sub) go up through a bounded queue and come back to every instance, the sender's
//! included, which leaves the sender out; they are live only (no backfill).
//!
//! Publishing runs one Lua script: `INCR` the stream's counter and `XADD` the event under the
//! id `<n>-1`, trimmed to about the replay capacity: ids are dense and in order across
//! instances. Each instance runs one reader per stream (never one per client): it backfills
//! its replay ring from the stream's tail, then follows it with a blocking `XREAD` and hands
//! each entry to the local hub, which fans it out. When Redis goes away the reader marks the
//! instance degraded (`/healthz`), reconnects with exponential backoff and jitter, and reads on
//! from the last id it has: entries trimmed meanwhile reach live subscribers as a `lost`
//! notice. Counters: `rt_backplane_*` in `/metrics`.
//!
//! Crate: redis-rs (`redis`, tokio support): streams and scripts as plain commands, a
//! multiplexed connection per use with explicit timeouts, no background tasks of its own; its
//! extra build is `url` and a few small crates (~35 s here), less than fred's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands as _, AsyncConnectionConfig, Client, Script};
use tokio::sync::Mutex;

use crate::shutdown::Shutdown;
use crate::sse::chat::{ChatHub, ChatUp};
use crate::sse::replay::ReplayHub;
use crate::ws::groups::{Groups, Shared};

/// How long one `XREAD` blocks waiting for entries, ms.
const BLOCK_MS: usize = 1000;
/// Entries read per `XREAD`.
const READ_BATCH: usize = 512;
/// Reconnection delays: the first, and the cap (before jitter).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

const PUBLISH: &str = r"
local id = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id .. '-1', unpack(ARGV, 2))
return id
";

/// Entries kept in a group hub's stream (WS chat, rooms, pub/sub): a reader cut off for
/// longer than this many messages reports the rest as lost.
const GROUP_STREAM_CAPACITY: usize = 10_000;

/// Group messages queued for publishing per hub before new ones are dropped (counted).
pub(crate) const UPLINK_QUEUE: usize = 4096;

/// Raises the id counter to at least ARGV[1]: a Redis that lost its data (restarted without
/// persistence) must not hand out ids the instances already used.
const RESEED: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return cur
";

/// Errors of the backplane.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// The URL is not a Redis URL.
    #[error("invalid --redis-url: {0}")]
    Url(String),
    /// Redis did not answer or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The host and port of `url`, a Redis URL the backplane accepts (`redis://HOST:PORT[/DB]`,
/// port 6379 when left out), without connecting.
///
/// # Errors
/// [`BackplaneError::Url`] naming what is wrong (not a Redis URL, or not a TCP address).
pub fn tcp_address(url: &str) -> Result<(String, u16), BackplaneError> {
    let client = Client::open(url).map_err(|e| BackplaneError::Url(e.to_string()))?;
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => Ok((host.clone(), *port)),
        _ => Err(BackplaneError::Url(format!("{url} is not a TCP address"))),
    }
}

/// One instance's link to Redis.
#[derive(Debug)]
pub struct Backplane {
    client: Client,
    /// The publishing connection, opened on first use and dropped on error.
    publisher: Mutex<Option<MultiplexedConnection>>,
    script: Script,
    reseed: Script,
    /// Readers started, and those connected now: up when all are.
    readers: AtomicU64,
    readers_up: AtomicU64,
    /// Events this instance published through Redis.
    pub(crate) published: AtomicU64,
    /// Entries this instance's readers received.
    pub(crate) received: AtomicU64,
    /// Reconnections after Redis went away.
    pub(crate) reconnects: AtomicU64,
    /// Events trimmed before a reader got them (announced to clients as `lost`).
    pub(crate) missed: AtomicU64,
    /// Group messages that could not be published (Redis away): lost, counted here.
    pub(crate) publish_errors: AtomicU64,
    /// This instance's token: group messages carry it with their sender.
    instance: u64,
}

/// What a reader hands stream entries to.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Takes entry `id`; returns how many ids were missed before it (`None`: already held).
    fn take(&self, id: u64, entry: &StreamId) -> Option<u64>;
    /// Whether a fresh reader hands it the stream's tail first (replay rings) or starts
    /// after it (group messages are live only).
    fn backfills(&self) -> bool;
}

impl Sink for ReplayHub {
    fn take(&self, id: u64, entry: &StreamId) -> Option<u64> {
        let Some(event) = Entry::of(entry) else {
            tracing::warn!(id = %entry.id, "backplane entry without b/f fields; skipped");
            return None;
        };
        self.deliver(id, |id| event.data(id))
    }

    fn backfills(&self) -> bool {
        true
    }
}

/// The SSE chat fed by the backplane.
struct ChatSink {
    hub: Arc<ChatHub>,
    last: AtomicU64,
}

impl Sink for ChatSink {
    fn take(&self, id: u64, entry: &StreamId) -> Option<u64> {
        let last = self.last.swap(id.max(self.last.load(Relaxed)), Relaxed);
        if id <= last {
            return None;
        }
        let missed = if last == 0 { 0 } else { id - last - 1 };
        if missed > 0 {
            self.hub.missed(missed);
        }
        match (entry.get::<u64>("u"), entry.get::<String>("m")) {
            (Some(from), Some(data)) => {
                self.hub.deliver_shared(from, &data);
            }
            _ => tracing::warn!(id = %entry.id, "backplane chat entry without u/m; skipped"),
        }
        Some(missed)
    }

    fn backfills(&self) -> bool {
        false
    }
}

/// A group hub (WS chat, rooms, pub/sub) fed by the backplane.
struct GroupSink {
    groups: Arc<Groups>,
    instance: u64,
    last: AtomicU64,
}

impl Sink for GroupSink {
    fn take(&self, id: u64, entry: &StreamId) -> Option<u64> {
        let last = self.last.load(Relaxed);
        if id <= last {
            return None;
        }
        self.last.store(id, Relaxed);
        let missed = if last == 0 { 0 } else { id - last - 1 };
        if missed > 0 {
            self.groups.missed_everywhere(missed);
        }
        let (Some(group), Some(from), Some(message)) = (
            entry.get::<String>("g"),
            entry.get::<String>("x"),
            entry.get::<String>("m"),
        ) else {
            tracing::warn!(id = %entry.id, "backplane group entry without g/x/m; skipped");
            return Some(missed);
        };
        // The sender is left out only on its own instance.
        let except = from
            .split_once(':')
            .filter(|(instance, _)| instance.parse() == Ok(self.instance))
            .and_then(|(_, client)| client.parse().ok());
        self.groups
            .deliver_shared(&group, except, &Arc::from(message.as_str()));
        Some(missed)
    }

    fn backfills(&self) -> bool {
        false
    }
}

/// What a published event becomes on every instance: the stored body and whether `seq` is to
/// be filled with the event id.
pub(crate) struct Entry {
    pub(crate) body: String,
    pub(crate) fill_seq: bool,
}

impl Entry {
    /// The event data for id `id`.
    pub(crate) fn data(&self, id: u64) -> String {
        if !self.fill_seq {
            return self.body.clone();
        }
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&self.body) {
            Ok(mut object) => {
                object.insert("seq".to_owned(), id.into());
                serde_json::Value::Object(object).to_string()
            }
            Err(_) => self.body.clone(),
        }
    }

    fn of(entry: &StreamId) -> Option<Self> {
        let body: String = entry.get("b")?;
        let fill: String = entry.get("f")?;
        Some(Self {
            body,
            fill_seq: fill == "1",
        })
    }
}

impl Backplane {
    /// A backplane at `url` (`redis://host:port[/db]`); connects on first use.
    ///
    /// # Errors
    /// [`BackplaneError::Url`] for a URL redis-rs does not accept.
    pub fn new(url: &str) -> Result<Self, BackplaneError> {
        let client = Client::open(url).map_err(|e| BackplaneError::Url(e.to_string()))?;
        Ok(Self {
            client,
            publisher: Mutex::new(None),
            script: Script::new(PUBLISH),
            reseed: Script::new(RESEED),
            readers: AtomicU64::new(0),
            readers_up: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            instance: instance_token(),
        })
    }

    /// Whether every reader is connected (else `/healthz` says `degraded`).
    pub fn is_up(&self) -> bool {
        let readers = self.readers.load(Relaxed);
        readers > 0 && self.readers_up.load(Relaxed) == readers
    }

    async fn connect(
        &self,
        response_timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Publishes `entry` on stream `name`, trimmed to about `capacity` entries; returns its
    /// id (the same on every instance).
    ///
    /// # Errors
    /// Redis is unreachable or refused the script.
    pub(crate) async fn publish(
        &self,
        name: &str,
        capacity: usize,
        entry: &Entry,
    ) -> Result<u64, BackplaneError> {
        let fill = if entry.fill_seq { "1" } else { "0" };
        self.publish_fields(name, capacity, &["b", entry.body.as_str(), "f", fill])
            .await
    }

    /// Shares the group hub `groups` under `name`: its messages are published from a queue
    /// of [`UPLINK_QUEUE`] and every instance's reader delivers them. Spawns both tasks.
    pub(crate) fn share_groups(
        self: &Arc<Self>,
        name: &'static str,
        groups: &Arc<Groups>,
        shutdown: &Shutdown,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(UPLINK_QUEUE);
        groups.set_uplink(tx);
        tokio::spawn(Arc::clone(self).uplink(name, Arc::clone(groups), rx, shutdown.clone()));
        let sink = Arc::new(GroupSink {
            groups: Arc::clone(groups),
            instance: self.instance,
            last: AtomicU64::new(0),
        });
        tokio::spawn(Arc::clone(self).follow(name, sink, GROUP_STREAM_CAPACITY, shutdown.clone()));
    }

    /// Shares the SSE chat: posts and leaves go up from a queue of [`UPLINK_QUEUE`], every
    /// instance's reader delivers the posts. Spawns both tasks.
    pub(crate) fn share_chat(self: &Arc<Self>, hub: &Arc<ChatHub>, shutdown: &Shutdown) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ChatUp>(UPLINK_QUEUE);
        hub.set_uplink(tx);
        let this = Arc::clone(self);
        let chat = Arc::clone(hub);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let up = tokio::select! {
                    () = stop.wait() => return,
                    up = rx.recv() => match up {
                        Some(up) => up,
                        None => return,
                    },
                };
                let done = match up {
                    ChatUp::Post { from, data } => {
                        let from = from.to_string();
                        let fields = ["u", from.as_str(), "m", data.as_str()];
                        let posted = this
                            .publish_fields("sse_chat", GROUP_STREAM_CAPACITY, &fields)
                            .await
                            .map(drop);
                        if posted.is_err() {
                            // This instance's users learn of the lost post.
                            chat.missed(1);
                        }
                        posted
                    }
                    ChatUp::Leave(id) => this.chat_leave(id).await,
                };
                if let Err(e) = done {
                    this.publish_errors.fetch_add(1, Relaxed);
                    tracing::debug!("chat update not published: {e}");
                }
            }
        });
        let sink = Arc::new(ChatSink {
            hub: Arc::clone(hub),
            last: AtomicU64::new(0),
        });
        tokio::spawn(Arc::clone(self).follow(
            "sse_chat",
            sink,
            GROUP_STREAM_CAPACITY,
            shutdown.clone(),
        ));
    }

    /// A chat user id unique over every instance, registered as online.
    ///
    /// # Errors
    /// Redis is away.
    pub(crate) async fn chat_join(&self) -> Result<u64, BackplaneError> {
        let mut conn = self.publisher_conn().await?;
        let id: u64 = conn.incr("rt:sse_chat:user_ids", 1).await?;
        let _: () = conn.sadd("rt:sse_chat:users", id).await?;
        Ok(id)
    }

    /// Whether chat user `id` holds a stream on some instance.
    ///
    /// # Errors
    /// Redis is away.
    pub(crate) async fn chat_user_exists(&self, id: u64) -> Result<bool, BackplaneError> {
        let mut conn = self.publisher_conn().await?;
        Ok(conn.sismember("rt:sse_chat:users", id).await?)
    }

    async fn chat_leave(&self, id: u64) -> Result<(), BackplaneError> {
        let mut conn = self.publisher_conn().await?;
        let _: () = conn.srem("rt:sse_chat:users", id).await?;
        Ok(())
    }

    /// The publishing connection, opened if needed.
    async fn publisher_conn(&self) -> Result<MultiplexedConnection, BackplaneError> {
        let mut slot = self.publisher.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.connect(Duration::from_secs(2)).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Publishes a group hub's queued messages until `shutdown`; one that cannot be
    /// published (Redis away) is dropped, counted, and this instance's members of its group
    /// are told (`lagged`); other instances' members cannot know of it.
    async fn uplink(
        self: Arc<Self>,
        name: &'static str,
        groups: Arc<Groups>,
        mut rx: tokio::sync::mpsc::Receiver<Shared>,
        mut shutdown: Shutdown,
    ) {
        loop {
            let shared = tokio::select! {
                () = shutdown.wait() => return,
                shared = rx.recv() => match shared {
                    Some(shared) => shared,
                    None => return,
                },
            };
            let from = shared
                .except
                .map_or_else(String::new, |client| format!("{}:{client}", self.instance));
            let fields = [
                "g",
                shared.group.as_str(),
                "x",
                from.as_str(),
                "m",
                &shared.message,
            ];
            if let Err(e) = self
                .publish_fields(name, GROUP_STREAM_CAPACITY, &fields)
                .await
            {
                self.publish_errors.fetch_add(1, Relaxed);
                groups.missed_in(&shared.group, shared.except);
                tracing::debug!(stream = name, "group message not published: {e}");
            }
        }
    }

    async fn publish_fields(
        &self,
        name: &str,
        capacity: usize,
        fields: &[&str],
    ) -> Result<u64, BackplaneError> {
        let mut conn = self.publisher_conn().await?;
        let result: redis::RedisResult<u64> = self
            .script
            .key(stream_key(name))
            .key(format!("rt:{name}:seq"))
            .arg(capacity)
            .arg(fields)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok(id) => {
                self.published.fetch_add(1, Relaxed);
                Ok(id)
            }
            Err(e) => {
                *self.publisher.lock().await = None;
                Err(e.into())
            }
        }
    }

    /// Follows stream `name` into `sink` until `shutdown`: a backfilling sink first gets the
    /// stream's tail (at most `capacity` entries), another starts after it; then reads on,
    /// reconnecting with backoff and jitter whenever Redis goes away.
    pub(crate) async fn follow(
        self: Arc<Self>,
        name: &'static str,
        sink: Arc<dyn Sink>,
        capacity: usize,
        mut shutdown: Shutdown,
    ) {
        let key = stream_key(name);
        let mut last: Option<u64> = None;
        let mut failures: u32 = 0;
        let mut connected = false;
        self.readers.fetch_add(1, Relaxed);
        loop {
            let read = async {
                let mut conn = self
                    .connect(Duration::from_millis(BLOCK_MS as u64) + Duration::from_secs(2))
                    .await?;
                if last.is_none() {
                    let count = if sink.backfills() { capacity } else { 1 };
                    let tail: StreamRangeReply =
                        conn.xrevrange_count(&key, "+", "-", count).await?;
                    last = Some(0);
                    for entry in tail.ids.iter().rev() {
                        if sink.backfills() {
                            self.deliver(sink.as_ref(), entry, &mut last);
                        } else {
                            last = stream_number(&entry.id);
                        }
                    }
                }
                let known = last.unwrap_or(0);
                let _: u64 = self
                    .reseed
                    .key(format!("rt:{name}:seq"))
                    .arg(known)
                    .invoke_async(&mut conn)
                    .await?;
                connected = true;
                self.readers_up.fetch_add(1, Relaxed);
                failures = 0;
                loop {
                    let from = format!("{}-1", last.unwrap_or(0));
                    let options = StreamReadOptions::default()
                        .block(BLOCK_MS)
                        .count(READ_BATCH);
                    let reply: Option<StreamReadReply> =
                        conn.xread_options(&[&key], &[&from], &options).await?;
                    for stream in reply.map(|r| r.keys).unwrap_or_default() {
                        for entry in &stream.ids {
                            self.deliver(sink.as_ref(), entry, &mut last);
                        }
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), redis::RedisError>(())
            };
            let error = tokio::select! {
                () = shutdown.wait() => return,
                result = read => result.err(),
            };
            if std::mem::take(&mut connected) {
                self.readers_up.fetch_sub(1, Relaxed);
                tracing::warn!(stream = name, "backplane lost: {error:?}; reconnecting");
            }
            self.reconnects.fetch_add(1, Relaxed);
            let wait = backoff(failures, last.unwrap_or(0) ^ u64::from(failures));
            failures = failures.saturating_add(1);
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Its `/metrics` lines.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let up = u8::from(self.is_up());
        out.push_str(&format!(
            "# HELP rt_backplane_up 1 while every backplane reader is connected to Redis.\n# TYPE rt_backplane_up gauge\nrt_backplane_up {up}\n"
        ));
        for (name, help, value) in [
            (
                "published",
                "Events this instance published through Redis.",
                &self.published,
            ),
            (
                "received",
                "Stream entries this instance's readers received.",
                &self.received,
            ),
            (
                "reconnects",
                "Reconnection attempts after Redis went away.",
                &self.reconnects,
            ),
            (
                "missed",
                "Events trimmed before a reader got them (sent to clients as lost).",
                &self.missed,
            ),
            (
                "publish_errors",
                "Group messages not published because Redis was away (lost).",
                &self.publish_errors,
            ),
        ] {
            let v = value.load(Relaxed);
            out.push_str(&format!(
                "# HELP rt_backplane_{name}_total {help}\n# TYPE rt_backplane_{name}_total counter\nrt_backplane_{name}_total {v}\n"
            ));
        }
        out
    }

    fn deliver(&self, sink: &dyn Sink, entry: &StreamId, last: &mut Option<u64>) {
        self.received.fetch_add(1, Relaxed);
        let Some(id) = stream_number(&entry.id) else {
            tracing::warn!(id = %entry.id, "backplane entry with a foreign id; skipped");
            return;
        };
        if let Some(missed) = sink.take(id, entry) {
            self.missed.fetch_add(missed, Relaxed);
        }
        *last = Some(last.unwrap_or(0).max(id));
    }
}

/// The event number of a stream entry id `<n>-1`.
fn stream_number(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// A token telling this instance's group messages apart from other instances'.
fn instance_token() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
    (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1
}

/// The Redis key of stream `name`.
fn stream_key(name: &str) -> String {
    format!("rt:{name}:stream")
}

/// The wait after `failures` failed attempts: 100 ms doubling to 5 s, times 1 to 2 (jitter
/// from `seed`, so instances cut off together do not come back together).
fn backoff(failures: u32, seed: u64) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1 << failures.min(10))
        .min(BACKOFF_MAX);
    let mut x = seed
        .wrapping_add(u64::from(std::process::id()))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    base.mul_f64(1.0 + (x >> 11) as f64 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_up_to_as_much_again_of_jitter() {
        for (failures, base) in [(0, 100), (1, 200), (3, 800), (20, 5000)] {
            let wait = backoff(failures, 7);
            let base = Duration::from_millis(base);
            assert!(wait >= base && wait < 2 * base, "{failures}: {wait:?}");
        }
    }

    #[test]
    fn an_entry_fills_seq_only_when_asked() {
        let filled = Entry {
            body: r#"{"ts":5}"#.to_owned(),
            fill_seq: true,
        };
        assert_eq!(filled.data(9), r#"{"seq":9,"ts":5}"#);
        let kept = Entry {
            body: r#"{"seq":3,"ts":5}"#.to_owned(),
            fill_seq: false,
        };
        assert_eq!(kept.data(9), r#"{"seq":3,"ts":5}"#);
    }
}
