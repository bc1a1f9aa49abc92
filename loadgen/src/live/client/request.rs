//! What one connection (or publisher) sends, with its placeholders (`{conn}`, `{group_conn}`,
//! `{rand:A..B}`) replaced once, when it starts: the path, the request headers, the
//! `on_connect` texts and the message template.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::RunCtx;
use crate::live::transport::Endpoint;
use crate::scenario::template::{self, Vars};
use crate::scenario::{ClientGroup, Header, Publisher};

/// The rendered request parts of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    /// Request path (with query).
    pub(crate) path: String,
    /// Headers to send: the `--token` bearer, then the scenario's (which replace it).
    pub(crate) headers: HeaderMap,
    /// WS: texts sent right after connecting.
    pub(crate) on_connect: Vec<String>,
    /// The message sent (the stamp is added per message).
    pub(crate) template: Value,
    /// SSE groups: where to POST (`{id}` is filled in once the stream names the user).
    pub(crate) send_path: Option<String>,
    /// The address its TCP connections are bound to (`source_addrs`), if any.
    pub(crate) source: Option<std::net::IpAddr>,
    /// The server its connections go to (`Host`, SNI, TLS or not) ...
    pub(crate) endpoint: Arc<Endpoint>,
    /// ... at this one of its addresses (every connection of it: stream and POSTs alike).
    pub(crate) addr: SocketAddr,
}

impl Rendered {
    /// For a connection of client group number `index`.
    pub(crate) fn for_group(ctx: &RunCtx, index: usize, group: &ClientGroup, vars: &Vars) -> Self {
        let send = group.send.as_ref();
        let (endpoint, addr) = ctx.endpoints.for_group(index, vars.group_conn);
        Self {
            path: template::render(&group.path, vars).into_owned(),
            headers: headers(ctx, &group.headers, vars),
            on_connect: render_all(&group.on_connect, vars),
            template: send.map_or_else(
                || Value::Object(Map::new()),
                |s| render_value(&s.template, vars),
            ),
            send_path: send
                .and_then(|s| s.path.as_deref())
                .map(|p| template::render(p, vars).into_owned()),
            source: ctx.source_for(vars.conn),
            endpoint,
            addr,
        }
    }

    /// For a publisher (`{conn}` and `{group_conn}` are its index among the publishers).
    pub(crate) fn for_publisher(ctx: &RunCtx, p: &Publisher, vars: &Vars) -> Self {
        let index = usize::try_from(vars.conn).unwrap_or(usize::MAX);
        let (endpoint, addr) = ctx.endpoints.for_publisher(index);
        Self {
            path: template::render(&p.path, vars).into_owned(),
            headers: headers(ctx, &p.headers, vars),
            on_connect: render_all(&p.on_connect, vars),
            template: Value::Object(render_map(&p.template, vars)),
            send_path: None,
            source: ctx.source_for(vars.conn),
            endpoint,
            addr,
        }
    }
}

/// Sets every header of `from` on `to`, replacing values of the same name.
pub(crate) fn apply(to: &mut HeaderMap, from: &HeaderMap) {
    for (name, value) in from {
        to.insert(name.clone(), value.clone());
    }
}

fn headers(ctx: &RunCtx, given: &[Header], vars: &Vars) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(value) = ctx
        .token
        .as_ref()
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        map.insert(AUTHORIZATION, value);
    }
    for h in given {
        // Names and values were validated when the scenario was loaded; rendered
        // placeholders add only digits.
        let name = HeaderName::from_bytes(h.name.as_bytes());
        let value = HeaderValue::from_str(&template::render(&h.value, vars));
        if let (Ok(name), Ok(value)) = (name, value) {
            map.insert(name, value);
        }
    }
    map
}

fn render_all(texts: &[String], vars: &Vars) -> Vec<String> {
    texts
        .iter()
        .map(|t| template::render(t, vars).into_owned())
        .collect()
}

/// The template with placeholders replaced in every string value (nested ones too).
fn render_map(map: &Map<String, Value>, vars: &Vars) -> Map<String, Value> {
    map.iter()
        .map(|(k, v)| (k.clone(), render_value(v, vars)))
        .collect()
}

fn render_value(v: &Value, vars: &Vars) -> Value {
    match v {
        Value::String(s) => Value::String(template::render(s, vars).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(|i| render_value(i, vars)).collect()),
        Value::Object(map) => Value::Object(render_map(map, vars)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_connect_texts_and_message_templates_are_rendered_per_connection() {
        let vars = Vars {
            conn: 7,
            group_conn: 2,
            seed: 1,
        };
        let texts = render_all(&[r#"{"type":"join","room":"r{conn}"}"#.to_owned()], &vars);
        assert_eq!(texts, [r#"{"type":"join","room":"r7"}"#]);
        let template: Map<String, Value> = serde_json::from_str(
            r#"{"type":"broadcast","room":"r{conn}","to":["u{group_conn}"],"n":3}"#,
        )
        .expect("JSON");
        let rendered = Value::Object(render_map(&template, &vars));
        assert_eq!(
            rendered,
            serde_json::json!({"type":"broadcast","room":"r7","to":["u2"],"n":3})
        );
    }
}
