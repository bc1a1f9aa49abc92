//! Scenario files: TOML describing client groups, publishers, run timing and thresholds.
//!
//! [`load`] reads and validates a file into a [`Scenario`]; every error names the file, line,
//! column and field and says what is allowed. Unknown fields are errors. The format is
//! documented in the README ("Scenario files").

pub mod headers;
mod raw;
pub mod shard;
pub mod target_url;
pub mod template;
pub mod threshold;
pub(crate) mod units;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use toml::Spanned;
use wire::{StampFields, TimeUnit};

pub use headers::Header;
pub use shard::{RunShard, ShardError, Sharding};
pub use target_url::{ResolvePin, TargetUrl};
pub use threshold::{Op, Subject, Threshold};
use units::{format_duration, parse_duration};

/// Parses a duration as scenario files write it (`"30s"`, `"250ms"`).
///
/// # Errors
/// A message saying what is allowed.
pub fn units_parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Parses a target URL (`http[s]://host[:port]`; see [`TargetUrl::parse`]).
///
/// # Errors
/// A message saying what is allowed.
pub fn parse_target_url(text: &str) -> Result<TargetUrl, String> {
    TargetUrl::parse(text)
}

/// Most connections of one group multiplexed onto one HTTP/2 connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 10_000;

/// Longest `run.settle` pause.
pub const MAX_SETTLE: Duration = Duration::from_secs(60);
/// Most connections one client group may ask for.
pub const MAX_GROUP_COUNT: u32 = 1_000_000;
/// Largest payload a message may be padded to, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;

/// A scenario that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read scenario: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, types, unknown fields, values out of range).
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field at fault (a dotted path such as `clients[2].count`).
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// Transport of a client group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Server-Sent Events over HTTP/1.1.
    Sse,
    /// WebSocket.
    Ws,
}

/// Transport of a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVia {
    /// One `POST` per message (on a keep-alive connection).
    Http,
    /// Text messages on one WebSocket.
    Ws,
}

/// How connections arrive (open model: arrivals do not wait for earlier connects).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// `arrival_rate` connections per second.
    Rate(f64),
    /// All connections spread evenly over this duration.
    Ramp(Duration),
}

/// What a connection is expected to receive, for loss accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A per-stream sequence from the server (counter, stocks): holes are gaps.
    Stream,
    /// Every message of the named publisher, seq 1..=sent.
    Publisher(String),
    /// Every message the other connections of this group sent (chat, rooms).
    Peers,
    /// An echo of every message this connection sent.
    Echo,
    /// Nothing in particular: count what arrives.
    Nothing,
}

/// Which latency received messages are recorded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// `delivery`: receive time minus the stamp.
    Delivery,
    /// `ws_rtt`: receive time of an echo minus its (intended) send time.
    Rtt,
}

/// Where the stamp lives in a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampSpec {
    /// Field names and unit.
    pub fields: StampFields,
    /// JSON pointer to the object holding the fields (`""`: the message itself).
    pub pointer: String,
    /// Whether messages are stamped at all.
    pub kind: StampKind,
}

/// What a received message's stamp is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StampKind {
    /// `seq` and `ts` JSON fields: sequence accounting and `delivery`/`ws_rtt` latency.
    #[default]
    Json,
    /// `stamp = "none"`: no stamp. Messages, bytes, `first_event` and `interarrival` are
    /// measured, nothing can be lost or late; never a parse error.
    None,
    /// `stamp = { seq = "sse-id" }`: the SSE `id:` of each event is its sequence number (gaps,
    /// duplicates), with no latency; every event must carry a numeric id.
    SseId,
}

/// Messages a connection sends at a fixed rate (open model, stamped with the intended slot).
#[derive(Debug, Clone, PartialEq)]
pub struct SendSpec {
    /// Messages per second per connection.
    pub rate: f64,
    /// Pad each message to at least this many bytes.
    pub payload_bytes: usize,
    /// The JSON message sent (any JSON value); the stamp is added to the object at the
    /// group's `stamp.pointer` (the message itself when empty).
    pub template: Value,
    /// SSE only: path to POST to, `{id}` replaced by the id from `id_event`.
    pub path: Option<String>,
    /// SSE only: event whose JSON data has the connection's `id`.
    pub id_event: String,
}

/// A group of identical connections.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientGroup {
    /// Name used in outputs.
    pub name: String,
    /// Transport.
    pub protocol: Protocol,
    /// Request path (with query).
    pub path: String,
    /// Number of connections.
    pub count: u32,
    /// How connections arrive.
    pub arrival: Arrival,
    /// Close each connection this long after it opened (`None`: at the end of the run).
    pub hold: Option<Duration>,
    /// Drop and reopen each connection at this interval.
    pub churn: Option<Duration>,
    /// Loss accounting.
    pub expect: Expect,
    /// Latency kind of received messages.
    pub latency: Latency,
    /// Reconnect after a drop, with jittered exponential backoff (SSE: from the stream's
    /// `retry`, sending `Last-Event-ID`; WebSocket: from 1 s, sending `on_connect` again).
    /// Default: true for SSE, false for WebSocket.
    pub reconnect: bool,
    /// SSE: event types that carry measured messages.
    pub events: Vec<String>,
    /// WS: JSON `type` values that carry measured messages (empty: any stamped message).
    pub types: Vec<String>,
    /// Stamp location.
    pub stamp: StampSpec,
    /// WS: text messages sent right after connecting (may hold placeholders).
    pub on_connect: Vec<String>,
    /// Messages this group sends.
    pub send: Option<SendSpec>,
    /// Request headers (SSE request, WS handshake, SSE-group POSTs); values may hold
    /// placeholders.
    pub headers: Vec<Header>,
    /// Servers this group connects to, connections round-robin (`target` / `targets`);
    /// empty: the run's target.
    pub targets: Vec<TargetUrl>,
    /// SSE: HTTP version of the streams.
    pub http: HttpVersion,
    /// SSE over HTTP/2: streams multiplexed on one connection (default 100, as browsers).
    pub streams_per_connection: u32,
    /// How messages are framed (a text prefix around the JSON, where the type is).
    pub frame: FrameSpec,
    /// WS: a received text frame equal to a key is answered with its value, verbatim
    /// (application heartbeats such as Engine.IO's ping "2" -> pong "3").
    pub replies: Vec<(String, String)>,
    /// WS: a raw text sent periodically (application heartbeats such as Phoenix's).
    pub keepalive: Option<Keepalive>,
}

