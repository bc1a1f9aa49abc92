//! Rooms over WS: join, leave, broadcast to the other members of a room.
//!
//! Client → server: `{"type":"join","room":r}`, `{"type":"leave","room":r}`,
//! `{"type":"broadcast","room":r, …}` (extra fields forwarded). Replies:
//! `{"type":"joined","room":r,"members":n}`, `{"type":"left","room":r}`, errors as
//! `{"type":"error","message":…}`. Members get `{"type":"broadcast","room":r,"from":id, …}`.

use std::collections::HashSet;
use std::sync::Arc;

use salvo::websocket::Message;
use serde_json::{Value, json};

use super::groups::{Groups, Inbox, MAX_GROUPS_PER_CLIENT};
use super::{WsScenario, error_reply, group_name, parse_command};

/// One client's room memberships.
#[derive(Debug)]
pub(crate) struct Rooms {
    hub: Arc<Groups>,
    inbox: Inbox,
    id: u64,
    joined: HashSet<String>,
}

impl Rooms {
    pub(crate) fn new(hub: Arc<Groups>, inbox: Inbox) -> Self {
        let id = hub.client_id();
        Self {
            hub,
            inbox,
            id,
            joined: HashSet::new(),
        }
    }
}

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
        let reply = match kind.as_str() {
            "join" => {
                if !self.joined.contains(&room) && self.joined.len() >= MAX_GROUPS_PER_CLIENT {
                    return vec![error_reply(&format!(
                        "a client may be in at most {MAX_GROUPS_PER_CLIENT} rooms"
                    ))];
                }
                let members = self.hub.join(&room, self.id, &self.inbox);
                self.joined.insert(room.clone());
                json!({"type": "joined", "room": room, "members": members})
            }
            "leave" => {
                self.hub.leave(&room, self.id);
                self.joined.remove(&room);
                json!({"type": "left", "room": room})
            }
            "broadcast" => {
                if !self.joined.contains(&room) {
                    return vec![error_reply(&format!(
                        "join room \"{room}\" before broadcasting to it"
                    ))];
                }
                map.insert("from".to_owned(), Value::from(self.id));
                let out: Arc<str> = Arc::from(Value::Object(map).to_string());
                self.hub.publish(&room, Some(self.id), &out);
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

impl Drop for Rooms {
    fn drop(&mut self) {
        for room in &self.joined {
            self.hub.leave(room, self.id);
        }
    }
}
