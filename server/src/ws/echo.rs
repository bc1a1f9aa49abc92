//! WS echo: every text or binary message comes straight back; with delay injection
//! ([`crate::injection`]) every K-th echo is held D ms and each echo's write minus receipt is
//! recorded in the echo's truth histogram.

use std::sync::Arc;
use std::time::Duration;

use salvo::websocket::Message;

use super::WsScenario;
use crate::injection::{Injection, Truth};

/// Echoes messages unchanged.
#[derive(Debug, Default)]
pub(crate) struct Echo {
    injection: Option<(Injection, Arc<Truth>)>,
    /// Messages received so far.
    received: u64,
}

impl Echo {
    /// An echo that holds every K-th reply and records the truth.
    pub(crate) fn with_injection(injection: Injection, truth: Arc<Truth>) -> Self {
        Self {
            injection: Some((injection, truth)),
            received: 0,
        }
    }
}

impl WsScenario for Echo {
    fn on_text(&mut self, text: &str) -> Vec<Message> {
        self.received += 1;
        vec![Message::text(text.to_owned())]
    }

    fn on_binary(&mut self, data: &[u8]) -> Vec<Message> {
        self.received += 1;
        vec![Message::binary(data.to_vec())]
    }

    fn hold(&mut self) -> Duration {
        self.injection
            .as_ref()
            .map_or(Duration::ZERO, |(i, _)| i.delay_for(self.received))
    }

    fn replied(&mut self, took: Duration) {
        if let Some((_, truth)) = &self.injection {
            truth.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }
}
