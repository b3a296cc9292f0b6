# SPDX-License-Identifier: Apache-2.0
"""KV events in vLLM's format from a real kvstashd: the bytes against the
committed fixtures (tests/cluster/fixtures, made from vLLM's field list),
the topic / 8-byte sequence / replay protocol, a degrade announced as
STORAGE stored and CPU removed, and the NVMe contents announced again
after a restart."""
from pathlib import Path

import pytest
import zmq

from clusterlib import Consumer, Daemon, decode_batch, wait_for

FIX = Path(__file__).resolve().parent / "fixtures"


def replay_all(ctx, endpoint, start=0):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(endpoint)
    s.send_multipart([b"", start.to_bytes(8, "big")])
    out = []
    while True:
        f = s.recv_multipart()
        seq = int.from_bytes(f[1], "big", signed=True)
        if seq == -1:
            break
        out.append((seq, f[2]))
    s.close(0)
    return out


def masked(payload):
    """The payload with ts (a float64 after the map header and "ts") 0."""
    assert payload[:4] == b"\x83\xa2ts" and payload[4] == 0xcb
    return payload[:5] + bytes(8) + payload[13:]


@pytest.fixture
def daemon():
    d = Daemon("events", "n1")
    d.start()
    yield d
    d.stop()
    d.remove_data()


def test_bytes_match_fixtures(daemon):
    import time
    c = daemon.client()
    ctx = zmq.Context()
    c.put(b"blk-0001", b"x" * 100)
    time.sleep(0.1)
    c.put(b"blk-0002", b"y" * 100, parent=b"blk-0001")
    time.sleep(0.1)
    c.delete(b"blk-0001")
    got = wait_for(lambda: (lambda r: r if len(r) >= 4 else None)(
        replay_all(ctx, daemon.replay)), 5, "four batches")
    assert [s for s, _ in got] == [0, 1, 2, 3]
    for (seq, payload), name in zip(got, ["cleared.bin", "stored_root.bin",
                                          "stored_child.bin", "removed.bin"]):
        decode_batch(payload)
        assert masked(payload) == (FIX / name).read_bytes(), name
    # Replay from the middle, and the live topic/sequence frames.
    assert [s for s, _ in replay_all(ctx, daemon.replay, 2)] == [2, 3]
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(daemon.events)
    time.sleep(0.3)
    c.put(b"blk-0003", b"z")
    topic, seq, payload = sub.recv_multipart()
    assert topic == b"" and seq == (4).to_bytes(8, "big")
    ev = decode_batch(payload)["events"]
    assert ev[0]["block_hashes"] == [b"blk-0003"]
    c.close()
    ctx.destroy(0)


def test_degrade_and_restart():
    d = Daemon("events-degrade", "n1",
               extra=["store.dram_mib=8", "store.max_block_mib=1"])
    d.start()
    cons = Consumer()
    try:
        cons.follow("n1", d.events, d.replay)
        c = d.client()
        keys = [b"deg-%04d" % i for i in range(48)]
        parent = None
        for k in keys:  # 48 x 256 KiB through 8 MiB of DRAM
            c.put(k, bytes(256 << 10), parent=parent)
            parent = k
        def settled():
            cons.poll()
            idx = cons.index("n1")
            return any(m == {"STORAGE"} for m in idx.values())
        wait_for(settled, 20, "a block degraded to STORAGE only")
        idx = cons.index("n1")
        for k in keys:
            r = c.match([k])
            if r.matched == 0:
                assert k not in idx, f"{k} gone but still indexed"
                continue
            tier = r.tiers[0].name
            assert k in idx, f"{k} present but not indexed"
            if tier == "NVME":
                assert idx[k] == {"STORAGE"}, (k, idx[k])
            else:
                assert "CPU" in idx[k], (k, tier, idx[k])
        c.close()
        on_disk = {k for k, m in idx.items() if "STORAGE" in m}
        d.stop()  # flushes DRAM to disk
        d.start()
        cons.follow("n1", d.events, d.replay)
        cons.poll(0.5)
        idx = cons.index("n1")
        assert on_disk <= set(idx), "NVMe contents not announced again"
        assert all(m == {"STORAGE"} for m in idx.values())
    finally:
        d.stop()
        d.remove_data()
