//! Entry points for the fuzz targets in `fuzz/`: the server's handling of untrusted input,
//! run as a request or a WebSocket message would run it, without sockets. Each returns a
//! summary so a fuzz target can check invariants; none may panic, whatever the input.

use std::sync::Arc;

use salvo::websocket::Message;

use crate::http::common::parse_body_object;
use crate::http::sse::stamp_field_error;
use crate::metrics::{Metrics, Scenario};
use crate::sse::replay::ReplayHub;
use crate::ws::WsScenario;
use crate::ws::chat::Chat;
use crate::ws::groups::{Groups, Membership, mailbox};
use crate::ws::pubsub::PubSub;
use crate::ws::rooms::Rooms;

/// What a publish body (`POST /sse/notifications`, `/sse/replay`) became.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Refused with 400 and this message.
    Refused(String),
    /// Accepted as this event's id; `data` is the event's data as subscribers get it.
    Event {
        /// The event id.
        id: u64,
        /// The JSON data of the event.
        data: String,
    },
}

/// Handles `text` as a publish body: parse, stamp-field checks, then publication on a fresh
/// notifications hub.
#[must_use]
pub fn publish_body(text: &str) -> Published {
    let mut object = match parse_body_object(text) {
        Ok(object) => object,
        Err(e) => return Published::Refused(e.message),
    };
    if let Some(message) = stamp_field_error(&object) {
        return Published::Refused(message);
    }
    let hub = ReplayHub::new(Some("notification"), 16, 16);
    let mut data = String::new();
    let published = hub.publish(|id| {
        object.entry("seq").or_insert(serde_json::Value::from(id));
        object.entry("ts").or_insert(serde_json::Value::from(0u64));
        data = serde_json::Value::Object(std::mem::take(&mut object)).to_string();
        data.clone()
    });
    Published::Event {
        id: published.id,
        data,
    }
}

/// Replies a session sent back, and messages its hub delivered to a second client.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Replies to the sender (acks, errors).
    pub replies: usize,
    /// Messages the other client of the hub received.
    pub delivered: usize,
}

/// Feeds `messages` to one client of each WebSocket scenario that parses commands (rooms,
/// pub/sub, chat), with a second client in each hub that has joined room/topic `"a"`, as a
/// connection's session would, and counts what came back and what was delivered.
#[must_use]
pub fn ws_session(messages: &[&str]) -> Session {
    let metrics = Metrics::default();
    let mut session = Session::default();
    let hub = |scenario| Arc::new(Groups::new(metrics.scenario(scenario)));
    let (rooms, pubsub, chat) = (
        hub(Scenario::Rooms),
        hub(Scenario::PubSub),
        hub(Scenario::WsChat),
    );
    let (inbox, _outbox) = mailbox(64);
    let (peer_inbox, mut peer_outbox) = mailbox(1024);
    let mut room_peer = Rooms(Membership::new(Arc::clone(&rooms), peer_inbox.clone()));
    let mut topic_peer = PubSub(Membership::new(Arc::clone(&pubsub), peer_inbox.clone()));
    let _ = room_peer.on_text(r#"{"type":"join","room":"a"}"#);
    let _ = topic_peer.on_text(r#"{"type":"subscribe","topic":"a"}"#);
    let (_chat_peer, _) = Chat::join(Arc::clone(&chat), &peer_inbox);
    let mut clients: Vec<Box<dyn WsScenario>> = vec![
        Box::new(Rooms(Membership::new(rooms, inbox.clone()))),
        Box::new(PubSub(Membership::new(pubsub, inbox.clone()))),
        Box::new(Chat::join(chat, &inbox).0),
    ];
    for text in messages {
        for client in &mut clients {
            let replies: Vec<Message> = client.on_text(text);
            session.replies += replies.len();
        }
    }
    while peer_outbox.rx.try_recv().is_ok() {
        session.delivered += 1;
    }
    session
}
