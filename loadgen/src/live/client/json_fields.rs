//! Reads a few fields of a JSON message in one pass, without building a tree.
//!
//! A WebSocket client reads up to five things of every message it receives: the type at its
//! group's `type_pointer`, the top-level `type` and `missed` of a server's `lagged` notice, and
//! the two stamp fields at the stamp's pointer. Parsed into a `serde_json::Value` first, every
//! message cost a map and a string per member, all freed again at once. [`read`] drives
//! serde_json's own parser instead (so exactly the same texts are valid JSON) with a visitor
//! that descends only into the members on the way to a wanted field and skips every other
//! value with `IgnoredAny`: no allocation for scalars and strings, one reused buffer of the
//! parser's when an array or object is skipped, and a copy of a wanted string only when it
//! contains escapes. (serde_json skips without recursing, so a skipped value is not held to
//! its nesting limit of 128; values on the way to a wanted field are.)
//!
//! What it finds is what [`serde_json::Value::pointer`] would find in the parsed tree,
//! including for repeated member names (the last one counts, as when the tree is built).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Most pointers one [`read`] looks for (they are tracked in a bit mask).
pub(crate) const MAX_POINTERS: usize = 32;

/// A JSON pointer (RFC 6901), split into its reference tokens once, not per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pointer {
    segments: Vec<Segment>,
    /// `false` for text that is not a JSON pointer: it selects nothing.
    valid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// The member name this token selects in an object (`~1` and `~0` decoded).
    key: String,
    /// The element it selects in an array, when the token is an array index.
    index: Option<usize>,
}

impl Pointer {
    /// Parses `pointer`: `""` is the whole message, otherwise it starts with `/`; anything
    /// else selects nothing, as with `Value::pointer`.
    pub(crate) fn parse(pointer: &str) -> Self {
        let Some(tokens) = pointer.strip_prefix('/') else {
            return Self {
                segments: Vec::new(),
                valid: pointer.is_empty(),
            };
        };
        let segments = tokens
            .split('/')
            .map(|token| {
                let key = token.replace("~1", "/").replace("~0", "~");
                Segment {
                    index: array_index(&key),
                    key,
                }
            })
            .collect();
        Self {
            segments,
            valid: true,
        }
    }

    /// The member `name` of the object at this pointer (never an element of an array, even
    /// when `name` looks like an index: a stamp's fields are an object's members).
    pub(crate) fn member(&self, name: &str) -> Self {
        let mut segments = self.segments.clone();
        segments.push(Segment {
            key: name.to_owned(),
            index: None,
        });
        Self {
            segments,
            valid: self.valid,
        }
    }
}

/// An array index as `Value::pointer` accepts it: digits, no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// What a pointer selects in a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Found<'t> {
    /// Nothing there.
    #[default]
    Absent,
    /// A string (borrowed from the text unless it had escapes).
    Str(Cow<'t, str>),
    /// A non-negative integer that fits `u64`.
    U64(u64),
    /// Anything else: an object, an array, another number, a boolean, null.
    Other,
}

impl Found<'_> {
    /// The string, if a string is there.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Reads what each of `pointers` selects in `text`, in one pass.
///
/// # Errors
/// `text` is not one valid JSON value (the error serde_json gives for it).
pub(crate) fn read<'t, const N: usize>(
    text: &'t str,
    pointers: [&Pointer; N],
) -> Result<[Found<'t>; N], serde_json::Error> {
    const { assert!(N <= MAX_POINTERS, "at most MAX_POINTERS pointers per read") };
    let mut out: [Found<'t>; N] = std::array::from_fn(|_| Found::Absent);
    let live = pointers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.valid)
        .fold(0u32, |m, (i, _)| m | (1 << i));
    let mut de = serde_json::Deserializer::from_str(text);
    Node {
        pointers: &pointers,
        out: &mut out,
        depth: 0,
        live,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// A value in the message that `live` pointers (a bit per pointer) reach: their first `depth`
/// tokens led here.
struct Node<'p, 'o, 't> {
    pointers: &'p [&'p Pointer],
    out: &'o mut [Found<'t>],
    depth: usize,
    live: u32,
}

impl<'p, 't> Node<'p, '_, 't> {
    /// The live pointers for which this value is the one selected (bit mask).
    fn ending_here(&self) -> u32 {
        self.mask(|p| p.segments.len() == self.depth)
    }

    /// The live pointers whose next token must match `matches` (bit mask).
    fn next_token(&self, matches: impl Fn(&Segment) -> bool) -> u32 {
        self.mask(|p| p.segments.get(self.depth).is_some_and(&matches))
    }

    fn mask(&self, select: impl Fn(&Pointer) -> bool) -> u32 {
        self.pointers
            .iter()
            .enumerate()
            .filter(|(i, p)| self.live & (1 << i) != 0 && select(p))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    fn set(&mut self, found: impl Fn() -> Found<'static>) {
        for i in bits(self.ending_here()) {
            self.out[i] = found();
        }
    }

    fn child(&mut self, live: u32) -> Node<'p, '_, 't> {
        Node {
            pointers: self.pointers,
            out: self.out,
            depth: self.depth + 1,
            live,
        }
    }
}

