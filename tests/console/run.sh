#!/usr/bin/env bash
# The web console's browser test: Debian's chromium, headless, driven by playwright-core
# (console.test.mjs) against the real esdb binary, $ESDB_BIN (default: target/debug/esdb,
# built when missing). Installs what it needs (apt: chromium, nodejs/npm when absent; npm ci),
# downloads no browser. Screenshots land in tests/console/artifacts/.
#   ESDB_BIN=target/debug/esdb bash tests/console/run.sh
#   CONSOLE_DOCS_SCREENSHOT=1 …  also refreshes docs/console.png
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
echo "== web console in headless chromium (about a minute; installs chromium and npm packages itself)"
repo="$(cd "$here/../.." && pwd)"

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (apt)"
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing nodejs and npm (apt)"
  apt_install nodejs npm
fi

if [ -n "${ESDB_BIN:-}" ]; then
  # Relative to where the caller stands (scripts/test.sh passes target/debug/esdb from the root).
  ESDB_BIN="$(cd "$(dirname "$ESDB_BIN")" && pwd)/$(basename "$ESDB_BIN")"
else
  ESDB_BIN="$repo/target/debug/esdb"
  [ -x "$ESDB_BIN" ] || (cd "$repo" && cargo build --locked --bin esdb)
fi
export ESDB_BIN

cd "$here"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
# The test bounds its own waits; this bounds everything else (a hung browser, say).
timeout 300 npm test --silent
