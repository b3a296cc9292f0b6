#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A partition between a node and etcd. The test makes two hosts: network
# namespaces kvc-a-PID (etcd and kvstashd "a") and kvc-b-PID (kvstashd
# "b") joined by a veth pair with 10.78.x addresses that exist only inside
# them; UCX is limited to TCP. Once both records are in etcd, every packet
# from b is dropped on a's side (iptables): b's record must leave etcd
# within its lease TTL + 1 s (so no one is offered b as a peer), b must
# keep serving its own clients and say that etcd is unreachable, and once
# the partition heals b must be back in etcd. Exits 77 without the
# privileges for ip netns or iptables.
#
# usage: partition.sh KVSTASHD KVSTASH WORKDIR
set -u
daemon=$1 cli=$2 work=$3/cluster-partition.$$
A=kvc-a-$$ B=kvc-b-$$ VA=kca$$ VB=kcb$$
ETCD="http://10.78.0.1:2379"
pids=""

cleanup() {
    local rc=$?
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$A" 2>/dev/null
    ip netns del "$B" 2>/dev/null
    # passed: the daemons' preallocated files go; failed: all stays
    [ "$rc" -eq 0 ] && rm -rf "$work"
    return "$rc"
}
trap cleanup EXIT INT TERM

command -v etcd >/dev/null && command -v etcdctl >/dev/null ||
    { echo "skip: etcd / etcdctl not installed"; exit 77; }
. "$(dirname "$0")/../netns.sh"
kvs_netns_pair 10.78.0
mkdir -p "$work/etcd" "$work/a" "$work/b"
export UCX_TLS=tcp

ip netns exec "$A" etcd --name p --data-dir "$work/etcd/data" \
    --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls http://10.78.0.1:2380 \
    --initial-advertise-peer-urls http://10.78.0.1:2380 \
    --initial-cluster p=http://10.78.0.1:2380 >"$work/etcd.log" 2>&1 &
pids="$pids $!"

records() { # the node names in etcd, one line
    ip netns exec "$A" env ETCDCTL_API=3 etcdctl --endpoints "$ETCD" \
        --command-timeout=1s get --prefix /kvstash/nodes/ --keys-only 2>/dev/null |
        sed -n 's|^/kvstash/nodes/||p' | sort | tr '\n' ' '
}

start() { # ns name addr
    ns=$1 name=$2 addr=$3
    ip netns exec "$ns" "$daemon" --listen "$addr" --port=0 \
        --port-file "$work/$name/port" --dir "$work/$name/data" \
        --dram-mib=64 --nvme-mib=0 --set=store.region_mib=8 \
        --set=store.max_block_mib=4 --set=cluster.etcd="$ETCD" \
        --set=cluster.node="$name" --set=cluster.ttl_s=2 \
        >"$work/$name/kvstashd.log" 2>&1 &
    pids="$pids $!"
}
wait_for() { # seconds what command...
    secs=$1 what=$2
    shift 2
    i=0
    until "$@"; do
        i=$((i + 1))
        if [ $i -gt $((secs * 20)) ]; then
            echo "FAIL: timed out after $secs s waiting for $what"
            tail -5 "$work/a/kvstashd.log" "$work/b/kvstashd.log" "$work/etcd.log"
            exit 1
        fi
        sleep 0.05
    done
}
start "$A" a 10.78.0.1
start "$B" b 10.78.0.2
both() { [ "$(records)" = "a b " ]; }
only_a() { [ "$(records)" = "a " ]; }
wait_for 20 "both records" both
bport=$(cat "$work/b/port")

t0=$(date +%s.%N)
ip netns exec "$A" iptables -A INPUT -s 10.78.0.2 -j DROP || exit 1
wait_for 4 "b's record to expire" only_a
t1=$(date +%s.%N)
gone=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
echo "figure: partition to b gone from etcd ${gone} s (TTL 2 s)"
if awk "BEGIN { exit !($gone > 3) }"; then
    echo "FAIL: b stayed in etcd ${gone} s (> TTL + 1 s)"
    exit 1
fi
ip netns exec "$B" "$cli" -a 10.78.0.2 -p "$bport" stat >/dev/null ||
    { echo "FAIL: b stopped serving its own clients"; exit 1; }
has_log() { grep -q "unreachable" "$work/b/kvstashd.log"; }
wait_for 5 "b to log that etcd is unreachable" has_log

ip netns exec "$A" iptables -D INPUT -s 10.78.0.2 -j DROP || exit 1
wait_for 10 "b back in etcd" both
echo "partition: ok"
