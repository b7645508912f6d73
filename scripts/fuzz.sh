#!/usr/bin/env bash
# Coverage-guided fuzzing of the proxy's parsers with libFuzzer, on the stable toolchain (no
# cargo-fuzz, no nightly): the targets in gateway-proxy/fuzz are built with rustc's own
# SanitizerCoverage passes (-C passes=sancov-module), which libfuzzer-sys links against.
#
#   scripts/fuzz.sh build                     build the three targets (release, instrumented)
#   scripts/fuzz.sh run TARGET [libFuzzer options...]
#                                             e.g. run client_frames -runs=10000000
#   scripts/fuzz.sh ci [SECONDS]              build, replay the regressions, fuzz each target
#                                             SECONDS (default 15); any crash fails
#
# Targets: client_frames (the relay's client-path frame codec and the gateway-path frame
# follower), request_decision (the request scanner, the JSON.parse reading and the policy
# decision), upgrade_request (the HTTP upgrade request's judge). Corpora grow under
# target/fuzz-corpus/TARGET (not committed); a crash is written to target/fuzz-artifacts/TARGET:
# copy it into gateway-proxy/fuzz/regressions/TARGET/, where `cargo test` replays it
# (gateway-proxy/tests/fuzz_regressions.rs) and this script's `ci` too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ=$ROOT/gateway-proxy/fuzz
TARGETS=(client_frames request_decision upgrade_request)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$ROOT/target/fuzz}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
# As cargo-fuzz sets them, less the sanitizer (-Z, nightly only): edge coverage with inline
# 8-bit counters, the PC table, comparison tracing; debug assertions and overflow checks on.
export RUSTFLAGS="--cfg fuzzing -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=4 \
-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-pc-table \
-C llvm-args=-sanitizer-coverage-trace-compares -C debug-assertions -C overflow-checks \
-C codegen-units=1"

build() {
  # --target keeps the flags off build scripts; the host triple is the target.
  cargo build --manifest-path "$FUZZ/Cargo.toml" --release --target "$TRIPLE" --bins
}

bin() { echo "$CARGO_TARGET_DIR/$TRIPLE/release/$1"; }

run() {
  local t=$1; shift
  mkdir -p "$ROOT/target/fuzz-corpus/$t" "$ROOT/target/fuzz-artifacts/$t" "$FUZZ/regressions/$t"
  "$(bin "$t")" -artifact_prefix="$ROOT/target/fuzz-artifacts/$t/" -print_final_stats=1 "$@" \
    "$ROOT/target/fuzz-corpus/$t" "$FUZZ/seeds/$t" "$FUZZ/regressions/$t"
}

case "${1:-}" in
  build) build ;;
  run) shift; [ $# -ge 1 ] || { echo "usage: $0 run TARGET [options]" >&2; exit 2; }; run "$@" ;;
  ci)
    secs=${2:-15}
    build
    for t in "${TARGETS[@]}"; do
      echo "--- fuzz $t: ${secs} s"
      log=$ROOT/target/fuzz-artifacts/$t.log
      mkdir -p "$(dirname "$log")"
      rc=0
      run "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 > "$log" 2>&1 || rc=$?
      grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|Test unit written)" "$log" || true
      if [ "$rc" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "fuzz target $t failed (exit $rc): the input is in target/fuzz-artifacts/$t" >&2
        exit 1
      fi
    done
    ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
