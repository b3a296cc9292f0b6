#!/usr/bin/env bash
# Issue 17: the soak for 10 minutes (CI runs e2e_soak, 16 clients for 10 s;
# ctest -L long runs e2e_soak_64x60). 64 client processes of mixed put,
# get, match, delete, streaming put and pin against one real kvstashd;
# 0 errors, 0 wrong bytes, the daemon's RSS flat after warm-up, no refs,
# leases or pins left, VERIFY clean, an orderly exit (under ASan: no leak).
#
#   tests/long/soak.sh [BUILD_DIR] [SECONDS] [CLIENTS]
#
# BUILD_DIR defaults to build-asan (make test-asan builds it): the soak is
# meant to run under ASan + UBSan.
set -eu
build=${1:-build-asan}
seconds=${2:-600}
clients=${3:-64}
prog=$build/tests/e2e_soak
[ -x "$prog" ] || { echo "soak: $prog missing (build $build first)"; exit 2; }
mkdir -p var/long
export KVS_TEST_DIR=$PWD/var/long KVS_SOAK_SECONDS=$seconds \
    KVS_SOAK_CLIENTS=$clients
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# A leak in UCX's own error path (tests/lsan.supp, docs/testing.md).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
"$prog"
rm -rf var/long/e2e_soak*
