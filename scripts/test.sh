#!/usr/bin/env bash
# The whole test suite against the bundled mock gateway: unit, property, integration and
# end-to-end tests of every crate. Needs only cargo (the Rust toolchain); no network beyond
# the Rust package registry for the first build. Set OPENCLAW_REAL=1 (with a real gateway running, see
# ../shared/real-gateway) to also run the conformance suite against the real gateway. The proxy's
# differential test (gateway-proxy/tests/differential.rs) runs the gateway's own code in Node
# from the real gateway's install when it is there, and says it skipped when not (with CI=true it
# fails instead).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }
exec cargo test --workspace "$@"
