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
# The benchmark's optional JetStream and plotting code, so it does not rot unbuilt.
cargo clippy -p esdb-bench --all-targets --all-features --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== deploy (deploy/k8s YAML-parsed and its fields checked, with the Dockerfile)"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml 2>/dev/null \
  || { apt-get update -qq && apt-get install -y -qq python3-yaml >/dev/null; }
python3 scripts/check-deploy.py

echo "== fuzz (cargo-fuzz on stable: -s none with RUSTC_BOOTSTRAP=1; 10 s per target)"
bash fuzz/run-ci.sh

echo "== benchmark smoke (a few seconds against esdb; checks it runs, measures nothing)"
cargo build --locked --bin esdb
cargo run --locked -p esdb-bench -- smoke --esdb-bin target/debug/esdb

echo "== crash soak (20 rounds of kill -9 under pipelined load, every restart checked)"
cargo build --locked -p esdb-bench
target/debug/esdb-bench chaos --rounds 20 --esdb-bin target/debug/esdb

echo "== power-loss soak (esdb-lazyfs; skipped without /dev/fuse)"
bash tools/lazyfs/run-powerloss.sh

# The test tool the clients' tests seed unreadable records with (examples/seed_unreadable.rs).
cargo build --locked --example seed_unreadable

echo "== Python client (against the real server)"
ESDB_BIN=target/debug/esdb bash clients/python/run-tests.sh

echo "== JavaScript client (Node and headless chromium, against the real server)"
ESDB_BIN=target/debug/esdb bash clients/js/run-tests.sh

echo "== web console (headless chromium, against the real server)"
ESDB_BIN=target/debug/esdb bash tests/console/run.sh

