//! The load: SSE and WebSocket connections and publishers, all sharing one [`RunCtx`].

mod backoff;
pub(crate) mod h2pool;
pub(crate) mod json_fields;
pub(crate) mod lean;
pub(crate) mod message_fields;
pub(crate) mod post;
pub(crate) mod publisher;
pub(crate) mod request;
pub(crate) mod schedule;
pub(crate) mod send_runtime;
pub(crate) mod sse;
pub(crate) mod timer;
pub(crate) mod ws;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::live::raw_samples::{RawBudget, RawSample};
use crate::live::stats::{Metric, Shard};
use crate::live::tracker::Sequences;
use crate::live::transport::{Connector, Endpoints};
use crate::scenario::{ClientGroup, Expect, FrameSpec, Latency, StampSpec};
use schedule::Slot;
use timer::PreciseTimer;

/// How long one TCP connect plus handshake may take before it counts as a timeout.
pub(crate) use crate::live::transport::{CONNECT_TIMEOUT, ConnectError};

/// Maps monotonic instants to Unix microseconds, so stamps and receive times share a clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            base_unix_us: wire::now_unix_us(),
        }
    }

    /// Unix µs of `at`.
    pub(crate) fn unix_us(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base);
        self.base_unix_us + u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    }

    /// Unix µs now.
    pub(crate) fn now_us(&self) -> u64 {
        self.unix_us(Instant::now())
    }
}

/// A stop signal: `true` once raised.
pub(crate) type Stop = watch::Receiver<bool>;

