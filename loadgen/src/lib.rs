//! loadgen: scenario-driven SSE and WebSocket load with HDR latency histograms, loss
//! accounting, memory of both sides, CSV outputs and pass/fail thresholds.

pub mod scenario;
pub mod stats;
pub mod tracker;
