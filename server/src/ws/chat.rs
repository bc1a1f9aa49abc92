//! WS chat: tagged JSON messages broadcast to every other client.
//!
//! Client → server: `{"type":"chat", …}` and `{"type":"typing"}`; any extra fields (such as
//! `seq`/`ts` stamps) are forwarded unchanged. Server → others: the same object with `from`
//! set to the sender's id. The server announces `{"type":"join","from":id}` and
//! `{"type":"leave","from":id}`; each client first gets `{"type":"welcome","id":id}`.

use std::sync::Arc;

use salvo::websocket::Message;
use serde_json::{Value, json};

use super::groups::{Groups, Inbox};
use super::{WsScenario, error_reply, parse_command};

const LOBBY: &str = "lobby";

/// One chat participant.
#[derive(Debug)]
pub(crate) struct Chat {
    hub: Arc<Groups>,
    id: u64,
}

impl Chat {
    /// Joins the lobby, tells the others, returns the participant and its welcome message.
    pub(crate) fn join(hub: Arc<Groups>, inbox: &Inbox) -> (Self, Message) {
        let id = hub.client_id();
        hub.join(LOBBY, id, inbox);
        let joined: Arc<str> = Arc::from(json!({"type": "join", "from": id}).to_string());
        hub.publish(LOBBY, Some(id), &joined);
        let welcome = Message::text(json!({"type": "welcome", "id": id}).to_string());
        (Self { hub, id }, welcome)
    }
}

impl WsScenario for Chat {
    fn on_text(&mut self, text: &str) -> Vec<Message> {
        let (kind, mut map) = match parse_command(text) {
            Ok(command) => command,
            Err(reply) => return vec![reply],
        };
        match kind.as_str() {
            "chat" | "typing" => {
                map.insert("from".to_owned(), Value::from(self.id));
                let out: Arc<str> = Arc::from(Value::Object(map).to_string());
                self.hub.publish(LOBBY, Some(self.id), &out);
                Vec::new()
            }
            other => vec![error_reply(&format!(
                "unknown type \"{other}\"; expected \"chat\" or \"typing\""
            ))],
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        self.hub.leave(LOBBY, self.id);
        let left: Arc<str> = Arc::from(json!({"type": "leave", "from": self.id}).to_string());
        self.hub.publish(LOBBY, None, &left);
    }
}
