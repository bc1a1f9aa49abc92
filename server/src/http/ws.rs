//! WebSocket routes: admit under the limit, upgrade with bounded buffers, run the session.

use std::sync::{Arc, Mutex, PoisonError};

use salvo::prelude::*;
use salvo::websocket::{Message, WebSocketUpgrade};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::common::{BodyError, accepted, admit, bad_request, body_object, reject, state};
use crate::injection::Injection;
use crate::metrics::{CloseReason, Scenario};
use crate::state::AppState;
use crate::ws::chat::Chat;
use crate::ws::echo::Echo;
use crate::ws::groups::{Membership, Outbox, mailbox};
use crate::ws::pubsub::{self as topics, PubSub};
use crate::ws::rooms::Rooms;
use crate::ws::{SessionSettings, WsScenario, run_session};

/// tungstenite settings from the server config: small read buffer (4-8 KiB instead of the
/// 128 KiB default), eager writes (no write buffer build-up while the socket accepts data),
/// a write buffer capped at two of the largest messages the server sends, and the inbound
/// message size limit.
fn ws_config(app: &AppState) -> WebSocketConfig {
    let max = app.config.max_message_bytes;
    WebSocketConfig::default()
        .read_buffer_size(app.config.ws_read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * app.config.max_outbound_message())
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// What a scenario needs once the socket is open: its behaviour, its hub queue, greetings.
type Setup<S> = (S, Option<Outbox>, Vec<Message>);

async fn upgrade<S, F>(
    req: &mut Request,
    depot: &Depot,
    res: &mut Response,
    scenario: Scenario,
    setup: F,
) where
    S: WsScenario,
    F: FnOnce(&AppState) -> Setup<S> + Send + 'static,
{
    let app = state(depot);
    let Some(guard) = admit(&app, scenario, res) else {
        return;
    };
    // The guard moves into the session; if the handshake is refused it stays here and is
    // closed as a protocol failure.
    let slot = Arc::new(Mutex::new(Some(guard)));
    let session_slot = Arc::clone(&slot);
    let settings = SessionSettings {
        ping_interval: app.config.ping_interval,
        shutdown: app.shutdown.clone(),
    };
    let session_app = Arc::clone(&app);
    let result = WebSocketUpgrade::with_config(ws_config(&app))
        .upgrade(req, res, move |ws| async move {
            let guard = session_slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(guard) = guard {
                let (behaviour, outbox, greeting) = setup(&session_app);
                run_session(ws, guard, settings, behaviour, outbox, greeting).await;
            }
        })
        .await;
    if let Err(e) = result {
        if let Some(mut guard) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
            guard.set_reason(CloseReason::Protocol);
        }
        app.metrics
            .rejected(crate::metrics::RejectReason::BadRequest);
        res.render(e);
    }
}

/// `GET /ws/echo[?delay_every=K&delay_ms=D]`: echoes text and binary messages; optionally
/// holds every K-th echo D ms (see [`crate::injection`]).
#[handler]
pub(crate) async fn echo(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let injection = match Injection::from_request(req) {
        Ok(i) => i,
        Err(msg) => return bad_request(&state(depot), res, &msg),
    };
    upgrade(req, depot, res, Scenario::WsEcho, move |app| {
        let behaviour = match (injection, app.metrics.truth(Scenario::WsEcho)) {
            (Some(injection), Some(truth)) => Echo::with_injection(injection, truth),
            _ => Echo::default(),
        };
        (behaviour, None, Vec::new())
    })
    .await;
}

/// `GET /ws/chat`: chat broadcast to every other client.
#[handler]
pub(crate) async fn chat(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    upgrade(req, depot, res, Scenario::WsChat, |app| {
        let (inbox, outbox) = mailbox(app.config.client_queue);
        let (participant, welcome) = Chat::join(Arc::clone(&app.ws_chat), &inbox);
        (participant, Some(outbox), vec![welcome])
    })
    .await;
}

/// `GET /ws/rooms`: join, leave and broadcast to rooms.
#[handler]
pub(crate) async fn rooms(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    upgrade(req, depot, res, Scenario::Rooms, |app| {
        let (inbox, outbox) = mailbox(app.config.client_queue);
        (
            Rooms(Membership::new(Arc::clone(&app.rooms), inbox)),
            Some(outbox),
            Vec::new(),
        )
    })
    .await;
}

/// `GET /ws/pubsub`: subscribe, unsubscribe and publish to topics.
#[handler]
pub(crate) async fn pubsub(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    upgrade(req, depot, res, Scenario::PubSub, |app| {
        let (inbox, outbox) = mailbox(app.config.client_queue);
        (
            PubSub(Membership::new(Arc::clone(&app.pubsub), inbox)),
            Some(outbox),
            Vec::new(),
        )
    })
    .await;
}

/// `POST /publish/{topic}`: delivers the JSON-object body to the topic's subscribers.
#[handler]
pub(crate) async fn publish(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let app = state(depot);
    let topic = req.param::<String>("topic").unwrap_or_default();
    if topic.is_empty() || topic.len() > crate::ws::groups::MAX_GROUP_NAME {
        let msg = format!(
            "topic must be 1 to {} bytes",
            crate::ws::groups::MAX_GROUP_NAME
        );
        return reject(&app, res, salvo::http::StatusCode::BAD_REQUEST, &msg);
    }
    let (object, len) = match body_object(req, app.config.max_body_bytes).await {
        Ok(body) => body,
        Err(BodyError { status, message }) => return reject(&app, res, status, &message),
    };
    app.metrics.scenario(Scenario::PubSub).received(len);
    let delivered = topics::publish(&app.pubsub, &topic, &Value::Object(object));
    accepted(res, &json!({"topic": topic, "delivered": delivered}));
}
