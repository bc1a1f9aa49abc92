//! WS echo: every text or binary message comes straight back.

use salvo::websocket::Message;

use super::WsScenario;

/// Echoes messages unchanged.
#[derive(Debug)]
pub(crate) struct Echo;

impl WsScenario for Echo {
    fn on_text(&mut self, text: &str) -> Vec<Message> {
        vec![Message::text(text.to_owned())]
    }

    fn on_binary(&mut self, data: &[u8]) -> Vec<Message> {
        vec![Message::binary(data.to_vec())]
    }
}
