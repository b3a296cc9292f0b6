#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The locate figure of docs/cluster.md: an etcd and three kvstashd on
127.0.0.1, 100,000 blocks put across them in chains of 32, then
`kvstash locate --repeat N` on one chain over the full index. Not a test:
run it by hand (KVSTASHD, KVSTASH, KVSTASH_LIB as for the cluster tests).

    KVSTASHD=build/tools/kvstashd KVSTASH=build/tools/kvstash \\
    KVSTASH_LIB=build/transport/libkvstash.so /usr/bin/python3 \\
        tests/cluster/figures.py [BLOCKS] [REPEAT]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Daemon, Etcd, wait_for  # noqa: E402

PREFIX = "/kvstash/figures/"


def main():
    blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    etcd = Etcd("figures")
    etcd.start()
    nodes = [Daemon("figures", f"n{i}", etcd, PREFIX,
                    ["store.dram_mib=512", "store.nvme_mib=1024"])
             for i in (1, 2, 3)]
    try:
        for d in nodes:
            d.start()
        wait_for(lambda: len(etcd.records(PREFIX)) == 3, 10, "records")
        t0 = time.monotonic()
        per = blocks // 3
        from kvstash.client import PutItem
        for d in nodes:
            with d.client() as c:
                items = []
                for i in range(per):
                    k = f"{d.node}-c{i // 32}-b{i % 32}".encode()
                    p = None if i % 32 == 0 else \
                        f"{d.node}-c{i // 32}-b{i % 32 - 1}".encode()
                    items.append(PutItem(k, b"x" * 64, parent=p))
                    if len(items) == 256:
                        c.put_batch(items)
                        items = []
                if items:
                    c.put_batch(items)
        print(f"put {per * 3} blocks in {time.monotonic() - t0:.1f} s")
        chain = [f"n2-c7-b{i}" for i in range(32)]
        r = subprocess.run([os.environ.get("KVSTASH", "kvstash"), "locate",
                            "--etcd", etcd.url, "--prefix", PREFIX,
                            "--repeat", str(repeat)] + chain,
                           capture_output=True, text=True, timeout=300)
        print(r.stdout, r.stderr, end="")
    finally:
        for d in nodes:
            d.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
