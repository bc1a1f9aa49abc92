//! The stamped message: the data of every instrumented message.
//!
//! A stamped message is a JSON object with
//! * `seq`: `u64`, per stream, starting at 1, increasing by one per message;
//! * `ts`: `u64`, Unix epoch **microseconds** of the *intended* send time (the schedule slot,
//!   not the moment the bytes were written, so that a sender falling behind shows up as latency);
//! * any payload fields.
//!
//! Third-party targets may use other field names and units; [`StampFields`] describes those.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};

/// Errors decoding a stamped message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StampError {
    /// The text is not a JSON object.
    #[error("message is not a JSON object: {0}")]
    NotAnObject(String),
    /// A stamp field is missing.
    #[error("message has no `{0}` field")]
    MissingField(String),
    /// A stamp field is present but not a non-negative integer.
    #[error("field `{0}` is not a non-negative integer")]
    NotAnInteger(String),
    /// A payload field uses a reserved name (`seq` or `ts`).
    #[error("payload field `{0}` collides with a stamp field")]
    ReservedField(String),
}

/// Response header of the bundled server's `GET /healthz`: its wall clock when it answered,
/// Unix epoch microseconds. Load generators estimate their clock offset against the target
/// from it with an NTP-style round trip (offset = server time - midpoint of the request).
pub const SERVER_TIME_HEADER: &str = "x-server-time-us";

/// Current wall-clock time as Unix epoch microseconds.
///
/// Saturates at `u64::MAX` (year 586,524) and returns 0 for clocks set before 1970.
#[must_use]
pub fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The two numbers a receiver needs: sequence number and intended send time in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    /// Per-stream sequence number, starting at 1.
    pub seq: u64,
    /// Intended send time, Unix epoch microseconds.
    pub ts: u64,
}

impl Stamp {
    /// Decodes the stamp of a message that uses the standard field names (`seq`, `ts` in µs),
    /// ignoring every other field. This is the fast path for our own server.
    ///
    /// # Errors
    /// [`StampError`] when the text is not an object with integer `seq` and `ts`.
    pub fn decode(text: &str) -> Result<Self, StampError> {
        if let Some(stamp) = compact::decode(text) {
            return Ok(stamp);
        }
        // serde's derived impl would also accept a sequence (`[1,2]`): insist on an object.
        if !text.trim_start().starts_with('{') {
            return Err(StampError::NotAnObject("not an object".to_owned()));
        }
        serde_json::from_str(text).map_err(|e| classify(text, &e))
    }
}

/// The stamp of a message in the compact form servers and our encoders write: an object
/// without whitespace whose members are plain strings (no escapes) or non-negative integers.
/// Anything else, and anything serde would refuse (a duplicate `seq`, a leading zero, a
/// fraction), is left to serde_json: this only ever accepts what serde accepts, with the same
/// stamp, and does so in one pass of `memchr` over the strings instead of serde's
/// byte-by-byte scan and per-field dispatch.
mod compact {
    use super::Stamp;

