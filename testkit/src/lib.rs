//! Test-only helpers shared by the workspace's integration tests.
//!
//! [`chromium`] drives Debian's headless Chromium over the DevTools protocol: open a page,
//! evaluate JavaScript, collect console errors and exceptions, take screenshots.
//! [`certs`] generates a test CA and a server certificate for TLS tests.
//! [`netns`] builds test hosts in network namespaces (root and iproute2's `ip`).
//! [`redis`] runs a real `redis-server` on a free port.
//! [`faultnet`] puts a router that delays, drops and resets between a client and a server host.

pub mod certs;
pub mod chromium;
pub mod faultnet;
pub mod netns;
pub mod redis;