/// The positions of the set bits of `mask`, lowest first (one step per set bit).
fn bits(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // This value replaces whatever an earlier member of the same name selected (the last
        // of repeated names counts, as in a parsed tree).
        for i in bits(self.live) {
            self.out[i] = Found::Absent;
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        for i in bits(self.ending_here()) {
            self.out[i] = Found::Str(Cow::Borrowed(s));
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        for i in bits(self.ending_here()) {
            self.out[i] = Found::Str(Cow::Owned(s.to_owned()));
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.set(|| Found::U64(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        match u64::try_from(v) {
            Ok(v) => self.set(|| Found::U64(v)),
            Err(_) => self.set(|| Found::Other),
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.set(|| Found::Other);
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.set(|| Found::Other);
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.set(|| Found::Other);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.set(|| Found::Other);
        let inner = self.next_token(|_| true);
        while let Some(reached) = map.next_key_seed(KeyMatch { node: &self, inner })? {
            if reached == 0 {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(self.child(reached))?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.set(|| Found::Other);
        let mut position = 0usize;
        loop {
            let reached = self.next_token(|s| s.index == Some(position));
            let more = if reached == 0 {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(self.child(reached))?.is_some()
            };
            if !more {
                return Ok(());
            }
            position += 1;
        }
    }
}

/// Reads a member name and answers which of the `inner` pointers it leads on (bit mask);
/// compares in place, keeps nothing.
struct KeyMatch<'n, 'p, 'o, 't> {
    node: &'n Node<'p, 'o, 't>,
    inner: u32,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_, '_, '_, '_> {
    type Value = u32;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u32, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_, '_, '_, '_> {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<u32, E> {
        let depth = self.node.depth;
        Ok(bits(self.inner)
            .filter(|&i| self.node.pointers[i].segments[depth].key == key)
            .fold(0, |m, i| m | (1 << i)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What `Value::pointer` selects, as a [`Found`].
    fn reference<'v>(value: &'v Value, pointer: &str) -> Found<'v> {
        match value.pointer(pointer) {
            None => Found::Absent,
            Some(Value::String(s)) => Found::Str(Cow::Borrowed(s)),
            Some(v) => v.as_u64().map_or(Found::Other, Found::U64),
        }
    }

    fn owned(found: &Found<'_>) -> Found<'static> {
        match found {
            Found::Absent => Found::Absent,
            Found::Str(s) => Found::Str(Cow::Owned(s.to_string())),
            Found::U64(v) => Found::U64(*v),
            Found::Other => Found::Other,
        }
    }

    #[test]
    fn bits_are_the_positions_of_the_set_bits_lowest_first() {
        assert_eq!(bits(0b1010_0001).collect::<Vec<_>>(), [0, 5, 7]);
        assert_eq!(bits(0).count(), 0);
        assert!(bits(u32::MAX).eq(0..MAX_POINTERS));
    }

    #[test]
    fn a_nested_stamp_and_the_type_are_read_in_one_pass() {
        let text = r#"{"type":"message","topic":"tick","data":{"seq":7,"ts":1700000000000000,"pad":"x\"y"}}"#;
        let (kind, holder) = (Pointer::parse("/type"), Pointer::parse("/data"));
        let (seq, ts, missed) = (
            holder.member("seq"),
            holder.member("ts"),
            Pointer::parse("/missed"),
        );
        let [k, s, t, m, h] = read(text, [&kind, &seq, &ts, &missed, &holder]).expect("valid JSON");
        assert_eq!(k, Found::Str(Cow::Borrowed("message")));
        assert!(
            matches!(k, Found::Str(Cow::Borrowed(_))),
            "an unescaped string is borrowed"
        );
        assert_eq!((s, t), (Found::U64(7), Found::U64(1_700_000_000_000_000)));
        assert_eq!((m, h), (Found::Absent, Found::Other));
    }

    #[test]
    fn escaped_tokens_array_indexes_and_members_that_look_like_indexes() {
        let text = r#"["echo",{"a/b":{"m~n":"v\u0041"},"0":5},[1,-2,3.5,true,null]]"#;
        let p = Pointer::parse;
        let root = p("");
        let [a, b, c, d, e, f, g] = read(
            text,
            [
                &p("/0"),
                &p("/1/a~1b/m~0n"),
                &p("/1/0"),
                &p("/2/1"),
                &p("/2/2"),
                &p("/01"),
                &p("/1").member("0"),
            ],
        )
        .expect("valid JSON");
        assert_eq!(a.as_str(), Some("echo"));
        assert_eq!(b, Found::Str(Cow::Owned("vA".to_owned())));
        assert_eq!(
            (c, d, e, f),
            (Found::U64(5), Found::Other, Found::Other, Found::Absent)
        );
        assert_eq!(g, Found::U64(5));
        // A member of an object is never an array element, even when its name is a number.
        let [h] = read(text, [&root.member("0")]).expect("valid JSON");
        assert_eq!(h, Found::Absent);
        // Not a pointer (no leading '/'): selects nothing, also not the member "type".
        let [i] = read(r#"{"type":"t"}"#, [&p("type")]).expect("valid JSON");
        assert_eq!(i, Found::Absent);
    }

    #[test]
    fn what_is_not_one_valid_json_value_is_an_error() {
        let p = Pointer::parse("/type");
        for bad in [
            "",
            "{",
            r#"{"type":"a"} x"#,
            r#"{"type":"a",}"#,
            "[1,]",
            r#"{"type":01}"#,
            "nul",
        ] {
            assert!(read(bad, [&p]).is_err(), "{bad:?} was accepted");
        }
        // Along a wanted path serde_json's nesting limit (128) holds; a skipped value is
        // skipped without recursion, so it is read however deep it is.
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let path = Pointer::parse(&"/0".repeat(200));
        assert!(
            read(&deep(200), [&path]).is_err(),
            "recursion past the limit is refused"
        );
        let text = format!(r#"{{"x":{},"type":"t"}}"#, deep(200));
        let [skipped] = read(&text, [&p]).expect("valid JSON");
        assert_eq!(skipped.as_str(), Some("t"));
    }

    /// Leaf values, objects written as member lists (so names can repeat), arrays.
    pub(crate) fn json_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("type"),
            Just("data"),
            Just("seq"),
            Just("ts"),
            Just("0"),
            Just("1"),
            Just("a/b"),
            Just("m~n"),
            Just("missed")
        ];
        let leaf = prop_oneof![
            any::<u64>().prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("false".to_owned()),
            Just("-0".to_owned()),
            "[a-z\"\\\\/é]{0,6}".prop_map(|s| serde_json::to_string(&s).expect("a string")),
            Just(r#""\u0074ype""#.to_owned()),
        ];
        leaf.prop_recursive(4, 48, 5, move |inner| {
            prop_oneof![
                prop::collection::vec((key.clone(), inner.clone()), 0..5).prop_map(|members| {
                    let body: Vec<String> = members
                        .iter()
                        .map(|(k, v)| {
                            format!("{}:{v}", serde_json::to_string(k).expect("a string"))
                        })
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
                // Arrays with and without whitespace.
                (
                    prop::collection::vec(inner, 0..4),
                    prop_oneof![Just(","), Just(" , ")]
                )
                    .prop_map(|(items, comma)| format!("[{}]", items.join(comma))),
            ]
        })
    }

    proptest! {
        #[test]
        fn finds_what_value_pointer_finds_in_the_parsed_tree(text in json_text()) {
            let tokens = ["", "/type", "/data", "/data/seq", "/data/ts", "/0", "/1/0", "/0/type",
                "/a~1b", "/m~0n/seq", "/missed", "/1/1/1", "/data/0/seq"];
            let pointers: Vec<Pointer> = tokens.iter().map(|t| Pointer::parse(t)).collect();
            let refs: [&Pointer; 13] = std::array::from_fn(|i| &pointers[i]);
            let value: Value = serde_json::from_str(&text).expect("the strategy writes valid JSON");
            let found = read(&text, refs).expect("valid JSON is read");
            for (i, token) in tokens.iter().enumerate() {
                prop_assert_eq!(owned(&found[i]), owned(&reference(&value, token)), "at {:?} in {}", token, text);
            }
            // A stamp holder's members: object members only.
            let holder = Pointer::parse("/data");
            let [seq] = read(&text, [&holder.member("seq")]).expect("valid JSON");
            let expected = value
                .pointer("/data")
                .and_then(Value::as_object)
                .and_then(|o| o.get("seq"))
                .map_or(Found::Absent, |v| match v {
                    Value::String(s) => Found::Str(Cow::Owned(s.clone())),
                    v => v.as_u64().map_or(Found::Other, Found::U64),
                });
            prop_assert_eq!(owned(&seq), expected);
        }
    }
}
