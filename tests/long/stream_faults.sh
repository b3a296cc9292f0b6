#!/usr/bin/env bash
# Issue 17: 500 faults in the middle of streaming fetches (CI runs 15, as
# e2e_stream_faults): rounds of two sidecars in network namespaces of
# their own, the faults in turn a partition (iptables), kill -9 of the
# prefill sidecar, kill -9 of the decode sidecar. Each must end in an
# error for the incomplete blocks, none of them visible, no hang; the
# slowest time from fault to error is printed. Needs root (ip netns).
#
#   tests/long/stream_faults.sh [BUILD_DIR] [ROUNDS]
set -eu
build=${1:-build}
rounds=${2:-500}
for f in "$build/tools/kvstashd" "$build/tests/stream_netns_client"; do
    [ -x "$f" ] || { echo "stream_faults: $f missing (make build first)"; exit 2; }
done
mkdir -p var/long
exec "$(dirname "$0")/../e2e/stream_partition.sh" "$build/tools/kvstashd" \
    "$build/tests/stream_netns_client" "$PWD/var/long" "$rounds"
