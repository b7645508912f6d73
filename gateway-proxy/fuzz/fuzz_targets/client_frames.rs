//! Fuzz target: see `harness::client_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_proxy_fuzz::harness::client_frames(data));
