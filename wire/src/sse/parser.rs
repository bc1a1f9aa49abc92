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

use super::event_id::EventId;

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
///
/// Fields in declaration order (`repr(C)`), the ones every event reads first: a client with
/// thousands of streams finds each stream's parser out of the CPU's caches.
#[derive(Debug)]
#[repr(C)]
pub struct Parser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// Data buffer (each data line followed by LF); empty while an event's only data line is
    /// still borrowed from the chunk being fed.
    data: String,
    /// Event type buffer.
    event_type: String,
    /// Last event ID string: the buffer as of the last dispatch; sent as `Last-Event-ID`.
    last_event_id: EventId,
    max_event_bytes: usize,
    /// The previous chunk ended in CR: a leading LF of the next chunk belongs to it.
    after_cr: bool,
    /// Still at the very first line of the stream (BOM not yet ruled out).
    at_stream_start: bool,
    /// An `id:` line was kept in `id_buffer` and not yet dispatched.
    id_pending: bool,
    /// Last event ID buffer (set by `id:` lines) while `id_pending`; otherwise the buffer
    /// equals `last_event_id` and this holds nothing meaningful.
    id_buffer: String,
    /// Reconnection time in milliseconds, once the stream set one.
    retry_ms: Option<u64>,
    /// Comments seen so far.
    comments: u64,
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
            id_pending: false,
            last_event_id: EventId::default(),
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
        self.last_event_id.as_str()
    }

    /// The last event ID *buffer*: the latest `id:` value, dispatched or not.
    #[must_use]
    pub fn last_event_id_buffer(&self) -> &str {
        if self.id_pending {
            &self.id_buffer
        } else {
            self.last_event_id.as_str()
        }
    }

    /// Reads the fields every event reads, and nothing else. A client that handles thousands
    /// of streams finds each stream's parser out of the CPU's caches; calling this before the
    /// socket read, together with the other state an event needs, lets those cache misses
    /// overlap instead of stalling one after the other while the event is handled.
    pub fn touch(&self) {
        std::hint::black_box((
            self.line.len(),
            self.data.len(),
            self.event_type.len(),
            self.max_event_bytes,
            self.after_cr,
        ));
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
        self.id_pending = false;
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
        chunk: &[u8],
        mut on_event: impl FnMut(EventRef<'_>),
    ) -> Result<(), ParseError> {
        let mut borrowed = Borrowed::default();
        let result = self.feed_lines(chunk, &mut borrowed, &mut on_event);
        // What is still borrowed from the chunk belongs to an event that goes on in the next.
        self.keep(borrowed);
        result
    }

    fn feed_lines<'c>(
        &mut self,
        mut chunk: &'c [u8],
        borrowed: &mut Borrowed<'c>,
        on_event: &mut impl FnMut(EventRef<'_>),
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
                if end + self.data_len(borrowed) > self.max_event_bytes {
                    return Err(self.too_large());
                }
                self.line_in_place(&chunk[..end], borrowed, on_event);
            } else {
                self.line.extend_from_slice(&chunk[..end]);
                if self.line.len() + self.data_len(borrowed) > self.max_event_bytes {
                    return Err(self.too_large());
                }
                let line = std::mem::take(&mut self.line);
                self.line_owned(&line, borrowed, on_event);
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
        if self.line.len() + self.data_len(borrowed) > self.max_event_bytes {
            return Err(self.too_large());
        }
        Ok(())
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

    /// Bytes in the data buffer, borrowed or kept.
    fn data_len(&self, borrowed: &Borrowed<'_>) -> usize {
        self.data.len() + borrowed.data.map_or(0, |d| d.len() + 1)
    }

    fn too_large(&self) -> ParseError {
        ParseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// The stream's first line loses one leading BOM.
    fn strip_bom<'l>(&mut self, bytes: &'l [u8]) -> &'l [u8] {
        if self.at_stream_start {
            self.at_stream_start = false;
            return bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        bytes
    }

    /// Interprets one complete line of the chunk being fed (without its line end); valid
    /// UTF-8 values (the usual case) stay borrowed from the chunk.
    fn line_in_place<'c>(
        &mut self,
        bytes: &'c [u8],
        borrowed: &mut Borrowed<'c>,
        on_event: &mut impl FnMut(EventRef<'_>),
    ) {
        match classify(self.strip_bom(bytes)) {
            Line::Blank => self.dispatch(borrowed, on_event),
            Line::Comment => self.comments += 1,
            Line::Field(name, value) => match std::str::from_utf8(value) {
                Ok(text) => self.field_borrowed(name, text, borrowed),
                Err(_) => self.field_owned(name, &String::from_utf8_lossy(value), borrowed),
            },
        }
    }

    /// Interprets one complete line assembled from several chunks; its values are copied.
    fn line_owned(
        &mut self,
        bytes: &[u8],
        borrowed: &mut Borrowed<'_>,
        on_event: &mut impl FnMut(EventRef<'_>),
    ) {
        match classify(self.strip_bom(bytes)) {
            Line::Blank => self.dispatch(borrowed, on_event),
            Line::Comment => self.comments += 1,
            Line::Field(name, value) => {
                self.field_owned(name, &String::from_utf8_lossy(value), borrowed);
            }
        }
    }

    /// A field whose value is borrowed from the chunk for as long as it is fed.
    fn field_borrowed<'c>(&mut self, name: &[u8], value: &'c str, borrowed: &mut Borrowed<'c>) {
        match name {
            b"event" => {
                self.event_type.clear();
                borrowed.event_type = Some(value);
            }
            b"data" if borrowed.data.is_none() && self.data.is_empty() => {
                borrowed.data = Some(value);
            }
            b"data" => self.push_data(value, borrowed),
            b"id" if !value.contains('\0') => {
                self.id_pending = false;
                borrowed.id = Some(value);
            }
            b"retry" => self.retry(value),
            _ => {}
        }
    }

    /// A field whose value is copied into the parser's buffers.
    fn field_owned(&mut self, name: &[u8], value: &str, borrowed: &mut Borrowed<'_>) {
        match name {
            b"event" => {
                borrowed.event_type = None;
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            b"data" => self.push_data(value, borrowed),
            b"id" if !value.contains('\0') => {
                borrowed.id = None;
                self.keep_id(value);
            }
            b"retry" => self.retry(value),
            _ => {}
        }
    }

    /// Appends a data line (with its LF) to the kept data buffer, after a borrowed first one.
    fn push_data(&mut self, value: &str, borrowed: &mut Borrowed<'_>) {
        self.keep_data(borrowed);
        self.data.push_str(value);
        self.data.push('\n');
    }

    /// Copies a borrowed first data line into the kept data buffer.
    fn keep_data(&mut self, borrowed: &mut Borrowed<'_>) {
        if let Some(first) = borrowed.data.take() {
            self.data.push_str(first);
            self.data.push('\n');
        }
    }

    fn keep_id(&mut self, value: &str) {
        self.id_buffer.clear();
        self.id_buffer.push_str(value);
        self.id_pending = true;
    }

    /// `retry` with ASCII digits only sets the reconnection time.
    fn retry(&mut self, value: &str) {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            // A value too large for u64 saturates rather than being lost.
            self.retry_ms = Some(value.parse().unwrap_or(u64::MAX));
        }
    }

    /// Copies what is still borrowed from the chunk into the parser's buffers.
    fn keep(&mut self, mut borrowed: Borrowed<'_>) {
        self.keep_data(&mut borrowed);
        if let Some(event_type) = borrowed.event_type {
            self.event_type.clear();
            self.event_type.push_str(event_type);
        }
        if let Some(id) = borrowed.id {
            self.keep_id(id);
        }
    }

    fn dispatch(&mut self, borrowed: &mut Borrowed<'_>, on_event: &mut impl FnMut(EventRef<'_>)) {
        // WHATWG step 1: the string takes the buffer's value on every dispatch, even one that
        // fires no event.
        if let Some(id) = borrowed.id.take() {
            self.last_event_id.set(id);
        } else if self.id_pending {
            self.id_pending = false;
            self.last_event_id.set(&self.id_buffer);
        }
        let event_type = borrowed.event_type.take();
        let data = match borrowed.data.take() {
            // The buffer is this one line and its LF; dispatch removes the LF.
            Some(line) => line,
            None if self.data.is_empty() => {
                self.event_type.clear();
                return;
            }
            None => {
                if self.data.ends_with('\n') {
                    self.data.pop();
                }
                &self.data
            }
        };
        let event_type = match event_type.unwrap_or(&self.event_type) {
            "" => "message",
            named => named,
        };
        on_event(EventRef {
            event_type,
            data,
            last_event_id: self.last_event_id.as_str(),
        });
        self.data.clear();
        self.event_type.clear();
    }
}