/// Completes once `stop` is raised (or its sender is gone).
pub(crate) async fn stopped(stop: &mut Stop) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs `work` to completion unless `stop` is raised first (`None`). The stop signal is
/// checked as [`StopArming`] does, so a connection woken for every event does not lock the
/// signal's waiter list on each wake-up.
pub(crate) async fn unless_stopped<F: std::future::Future>(
    stop: &Stop,
    work: F,
) -> Option<F::Output> {
    let mut arming = StopArming::new(stop);
    let mut waiting = stop.clone();
    let mut stop_raised = std::pin::pin!(stopped(&mut waiting));
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if arming.raised(stop_raised.as_mut(), cx) {
            return std::task::Poll::Ready(None);
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Whether a stop signal was raised, asked on every wake-up of a task: the signal's future is
/// polled until it holds the task's waker, afterwards only the signal's version is checked
/// (one atomic load) until it changes.
pub(crate) struct StopArming {
    check: Stop,
    /// The signal's future holds the task's waker and the signal has not changed since.
    armed: bool,
}

impl StopArming {
    pub(crate) fn new(stop: &Stop) -> Self {
        Self {
            check: stop.clone(),
            armed: false,
        }
    }

    /// Whether the signal was raised; `stop_raised` is [`stopped`] on another receiver of the
    /// same signal, pinned by the caller, and is never polled again once this is `true`.
    pub(crate) fn raised(
        &mut self,
        stop_raised: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
        cx: &mut std::task::Context<'_>,
    ) -> bool {
        // Any change (or a gone sender) re-polls the signal, which holds the waker again.
        if self.armed && self.check.has_changed().unwrap_or(true) {
            self.armed = false;
            let _ = self.check.borrow_and_update();
        }
        if !self.armed {
            if stop_raised.poll(cx).is_ready() {
                return true;
            }
            self.armed = true;
        }
        false
    }
}

/// Longest wait for messages already sent to arrive: a held stream's last ones
/// ([`Track::hold_reached`]) and the run's drain before it closes its connections.
pub(crate) const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);

/// A deadline a connection may not have (`hold`, `churn`): pending forever when unset. The
/// timer is boxed and made only when set, so a connection without one carries a pointer
/// instead of a timer entry for its whole life.
pub(crate) struct Deadline(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl Deadline {
    /// At `at`, or never.
    pub(crate) fn at(at: Option<Instant>) -> Self {
        Self(at.map(|t| Box::pin(tokio::time::sleep_until(t))))
    }

    /// Completes once the deadline passed; never when there is none.
    pub(crate) async fn reached(&mut self) {
        std::future::poll_fn(|cx| self.poll_reached(cx)).await;
    }

    /// Ready once the deadline passed (again on every later poll); never when there is none.
    pub(crate) fn poll_reached(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        }
    }
}

/// Everything the load tasks share.
#[derive(Debug)]
pub(crate) struct RunCtx {
    /// Opens connections (TCP, TLS).
    pub(crate) connector: Connector,
    /// Where each group's and publisher's connections go.
    pub(crate) endpoints: Endpoints,
    pub(crate) token: Option<String>,
    pub(crate) clock: Clock,
    /// Wakes senders at their slots (see [`timer`]).
    pub(crate) timer: PreciseTimer,
    /// Raised at the end of the run: connections close.
    pub(crate) stop: Stop,
    /// Raised at the end of the measured phase: senders and publishers stop.
    pub(crate) stop_sending: Stop,
    /// Raised when connecting is done: senders and publishers start.
    pub(crate) start_sending: Stop,
    /// Latency samples whose *intended* time (stamp or send slot), in Unix µs, is from here
    /// (end of warm-up; 0 without a warm-up: every sample counts from the first) ...
    measure_from_us: AtomicU64,
    /// ... and before here (end of the measured phase; `u64::MAX` until it is known) are
    /// kept. Judging by intended time keeps a slow message sent at the end of the phase.
    measure_until_us: AtomicU64,
    /// Connections currently open.
    pub(crate) open: AtomicU64,
    /// Connections whose first attempt has finished (established or failed).
    pub(crate) first_attempts: AtomicU64,
    /// Messages each publisher has sent (by index).
    pub(crate) published: Vec<AtomicU64>,
    /// Messages each client group has sent (by index).
    pub(crate) group_sent: Vec<AtomicU64>,
    /// Connections of each client group whose accounting is final (by index).
    pub(crate) settled: Vec<AtomicU64>,
    /// Measured messages received, all connections (for events/s).
    pub(crate) received: AtomicU64,
    /// A few distinct connection errors, for the verdict.
    pub(crate) error_samples: Mutex<Vec<String>>,
    /// `--raw-samples`: rows admitted against the limit; `None` when not asked for.
    pub(crate) raw: Option<RawBudget>,
    /// Seed of `{rand:A..B}` placeholders (`--seed`).
    pub(crate) seed: u64,
    /// Source addresses outgoing connections are bound to, round-robin by connection index
    /// (empty: the OS picks).
    pub(crate) source_addrs: Vec<std::net::IpAddr>,
}

impl RunCtx {
    /// Shared state of one run; with `warmup` zero, samples count from the very first.
    ///
    /// # Errors
    /// The timer thread could not be started.
    pub(crate) fn new(
        (connector, endpoints): (Connector, Endpoints),
        token: Option<String>,
        signals: &Signals,
        shape: (usize, usize),
        warmup: Duration,
        raw_limit: Option<u64>,
        seed: u64,
    ) -> io::Result<Self> {
        let (groups, publishers) = shape;
        Ok(Self {
            connector,
            endpoints,
            token,
            clock: Clock::new(),
            timer: PreciseTimer::start()?,
            stop: signals.stop.subscribe(),
            stop_sending: signals.stop_sending.subscribe(),
            start_sending: signals.start_sending.subscribe(),
            measure_from_us: AtomicU64::new(if warmup.is_zero() { 0 } else { u64::MAX }),
            measure_until_us: AtomicU64::new(u64::MAX),
            open: AtomicU64::new(0),
            first_attempts: AtomicU64::new(0),
            published: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            group_sent: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            settled: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
            raw: raw_limit.map(RawBudget::new),
            seed,
            source_addrs: Vec::new(),
        })
    }

    /// Keeps up to five distinct error descriptions.
    pub(crate) fn note_error(&self, what: &str) {
        let mut samples = self
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if samples.len() < 5 && !samples.iter().any(|s| s == what) {
            samples.push(what.to_owned());
        }
    }

    /// Sets the measured window: from `from` (`None`: no warm-up, keep the start of 0)
    /// until `until`.
    pub(crate) fn set_window(&self, from: Option<Instant>, until: Instant) {
        if let Some(from) = from {
            self.measure_from_us
                .store(self.clock.unix_us(from), Ordering::Release);
        }
        self.measure_until_us
            .store(self.clock.unix_us(until), Ordering::Release);
    }

    /// Whether a sample whose intended time is `intended_us` (Unix µs) is measured.
    pub(crate) fn in_window(&self, intended_us: u64) -> bool {
        intended_us >= self.measure_from_us.load(Ordering::Acquire)
            && intended_us < self.measure_until_us.load(Ordering::Acquire)
    }

    /// Records a `connect` sample and the `tls` handshake within it, if any (kept whenever
    /// they happen: they belong to the connect phase).
    pub(crate) fn record_connect(&self, shard: &Shard, us: u64, tls_us: Option<u64>) {
        shard.record(Metric::Connect, us);
        if let Some(tls_us) = tls_us {
            shard.record(Metric::Tls, tls_us);
        }
    }

    /// Records the `send_lag` of `slot` (now minus the slot), if the slot is in the measured
    /// window; call it right before the message is written.
    pub(crate) fn record_send(&self, shard: &Shard, slot: Slot) {
        let lag = slot.lag_us();
        if self.in_window(self.clock.unix_us(slot.at)) {
            shard.record(Metric::SendLag, lag);
        }
    }

    /// Accounts for one measured message under a single shard lock: counters, its latency
    /// sample, and the first-event and reconnect latencies when they apply.
    pub(crate) fn account(&self, shard: &Shard, m: &Received) {
        let measuring = self.in_window(m.intended_us);
        let raw = measuring && self.raw.as_ref().is_some_and(RawBudget::admit);
        self.received.fetch_add(1, Ordering::Relaxed);
        shard.with(|d| {
            d.counters.messages_received += 1;
            d.counters.bytes_received += m.bytes;
            if raw {
                d.raw.push(RawSample {
                    conn: m.conn,
                    group: m.group,
                    metric: m.latency,
                    seq: m.seq,
                    intended_us: m.intended_us,
                    received_us: m.received_us,
                });
            }
            if measuring {
                d.interval.record(m.latency, m.latency_us);
                if let Some(us) = m.reconnect_us {
                    d.interval.record(Metric::Reconnect, us);
                }
            }
            if let Some(us) = m.first_event_us {
                d.interval.record(Metric::FirstEvent, us);
            }
        });
    }

    /// Total messages publisher `i` has sent.
    pub(crate) fn published(&self, i: usize) -> u64 {
        self.published[i].load(Ordering::Acquire)
    }

    /// The source address of connection `conn` (round-robin), if any were given.
    pub(crate) fn source_for(&self, conn: u64) -> Option<std::net::IpAddr> {
        let n = self.source_addrs.len() as u64;
        (n > 0).then(|| self.source_addrs[usize::try_from(conn % n).unwrap_or(0)])
    }
}

/// What one connection tracks across its reconnects, for loss and latency accounting. Fields
/// in declaration order (`repr(C)`), what every message touches first.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Track {
    /// Sequence accounting of the measured messages (first: every message touches it).
    pub(crate) tracker: Sequences,
    /// When the previous stream dropped (for `reconnect` latency).
    pub(crate) dropped_at: Option<Instant>,
    /// This connection's index over the whole run.
    pub(crate) conn: u64,
    got_first: bool,
    /// The first attempt has finished (counted in `first_attempts`).
    attempted: bool,
    /// Start of the current connection attempt.
    pub(crate) attempt_at: Instant,
    /// Messages this connection sent.
    pub(crate) sent: u64,
    /// When the current stream's previous measured message arrived (`interarrival`).
    pub(crate) last_message_at: Option<Instant>,
    /// Set when the `hold` time came: the last number this stream was due by then (see
    /// [`Track::hold_reached`]).
    held_due: Option<u64>,
}

