//! loadgen: scenario-driven SSE and WebSocket load with HDR latency histograms, loss
//! accounting, memory of both sides, CSV outputs and pass/fail thresholds.

pub mod cli;
pub mod commands;
pub mod fuzzing;
pub mod live;
pub mod results;
pub mod scenario;

pub use live::run::{Progress, RunError, RunOptions, run};
