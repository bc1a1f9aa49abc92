//! Wire formats shared by the target server and the load generator.
//!
//! * [`stamp`]: the stamped message (`seq`, `ts` in Unix microseconds, payload) that every
//!   instrumented message carries, so that delivery latency and loss can be measured.
//! * [`sse`]: a Server-Sent Events encoder and an incremental parser that follows the WHATWG
//!   HTML "server-sent events" interpretation rules.
//!
//! This crate does no I/O; it only turns values into bytes and bytes into values.

pub mod sse;
pub mod stamp;

pub use stamp::{
    SERVER_TIME_HEADER, Stamp, StampError, StampFields, StampedMessage, TimeUnit, now_unix_us,
};
