//! Durations as written in scenario files: a number followed by `ns`, `us`, `ms`, `s`, `m` or
//! `h` (`"30s"`, `"1.5s"`, `"250ms"`).

use std::time::Duration;

/// Parses a duration; the message says what is allowed.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim().trim_matches('"');
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"30s\", \"250ms\" or \"2m\""))?;
    let seconds = match unit.trim() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "" => {
            return Err(format!(
                "`{text}` has no unit: write e.g. \"{text}s\" or \"{text}ms\""
            ));
        }
        other => {
            return Err(format!(
                "`{text}` has unknown unit `{other}`; use ns, us, ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

/// Formats a duration the way scenario files write them (`30s`, `250ms`, `1.5ms`).
pub(crate) fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0s".to_owned()
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{}us", us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_without() {
        let ok = [
            ("30s", Duration::from_secs(30)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("100us", Duration::from_micros(100)),
            ("\"50ms\"", Duration::from_millis(50)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        assert!(
            parse_duration("30")
                .expect_err("must be refused")
                .contains("no unit")
        );
        assert!(
            parse_duration("5 days")
                .expect_err("must be refused")
                .contains("unknown unit")
        );
        assert!(
            parse_duration("fast")
                .expect_err("must be refused")
                .contains("not a duration")
        );
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }
}
