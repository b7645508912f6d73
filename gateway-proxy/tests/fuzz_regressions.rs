//! Every input the fuzz targets ever failed on (`gateway-proxy/fuzz/regressions/TARGET/`), and
//! their seeds, replayed through the same checks (`fuzz/src/harness.rs`) on every `cargo test`:
//! a crash the fuzzer found stays fixed. `scripts/fuzz.sh` runs the fuzzers themselves.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            check(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn client_frames() {
    assert!(replay("client_frames", harness::client_frames) > 0);
}

#[test]
fn request_decision() {
    assert!(replay("request_decision", harness::request_decision) > 0);
}

#[test]
fn upgrade_request() {
    assert!(replay("upgrade_request", harness::upgrade_request) > 0);
}
