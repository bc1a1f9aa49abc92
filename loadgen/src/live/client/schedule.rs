//! The one send schedule of every sender (WebSocket messages, SSE-group POSTs, publishers):
//! open model, slot `k` (from 0) at `first + k x period`, waited for with the run's
//! [`PreciseTimer`]. A sender that falls behind sends the missed slots at once, each stamped
//! with its own slot, so the delay shows as latency and as `send_lag` (wrk2's rule).

use std::time::Duration;

use tokio::time::Instant;

use super::timer::{PreciseTimer, Sleep};

/// One send slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// 1-based position in the schedule (the message's `seq`).
    pub(crate) seq: u64,
    /// The intended send time.
    pub(crate) at: Instant,
}

impl Slot {
    /// Actual send time (now) minus the slot, µs; 0 if called before the slot.
    pub(crate) fn lag_us(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.at)
                .as_micros(),
        )
        .unwrap_or(u64::MAX)
    }
}

/// Fixed-rate send slots.
#[derive(Debug)]
pub(crate) struct Schedule {
    first: Instant,
    /// Period in nanoseconds (>= 1 µs: rates are at most 1,000,000/s).
    period_ns: u64,
    /// Slots taken so far.
    taken: u64,
    sleep: Sleep,
}

impl Schedule {
    /// Slots every `period`, the first at `first`.
    pub(crate) fn new(timer: &PreciseTimer, first: Instant, period: Duration) -> Self {
        Self {
            first,
            period_ns: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1),
            taken: 0,
            sleep: timer.sleep_until(first),
        }
    }

    /// Slots every `1 / rate` seconds from now plus `fraction` of a period (`fraction` in
    /// [0, 1) spreads many connections' slots over the period).
    pub(crate) fn at_rate(timer: &PreciseTimer, rate: f64, fraction: f64) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate);
        Self::new(timer, Instant::now() + period.mul_f64(fraction), period)
    }

    fn slot_at(&self, k: u64) -> Instant {
        self.first + Duration::from_nanos(self.period_ns.saturating_mul(k))
    }

    /// Waits for the next slot and takes it. Cancel-safe: if the wait is dropped, no slot is
    /// taken and the next call waits for the same slot.
    pub(crate) async fn next(&mut self) -> Slot {
        (&mut self.sleep).await;
        let at = self.slot_at(self.taken);
        self.taken += 1;
        self.sleep.reset(self.slot_at(self.taken));
        Slot {
            seq: self.taken,
            at,
        }
    }

    /// The next slot, or `None` once `stop` completes (checked first: a stop raised while
    /// behind ends the burst).
    pub(crate) async fn next_until(
        &mut self,
        stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Slot> {
        tokio::select! {
            biased;
            () = stop => None,
            slot = self.next() => Some(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_exact_multiples_of_the_period_and_never_early() {
        let timer = PreciseTimer::start().expect("thread");
        let first = Instant::now() + Duration::from_millis(1);
        let period = Duration::from_micros(1500);
        let mut schedule = Schedule::new(&timer, first, period);
        for k in 0..20u32 {
            let slot = schedule.next().await;
            assert_eq!(slot.seq, u64::from(k) + 1);
            assert_eq!(slot.at, first + period * k);
            assert!(Instant::now() >= slot.at, "slot {k} taken early");
        }
    }

    #[tokio::test]
    async fn a_late_sender_gets_every_missed_slot_with_its_own_time() {
        let timer = PreciseTimer::start().expect("thread");
        let first = Instant::now();
        let period = Duration::from_millis(1);
        let mut schedule = Schedule::new(&timer, first, period);
        std::thread::sleep(Duration::from_millis(10));
        for k in 0..5u32 {
            let slot = schedule.next().await;
            assert_eq!(slot.at, first + period * k, "burst keeps intended slots");
            assert!(slot.lag_us() >= 5_000, "lateness is visible as lag");
        }
    }

    #[tokio::test]
    async fn a_dropped_wait_takes_no_slot() {
        let timer = PreciseTimer::start().expect("thread");
        let first = Instant::now() + Duration::from_secs(3600);
        let mut schedule = Schedule::new(&timer, first, Duration::from_secs(1));
        let waited = tokio::time::timeout(Duration::from_millis(5), schedule.next()).await;
        assert!(waited.is_err());
        assert_eq!(schedule.taken, 0);
    }
}
