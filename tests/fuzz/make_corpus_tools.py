#!/usr/bin/env python3
# Writes the seed corpora of the fuzz targets for what comes from outside
# the engine and the wire: KV event batches (kvevent; msgpack, encoded here
# by hand since Debian's python3-msgpack is not a dependency), warmup
# manifest lines (manifest), safetensors files (safetensors) and kvstashd
# configuration files (config). Each seed is valid or one step from valid.
#   tests/fuzz/make_corpus_tools.py [tests/fuzz/corpus]
import json, os, struct, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")

def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# --- msgpack, the subset the events use ---
def mp(o):
    if o is None: return b"\xc0"
    if isinstance(o, bool): return b"\xc3" if o else b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128: return bytes([o])
        if -32 <= o < 0: return struct.pack("b", o)
        if o >= 0: return b"\xcf" + struct.pack(">Q", o)
        return b"\xd3" + struct.pack(">q", o)
    if isinstance(o, float): return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, str):
        b = o.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(o, bytes): return b"\xc4" + bytes([len(o)]) + o
    if isinstance(o, list):
        return (bytes([0x90 | len(o)]) if len(o) < 16 else b"\xdc" + struct.pack(">H", len(o))) + b"".join(mp(x) for x in o)
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(mp(k) + mp(v) for k, v in o.items())
    raise TypeError(o)

def stored(hashes, medium="CPU"):
    return {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": None,
            "token_ids": [], "block_size": 16, "lora_id": None, "medium": medium,
            "lora_name": None}
def removed(hashes, medium="CPU"):
    return {"type": "BlockRemoved", "block_hashes": hashes, "medium": medium}
def batch(*evs): return mp({"ts": 1.5, "events": list(evs), "data_parallel_rank": None})

k = [bytes([i]) * 16 for i in range(1, 5)]
put("kvevent", "stored_cpu", batch(stored(k[:3])))
put("kvevent", "stored_storage", batch(stored(k, "STORAGE")))
put("kvevent", "stored_removed", batch(stored(k), removed(k[1:2]), removed(k[2:], "STORAGE")))
put("kvevent", "cleared", batch({"type": "AllBlocksCleared"}, stored(k[:1])))
put("kvevent", "gpu_and_int_hashes", batch(stored([7, -3, k[0]], "GPU"), stored([12345], "CPU")))
put("kvevent", "key_too_long", batch(stored([b"x" * 129, b"", k[0]])))
put("kvevent", "unknown_type", batch({"type": "BlockMoved", "block_hashes": []}))
put("kvevent", "truncated", batch(stored(k))[:-5])
put("kvevent", "trailing", batch(stored(k)) + b"\x00")

# --- manifest lines ---
ns = "model=demo;dtype=bf16;tokens_per_block=4"
put("manifest", "tokens", json.dumps({"namespace": ns, "kv_file": "a.safetensors", "tokens": list(range(12))}))
put("manifest", "tokens_file_txt", json.dumps({"namespace": ns, "kv_file": "/abs/a.safetensors", "tokens_file": "tok.txt", "class": "pinned", "ttl_ms": 1000, "group": 3}))
put("manifest", "tokens_file_json", json.dumps({"namespace": "m", "kv_file": "a", "tokens_file": "tok.json", "tokens_per_block": 2, "layout": "packed", "dtype": "fp16"}))
put("manifest", "blocks", json.dumps({"namespace": ns, "kv_file": "b.safetensors", "layout": "blocks", "keys": ["00" * 16, "ab" * 64], "parents": ["", "00" * 16], "extra_keys": ["lora:a", ""]}))
put("manifest", "keys_layers", json.dumps({"namespace": ns, "kv_file": "c", "keys": ["0123"], "class": "user"}) + "  \r\n")
put("manifest", "bad_hex", json.dumps({"namespace": ns, "kv_file": "c", "layout": "blocks", "keys": ["0g"]}))
put("manifest", "dtype_disagrees", json.dumps({"namespace": ns, "kv_file": "c", "tokens": [1], "dtype": "fp32"}))
put("manifest", "unknown_field", json.dumps({"namespace": ns, "kv_file": "c", "tokens": [1], "colour": 1}))
put("manifest", "two_objects", '{"namespace":"m"} {"kv_file":"x"}')
put("manifest", "unterminated", '{"namespace": "m", "kv_file": "x", "tokens": [1, 2')

# --- safetensors files ---
def st(tensors, meta=None, pad=b"", hdr_len=None):
    hdr, data, off = {}, b"", 0
    if meta is not None: hdr["__metadata__"] = meta
    for name, dtype, shape, blob in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        data += blob; off += len(blob)
    h = json.dumps(hdr).encode() + pad
    return struct.pack("<Q", len(h) if hdr_len is None else hdr_len) + h + data
put("safetensors", "layers", st([("layers.0.k", "BF16", [2, 1, 4], bytes(16)), ("layers.0.v", "BF16", [2, 1, 4], bytes(range(16)))], {"format": "pt"}, b"   "))
put("safetensors", "packed", st([("kv", "F16", [1, 2, 1, 1, 2], bytes(8))]))
put("safetensors", "blocks", st([("block.0", "U8", [2, 3], b"abcdef"), ("block.1", "U8", [2, 0], b"")]))
put("safetensors", "scalar_f64", st([("x", "F64", [], bytes(8))]))
put("safetensors", "header_too_long", st([("x", "U8", [1], b"a")], hdr_len=1 << 40))
put("safetensors", "truncated_data", st([("x", "F32", [4], bytes(16))])[:-4])
put("safetensors", "unknown_dtype", st([("x", "Q4", [1], b"a")]))
put("safetensors", "short", b"\x10\x00\x00")
# Regression: 2^24 x 2^40 one-byte elements wrapped the byte count to 0,
# which empty data_offsets matched (fixed in safetensors.c).
h = json.dumps({"t": {"dtype": "U8", "shape": [1 << 24, 1 << 40], "data_offsets": [0, 0]}}).encode()
put("safetensors", "shape_overflow", struct.pack("<Q", len(h)) + h)

# --- kvstashd configuration files ---
put("config", "packaged", open(os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "kvstashd.ini")).read())
put("config", "tenants", """[daemon]
listen = 127.0.0.1
port = 0
max_conns = 64
[store]
dram_mib = 64
nvme_mib = 0
[tenant.alice]
token = secret-a
namespaces = m1,m2 ; two
[tenant.ops]
token = secret-o
namespaces = *
operator = true
""")
put("config", "cluster", """[daemon]
listen = ::1
[peer]
secret = s3
list = a=127.0.0.1:7371, b=[::1]:7372
[events]
endpoint = tcp://127.0.0.1:5557
replay_endpoint = tcp://127.0.0.1:5558
topic = kv
[cluster]
etcd = http://127.0.0.1:2379
node = n1
prefix = /kvstash/nodes/
ttl_s = 5
[metrics]
listen = 127.0.0.1
""")
put("config", "bad_lines", "[daemon\nport 7370\n  port = 1\n")
put("config", "bad_values", "[store]\ndram_mib = -1\n[daemon]\nport = 70000\nbulk_ep = maybe\n")
put("config", "long_line", "[daemon]\nport_file = " + "x" * 300 + "\n")
put("config", "tenant_dup_token", "[tenant.a]\ntoken = t\n[tenant.b]\ntoken = t\n[tenant.]\ntoken = u\n")
put("config", "peer_malformed", "[peer]\nlist = =1:2,b,c=:5,d=[]:1,e=host\n")
