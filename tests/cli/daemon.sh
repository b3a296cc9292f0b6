#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kvstashd's start-up checks (issue 20): --version, a second daemon on the
# same data directory or on a port in use is refused with a message that
# says what to do, before the arena is allocated.
. "$(dirname "$0")/lib.sh"

expect 0 '^kvstashd [0-9]+\.[0-9]+\.[0-9]+$' "$KVSTASHD" --version
expect 0 '^usage: kvstashd' "$KVSTASHD" --help
expect 2 "unrecognized option '--frobnicate'" "$KVSTASHD" --frobnicate
expect 2 "daemon.port: bad value 'abc'" "$KVSTASHD" -p abc --print-config
expect 2 "unexpected argument 'extra'" "$KVSTASHD" --print-config extra

start_daemon "$T/a"
first=$daemon_pid
# Same directory, another port: the lock file, not RocksDB's LOCK text.
expect 1 "another kvstashd, pid $first is using $T/a \(lock held on $T/a/kvstashd.lock\): stop it first, or give this one its own data directory with -d DIR" \
    "$KVSTASHD" -p 0 -d "$T/a" --dram-mib 64 --nvme-mib 256
expect_not 'RocksDB|index: open|While lock file'
# Another directory, the same port: refused before the store is opened.
expect 1 "cannot listen on 127.0.0.1 port $port: Address already in use \(another kvstashd\?" \
    "$KVSTASHD" -p "$port" -d "$T/b" --dram-mib 64 --nvme-mib 256
[ ! -e "$T/b" ] || fail "the refused daemon created its data directory"
stop_daemon || fail "the first daemon did not stop cleanly"

# The lock goes with the process: a daemon killed hard leaves no stale lock.
start_daemon "$T/a"
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
daemon_pid=""
start_daemon "$T/a"
stop_daemon || fail "restart after kill -9 did not stop cleanly"
echo "daemon: ok"
