//! The fields loadgen reads from each received message (type, `lagged` notice, stamp),
//! located once per group and read without building a JSON tree (see [`json_fields`]).

use super::json_fields::{self, Found, Pointer};
use crate::scenario::{ClientGroup, StampSpec};

/// What a group's connections read from every message, as JSON pointers parsed once per
/// group: the type at `frame.type_pointer`, a `lagged` notice's top-level `type` and
/// `missed`, and the stamp's two fields in the object at `stamp.pointer`.
#[derive(Debug)]
pub(crate) struct MessageFields {
    kind: Pointer,
    notice: Pointer,
    missed: Pointer,
    seq: Pointer,
    ts: Pointer,
    seq_name: String,
    ts_name: String,
    unit: wire::TimeUnit,
    /// The stamp is the message's own `seq` and `ts`, in µs (what our servers send).
    usual: bool,
}

impl MessageFields {
    /// The fields of `group`'s messages.
    pub(crate) fn of(group: &ClientGroup) -> Self {
        Self::new(&group.frame.type_pointer, &group.stamp)
    }

    /// The type at `type_pointer`, the stamp as `stamp` places it.
    pub(crate) fn new(type_pointer: &str, stamp: &StampSpec) -> Self {
        let holder = Pointer::parse(&stamp.pointer);
        let names = &stamp.fields;
        Self {
            kind: Pointer::parse(type_pointer),
            notice: Pointer::parse("/type"),
            missed: Pointer::parse("/missed"),
            seq: holder.member(&names.seq),
            ts: holder.member(&names.ts),
            seq_name: names.seq.clone(),
            ts_name: names.ts.clone(),
            unit: names.unit,
            usual: stamp.pointer.is_empty() && *names == wire::StampFields::default(),
        }
    }

    /// Type, notice type, missed, seq and ts of `text`, in one pass (see [`json_fields`]).
    ///
    /// # Errors
    /// `text` is not JSON.
    pub(crate) fn read<'t>(&self, text: &'t str) -> Result<[Found<'t>; 5], serde_json::Error> {
        json_fields::read(
            text,
            [&self.kind, &self.notice, &self.missed, &self.seq, &self.ts],
        )
    }

    /// The stamp from what [`Self::read`] found: `None` when the message has neither field
    /// (or no object at the stamp's pointer), an error naming a field that is missing or not
    /// a non-negative integer; the time converted to µs.
    pub(crate) fn stamp(
        &self,
        seq: Found<'_>,
        ts: Found<'_>,
    ) -> Option<Result<wire::Stamp, wire::StampError>> {
        let field = |found: Found<'_>, name: &str| match found {
            Found::U64(v) => Ok(v),
            Found::Absent => Err(wire::StampError::MissingField(name.to_owned())),
            Found::Str(_) | Found::Other => Err(wire::StampError::NotAnInteger(name.to_owned())),
        };
        if seq == Found::Absent && ts == Found::Absent {
            return None;
        }
        Some(field(seq, &self.seq_name).and_then(|seq| {
            let ts = field(ts, &self.ts_name)?;
            Ok(wire::Stamp {
                seq,
                ts: self.unit.to_micros(ts),
            })
        }))
    }

    /// What `text` is to a WebSocket client whose group keeps the messages of `types` (all,
    /// when empty): one pass over the text.
    pub(crate) fn classify(&self, text: &str, types: &[String]) -> Classified {
        let Ok([kind, notice, missed, seq, ts]) = self.read(text) else {
            return Classified::NotJson;
        };
        if notice.as_str() == Some("lagged") {
            return Classified::Lagged(match missed {
                Found::U64(n) => n,
                _ => 0,
            });
        }
        if !types.is_empty() && !kind.as_str().is_some_and(|k| types.iter().any(|t| t == k)) {
            return Classified::Filtered;
        }
        Classified::Kept(self.stamp(seq, ts))
    }

    /// The stamp of a message whose only use is its stamp (an SSE event's data): `None` when
    /// it has none or is not JSON. The usual layout (top-level `seq` and `ts` in µs) takes
    /// `wire`'s one-pass reader of compact objects; any other reads the two fields in one pass.
    pub(crate) fn stamp_of(&self, text: &str) -> Option<Result<wire::Stamp, wire::StampError>> {
        if self.usual {
            return match wire::Stamp::decode(text) {
                Err(wire::StampError::MissingField(_)) => None,
                other => Some(other),
            };
        }
        let [seq, ts] = json_fields::read(text, [&self.seq, &self.ts]).ok()?;
        self.stamp(seq, ts)
    }
}

