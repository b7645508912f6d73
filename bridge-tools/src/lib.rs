//! Tools around omni-bridge that must not ship in its binary: the loopback [`demo`] (mock gateway,
//! gateway-proxy and the bridge in one process), the [`loopback`] proxy helper shared with the
//! workspace tests, and (as a binary) `bridge-bench`.
//!
//! `omni-bridge` itself links neither the mock gateway nor the proxy
//! (`cargo tree -p omni-bridge -e normal`); everything that needs them lives here.

pub mod demo;
pub mod loopback;
