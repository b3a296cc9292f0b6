# SPDX-License-Identifier: Apache-2.0
"""Membership in etcd with real processes: an etcd server and three
kvstashd on 127.0.0.1. Join (records with address, tiers, namespaces,
events); a peer fetched from by its name from etcd alone; kill -9 (the
record gone within TTL + 1 s); restart (back, its NVMe contents announced
again); etcd lost and restarted empty (daemons keep serving, say so, and
register again); and an event consumer that found the publishers in etcd
and whose index equals the daemons' contents after the churn."""
import os
import subprocess
import time

import pytest

from clusterlib import Consumer, Daemon, Etcd, wait_for

PREFIX = "/kvstash/nodes/"
TTL = 2
SECRET = ["peer.secret=cluster-test-secret"]
KVSTASH = os.environ.get("KVSTASH", "kvstash")


@pytest.fixture
def cluster():
    etcd = Etcd("membership")
    etcd.start()
    nodes = [Daemon("membership", f"n{i}", etcd, PREFIX, SECRET)
             for i in (1, 2, 3)]
    try:
        for d in nodes:
            d.start()
        yield etcd, nodes
    finally:
        for d in nodes:
            d.stop()
            d.remove_data()
        etcd.stop()


def names(etcd):
    return {r["name"] for r in etcd.records(PREFIX).values()}


def present(d, keys):
    """The keys d holds now, by asking it (one MATCH per key)."""
    with d.client() as c:
        return {k for k in keys if c.match([k]).matched == 1}


def follow_all(cons, etcd):
    for key, r in etcd.records(PREFIX).items():
        assert key == PREFIX + r["name"]
        cons.follow(r["name"], r["events"], r["replay"])


def test_membership_and_churn(cluster):
    etcd, (n1, n2, n3) = cluster
    wait_for(lambda: names(etcd) == {"n1", "n2", "n3"}, 10, "three records")
    recs = {r["name"]: r for r in etcd.records(PREFIX).values()}
    r2 = recs["n2"]
    assert r2["addr"] == "127.0.0.1" and r2["port"] == n2.port
    assert r2["events"] == n2.events and r2["replay"] == n2.replay
    assert r2["tiers"] == {"dram_bytes": 64 << 20, "nvme_bytes": 256 << 20}
    assert r2["namespaces"] == ["*"] and r2["version"]

    cons = Consumer()
    follow_all(cons, etcd)  # a router finds the publishers in etcd
    keys = {d.node: [f"{d.node}-blk-{i:03d}".encode() for i in range(40)]
            for d in (n1, n2, n3)}
    for d in (n1, n2, n3):
        with d.client() as c:
            parent = None
            for i, k in enumerate(keys[d.node]):
                # every fourth durable: it is on NVMe when kill -9 comes
                c.put(k, bytes([i]) * 4096, parent=parent,
                      flags=1 if i % 4 == 0 else 0)
                parent = k
            for k in keys[d.node][30:35]:
                c.delete(k)

    # A peer by the name in etcd alone (no [peer] list): n1 fetches a
    # block of n2 from "n2".
    from kvstash.stream import StreamFetch
    buf = bytearray(4096)
    with n1.client() as c:
        with StreamFetch(c, "n2", [(keys["n2"][1], buf)]) as f:
            f.wait(0, timeout_ms=10000)
    assert buf == bytes([1]) * 4096

    # kill -9: the record goes with the lease.
    t0 = time.monotonic()
    n2.kill9()
    wait_for(lambda: "n2" not in names(etcd), TTL + 1, "n2 gone from etcd")
    gone_s = time.monotonic() - t0
    print(f"\nfigure: kill -9 to gone from etcd {gone_s:.2f} s (TTL {TTL} s)")
    assert gone_s <= TTL + 1
    time.sleep(1.2)  # n1's cache is refreshed every second
    with n1.client() as c:
        with pytest.raises(Exception):
            StreamFetch(c, "n2", [(keys["n2"][1], buf)]).wait(
                0, timeout_ms=3000)

    # Restart: back in etcd, its durable blocks announced again.
    n2.start()
    wait_for(lambda: "n2" in names(etcd), 5, "n2 back in etcd")
    cons.follow("n2", n2.events, n2.replay)
    durable = set(keys["n2"][0:30:4])
    idx2 = cons.index("n2")
    assert durable <= set(idx2), "NVMe contents not announced again"
    assert all(idx2[k] == {"STORAGE"} for k in durable)

    # etcd lost: the daemons serve on and say so; etcd back empty: they
    # register again.
    etcd.stop()
    time.sleep(1.5)
    with n3.client() as c:
        assert c.match([keys["n3"][0]]).matched == 1
    wait_for(lambda: "unreachable" in n3.log_text(), 5, "n3 to log it")
    import shutil
    shutil.rmtree(etcd.dir / "data")
    etcd.start()
    wait_for(lambda: names(etcd) == {"n1", "n2", "n3"}, 10,
             "three records after the etcd restart")
    assert "registering again" in n1.log_text()

    # More churn, then the consumer's index equals what each daemon holds.
    with n3.client() as c:
        for k in keys["n3"][:10]:
            c.delete(k)
    cons.poll(0.5)
    every = [k for ks in keys.values() for k in ks]
    for d in (n1, n2, n3):
        want = present(d, every)  # n1 holds n2's fetched block too
        assert set(cons.index(d.node)) == want, d.node
    assert keys["n2"][1] in cons.index("n1")

    # kvstash locate answers from an index built the same way, in C.
    def locate(chain):
        r = subprocess.run([KVSTASH, "locate", "--etcd", etcd.url,
                            "--prefix", PREFIX] + [k.decode() for k in chain],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout.split()
    chain = keys["n3"]  # 0..9 and 30..34 deleted
    assert locate(chain[10:30]) == (0, ["n3", "dram", "20/20"])
    assert locate(chain[10:40])[1][2] == "20/30"
    durable2 = keys["n2"][0:30:4]
    assert locate(durable2[:1]) == (0, ["n2", "nvme", "1/1"])
    assert locate([b"nobody-has-this"]) == (1, ["none", "-", "0/1"])