/// What one received message is to a client ([`MessageFields::classify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Classified {
    /// Not one JSON value.
    NotJson,
    /// The server's `lagged` notice: it dropped this many messages for the connection.
    Lagged(u64),
    /// Not one of the group's `types`.
    Filtered,
    /// A message the group keeps, with its stamp (`None`: it has none).
    Kept(Option<Result<wire::Stamp, wire::StampError>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::client::{missed_of, read_stamp, stamp_of_text};
    use crate::scenario::StampKind;
    use proptest::prelude::*;
    use serde_json::Value;

    fn spec(pointer: &str, names: (&str, &str), unit: wire::TimeUnit) -> StampSpec {
        StampSpec {
            fields: wire::StampFields {
                seq: names.0.into(),
                ts: names.1.into(),
                unit,
            },
            pointer: pointer.into(),
            kind: StampKind::Json,
        }
    }

    /// Type, `lagged` notice, missed and stamp as the client read them from a parsed tree.
    type Read = (
        Option<String>,
        bool,
        u64,
        Option<Result<wire::Stamp, wire::StampError>>,
    );

    fn by_tree(text: &str, type_pointer: &str, stamp: &StampSpec) -> Option<Read> {
        let value: Value = serde_json::from_str(text).ok()?;
        Some((
            value
                .pointer(type_pointer)
                .and_then(Value::as_str)
                .map(str::to_owned),
            value.get("type").and_then(Value::as_str) == Some("lagged"),
            missed_of(&value),
            read_stamp(&value, stamp),
        ))
    }

    fn in_one_pass(text: &str, fields: &MessageFields) -> Option<Read> {
        let [kind, notice, missed, seq, ts] = fields.read(text).ok()?;
        Some((
            kind.as_str().map(str::to_owned),
            notice.as_str() == Some("lagged"),
            match missed {
                Found::U64(n) => n,
                _ => 0,
            },
            fields.stamp(seq, ts),
        ))
    }

    #[test]
    fn a_pubsub_message_and_a_lagged_notice_read_as_the_tree_reads_them() {
        let stamp = spec("/data", ("seq", "ts"), wire::TimeUnit::Us);
        let fields = MessageFields::new("/type", &stamp);
        for text in [
            r#"{"type":"message","topic":"tick","data":{"seq":3,"ts":1700000000000000}}"#,
            r#"{"type":"lagged","missed":12}"#,
            r#"{"type":"message","data":{"seq":3}}"#,
            r#"{"type":"message","data":{"seq":"3","ts":1}}"#,
            r#"{"type":"message","data":[1,2]}"#,
            "not json",
        ] {
            assert_eq!(
                in_one_pass(text, &fields),
                by_tree(text, "/type", &stamp),
                "{text}"
            );
        }
        let read = in_one_pass(r#"{"type":"lagged","missed":12}"#, &fields);
        assert_eq!(read, Some((Some("lagged".into()), true, 12, None)));
    }

    #[test]
    fn a_message_is_kept_filtered_a_notice_or_not_json() {
        let fields = MessageFields::new("/type", &spec("/data", ("seq", "ts"), wire::TimeUnit::Us));
        let types = ["message".to_owned()];
        let kept = r#"{"data":{"seq":4,"ts":9},"topic":"tick","type":"message"}"#;
        assert_eq!(
            fields.classify(kept, &types),
            Classified::Kept(Some(Ok(wire::Stamp { seq: 4, ts: 9 })))
        );
        let other = r#"{"topic":"tick","type":"subscribed"}"#;
        assert_eq!(fields.classify(other, &types), Classified::Filtered);
        assert_eq!(
            fields.classify(other, &[]),
            Classified::Kept(None),
            "no types: all kept"
        );
        let notice = r#"{"type":"lagged","missed":3}"#;
        assert_eq!(
            fields.classify(notice, &types),
            Classified::Lagged(3),
            "before the filter"
        );
        assert_eq!(fields.classify("{\"type\":", &types), Classified::NotJson);
        let bad = r#"{"data":{"seq":-1,"ts":9},"type":"message"}"#;
        assert_eq!(
            fields.classify(bad, &types),
            Classified::Kept(Some(Err(wire::StampError::NotAnInteger("seq".into()))))
        );
    }

    proptest! {
        #[test]
        fn every_message_reads_as_the_parsed_tree_reads_it(
            text in crate::live::client::json_fields::tests::json_text(),
            layout in 0usize..4,
        ) {
            let (type_pointer, stamp) = match layout {
                0 => ("/type", spec("", ("seq", "ts"), wire::TimeUnit::Us)),
                1 => ("/type", spec("/data", ("seq", "ts"), wire::TimeUnit::Us)),
                2 => ("/0", spec("/1", ("seq", "ts"), wire::TimeUnit::Ms)),
                _ => ("/data/0", spec("/data", ("missed", "0"), wire::TimeUnit::Ns)),
            };
            let fields = MessageFields::new(type_pointer, &stamp);
            prop_assert_eq!(in_one_pass(&text, &fields), by_tree(&text, type_pointer, &stamp));
        }

        /// An SSE event's stamp: the same as the tree (or `wire`'s compact reader) gives.
        #[test]
        fn an_event_stamp_reads_as_before(
            text in crate::live::client::json_fields::tests::json_text(),
            layout in 0usize..4,
        ) {
            let stamp = match layout {
                0 => spec("", ("seq", "ts"), wire::TimeUnit::Us),
                1 => spec("", ("missed", "0"), wire::TimeUnit::Ms),
                2 => spec("/data", ("seq", "ts"), wire::TimeUnit::Us),
                _ => spec("/1", ("seq", "ts"), wire::TimeUnit::Ns),
            };
            let fields = MessageFields::new("/type", &stamp);
            prop_assert_eq!(
                fields.stamp_of(&text).and_then(Result::ok),
                stamp_of_text(&text, &stamp).and_then(Result::ok)
            );
        }
    }
}
