//! Request headers of client groups and publishers (`headers = { Authorization = "Bearer
//! ${TOKEN}" }`) and of the command line (`--header 'Name: value'`).
//!
//! `${VAR}` in a value is taken from the environment when the scenario is loaded; an unset
//! variable is an error before anything runs. Values may hold per-connection placeholders
//! (`{conn}`, see [`super::template`]). Header values are never written to the run's outputs
//! (they often carry secrets): `run.json` records only their names.

use super::template;

/// One request header, `${VAR}`s already expanded.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as written (HTTP names are case-insensitive).
    pub name: String,
    /// The value; may hold placeholders.
    pub value: String,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value is often a credential: never in logs or panic messages.
        write!(f, "Header({}: …)", self.name)
    }
}

/// Headers loadgen sets itself (the connection and protocol depend on them).
const RESERVED: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// Validates a header: a token name that loadgen does not set itself, a value of visible
/// ASCII, spaces and tabs once `${VAR}`s are expanded, and only known placeholders.
///
/// # Errors
/// A message naming what is wrong (and the variable, for an unset one).
pub fn header(name: &str, value: &str) -> Result<Header, String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "`{name}` is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "`{name}` is set by loadgen itself and cannot be given"
        ));
    }
    let value = expand_env(value)?;
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'))
    {
        return Err(format!(
            "the value of `{name}` holds {bad:?}: only visible ASCII, spaces and tabs are allowed"
        ));
    }
    template::check_strict(&value, &[]).map_err(|e| format!("the value of `{name}`: {e}"))?;
    Ok(Header {
        name: name.to_owned(),
        value,
    })
}

/// Parses `--header 'Name: value'`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_cli(arg: &str) -> Result<Header, String> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {arg:?}"))?;
    header(name.trim(), value.trim())
}

/// `base` with every header of `overrides` replacing one of the same name (case-insensitive)
/// or added.
#[must_use]
pub fn merged(base: &[Header], overrides: &[Header]) -> Vec<Header> {
    let mut out: Vec<Header> = base
        .iter()
        .filter(|h| {
            !overrides
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&h.name))
        })
        .cloned()
        .collect();
    out.extend(overrides.iter().cloned());
    out
}

/// `text` with every `${NAME}` replaced by the environment variable NAME.
///
/// # Errors
/// Names the variable that is not set (or not valid Unicode), or a `${` without its `}`.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
        let name = &after[..end];
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`${{{name}}}` is not a variable name"));
        }
        let value =
            std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_reserved_headers_are_checked() {
        let h = header("Authorization", "Bearer abc.def").expect("valid");
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("Authorization", "Bearer abc.def")
        );
        assert!(header("X-User", "u{conn}").is_ok());
        for (name, value, says) in [
            ("Bad Name", "x", "not a valid header name"),
            ("Host", "example.com", "set by loadgen itself"),
            ("sec-websocket-key", "x", "set by loadgen itself"),
            ("X-A", "line\nbreak", "only visible ASCII"),
            ("X-A", "u{user}", "unknown placeholder"),
            ("X-A", "${}", "not a variable name"),
            ("X-A", "${OPEN", "without a closing"),
        ] {
            let err = header(name, value).expect_err(name);
            assert!(err.contains(says), "{name}: {err}");
        }
        assert!(
            !format!("{h:?}").contains("abc"),
            "values stay out of Debug"
        );
    }

    #[test]
    fn environment_variables_expand_and_unset_ones_are_named() {
        // PATH is set wherever tests run; this name is not.
        let path = std::env::var("PATH").expect("PATH");
        assert_eq!(expand_env("p=${PATH};").expect("set"), format!("p={path};"));
        assert_eq!(
            expand_env("no vars, $ alone").expect("plain"),
            "no vars, $ alone"
        );
        let err = expand_env("Bearer ${LOADGEN_SURELY_UNSET_VAR_42}").expect_err("unset");
        assert!(
            err.contains("`LOADGEN_SURELY_UNSET_VAR_42` is not set"),
            "{err}"
        );
    }

    #[test]
    fn cli_headers_parse_and_override_by_name() {
        let cli = parse_cli("authorization: Bearer new").expect("valid");
        assert!(parse_cli("no colon").is_err());
        let base = [
            header("Authorization", "Bearer old").expect("valid"),
            header("Cookie", "sid=1").expect("valid"),
        ];
        let all = merged(&base, &[cli]);
        let pairs: Vec<(&str, &str)> = all
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("Cookie", "sid=1"), ("authorization", "Bearer new")]
        );
    }
}
