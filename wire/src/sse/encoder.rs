//! SSE encoder: turns events into the bytes of an event stream.

/// Errors encoding an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// A single-line field (`event`, `id`) contains a line break, which would split it.
    #[error("SSE `{0}` field contains a line break")]
    LineBreak(&'static str),
    /// An `id` contains NUL, which clients must ignore.
    #[error("SSE `id` field contains NUL")]
    NulInId,
}

/// Appends one event to `out`: optional `event:` and `id:` lines, one `data:` line per line
/// of `data` (split on LF, CRLF or CR) and the blank line that dispatches it.
///
/// An empty `data` is encoded as a single empty `data:` line, so the client still dispatches
/// an event with empty data.
///
/// # Errors
/// [`EncodeError`] when `event` or `id` contains a line break or `id` contains NUL; nothing is
/// appended in that case.
pub fn encode_event(
    out: &mut Vec<u8>,
    event: Option<&str>,
    id: Option<&str>,
    data: &str,
) -> Result<(), EncodeError> {
    let has_break = |s: &str| s.contains(['\r', '\n']);
    if event.is_some_and(has_break) {
        return Err(EncodeError::LineBreak("event"));
    }
    if let Some(id) = id {
        if has_break(id) {
            return Err(EncodeError::LineBreak("id"));
        }
        if id.contains('\0') {
            return Err(EncodeError::NulInId);
        }
    }
    out.reserve(data.len() + 32);
    if let Some(event) = event {
        push_field(out, "event", event);
    }
    if let Some(id) = id {
        push_field(out, "id", id);
    }
    for line in lines(data) {
        push_field(out, "data", line);
    }
    out.push(b'\n');
    Ok(())
}

/// Appends a comment (ignored by clients; used as keep-alive). Multi-line text becomes one
/// comment line per line.
pub fn encode_comment(out: &mut Vec<u8>, text: &str) {
    for line in lines(text) {
        out.push(b':');
        if !line.is_empty() {
            out.push(b' ');
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
}

/// Appends a `retry:` line telling the client its reconnection delay in milliseconds.
pub fn encode_retry(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(millis.to_string().as_bytes());
    out.push(b'\n');
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

/// Splits on LF, CRLF and lone CR; always yields at least one (possibly empty) line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(i) => {
                let skip = if current[i..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[i + skip..]);
                Some(&current[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: Option<&str>, id: Option<&str>, data: &str) -> String {
        let mut out = Vec::new();
        encode_event(&mut out, event, id, data).expect("valid event");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn golden_bytes() {
        assert_eq!(event(None, None, "hello"), "data: hello\n\n");
        assert_eq!(
            event(Some("price"), Some("42"), "{\"a\":1}"),
            "event: price\nid: 42\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            event(None, None, "a\nb\r\nc\rd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(event(None, None, ""), "data:\n\n");
        assert_eq!(event(None, None, "x\n"), "data: x\ndata:\n\n");
        let mut out = Vec::new();
        encode_comment(&mut out, "keep-alive");
        encode_comment(&mut out, "");
        encode_retry(&mut out, 3000);
        assert_eq!(out, b": keep-alive\n:\nretry: 3000\n");
    }

    #[test]
    fn refuses_fields_that_would_break_the_stream() {
        let mut out = Vec::new();
        assert_eq!(
            encode_event(&mut out, Some("a\nb"), None, "x"),
            Err(EncodeError::LineBreak("event"))
        );
        assert_eq!(
            encode_event(&mut out, None, Some("1\r"), "x"),
            Err(EncodeError::LineBreak("id"))
        );
        assert_eq!(
            encode_event(&mut out, None, Some("1\0"), "x"),
            Err(EncodeError::NulInId)
        );
        assert!(out.is_empty(), "nothing written on error");
    }
}
