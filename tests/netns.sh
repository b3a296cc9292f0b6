# SPDX-License-Identifier: Apache-2.0
#
# Sourced by the partition tests (tests/e2e/stream_partition.sh,
# tests/cluster/partition.sh): two test hosts of their own, network
# namespaces $A and $B joined by the veth pair $VA / $VB, with addresses
# $1.1 and $1.2 (a /24 that exists only inside them), loopback up in
# both, and iptables usable in $A. Exits 77, saying why, where the
# privileges or tools for that are missing; the caller's cleanup trap
# deletes the namespaces.
kvs_netns_pair() {
    net=$1
    if ! ip netns add "$A" 2>/dev/null; then
        echo "skip: cannot create network namespaces (needs root)"
        exit 77
    fi
    ip netns add "$B" || exit 77
    if ! ip link add "$VA" type veth peer name "$VB" 2>/dev/null; then
        echo "skip: cannot create a veth pair"
        exit 77
    fi
    ip link set "$VA" netns "$A" && ip link set "$VB" netns "$B" || exit 1
    ip -n "$A" addr add "$net.1/24" dev "$VA" &&
        ip -n "$A" link set "$VA" up && ip -n "$A" link set lo up || exit 1
    ip -n "$B" addr add "$net.2/24" dev "$VB" &&
        ip -n "$B" link set "$VB" up && ip -n "$B" link set lo up || exit 1
    if ! ip netns exec "$A" iptables -L INPUT >/dev/null 2>&1; then
        echo "skip: no iptables in the namespace"
        exit 77
    fi
}
