//! Delay injection, for calibrating a load generator against a known truth.
//!
//! `?delay_every=K&delay_ms=D` on `GET /sse/counter` writes every K-th event of that stream D ms
//! late (still stamped with its intended time); on `GET /ws/echo` it holds every K-th echo D ms.
//! Connections that ask for it record what the server actually did in a [`Truth`] histogram:
//! for the counter, write time minus the event's intended time; for the echo, echo write
//! minus message receipt. `/metrics` exposes both as `rt_truth_us` summaries, so a client's
//! percentiles minus the server's are the client's own error.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use salvo::Request;

use crate::http::common::query_in_range;

/// Longest injected delay, ms (a held echo blocks its connection's session meanwhile).
pub const MAX_DELAY_MS: u64 = 10_000;

/// Every `every`-th message of a connection is held `delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// K >= 1: messages 1..K-1 go on time, message K is held, and so on.
    pub every: u64,
    /// How long the K-th message is held.
    pub delay: Duration,
}

impl Injection {
    /// Reads `delay_every` and `delay_ms` from the query; both or neither.
    ///
    /// # Errors
    /// A message naming the parameter and the allowed range.
    pub(crate) fn from_request(req: &Request) -> Result<Option<Self>, String> {
        let every = query_in_range(req, "delay_every", 1u64, 1_000_000)?;
        let delay_ms = query_in_range(req, "delay_ms", 0u64, MAX_DELAY_MS)?;
        match (every, delay_ms) {
            (None, None) => Ok(None),
            (Some(every), Some(ms)) => Ok(Some(Self {
                every,
                delay: Duration::from_millis(ms),
            })),
            _ => Err("`delay_every` and `delay_ms` go together: give both or neither".to_owned()),
        }
    }

    /// The hold of the `n`-th (1-based) message of a connection.
    #[must_use]
    pub fn delay_for(&self, n: u64) -> Duration {
        if n.is_multiple_of(self.every) {
            self.delay
        } else {
            Duration::ZERO
        }
    }
}

/// Highest value a truth histogram tracks, µs (one hour; larger values are clamped).
const MAX_TRUTH_US: u64 = 3_600_000_000;

/// What the server actually did on delay-injection connections, µs (HdrHistogram, 3 digits).
#[derive(Debug)]
pub struct Truth(Mutex<Histogram<u64>>);

impl Default for Truth {
    fn default() -> Self {
        Self(Mutex::new(
            Histogram::new_with_bounds(1, MAX_TRUTH_US, 3).expect("constant bounds are valid"),
        ))
    }
}

impl Truth {
    /// Records one message's delay in µs (clamped to 1 µs ..= one hour).
    pub fn record(&self, us: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(us.clamp(1, MAX_TRUTH_US));
    }

    /// A copy of the histogram.
    #[must_use]
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kth_message_is_held() {
        let inj = Injection {
            every: 3,
            delay: Duration::from_millis(7),
        };
        let held: Vec<u64> = (1..=9).filter(|n| !inj.delay_for(*n).is_zero()).collect();
        assert_eq!(held, [3, 6, 9]);
    }

    #[test]
    fn truth_clamps_and_counts() {
        let t = Truth::default();
        t.record(0);
        t.record(1500);
        let h = t.snapshot();
        assert_eq!((h.len(), h.min()), (2, 1));
        assert_eq!(h.max(), h.highest_equivalent(1500));
    }
}
