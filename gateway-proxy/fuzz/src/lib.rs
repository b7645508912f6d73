//! The proxy's parsers, compiled from their own source files (no copy), for the fuzz targets:
//! they need nothing but std and httparse. The two crate names they use are this crate itself,
//! so `gateway_proxy::wire` and `shared_protocol::js_json` resolve here as in the real crates.
#![forbid(unsafe_code)]
#![allow(dead_code, missing_docs)]

extern crate self as gateway_proxy;
extern crate self as shared_protocol;

#[path = "../../../shared-protocol/src/js_json.rs"]
pub mod js_json;
#[path = "../../../shared-protocol/src/js_string.rs"]
pub mod js_string;
#[path = "../../../shared-protocol/src/method_table.rs"]
mod method_table;
#[path = "../../../shared-protocol/src/scopes.rs"]
pub mod scopes;

#[path = "../../src/chat_session.rs"]
pub mod chat_session;
#[path = "../../src/client_codec.rs"]
pub mod client_codec;
#[path = "../../src/frame_cursor.rs"]
pub mod frame_cursor;
#[path = "../../src/request_read.rs"]
pub mod request_read;
#[path = "../../src/request_scan.rs"]
pub mod request_scan;
#[path = "../../src/upgrade_request.rs"]
pub mod upgrade_request;
#[path = "../../src/wire.rs"]
pub mod wire;

pub use scopes::{Scope, ScopeSet};

pub mod harness;
