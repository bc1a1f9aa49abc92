//! Stock feed: named `price` events for N symbols at a set rate, per connection.
//!
//! Each connection runs its own deterministic random walk (seeded by the connection's
//! sequence of symbols), so the feed needs no shared state. Updates go round-robin over the
//! symbols; update `k` is stamped with its intended time `start + (k - 1) / rate`.

use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

use super::{EventSource, encode};

const NAMES: [&str; 10] = [
    "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL", "IBM", "INTC",
];

/// Symbol name of index `i`: well-known tickers first, then `SYM10`, `SYM11`, ...
fn symbol(i: usize) -> String {
    NAMES
        .get(i)
        .map_or_else(|| format!("SYM{i}"), |s| (*s).to_owned())
}

#[derive(Serialize)]
struct Price<'a> {
    symbol: &'a str,
    /// Price in currency units, rounded to cents.
    price: f64,
    /// Change since this symbol's previous update, rounded to cents.
    change: f64,
    seq: u64,
    ts: u64,
}

/// Price updates for one connection.
#[derive(Debug)]
pub(crate) struct Stocks {
    symbols: Vec<(String, f64)>,
    ticker: Interval,
    period_us: u64,
    start_us: u64,
    seq: u64,
    rng: u64,
}

impl Stocks {
    /// `symbols` symbols, `rate` updates per second in total (both > 0, checked by the handler).
    pub(crate) fn new(symbols: usize, rate: u32) -> Self {
        let period = Duration::from_secs(1) / rate;
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        Self {
            symbols: (0..symbols)
                .map(|i| (symbol(i), 100.0 + i as f64))
                .collect(),
            ticker,
            period_us,
            start_us: wire::now_unix_us().saturating_add(period_us),
            seq: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ symbols as u64,
        }
    }

    /// xorshift64: a uniform value in [-1, 1).
    fn step(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

impl EventSource for Stocks {
    async fn next_event(&mut self) -> Option<bytes::Bytes> {
        self.ticker.tick().await;
        self.seq += 1;
        let ts = self.start_us + (self.seq - 1).saturating_mul(self.period_us);
        let delta = (self.step() * 50.0).round() / 100.0;
        let index = usize::try_from((self.seq - 1) % self.symbols.len() as u64).ok()?;
        let (name, price) = &mut self.symbols[index];
        *price = ((*price + delta).max(0.01) * 100.0).round() / 100.0;
        let data = serde_json::to_string(&Price {
            symbol: name,
            price: *price,
            change: delta,
            seq: self.seq,
            ts,
        })
        .ok()?;
        Some(encode(Some("price"), Some(self.seq), &data).into())
    }
}
