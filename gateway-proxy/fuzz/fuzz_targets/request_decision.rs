//! Fuzz target: see `harness::request_decision`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_proxy_fuzz::harness::request_decision(data));
