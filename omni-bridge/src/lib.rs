//! omni-bridge: Omni's `webhook` provider in front of OpenClaw agents.
//!
//! Layers, each importing only the ones below it (checked by `tests/tests/module_graph.rs`):
//!
//! - [`cli`]: the command line (`serve`, `register`, `check-gateway`, `reset`);
//! - [`bridge`]: the running bridge, wiring the layers below together;
//! - [`register`]: `omni-bridge register`;
//! - [`omni`]: Omni's REST API and event stream (🗑 resets);
//! - [`service`]: the HTTP service Omni POSTs to;
//! - [`gateway`]: the pooled WebSocket connection to each OpenClaw gateway;
//! - [`config`] (the one validated configuration), [`error`] (the one error classification) and
//!   [`http_client`] (the small HTTP client of the commands and of the Omni API).
//!
//! The crate ships only the service: the loopback demo, `bridge-bench` and everything that links
//! the mock gateway or gateway-proxy live in the `bridge-tools` crate.
pub mod bridge;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http_client;
pub mod omni;
pub mod register;
pub mod service;