impl Track {
    /// State of connection `conn` (its index over the whole run).
    pub(crate) fn new(conn: u64) -> Self {
        Self {
            conn,
            tracker: Sequences::default(),
            attempt_at: Instant::now(),
            dropped_at: None,
            sent: 0,
            last_message_at: None,
            got_first: false,
            attempted: false,
            held_due: None,
        }
    }

    /// The `hold` time came: notes the last number this stream is due by now (what its
    /// publisher has published, or for an echo what it sent; `None` when its numbers cannot
    /// tell: other shards' messages, or no numbered source). `true`: it may close now; `false`:
    /// messages due are still on their way and it reads on until [`Track::has_all_due`] or
    /// [`IN_FLIGHT_GRACE`], sending nothing more. (Closing at once counted a message on its way
    /// as lost.) The stream then expects exactly what it was due, or more if more arrived.
    pub(crate) fn hold_reached(&mut self, ctx: &RunCtx, group: &GroupRun) -> bool {
        self.held_due = match &group.spec.expect {
            _ if group.deferred || group.sources > 1 => None,
            Expect::Publisher(_) => group.publisher.map(|p| ctx.published(p)),
            Expect::Echo => Some(self.sent),
            _ => None,
        };
        self.has_all_due()
    }

    /// Every number due at the hold time has arrived or been skipped (numbers arrive in
    /// order, so a later one settles the earlier ones as gaps); `true` without a hold.
    pub(crate) fn has_all_due(&self) -> bool {
        self.held_due
            .is_none_or(|due| self.tracker.next_expected() > due)
    }

