//! The GET request of an SSE stream and its response head (parsed with httparse).

use hyper::header::HeaderMap;

/// Largest response head accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most response header lines accepted.
const MAX_HEADERS: usize = 64;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`.
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// What the response head says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// `Content-Type` (empty when absent).
    pub(crate) content_type: String,
    /// `Location`, for redirects.
    pub(crate) location: Option<String>,
    pub(crate) framing: Framing,
}

/// A response head that is not HTTP/1.x.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed HTTP response head: {0}")]
pub(crate) struct HeadError(pub(crate) String);

/// Appends the request of an SSE stream to `out`: `GET path`, `Host`, `Accept:
/// text/event-stream`, `Cache-Control: no-cache`, `Last-Event-ID` when resuming, then
/// `headers` (which replace none of these: names were checked when the scenario loaded).
pub(crate) fn write_get(
    out: &mut Vec<u8>,
    path: &str,
    host: &str,
    last_event_id: &str,
    headers: &HeaderMap,
) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\naccept: text/event-stream\r\ncache-control: no-cache\r\n");
    if !last_event_id.is_empty() {
        out.extend_from_slice(b"last-event-id: ");
        out.extend_from_slice(last_event_id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    end_head(out, headers);
}

/// Appends `headers` as header lines, then the blank line that ends a request head.
pub(crate) fn end_head(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the head at the start of `buf`: `Ok(None)` while incomplete, else the head and its
/// length in bytes (the body starts there).
///
/// # Errors
/// [`HeadError`] for a head that is not valid HTTP/1.x or too large.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut head = Head {
        status: 0,
        content_type: String::new(),
        location: None,
        framing: Framing::Close,
    };
    let parsed = parse_with(buf, |name, value| {
        if name.eq_ignore_ascii_case("content-type") {
            value.clone_into(&mut head.content_type);
        } else if name.eq_ignore_ascii_case("location") {
            head.location = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if last.eq_ignore_ascii_case("chunked") {
                head.framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("content-length") && head.framing != Framing::Chunked {
            let n = value
                .parse::<u64>()
                .map_err(|_| HeadError(format!("Content-Length {value:?}")))?;
            head.framing = Framing::Length(n);
        }
        Ok(())
    })?;
    Ok(parsed.map(|(status, len)| (Head { status, ..head }, len)))
}

/// Parses a response head at the start of `buf` with httparse, handing each header (name,
/// trimmed value) to `on_header`: `Ok(None)` while incomplete, else the status and the head's
/// length in bytes.
///
/// # Errors
/// [`HeadError`] for a head that is not valid HTTP/1.x or too large, or what `on_header` says.
pub(crate) fn parse_with(
    buf: &[u8],
    mut on_header: impl FnMut(&str, &str) -> Result<(), HeadError>,
) -> Result<Option<(u16, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HeadError(format!("larger than {} KiB", MAX_HEAD / 1024)));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError(e.to_string())),
    };
    for h in response.headers.iter() {
        on_header(h.name, String::from_utf8_lossy(h.value).trim())?;
    }
    Ok(Some((response.code.unwrap_or(0), len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    #[test]
    fn the_request_carries_host_accept_last_event_id_and_the_scenario_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer t"),
        );
        let mut out = Vec::new();
        write_get(&mut out, "/sse?x=1", "api.example.com", "41", &headers);
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "GET /sse?x=1 HTTP/1.1\r\nhost: api.example.com\r\naccept: text/event-stream\r\ncache-control: no-cache\r\nlast-event-id: 41\r\nauthorization: Bearer t\r\n\r\n"
        );
    }

    #[test]
    fn heads_parse_in_pieces_with_their_framing() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        for cut in 0..wire.len() - 3 {
            assert_eq!(parse(&wire[..cut]), Ok(None), "cut {cut}");
        }
        let (head, len) = parse(wire).expect("valid").expect("complete");
        assert_eq!(head.status, 200);
        assert_eq!(head.content_type, "text/event-stream");
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(&wire[len..], b"5\r\n");
        let (head, _) =
            parse(b"HTTP/1.1 302 Found\r\nLocation: https://x/y\r\nContent-Length: 0\r\n\r\n")
                .expect("valid")
                .expect("complete");
        assert_eq!(
            (head.status, head.location.as_deref()),
            (302, Some("https://x/y"))
        );
        assert_eq!(head.framing, Framing::Length(0));
        let (head, _) = parse(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.framing, Framing::Close);
    }

    #[test]
    fn broken_or_huge_heads_are_errors() {
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n").is_err());
        let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        let err = parse(&huge).expect_err("too large");
        assert!(err.to_string().contains("64 KiB"), "{err}");
    }
}