/// One complete line, classified.
enum Line<'l> {
    /// Dispatches the event.
    Blank,
    /// Starts with `:`.
    Comment,
    /// `name:value` (at most one space after the colon removed), or a name alone.
    Field(&'l [u8], &'l [u8]),
}

fn classify(bytes: &[u8]) -> Line<'_> {
    if bytes.is_empty() {
        return Line::Blank;
    }
    if bytes[0] == b':' {
        return Line::Comment;
    }
    match bytes.iter().position(|&b| b == b':') {
        Some(colon) => {
            let value = &bytes[colon + 1..];
            Line::Field(&bytes[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => Line::Field(bytes, b""),
    }
}

/// Values of the event being parsed that are still borrowed from the chunk being fed (each set
/// by a line complete within it): an event that starts and ends in one chunk is dispatched
/// without copying its data, type or id into the parser's buffers. Each overrides the
/// parser's own buffer while set.
#[derive(Default)]
struct Borrowed<'c> {
    /// The data buffer when it holds exactly one line (this value and an LF); the parser's
    /// data buffer is then empty.
    data: Option<&'c str>,
    /// The event type buffer (the parser's is then empty).
    event_type: Option<&'c str>,
    /// The last event ID buffer (the parser's is then not pending).
    id: Option<&'c str>,
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
