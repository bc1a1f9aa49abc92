//! loadgen integration tests: real sockets on 127.0.0.1:0, the bundled server as a real child
//! process, and small fake servers that misbehave on purpose.

mod cli;
mod cluster;
mod correctness;
mod deploy;
mod faults;
mod foreign;
mod headers;
mod network;
mod report;
mod scenarios;
mod shards;
mod support;
mod targets;
mod tls;
