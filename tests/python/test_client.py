# SPDX-License-Identifier: Apache-2.0
"""kvstash.Client against a real kvstashd on 127.0.0.1.

The module's daemon takes at most 16 keys a frame, so every batch below of
more than 16 keys is split into frames by the binding; the answers must
be those of one big call."""
import array
import errno
import os

import pytest

import kvstash
from kvstash import Class, KvsError, NotFoundError, PutItem, Status, Tier


def payload(seed: int, n: int) -> bytes:
    return (seed.to_bytes(4, "little") * (n // 4 + 1))[:n]


def test_put_get_round_trip_of_every_kind_of_buffer(client):
    client.put(b"bytes", b"hello")
    client.put("str-key", bytearray(b"bytearray"))
    client.put(b"mv", memoryview(b"0123456789")[2:5])
    client.put(b"arr", array.array("i", [1, 2, 3]))
    assert client.get(b"bytes") == b"hello"
    assert client.get("str-key") == b"bytearray"
    assert client.get(b"mv") == b"234"
    assert client.get(b"arr") == array.array("i", [1, 2, 3]).tobytes()


def test_missing_blocks_are_not_errors(client):
    assert client.get(b"nope") is None
    assert client.get_into(b"nope", bytearray(8)) is None
    assert client.exists(b"nope") is False
    assert client.delete(b"nope") is False
    assert client.match([b"nope", b"nope2"]).matched == 0


def test_large_block_grows_past_the_size_hint(client):
    data = os.urandom(300_000)
    client.put(b"big", data)
    assert client.get(b"big", size_hint=1000) == data


def test_get_into_a_small_buffer_says_how_big_the_block_is(client):
    client.put(b"k", b"x" * 100)
    buf = bytearray(10)
    with pytest.raises(KvsError) as ei:
        client.get_into(b"k", buf)
    assert ei.value.status == -errno.ENOBUFS
    assert ei.value.length == 100
    assert "No buffer space" in str(ei.value)


def test_get_into_fills_the_callers_memory(client):
    np = pytest.importorskip("numpy")
    src = np.arange(4096, dtype=np.float32)
    client.put(b"np", src)
    dst = np.zeros(4096, dtype=np.float32)
    assert client.get_into(b"np", dst) == src.nbytes
    assert np.array_equal(src, dst)
    # A slice of a bigger array receives in place, neighbours untouched.
    big = np.full(3 * 4096, -1.0, dtype=np.float32)
    assert client.get_into(b"np", big[4096:8192]) == src.nbytes
    assert np.array_equal(big[4096:8192], src)
    assert (big[:4096] == -1).all() and (big[8192:] == -1).all()


def test_torch_tensors_in_and_out(client):
    torch = pytest.importorskip("torch")
    k = torch.randn(2, 16, 4, 8)
    client.put(b"t", [k[0], k[1]])
    out = torch.empty_like(k)
    assert client.get_into(b"t", out) == k.numel() * 4
    assert torch.equal(out, k)
    with pytest.raises(BufferError):
        client.put(b"t2", k.transpose(1, 2))


def test_parts_and_their_lengths(client):
    parts = [payload(i, 100 * (i + 1)) for i in range(5)]
    client.put(b"parts", parts, cls=Class.USER, ttl_ms=60_000, group=7)
    buf = bytearray(2000)
    r = client.get_batch([b"parts"], [buf], part_lens=True)[0]
    assert r.found and r.nparts == 5
    assert r.part_lens == (100, 200, 300, 400, 500)
    assert bytes(buf[:r.length]) == b"".join(parts)


def test_batches_split_into_frames_answer_as_one(client):
    assert client.limits.max_keys == 16
    n = 50
    keys = [f"chain-{i}".encode() for i in range(n)]
    items = [PutItem(keys[i], payload(i, 64 + i),
                     parent=keys[i - 1] if i else None) for i in range(n)]
    client.put_batch(items)
    assert all(it.status == 0 for it in items)
    bufs = [bytearray(200) for _ in range(n + 1)]
    res = client.get_batch(keys + [b"missing"], bufs)
    assert [r.status for r in res] == [0] * n + [Status.ENOTFOUND]
    for i in range(n):
        assert bytes(bufs[i][:res[i].length]) == payload(i, 64 + i)
    assert client.exists_batch(keys[::-1] + [b"x"]) == [True] * n + [False]

    m = client.match(keys + [b"gap"] + keys)
    assert m.matched == n and m.tiers == (Tier.DRAM,) * n
    assert m.lease_ids == ()
    # Deleting a middle block ends the prefix there.
    assert client.delete(keys[37])
    assert client.match(keys).matched == 37
    st = client.delete_batch(keys[30:40])
    assert st == [0] * 7 + [Status.ENOTFOUND] + [0] * 2
    assert client.match(keys).matched == 30
    # Statuses land at their key's place in every frame (16 + 4 here).
    st = client.delete_batch(keys[:18] + [b"gone"] + keys[18:19])
    assert st == [0] * 18 + [Status.ENOTFOUND, 0]
    with pytest.raises(NotFoundError) as ei:
        client.pin_batch(keys[20:30] + keys[:9] + [b"gone"])
    assert ei.value.statuses == [0] * 10 + [Status.ENOTFOUND] * 10


def test_match_with_lease_then_get_ends_it(client, daemon):
    keys = [f"lease-{i}".encode() for i in range(20)]
    client.put_batch([PutItem(k, b"v" * 32) for k in keys])
    m = client.match(keys, lease=True, lease_ms=30_000)
    assert m.matched == 20
    assert len(m.lease_ids) == 2  # 16 + 4 keys: one lease per frame
    assert client.stat()["leases"] == 2
    client.get_batch(keys, [bytearray(32) for _ in keys],
                     lease_id=m.lease_id)
    assert client.release(m.lease_ids[0]) is False  # the GET ended it
    assert client.release(m.lease_ids[1]) is True
    assert client.stat()["leases"] == 0


def test_pin_unpin_and_retain(client):
    client.put_batch([PutItem(f"p{i}", b"x") for i in range(20)])
    keys = [f"p{i}" for i in range(20)]
    before = client.stat()["conn_pins"]
    client.pin_batch(keys)
    assert client.stat()["conn_pins"] == before + 20
    client.unpin_batch(keys)
    assert client.stat()["conn_pins"] == before
    client.pin(b"p0", retain=True)
    ent = {e.key: e for e in client.scan()}
    assert ent[b"p0"].cls == Class.PINNED and ent[b"p1"].cls == Class.SCRATCH
    client.unpin(b"p0", retain=True)
    with pytest.raises(NotFoundError) as ei:
        client.pin_batch([b"p1", b"absent"])
    assert ei.value.statuses == [0, Status.ENOTFOUND]
    assert isinstance(ei.value, KeyError)


def test_put_batch_failure_names_the_block(client):
    items = [PutItem(b"good", b"1"), PutItem(b"k" * 65, b"2")]
    with pytest.raises(KvsError) as ei:
        client.put_batch(items)
    assert ei.value.status == Status.ETOOBIG
    assert "KVS_ETOOBIG" in str(ei.value)
    assert ei.value.message == kvstash.strerror(Status.ETOOBIG)


@pytest.mark.xfail(strict=True, reason="libkvstash bug: a batch with an "
                   "invalid item fails whole before any status is set, "
                   "although client.h says each item's status is set "
                   "(put_check in kvs_client_put_batch_async)")
def test_put_batch_failure_sets_the_failing_items_status(client):
    items = [PutItem(b"good", b"1"), PutItem(b"k" * 65, b"2")]
    with pytest.raises(KvsError) as ei:
        client.put_batch(items)
    assert ei.value.statuses[1] == Status.ETOOBIG


def test_scan_lists_the_namespace(client):
    client.put(b"a", b"1")
    client.put(b"b", b"22", parent=b"a", group=42)
    got = {e.key: e for e in client.scan()}
    assert set(got) == {b"a", b"b"}
    assert got[b"b"].parent == b"a" and got[b"b"].length == 2
    assert [e.key for e in client.scan(group=42)] == [b"b"]


def test_stat_counts_puts_and_daemon_gets(client):
    s0 = client.stat()
    client.put(b"s", b"abc")
    client.get(b"s")
    s1 = client.stat()
    assert s1["puts"] == s0["puts"] + 1
    assert s1["get_blocks_sent"] == s0["get_blocks_sent"] + 1


def test_blocks_come_back_from_nvme_after_a_restart(make_daemon):
    d = make_daemon()
    d.start()
    data = [os.urandom(5000) for _ in range(3)]
    keys = [b"n0", b"n1", b"n2"]
    with kvstash.Client("127.0.0.1", d.port, None, "nv") as c:
        c.put_batch([PutItem(k, v, parent=keys[i - 1] if i else None)
                     for i, (k, v) in enumerate(zip(keys, data))])
    d.restart()
    with kvstash.Client("127.0.0.1", d.port, None, "nv") as c:
        m = c.match(keys)
        assert m.matched == 3 and m.tiers == (Tier.NVME,) * 3
        bufs = [bytearray(5000) for _ in keys]
        res = c.get_batch(keys, bufs)
        assert [r.status for r in res] == [0] * 3
        assert [bytes(b) for b in bufs] == data
        assert c.stat()["bytes_read"] > 0
    d.stop()


def test_errors_carry_status_and_text(make_daemon, tmp_path):
    d = make_daemon()
    cfg = tmp_path / "k.ini"
    cfg.write_text("[tenant.alice]\ntoken = secret-a\nnamespaces = a\n")
    d.extra = [f"--config={cfg}"]
    d.start()
    with pytest.raises(KvsError) as ei:
        kvstash.Client("127.0.0.1", d.port, "wrong", "a")
    assert ei.value.status == Status.EAUTH and ei.value.op == "connect"
    assert ei.value.message == kvstash.strerror(Status.EAUTH)
    with kvstash.Client("127.0.0.1", d.port, "secret-a", "a") as c:
        c.put(b"k", b"v")
        assert c.get(b"k") == b"v"
    d.stop()
    with pytest.raises(KvsError) as ei:
        kvstash.Client("127.0.0.1", d.port, None, "a", timeout_ms=500)
    assert ei.value.status == Status.EPEER


def test_closed_client_and_missing_namespace(daemon):
    with pytest.raises(TypeError):
        kvstash.Client("127.0.0.1", daemon.port)
    c = kvstash.Client("127.0.0.1", daemon.port, None, "x")
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(ValueError):
        c.get(b"k")


def test_get_reports_the_tier_and_class_served_from(make_daemon):
    d = make_daemon()
    d.start()
    with kvstash.Client("127.0.0.1", d.port, None, "nv") as c:
        c.put(b"u", b"x" * 100, cls=Class.USER, ttl_ms=600_000)
    d.restart()
    with kvstash.Client("127.0.0.1", d.port, None, "nv") as c:
        assert c.match([b"u"]).tiers == (Tier.NVME,)
        r = c.get_batch([b"u"], [bytearray(100)])[0]
        try:
            assert (r.tier, r.cls) == (Tier.NVME, Class.USER)
        finally:
            c.close()
            d.stop()
