#!/usr/bin/env bash
# Supply-chain check with cargo-deny against the offline RustSec snapshot in ../shared/advisory-db.
# Outside CI it skips (exit 0) when cargo-deny is not installed: `cargo install cargo-deny --locked`
# (about 5 minutes) to run it locally. In CI (CI=true) it installs cargo-deny first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "installing cargo-deny (about 5 minutes on 2 cores)"
    cargo install cargo-deny --locked --quiet
  else
    echo "cargo-deny not installed; skipping (cargo install cargo-deny --locked)"
    exit 0
  fi
fi
db_src=${ADVISORY_DB:-../shared/advisory-db}
db_root=$(mktemp -d)
trap 'rm -rf "$db_root"' EXIT
# cargo-deny expects <db-path>/advisory-db-<hash> to be a git repository.
dest="$db_root/advisory-db-3157b0e258782691"
cp -r "$db_src" "$dest"
( cd "$dest" && git init -q && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm snapshot )
sed "s|^db-path = .*|db-path = \"$db_root\"|" deny.toml > "$db_root/deny.toml"
# `cargo deny` runs `cargo metadata` for every target platform (windows-sys, anstyle-wincon, ...),
# while the build and the tests fetched only Linux's crates. Fetch them all first (a no-op on a warm
# cache); only the advisory database stays offline.
cargo fetch --locked --quiet
cargo deny --offline --workspace --config "$db_root/deny.toml" check
