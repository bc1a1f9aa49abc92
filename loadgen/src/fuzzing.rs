//! Entry points for the fuzz targets in `fuzz/`: loadgen's handling of what a target sends
//! (stamps inside messages, chunked response bodies), exactly as a connection runs it. None
//! may panic, whatever the input.

use crate::live::client::lean::chunked::Chunked;
use crate::live::client::message_fields::MessageFields;
use crate::scenario::StampSpec;

/// The stamp of a message `text` as a connection of a group with `spec` reads it: `None`
/// for a message without one. Read both ways the clients read: as an SSE event's data (the
/// returned stamp) and as a WebSocket message (classified, type at `/type`).
#[must_use]
pub fn stamp(text: &str, spec: &StampSpec) -> Option<Result<wire::Stamp, wire::StampError>> {
    let fields = MessageFields::new("/type", spec);
    let _ = fields.classify(text, &[]);
    fields.stamp_of(text)
}

/// A chunked HTTP/1.1 body fed to the SSE client's decoder in `pieces`: the body's data, and
/// whether it ended (`Ok(true)`), is still open, or broke (`Err`, with the reason).
///
/// # Errors
/// The decoder's description of a malformed body.
pub fn chunked(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), String> {
    let mut decoder = Chunked::default();
    let mut data = Vec::new();
    for piece in pieces {
        if decoder.is_done() {
            break;
        }
        decoder
            .feed(piece, &mut |bytes| data.extend_from_slice(bytes))
            .map_err(|e| e.to_string())?;
    }
    Ok((data, decoder.is_done()))
}
