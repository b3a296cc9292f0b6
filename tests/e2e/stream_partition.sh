#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Faults in the middle of a streaming fetch. The test makes its own two
# hosts: network namespaces kvs-a-PID and kvs-b-PID joined by a veth pair
# with 10.77.x addresses that exist only inside them. The prefill-side
# kvstashd (P) and its client run in A, the decode-side one (D) and its
# client in B; UCX is limited to TCP so that nothing crosses the
# namespaces by shared memory. Once block 1 is half streamed, the fault
# comes; the decode client must get an error for exactly blocks 1 and 2
# (the incomplete ones), block 0 stays complete and nothing incomplete is
# visible on D. The time from the fault to the errors is printed (limit:
# D's peer timeout of 2 s plus 1 s) and counted, not asserted; a decode
# client that has not finished 30 s after the fault is a hang, and fails.
#
# With ROUNDS = 1 (the default) the one fault is a partition: every packet
# on A's veth dropped (iptables). With more, each round starts afresh and
# the faults take turns: the partition, kill -9 of P, kill -9 of D (the
# decode client must then get its errors; there is no D left to look at).
# Exits 77 without the privileges for ip netns.
#
# usage: stream_partition.sh KVSTASHD CLIENT WORKDIR [ROUNDS]
set -u
daemon=$1 client=$2 root=$3/partition.$$ rounds=${4:-1}
A=kvs-a-$$ B=kvs-b-$$ VA=kva$$ VB=kvb$$
pids=""

kill_round() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    pids=""
}
cleanup() {
    kill_round
    ip netns del "$A" 2>/dev/null
    ip netns del "$B" 2>/dev/null
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/../netns.sh"
kvs_netns_pair 10.77.0
export UCX_TLS=tcp

start() { # ns dir addr extra...
    ns=$1 dir=$2 addr=$3
    shift 3
    ip netns exec "$ns" "$daemon" --listen "$addr" --port=0 \
        --port-file "$dir/port" --dir "$dir/data" --dram-mib=64 \
        --nvme-mib=0 --set=store.region_mib=8 --set=store.max_block_mib=4 \
        --set=peer.secret=netns --set=peer.timeout_ms=2000 "$@" \
        >"$dir/kvstashd.log" 2>&1 &
    pids="$pids $!"
    i=0
    while [ ! -s "$dir/port" ]; do
        i=$((i + 1))
        if [ $i -gt 500 ]; then
            echo "kvstashd did not start"; cat "$dir/kvstashd.log"; exit 1
        fi
        sleep 0.02
    done
}

# Waits up to $2 seconds for pid $1; returns its status, 124 if it hangs.
wait_for() {
    i=0
    while [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] &&
        kill -0 "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt $(($2 * 50)) ] && return 124
        sleep 0.02
    done
    wait "$1"
}

# One round with fault $1: 0 when the decode client saw what it must.
round() {
    fault=$1 work=$root/r$r
    mkdir -p "$work/p" "$work/d"
    start "$A" "$work/p" 10.77.0.1
    pport=$(cat "$work/p/port")
    ppid=${pids##* }
    start "$B" "$work/d" 10.77.0.2
    dport=$(cat "$work/d/port")
    dpid=${pids##* }

    ip netns exec "$A" "$client" prefill 10.77.0.1 "$pport" \
        >"$work/prefill.out" 2>&1 &
    pids="$pids $!"
    i=0
    until grep -q ready "$work/prefill.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 1500 ] && { echo "prefill client stuck"; cat "$work/prefill.out"; return 1; }
        sleep 0.02
    done

    mkfifo "$work/ctl"
    ip netns exec "$B" "$client" decode 10.77.0.2 "$dport" "10.77.0.1:$pport" \
        "$fault" <"$work/ctl" >"$work/decode.out" 2>&1 &
    cpid=$!
    pids="$pids $cpid"
    exec 3>"$work/ctl"
    i=0
    until grep -q streaming "$work/decode.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 1500 ] && { echo "decode client stuck"; cat "$work/decode.out"; return 1; }
        sleep 0.02
    done

    case $fault in
    partition) # A's veth drops everything, both ways.
        ip netns exec "$A" iptables -A INPUT -i "$VA" -j DROP
        ip netns exec "$A" iptables -A OUTPUT -o "$VA" -j DROP ;;
    kill-p) kill -9 "$ppid" ;;
    kill-d) kill -9 "$dpid" ;;
    esac
    echo cut >&3
    wait_for "$cpid" 30
    rc=$?
    exec 3>&-
    [ "$rounds" -eq 1 ] && cat "$work/decode.out"
    if [ $rc -ne 0 ]; then
        [ $rc -eq 124 ] && echo "round $r ($fault): decode client hangs"
        echo "round $r ($fault): decode client failed ($rc); logs in $work"
        cat "$work/decode.out"
        return 1
    fi
    ms=$(sed -n 's/^fault [a-z-]* ms \([0-9]*\)$/\1/p' "$work/decode.out")
    [ "$ms" -gt "$max_ms" ] && max_ms=$ms
    [ "$ms" -gt 3000 ] && late=$((late + 1))
    # How it ended, for the summary by kind: the time and both errors.
    e1=$(sed -n 's/^block 1 (half put) failed [0-9]* ms after the cut: //p' \
        "$work/decode.out")
    e2=$(sed -n 's/^block 2 (not begun) failed [0-9]* ms after the cut: //p' \
        "$work/decode.out")
    printf '%s\t%s\t%s / %s\n' "$fault" "$ms" "$e1" "$e2" >>"$root/ended"
    if [ "$fault" != kill-d ]; then
        # D shuts down cleanly with a dead link (under ASan: no leak).
        kill -TERM "$dpid"
        wait_for "$dpid" 30
        drc=$?
        if [ $drc -ne 0 ]; then
            echo "round $r: decode-side kvstashd exited $drc"
            tail -30 "$work/d/kvstashd.log"
            return 1
        fi
    fi
    ip netns exec "$A" iptables -F INPUT
    ip netns exec "$A" iptables -F OUTPUT
    kill_round
    rm -rf "$work" # kept on failure only
    return 0
}

