//! omni-bridge: Omni's `webhook` provider in front of OpenClaw agents.
//!
//! [`service`] is the HTTP service Omni POSTs to, [`gateway`] the pooled WebSocket connection to
//! each OpenClaw gateway, [`config`] the validated configuration, [`register`] the Omni REST
//! client behind `omni-bridge register`, [`cli`] the command line and [`demo`] the loopback demo.
pub mod cli;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod register;
pub mod service;
