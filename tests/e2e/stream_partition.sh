#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A network partition in the middle of a streaming fetch. The test makes
# its own two hosts: network namespaces kvs-a-PID and kvs-b-PID joined by a
# veth pair with 10.77.x addresses that exist only inside them. The
# prefill-side kvstashd (P) and its client run in A, the decode-side one
# (D) and its client in B; UCX is limited to TCP so that nothing crosses
# the namespaces by shared memory. Once block 1 is half streamed, every
# packet on A's veth is dropped (iptables); the decode client must get an
# error for exactly blocks 1 and 2 (the incomplete ones), block 0 stays
# complete and nothing incomplete is visible on D. The time from the cut
# to the error is printed (limit: D's peer timeout of 2 s plus 1 s), not
# asserted. Exits 77 without the privileges for ip netns.
#
# usage: stream_partition.sh KVSTASHD CLIENT WORKDIR
set -u
daemon=$1 client=$2 work=$3/partition.$$
A=kvs-a-$$ B=kvs-b-$$ VA=kva$$ VB=kvb$$
pids=""

cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$A" 2>/dev/null
    ip netns del "$B" 2>/dev/null
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/../netns.sh"
kvs_netns_pair 10.77.0
mkdir -p "$work/p" "$work/d"
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
start "$A" "$work/p" 10.77.0.1
pport=$(cat "$work/p/port")
start "$B" "$work/d" 10.77.0.2
dport=$(cat "$work/d/port")
dpid=${pids##* }

ip netns exec "$A" "$client" prefill 10.77.0.1 "$pport" >"$work/prefill.out" 2>&1 &
pids="$pids $!"
i=0
until grep -q ready "$work/prefill.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 1500 ] && { echo "prefill client stuck"; cat "$work/prefill.out"; exit 1; }
    sleep 0.02
done

mkfifo "$work/ctl"
ip netns exec "$B" "$client" decode 10.77.0.2 "$dport" "10.77.0.1:$pport" \
    <"$work/ctl" >"$work/decode.out" 2>&1 &
cpid=$!
pids="$pids $cpid"
exec 3>"$work/ctl"
i=0
until grep -q streaming "$work/decode.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 1500 ] && { echo "decode client stuck"; cat "$work/decode.out"; exit 1; }
    sleep 0.02
done

# The partition: A's veth drops everything, both ways.
ip netns exec "$A" iptables -A INPUT -i "$VA" -j DROP
ip netns exec "$A" iptables -A OUTPUT -o "$VA" -j DROP
echo cut >&3
wait "$cpid"
rc=$?
cat "$work/decode.out"
exec 3>&-
if [ $rc -ne 0 ]; then
    echo "decode client failed ($rc); logs in $work"
    exit 1
fi
# D shuts down cleanly with a dead link (and, under ASan, leaks nothing).
kill -TERM "$dpid"
wait "$dpid"
drc=$?
if [ $drc -ne 0 ]; then
    echo "decode-side kvstashd exited $drc"; tail -30 "$work/d/kvstashd.log"
    exit 1
fi
rm -rf "$work" # kept on failure only
echo ok
exit 0
