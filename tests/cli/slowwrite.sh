#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A PUT that waits on the disk waits on an I/O thread, not on the serving
# thread (issue 12). The disk is made slow by the engine's TEST HOOK
# KVSTASH_TEST_WRITE_DELAY_MS (kvstore/store_int.h): every drain of the
# writer sleeps that long first. While one client's durable PUT waits on
# the disk, other clients' MATCHes, DRAM GETs and PUTs are answered at once.
. "$(dirname "$0")/lib.sh"
K=$KVSTASH
unset KVSTASH_ADDR KVSTASH_PORT KVSTASH_TOKEN KVSTASH_NS
DELAY_MS=2000

KVSTASH_TEST_WRITE_DELAY_MS=$DELAY_MS start_daemon "$T/d"
export KVSTASH_PORT=$port
grep -q 'TEST HOOK KVSTASH_TEST_WRITE_DELAY_MS' "$T/d.log" ||
    fail "the write delay hook is not on"
head -c 1000000 /dev/urandom >"$T/b1"
head -c 300000 /dev/urandom >"$T/b2"
expect 0 '^stored' "$K" put K3 "$T/b2"   # in DRAM

now_ms() { date +%s%3N; }
# quick WHAT CMD...: CMD must finish well inside one disk write.
quick() {
    local what=$1 t0 ms
    shift
    t0=$(now_ms)
    "$@" >"$T/out" 2>&1 || fail "$what failed: $(cat "$T/out")"
    ms=$(( $(now_ms) - t0 ))
    [ "$ms" -lt $((DELAY_MS / 2)) ] ||
        fail "$what took $ms ms while a disk write was waiting (delay $DELAY_MS ms)"
    echo "  $what: $ms ms"
}
still_running() {
    kill -0 "$1" 2>/dev/null || fail "$2 finished before the quick calls: the disk was not slow"
}

# A durable PUT waits for its write and index commit ...
t0=$(now_ms)
"$K" put K1 "$T/b1" --durable >"$T/put.out" 2>&1 &
put_pid=$!
sleep 0.3
# ... while MATCH, a DRAM GET, a PUT into DRAM and STAT are answered.
quick "MATCH K3" "$K" match K3
grep -q '^matched 1 of 1$' "$T/out" || fail "match: $(cat "$T/out")"
quick "GET K3 (DRAM)" "$K" get K3 "$T/back3"
cmp "$T/b2" "$T/back3" || fail "K3 came back different"
quick "PUT K5 (DRAM)" "$K" put K5 "$T/b2"
quick "STAT" "$K" stat
still_running "$put_pid" "PUT K1 --durable"
wait "$put_pid" || fail "PUT K1 failed: $(cat "$T/put.out")"
grep -q '^stored' "$T/put.out" || fail "put: $(cat "$T/put.out")"
ms=$(( $(now_ms) - t0 ))
[ "$ms" -ge "$DELAY_MS" ] || fail "PUT K1 took $ms ms: it did not wait on the slow disk"
echo "  PUT K1 (durable): $ms ms"
expect 0 '' "$K" get K1 "$T/back1"
cmp "$T/b1" "$T/back1" || fail "K1 came back different"
grep -q '"puts_waited": 1,' <("$K" stat --json) ||
    fail "the durable PUT did not wait on an I/O thread"
stop_daemon || fail "kvstashd did not stop cleanly"
echo "slowwrite: ok"
