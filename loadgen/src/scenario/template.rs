//! Per-connection templates in paths, headers, `on_connect` and messages, so every connection
//! can be its own user or room:
//!
//! - `{conn}`: the connection's index over the whole run (from 0, in scenario order; for a
//!   publisher, its index among the publishers);
//! - `{group_conn}`: its index within its group (from 0);
//! - `{rand:A..B}`: a whole number from A to B inclusive, drawn from the run's seed
//!   (`--seed`), the connection and the placeholder's position: the same seed gives the same
//!   values, run after run.
//!
//! Anything else in braces is left as it is (JSON has braces of its own); in paths and header
//! values, where braces are rare, an unknown `{name}` is an error so a typo is caught.

use std::borrow::Cow;

/// What placeholders are replaced with for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vars {
    /// Index over the run.
    pub conn: u64,
    /// Index within the group.
    pub group_conn: u64,
    /// The run's seed.
    pub seed: u64,
}

/// One placeholder found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Conn,
    GroupConn,
    Rand(u64, u64),
}

/// Parses `inner` (the text between braces) as a placeholder.
fn placeholder(inner: &str) -> Option<Result<Placeholder, String>> {
    match inner {
        "conn" => Some(Ok(Placeholder::Conn)),
        "group_conn" => Some(Ok(Placeholder::GroupConn)),
        _ => {
            let range = inner.strip_prefix("rand:")?;
            let parsed = range.split_once("..").and_then(|(a, b)| {
                Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
            });
            Some(match parsed {
                Some((a, b)) if a <= b => Ok(Placeholder::Rand(a, b)),
                Some(_) => Err(format!(
                    "`{{{inner}}}`: the range must not be empty (A <= B)"
                )),
                None => Err(format!(
                    "`{{{inner}}}`: write {{rand:A..B}} with whole numbers A <= B"
                )),
            })
        }
    }
}

/// Splits `text` into literal parts and placeholders; `strict` makes an unknown `{name}` an
/// error.
fn scan(text: &str, strict: Option<&[&str]>) -> Result<Vec<(usize, usize, Placeholder)>, String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| from + i) {
        let Some(close) = text[open..].find('}').map(|i| open + i) else {
            break;
        };
        let inner = &text[open + 1..close];
        match placeholder(inner) {
            Some(Ok(p)) => found.push((open, close + 1, p)),
            Some(Err(e)) => return Err(e),
            None if strict.is_some_and(|allowed| !allowed.contains(&inner))
                && !inner.is_empty()
                && inner.chars().all(is_name_char) =>
            {
                return Err(format!(
                    "unknown placeholder `{{{inner}}}`; use {{conn}}, {{group_conn}} or {{rand:A..B}}"
                ));
            }
            None => {}
        }
        from = open + 1;
    }
    Ok(found)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Checks a path or header value: every `{name}` must be a known placeholder or one of
/// `also` (such as `id` in an SSE group's `send_path`, filled in later).
///
/// # Errors
/// A message naming the placeholder and what is allowed.
pub fn check_strict(text: &str, also: &[&str]) -> Result<(), String> {
    scan(text, Some(also)).map(|_| ())
}

/// Checks the placeholders a JSON text or message holds (other braces are JSON's).
///
/// # Errors
/// A message naming a malformed `{rand:..}`.
pub fn check(text: &str) -> Result<(), String> {
    scan(text, None).map(|_| ())
}

/// Whether `text` holds any placeholder (to skip rendering when it does not).
#[must_use]
pub fn has_placeholders(text: &str) -> bool {
    scan(text, None).is_ok_and(|f| !f.is_empty())
}

/// `text` with its placeholders replaced for `vars` (unchanged when it has none).
#[must_use]
pub fn render<'a>(text: &'a str, vars: &Vars) -> Cow<'a, str> {
    let Ok(found) = scan(text, None) else {
        return Cow::Borrowed(text);
    };
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut at = 0;
    for (k, (start, end, p)) in found.into_iter().enumerate() {
        out.push_str(&text[at..start]);
        let value = match p {
            Placeholder::Conn => vars.conn,
            Placeholder::GroupConn => vars.group_conn,
            Placeholder::Rand(a, b) => {
                let span = b - a;
                let draw = mix(vars.seed ^ mix(vars.conn) ^ mix(k as u64 + 1));
                a + if span == u64::MAX {
                    draw
                } else {
                    draw % (span + 1)
                }
            }
        };
        out.push_str(&value.to_string());
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// SplitMix64's finaliser: a well-spread 64-bit hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(conn: u64, group_conn: u64) -> Vars {
        Vars {
            conn,
            group_conn,
            seed: 7,
        }
    }

    #[test]
    fn placeholders_are_replaced_and_json_braces_left_alone() {
        let text = r#"{"type":"join","room":"r{conn}","seat":{group_conn}}"#;
        assert_eq!(
            render(text, &vars(12, 3)),
            r#"{"type":"join","room":"r12","seat":3}"#
        );
        assert!(matches!(render("/plain", &vars(1, 1)), Cow::Borrowed(_)));
        assert!(has_placeholders("/u/{conn}") && !has_placeholders(r#"{"a":1}"#));
    }

    #[test]
    fn random_values_are_in_range_reproducible_and_differ_between_connections() {
        let draw = |conn: u64, seed: u64| {
            let v = Vars {
                conn,
                group_conn: 0,
                seed,
            };
            render("{rand:10..20}", &v).parse::<u64>().expect("number")
        };
        let values: Vec<u64> = (0..200).map(|c| draw(c, 1)).collect();
        assert!(values.iter().all(|v| (10..=20).contains(v)));
        assert_eq!(values, (0..200).map(|c| draw(c, 1)).collect::<Vec<_>>());
        let distinct: std::collections::BTreeSet<_> = values.iter().collect();
        assert_eq!(distinct.len(), 11, "every value of the range is drawn");
        assert_ne!(values, (0..200).map(|c| draw(c, 2)).collect::<Vec<_>>());
        assert_eq!(render("{rand:5..5}", &vars(3, 0)), "5");
    }

    #[test]
    fn unknown_and_malformed_placeholders_are_named() {
        assert!(check_strict("/rooms/{conn}?x={rand:1..9}", &[]).is_ok());
        let err = check_strict("/rooms/{con}", &[]).expect_err("typo");
        assert!(err.contains("`{con}`") && err.contains("{conn}"), "{err}");
        assert!(
            check(r#"{"room":"{con}"}"#).is_ok(),
            "JSON texts are not strict"
        );
        let err = check("{rand:9..1}").expect_err("empty range");
        assert!(err.contains("A <= B"), "{err}");
        assert!(check("{rand:x..1}").is_err());
    }
}