    /// Counts the end of the first attempt once (the connect phase waits for all).
    pub(crate) fn mark_attempted(&mut self, ctx: &RunCtx) {
        if !self.attempted {
            self.attempted = true;
            ctx.first_attempts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Accounts for one measured message with `stamp`, `bytes` long, received at `now_us`.
    pub(crate) fn measured(
        &mut self,
        ctx: &RunCtx,
        shard: &Shard,
        group: &GroupRun,
        stamp: wire::Stamp,
        bytes: u64,
        now_us: u64,
    ) {
        let spec = &group.spec;
        let group_index = u32::try_from(group.index).unwrap_or(u32::MAX);
        if matches!(
            spec.expect,
            Expect::Echo | Expect::Publisher(_) | Expect::Stream
        ) {
            // The first message after a reconnect shows what was missed while down.
            let resumed = self.dropped_at.is_some();
            let gaps_before = self.tracker.totals().0;
            self.tracker.observe(stamp.seq, group.sources);
            if resumed {
                Self::count_across(shard, self.tracker.totals().0.saturating_sub(gaps_before));
            }
        }
        let first_event_us = (!self.got_first).then(|| elapsed_us(self.attempt_at));
        self.got_first = true;
        let received = Received {
            conn: self.conn,
            group: group_index,
            seq: stamp.seq,
            received_us: now_us,
            latency: match spec.latency {
                Latency::Delivery => Metric::Delivery,
                Latency::Rtt => Metric::WsRtt,
            },
            latency_us: now_us.saturating_sub(stamp.ts),
            intended_us: stamp.ts,
            bytes,
            first_event_us,
            reconnect_us: self.dropped_at.take().map(elapsed_us),
        };
        ctx.account(shard, &received);
    }

    fn count_across(shard: &Shard, gaps: u64) {
        if gaps > 0 {
            shard.count(|c| c.gaps_across_reconnects += gaps);
        }
    }

    /// Accounts for one message of an unstamped stream: counts, bytes, `first_event`,
    /// `reconnect`, `interarrival` and, with the SSE id as sequence, gaps and duplicates.
    pub(crate) fn unstamped(&mut self, ctx: &RunCtx, shard: &Shard, seq: Option<u64>, bytes: u64) {
        if let Some(seq) = seq {
            self.tracker.observe(seq, 1);
        }
        let now = Instant::now();
        let first_event_us = (!self.got_first).then(|| elapsed_us(self.attempt_at));
        self.got_first = true;
        let interarrival_us = self
            .last_message_at
            .replace(now)
            .map(|previous| u64::try_from((now - previous).as_micros()).unwrap_or(u64::MAX));
        let reconnect_us = self.dropped_at.take().map(elapsed_us);
        let measuring = ctx.in_window(ctx.clock.unix_us(now));
        ctx.received.fetch_add(1, Ordering::Relaxed);
        shard.with(|d| {
            d.counters.messages_received += 1;
            d.counters.bytes_received += bytes;
            if measuring {
                if let Some(us) = interarrival_us {
                    d.interval.record(Metric::Interarrival, us);
                }
                if let Some(us) = reconnect_us {
                    d.interval.record(Metric::Reconnect, us);
                }
            }
            if let Some(us) = first_event_us {
                d.interval.record(Metric::FirstEvent, us);
            }
        });
    }

    /// Final accounting when the connection is done for good: what it was expected to receive
    /// (per its group's `expect`) and its sequence tracker's counts.
    pub(crate) fn settle(&mut self, ctx: &RunCtx, group: &GroupRun, shard: &Shard) {
        let tracker = &mut self.tracker;
        let gaps_before = tracker.totals().0;
        ctx.settled[group.index].fetch_add(1, Ordering::Relaxed);
        let expected = match &group.spec.expect {
            // Messages from other shards: `loadgen merge` reconciles them.
            _ if group.deferred => 0,
            Expect::Echo => {
                tracker.finish(self.sent);
                self.sent
            }
            Expect::Publisher(_) => {
                let published = match self.held_due {
                    // Closed by its hold: what was due then, and anything newer that came.
                    Some(due) => due.max(tracker.next_expected().saturating_sub(1)),
                    None => group.publisher.map_or(0, |p| ctx.published(p)),
                };
                tracker.finish(published);
                published
            }
            Expect::Stream => tracker.next_expected() - 1,
            Expect::Peers => ctx.group_sent[group.index]
                .load(Ordering::Acquire)
                .saturating_sub(self.sent),
            Expect::Nothing => 0,
        };
        let (gaps, duplicates, out_of_order) = tracker.totals();
        if self.dropped_at.is_some() {
            // Still reconnecting at the end: the missing tail fell while it was down.
            Self::count_across(shard, gaps.saturating_sub(gaps_before));
        }
        shard.count(|c| {
            c.messages_expected += expected;
            c.gaps += gaps;
            c.duplicates += duplicates;
            c.out_of_order += out_of_order;
        });
    }
}

/// Microseconds since `since`.
pub(crate) fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One measured message as seen by a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Connection index over the run.
    pub(crate) conn: u64,
    /// Client group index.
    pub(crate) group: u32,
    /// The message's `seq`.
    pub(crate) seq: u64,
    /// Receive time, Unix µs.
    pub(crate) received_us: u64,
    /// `delivery` or `ws_rtt`.
    pub(crate) latency: Metric,
    /// Receive time minus the stamp, µs.
    pub(crate) latency_us: u64,
    /// The stamp: intended send time, Unix µs (decides whether the sample is measured).
    pub(crate) intended_us: u64,
    /// Message size.
    pub(crate) bytes: u64,
    /// Set on the connection's first measured message: connect start to now, µs.
    pub(crate) first_event_us: Option<u64>,
    /// Set on the first message after a resume: drop to now, µs.
    pub(crate) reconnect_us: Option<u64>,
}

/// The senders of the run's phase signals.
#[derive(Debug)]
pub(crate) struct Signals {
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) stop_sending: watch::Sender<bool>,
    pub(crate) start_sending: watch::Sender<bool>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            stop_sending: watch::channel(false).0,
            start_sending: watch::channel(false).0,
        }
    }
}

