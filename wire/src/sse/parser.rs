//! Incremental SSE parser following the WHATWG HTML "server-sent events" interpretation rules.
//!
//! Rules implemented (each pinned by a table-driven test below):
//! 1. Lines end in CRLF, lone LF or lone CR; a CRLF split across two reads is one line end.
//! 2. One leading UTF-8 BOM (EF BB BF) at the start of the stream is skipped.
//! 3. A line starting with `:` is a comment (counted, otherwise ignored).
//! 4. `field:value` with at most one space after the colon removed; a line with no colon is a
//!    field name with an empty value.
//! 5. `data` lines are appended with a trailing LF; at dispatch one trailing LF is removed, so
//!    multi-line data is joined by `\n`.
//! 6. `event` sets the type; an empty or missing type is `message`.
//! 7. `id` sets the last-event-ID *buffer* unless the value contains NUL (an empty `id` empties
//!    it). The buffer persists across events. It becomes the last event ID *string* only when
//!    an event is dispatched (any blank line, with or without data): the string, not the
//!    buffer, is the `Last-Event-ID` to send on reconnect, so a stream cut between `id:` and
//!    the blank line resumes after the last event actually received.
//! 8. `retry` sets the reconnection time when the value is ASCII digits only.
//! 9. Unknown fields are ignored.
//! 10. A blank line dispatches; when the data buffer is empty nothing is dispatched and the
//!     data and type buffers are reset.
//! 11. An event without its trailing blank line when the stream ends is discarded ([`Parser::finish`]).
//!
//! Bytes are decoded as UTF-8 with replacement characters per line; line ends are ASCII, so no
//! multi-byte sequence is ever split by this.

/// Default limit for one event's buffered bytes (line plus data): 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Errors from the parser. After an error the stream should be dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// One event (or one line) grew past the configured limit.
    #[error("SSE event exceeds {limit} bytes")]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// A dispatched event, borrowed from the parser's buffers (no allocation per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Event type; `message` when the stream named none.
    pub event_type: &'a str,
    /// Data lines joined by `\n`.
    pub data: &'a str,
    /// The last event ID string as of this dispatch (may come from an earlier event).
    pub last_event_id: &'a str,
}

/// An owned dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event type; `message` when the stream named none.
    pub event_type: String,
    /// Data lines joined by `\n`.
    pub data: String,
    /// The last event ID string as of this dispatch.
    pub last_event_id: String,
}

impl From<EventRef<'_>> for Event {
    fn from(e: EventRef<'_>) -> Self {
        Self {
            event_type: e.event_type.to_owned(),
            data: e.data.to_owned(),
            last_event_id: e.last_event_id.to_owned(),
        }
    }
}

