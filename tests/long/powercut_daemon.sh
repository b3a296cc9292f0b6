#!/usr/bin/env bash
# Issue 17: power cuts under a real kvstashd, 3,000 cycles by default (CI
# runs 50, as test_powercut_daemon). The daemon's data directory is on
# faultfs; each cycle cuts the power, kills the daemon and restarts it, and
# every acknowledged durable put must be back with its bytes. About 0.4 s
# a cycle on 2 cores.
#
#   tests/long/powercut_daemon.sh [BUILD_DIR] [CYCLES] [SEED]
set -eu
build=${1:-build}
cycles=${2:-3000}
seed=${3:-0x$(printf '%x' "$(date +%s)")}
for f in "$build/tests/faultfs/faultfs" "$build/tests/faultfs/faultfs-run" \
         "$build/tests/faultfs/test_powercut_daemon"; do
    [ -x "$f" ] || { echo "powercut_daemon: $f missing (make build first)"; exit 2; }
done
mkdir -p var/long
export KVS_TEST_DIR=$PWD/var/long KVS_PCD_CYCLES=$cycles KVS_PCD_SEED=$seed
echo "powercut_daemon: $cycles cycles, seed $seed"
exec "$build/tests/faultfs/faultfs-run" "$build/tests/faultfs/faultfs" \
    powercut_daemon "$build/tests/faultfs/test_powercut_daemon"
