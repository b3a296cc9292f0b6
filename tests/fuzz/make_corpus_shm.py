#!/usr/bin/env python3
# Writes the seed corpus for fuzz_wire_shm: one valid packet of every shm
# socket message (include/kvstash/wire_shm.h), requests and replies, plus a
# few malformed ones. Input layout: the packet itself (no payload prefix:
# the shm socket never carries block bytes).
import os, struct, sys
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "wire_shm")
os.makedirs(out, exist_ok=True)
MAGIC, REPLY = 0x3153564B, 1
ATTACH, RESERVE, COMMIT, ABORT, VIEW, RELEASE = 40, 41, 42, 43, 44, 45
def frame(op, body=b"", flags=0, count=0, status=0, req=1, ver=2, blen=None):
    return struct.pack("<IBBHQIiII", MAGIC, ver, op, flags, req, len(body) if blen is None else blen, status, count, 0) + body
def lens(*ls): return b"".join(struct.pack("<I", l) for l in ls)
def attach(tok, ns, elem=2): return struct.pack("<IHHBxxxxxxx", 0, len(tok), len(ns), elem) + tok + ns
def reserve(k, parent, ls, cls=0, elem=2, flags=0, ttl=0, group=0):
    return struct.pack("<BBHHxxIxxxxQQ", cls, elem, len(k), len(parent), flags, ttl, group) + k + parent + lens(*ls)
def view(k, lease=0): return struct.pack("<IHxx", lease, len(k)) + k
def view_rep(ls, ident=7, off=4096, tier=0, cls=0, expiry=10**9):
    return struct.pack("<QQQBBxxxxxxQ", ident, off, sum(ls), tier, cls, expiry) + lens(*ls)
seeds = {
 "attach": frame(ATTACH, attach(b"tok", b"ns-01")),
 "attach_no_token": frame(ATTACH, attach(b"", b"n")),
 "attach_rep": frame(ATTACH, struct.pack("<QIIQ", 1 << 30, 1 << 22, 60000, 0x1234), REPLY),
 "reserve": frame(RESERVE, reserve(b"k1", b"", [100, 200], flags=1, ttl=5000, group=3), 0, 2),
 "reserve_parent": frame(RESERVE, reserve(b"k2", b"k1", [4096]), 0, 1),
 "reserve_rep": frame(RESERVE, struct.pack("<QQQ", 5, 8192, 300), REPLY),
 "commit": frame(COMMIT, struct.pack("<Q", 5)),
 "commit_rep": frame(COMMIT, b"", REPLY),
 "abort": frame(ABORT, struct.pack("<Q", 5)),
 "view": frame(VIEW, view(b"k1", 2000)),
 "view_rep": frame(VIEW, view_rep([100, 200]), REPLY, 2),
 "release": frame(RELEASE, struct.pack("<Q", 7)),
 "release_expired": frame(RELEASE, b"", REPLY, 0, -5012),
 "error_rep": frame(RESERVE, b"", REPLY, 0, -5003),
 "bad_magic": b"XXXX" + frame(COMMIT, struct.pack("<Q", 5))[4:],
 "bad_version": frame(COMMIT, struct.pack("<Q", 5), ver=9),
 "bad_opcode": frame(46, struct.pack("<Q", 5)),
 "ucx_opcode": frame(3, struct.pack("<Q", 5)),
 "bad_flags": frame(COMMIT, struct.pack("<Q", 5), flags=2),
 "short_header": frame(COMMIT)[:20],
 "trailing": frame(COMMIT, struct.pack("<Q", 5) + b"x"),
 "body_len_lies": frame(VIEW, view(b"k1"), blen=1 << 30),
 "key_65": frame(VIEW, view(b"x" * 65)),
 "key_len_lies": frame(VIEW, struct.pack("<IHxx", 0, 40) + b"k1"),
 "reserve_no_parts": frame(RESERVE, reserve(b"k1", b"", []), 0, 0),
 "reserve_count_lies": frame(RESERVE, reserve(b"k1", b"", [100]), 0, 1025),
 "reserve_rep_count": frame(RESERVE, struct.pack("<QQQ", 5, 8192, 300), REPLY, 1),
 "view_rep_no_parts": frame(VIEW, view_rep([]), REPLY, 0),
 "attach_token_257": frame(ATTACH, attach(b"t" * 257, b"ns")),
 "attach_no_ns": frame(ATTACH, attach(b"tok", b"")),
 "error_with_body": frame(VIEW, struct.pack("<Q", 5), REPLY, 0, -5001),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