    /// `Some` only for a compact object with exactly one integer `seq` and `ts`.
    pub(super) fn decode(text: &str) -> Option<Stamp> {
        let b = text.as_bytes();
        if b.len() < 2 || b[0] != b'{' || b[b.len() - 1] != b'}' {
            return None;
        }
        let end = b.len() - 1;
        let (mut seq, mut ts) = (None, None);
        let mut i = 1;
        loop {
            let key = string(b, &mut i)?;
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            if b.get(i) == Some(&b'"') {
                string(b, &mut i)?;
                if key == b"seq" || key == b"ts" {
                    return None;
                }
            } else {
                let value = integer(b, &mut i)?;
                let slot = match key {
                    b"seq" => &mut seq,
                    b"ts" => &mut ts,
                    _ => &mut None,
                };
                if slot.replace(value).is_some() {
                    return None;
                }
            }
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') if i == end => break,
                _ => return None,
            }
        }
        Some(Stamp { seq: seq?, ts: ts? })
    }

    /// The plain string starting at `b[*i]` (a quote), without its quotes; `*i` moves past
    /// it. `None` for an escape or a control character inside.
    fn string<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
        if b.get(*i) != Some(&b'"') {
            return None;
        }
        let start = *i + 1;
        let len = memchr::memchr2(b'"', b'\\', b.get(start..)?)?;
        if b[start + len] != b'"' {
            return None;
        }
        let s = &b[start..start + len];
        // The smallest byte, without an early exit: the compiler checks 32 bytes per
        // instruction (an early-exit search went byte by byte).
        if s.iter().fold(u8::MAX, |least, &c| least.min(c)) < 0x20 {
            return None;
        }
        *i = start + len + 1;
        Some(s)
    }

    /// The non-negative integer starting at `b[*i]`; `*i` moves past it. `None` for no digit,
    /// a leading zero, a fraction or exponent after it, or more than `u64` holds.
    fn integer(b: &[u8], i: &mut usize) -> Option<u64> {
        let start = *i;
        let mut value: u64 = 0;
        while let Some(&d) = b.get(*i).filter(|c| c.is_ascii_digit()) {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            *i += 1;
        }
        let digits = *i - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        if matches!(b.get(*i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }
}

fn classify(text: &str, err: &serde_json::Error) -> StampError {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            for name in ["seq", "ts"] {
                match map.get(name) {
                    None => return StampError::MissingField(name.to_owned()),
                    Some(v) if v.as_u64().is_none() => {
                        return StampError::NotAnInteger(name.to_owned());
                    }
                    Some(_) => {}
                }
            }
            StampError::NotAnObject(err.to_string())
        }
        Ok(_) => StampError::NotAnObject("not an object".to_owned()),
        Err(e) => StampError::NotAnObject(e.to_string()),
    }
}

/// Unit of a timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Milliseconds since the Unix epoch.
    Ms,
    /// Microseconds since the Unix epoch (our own format).
    #[default]
    Us,
    /// Nanoseconds since the Unix epoch.
    Ns,
}

impl TimeUnit {
    /// Converts a value in this unit to microseconds (saturating; nanoseconds truncate).
    #[must_use]
    pub fn to_micros(self, value: u64) -> u64 {
        match self {
            Self::Ms => value.saturating_mul(1000),
            Self::Us => value,
            Self::Ns => value / 1000,
        }
    }
}

/// Where the stamp lives in a third-party message: field names and the time unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampFields {
    /// Name of the sequence field.
    pub seq: String,
    /// Name of the timestamp field.
    pub ts: String,
    /// Unit of the timestamp field.
    pub unit: TimeUnit,
}

impl Default for StampFields {
    fn default() -> Self {
        Self {
            seq: "seq".to_owned(),
            ts: "ts".to_owned(),
            unit: TimeUnit::Us,
        }
    }
}

impl StampFields {
    /// Decodes a stamp using these field names, converting the timestamp to microseconds.
    ///
    /// # Errors
    /// [`StampError`] naming the missing or malformed field.
    pub fn decode(&self, text: &str) -> Result<Stamp, StampError> {
        if self.seq == "seq" && self.ts == "ts" && self.unit == TimeUnit::Us {
            return Stamp::decode(text);
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| StampError::NotAnObject(e.to_string()))?;
        self.decode_value(&value)
    }

    /// Reads the stamp from an already parsed JSON value (no re-serialising).
    ///
    /// # Errors
    /// [`StampError`] naming the missing or malformed field.
    pub fn decode_value(&self, value: &Value) -> Result<Stamp, StampError> {
        let Value::Object(map) = value else {
            return Err(StampError::NotAnObject("not an object".to_owned()));
        };
        let field = |name: &str| -> Result<u64, StampError> {
            map.get(name)
                .ok_or_else(|| StampError::MissingField(name.to_owned()))?
                .as_u64()
                .ok_or_else(|| StampError::NotAnInteger(name.to_owned()))
        };
        Ok(Stamp {
            seq: field(&self.seq)?,
            ts: self.unit.to_micros(field(&self.ts)?),
        })
    }
}