max_ms=0 late=0 n_partition=0 n_kill_p=0 n_kill_d=0
r=0
while [ $r -lt "$rounds" ]; do
    if [ "$rounds" -eq 1 ]; then
        fault=partition
    else
        case $((r % 3)) in
        0) fault=partition ;;
        1) fault=kill-p ;;
        2) fault=kill-d ;;
        esac
    fi
    round "$fault" || exit 1
    case $fault in
    partition) n_partition=$((n_partition + 1)) ;;
    kill-p) n_kill_p=$((n_kill_p + 1)) ;;
    kill-d) n_kill_d=$((n_kill_d + 1)) ;;
    esac
    r=$((r + 1))
done
echo "stream faults: $rounds ($n_partition partitions, $n_kill_p kill -9 of" \
    "the prefill sidecar, $n_kill_d of the decode sidecar): every one an" \
    "error for the incomplete blocks and none visible; 0 hangs; slowest" \
    "error ${max_ms} ms after its fault, $late over 3,000 ms"
if [ "$rounds" -gt 1 ]; then
    # By kind: rounds, slowest and median time to the errors, the errors.
    for k in partition kill-p kill-d; do
        awk -F '\t' -v k="$k" '$1 == k { print $2 }' "$root/ended" |
            sort -n | awk -v k="$k" '{ t[NR] = $1 } END { if (NR)
                printf "  %s: %d rounds, error after %d ms median, %d max\n",
                    k, NR, t[int((NR + 1) / 2)], t[NR] }'
        awk -F '\t' -v k="$k" '$1 == k { print $3 }' "$root/ended" |
            sort | uniq -c | sed 's/^/    /'
    done
fi
rm -rf "$root"
echo ok
exit 0
