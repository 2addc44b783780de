#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the Rust workspace (unit tests and
# black-box tests against the real server binary). Installs what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

echo "== format"
cargo fmt --all -- --check

echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
