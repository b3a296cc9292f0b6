# SPDX-License-Identifier: Apache-2.0
"""The binding's shared-memory calls (kvstash.shm, Client.shm_*) against a
real kvstashd with daemon.shm_socket on 127.0.0.1: bytes checked end to
end in both directions and across the two paths (a block put through the
arena is read over UCX and the other way round), the memoryviews'
lifetime, and the fallback of a client that is not attached."""
import ctypes
import errno
import os
import time

import pytest

import kvstash
from kvstash._buffer import Views
from kvstash.errors import KvsError, Status


def _payload(n, seed):
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


@pytest.fixture(scope="module")
def shm_daemon(tmp_path_factory):
    from kvstash._daemon import Daemon, default_dir
    d = Daemon(default_dir("python-test_shm"))
    d.wipe()
    # A short path of its own: a Unix socket's name is at most 107 bytes.
    sock = tmp_path_factory.mktemp("shm") / "s"
    d.extra = [f"--set=daemon.shm_socket={sock}"]
    d.start()
    d.sock = str(sock)
    yield d
    d.kill() if d.proc is None else d.stop()
    d.wipe()


@pytest.fixture
def sc(shm_daemon, request):
    """An attached client in a namespace of the test's own."""
    with kvstash.Client("127.0.0.1", shm_daemon.port, None,
                        "shm-" + request.node.name,
                        shm_socket=shm_daemon.sock) as c:
        assert c.shm_status == 0, kvstash.errors.strerror(c.shm_status)
        yield c


@pytest.fixture
def plain(shm_daemon, request):
    """A client of the same daemon and namespace, not attached."""
    with kvstash.Client("127.0.0.1", shm_daemon.port, None,
                        "shm-" + request.node.name) as c:
        yield c


def test_put_and_get_through_the_arena(sc, plain):
    data = _payload(100_000, 1)
    sc.shm_put("k1", data)
    assert bytes(sc.shm_get("k1", size_hint=10)) == data  # -ENOBUFS, again
    buf = bytearray(len(data) + 7)
    assert sc.shm_get_into("k1", buf) == len(data)
    assert bytes(buf[:len(data)]) == data
    # The same block over UCX, and one put over UCX read from the arena.
    assert bytes(plain.get("k1", size_hint=1 << 17)) == data
    other = _payload(5000, 2)
    plain.put("k2", other)
    assert bytes(sc.shm_get("k2")) == other
    assert sc.shm_get("absent") is None
    with pytest.raises(KvsError) as e:
        sc.shm_get_into("k1", bytearray(10))
    assert e.value.status == -errno.ENOBUFS and e.value.length == len(data)


def test_torch_tensors_in_and_out(sc):
    torch = pytest.importorskip("torch")
    t = torch.arange(4096, dtype=torch.float32)
    sc.shm_put("t", t)
    out = torch.empty_like(t)
    assert sc.shm_get_into("t", out) == t.numel() * 4
    assert torch.equal(out, t)


def test_reserve_write_commit_then_view_read_release(sc, plain):
    a, b = _payload(3000, 3), _payload(1000, 4)
    with sc.shm_reserve("r1", [len(a), len(b)]) as r:
        assert r.length == 4000 and r.part_lens == (3000, 1000)
        assert not r.data.readonly
        r.data[:3000] = a
        r.data[3000:] = b
    assert not r.open
    with pytest.raises(ValueError):
        r.data  # noqa: B018 - the memoryview is gone after commit
    assert bytes(plain.get("r1")) == a + b
    v = sc.shm_view("r1")
    assert v.part_lens == (3000, 1000) and v.data.readonly
    assert bytes(v.data) == a + b
    mv = v.data
    assert v.release() is True
    with pytest.raises(ValueError):
        mv[0]  # the released memoryview cannot be read
    assert sc.shm_view("absent") is None


def test_abort_leaves_nothing(sc):
    r = sc.shm_reserve("gone", 512)
    r.data[:] = b"x" * 512
    r.abort()
    assert sc.shm_get("gone") is None
    with pytest.raises(RuntimeError):
        with sc.shm_reserve("gone", 64) as r2:
            r2.data[:] = b"y" * 64
            raise RuntimeError("the writer failed")
    assert sc.shm_get("gone") is None


