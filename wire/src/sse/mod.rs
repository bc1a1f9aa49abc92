//! Server-Sent Events: an encoder for the server and an incremental parser for clients.
//!
//! The parser implements the WHATWG HTML "server-sent events" interpretation rules; see
//! [`Parser`] for the exact list.

mod encoder;
mod event_id;
mod parser;

pub use encoder::{EncodeError, encode_comment, encode_event, encode_retry};
pub use parser::{DEFAULT_MAX_EVENT_BYTES, Event, EventRef, ParseError, Parser};

/// The `Content-Type` of an event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";
