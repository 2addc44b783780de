#!/usr/bin/env bash
# Tests the Python client: creates a virtualenv (clients/python/.venv, reused when present),
# installs pytest, mypy and the package itself (as `pip install ./clients/python` would), runs
# `mypy --strict` over the package and its tests, then pytest against the real server.
# The server binary is $ESDB_BIN, else target/debug/esdb under the repo root (built if missing);
# the test tool examples/seed_unreadable is built too when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

python="${PYTHON:-python3}"
venv="${ESDB_PY_VENV:-$here/.venv}"

if [ -n "${ESDB_BIN:-}" ]; then
  # Relative to where the caller stands, not to this directory.
  ESDB_BIN="$(cd "$OLDPWD" && realpath "$ESDB_BIN")"
  export ESDB_BIN
fi

# The server crate's test tool that seeds a data dir with unreadable records; the tests that
# need it are skipped (saying so) if it cannot be built.
repo_root="$(cd "$here/../.." && pwd)"
seed_tool="${CARGO_TARGET_DIR:-$repo_root/target}/debug/examples/seed_unreadable"
if [ ! -x "$seed_tool" ] && command -v cargo >/dev/null 2>&1; then
  echo "== python client: building the test tool examples/seed_unreadable"
  (cd "$repo_root" && cargo build --quiet --locked --example seed_unreadable) ||
    echo "== python client: could not build examples/seed_unreadable; its tests will be skipped"
fi

# The test certificates' maker (rcgen), for the TLS tests; skipped, saying so, if not built.
if [ ! -x "${CARGO_TARGET_DIR:-$repo_root/target}/debug/examples/gen_certs" ] && command -v cargo >/dev/null 2>&1; then
  (cd "$repo_root" && cargo build --quiet --locked --example gen_certs) ||
    echo "== python client: could not build examples/gen_certs; its tests will be skipped"
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "== python client: creating $venv"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 needs its venv package for ensurepip.
    rm -rf "$venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$venv"
  fi
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$venv/bin/python" -m pip install --quiet --upgrade "pytest>=7" "mypy>=1.5"
# Not editable: the tests import the installed package, so packaging (py.typed too) is tested.
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps .

echo "== python client: mypy --strict"
"$venv/bin/python" -m mypy --strict src/esdb tests

echo "== python client: pytest"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests
