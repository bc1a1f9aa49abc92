//! `--start-at`: every shard of a run starts its connect phase at the same wall-clock
//! instant, given as RFC 3339 (`2026-11-22T10:00:00Z`, offsets and fractions allowed) or Unix
//! seconds (`1795341600`, fractions allowed).

use std::time::Duration;

/// How far in the past a start may be and still run at once (clocks and process start-up
/// of the shards differ by a little).
pub const GRACE: Duration = Duration::from_secs(2);

/// A start instant, Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt {
    /// The instant, Unix µs.
    pub unix_us: u64,
}

/// How far ahead a start may be: further is taken for a mistake (milliseconds given as
/// seconds, a wrong year) rather than waited for.
pub const MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// A start that cannot be kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartAtError {
    /// Too late.
    #[error(
        "--start-at {at} is {late_s:.1} s in the past (more than the {grace_s} s grace): give a later time"
    )]
    Past {
        /// The start asked for, RFC 3339.
        at: String,
        /// How late it is, seconds.
        late_s: f64,
        /// The grace, seconds.
        grace_s: u64,
    },
    /// Too far ahead to be meant.
    #[error(
        "--start-at {at} is {ahead_h:.0} hours ahead (more than {max_h}): Unix seconds, not milliseconds?"
    )]
    TooFar {
        /// The start asked for, RFC 3339 (or the Unix µs when beyond any date).
        at: String,
        /// How far ahead, hours.
        ahead_h: f64,
        /// The limit, hours.
        max_h: u64,
    },
}

impl StartAt {
    /// Parses RFC 3339 or Unix seconds; the message says what is allowed.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let help = "use RFC 3339 (2026-11-22T10:00:00Z) or Unix seconds (1795341600)";
        let unix_us = if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let seconds: f64 = text
                .parse()
                .map_err(|_| format!("`{text}` is not a time: {help}"))?;
            micros(seconds)
        } else {
            rfc3339_us(text).ok_or_else(|| format!("`{text}` is not a time: {help}"))?
        };
        Ok(Self { unix_us })
    }

    /// How long to wait from `now_us` (zero when the start is up to [`GRACE`] late).
    ///
    /// # Errors
    /// [`StartAtError`] when the start is more than [`GRACE`] in the past or more than
    /// [`MAX_AHEAD`] ahead.
    pub fn wait_from(self, now_us: u64) -> Result<Duration, StartAtError> {
        if self.unix_us >= now_us {
            let ahead = Duration::from_micros(self.unix_us - now_us);
            if ahead > MAX_AHEAD {
                return Err(StartAtError::TooFar {
                    at: crate::results::output::rfc3339(self.unix_us),
                    ahead_h: ahead.as_secs_f64() / 3600.0,
                    max_h: MAX_AHEAD.as_secs() / 3600,
                });
            }
            return Ok(ahead);
        }
        let late = Duration::from_micros(now_us - self.unix_us);
        if late > GRACE {
            return Err(StartAtError::Past {
                at: crate::results::output::rfc3339(self.unix_us),
                late_s: late.as_secs_f64(),
                grace_s: GRACE.as_secs(),
            });
        }
        Ok(Duration::ZERO)
    }

    /// Waits until the instant, printing a countdown on stderr once a second when `show`.
    ///
    /// # Errors
    /// [`StartAtError`] when the instant has already passed by more than [`GRACE`].
    pub async fn wait(self, show: bool) -> Result<(), StartAtError> {
        loop {
            let left = self.wait_from(wire::now_unix_us())?;
            if left.is_zero() {
                return Ok(());
            }
            if show {
                eprintln!(
                    "starting at {} (in {:.0} s)",
                    crate::results::output::rfc3339(self.unix_us),
                    left.as_secs_f64().ceil()
                );
            }
            // The last step sleeps exactly what is left (the timer's resolution is 1 ms).
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
    }
}

/// Seconds as whole microseconds (rounded; negative and NaN are 0, too large saturates).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn micros(seconds: f64) -> u64 {
    // `as` saturates and maps NaN to 0.
    (seconds * 1e6).round() as u64
}

/// Unix µs of an RFC 3339 date-time (`T`, `t` or a space between date and time; `Z`, `z` or
/// `±HH:MM`; any number of fraction digits, kept to the microsecond).
fn rfc3339_us(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if b[at] == b'.' {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let frac = &text[at + 1..at + 1 + digits.min(6)];
        micros = frac.parse::<i64>().ok()? * 10i64.pow(6 - u32::try_from(frac.len()).ok()?);
        at += 1 + digits;
    }
    let offset_s = match &text[at..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':' =>
        {
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(seconds * 1_000_000 + micros).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_unix_seconds_parse_to_the_same_instant() {
        let at = |t: &str| StartAt::parse(t).map(|s| s.unix_us);
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(at("2026-11-22T10:00:00Z"), Ok(1_795_341_600_000_000));
        assert_eq!(at("1795341600"), Ok(1_795_341_600_000_000));
        assert_eq!(at("1795341600.25"), Ok(1_795_341_600_250_000));
        assert_eq!(at("2026-11-22T11:30:00+01:30"), Ok(1_795_341_600_000_000));
        assert_eq!(at("2026-11-22 09:00:00.5-01:00"), Ok(1_795_341_600_500_000));
        assert_eq!(
            at("2024-02-29t00:00:00.123456789z"),
            Ok(1_709_164_800_123_456)
        );
        // Round trip with the writer of run.json.
        assert_eq!(
            crate::results::output::rfc3339(1_795_341_600_000_000),
            "2026-11-22T10:00:00Z"
        );
        for bad in [
            "",
            "soon",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00+1",
            "2026-11-22T25:00:00Z",
            "1.2.3",
        ] {
            let err = StartAt::parse(bad).expect_err(bad);
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_start_in_the_past_beyond_the_grace_is_an_error() {
        let at = StartAt {
            unix_us: 10_000_000,
        };
        assert_eq!(at.wait_from(4_000_000), Ok(Duration::from_secs(6)));
        assert_eq!(at.wait_from(11_500_000), Ok(Duration::ZERO));
        let err = at.wait_from(13_000_000).expect_err("3 s late");
        assert!(matches!(err, StartAtError::Past { late_s, .. } if (late_s - 3.0).abs() < 1e-9));
        assert!(err.to_string().contains("3.0 s in the past"), "{err}");
        // Milliseconds given as seconds: refused, not waited for.
        let ms = StartAt::parse("1795341600000").expect("a number");
        let err = ms.wait_from(1_795_341_000_000_000).expect_err("far ahead");
        assert!(err.to_string().contains("not milliseconds?"), "{err}");
        assert!(at.wait_from(0).is_ok(), "10 s ahead is fine");
    }
}