/// How messages are framed on the wire: `frame = { prefix = "42", type_pointer = "/0" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    /// Text before the JSON of every data message (Socket.IO's `42`); received messages
    /// without it are control frames and are not counted. Empty: plain JSON.
    pub prefix: String,
    /// JSON pointer of a message's type, matched against `types` (default `/type`).
    pub type_pointer: String,
}

impl Default for FrameSpec {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            type_pointer: "/type".to_owned(),
        }
    }
}

impl FrameSpec {
    /// The JSON of a received data message, or `None` for a control frame (no prefix).
    #[must_use]
    pub fn payload<'a>(&self, text: &'a str) -> Option<&'a str> {
        text.strip_prefix(self.prefix.as_str())
    }
}

/// `keepalive = { every = "30s", message = '..' }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalive {
    /// Interval between sends (the first one `every` after connecting).
    pub every: Duration,
    /// Sent verbatim (placeholders rendered, no stamp).
    pub message: String,
}

/// HTTP version of a group's SSE streams (`http = "1.1" | "2" | "auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// One HTTP/1.1 connection per stream (the default).
    #[default]
    Http1,
    /// HTTP/2: by ALPN on https, prior knowledge (h2c) on http.
    Http2,
    /// HTTP/2 when the server offers it by ALPN on https, else HTTP/1.1; HTTP/1.1 on http.
    Auto,
}

/// A source of stamped messages at a fixed rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Publisher {
    /// Name used by `expect = "publisher:<name>"`.
    pub name: String,
    /// Transport.
    pub via: PublishVia,
    /// Path to POST to or WebSocket path.
    pub path: String,
    /// Messages per second.
    pub rate: f64,
    /// Pad each message to at least this many bytes.
    pub payload_bytes: usize,
    /// JSON fields sent with every message.
    pub template: Map<String, Value>,
    /// WS: messages sent right after connecting.
    pub on_connect: Vec<String>,
    /// Request headers (POSTs, WS handshake).
    pub headers: Vec<Header>,
    /// Its own server (`target`); `None`: the run's target.
    pub target: Option<TargetUrl>,
    /// WS publishers: the text prefix of every message (`frame = { prefix = ".." }`).
    pub frame: FrameSpec,
    /// Sharded runs: every shard publishes its share of `rate` (`split = true`) instead of
    /// shard 0 publishing all of it.
    pub split: bool,
}

/// Timing of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSpec {
    /// Pause after the connect phase before senders and publishers start (lets a server
    /// finish processing joins and subscriptions); default zero.
    pub settle: Duration,
    /// Latency samples whose intended time falls before the end of the connect phase, the
    /// settle pause and this long after are discarded. Zero (the default): nothing is
    /// discarded, samples count from the first message of the run.
    pub warmup: Duration,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Hard limit for the whole run, connecting and draining included.
    pub time_limit: Duration,
}

/// Settings of the bundled target server (ignored for `--target`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// `--max-connections`
    pub max_connections: Option<u64>,
    /// `--client-queue`
    pub client_queue: Option<u64>,
    /// `--replay-capacity`
    pub replay_capacity: Option<u64>,
    /// `--keepalive-secs`
    pub keepalive: Option<Duration>,
    /// `--ping-secs`
    pub ping: Option<Duration>,
    /// `--retry-ms`
    pub retry: Option<Duration>,
    /// `--max-message-bytes`
    pub max_message_bytes: Option<u64>,
    /// Instances of the bundled server started side by side (1..=[`MAX_INSTANCES`]; 0 is
    /// read as 1); connections and publishers spread over them round-robin.
    pub instances: u32,
    /// The Redis backplane the instances share (`--redis-url`); `None`: each alone.
    pub redis: Option<RedisSetting>,
}

/// Most bundled server instances a run starts.
pub const MAX_INSTANCES: u32 = 16;

/// Where the bundled instances' Redis backplane is (`[server] redis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSetting {
    /// `"spawn"`: loadgen starts `redis-server` from `PATH` on a free loopback port, without
    /// persistence, and stops it after the run.
    Spawn,
    /// A Redis someone else runs, `redis://HOST:PORT[/DB]` (never flushed by loadgen).
    Url(String),
}

impl ServerSettings {
    /// Command-line flags for `loadgen serve` / `rt-server`.
    #[must_use]
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        push(
            "max-connections",
            self.max_connections.map(|v| v.to_string()),
        );
        push("client-queue", self.client_queue.map(|v| v.to_string()));
        push(
            "replay-capacity",
            self.replay_capacity.map(|v| v.to_string()),
        );
        push(
            "keepalive-secs",
            self.keepalive.map(|d| d.as_secs_f64().to_string()),
        );
        push("ping-secs", self.ping.map(|d| d.as_secs_f64().to_string()));
        push("retry-ms", self.retry.map(|d| d.as_millis().to_string()));
        push(
            "max-message-bytes",
            self.max_message_bytes.map(|v| v.to_string()),
        );
        args
    }

    /// How many instances to start (at least one).
    #[must_use]
    pub fn instance_count(&self) -> u32 {
        self.instances.max(1)
    }

    /// The deployment in words: `one instance`, `3 instances over a spawned redis-server`.
    #[must_use]
    pub fn deployment(&self) -> String {
        let n = self.instance_count();
        let instances = if n == 1 {
            "one instance".to_owned()
        } else {
            format!("{n} instances")
        };
        match &self.redis {
            None => instances,
            Some(RedisSetting::Spawn) => format!("{instances} over a spawned redis-server"),
            Some(RedisSetting::Url(url)) => format!("{instances} over Redis at {url}"),
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Short name (defaults to the file stem).
    pub name: String,
    /// What it models.
    pub description: String,
    /// Target server; `None`: start the bundled server.
    pub target: Option<TargetUrl>,
    /// Local addresses outgoing connections are bound to, round-robin by connection index
    /// (each source address has its own ~28,000 ephemeral ports per target address and
    /// port); empty: the OS picks.
    pub source_addrs: Vec<IpAddr>,
    /// Timing.
    pub run: RunSpec,
    /// Bundled server settings.
    pub server: ServerSettings,
    /// Client groups.
    pub clients: Vec<ClientGroup>,
    /// Publishers.
    pub publishers: Vec<Publisher>,
    /// Pass/fail rules.
    pub thresholds: Vec<Threshold>,
    /// This process's share of a sharded run ([`Scenario::shard`]); `None`: the whole run.
    pub sharding: Option<Sharding>,
}

/// Reads and validates a scenario file.
///
/// # Errors
/// [`ScenarioError`] naming file, line, column and field.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Validates scenario text; `path` is used in messages and for the default name.
///
/// # Errors
/// [`ScenarioError::Invalid`] naming line, column and field.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let ctx = Ctx { path, text };
    let raw: raw::RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e
            .message()
            .trim()
            .replace("expected i64", "expected an integer")
            .replace("expected f64", "expected a number");
        ctx.error(span, &field_of(&message), message)
    })?;
    validate(&ctx, raw)
}