/// Incremental SSE parser. Feed it bytes as they arrive, in chunks of any size.
#[derive(Debug)]
pub struct Parser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// Data buffer (each data line followed by LF).
    data: String,
    /// Event type buffer.
    event_type: String,
    /// Last event ID buffer (set by `id:` lines); persists across events.
    id_buffer: String,
    /// Last event ID string: the buffer as of the last dispatch; sent as `Last-Event-ID`.
    last_event_id: String,
    /// Reconnection time in milliseconds, once the stream set one.
    retry_ms: Option<u64>,
    /// The previous chunk ended in CR: a leading LF of the next chunk belongs to it.
    after_cr: bool,
    /// Still at the very first line of the stream (BOM not yet ruled out).
    at_stream_start: bool,
    /// Comments seen so far.
    comments: u64,
    max_event_bytes: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    /// A parser with the default per-event limit ([`DEFAULT_MAX_EVENT_BYTES`]).
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses events (line plus data buffer) larger than `max` bytes.
    #[must_use]
    pub fn with_max_event_bytes(max: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            after_cr: false,
            at_stream_start: true,
            comments: 0,
            max_event_bytes: max,
        }
    }

    /// Reconnection time (ms) the stream asked for with `retry:`, if any.
    #[must_use]
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// The last event ID *string*: the ID buffer as of the last dispatched event (or blank
    /// line). This is what to send as `Last-Event-ID` when reconnecting.
    #[must_use]
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last event ID *buffer*: the latest `id:` value, dispatched or not.
    #[must_use]
    pub fn last_event_id_buffer(&self) -> &str {
        &self.id_buffer
    }

    /// Number of comment lines seen (keep-alives).
    #[must_use]
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Prepares for a new connection of the same event source: pending bytes and the
    /// partial event are dropped; the last event ID string and the reconnection time are
    /// kept, as the spec keeps them on the `EventSource` across reconnects. The ID buffer
    /// starts again from the string (as Chromium's parser does), so an `id:` that was never
    /// dispatched is forgotten with its partial event.
    pub fn reset_stream(&mut self) {
        self.id_buffer.clone_from(&self.last_event_id);
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.after_cr = false;
        self.at_stream_start = true;
    }

    /// Ends the stream. Returns `true` when a partial event (data without its dispatching
    /// blank line, or an unterminated line) was discarded, as the spec requires.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.line.is_empty() || !self.data.is_empty();
        self.reset_stream();
        discarded
    }

    /// Feeds one chunk and calls `on_event` for every event it completes.
    ///
    /// # Errors
    /// [`ParseError::EventTooLarge`] when buffered bytes exceed the limit.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        mut on_event: impl FnMut(EventRef<'_>),
    ) -> Result<(), ParseError> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            if self.line.is_empty() {
                // The whole line is in this chunk: parse it in place, without copying it.
                if end + self.data.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                self.process_line(&chunk[..end], &mut on_event);
            } else {
                self.line.extend_from_slice(&chunk[..end]);
                self.check_size()?;
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, &mut on_event);
                self.line = line;
                self.line.clear();
            }
            let skip = if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => {
                        self.after_cr = true;
                        1
                    }
                }
            } else {
                1
            };
            chunk = &chunk[end + skip..];
        }
        self.line.extend_from_slice(chunk);
        self.check_size()
    }

    /// Feeds one chunk and collects the completed events as owned values.
    ///
    /// # Errors
    /// As [`Parser::feed`].
    pub fn feed_collect(&mut self, chunk: &[u8]) -> Result<Vec<Event>, ParseError> {
        let mut events = Vec::new();
        self.feed(chunk, |e| events.push(e.into()))?;
        Ok(events)
    }

    fn check_size(&self) -> Result<(), ParseError> {
        if self.line.len() + self.data.len() > self.max_event_bytes {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> ParseError {
        ParseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// Interprets one complete line (without its line end).
    fn process_line(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(EventRef<'_>)) {
        if self.at_stream_start {
            self.at_stream_start = false;
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        if bytes.is_empty() {
            self.dispatch(on_event);
        } else if bytes[0] == b':' {
            self.comments += 1;
        } else {
            let (name, value) = match bytes.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &bytes[colon + 1..];
                    (&bytes[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (bytes, &b""[..]),
            };
            // Valid UTF-8 (the usual case) is checked by the fast validator and borrowed.
            match std::str::from_utf8(value) {
                Ok(text) => self.field(name, text),
                Err(_) => self.field(name, &String::from_utf8_lossy(value)),
            }
        }
    }

    fn field(&mut self, name: &[u8], value: &str) {
        match name {
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            b"data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => {
                self.id_buffer.clear();
                self.id_buffer.push_str(value);
            }
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only; a value too large for u64 saturates rather than being lost.
                self.retry_ms = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(EventRef<'_>)) {
        // WHATWG step 1: the string takes the buffer's value on every dispatch, even one that
        // fires no event.
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = if self.event_type.is_empty() {
            "message"
        } else {
            &self.event_type
        };
        on_event(EventRef {
            event_type,
            data: &self.data,
            last_event_id: &self.last_event_id,
        });
        self.data.clear();
        self.event_type.clear();
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
