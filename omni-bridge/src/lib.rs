//! omni-bridge: Omni's `webhook` provider in front of OpenClaw agents.
//!
//! [`service`] is the HTTP service Omni POSTs to, [`gateway`] the pooled WebSocket connection to
//! each OpenClaw gateway, [`omni`] Omni's REST API and event stream (🗑 resets), [`config`] the
//! validated configuration, [`register`] `omni-bridge register` and [`cli`] the command line.
//!
//! The crate ships only the service: the loopback demo, `bridge-bench` and everything that links
//! the mock gateway or gateway-proxy live in the `bridge-tools` crate.
pub mod cli;
pub mod config;
pub mod gateway;
pub mod omni;
pub mod register;
pub mod service;