/// Best guess of the field a serde message is about, for the error's `field` part.
fn field_of(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map_or_else(|| "file".to_owned(), str::to_owned)
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn error(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ScenarioError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ScenarioError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn duration(&self, value: &Spanned<String>, field: &str) -> Result<Duration, ScenarioError> {
        parse_duration(value.get_ref()).map_err(|m| self.error(value.span(), field, m))
    }

    fn positive_duration(
        &self,
        value: &Spanned<String>,
        field: &str,
    ) -> Result<Duration, ScenarioError> {
        let d = self.duration(value, field)?;
        if d.is_zero() {
            return Err(self.error(value.span(), field, "must be longer than 0"));
        }
        Ok(d)
    }

    fn int_in(
        &self,
        value: &Spanned<i64>,
        field: &str,
        min: i64,
        max: i64,
    ) -> Result<u64, ScenarioError> {
        let v = *value.get_ref();
        if v < min || v > max {
            return Err(self.error(
                value.span(),
                field,
                format!("must be from {min} to {max}, got {v}"),
            ));
        }
        u64::try_from(v).map_err(|_| self.error(value.span(), field, "must not be negative"))
    }

    fn rate(&self, value: &Spanned<f64>, field: &str) -> Result<f64, ScenarioError> {
        let v = *value.get_ref();
        if !(v.is_finite() && v > 0.0 && v <= 1_000_000.0) {
            return Err(self.error(
                value.span(),
                field,
                format!("must be a rate per second above 0 and at most 1000000, got {v}"),
            ));
        }
        Ok(v)
    }

    fn path(&self, value: &Spanned<String>, field: &str) -> Result<String, ScenarioError> {
        self.path_with(value, field, &[])
    }

    /// A path that may also hold the placeholders `also` (filled in by the sender).
    fn path_with(
        &self,
        value: &Spanned<String>,
        field: &str,
        also: &[&str],
    ) -> Result<String, ScenarioError> {
        let p = value.get_ref();
        if !p.starts_with('/') || p.contains(char::is_whitespace) {
            return Err(self.error(
                value.span(),
                field,
                format!("must be a request path starting with `/` and without spaces, got {p:?}"),
            ));
        }
        template::check_strict(p, also).map_err(|m| self.error(value.span(), field, m))?;
        Ok(p.clone())
    }

    fn template(
        &self,
        value: Option<&Spanned<String>>,
        field: &str,
    ) -> Result<Map<String, Value>, ScenarioError> {
        let Some(value) = value else {
            return Ok(Map::new());
        };
        template::check(value.get_ref()).map_err(|m| self.error(value.span(), field, m))?;
        match serde_json::from_str::<Value>(value.get_ref()) {
            Ok(Value::Object(map)) => {
                if map.contains_key("seq") || map.contains_key("ts") {
                    return Err(self.error(
                        value.span(),
                        field,
                        "must not set `seq` or `ts`: loadgen stamps every message",
                    ));
                }
                Ok(map)
            }
            _ => Err(self.error(
                value.span(),
                field,
                "must be a JSON object, e.g. '{\"type\":\"chat\"}'",
            )),
        }
    }

    /// A group's `message`: any JSON value whose `pointer` (where the stamp goes) names an
    /// object without `seq`/`ts`; absent: `{}` (with an empty pointer).
    fn message(
        &self,
        value: Option<&Spanned<String>>,
        pointer: &str,
        field: &str,
    ) -> Result<Value, ScenarioError> {
        let Some(value) = value else {
            return if pointer.is_empty() {
                Ok(Value::Object(Map::new()))
            } else {
                Err(self.error(
                    0..0,
                    field,
                    format!("stamp.pointer is {pointer:?}: give a message with an object there, e.g. '[\"event\", {{}}]' for \"/1\""),
                ))
            };
        };
        template::check(value.get_ref()).map_err(|m| self.error(value.span(), field, m))?;
        let parsed: Value = serde_json::from_str(value.get_ref()).map_err(|e| {
            self.error(
                value.span(),
                field,
                format!("must be JSON (any value): {e}"),
            )
        })?;
        let holder = if pointer.is_empty() {
            Some(&parsed)
        } else {
            parsed.pointer(pointer)
        };
        match holder {
            Some(Value::Object(map)) if map.contains_key("seq") || map.contains_key("ts") => Err(self.error(
                value.span(),
                field,
                "must not set `seq` or `ts`: loadgen stamps every message",
            )),
            Some(Value::Object(_)) => Ok(parsed),
            _ if pointer.is_empty() => Err(self.error(
                value.span(),
                field,
                "must be a JSON object, e.g. '{\"type\":\"chat\"}', or set stamp.pointer to where the stamp goes in an array or nested value",
            )),
            _ => Err(self.error(
                value.span(),
                field,
                format!("has no JSON object at stamp.pointer {pointer:?} for the stamp"),
            )),
        }
    }

    fn headers(
        &self,
        value: Option<&Spanned<std::collections::BTreeMap<String, String>>>,
        field: &str,
    ) -> Result<Vec<Header>, ScenarioError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        value
            .get_ref()
            .iter()
            .map(|(name, v)| {
                headers::header(name, v)
                    .map_err(|m| self.error(value.span(), &format!("{field}.{name}"), m))
            })
            .collect()
    }

    fn on_connect(
        &self,
        texts: &[Spanned<String>],
        field: &str,
    ) -> Result<Vec<String>, ScenarioError> {
        texts
            .iter()
            .map(|t| {
                template::check(t.get_ref())
                    .map(|()| t.get_ref().clone())
                    .map_err(|m| self.error(t.span(), field, m))
            })
            .collect()
    }

    fn payload(&self, value: Option<&Spanned<i64>>, field: &str) -> Result<usize, ScenarioError> {
        value.map_or(Ok(0), |v| {
            let max = i64::try_from(MAX_PAYLOAD_BYTES).unwrap_or(i64::MAX);
            self.int_in(v, field, 0, max)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

fn validate(ctx: &Ctx<'_>, raw: raw::RawScenario) -> Result<Scenario, ScenarioError> {
    let name = raw.name.unwrap_or_else(|| {
        ctx.path.file_stem().map_or_else(
            || "scenario".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        )
    });
    let target = raw
        .target
        .as_ref()
        .map(|t| parse_target(ctx, t, "target"))
        .transpose()?;
    let source_addrs = validate_sources(ctx, raw.source_addrs.as_ref())?;
    let run = validate_run(ctx, &raw.run)?;
    let server = validate_server(ctx, &raw.server)?;
    let mut publishers = Vec::new();
    for (i, p) in raw.publishers.iter().enumerate() {
        let publisher = validate_publisher(ctx, i, p)?;
        if publishers
            .iter()
            .any(|q: &Publisher| q.name == publisher.name)
        {
            return Err(ctx.error(
                p.span(),
                &format!("publishers[{i}].name"),
                format!("duplicate publisher name `{}`", publisher.name),
            ));
        }
        publishers.push(publisher);
    }
    if raw.clients.is_empty() {
        return Err(ctx.error(
            0..0,
            "clients",
            "a scenario needs at least one [[clients]] group",
        ));
    }
    let mut clients = Vec::new();
    for (i, c) in raw.clients.iter().enumerate() {
        let group = validate_group(ctx, i, c, &publishers)?;
        if clients.iter().any(|g: &ClientGroup| g.name == group.name) {
            return Err(ctx.error(
                c.span(),
                &format!("clients[{i}].name"),
                format!("duplicate group name `{}`", group.name),
            ));
        }
        clients.push(group);
    }
    let mut thresholds = Vec::new();
    for (i, t) in raw.thresholds.iter().enumerate() {
        let rule = threshold::parse(t.get_ref())
            .map_err(|m| ctx.error(t.span(), &format!("thresholds[{i}]"), m))?;
        thresholds.push(rule);
    }
    Ok(Scenario {
        name,
        description: raw.description.unwrap_or_default(),
        target,
        source_addrs,
        run,
        server,
        clients,
        publishers,
        thresholds,
        sharding: None,
    })
}

fn parse_target(
    ctx: &Ctx<'_>,
    value: &Spanned<String>,
    field: &str,
) -> Result<TargetUrl, ScenarioError> {
    TargetUrl::parse(value.get_ref()).map_err(|m| ctx.error(value.span(), field, m))
}

/// A group's `target = ".."` or `targets = [..]` (not both); empty: the run's target.
fn group_targets(
    ctx: &Ctx<'_>,
    r: &raw::RawClients,
    f: &dyn Fn(&str) -> String,
) -> Result<Vec<TargetUrl>, ScenarioError> {
    match (&r.target, &r.targets) {
        (Some(_), Some(list)) => Err(ctx.error(
            list.span(),
            &f("targets"),
            "give either `target` or `targets`, not both",
        )),
        (Some(one), None) => Ok(vec![parse_target(ctx, one, &f("target"))?]),
        (None, Some(list)) => {
            if list.get_ref().is_empty() {
                return Err(ctx.error(list.span(), &f("targets"), "must list at least one URL"));
            }
            let mut out: Vec<TargetUrl> = Vec::new();
            for text in list.get_ref() {
                let url =
                    TargetUrl::parse(text).map_err(|m| ctx.error(list.span(), &f("targets"), m))?;
                if out.contains(&url) {
                    return Err(ctx.error(
                        list.span(),
                        &f("targets"),
                        format!("{url} is listed twice"),
                    ));
                }
                out.push(url);
            }
            Ok(out)
        }
        (None, None) => Ok(Vec::new()),
    }
}

fn validate_sources(
    ctx: &Ctx<'_>,
    raw: Option<&Spanned<Vec<String>>>,
) -> Result<Vec<IpAddr>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for text in raw.get_ref() {
        let bad = |m: String| ctx.error(raw.span(), "source_addrs", m);
        let ip: IpAddr = text.parse().map_err(|_| {
            bad(format!(
                "{text:?} is not an IP address (e.g. \"127.0.0.2\")"
            ))
        })?;
        if out.contains(&ip) {
            return Err(bad(format!("{ip} is listed twice")));
        }
        out.push(ip);
    }
    Ok(out)
}

fn validate_run(ctx: &Ctx<'_>, run: &Spanned<raw::RawRun>) -> Result<RunSpec, ScenarioError> {
    let r = run.get_ref();
    let warmup = r
        .warmup
        .as_ref()
        .map_or(Ok(Duration::ZERO), |w| ctx.duration(w, "run.warmup"))?;
    let settle = r
        .settle
        .as_ref()
        .map_or(Ok(Duration::ZERO), |w| ctx.duration(w, "run.settle"))?;
    if settle > MAX_SETTLE {
        let span = r.settle.as_ref().map_or(run.span(), Spanned::span);
        return Err(ctx.error(
            span,
            "run.settle",
            format!("must be at most {}", format_duration(MAX_SETTLE)),
        ));
    }
    let duration = ctx.positive_duration(&r.duration, "run.duration")?;
    let default_limit = warmup + duration * 2 + Duration::from_secs(60);
    let time_limit = r.time_limit.as_ref().map_or(Ok(default_limit), |t| {
        ctx.positive_duration(t, "run.time_limit")
    })?;
    if time_limit < warmup + duration {
        let span = r.time_limit.as_ref().map_or(run.span(), Spanned::span);
        return Err(ctx.error(
            span,
            "run.time_limit",
            format!(
                "must be at least warmup + duration ({})",
                format_duration(warmup + duration)
            ),
        ));
    }
    Ok(RunSpec {
        settle,
        warmup,
        duration,
        time_limit,
    })
}

fn validate_server(ctx: &Ctx<'_>, s: &raw::RawServer) -> Result<ServerSettings, ScenarioError> {
    let int = |v: &Option<Spanned<i64>>, field: &str, max: i64| {
        v.as_ref().map(|v| ctx.int_in(v, field, 1, max)).transpose()
    };
    let dur = |v: &Option<Spanned<String>>, field: &str| {
        v.as_ref()
            .map(|v| ctx.positive_duration(v, field))
            .transpose()
    };
    Ok(ServerSettings {
        max_connections: int(&s.max_connections, "server.max_connections", 1_000_000)?,
        client_queue: int(&s.client_queue, "server.client_queue", 1_000_000)?,
        replay_capacity: int(&s.replay_capacity, "server.replay_capacity", 10_000_000)?,
        keepalive: dur(&s.keepalive, "server.keepalive")?,
        ping: dur(&s.ping, "server.ping")?,
        retry: dur(&s.retry, "server.retry")?,
        max_message_bytes: int(&s.max_message_bytes, "server.max_message_bytes", 1 << 30)?,
        instances: s
            .instances
            .as_ref()
            .map(|v| ctx.int_in(v, "server.instances", 1, i64::from(MAX_INSTANCES)))
            .transpose()?
            .map_or(1, |n| u32::try_from(n).unwrap_or(MAX_INSTANCES)),
        redis: validate_redis(ctx, s)?,
    })
}

/// `[server] redis`: `"spawn"` or a Redis URL; required by more than one instance (they share
/// broadcasts only through it).
fn validate_redis(
    ctx: &Ctx<'_>,
    s: &raw::RawServer,
) -> Result<Option<RedisSetting>, ScenarioError> {
    let redis = match &s.redis {
        None => None,
        Some(v) if v.get_ref() == "spawn" => Some(RedisSetting::Spawn),
        Some(v) => {
            let url = v.get_ref();
            if !url.starts_with("redis://") {
                return Err(ctx.error(
                    v.span(),
                    "server.redis",
                    format!("must be \"spawn\" or a redis://HOST:PORT URL, got {url:?}"),
                ));
            }
            server::backplane::tcp_address(url)
                .map_err(|e| ctx.error(v.span(), "server.redis", e.to_string()))?;
            Some(RedisSetting::Url(url.clone()))
        }
    };
    if let Some(n) = &s.instances
        && *n.get_ref() > 1
        && redis.is_none()
    {
        return Err(ctx.error(
            n.span(),
            "server.instances",
            "more than one instance needs server.redis (\"spawn\" or redis://HOST:PORT): \
             instances share broadcasts only through Redis",
        ));
    }
    Ok(redis)
}

fn validate_publisher(
    ctx: &Ctx<'_>,
    i: usize,
    p: &Spanned<raw::RawPublisher>,
) -> Result<Publisher, ScenarioError> {
    let f = |name: &str| format!("publishers[{i}].{name}");
    let r = p.get_ref();
    let via = match r.protocol.get_ref().as_str() {
        "http" => PublishVia::Http,
        "ws" => PublishVia::Ws,
        other => {
            return Err(ctx.error(
                r.protocol.span(),
                &f("protocol"),
                format!("must be \"http\" or \"ws\", got {other:?}"),
            ));
        }
    };
    if via == PublishVia::Http && !r.on_connect.is_empty() {
        return Err(ctx.error(
            r.on_connect[0].span(),
            &f("on_connect"),
            "only WebSocket publishers send on_connect messages",
        ));
    }
    Ok(Publisher {
        name: r
            .name
            .clone()
            .unwrap_or_else(|| format!("publisher{}", i + 1)),
        via,
        path: ctx.path(&r.path, &f("path"))?,
        rate: ctx.rate(&r.rate, &f("rate"))?,
        payload_bytes: ctx.payload(r.payload_bytes.as_ref(), &f("payload_bytes"))?,
        template: ctx.template(r.message.as_ref(), &f("message"))?,
        on_connect: ctx.on_connect(&r.on_connect, &f("on_connect"))?,
        headers: ctx.headers(r.headers.as_ref(), &f("headers"))?,
        target: r
            .target
            .as_ref()
            .map(|t| parse_target(ctx, t, &f("target")))
            .transpose()?,
        frame: frame_spec(ctx, r.frame.as_ref(), &f("frame"))?,
        split: r.split,
    })
}

/// `frame = { .. }`: a prefix of at most 64 characters, a JSON pointer for the type.
fn frame_spec(
    ctx: &Ctx<'_>,
    raw: Option<&Spanned<raw::RawFrame>>,
    field: &str,
) -> Result<FrameSpec, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(FrameSpec::default());
    };
    let r = raw.get_ref();
    let prefix = r.prefix.clone().unwrap_or_default();
    if prefix.chars().count() > 64 {
        return Err(ctx.error(
            raw.span(),
            &format!("{field}.prefix"),
            "must be at most 64 characters",
        ));
    }
    let type_pointer = r.type_pointer.clone().unwrap_or_else(|| "/type".to_owned());
    if !type_pointer.starts_with('/') {
        return Err(ctx.error(
            raw.span(),
            &format!("{field}.type_pointer"),
            format!("must be a JSON pointer such as \"/0\" or \"/event\", got {type_pointer:?}"),
        ));
    }
    Ok(FrameSpec {
        prefix,
        type_pointer,
    })
}

/// A WebSocket group's `replies` and `keepalive`.
type Heartbeats = (Vec<(String, String)>, Option<Keepalive>);

/// `replies` and `keepalive` (WebSocket groups only).
fn heartbeats(
    ctx: &Ctx<'_>,
    r: &raw::RawClients,
    protocol: Protocol,
    f: &dyn Fn(&str) -> String,
) -> Result<Heartbeats, ScenarioError> {
    if protocol == Protocol::Sse {
        if let Some(x) = &r.replies {
            return Err(ctx.error(
                x.span(),
                &f("replies"),
                "applies to WebSocket groups only (an SSE client cannot answer on the stream)",
            ));
        }
        if let Some(x) = &r.keepalive {
            return Err(ctx.error(
                x.span(),
                &f("keepalive"),
                "applies to WebSocket groups only (an SSE client cannot send on the stream)",
            ));
        }
    }
    let mut replies = Vec::new();
    if let Some(map) = &r.replies {
        for (when, answer) in map.get_ref() {
            if when.is_empty() {
                return Err(ctx.error(
                    map.span(),
                    &f("replies"),
                    "a key (the text to answer) must not be empty",
                ));
            }
            template::check(answer).map_err(|m| ctx.error(map.span(), &f("replies"), m))?;
            replies.push((when.clone(), answer.clone()));
        }
    }
    let keepalive = match &r.keepalive {
        None => None,
        Some(k) => {
            let raw = k.get_ref();
            let every = ctx.positive_duration(&raw.every, &f("keepalive.every"))?;
            if every < Duration::from_millis(10) {
                return Err(ctx.error(
                    raw.every.span(),
                    &f("keepalive.every"),
                    "must be at least 10ms",
                ));
            }
            template::check(raw.message.get_ref())
                .map_err(|m| ctx.error(raw.message.span(), &f("keepalive.message"), m))?;
            if raw.message.get_ref().is_empty() {
                return Err(ctx.error(
                    raw.message.span(),
                    &f("keepalive.message"),
                    "must not be empty",
                ));
            }
            Some(Keepalive {
                every,
                message: raw.message.get_ref().clone(),
            })
        }
    };
    Ok((replies, keepalive))
}

fn validate_group(
    ctx: &Ctx<'_>,
    i: usize,
    c: &Spanned<raw::RawClients>,
    publishers: &[Publisher],
) -> Result<ClientGroup, ScenarioError> {
    let f = |name: &str| format!("clients[{i}].{name}");
    let r = c.get_ref();
    let protocol = match r.protocol.get_ref().as_str() {
        "sse" => Protocol::Sse,
        "ws" => Protocol::Ws,
        other => {
            return Err(ctx.error(
                r.protocol.span(),
                &f("protocol"),
                format!("must be \"sse\" or \"ws\", got {other:?}"),
            ));
        }
    };
    let count = ctx.int_in(&r.count, &f("count"), 1, i64::from(MAX_GROUP_COUNT))?;
    let count = u32::try_from(count).unwrap_or(MAX_GROUP_COUNT);
    let arrival = match (&r.arrival_rate, &r.ramp) {
        (Some(_), Some(ramp)) => {
            return Err(ctx.error(
                ramp.span(),
                &f("ramp"),
                "give either arrival_rate or ramp, not both",
            ));
        }
        (Some(rate), None) => Arrival::Rate(ctx.rate(rate, &f("arrival_rate"))?),
        (None, Some(ramp)) => Arrival::Ramp(ctx.duration(ramp, &f("ramp"))?),
        (None, None) => Arrival::Rate(1000.0),
    };
    let hold = r
        .hold
        .as_ref()
        .map(|h| ctx.positive_duration(h, &f("hold")))
        .transpose()?;
    let churn = r
        .churn
        .as_ref()
        .map(|h| ctx.positive_duration(h, &f("churn")))
        .transpose()?;
    let (http, streams_per_connection) = http_settings(ctx, r, protocol, &f)?;
    let (replies, keepalive) = heartbeats(ctx, r, protocol, &f)?;
    let ws_only = |present: bool, span: std::ops::Range<usize>, field: &str| {
        if present && protocol == Protocol::Sse {
            Err(ctx.error(span, &f(field), "applies to WebSocket groups only"))
        } else {
            Ok(())
        }
    };
    ws_only(
        !r.on_connect.is_empty(),
        r.on_connect.first().map_or(0..0, Spanned::span),
        "on_connect",
    )?;
    ws_only(
        r.types.is_some(),
        r.types.as_ref().map_or(0..0, Spanned::span),
        "types",
    )?;
    if protocol == Protocol::Ws {
        let sse_only = [
            ("events", r.events.as_ref().map(Spanned::span)),
            ("send_path", r.send_path.as_ref().map(Spanned::span)),
            ("id_event", r.id_event.as_ref().map(Spanned::span)),
        ];
        if let Some((field, Some(span))) = sse_only.into_iter().find(|(_, s)| s.is_some()) {
            return Err(ctx.error(span, &f(field), "applies to SSE groups only"));
        }
    }
    let stamp = match &r.stamp {
        None => StampSpec {
            fields: StampFields::default(),
            pointer: String::new(),
            kind: StampKind::Json,
        },
        Some(raw::RawStampSetting::Word(w)) if w == "none" => StampSpec {
            fields: StampFields::default(),
            pointer: String::new(),
            kind: StampKind::None,
        },
        Some(raw::RawStampSetting::Word(w)) => {
            return Err(ctx.error(
                c.span(),
                &f("stamp"),
                format!("must be \"none\" or a table such as {{ seq = \"seq\", ts = \"ts\" }}, got {w:?}"),
            ));
        }
        Some(raw::RawStampSetting::Table(s)) if s.seq.as_deref() == Some("sse-id") => {
            if protocol != Protocol::Sse
                || s.ts.is_some()
                || s.pointer.is_some()
                || s.unit.is_some()
            {
                return Err(ctx.error(
                    c.span(),
                    &f("stamp.seq"),
                    "\"sse-id\" (the SSE id as the sequence) is for SSE groups, alone: no ts, unit or pointer",
                ));
            }
            StampSpec {
                fields: StampFields::default(),
                pointer: String::new(),
                kind: StampKind::SseId,
            }
        }
        Some(raw::RawStampSetting::Table(s)) => {
            let unit = match s.unit.as_ref().map(|u| u.get_ref().as_str()) {
                None | Some("us") => TimeUnit::Us,
                Some("ms") => TimeUnit::Ms,
                Some("ns") => TimeUnit::Ns,
                Some(other) => {
                    let span = s.unit.as_ref().map_or(0..0, Spanned::span);
                    return Err(ctx.error(
                        span,
                        &f("stamp.unit"),
                        format!("must be \"ms\", \"us\" or \"ns\", got {other:?}"),
                    ));
                }
            };
            let pointer = s
                .pointer
                .as_ref()
                .map_or(String::new(), |p| p.get_ref().clone());
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                let span = s.pointer.as_ref().map_or(0..0, Spanned::span);
                return Err(ctx.error(
                    span,
                    &f("stamp.pointer"),
                    "must be a JSON pointer such as \"/data\" (or empty)",
                ));
            }
            StampSpec {
                fields: StampFields {
                    seq: s.seq.clone().unwrap_or_else(|| "seq".to_owned()),
                    ts: s.ts.clone().unwrap_or_else(|| "ts".to_owned()),
                    unit,
                },
                pointer,
                kind: StampKind::Json,
            }
        }
    };
    let send = match &r.send_rate {
        None => {
            if let Some(p) = &r.send_path {
                return Err(ctx.error(p.span(), &f("send_path"), "needs send_rate"));
            }
            None
        }
        Some(rate) => {
            let path = r
                .send_path
                .as_ref()
                .map(|p| ctx.path_with(p, &f("send_path"), &["id"]))
                .transpose()?;
            if protocol == Protocol::Sse && path.is_none() {
                return Err(ctx.error(
                    rate.span(),
                    &f("send_rate"),
                    "an SSE group sends by POST: give send_path too (e.g. \"/sse/chat/{id}\")",
                ));
            }
            Some(SendSpec {
                rate: ctx.rate(rate, &f("send_rate"))?,
                payload_bytes: ctx.payload(r.payload_bytes.as_ref(), &f("payload_bytes"))?,
                template: ctx.message(r.message.as_ref(), &stamp.pointer, &f("message"))?,
                path,
                id_event: r
                    .id_event
                    .as_ref()
                    .map_or_else(|| "user".to_owned(), |e| e.get_ref().clone()),
            })
        }
    };
    let latency = match r.latency.as_ref().map(|l| l.get_ref().as_str()) {
        None | Some("delivery") => Latency::Delivery,
        Some("rtt") if protocol == Protocol::Ws && send.is_some() => Latency::Rtt,
        Some("rtt") => {
            let span = r.latency.as_ref().map_or(0..0, Spanned::span);
            return Err(ctx.error(
                span,
                &f("latency"),
                "\"rtt\" needs a WebSocket group with send_rate",
            ));
        }
        Some(other) => {
            let span = r.latency.as_ref().map_or(0..0, Spanned::span);
            return Err(ctx.error(
                span,
                &f("latency"),
                format!("must be \"delivery\" or \"rtt\", got {other:?}"),
            ));
        }
    };
    let expect = match r.expect.as_ref().map(|e| e.get_ref().as_str()) {
        None if stamp.kind == StampKind::None => Expect::Nothing,
        None if latency == Latency::Rtt => Expect::Echo,
        None if protocol == Protocol::Sse => Expect::Stream,
        None => Expect::Nothing,
        Some("stream") => Expect::Stream,
        Some("peers") => Expect::Peers,
        Some("echo") => Expect::Echo,
        Some("none") => Expect::Nothing,
        Some(other) => match other.strip_prefix("publisher:") {
            Some(name) if publishers.iter().any(|p| p.name == name) => {
                Expect::Publisher(name.to_owned())
            }
            _ => {
                let span = r.expect.as_ref().map_or(0..0, Spanned::span);
                let names: Vec<String> = publishers
                    .iter()
                    .map(|p| format!("\"publisher:{}\"", p.name))
                    .collect();
                return Err(ctx.error(span, &f("expect"), format!(
                    "must be \"stream\", \"peers\", \"echo\", \"none\" or one of [{}], got {other:?}",
                    names.join(", ")
                )));
            }
        },
    };
    let unstamped_expectation = match stamp.kind {
        StampKind::Json => false,
        StampKind::None => expect != Expect::Nothing,
        StampKind::SseId => !matches!(expect, Expect::Stream | Expect::Nothing),
    };
    if unstamped_expectation {
        let span = r.expect.as_ref().map_or(c.span(), Spanned::span);
        return Err(ctx.error(
            span,
            &f("expect"),
            "unstamped messages can only be counted: use expect = \"none\" (or \"stream\" with seq = \"sse-id\")",
        ));
    }
    if matches!(expect, Expect::Peers | Expect::Echo) && send.is_none() {
        let span = r.expect.as_ref().map_or(c.span(), Spanned::span);
        return Err(ctx.error(span, &f("expect"), "\"peers\" and \"echo\" need send_rate"));
    }
    Ok(ClientGroup {
        name: r.name.clone().unwrap_or_else(|| format!("group{}", i + 1)),
        protocol,
        path: ctx.path(&r.path, &f("path"))?,
        count,
        arrival,
        hold,
        churn,
        expect,
        latency,
        reconnect: r
            .reconnect
            .as_ref()
            .map_or(protocol == Protocol::Sse, |v| *v.get_ref()),
        events: r
            .events
            .as_ref()
            .map_or_else(|| vec!["message".to_owned()], |e| e.get_ref().clone()),
        types: r
            .types
            .as_ref()
            .map_or_else(Vec::new, |t| t.get_ref().clone()),
        stamp,
        on_connect: ctx.on_connect(&r.on_connect, &f("on_connect"))?,
        send,
        headers: ctx.headers(r.headers.as_ref(), &f("headers"))?,
        targets: group_targets(ctx, r, &f)?,
        http,
        streams_per_connection,
        frame: frame_spec(ctx, r.frame.as_ref(), &f("frame"))?,
        replies,
        keepalive,
    })
}

