# SPDX-License-Identifier: Apache-2.0
# Helpers for the CLI and configuration tests (tests/cli/*.sh): each test
# drives the real binaries, named by tests/cli.cmake in the environment
# (KVSTASHD, KVSTASH, KVSTASH_WARMUP, KVSTASH_BENCH), under a fresh
# directory $T, and checks exit status and messages.
set -u
T="${KVS_TEST_DIR:-/tmp}/cli-$(basename "$0" .sh)"
rm -rf "$T"
mkdir -p "$T"
daemon_pid=""

fail() {
    echo "FAIL: $*" >&2
    [ -f "$T/out" ] && { echo "--- output:" >&2; cat "$T/out" >&2; }
    exit 1
}

# expect STATUS PATTERN CMD...: runs CMD (stdout and stderr to $T/out),
# checks its exit status and that its output matches the grep -E PATTERN
# (empty: anything).
expect() {
    local want=$1 pat=$2 rc
    shift 2
    "$@" >"$T/out" 2>&1
    rc=$?
    [ "$rc" -eq "$want" ] || fail "exit $rc, wanted $want: $*"
    [ -z "$pat" ] || grep -Eq -- "$pat" "$T/out" ||
        fail "no /$pat/ in the output of: $*"
}

# expect_not PATTERN: the last expect's output does not match.
expect_not() {
    ! grep -Eq -- "$1" "$T/out" || fail "/$1/ in the output"
}

# start_daemon DIR [ARGS...]: kvstashd on 127.0.0.1, a free port, small
# sizes; sets $port and $daemon_pid; its output goes to DIR.log.
start_daemon() {
    local dir=$1
    shift
    rm -f "$dir.port"
    "$KVSTASHD" -p 0 --port-file "$dir.port" -d "$dir" --dram-mib 64 \
        --nvme-mib 256 --set daemon.busy_poll_us=0 "$@" >"$dir.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 300); do
        [ -s "$dir.port" ] && break
        kill -0 "$daemon_pid" 2>/dev/null || fail "kvstashd exited: $(cat "$dir.log")"
        sleep 0.1
    done
    [ -s "$dir.port" ] || fail "kvstashd did not start: $(cat "$dir.log")"
    port=$(cat "$dir.port")
}

stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid" 2>/dev/null
    wait "$daemon_pid"
    local rc=$?
    daemon_pid=""
    return $rc
}
# On exit the daemon is killed; a test that passed removes its directory
# (each daemon's NVMe file is preallocated), one that failed keeps it.
on_exit() {
    local rc=$?
    [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
    [ "$rc" -eq 0 ] && rm -rf "$T"
    return "$rc"
}
trap on_exit EXIT
