//! The live run: scenario in, load out, measurements recorded. Connections and publishers
//! (`client`), the phases (`run`), recording (`stats`, `tracker`), the once-a-second reporter,
//! the target (bundled, as one or several instances over Redis, or remote), connections (`transport`: resolution, TCP, TLS), the machine's limits (`host`), raw samples and calibration, the synchronised start of
//! sharded runs (`start_at`).

pub mod calibrate;
pub(crate) mod client;
pub(crate) mod deployment;
pub mod host;
pub mod raw_samples;
pub mod read_path;
pub(crate) mod redis_child;
pub(crate) mod reporter;
pub mod run;
pub mod start_at;
pub mod stats;
pub(crate) mod supervise;
pub mod target;
pub mod tracker;
pub mod transport;
