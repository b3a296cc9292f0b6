#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The machine's limits for kvstash-bench: what the best tool for the same
# access pattern does on this machine, so that each figure of ours can be
# printed as a ratio to it (tools/bench/bench_util.c runs this script).
#
# usage: limits.sh [-d DIR] [-s BYTES] [-w BYTES] [-q DEPTH] [-t SECONDS]
#                  [-f FILE_BYTES] [what ...]
#   what        disk-write disk-read ucx redis memcpy (default: all)
#   -d DIR      where fio's file goes (./var/limits); removed at the end
#   -s BYTES    block, message or value size (262144)
#   -w BYTES    size of one disk write (default: BYTES); kvstash-bench store
#               passes the engine's own: a raw block plus its header page
#   -q DEPTH    I/Os in flight (32)
#   -t SECONDS  each measurement (3)
#   -f BYTES    size of fio's file (2g): the span random reads cover
# Prints one JSON object per line, MBps in 10^6 bytes per second:
#   {"limit":"disk-read","bytes":262144,"depth":32,"MBps":1345.2}
#
# Disk: fio with io_uring at its best, as the engine runs it (O_DIRECT,
# registered buffers, registered file): disk-write is a sequential write at
# the write size (the engine appends to a log), disk-read random reads of
# the block size over a file written in full first. Needs fio, ucx-utils, redis-server/redis-tools, gcc, python3.
# Only 127.0.0.1 is used; every process started here is stopped by its PID.
set -u
dir=./var/limits bs=262144 wbs="" qd=32 secs=3 fsize=2g
while getopts "d:s:w:q:t:f:" opt; do
    case $opt in
    d) dir=$OPTARG ;; s) bs=$OPTARG ;; w) wbs=$OPTARG ;; q) qd=$OPTARG ;;
    t) secs=$OPTARG ;; f) fsize=$OPTARG ;;
    *) sed -n '6,17p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
wbs=${wbs:-$bs}
what=${*:-disk-write disk-read ucx redis memcpy}
mkdir -p "$dir" || exit 1
file=$dir/limits.fio
status=0

say() { # name depth MBps
    printf '{"limit":"%s","bytes":%s,"depth":%s,"MBps":%s}\n' "$1" "$bs" "$2" "$3"
}

# fio RW BYTES -> MB/s of reads plus writes, from fio's JSON report.
fio_run() {
    fio --name=limit --filename="$file" --size="$fsize" --rw="$1" --bs="$2" \
        --iodepth="$qd" --direct=1 --ioengine=io_uring --fixedbufs=1 \
        --registerfiles=1 --time_based --runtime="$secs" --ramp_time=1 \
        --output-format=json 2>/dev/null |
        python3 -c 'import json, sys
j = json.load(sys.stdin)["jobs"][0]
print(round((j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 1e6, 1))'
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

for w in $what; do
    case $w in
    disk-write)
        say disk-write "$qd" "$(fio_run write "$wbs")" ;;
    disk-read)
        # Over a file written in full, once: reads of extents that were
        # only allocated return zeros without touching the disk.
        fio --name=fill --filename="$file" --size="$fsize" --rw=write \
            --bs=1m --iodepth=8 --direct=1 --ioengine=io_uring \
            --output-format=json >/dev/null 2>&1 || status=1
        say disk-read "$qd" "$(fio_run randread "$bs")" ;;
    ucx)
        # Active-message bandwidth between two processes.
        p=$(free_port)
        ucx_perftest -p "$p" >/dev/null 2>&1 &
        srv=$!
        sleep 0.5
        n=$(( (1 << 30) / bs ))
        mib=$(timeout 60 ucx_perftest 127.0.0.1 -p "$p" -t ucp_am_bw -s "$bs" \
                  -n "$n" -w $((n / 10)) -f 2>/dev/null |
              awk '$1 ~ /^[0-9]+$/ && NF == 8 { bw = $6 } END { print bw + 0 }')
        kill "$srv" 2>/dev/null
        wait "$srv" 2>/dev/null
        say ucx-am 1 "$(python3 -c "print(round($mib * 1.048576, 1))")" ;;
    redis)
        # What a user would run instead: Redis SET/GET, 8 clients.
        p=$(free_port)
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --logfile /dev/null &
        srv=$!
        for _ in $(seq 50); do
            redis-cli -p "$p" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        csv=$(redis-benchmark -p "$p" -t set,get -d "$bs" -c 8 -n 4000 -r 100 \
                  --csv 2>/dev/null | tr -d '"')
        kill "$srv" 2>/dev/null
        wait "$srv" 2>/dev/null
        for t in SET GET; do
            rps=$(awk -F, -v t="$t" '$1 == t { print $2 + 0 }' <<<"$csv")
            say "redis-${t,,}" 8 "$(python3 -c "print(round(${rps:-0} * $bs / 1e6, 1))")"
        done ;;
    memcpy)
        # One thread copying blocks between two 256 MiB areas (cold).
        tmp=$(mktemp -d)
        cat >"$tmp/m.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    size_t bs = argc > 1 ? strtoull(argv[1], NULL, 10) : 262144;
    size_t area = 256ul << 20, k = area / bs, n = (2ul << 30) / bs;
    char *src = malloc(area), *dst = malloc(area);
    struct timespec a, b;

    if (!bs || !k || !src || !dst)
        return 1;
    memset(src, 1, area);
    memset(dst, 2, area);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0; i < n; i++)
        memcpy(dst + (i % k) * bs, src + (i * 7 % k) * bs, bs);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", (double)n * bs / ((b.tv_sec - a.tv_sec) +
                                      (b.tv_nsec - a.tv_nsec) / 1e9) / 1e6);
    return dst[0] != 1;
}
CEOF
        if cc -O2 -o "$tmp/m" "$tmp/m.c"; then
            say memcpy 1 "$("$tmp/m" "$bs")"
        else
            status=1
        fi
        rm -rf "$tmp" ;;
    *) echo "limits.sh: unknown measurement '$w'" >&2; status=2 ;;
    esac
done
rm -f "$file"
exit $status