/// One client group at run time.
#[derive(Debug)]
pub(crate) struct GroupRun {
    pub(crate) index: usize,
    pub(crate) spec: ClientGroup,
    /// Index of the publisher this group expects messages from.
    pub(crate) publisher: Option<usize>,
    /// Sources interleaved in the expected sequence: the shard count for a split
    /// publisher's subscribers, 1 otherwise.
    pub(crate) sources: u64,
    /// Loss cannot be known in this shard (messages from other shards): expected counts
    /// are left to `loadgen merge`, sequences are still checked.
    pub(crate) deferred: bool,
    /// SSE over HTTP/2: the group's shared connections.
    pub(crate) h2: h2pool::H2Pool,
    /// Where the group's messages keep their type and stamp.
    pub(crate) fields: message_fields::MessageFields,
}

/// Where and how a sent message carries its stamp: the field names and unit, the JSON
/// pointer of the object that holds them, and the frame prefix before the JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) fields: &'a wire::StampFields,
    pub(crate) pointer: &'a str,
    pub(crate) prefix: &'a str,
}

impl<'a> Outgoing<'a> {
    /// As a group reads its own messages back (echo, peers): its stamp and frame.
    pub(crate) fn of(stamp: &'a StampSpec, frame: &'a FrameSpec) -> Self {
        Self {
            fields: &stamp.fields,
            pointer: &stamp.pointer,
            prefix: &frame.prefix,
        }
    }
}

