#!/usr/bin/env bash
# Issue 17: the power-cut loop for 3,000 cycles (CI runs 300, as
# test_powercut). The store lives on faultfs; each cycle cuts the power
# (every unsynced write of the data file and of the RocksDB index is
# forgotten), kills the writer and restarts it; every acknowledged durable
# put must come back with its bytes. About 6 minutes on 2 cores.
#
#   tests/long/powercut.sh [BUILD_DIR] [CYCLES] [SEED]
set -eu
build=${1:-build}
cycles=${2:-3000}
seed=${3:-0x$(printf '%x' "$(date +%s)")}
for f in "$build/tests/faultfs/faultfs" "$build/tests/faultfs/faultfs-run" \
         "$build/tests/test_crash"; do
    [ -x "$f" ] || { echo "powercut: $f missing (make build first)"; exit 2; }
done
mkdir -p var/long
export KVS_TEST_DIR=$PWD/var/long KVS_CRASH_CYCLES=$cycles KVS_CRASH_SEED=$seed
echo "powercut: $cycles cycles, seed $seed"
exec "$build/tests/faultfs/faultfs-run" "$build/tests/faultfs/faultfs" \
    powercut "$build/tests/test_crash"
