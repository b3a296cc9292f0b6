#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every tool's --help and --version; kvstash-warmup's use of the shared
# checks of options and connection settings (common/cliarg.c).
. "$(dirname "$0")/lib.sh"
unset KVSTASH_ADDR KVSTASH_PORT KVSTASH_TOKEN KVSTASH_NS
W=$KVSTASH_WARMUP

for tool in "$KVSTASHD" "$KVSTASH" "$W" "$KVSTASH_BENCH"; do
    expect 0 "^$(basename "$tool") [0-9]+\.[0-9]+\.[0-9]+$" "$tool" --version
    expect 0 "^usage: $(basename "$tool") " "$tool" --help
    grep -q -- '--version' "$T/out" || fail "$(basename "$tool") --help does not list --version"
done
expect 2 "^kvstash-warmup: -p 'abc': not a whole number in 1..65535$" "$W" -p abc import m
expect 2 "^kvstash-warmup: KVSTASH_PORT '99999'" env KVSTASH_PORT=99999 "$W" import m
expect 2 "^kvstash-warmup: -j '0': not a whole number in 1..256$" "$W" -j 0 import m
expect 2 "-a 'no-such-host.invalid': cannot resolve" "$W" -a no-such-host.invalid import m
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect 2 "cannot connect to 127.0.0.1 port $free_port: nothing answered. Is kvstashd running" \
    "$W" -a localhost -p "$free_port" -n ns promote --group 1
# Shared options after the command, and among the command's own.
expect 2 "cannot connect to 127.0.0.1 port $free_port: nothing answered" \
    "$W" -n ns promote --group 1 -a localhost --port "$free_port"
expect 2 "cannot connect to 127.0.0.1 port $free_port: nothing answered" \
    "$W" promote -n ns --group 1 --addr=localhost -p"$free_port"
expect 2 "^kvstash-warmup: -p 'abc'" "$W" import m -p abc
expect 2 "unknown mode 'frob'" "$KVSTASH_BENCH" frob
echo "tools: ok"
