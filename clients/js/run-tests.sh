#!/usr/bin/env bash
# Runs the JavaScript client's tests against a real esdb server: installs what they need
# (Debian's chromium for the browser test, the npm devDependencies), then `node --test`.
# Uses ESDB_BIN when set, else target/debug/esdb under the repo root (built if missing); builds
# the test tool examples/seed_unreadable when it is missing.
set -euo pipefail
caller_dir="$(pwd)"
cd "$(dirname "$0")"
echo "== JavaScript client (clients/js): node --test against the real server"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "== installing nodejs and npm (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (Debian package) for the browser test"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ -n "${ESDB_BIN:-}" ]; then
  # Relative to where the caller stood, not to this directory.
  case "$ESDB_BIN" in
    /*) ;;
    *) ESDB_BIN="$caller_dir/$ESDB_BIN" ;;
  esac
  export ESDB_BIN
fi

# The server crate's test tool that seeds a data dir with unreadable records; the tests that
# need it are skipped (saying so) if it cannot be built.
repo_root="$(cd ../.. && pwd)"
seed_tool="${CARGO_TARGET_DIR:-$repo_root/target}/debug/examples/seed_unreadable"
if [ ! -x "$seed_tool" ] && command -v cargo >/dev/null 2>&1; then
  echo "== building the test tool examples/seed_unreadable"
  (cd "$repo_root" && cargo build --quiet --locked --example seed_unreadable) ||
    echo "== could not build examples/seed_unreadable; its tests will be skipped"
fi

# The server crate's test tool that writes rcgen certificates for the TLS tests
# (test/security.test.js, skipped, saying so, if it cannot be built).
cert_tool="${CARGO_TARGET_DIR:-$repo_root/target}/debug/examples/gen_certs"
if [ ! -x "$cert_tool" ] && command -v cargo >/dev/null 2>&1; then
  echo "== building the test tool examples/gen_certs"
  (cd "$repo_root" && cargo build --quiet --locked --example gen_certs) ||
    echo "== could not build examples/gen_certs; the TLS tests will be skipped"
fi

# Nothing downloads a browser: playwright-core drives /usr/bin/chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error

node --test test/*.test.js