/// Builds the text of a stamped message: the template with `seq` and `ts` (µs, converted to
/// the stamp's unit) added to the object at the pointer and, when `payload_bytes` asks for
/// more, a `pad` field of `x`s there; the frame prefix before it.
pub(crate) fn stamped_message(
    template: &Value,
    out: Outgoing<'_>,
    seq: u64,
    ts_us: u64,
    payload_bytes: usize,
) -> String {
    let ts = match out.fields.unit {
        wire::TimeUnit::Us => ts_us,
        wire::TimeUnit::Ms => ts_us / 1000,
        wire::TimeUnit::Ns => ts_us.saturating_mul(1000),
    };
    let mut value = template.clone();
    let holder = if out.pointer.is_empty() {
        Some(&mut value)
    } else {
        value.pointer_mut(out.pointer)
    };
    // Validated when the scenario was loaded: an object is there.
    let Some(Value::Object(map)) = holder else {
        return format!("{}{value}", out.prefix);
    };
    map.insert(out.fields.seq.clone(), Value::from(seq));
    map.insert(out.fields.ts.clone(), Value::from(ts));
    let text = value.to_string();
    let len = out.prefix.len() + text.len();
    if len + 9 >= payload_bytes {
        return format!("{}{text}", out.prefix);
    }
    let holder = if out.pointer.is_empty() {
        Some(&mut value)
    } else {
        value.pointer_mut(out.pointer)
    };
    if let Some(Value::Object(map)) = holder {
        map.insert(
            "pad".to_owned(),
            Value::from("x".repeat(payload_bytes - len - 9)),
        );
    }
    format!("{}{value}", out.prefix)
}

/// Reads the stamp of a parsed JSON message at `spec.pointer`; `None` when it has none. The
/// tree-based reading the clients did before [`message_fields`]: the tests' reference model.
#[cfg(test)]
pub(crate) fn read_stamp(
    value: &Value,
    spec: &StampSpec,
) -> Option<Result<wire::Stamp, wire::StampError>> {
    let holder = if spec.pointer.is_empty() {
        value
    } else {
        value.pointer(&spec.pointer)?
    };
    let object = holder.as_object()?;
    if !object.contains_key(&spec.fields.seq) && !object.contains_key(&spec.fields.ts) {
        return None;
    }
    Some(spec.fields.decode_value(holder))
}

/// Reads the stamp of a message text. Fast path (stamp at the top level): one pass over the
/// text, no JSON tree; otherwise a tree. `None` when the message has no stamp. The tests'
/// reference model for [`message_fields::MessageFields::stamp_of`].
#[cfg(test)]
pub(crate) fn stamp_of_text(
    text: &str,
    spec: &StampSpec,
) -> Option<Result<wire::Stamp, wire::StampError>> {
    if spec.pointer.is_empty() {
        return match spec.fields.decode(text) {
            Err(wire::StampError::MissingField(_)) => None,
            other => Some(other),
        };
    }
    let value: Value = serde_json::from_str(text).ok()?;
    read_stamp(&value, spec)
}

/// The `missed` count of a server `lagged`/`lost` notice.
pub(crate) fn missed_of(value: &Value) -> u64 {
    value.get("missed").and_then(Value::as_u64).unwrap_or(0)
}

/// Shared per-run state handed to every task.
pub(crate) type Ctx = Arc<RunCtx>;

