//! Fuzz target: see `harness::upgrade_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_proxy_fuzz::harness::upgrade_request(data));
