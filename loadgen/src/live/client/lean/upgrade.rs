//! The WebSocket opening handshake (RFC 6455 §4.1), written here rather than left to
//! tungstenite: its client handshake reads the response into a 4 KiB buffer that then becomes
//! the socket's read buffer for the connection's whole life (and tungstenite zero-fills the
//! whole buffer on every read). Here the head is read into a buffer freed afterwards, and the
//! socket starts with only the bytes that followed the head, so its read buffer is the
//! configured `read_buffer_size`.

use hyper::header::{HeaderMap, HeaderValue};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::head;
use crate::live::client::ConnectError;
use crate::live::transport::Stream;

/// What the handshake answer says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) upgrade: Option<String>,
    pub(crate) connection: Option<String>,
    pub(crate) accept: Option<String>,
    pub(crate) protocol: Option<String>,
}

/// Writes the upgrade request for `path` on `host` with `headers` (the scenario's, whose
/// names loadgen does not set itself: checked when the scenario loaded) and key `key`.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    path: &str,
    host: &str,
    key: &str,
    headers: &HeaderMap,
) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\n");
    head::end_head(out, headers);
}

/// Parses the answer's head at the start of `buf`: `Ok(None)` while incomplete, else the
/// answer and the head's length.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Answer, usize)>, ConnectError> {
    let mut answer = Answer::default();
    let parsed = head::parse_with(buf, |name, value| {
        let slot = match name.to_ascii_lowercase().as_str() {
            "upgrade" => &mut answer.upgrade,
            "connection" => &mut answer.connection,
            "sec-websocket-accept" => &mut answer.accept,
            "sec-websocket-protocol" => &mut answer.protocol,
            _ => return Ok(()),
        };
        *slot = Some(value.to_owned());
        Ok(())
    })
    .map_err(|e| handshake_error(&e.to_string()))?;
    Ok(parsed.map(|(status, len)| (Answer { status, ..answer }, len)))
}

fn handshake_error(why: &str) -> ConnectError {
    ConnectError::Other(format!("WebSocket handshake: {why}"))
}

/// Checks the answer against RFC 6455 §4.1 (status 101, `Upgrade: websocket`, `Connection`
/// with the `upgrade` token, the accept key of `key`) and the subprotocol against the requested
/// `Sec-WebSocket-Protocol` list, if any.
pub(crate) fn verify(
    answer: &Answer,
    key: &str,
    requested: Option<&HeaderValue>,
) -> Result<(), ConnectError> {
    if answer.status != 101 {
        return Err(ConnectError::Status(answer.status));
    }
    if !answer
        .upgrade
        .as_deref()
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    {
        return Err(handshake_error("the answer lacks `Upgrade: websocket`"));
    }
    let upgrade_token = |c: &str| {
        c.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    };
    if !answer.connection.as_deref().is_some_and(upgrade_token) {
        return Err(handshake_error("the answer lacks `Connection: Upgrade`"));
    }
    if answer.accept.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(handshake_error(
            "Sec-WebSocket-Accept does not match the key sent",
        ));
    }
    let offered = requested.and_then(|v| v.to_str().ok());
    match (offered, answer.protocol.as_deref()) {
        (None, None) => Ok(()),
        (None, Some(p)) => Err(handshake_error(&format!(
            "the server chose subprotocol `{p}`, none was requested"
        ))),
        (Some(o), None) => Err(handshake_error(&format!(
            "the server chose none of the subprotocols `{o}`"
        ))),
        (Some(o), Some(p)) if o.split(',').any(|x| x.trim() == p) => Ok(()),
        (Some(o), Some(p)) => Err(handshake_error(&format!(
            "the server chose subprotocol `{p}`, not one of `{o}`"
        ))),
    }
}

/// Performs the opening handshake on `stream` and returns the socket.
///
/// # Errors
/// I/O failures, a status other than 101 (`Status`), or an answer that fails [`verify`].
pub(crate) async fn connect(
    mut stream: Stream,
    path: &str,
    host: &str,
    headers: &HeaderMap,
    config: WebSocketConfig,
) -> Result<WebSocketStream<Stream>, ConnectError> {
    let key = generate_key();
    let mut request = Vec::with_capacity(256);
    write_request(&mut request, path, host, &key, headers);
    stream
        .write_all(&request)
        .await
        .map_err(|e| ConnectError::from_io(&e))?;
    drop(request);
    let (answer, rest) = super::read_head(&mut stream, parse).await?;
    verify(&answer, &key, headers.get("sec-websocket-protocol"))?;
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderName;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn answer(extra: &str) -> Answer {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        );
        parse(head.as_bytes()).expect("valid").expect("complete").0
    }

    #[test]
    fn the_request_carries_the_upgrade_key_and_scenario_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("origin"),
            HeaderValue::from_static("https://app"),
        );
        let mut out = Vec::new();
        write_request(&mut out, "/ws/echo?x=1", "h:80", KEY, &headers);
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            format!(
                "GET /ws/echo?x=1 HTTP/1.1\r\nhost: h:80\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: {KEY}\r\norigin: https://app\r\n\r\n"
            )
        );
    }

    #[test]
    fn the_rfc_example_answer_verifies_in_pieces() {
        let wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi";
        let head_len = wire.len() - 4;
        for cut in 0..head_len {
            assert!(
                parse(&wire[..cut]).expect("valid so far").is_none(),
                "cut {cut}"
            );
        }
        let (a, len) = parse(wire).expect("valid").expect("complete");
        assert_eq!(len, head_len);
        assert!(verify(&a, KEY, None).is_ok());
        assert!(verify(&answer(""), KEY, None).is_ok());
    }

    #[test]
    fn every_broken_answer_is_refused_and_named() {
        let status = parse(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .expect("valid")
            .expect("complete")
            .0;
        assert!(matches!(
            verify(&status, KEY, None),
            Err(ConnectError::Status(403))
        ));
        let cases = [
            (
                Answer {
                    upgrade: None,
                    ..answer("")
                },
                "Upgrade: websocket",
            ),
            (
                Answer {
                    connection: Some("close".into()),
                    ..answer("")
                },
                "Connection: Upgrade",
            ),
            (
                Answer {
                    accept: Some("nope".into()),
                    ..answer("")
                },
                "does not match",
            ),
            (
                answer("Sec-WebSocket-Protocol: chat\r\n"),
                "none was requested",
            ),
        ];
        for (a, want) in cases {
            let err = verify(&a, KEY, None).expect_err(want).to_string();
            assert!(
                err.contains(want) && err.contains("WebSocket handshake"),
                "{err}"
            );
        }
        let offered = HeaderValue::from_static("mqtt, chat");
        assert!(
            verify(
                &answer("Sec-WebSocket-Protocol: chat\r\n"),
                KEY,
                Some(&offered)
            )
            .is_ok()
        );
        let err = verify(
            &answer("Sec-WebSocket-Protocol: stomp\r\n"),
            KEY,
            Some(&offered),
        )
        .expect_err("not offered");
        assert!(err.to_string().contains("not one of"), "{err}");
        let err = verify(&answer(""), KEY, Some(&offered)).expect_err("none chosen");
        assert!(err.to_string().contains("chose none"), "{err}");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
