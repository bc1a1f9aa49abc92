//! The parser's last event ID string, kept inside the parser when short.

/// Bytes of an ID kept inline; longer IDs go to the heap.
const INLINE: usize = 22;

/// An SSE last event ID string: inside the parser when at most [`INLINE`] bytes (a sequence
/// number, a short key), so that dispatching an event does not touch a heap buffer of its
/// own (a client reading thousands of streams finds each such buffer out of the CPU's
/// caches). Holds only whole `&str` values, so its bytes are always valid UTF-8.
#[derive(Debug, Clone)]
pub(super) enum EventId {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(String),
}

impl Default for EventId {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            bytes: [0; INLINE],
        }
    }
}

impl EventId {
    pub(super) fn as_str(&self) -> &str {
        match self {
            // Always valid: only whole strings are stored (see `set`).
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Heap(id) => id,
        }
    }

    /// Makes this ID `value`; short values move back inline.
    pub(super) fn set(&mut self, value: &str) {
        match (u8::try_from(value.len()), &mut *self) {
            (Ok(len), Self::Inline { len: held, bytes }) if value.len() <= INLINE => {
                bytes[..value.len()].copy_from_slice(value.as_bytes());
                *held = len;
            }
            (Ok(_), Self::Heap(_)) if value.len() <= INLINE => {
                *self = Self::default();
                self.set(value);
            }
            (_, Self::Heap(id)) => {
                id.clear();
                id.push_str(value);
            }
            (_, Self::Inline { .. }) => *self = Self::Heap(value.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_any_length_read_back_as_set_and_short_ones_stay_inline() {
        let long = "é".repeat(INLINE);
        let mut id = EventId::default();
        assert_eq!(id.as_str(), "");
        for value in [
            "17",
            "",
            &long,
            "18",
            &"x".repeat(INLINE),
            &long,
            &long[..INLINE],
        ] {
            id.set(value);
            assert_eq!(id.as_str(), value);
            assert_eq!(
                matches!(id, EventId::Inline { .. }),
                value.len() <= INLINE,
                "{value:?}"
            );
        }
    }
}
