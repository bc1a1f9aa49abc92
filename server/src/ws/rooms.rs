//! Rooms over WS: join, leave, broadcast to the other members of a room.
//!
//! Client → server: `{"type":"join","room":r}`, `{"type":"leave","room":r}`,
//! `{"type":"broadcast","room":r, …}` (extra fields forwarded). Replies:
//! `{"type":"joined","room":r,"members":n}`, `{"type":"left","room":r}`, errors as
//! `{"type":"error","message":…}`. Members get `{"type":"broadcast","room":r,"from":id, …}`.

use std::sync::Arc;

use salvo::websocket::Message;
use serde_json::{Value, json};

use super::groups::{MAX_GROUPS_PER_CLIENT, Membership};
use super::{WsScenario, error_reply, group_name, parse_command};

/// One client's room memberships.
#[derive(Debug)]
pub(crate) struct Rooms(pub(crate) Membership);

impl WsScenario for Rooms {
    fn on_text(&mut self, text: &str) -> Vec<Message> {
        let (kind, mut map) = match parse_command(text) {
            Ok(command) => command,
            Err(reply) => return vec![reply],
        };
        let room = match group_name(&map, "room") {
            Ok(room) => room,
            Err(reply) => return vec![reply],
        };
        let member = &mut self.0;
        let reply = match kind.as_str() {
            "join" => match member.join(&room) {
                Ok(members) => json!({"type": "joined", "room": room, "members": members}),
                Err(_) => {
                    let msg = format!("a client may be in at most {MAX_GROUPS_PER_CLIENT} rooms");
                    return vec![error_reply(&msg)];
                }
            },
            "leave" => {
                member.leave(&room);
                json!({"type": "left", "room": room})
            }
            "broadcast" => {
                if !member.is_in(&room) {
                    let msg = format!("join room \"{room}\" before broadcasting to it");
                    return vec![error_reply(&msg)];
                }
                map.insert("from".to_owned(), Value::from(member.id()));
                let out: Arc<str> = Arc::from(Value::Object(map).to_string());
                member.hub().publish(&room, Some(member.id()), &out);
                return Vec::new();
            }
            other => {
                return vec![error_reply(&format!(
                    "unknown type \"{other}\"; expected \"join\", \"leave\" or \"broadcast\""
                ))];
            }
        };
        vec![Message::text(reply.to_string())]
    }
}
