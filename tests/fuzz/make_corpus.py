#!/usr/bin/env python3
# Writes the seed corpus for fuzz_wire: one valid frame of every message
# type (the stream opcodes included) plus a few malformed ones. Input
# layout: u32 payload length, frame.
import os, struct, sys
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "wire")
os.makedirs(out, exist_ok=True)
MAGIC, REPLY, PAYLOAD = 0x3153564B, 1, 2
def frame(op, body=b"", flags=0, count=0, status=0, req=1, ver=2):
    return struct.pack("<IBBHQIiII", MAGIC, ver, op, flags, req, len(body), status, count, 0) + body
def key(k): return bytes([len(k)]) + k
def keys(*ks): return b"".join(key(k) for k in ks)
def put_ent(k, lens, parent=b""):
    return struct.pack("<BBBBIQQII", len(k), len(parent), 0, 2, 0, 0, 0, len(lens), 0) + k + parent + b"".join(struct.pack("<I", l) for l in lens)
def stream(op, s=b"", rest=b"", block=0, part=0, nparts=0, sflags=0, ln=0, off=0, flags=0, status=0):
    return frame(op, struct.pack("<IIIHHQQ", block, part, nparts, len(s), sflags, ln, off) + s + rest, flags, 0, status)
def lens(*ls): return b"".join(struct.pack("<I", l) for l in ls)
seeds = {
 "hello_peer": (0, frame(1, struct.pack("<IBxxxHH", 0xd0, 0, 6, 0) + b"secret")),
 "sput_begin": (0, stream(16, b"k1", lens(100, 200), 1, 0, 2)),
 "sput_begin_push": (0, stream(16, b"k1", lens(100) + key(b"ns") + b"peer", 0, 0, 1, 1)),
 "sput_part": (100, stream(17, part=1, ln=100, flags=PAYLOAD)),
 "sput_seal": (0, stream(18)),
 "sput_done": (0, stream(19, status=-5001)),
 "sput_abort": (0, stream(20)),
 "fetch": (0, stream(21, b"prefill", key(b"ns") + keys(b"a", b"b"), nparts=2, ln=500)),
 "cancel": (0, stream(22)),
 "block": (0, stream(23, b"", lens(10, 20), 3, 0, 2, ln=30)),
 "part": (20, stream(24, block=3, part=1, ln=20, off=10, flags=PAYLOAD)),
 "end": (0, stream(25, block=0xffffffff, status=-5012)),
 "ping": (0, stream(26)),
 "push": (0, stream(27, b"ns", key(b"k") + lens(4096), 1, 0, 1)),
 "stream_str_lies": (0, stream(21, b"peer")[:-4]),
 "stream_reply": (0, stream(26, flags=REPLY)),
 "hello": (0, frame(1, struct.pack("<IBxxxHH", 15, 2, 3, 5) + b"tok" + b"ns-01")),
 "hello_rep": (0, frame(1, struct.pack("<IIIIIIQQII", 31, 65536, 1 << 26, 64, 1024, 60000, 7, 99, 40001, 0), REPLY)),
 "bind": (0, frame(14, struct.pack("<QQ", 7, 99))),
 "put": (300, frame(2, put_ent(b"k1", [100, 100]) + put_ent(b"k2", [100], b"k1"), PAYLOAD, 2)),
 "put_rep": (0, frame(2, struct.pack("<ii", 0, -5003), REPLY, 2)),
 "get": (0, frame(3, struct.pack("<Q", 0) + struct.pack("<Q", 1 << 20) + key(b"k1"), 0, 1)),
 "get_rep": (0, frame(3, struct.pack("<iIQBBHI", 0, 1, 100, 1, 0, 0, 0), REPLY, 1)),
 "data": (100, frame(4, struct.pack("<QIBBH", 100, 1, 1, 0, 0) + struct.pack("<I", 100), PAYLOAD, 0)),
 "match": (0, frame(5, struct.pack("<II", 1, 1000) + keys(b"a", b"b", b"c"), 0, 3)),
 "match_rep": (0, frame(5, struct.pack("<Q", 9) + bytes([1, 2]), REPLY, 2)),
 "exists": (0, frame(6, keys(b"a", b"b"), 0, 2)),
 "exists_rep": (0, frame(6, bytes([1, 0]), REPLY, 2)),
 "delete": (0, frame(7, keys(b"a"), 0, 1)),
 "pin": (0, frame(8, struct.pack("<II", 1, 0) + keys(b"a"), 0, 1)),
 "unpin": (0, frame(9, struct.pack("<II", 0, 0) + keys(b"a"), 0, 1)),
 "prefetch": (0, frame(10, keys(b"a", b"b"), 0, 2)),
 "prefetch_rep": (0, frame(10, struct.pack("<Q", 2), REPLY)),
 "release": (0, frame(11, struct.pack("<Q", 9))),
 "stat": (0, frame(12)),
 "stat_rep": (0, frame(12, bytes([4]) + b"refs" + struct.pack("<Q", 3), REPLY, 1)),
 "verify_rep": (0, frame(13, struct.pack("<QQ", 10, 0), REPLY)),
 "error_rep": (0, frame(3, b"", REPLY, 0, -5001)),
 "bad_magic": (0, b"XXXX" + frame(12)[4:]),
 "bad_version": (0, frame(12, ver=9)),
 "bad_opcode": (0, frame(99)),
 "truncated": (0, frame(6, keys(b"abc"), 0, 1)[:-2]),
 "key_65": (0, frame(6, bytes([65]) + b"x" * 65, 0, 1)),
 "count_lies": (0, frame(6, keys(b"a"), 0, 1000)),
 "body_len_lies": (0, frame(6, keys(b"a"), 0, 1)[:16] + struct.pack("<I", 1 << 30) + frame(6, keys(b"a"), 0, 1)[20:]),
}
for name, (payload, data) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<I", payload) + data)