/// `http` and `streams_per_connection` of a group (SSE only).
fn http_settings(
    ctx: &Ctx<'_>,
    r: &raw::RawClients,
    protocol: Protocol,
    f: &dyn Fn(&str) -> String,
) -> Result<(HttpVersion, u32), ScenarioError> {
    if protocol == Protocol::Ws {
        if let Some(h) = &r.http {
            return Err(ctx.error(
                h.span(),
                &f("http"),
                "WebSockets are HTTP/1.1 upgrades; `http` applies to SSE groups only",
            ));
        }
        if let Some(n) = &r.streams_per_connection {
            return Err(ctx.error(
                n.span(),
                &f("streams_per_connection"),
                "applies to SSE groups only",
            ));
        }
    }
    let http = match r.http.as_ref().map(|h| (h, h.get_ref().as_str())) {
        None | Some((_, "1.1")) => HttpVersion::Http1,
        Some((_, "2")) => HttpVersion::Http2,
        Some((_, "auto")) => HttpVersion::Auto,
        Some((h, other)) => {
            return Err(ctx.error(
                h.span(),
                &f("http"),
                format!("must be \"1.1\", \"2\" or \"auto\", got {other:?}"),
            ));
        }
    };
    let streams = match &r.streams_per_connection {
        None => 100,
        Some(n) => {
            if http == HttpVersion::Http1 {
                return Err(ctx.error(
                    n.span(),
                    &f("streams_per_connection"),
                    "applies with http = \"2\" or \"auto\" only (HTTP/1.1 has one stream per connection)",
                ));
            }
            let n = ctx.int_in(
                n,
                &f("streams_per_connection"),
                1,
                i64::from(MAX_STREAMS_PER_CONNECTION),
            )?;
            u32::try_from(n).unwrap_or(MAX_STREAMS_PER_CONNECTION)
        }
    };
    Ok((http, streams))
}