/// A deterministic fraction in [0, 1) from an id, to spread send slots across connections.
pub(crate) fn fastrand_fraction(id: u64) -> f64 {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work that finishes first gives its output; a stop raised while the work keeps waking
    /// up (the armed path: the signal is only checked then) ends it; a stop raised before
    /// the call ends it at once.
    #[tokio::test]
    async fn unless_stopped_runs_work_until_the_stop_is_raised() {
        let (tx, rx) = watch::channel(false);
        assert_eq!(unless_stopped(&rx, async { 7 }).await, Some(7));
        let spins = Arc::new(AtomicU64::new(0));
        let busy = {
            let spins = Arc::clone(&spins);
            async move {
                loop {
                    spins.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        };
        let raise = async {
            while spins.load(Ordering::Relaxed) < 100 {
                tokio::task::yield_now().await;
            }
            tx.send_replace(true);
        };
        // Bounded: a stop that is never seen would spin forever.
        let (stopped_work, ()) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(unless_stopped(&rx, busy), raise)
        })
        .await
        .expect("the raised stop ended the work");
        assert_eq!(stopped_work, None);
        assert_eq!(
            unless_stopped(&rx, std::future::pending::<()>()).await,
            None
        );
    }

    #[test]
    fn stamped_messages_are_padded_to_size() {
        let template = serde_json::json!({"type": "chat"});
        let fields = wire::StampFields::default();
        let plain = Outgoing {
            fields: &fields,
            pointer: "",
            prefix: "",
        };
        let small = stamped_message(&template, plain, 1, 2, 0);
        assert_eq!(small, r#"{"seq":1,"ts":2,"type":"chat"}"#);
        let big = stamped_message(&template, plain, 1, 2, 200);
        assert!(big.len() >= 200 && big.len() < 210, "{}", big.len());
        assert_eq!(wire::Stamp::decode(&big), Ok(wire::Stamp { seq: 1, ts: 2 }));
    }

    #[test]
    fn foreign_frames_carry_the_stamp_at_the_pointer_after_the_prefix() {
        let fields = wire::StampFields {
            seq: "n".into(),
            ts: "t".into(),
            unit: wire::TimeUnit::Ms,
        };
        let socket_io = Outgoing {
            fields: &fields,
            pointer: "/1",
            prefix: "42",
        };
        let template = serde_json::json!(["echo", {"room": "r1"}]);
        let text = stamped_message(&template, socket_io, 7, 5_000_000, 0);
        assert_eq!(text, r#"42["echo",{"n":7,"room":"r1","t":5000}]"#);
        let padded = stamped_message(&template, socket_io, 7, 5_000_000, 100);
        assert!(padded.starts_with("42[") && padded.len() >= 100, "{padded}");
        let spec = StampSpec {
            fields: fields.clone(),
            pointer: "/1".into(),
            kind: crate::scenario::StampKind::Json,
        };
        let frame = FrameSpec {
            prefix: "42".into(),
            type_pointer: "/0".into(),
        };
        let json = frame.payload(&padded).expect("prefixed");
        let stamp = stamp_of_text(json, &spec).and_then(Result::ok);
        assert_eq!(
            stamp,
            Some(wire::Stamp {
                seq: 7,
                ts: 5_000_000
            })
        );
        assert_eq!(frame.payload("2"), None, "a control frame has no prefix");
    }

    #[test]
    fn stamps_are_found_at_the_pointer() {
        let spec = StampSpec {
            fields: wire::StampFields::default(),
            pointer: "/data".into(),
            kind: crate::scenario::StampKind::Json,
        };
        let v: Value = serde_json::json!({"type": "message", "data": {"seq": 3, "ts": 4}});
        assert_eq!(
            read_stamp(&v, &spec).and_then(Result::ok),
            Some(wire::Stamp { seq: 3, ts: 4 })
        );
        let control: Value = serde_json::json!({"type": "subscribed"});
        assert!(read_stamp(&control, &spec).is_none());
        let broken: Value = serde_json::json!({"data": {"seq": "x", "ts": 4}});
        assert!(matches!(read_stamp(&broken, &spec), Some(Err(_))));
    }
}
