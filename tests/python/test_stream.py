# SPDX-License-Identifier: Apache-2.0
"""Streaming from Python between two real kvstashd: a prefill side P whose
client puts blocks part by part, and a decode side D whose client fetches
them from P through D and waits for each part (tests/e2e/e2e_stream.c does
the same in C)."""
import os

import pytest

import kvstash
from kvstash import KvsError, Status

NPARTS = 6
PART = 8192


@pytest.fixture
def pair(make_daemon):
    p = make_daemon("-p", extra=["--set=peer.secret=py-s3cret",
                                 "--set=peer.timeout_ms=3000"])
    p.start()
    d = make_daemon("-d", extra=["--set=peer.secret=py-s3cret",
                                 "--set=peer.timeout_ms=3000",
                                 f"--set=peer.list=prefill=127.0.0.1:{p.port}"])
    d.start()
    cp = kvstash.Client("127.0.0.1", p.port, None, "s")
    cd = kvstash.Client("127.0.0.1", d.port, None, "s")
    yield p, d, cp, cd
    cp.close()
    cd.close()
    d.stop()
    p.stop()


def test_parts_arrive_before_the_block_is_sealed(pair):
    _, _, cp, cd = pair
    src = [os.urandom(PART) for _ in range(NPARTS)]
    dst = bytearray(PART * NPARTS)
    put = cp.stream_put(b"blk-0", [PART] * NPARTS)
    with cd.stream_fetch("prefill", [(b"blk-0", dst)], wait_ms=10_000) as f:
        for i in range(3):
            put.part(i, src[i])
        for i in range(3):
            f.wait(0, i, timeout_ms=10_000)
        assert dst[:3 * PART] == b"".join(src[:3])
        info = f.info(0)
        assert info.nparts == NPARTS and not info.complete
        assert info.parts_in >= 3
        # Neither side shows the block before it is sealed.
        assert not cp.exists(b"blk-0") and not cd.exists(b"blk-0")
        for i in range(3, NPARTS):
            put.part_nb(i, src[i])
        put.seal()
        f.wait(0, timeout_ms=10_000)
        assert f.info(0).complete
    assert bytes(dst) == b"".join(src)
    # Fetched blocks are stored on the decode side: the next turn hits there.
    assert cd.get(b"blk-0", size_hint=PART * NPARTS) == b"".join(src)


def test_an_aborted_put_fails_the_fetch(pair):
    _, _, cp, cd = pair
    dst = bytearray(PART * NPARTS)
    with cp.stream_put(b"blk-x", [PART] * NPARTS) as put, \
            cd.stream_fetch("prefill", [(b"blk-x", dst)], wait_ms=10_000) as f:
        put.part(0, b"\x01" * PART)
        f.wait(0, 0, timeout_ms=10_000)
        put.abort()
        with pytest.raises(KvsError) as ei:
            f.wait(0, timeout_ms=10_000)
        assert ei.value.status != 0
    assert not cd.exists(b"blk-x")


def test_seal_with_parts_missing_says_incomplete(pair):
    _, _, cp, _ = pair
    put = cp.stream_put(b"blk-i", [PART, PART])
    put.part(0, bytes(PART))
    with pytest.raises(KvsError) as ei:
        put.seal()
    assert ei.value.status == Status.EINCOMPLETE
    with pytest.raises(ValueError):
        put.part(1, bytes(PART))


def test_a_push_lands_in_the_peers_store(pair):
    p, d, cp, cd = pair
    src = [os.urandom(PART) for _ in range(2)]
    put = cp.stream_put(b"pushed", [PART, PART],
                        push_peer=f"127.0.0.1:{d.port}")
    for i, s in enumerate(src):
        put.part(i, s)
    put.seal()
    assert cd.get(b"pushed", size_hint=2 * PART) == b"".join(src)


@pytest.fixture
def shm_pair(make_daemon, tmp_path):
    """P and D with shm sockets: the clients may map their arenas."""
    socks = {t: str(tmp_path / t) for t in ("p", "d")}
    p = make_daemon("-p", extra=["--set=peer.secret=py-s3cret",
                                 f"--set=daemon.shm_socket={socks['p']}"])
    p.start()
    d = make_daemon("-d", extra=["--set=peer.secret=py-s3cret",
                                 f"--set=daemon.shm_socket={socks['d']}",
                                 f"--set=peer.list=prefill=127.0.0.1:{p.port}"])
    d.start()
    yield p, d, socks


@pytest.mark.parametrize("attached", [True, False])
def test_in_place_put_and_fetch(shm_pair, attached):
    """The prefill client writes parts where buf() says and commits them;
    the decode client reads them with data() before the block is sealed:
    in the sidecars' arenas when attached, else in the library's buffers,
    with the same calls."""
    p, d, socks = shm_pair
    kw = lambda t: {"shm_socket": socks[t]} if attached else {}
    src = [os.urandom(PART) for _ in range(NPARTS)]
    with kvstash.Client("127.0.0.1", p.port, None, "s", **kw("p")) as cp, \
            kvstash.Client("127.0.0.1", d.port, None, "s", **kw("d")) as cd:
        assert (cp.shm_status == 0) == attached
        assert (cd.shm_status == 0) == attached
        inplace0 = (cp.stat()["stream_parts_inplace"],
                    cd.stat()["stream_parts_inplace"])
        put = cp.stream_put(b"ip-0", [PART] * NPARTS, inplace=True)
        with cd.stream_fetch("prefill", [(b"ip-0", None)],
                             wait_ms=10_000) as f:
            with pytest.raises(KvsError):
                f.data(0, 0)  # not in yet: -EAGAIN
            for i in range(3):
                b = put.buf(i)
                assert len(b) == PART and not b.readonly
                b[:] = src[i]
                put.commit(i)
            for i in range(3):
                f.wait(0, i, timeout_ms=10_000)
                part = f.data(0, i)
                assert part.readonly and bytes(part) == src[i]
            assert not cp.exists(b"ip-0") and not cd.exists(b"ip-0")
            for i in range(3, NPARTS):
                put.buf(i)[:] = src[i]
                put.commit(i)
            with pytest.raises(KvsError):
                put.commit(0)  # committed before: -EALREADY
            put.seal()
            f.wait(0, timeout_ms=10_000)
            whole = f.data(0)
            assert bytes(whole) == b"".join(src)
        with pytest.raises(ValueError):
            whole[0]  # released by close()
        assert cd.get(b"ip-0", size_hint=PART * NPARTS) == b"".join(src)
        counted = (cp.stat()["stream_parts_inplace"] - inplace0[0],
                   cd.stat()["stream_parts_inplace"] - inplace0[1])
        assert counted == ((NPARTS, NPARTS) if attached else (0, 0))


def test_an_exported_stream_view_keeps_the_put_open(shm_pair):
    from kvstash._buffer import Views
    p, _, socks = shm_pair
    with kvstash.Client("127.0.0.1", p.port, None, "s",
                        shm_socket=socks["p"]) as cp:
        put = cp.stream_put(b"exp", [PART], inplace=True)
        views = Views()
        views.add(put.buf(0), writable=True)  # a C extension's Py_buffer
        put.commit(0)
        with pytest.raises(BufferError):
            put.seal()
        views.release()
        put.seal()
        assert cp.exists(b"exp")
