//! omni-bridge: Omni's `webhook` provider in front of OpenClaw agents.
//!
//! [`service`] is the HTTP service Omni POSTs to, [`gateway`] the pooled WebSocket connection to
//! each OpenClaw gateway, [`omni`] Omni's REST API and event stream (🗑 resets), [`config`] the
//! validated configuration, [`register`] `omni-bridge register`, [`cli`] the command line and
//! [`demo`] the loopback demo.
pub mod cli;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod omni;
pub mod register;
pub mod service;
