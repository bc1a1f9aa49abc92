//! Reconnection delays: exponential backoff with jitter, so that connections dropped together
//! (a server restart, a network partition) do not all come back in the same instant.
//!
//! The wait before attempt `n` after a drop (`n` = failed attempts since the last stream that
//! was established) is `d × (1 + u)` with `d = min(base × 2ⁿ, MAX_BACKOFF)` and `u` uniform in
//! [0, 1): never less than `base`, which for SSE is the stream's `retry` as the EventSource
//! spec asks ("wait the reconnection time, optionally some more"), and spread over a window as
//! wide as the delay itself.

use std::time::Duration;

use super::fastrand_fraction;

/// Longest delay before jitter: attempts against a target that stays away settle at one every
/// 30–60 s.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One connection's reconnection state.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// Seeds the jitter: the connection's index over the run, so connections differ.
    conn: u64,
    /// Failed attempts since the last established stream.
    failures: u32,
    /// Waits drawn so far (each draw gets a fresh jitter).
    draws: u64,
}

impl Backoff {
    /// The state of connection `conn` (its index over the run).
    pub(crate) fn new(conn: u64) -> Self {
        Self {
            conn,
            failures: 0,
            draws: 0,
        }
    }

    /// A stream was established: the next drop starts again from `base`.
    pub(crate) fn established(&mut self) {
        self.failures = 0;
    }

    /// An attempt failed: the next wait doubles (up to [`MAX_BACKOFF`]).
    pub(crate) fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The wait before the next attempt, `base` being the delay after a drop.
    pub(crate) fn next_delay(&mut self, base: Duration) -> Duration {
        let doubled = base.saturating_mul(1u32 << self.failures.min(16));
        let delay = doubled.min(MAX_BACKOFF.max(base));
        self.draws += 1;
        let u = fastrand_fraction(self.conn.wrapping_mul(0x1_0000_0001) ^ (self.draws << 40));
        delay.mul_f64(1.0 + u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_at_base_double_per_failure_and_stop_at_the_cap() {
        let base = Duration::from_secs(1);
        let mut b = Backoff::new(7);
        let first = b.next_delay(base);
        assert!(first >= base && first < 2 * base, "{first:?}");
        b.failed();
        let second = b.next_delay(base);
        assert!(second >= 2 * base && second < 4 * base, "{second:?}");
        for _ in 0..20 {
            b.failed();
        }
        let capped = b.next_delay(base);
        assert!(
            capped >= MAX_BACKOFF && capped < 2 * MAX_BACKOFF,
            "{capped:?}"
        );
        b.established();
        let again = b.next_delay(base);
        assert!(again >= base && again < 2 * base, "{again:?}");
    }

    #[test]
    fn a_base_above_the_cap_is_honoured() {
        let base = Duration::from_secs(45);
        let mut b = Backoff::new(1);
        b.failed();
        assert!(b.next_delay(base) >= base);
    }

    #[test]
    fn connections_dropped_together_spread_over_the_window() {
        // 1,000 connections dropped at once: their first waits fill [1 s, 2 s) evenly: every
        // tenth of the window gets between 5% and 15% of them (no synchronized storm).
        let base = Duration::from_secs(1);
        let mut buckets = [0u32; 10];
        for conn in 0..1000 {
            let wait = Backoff::new(conn).next_delay(base);
            let tenth = (wait - base).as_millis() / 100;
            buckets[usize::try_from(tenth).expect("small")] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (50..=150).contains(&n)),
            "{buckets:?}"
        );
        // And one connection's successive waits differ too.
        let mut b = Backoff::new(3);
        let (x, y) = (b.next_delay(base), b.next_delay(base));
        assert_ne!(x, y);
    }
}
