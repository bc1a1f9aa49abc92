//! HTTP handlers: request validation and the glue between routes and scenarios.

pub(crate) mod common;
pub(crate) mod pages;
pub(crate) mod sse;
pub(crate) mod ws;
