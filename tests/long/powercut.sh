#!/usr/bin/env bash
# Issue 17: the power-cut loops for 3,000 cycles (CI runs 300 of the engine
# loop, as test_powercut, and 50 of the daemon loop, as
# test_powercut_daemon). The store lives on faultfs; each cycle cuts the
# power (every unsynced write of the data file and of the RocksDB index is
# forgotten), kills the writer and restarts it; every acknowledged durable
# put must come back with its bytes.
#
#   tests/long/powercut.sh [engine|daemon] [BUILD_DIR] [CYCLES] [SEED]
#
# engine: test_crash in-process (about 6 minutes for 3,000 on 2 cores);
# daemon: a real kvstashd per cycle (about 0.5 s a cycle).
set -eu
mode=${1:-engine}
build=${2:-build}
cycles=${3:-3000}
seed=${4:-0x$(printf '%x' "$(date +%s)")}
case $mode in
engine) prog=$build/tests/test_crash
        export KVS_CRASH_CYCLES=$cycles KVS_CRASH_SEED=$seed ;;
daemon) prog=$build/tests/faultfs/test_powercut_daemon
        export KVS_PCD_CYCLES=$cycles KVS_PCD_SEED=$seed ;;
*)      echo "usage: $0 [engine|daemon] [BUILD_DIR] [CYCLES] [SEED]"; exit 2 ;;
esac
for f in "$build/tests/faultfs/faultfs" "$build/tests/faultfs/faultfs-run" \
         "$prog"; do
    [ -x "$f" ] || { echo "powercut: $f missing (make build first)"; exit 2; }
done
mkdir -p var/long
export KVS_TEST_DIR=$PWD/var/long
echo "powercut: $mode, $cycles cycles, seed $seed"
exec "$build/tests/faultfs/faultfs-run" "$build/tests/faultfs/faultfs" \
    "powercut_$mode" "$prog"
