#!/usr/bin/env bash
# A short fuzz run of every target, for CI: cargo-fuzz on the stable toolchain, which needs
# no sanitizer (`-s none`) and RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags to rustc).
# FUZZ_SECONDS per target (default 10). A crash fails the run and leaves its input in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-10}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
python3 seed-corpora.py
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
targets=(request_decoder reply_decoder event_json)
# The engine target builds the whole server crate instrumented (minutes): only on request.
if [ "${FUZZ_ENGINE:-0}" = 1 ]; then
  cargo fuzz build -s none --features engine engine_sequence
  targets+=(engine_sequence)
fi
for target in "${targets[@]}"; do
  # Inputs that once failed (regressions/<target>/) run first, each once.
  if compgen -G "regressions/$target/*" >/dev/null; then
    echo "-- fuzz $target: the regression inputs"
    cargo fuzz run -s none "$target" regressions/"$target"/* -- -runs=1 >/dev/null 2>&1 || {
      cargo fuzz run -s none "$target" regressions/"$target"/* -- -runs=1 2>&1 | tail -40
      exit 1
    }
  fi
  echo "-- fuzz $target (${seconds}s)"
  # -rss_limit_mb: a leak or unbounded buffer fails the run instead of filling the machine.
  log="$(mktemp)"
  status=0
  features=()
  [ "$target" = engine_sequence ] && features=(--features engine)
  mkdir -p "corpus/$target"
  cargo fuzz run -s none "${features[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    exit "$status"
  fi
  rm -f "$log"
done
