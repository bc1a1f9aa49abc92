//! SSE routes: validate the request, admit it under the limit, start the stream.

use std::sync::Arc;
use std::time::Duration;

use salvo::http::StatusCode;
use salvo::prelude::*;
use serde_json::{Value, json};

use super::common::{
    BodyError, accepted, admit, bad_request, body_object, body_text, last_event_id, query_in_range,
    reject, state,
};
use crate::injection::Injection;
use crate::metrics::Scenario;
use crate::sse::chat::PostError;
use crate::sse::counter::Counter;
use crate::sse::dashboard::Dashboard;
use crate::sse::replay::ReplayHub;
use crate::sse::stocks::Stocks;
use crate::sse::{Initial, StreamSettings, respond};
use crate::state::AppState;

/// Most events `?count=` may ask for.
const MAX_COUNT: u64 = 1_000_000_000;

/// Longest accepted tick interval for `?interval_ms=`: one hour.
const MAX_INTERVAL_MS: u64 = 3_600_000;

fn settings(app: &AppState) -> StreamSettings {
    StreamSettings {
        keepalive: app.config.keepalive,
        retry: app.config.retry,
        shutdown: app.shutdown.clone(),
    }
}

fn body_error(app: &AppState, res: &mut Response, e: &BodyError) {
    reject(app, res, e.status, &e.message);
}

/// `GET /sse/counter?interval_ms=N[&count=C][&delay_every=K&delay_ms=D]`: ticks; resumes
/// after `Last-Event-ID`; optionally ends after C events, and writes every K-th event D ms
/// late (see [`crate::injection`]).
#[handler]
pub(crate) async fn counter(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let parsed = query_in_range(req, "interval_ms", 1, MAX_INTERVAL_MS)
        .and_then(|i| Ok((i, last_event_id(req)?, Injection::from_request(req)?)))
        .and_then(|p| Ok((p, query_in_range(req, "count", 1, MAX_COUNT)?)));
    let ((interval_ms, last, injection), count) = match parsed {
        Ok(v) => v,
        Err(msg) => return bad_request(&app, res, &msg),
    };
    let interval = interval_ms.map_or(app.config.counter_interval, Duration::from_millis);
    let Some(guard) = admit(&app, Scenario::Counter, res) else {
        return;
    };
    let first = last.map_or(1, |l| l.saturating_add(1));
    let mut ticks = Counter::new(interval, first);
    if let (Some(injection), Some(truth)) = (injection, app.metrics.truth(Scenario::Counter)) {
        ticks = ticks.with_injection(injection, truth);
    }
    if let Some(count) = count {
        ticks = ticks.with_count(count);
    }
    respond(res, &settings(&app), guard, Initial::default(), ticks);
}

/// `GET /sse/stocks?symbols=N&rate=R`: `price` events, R per second over N symbols.
#[handler]
pub(crate) async fn stocks(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let parsed = query_in_range(req, "symbols", 1, 10_000)
        .and_then(|s| Ok((s, query_in_range(req, "rate", 1, 100_000)?)));
    let (symbols, rate) = match parsed {
        Ok(v) => v,
        Err(msg) => return bad_request(&app, res, &msg),
    };
    let Some(guard) = admit(&app, Scenario::Stocks, res) else {
        return;
    };
    let feed = Stocks::new(
        symbols.unwrap_or(app.config.stock_symbols),
        rate.unwrap_or(app.config.stock_rate),
    );
    respond(res, &settings(&app), guard, Initial::default(), feed);
}

/// `GET /sse/chat`: joins the chat; the first event is `user` with `{"id":…}` (with a
/// backplane, ids are unique over every instance).
#[handler]
pub(crate) async fn chat_connect(depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let Some(guard) = admit(&app, Scenario::SseChat, res) else {
        return;
    };
    let metrics = app.metrics.scenario(Scenario::SseChat);
    let (stream, hello) = match &app.backplane {
        None => app.sse_chat.join(metrics),
        Some(backplane) => match backplane.chat_join().await {
            Ok(id) => app.sse_chat.join_as(id, metrics),
            Err(e) => return unavailable(res, &format!("cannot join the chat: {e}")),
        },
    };
    respond(res, &settings(&app), guard, hello, stream);
}

/// Answers 503 with `message`: the backplane is away.
fn unavailable(res: &mut Response, message: &str) {
    res.status_code(StatusCode::SERVICE_UNAVAILABLE);
    res.render(Text::Plain(format!("{message}\n")));
}

/// `POST /sse/chat/{user}`: broadcasts the body to every other user. A JSON-object body is
/// forwarded with `from` added (so stamps pass through); any other text becomes
/// `{"from":user,"text":body}`.
#[handler]
pub(crate) async fn chat_post(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let Some(user) = req
        .param::<String>("user")
        .and_then(|u| u.parse::<u64>().ok())
    else {
        return bad_request(&app, res, "user id in the path must be a decimal number");
    };
    let text = match body_text(req, app.config.max_body_bytes).await {
        Ok(text) => text,
        Err(e) => return body_error(&app, res, &e),
    };
    let mut object = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        _ => {
            let mut map = serde_json::Map::new();
            map.insert("text".to_owned(), Value::from(text.clone()));
            map
        }
    };
    object.insert("from".to_owned(), Value::from(user));
    // With a backplane the user may hold its stream on another instance.
    if let Some(backplane) = &app.backplane
        && !app.sse_chat.is_here(user)
    {
        match backplane.chat_user_exists(user).await {
            Ok(true) => {}
            Ok(false) => {
                let msg = format!("no connected chat user {user}");
                return reject(&app, res, StatusCode::NOT_FOUND, &msg);
            }
            Err(e) => return unavailable(res, &format!("cannot check chat user {user}: {e}")),
        }
    }
    match app.sse_chat.post(user, &Value::Object(object).to_string()) {
        Ok(delivered) => {
            app.metrics.scenario(Scenario::SseChat).received(text.len());
            accepted(res, &json!({"delivered": delivered}));
        }
        Err(PostError::Backplane) => {
            unavailable(res, "the backplane's queue is full");
        }
        Err(PostError::UnknownUser) => {
            reject(
                &app,
                res,
                StatusCode::NOT_FOUND,
                &format!("no connected chat user {user}"),
            );
        }
    }
}

async fn subscribe(req: &mut Request, res: &mut Response, app: &Arc<AppState>, scenario: Scenario) {
    let drop_after = if scenario == Scenario::Replay {
        query_in_range(req, "drop_after", 1, u64::MAX)
    } else {
        Ok(None)
    };
    let parsed = drop_after.and_then(|d| Ok((d, last_event_id(req)?)));
    let (drop_after, last) = match parsed {
        Ok(v) => v,
        Err(msg) => return bad_request(app, res, &msg),
    };
    let Some(guard) = admit(app, scenario, res) else {
        return;
    };
    let hub = hub(app, scenario);
    let (stream, initial) = hub.subscribe(last, drop_after, app.metrics.scenario(scenario));
    respond(res, &settings(app), guard, initial, stream);
}

fn hub(app: &AppState, scenario: Scenario) -> &ReplayHub {
    if scenario == Scenario::Replay {
        &app.replay
    } else {
        &app.notifications
    }
}

/// Publishes a JSON-object body. A publisher-supplied `seq`/`ts` (non-negative integers) are
/// kept, so a load generator can measure end to end; missing ones are filled with the event
/// id and the current time (µs).
async fn publish(req: &mut Request, res: &mut Response, app: &Arc<AppState>, scenario: Scenario) {
    let (mut object, len) = match body_object(req, app.config.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return body_error(app, res, &e),
    };
    if let Some(msg) = stamp_field_error(&object) {
        return bad_request(app, res, &msg);
    }
    let metrics = app.metrics.scenario(scenario);
    let now = wire::now_unix_us();
    if let Some(backplane) = &app.backplane {
        // Every instance, this one included, gets the event from Redis with the same id.
        object.entry("ts").or_insert(Value::from(now));
        let entry = crate::backplane::Entry {
            fill_seq: !object.contains_key("seq"),
            body: Value::Object(object).to_string(),
        };
        let name = if scenario == Scenario::Replay {
            "replay"
        } else {
            "notifications"
        };
        match backplane
            .publish(name, app.config.replay_capacity, &entry)
            .await
        {
            Ok(id) => {
                metrics.received(len);
                let here = hub(app, scenario).subscribers();
                accepted(res, &json!({"id": id, "subscribers": here}));
            }
            Err(e) => unavailable(res, &format!("cannot publish: {e}")),
        }
        return;
    }
    let published = hub(app, scenario).publish(|id| {
        object.entry("seq").or_insert(Value::from(id));
        object.entry("ts").or_insert(Value::from(now));
        Value::Object(std::mem::take(&mut object)).to_string()
    });
    metrics.received(len);
    accepted(
        res,
        &json!({"id": published.id, "subscribers": published.subscribers}),
    );
}

/// Why a published object's `seq` or `ts` cannot be kept (present but not a non-negative
/// integer), if it cannot.
pub(crate) fn stamp_field_error(object: &serde_json::Map<String, Value>) -> Option<String> {
    ["seq", "ts"]
        .into_iter()
        .find(|field| object.get(*field).is_some_and(|v| v.as_u64().is_none()))
        .map(|field| format!("`{field}` must be a non-negative integer"))
}

/// `GET /sse/notifications`: named `notification` events with ids; resumes after
/// `Last-Event-ID`.
#[handler]
pub(crate) async fn notifications(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    subscribe(req, res, &state(depot), Scenario::Notifications).await;
}

/// `POST /sse/notifications`: publishes a notification.
#[handler]
pub(crate) async fn notifications_publish(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) {
    publish(req, res, &state(depot), Scenario::Notifications).await;
}

/// `GET /sse/replay?drop_after=N`: replayable events; the server ends the stream after N
/// live events to force a reconnect.
#[handler]
pub(crate) async fn replay(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    subscribe(req, res, &state(depot), Scenario::Replay).await;
}

/// `POST /sse/replay`: publishes into the replay stream.
#[handler]
pub(crate) async fn replay_publish(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    publish(req, res, &state(depot), Scenario::Replay).await;
}

/// `GET /sse/metrics?interval_ms=N`: the server's counters as `metrics` events.
#[handler]
pub(crate) async fn dashboard(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let every = match query_in_range(req, "interval_ms", 50, MAX_INTERVAL_MS) {
        Ok(ms) => Duration::from_millis(ms.unwrap_or(1000)),
        Err(msg) => return bad_request(&app, res, &msg),
    };
    let Some(guard) = admit(&app, Scenario::Dashboard, res) else {
        return;
    };
    let source = Dashboard::new(Arc::clone(&app.metrics), every, app.config.max_connections);
    respond(res, &settings(&app), guard, Initial::default(), source);
}
