//! Pub/sub topics over WS, with HTTP publish.
//!
//! Client → server: `{"type":"subscribe","topic":t}`, `{"type":"unsubscribe","topic":t}`,
//! `{"type":"publish","topic":t,"data":…}`. Replies: `{"type":"subscribed","topic":t}`,
//! `{"type":"unsubscribed","topic":t}`, `{"type":"published","topic":t,"delivered":n}`.
//! Every subscriber of `t` (the publisher too, if subscribed) gets
//! `{"type":"message","topic":t,"data":…}`; `POST /publish/{topic}` with a JSON body
//! delivers the same message with the body as `data`.

use std::sync::Arc;

use salvo::websocket::Message;
use serde_json::{Value, json};

use super::groups::{Groups, MAX_GROUPS_PER_CLIENT, Membership};
use super::{WsScenario, error_reply, group_name, parse_command};

/// Delivers `data` to the subscribers of `topic`; returns how many queues took it.
pub(crate) fn publish(hub: &Groups, topic: &str, data: &Value) -> usize {
    let out: Arc<str> =
        Arc::from(json!({"type": "message", "topic": topic, "data": data}).to_string());
    hub.publish(topic, None, &out)
}

/// One client's subscriptions.
#[derive(Debug)]
pub(crate) struct PubSub(pub(crate) Membership);

impl WsScenario for PubSub {
    fn on_text(&mut self, text: &str) -> Vec<Message> {
        let (kind, mut map) = match parse_command(text) {
            Ok(command) => command,
            Err(reply) => return vec![reply],
        };
        let topic = match group_name(&map, "topic") {
            Ok(topic) => topic,
            Err(reply) => return vec![reply],
        };
        let member = &mut self.0;
        let reply = match kind.as_str() {
            "subscribe" => match member.join(&topic) {
                Ok(_) => json!({"type": "subscribed", "topic": topic}),
                Err(_) => {
                    let msg =
                        format!("a client may subscribe to at most {MAX_GROUPS_PER_CLIENT} topics");
                    return vec![error_reply(&msg)];
                }
            },
            "unsubscribe" => {
                member.leave(&topic);
                json!({"type": "unsubscribed", "topic": topic})
            }
            "publish" => {
                let data = map.remove("data").unwrap_or(Value::Null);
                let delivered = publish(member.hub(), &topic, &data);
                json!({"type": "published", "topic": topic, "delivered": delivered})
            }
            other => {
                return vec![error_reply(&format!(
                    "unknown type \"{other}\"; expected \"subscribe\", \"unsubscribe\" or \"publish\""
                ))];
            }
        };
        vec![Message::text(reply.to_string())]
    }
}
