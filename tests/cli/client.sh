#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The kvstash CLI against a real kvstashd (issue 20): options in any order,
# unknown options and bad numbers refused by name, host names, --version,
# messages that say what to do, and a quiet daemon log for a CLI call.
. "$(dirname "$0")/lib.sh"
K=$KVSTASH
unset KVSTASH_ADDR KVSTASH_PORT KVSTASH_TOKEN KVSTASH_NS

expect 0 '^kvstash [0-9]+\.[0-9]+\.[0-9]+$' "$K" --version
expect 0 '^usage: kvstash' "$K" --help
# Refused before any connection is tried, naming what was wrong.
expect 2 "unknown option '--frobnicate'" "$K" stat --frobnicate
expect 2 "unknown option '-q'" "$K" -q stat
expect 2 "option '--class' needs a value" "$K" put k f --class
expect 2 "unknown command 'frob'" "$K" frob
expect 2 "no command given" "$K"
expect 2 "^kvstash: -p 'abc': not a whole number in 1..65535$" "$K" -p abc stat
expect 2 "^kvstash: KVSTASH_PORT '99999': not a whole number in 1..65535$" \
    env KVSTASH_PORT=99999 "$K" stat
expect 2 "^kvstash: -p '0'" "$K" -p 0 stat
expect 2 "--timeout 'x'" "$K" --timeout x stat
expect 2 "--ttl-ms '-1'" "$K" put k f --ttl-ms -1
expect 2 "--durable is not an option of get" "$K" get k f --durable
expect 2 "--lease is not an option of put" "$K" put k f --lease
expect 2 "-a 'no-such-host.invalid': cannot resolve the host name" \
    "$K" -a no-such-host.invalid stat

# No daemon there: say so, and how to start one.
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect 2 "cannot connect to 127.0.0.1 port $free_port: nothing answered. Is kvstashd running there\? Start it with .make run." \
    "$K" -p "$free_port" stat

start_daemon "$T/d"
export KVSTASH_PORT=$port
head -c 100000 /dev/urandom >"$T/blk"
# Options after the positional arguments, in the order the usage shows.
expect 0 '^stored 100000 bytes$' "$K" put K1 "$T/blk" --durable --class user
expect 0 '^stored 100000 bytes$' "$K" put --parent K1 K2 "$T/blk" --ttl-ms 60000
expect 0 '^stored 100000 bytes$' "$K" -a localhost put K3 "$T/blk"
expect 0 'fetched 100000 bytes' "$K" get K1 "$T/back" -a localhost -p "$port"
cmp "$T/blk" "$T/back" || fail "get returned other bytes"
# --lease is an option, not a key; the keys stay in order.
expect 0 '^matched 2 of 2 \(lease [0-9]+' "$K" match K1 K2 --lease
expect 0 '^matched 2 of 2$' "$K" -x match 4b31 4b32
expect 0 '^matched 2 of 2 \(lease' "$K" --lease match K1 K2
expect 0 '"blocks": 3' "$K" stat --json
expect 2 "stat takes no arguments, 'extra' given" "$K" stat extra
# A key that starts with '-' after --.
expect 0 '^stored' "$K" put -- -dash "$T/blk"
expect 0 '^-dash 1$' "$K" exists -- -dash

# Not found: the key named; a delete's missing key reported once.
expect 1 "^kvstash: get nokey: not found \(no such block in namespace 'default'\)$" \
    "$K" get nokey "$T/x"
expect 1 '^nokey not found$' "$K" delete nokey
[ "$(wc -l <"$T/out")" -eq 1 ] || fail "a missing key reported more than once"
expect 1 '^K3 success$' "$K" delete K3 nokey
grep -q '^nokey not found$' "$T/out" || fail "the second key's result"
[ "$(wc -l <"$T/out")" -eq 2 ] || fail "delete printed more than each key's result"

# The daemon's own traffic moves the counters `kvstash stat` shows (issue
# 12): one GET hit (K1, from DRAM) and one miss (nokey) so far, and three
# MATCHes that found both of their two keys.
expect 0 '"gets": 2, "hits": 1, "misses": 1, "dram_hits": 1, "nvme_hits": 0' \
    "$K" stat --json
expect 0 '"matches": 3, "match_keys": 6, "match_hits": 6' "$K" stat --json
# Each 100000-byte PUT came by rendezvous straight into the arena, but the
# durable one (K1), which is staged and written on an I/O thread.
grep -Eq '"staged_puts": 4, "direct_puts": 3,' "$T/out" ||
    fail "rendezvous PUTs not received into the arena: $(cat "$T/out")"
grep -q '"puts_waited": 1,' "$T/out" ||
    fail "the durable PUT did not go to an I/O thread: $(cat "$T/out")" 
expect 0 '^get hit ratio +50\.0% \(1 of 2\)$' "$K" stat
grep -Eq '^match key hit ratio +100\.0% \(6 of 6\)$' "$T/out" ||
    fail "no match hit ratio in: $(cat "$T/out")"
grep -Eq '^daemon version +[0-9]+\.[0-9]+\.[0-9]+$' "$T/out" || fail "no version"
grep -Eq '^uptime +[0-9]+d [0-9]{2}h [0-9]{2}m [0-9]{2}s$' "$T/out" || fail "no uptime"
grep -Eq '^dram_capacity_bytes +[0-9.]+ (KiB|MiB|GiB)$' "$T/out" ||
    fail "sizes not in human units: $(cat "$T/out")"

# An oversized put names the size and the setting, and is refused before
# the file is read: a 600 MiB sparse file costs nothing to stat.
truncate -s 600M "$T/huge"
start=$(date +%s%N)
expect 1 "put big: .*huge is 629145600 bytes \(600.0 MiB\), longer than the daemon's largest block, 16777216 bytes \(16.0 MiB\) \(its setting store.max_block_mib" \
    "$K" put big "$T/huge"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 2000 ] || fail "refusing the oversized put took $ms ms"
# From a pipe the size is found by reading, but no further than the limit.
expect 1 "put big: - is longer than the daemon.s largest block, 16777216 bytes .*store.max_block_mib" \
    sh -c "head -c 700000000 /dev/zero | '$K' put big -"

# The daemon's log at its default level: nothing per CLI call.
expect 0 'blocks' "$K" stat
stop_daemon || fail "kvstashd did not stop cleanly"
grep -q 'peer error' "$T/d.log" && fail "a normal close logged a peer error: $(cat "$T/d.log")"
grep -Eq 'conn [0-9]+: (accepted|closing)' "$T/d.log" && fail "connections logged at info"
echo "client: ok"