def test_an_exported_view_refuses_to_end(sc):
    with sc.shm_reserve("exp", 64) as r:
        # What a C extension holding a Py_buffer of it does.
        views = Views()
        addr, n = views.add(r.data, writable=True)
        assert n == 64
        ctypes.memset(addr, 7, 1)
        with pytest.raises(BufferError):
            r.commit()
        assert r.open  # nothing was sent: still reserved
        views.release()
    assert sc.shm_get("exp")[0] == 7


def test_close_ends_open_views(shm_daemon, sc):
    sc.shm_put("c", b"abc")
    v = sc.shm_view("c", lease_ms=60000)
    mv = v.data
    sc.close()
    assert not v.open
    with pytest.raises(ValueError):
        bytes(mv)


def test_not_attached_falls_back(shm_daemon, plain, monkeypatch):
    assert plain.shm_status == -errno.EOPNOTSUPP and not plain.shm_attached
    data = _payload(20000, 5)
    plain.shm_put("f", data)
    assert bytes(plain.shm_get("f", size_hint=100)) == data
    assert plain.shm_get("absent") is None
    with pytest.raises(KvsError) as e:
        plain.shm_reserve("f2", 10)
    assert e.value.status == -errno.EOPNOTSUPP
    with pytest.raises(KvsError) as e:
        plain.shm_view("f")
    assert e.value.status == -errno.EOPNOTSUPP


def test_environment_variable_attaches(shm_daemon, monkeypatch):
    monkeypatch.setenv("KVSTASH_SHM_SOCKET", shm_daemon.sock)
    with kvstash.Client("127.0.0.1", shm_daemon.port, None, "shm-env") as c:
        assert c.shm_attached
        c.shm_put("e", b"env")
        with c.shm_view("e") as v:
            assert bytes(v.data) == b"env"


def test_a_missing_socket_is_not_fatal(shm_daemon, tmp_path):
    with kvstash.Client("127.0.0.1", shm_daemon.port, None, "shm-missing",
                        shm_socket=str(tmp_path / "none")) as c:
        assert c.shm_status < 0
        c.shm_put("m", b"still works")
        assert bytes(c.shm_get("m")) == b"still works"
        assert c.shm_get("absent") is None
    assert os.path.exists(shm_daemon.sock)


def test_an_expired_lease_says_so(sc):
    sc.shm_put("x", b"short lease")
    v = sc.shm_view("x", lease_ms=20)
    time.sleep(0.2)
    assert v.release() is False
    with pytest.raises(KvsError) as e:
        with sc.shm_view("x", lease_ms=20) as v2:
            time.sleep(0.2)
    assert e.value.status == Status.EEXPIRED and not v2.open


def test_batches_go_through_the_arena(sc, plain):
    # put_batch and get_batch of an attached client use kvs_shm_put_batch
    # and kvs_shm_get_batch: the daemon counts the commits as shm ones,
    # and the bytes agree with what a client over UCX reads.
    before = sc.stat()
    blocks = [(_payload(50_000 + 999 * i, i), _payload(3_000 + i, 100 + i))
              for i in range(12)]
    items = [kvstash.PutItem(f"b{i}", list(p)) for i, p in enumerate(blocks)]
    sc.put_batch(items)
    assert all(it.status == 0 for it in items)
    keys = [f"b{i}" for i in range(12)] + ["absent"]
    bufs = [bytearray(70_000) for _ in keys]
    res = sc.get_batch(keys, bufs, part_lens=True)
    after = sc.stat()
    assert after["shm_commits"] - before["shm_commits"] == 12
    assert res[-1].status == Status.ENOTFOUND
    for i, (a, b) in enumerate(blocks):
        assert res[i].status == 0
        assert res[i].part_lens == (len(a), len(b))
        assert bytes(bufs[i][:res[i].length]) == a + b
        assert plain.get(f"b{i}") == a + b