/// A stamped message with its payload fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedMessage {
    /// Per-stream sequence number, starting at 1.
    pub seq: u64,
    /// Intended send time, Unix epoch microseconds.
    pub ts: u64,
    /// Payload fields; never contains `seq` or `ts`.
    payload: Map<String, Value>,
}

impl StampedMessage {
    /// A message with no payload fields.
    #[must_use]
    pub fn new(seq: u64, ts: u64) -> Self {
        Self {
            seq,
            ts,
            payload: Map::new(),
        }
    }

    /// Adds a payload field.
    ///
    /// # Errors
    /// [`StampError::ReservedField`] when `name` is `seq` or `ts`.
    pub fn with_field(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<Self, StampError> {
        let name = name.into();
        if name == "seq" || name == "ts" {
            return Err(StampError::ReservedField(name));
        }
        self.payload.insert(name, value.into());
        Ok(self)
    }

    /// The payload fields (never `seq` or `ts`).
    #[must_use]
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// Encodes as a compact JSON object: `{"seq":…,"ts":…,<payload fields in name order>}`.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(48);
        out.push_str("{\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"ts\":");
        out.push_str(&self.ts.to_string());
        for (name, value) in &self.payload {
            out.push(',');
            out.push_str(&Value::String(name.clone()).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push('}');
        out
    }

    /// Decodes a message with the standard field names.
    ///
    /// # Errors
    /// [`StampError`] when the text is not an object with integer `seq` and `ts`.
    pub fn decode(text: &str) -> Result<Self, StampError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| StampError::NotAnObject(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(StampError::NotAnObject("not an object".to_owned()));
        };
        let mut take = |name: &str| -> Result<u64, StampError> {
            map.remove(name)
                .ok_or_else(|| StampError::MissingField(name.to_owned()))?
                .as_u64()
                .ok_or_else(|| StampError::NotAnInteger(name.to_owned()))
        };
        let seq = take("seq")?;
        let ts = take("ts")?;
        Ok(Self {
            seq,
            ts,
            payload: map,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_pinned_byte_for_byte() {
        let msg = StampedMessage::new(7, 1_700_000_000_000_123)
            .with_field("text", "hi \"there\"")
            .and_then(|m| m.with_field("n", 3))
            .expect("valid fields");
        assert_eq!(
            msg.encode(),
            r#"{"seq":7,"ts":1700000000000123,"n":3,"text":"hi \"there\""}"#
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let msg = StampedMessage::new(u64::MAX, 0)
            .with_field("nested", serde_json::json!({"a": [1, 2]}))
            .expect("valid field");
        assert_eq!(StampedMessage::decode(&msg.encode()), Ok(msg));
    }

    #[test]
    fn reserved_payload_names_are_refused() {
        assert_eq!(
            StampedMessage::new(1, 1).with_field("ts", 5),
            Err(StampError::ReservedField("ts".to_owned()))
        );
    }

    #[test]
    fn fast_decode_reads_stamps_past_numbers_a_json_tree_cannot_hold() {
        // Found by the `stamp` fuzz target: a payload number beyond f64 is valid JSON; the
        // fast path skips it and reads the stamp, a serde_json tree of the text fails.
        let text =
            "{\r\"seq\":1,\r\"ts\":11600000000,\"payl\":10004976e77999490000,\"poad\":\"xxxx\"}";
        assert_eq!(
            Stamp::decode(text),
            Ok(Stamp {
                seq: 1,
                ts: 11_600_000_000
            })
        );
        assert!(serde_json::from_str::<Value>(text).is_err());
    }

    /// The compact reader accepts only what serde accepts, and reads the same stamp: checked
    /// on messages in several field orders and on every one-byte replacement, insertion and
    /// deletion of them.
    #[test]
    fn the_compact_reader_agrees_with_serde() {
        let bases = [
            r#"{"seq":7,"ts":1700000000000123,"body":"xxxx"}"#,
            r#"{"body":"xxxx","seq":7,"ts":1700000000000123}"#,
            r#"{"a":"","seq":0,"b":12,"ts":18446744073709551615}"#,
            r#"{"seq":1,"ts":2}"#,
            r#"{"x":1,"x":2,"ts":5,"seq":9}"#,
        ];
        let alphabet = b"{}[]\":,\\ 0123456789.eE-+stqabxy\x01\t";
        let mut accepted = 0;
        for base in bases {
            let want = serde_json::from_str::<Stamp>(base).expect("valid base");
            assert_eq!(compact::decode(base), Some(want), "{base}");
            let bytes = base.as_bytes();
            for at in 0..=bytes.len() {
                for &c in alphabet {
                    let mut variants = Vec::new();
                    let mut inserted = bytes.to_vec();
                    inserted.insert(at, c);
                    variants.push(inserted);
                    if at < bytes.len() {
                        let mut replaced = bytes.to_vec();
                        replaced[at] = c;
                        variants.push(replaced);
                        let mut deleted = bytes.to_vec();
                        deleted.remove(at);
                        variants.push(deleted);
                    }
                    for variant in variants {
                        let Ok(text) = std::str::from_utf8(&variant) else {
                            continue;
                        };
                        if let Some(stamp) = compact::decode(text) {
                            accepted += 1;
                            assert_eq!(
                                serde_json::from_str::<Stamp>(text).ok(),
                                Some(stamp),
                                "{text}"
                            );
                        }
                    }
                }
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} variants exercised the compact reader"
        );
        // What it leaves to serde: whitespace, escapes, duplicates, fractions, leading zeros.
        for text in [
            r#"{ "seq":1,"ts":2}"#,
            r#"{"s\u0065q":1,"ts":2}"#,
            r#"{"seq":1,"seq":1,"ts":2}"#,
            r#"{"seq":1.0,"ts":2}"#,
            r#"{"seq":01,"ts":2}"#,
            r#"{"seq":1,"ts":2,"n":-3}"#,
        ] {
            assert_eq!(compact::decode(text), None, "{text}");
        }
        assert_eq!(
            Stamp::decode(r#"{"s\u0065q":1,"ts":2}"#),
            Ok(Stamp { seq: 1, ts: 2 }),
            "an escaped key is still read, by serde"
        );
    }

    #[test]
    fn fast_decode_ignores_payload() {
        let stamp = Stamp::decode(r#"{"text":"x","seq":3,"ts":99}"#).expect("valid");
        assert_eq!(stamp, Stamp { seq: 3, ts: 99 });
    }

    #[test]
    fn decode_errors_name_the_field() {
        let cases = [
            (r#"{"ts":1}"#, StampError::MissingField("seq".into())),
            (r#"{"seq":1}"#, StampError::MissingField("ts".into())),
            (
                r#"{"seq":-1,"ts":1}"#,
                StampError::NotAnInteger("seq".into()),
            ),
            (
                r#"{"seq":1,"ts":"x"}"#,
                StampError::NotAnInteger("ts".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Stamp::decode(text), Err(want.clone()), "{text}");
            assert_eq!(StampedMessage::decode(text), Err(want), "{text}");
        }
        assert!(matches!(
            Stamp::decode("[1,2]"),
            Err(StampError::NotAnObject(_))
        ));
        assert!(matches!(
            Stamp::decode("not json"),
            Err(StampError::NotAnObject(_))
        ));
    }

    #[test]
    fn third_party_fields_and_units_convert_to_micros() {
        let fields = StampFields {
            seq: "n".into(),
            ts: "sent_at".into(),
            unit: TimeUnit::Ms,
        };
        assert_eq!(
            fields.decode(r#"{"n":4,"sent_at":1500}"#),
            Ok(Stamp {
                seq: 4,
                ts: 1_500_000
            })
        );
        let ns = StampFields {
            unit: TimeUnit::Ns,
            ..StampFields::default()
        };
        assert_eq!(ns.decode(r#"{"seq":1,"ts":2999}"#).map(|s| s.ts), Ok(2));
        assert_eq!(
            fields.decode(r#"{"seq":4,"sent_at":1}"#),
            Err(StampError::MissingField("n".into()))
        );
    }

    #[test]
    fn clock_is_in_microseconds() {
        // 2020-01-01 in µs; a clock in ms or s would be far below this.
        assert!(now_unix_us() > 1_577_836_800_000_000);
    }
}
