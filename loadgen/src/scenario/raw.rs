//! The scenario file as written: serde structs that refuse unknown fields. Values that need
//! checking beyond their type are `Spanned`, so errors can point at their line.

use serde::Deserialize;
use toml::Spanned;

/// A whole scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) source_addrs: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) thresholds: Vec<Spanned<String>>,
    pub(super) run: Spanned<RawRun>,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) clients: Vec<Spanned<RawClients>>,
    #[serde(default)]
    pub(super) publishers: Vec<Spanned<RawPublisher>>,
}

/// `[run]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub(super) settle: Option<Spanned<String>>,
    pub(super) warmup: Option<Spanned<String>>,
    pub(super) duration: Spanned<String>,
    pub(super) time_limit: Option<Spanned<String>>,
}

/// `[server]`: settings of the bundled target server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) client_queue: Option<Spanned<i64>>,
    pub(super) replay_capacity: Option<Spanned<i64>>,
    pub(super) keepalive: Option<Spanned<String>>,
    pub(super) ping: Option<Spanned<String>>,
    pub(super) retry: Option<Spanned<String>>,
    pub(super) max_message_bytes: Option<Spanned<i64>>,
    pub(super) instances: Option<Spanned<i64>>,
    pub(super) redis: Option<Spanned<String>>,
}

/// `[[clients]]`: one group of identical connections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClients {
    pub(super) name: Option<String>,
    pub(super) protocol: Spanned<String>,
    pub(super) path: Spanned<String>,
    pub(super) count: Spanned<i64>,
    pub(super) arrival_rate: Option<Spanned<f64>>,
    pub(super) ramp: Option<Spanned<String>>,
    pub(super) hold: Option<Spanned<String>>,
    pub(super) churn: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<String>>,
    pub(super) latency: Option<Spanned<String>>,
    pub(super) reconnect: Option<Spanned<bool>>,
    pub(super) events: Option<Spanned<Vec<String>>>,
    pub(super) types: Option<Spanned<Vec<String>>>,
    pub(super) stamp: Option<RawStampSetting>,
    #[serde(default)]
    pub(super) on_connect: Vec<Spanned<String>>,
    pub(super) send_rate: Option<Spanned<f64>>,
    pub(super) send_path: Option<Spanned<String>>,
    pub(super) id_event: Option<Spanned<String>>,
    pub(super) payload_bytes: Option<Spanned<i64>>,
    pub(super) message: Option<Spanned<String>>,
    pub(super) headers: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) targets: Option<Spanned<Vec<String>>>,
    pub(super) http: Option<Spanned<String>>,
    pub(super) streams_per_connection: Option<Spanned<i64>>,
    pub(super) frame: Option<Spanned<RawFrame>>,
    pub(super) replies: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    pub(super) keepalive: Option<Spanned<RawKeepalive>>,
}

/// `frame = { prefix = "42", type_pointer = "/0" }`: how messages are framed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrame {
    pub(super) prefix: Option<String>,
    pub(super) type_pointer: Option<String>,
}

/// `keepalive = { every = "30s", message = '..' }`: a raw text sent periodically.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeepalive {
    pub(super) every: Spanned<String>,
    pub(super) message: Spanned<String>,
}

/// `stamp = "none"` or `stamp = { … }`.
#[derive(Debug)]
pub(super) enum RawStampSetting {
    /// `"none"`: messages carry no stamp.
    Word(String),
    /// Where the stamp lives.
    Table(RawStamp),
}

impl<'de> Deserialize<'de> for RawStampSetting {
    /// A string or a table. Not `#[serde(untagged)]`: that buffers the table and loses the
    /// spans of its fields; the table is handed on to `RawStamp` as it comes.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawStampSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"none\" or a table such as { seq = \"seq\", ts = \"ts\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawStampSetting::Word(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawStamp::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawStampSetting::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `stamp = { … }`: where the stamp lives in a message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStamp {
    pub(super) seq: Option<String>,
    pub(super) ts: Option<String>,
    pub(super) unit: Option<Spanned<String>>,
    pub(super) pointer: Option<Spanned<String>>,
}

/// `[[publishers]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublisher {
    pub(super) name: Option<String>,
    pub(super) protocol: Spanned<String>,
    pub(super) path: Spanned<String>,
    pub(super) rate: Spanned<f64>,
    pub(super) payload_bytes: Option<Spanned<i64>>,
    pub(super) message: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) on_connect: Vec<Spanned<String>>,
    pub(super) headers: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) frame: Option<Spanned<RawFrame>>,
    #[serde(default)]
    pub(super) split: bool,
}
