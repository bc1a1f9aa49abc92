//! Incremental `Transfer-Encoding: chunked` decoding (RFC 9112 §7.1): bytes in as they were
//! read, body data out as slices of the same buffer (no copy, no allocation). Chunk sizes
//! are at most 15 hex digits, extensions and trailer lines at most [`MAX_LINE`] bytes.

/// Longest chunk extension or trailer line accepted, in bytes.
pub(crate) const MAX_LINE: u16 = 4096;

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    /// Not a hex digit, `;`, whitespace or CR where a chunk size was expected.
    #[error("malformed chunk size (byte 0x{0:02x})")]
    Size(u8),
    /// More than 15 hex digits.
    #[error("chunk size too large")]
    TooLarge,
    /// A chunk's data was not followed by CRLF, or a line ended without CR.
    #[error("missing CRLF in chunked body")]
    Crlf,
    /// A chunk extension or trailer line longer than [`MAX_LINE`].
    #[error("chunk extension or trailer line too long")]
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: extension or whitespace until CR.
    Extension {
        size: u64,
        len: u16,
    },
    /// CR seen after the size line; LF next.
    SizeLf {
        size: u64,
    },
    /// Data bytes left in the current chunk.
    Data(u64),
    /// After the data: CR, then LF.
    DataCr,
    DataLf,
    /// In the trailer section: at the start of a line (`true`) or inside one.
    Trailer {
        line_start: bool,
        len: u16,
    },
    /// CR of a trailer line seen; `last`: it was the empty line ending the body.
    TrailerLf {
        last: bool,
    },
    /// The last chunk and trailer have been read.
    Done,
}

/// The decoder's state across reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

impl Chunked {
    /// Whether the body has ended (last chunk and trailer read).
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, handing each run of body data to `out`; bytes after the end of the
    /// body are ignored.
    ///
    /// # Errors
    /// [`ChunkError`] for a malformed body; the decoder must not be fed again.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ChunkError> {
        while let Some(&b) = input.first() {
            if let State::Data(left) = self.state {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                out(&input[..n]);
                input = &input[n..];
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            input = &input[1..];
            self.state = self.step(b)?;
            if self.state == State::Done {
                break;
            }
        }
        Ok(())
    }

    /// The state after one byte outside chunk data.
    fn step(&self, b: u8) -> Result<State, ChunkError> {
        let line = |len: u16| {
            if len >= MAX_LINE {
                Err(ChunkError::LineTooLong)
            } else {
                Ok(len + 1)
            }
        };
        Ok(match self.state {
            State::Size { size, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 15 => State::Size {
                    size: size * 16 + u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return Err(ChunkError::TooLarge),
                None if digits == 0 => return Err(ChunkError::Size(b)),
                None => match b {
                    b'\r' => State::SizeLf { size },
                    b';' | b' ' | b'\t' => State::Extension { size, len: 0 },
                    _ => return Err(ChunkError::Size(b)),
                },
            },
            State::Extension { size, len } => match b {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(ChunkError::Crlf),
                _ => State::Extension {
                    size,
                    len: line(len)?,
                },
            },
            State::SizeLf { size } => match (b, size) {
                (b'\n', 0) => State::Trailer {
                    line_start: true,
                    len: 0,
                },
                (b'\n', n) => State::Data(n),
                _ => return Err(ChunkError::Crlf),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
            State::DataCr | State::DataLf => return Err(ChunkError::Crlf),
            State::Trailer { line_start, len } => match b {
                b'\r' => State::TrailerLf { last: line_start },
                b'\n' => return Err(ChunkError::Crlf),
                _ => State::Trailer {
                    line_start: false,
                    len: line(len)?,
                },
            },
            State::TrailerLf { last } if b == b'\n' => {
                if last {
                    State::Done
                } else {
                    State::Trailer {
                        line_start: true,
                        len: 0,
                    }
                }
            }
            State::TrailerLf { .. } => return Err(ChunkError::Crlf),
            // Unreachable: data is handled by `feed`, and it stops at `Done`.
            State::Data(_) | State::Done => self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes; returns the body and whether it ended.
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = Chunked::default();
        let mut body = Vec::new();
        for piece in wire.chunks(step) {
            d.feed(piece, &mut |data| body.extend_from_slice(data))?;
        }
        Ok((body, d.is_done()))
    }

    #[test]
    fn bodies_decode_the_same_whatever_the_read_boundaries() {
        let wire =
            b"5\r\nhello\r\n7;ext=1\r\n, world\r\nA \r\n0123456789\r\n0\r\nX-T: y\r\n\r\nJUNK";
        for step in 1..=wire.len() {
            let (body, done) = decode(wire, step).expect("valid");
            assert_eq!(body, b"hello, world0123456789", "step {step}");
            assert!(done, "step {step}");
        }
    }

    #[test]
    fn an_open_stream_is_not_done_and_large_sizes_are_hex() {
        let (body, done) = decode(b"1f\r\n", 3).expect("valid");
        assert!(body.is_empty() && !done);
        let mut d = Chunked::default();
        let mut n = 0;
        d.feed(b"1F\r\n", &mut |_| {}).expect("size");
        d.feed(&[b'x'; 31], &mut |data| n += data.len())
            .expect("data");
        assert_eq!(n, 31);
        assert!(!d.is_done());
    }

    #[test]
    fn malformed_bodies_are_errors_naming_the_problem() {
        for (wire, err) in [
            (&b"zz\r\n"[..], ChunkError::Size(b'z')),
            (b"\r\n", ChunkError::Size(b'\r')),
            (b"1234567890abcdef0\r\n", ChunkError::TooLarge),
            (b"3\r\nabcX", ChunkError::Crlf),
            (b"3\nabc", ChunkError::Size(b'\n')),
            (b"0\r\nbad\n", ChunkError::Crlf),
        ] {
            assert_eq!(
                decode(wire, 1),
                Err(err),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'e', usize::from(MAX_LINE) + 1));
        assert_eq!(decode(&long, 7), Err(ChunkError::LineTooLong));
    }
}