impl Scenario {
    /// Total connections over all groups.
    #[must_use]
    pub fn total_connections(&self) -> u64 {
        self.clients.iter().map(|g| u64::from(g.count)).sum()
    }

    /// Adds `extra` headers (`--header`) to every group and publisher, replacing any of the
    /// same name.
    pub fn add_headers(&mut self, extra: &[Header]) {
        for g in &mut self.clients {
            g.headers = headers::merged(&g.headers, extra);
        }
        for p in &mut self.publishers {
            p.headers = headers::merged(&p.headers, extra);
        }
    }

    /// Caps every group at `max_clients` connections and the measured phase at `duration`
    /// (for smoke runs and tests at small scale); the time limit shrinks to match.
    pub fn scale_down(&mut self, max_clients: Option<u32>, duration: Option<Duration>) {
        if let Some(max) = max_clients {
            for group in &mut self.clients {
                group.count = group.count.min(max.max(1));
            }
        }
        if let Some(d) = duration {
            self.run.duration = d;
            self.run.warmup = self.run.warmup.min(d);
            self.run.time_limit = self
                .run
                .time_limit
                .min(self.run.warmup + d * 2 + Duration::from_secs(60))
                .max(self.run.warmup + d);
        }
    }

    /// What decides whether two runs measured the same thing, as JSON (`run.json`
    /// `scenario.plan_key`; `compare` refuses runs whose keys differ): the phase durations, the
    /// bundled server's settings, each group's transport, path, size, arrival, hold, churn,
    /// sending, expectation, latency and stamp kind, each publisher's transport, path, rate and size.
    /// Names, descriptions, thresholds, the target address and the time limit are not in it.
    #[must_use]
    pub fn plan_key(&self) -> serde_json::Value {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let groups: Vec<Value> = self
            .clients
            .iter()
            .map(|g| {
                let arrival = match g.arrival {
                    Arrival::Rate(r) => serde_json::json!({"rate": r}),
                    Arrival::Ramp(d) => serde_json::json!({"ramp_us": us(d)}),
                };
                serde_json::json!({
                    "protocol": format!("{:?}", g.protocol).to_lowercase(),
                    "path": g.path,
                    "count": g.count,
                    "arrival": arrival,
                    "hold_us": g.hold.map(us),
                    "churn_us": g.churn.map(us),
                    "expect": format!("{:?}", g.expect),
                    "latency": format!("{:?}", g.latency).to_lowercase(),
                    "stamp": format!("{:?}", g.stamp.kind).to_lowercase(),
                    "http": match g.http {
                        HttpVersion::Http1 => Value::from("1.1"),
                        HttpVersion::Http2 | HttpVersion::Auto => serde_json::json!({
                            "version": if g.http == HttpVersion::Http2 { "2" } else { "auto" },
                            "streams_per_connection": g.streams_per_connection,
                        }),
                    },
                    "send": g.send.as_ref().map(|s| serde_json::json!({
                        "rate": s.rate,
                        "payload_bytes": s.payload_bytes,
                        "path": s.path,
                    })),
                })
            })
            .collect();
        let publishers: Vec<Value> = self
            .publishers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "protocol": format!("{:?}", p.via).to_lowercase(),
                    "path": p.path,
                    "rate": p.rate,
                    "payload_bytes": p.payload_bytes,
                })
            })
            .collect();
        let mut key = serde_json::json!({
            "run": {
                "settle_us": us(self.run.settle),
                "warmup_us": us(self.run.warmup),
                "duration_us": us(self.run.duration),
            },
            "server": self.server.to_args(),
            "groups": groups,
            "publishers": publishers,
        });
        // Only when it is not one instance alone, so that older runs' keys still match.
        if self.server.instance_count() > 1 || self.server.redis.is_some() {
            key["deployment"] = Value::from(self.server.deployment());
        }
        key
    }

    /// A human-readable plan of what a run will do.
    #[must_use]
    pub fn plan(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario {}: {}", self.name, self.description);
        let target = self.target.as_ref().map_or_else(
            || {
                format!(
                    "bundled server (started as a child process: {})",
                    self.server.deployment()
                )
            },
            ToString::to_string,
        );
        let _ = writeln!(out, "target: {target}");
        if !self.source_addrs.is_empty() {
            let list: Vec<String> = self.source_addrs.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "source addresses: {}", list.join(", "));
        }
        let settle = if self.run.settle.is_zero() {
            String::new()
        } else {
            format!("settle {}, ", format_duration(self.run.settle))
        };
        let _ = writeln!(
            out,
            "run: {settle}warm-up {}, measure {}, hard limit {}",
            format_duration(self.run.warmup),
            format_duration(self.run.duration),
            format_duration(self.run.time_limit)
        );
        if let Some(s) = &self.sharding {
            let _ = writeln!(
                out,
                "shard {} of a run of {} connections: this shard's share below",
                s.shard, s.whole_connections
            );
        }
        for (gi, g) in self.clients.iter().enumerate() {
            let arrival = match g.arrival {
                Arrival::Rate(r) => format!("{r}/s"),
                Arrival::Ramp(d) => format!("ramp over {}", format_duration(d)),
            };
            let proto = match g.protocol {
                Protocol::Sse => "SSE",
                Protocol::Ws => "WS",
            };
            let _ = write!(
                out,
                "clients {}: {} x {proto} {} (arrival {arrival}, expect {:?}",
                g.name, g.count, g.path, g.expect
            );
            if let Some(s) = &g.send {
                let _ = write!(out, ", send {}/s of {} B", s.rate, s.payload_bytes);
            }
            if let Some(c) = g.churn {
                let _ = write!(out, ", churn every {}", format_duration(c));
            }
            if let Some(s) = &self.sharding {
                let share = s.groups[gi];
                let _ = write!(
                    out,
                    ", connections {{conn}} {}..{} of the group's {}",
                    share.conn_base,
                    share.conn_base + u64::from(g.count),
                    share.whole_count
                );
            }
            let _ = writeln!(out, ")");
        }
        for (pi, p) in self.publishers.iter().enumerate() {
            let share = match (&self.sharding, p.split) {
                (None, _) => "",
                (Some(_), true) => " (its share: split over every shard)",
                (Some(_), false) if self.publishes_here(pi) => " (publishes from this shard only)",
                (Some(_), false) => " (not in this shard: shard 0 publishes)",
            };
            let _ = writeln!(
                out,
                "publisher {}: {:?} {} at {}/s, {} B{share}",
                p.name, p.via, p.path, p.rate, p.payload_bytes
            );
        }
        for t in &self.thresholds {
            let _ = writeln!(out, "threshold: {t}");
        }
        let _ = writeln!(out, "connections: {}", self.total_connections());
        out
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
