//! loadgen: scenario-driven SSE and WebSocket load with HDR latency histograms, loss
//! accounting, memory of both sides, CSV outputs and pass/fail thresholds.

pub mod calibrate;
pub mod cli;
pub(crate) mod client;
pub mod commands;
pub mod compare;
pub mod host;
pub mod html;
pub mod output;
pub mod raw_samples;
pub mod report;
mod reporter;
pub mod run;
pub mod rundir;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod tracker;

pub use run::{Progress, RunError, RunOptions, run};
