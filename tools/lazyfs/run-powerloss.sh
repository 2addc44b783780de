#!/usr/bin/env bash
# Power-loss test: the esdb server's data dir on esdb-lazyfs, whose power is cut at a random
# moment under load each round; after each restart every acknowledged append must be there
# (`esdb-bench powerloss`). Then a negative control: the same server with fsync disabled
# (eatmydata) must be caught losing acknowledged appends, proving the test can fail.
#
# Runs only where /dev/fuse exists and we are root (to mount); says so otherwise.
# POWERLOSS_ROUNDS (default 20) sets the rounds; extra arguments go to `esdb-bench powerloss`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -e /dev/fuse ]; then
  echo "power-loss test skipped: no /dev/fuse"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "power-loss test skipped: mounting the test filesystem needs root"
  exit 0
fi
if ! command -v eatmydata >/dev/null 2>&1; then
  apt-get install -y -qq eatmydata >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq eatmydata >/dev/null; }
fi

cargo build --locked -q -p esdb --bin esdb && cargo build --locked -q -p esdb-bench -p esdb-lazyfs
bench=(target/debug/esdb-bench powerloss --esdb-bin target/debug/esdb
  --lazyfs-bin target/debug/esdb-lazyfs)

"${bench[@]}" --rounds "${POWERLOSS_ROUNDS:-20}" "$@"
echo "power-loss negative control: fsync disabled with eatmydata; the check must catch the loss"
"${bench[@]}" --rounds 10 --server-wrapper eatmydata --expect-loss
