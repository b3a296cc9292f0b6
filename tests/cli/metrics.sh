#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prometheus /metrics (issue 12): a real kvstashd with metrics.port set,
# real traffic through the CLI, then the scrape is checked by promtool
# (Debian package prometheus) and its counters against that traffic.
# Skipped (77) where promtool or curl is missing; scripts/deps.sh installs
# both for CI.
. "$(dirname "$0")/lib.sh"
K=$KVSTASH
unset KVSTASH_ADDR KVSTASH_PORT KVSTASH_TOKEN KVSTASH_NS
command -v promtool >/dev/null || { echo "skip: no promtool"; exit 77; }
command -v curl >/dev/null || { echo "skip: no curl"; exit 77; }

mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_daemon "$T/d" --set metrics.port="$mport"
export KVSTASH_PORT=$port
grep -q "metrics at http://127.0.0.1:$mport/metrics" "$T/d.log" ||
    fail "no metrics line in the log: $(cat "$T/d.log")"

head -c 100000 /dev/urandom >"$T/blk"
expect 0 '^stored' "$K" put K1 "$T/blk"
expect 0 '^stored' "$K" put K2 "$T/blk"
expect 0 'fetched 100000 bytes' "$K" get K1 "$T/back"
expect 1 'not found' "$K" get nokey "$T/back"
expect 0 '^matched 2 of 3' "$K" match K1 K2 K9
sleep 0.2 # one timer tick publishes the serving thread's gauges

curl -sf "http://127.0.0.1:$mport/metrics" >"$T/m" || fail "scrape failed"
promtool check metrics <"$T/m" >"$T/lint" 2>&1 ||
    fail "promtool check metrics: $(cat "$T/lint")"
has() {
    grep -Eq -- "$1" "$T/m" || fail "no /$1/ in the scrape"
}
has '^kvstash_requests_total\{op="PUT"\} 2$'
has '^kvstash_requests_total\{op="GET"\} 2$'
has '^kvstash_requests_total\{op="MATCH"\} 1$'
has '^kvstash_request_duration_seconds_count\{op="GET"\} 2$'
has '^kvstash_request_duration_seconds_bucket\{op="GET",le="\+Inf"\} 2$'
has '^kvstash_client_hits_total\{tier="dram"\} 1$'
has '^kvstash_client_misses_total 1$'
has '^kvstash_match_keys_total\{result="hit",tier="dram"\} 2$'
has '^kvstash_match_keys_total\{result="miss",tier="none"\} 1$'
has '^kvstash_client_bytes_total\{direction="in",tier="dram"\} 200000$'
has '^kvstash_client_bytes_total\{direction="out",tier="dram"\} 100000$'
has '^kvstash_blocks\{tier="dram"\} 2$'
has '^kvstash_used_bytes\{tier="dram"\} [1-9]'
has '^kvstash_capacity_bytes\{tier="nvme"\} 268435456$'
has '^kvstash_connections [0-9]+$'
has '^kvstash_connections_accepted_total [1-9]'
for m in evictions_total degrade_backlog_bytes compression_ratio leases \
         connection_pins checksum_failures_total io_errors_total disk_jobs \
         store_lock_contended_total store_lock_wait_seconds_total \
         store_rlock_contended_total; do
    has "^kvstash_$m [0-9.]+$"
done
# Only /metrics, only GET.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/")
[ "$code" = 404 ] || fail "GET / answered $code, wanted 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$mport/metrics")
[ "$code" = 405 ] || fail "POST answered $code, wanted 405"
stop_daemon || fail "kvstashd did not stop cleanly"

# metrics.port 0 (the default): nothing listens.
start_daemon "$T/d2"
grep -q "metrics at" "$T/d2.log" && fail "metrics on by default"
stop_daemon || fail "kvstashd did not stop cleanly"
echo "metrics: ok"
