# SPDX-License-Identifier: Apache-2.0
"""Real processes for the cluster tests: an etcd server on 127.0.0.1 with
free ports and its data under the test directory, kvstashd daemons with
events and membership, and a KV event consumer that keeps the index a
router keeps (per node: block hash -> media), decoding vLLM's wire format
with msgpack as vLLM's own consumers do, and checking every field."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from base64 import b64decode, b64encode
from pathlib import Path

import msgpack
import zmq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

KVSTASHD = os.environ.get("KVSTASHD", str(ROOT / "build/tools/kvstashd"))
TEST_DIR = Path(os.environ.get("KVS_TEST_DIR", ROOT / "var/testdata"))

# vLLM's field order of each event (vllm/distributed/kv_events.py), the
# fields without a default always present, those with one omitted when
# they equal it (omit_defaults=True); "type" is msgspec's tag field.
STORED_FIELDS = ["type", "block_hashes", "parent_block_hash", "token_ids",
                 "block_size", "lora_id", "medium", "lora_name"]
REMOVED_FIELDS = ["type", "block_hashes", "medium"]
CLEARED_FIELDS = ["type"]
BATCH_FIELDS = ["ts", "events", "data_parallel_rank"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Etcd:
    """etcd (Debian's etcd-server) on two free loopback ports."""

    def __init__(self, name):
        self.dir = TEST_DIR / "cluster" / name / "etcd"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.client = free_port()
        self.peer = free_port()
        self.proc = None
        self.url = f"http://127.0.0.1:{self.client}"

    def start(self):
        bin_ = shutil.which("etcd") or "/usr/bin/etcd"
        peer = f"http://127.0.0.1:{self.peer}"
        self.log = open(self.dir.parent / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [bin_, "--name", "t", "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.healthy, 20, "etcd to answer")

    def healthy(self):
        try:
            self.post("/v3/kv/range", {"key": b64encode(b"x").decode()})
            return True
        except OSError:
            return False

    def post(self, path, body):
        req = urllib.request.Request(self.url + path,
                                     json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.loads(r.read())

    def records(self, prefix):
        p = prefix.encode()
        end = p[:-1] + bytes([p[-1] + 1])
        ans = self.post("/v3/kv/range", {"key": b64encode(p).decode(),
                                         "range_end": b64encode(end).decode()})
        return {b64decode(kv["key"]).decode(): json.loads(b64decode(kv["value"]))
                for kv in ans.get("kvs", [])}

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


class Daemon:
    """One kvstashd with events (PUB and replay) and, with etcd, a record."""

    def __init__(self, name, node, etcd=None, prefix="/kvstash/nodes/",
                 extra=()):
        self.dir = TEST_DIR / "cluster" / name / node
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.node = node
        self.events = f"tcp://127.0.0.1:{free_port()}"
        self.replay = f"tcp://127.0.0.1:{free_port()}"
        self.etcd = etcd
        self.prefix = prefix
        self.extra = list(extra)
        self.proc = None
        self.port = None

    def start(self):
        pf = self.dir / "port"
        if pf.exists():
            pf.unlink()
        args = [KVSTASHD, "-d", str(self.dir / "data"), "-p", "0",
                "--port-file", str(pf),
                "--set", f"events.endpoint={self.events}",
                "--set", f"events.replay_endpoint={self.replay}",
                "--set", "store.dram_mib=64", "--set", "store.nvme_mib=256",
                "--set", "store.region_mib=16", "--set", "store.max_block_mib=4"]
        if self.etcd:
            args += ["--set", f"cluster.etcd={self.etcd.url}",
                     "--set", f"cluster.prefix={self.prefix}",
                     "--set", f"cluster.node={self.node}",
                     "--set", "cluster.ttl_s=2"]
        for e in self.extra:
            args += ["--set", e]
        self.log = open(self.dir / "kvstashd.log", "ab")
        # Under ASan the daemon is instrumented itself: it needs no preload,
        # and it checks for leaks at a clean stop (stop() reads the log).
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
        env.pop("LD_PRELOAD", None)
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.node} exited: "
                                     f"{self.log_text()[-2000:]}")
            return pf.exists() and pf.read_text().strip()
        wait_for(up, 30, f"{self.node} to listen")
        self.port = int(pf.read_text())

    def client(self):
        from kvstash.client import Client
        return Client("127.0.0.1", self.port, namespace="default")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(30)
            self.proc = None
            log = self.log_text()
            assert "Sanitizer" not in log, log[-3000:]
            assert rc == 0, f"{self.node} exited {rc}: {log[-2000:]}"
        self.proc = None

    def log_text(self):
        return (self.dir / "kvstashd.log").read_text(errors="replace")

    def remove_data(self):
        """Drops the data directory (its NVMe file is preallocated); the
        log stays for a look after a failure."""
        shutil.rmtree(self.dir / "data", ignore_errors=True)


def check_event(ev):
    """Asserts that ev is one of vLLM's three events, field for field."""
    t = ev.get("type")
    want = {"BlockStored": STORED_FIELDS, "BlockRemoved": REMOVED_FIELDS,
            "AllBlocksCleared": CLEARED_FIELDS}.get(t)
    assert want is not None, f"unknown event type {t!r}"
    assert list(ev) == want, f"{t}: fields {list(ev)}, want {want}"
    if t == "AllBlocksCleared":
        return
    assert isinstance(ev["block_hashes"], list) and ev["block_hashes"]
    assert all(isinstance(h, bytes) for h in ev["block_hashes"])
    assert ev["medium"] in ("CPU", "STORAGE")
    if t == "BlockStored":
        assert ev["parent_block_hash"] is None or \
            isinstance(ev["parent_block_hash"], bytes)
        assert ev["token_ids"] == [] and isinstance(ev["block_size"], int)
        assert ev["lora_id"] is None and ev["lora_name"] is None


def decode_batch(payload):
    """Decodes one payload as vLLM's consumers do (msgpack, then the
    KVEventBatch fields), and checks that re-encoding gives the same bytes:
    the publisher used msgpack's shortest forms, as msgspec does."""
    b = msgpack.unpackb(payload, raw=False)
    assert list(b) == BATCH_FIELDS, f"batch fields {list(b)}"
    assert isinstance(b["ts"], float) and isinstance(b["data_parallel_rank"],
                                                     int)
    for ev in b["events"]:
        check_event(ev)
    assert msgpack.packb(b, use_bin_type=True) == payload
    return b


class Consumer:
    """Subscribes to daemons' events and keeps per node {hash: media}."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.nodes = {}

    def follow(self, node, events, replay):
        """(Re)subscribes to node: subscribe first, then replay from 0 so
        that nothing published between the two is missed (duplicates are
        dropped by sequence number)."""
        old = self.nodes.get(node)
        if old:
            old["sub"].close(0)
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(events)
        st = {"sub": sub, "next": 0, "index": {}, "batches": 0}
        self.nodes[node] = st
        time.sleep(0.2)  # the SUB connection is set up asynchronously
        req = self.ctx.socket(zmq.DEALER)
        req.setsockopt(zmq.RCVTIMEO, 5000)
        req.connect(replay)
        req.send_multipart([b"", (0).to_bytes(8, "big")])
        while True:
            f = req.recv_multipart()
            assert len(f) == 3 and f[0] == b"", f"replay frames {len(f)}"
            seq = int.from_bytes(f[1], "big", signed=True)
            if seq == -1:
                assert f[2] == b""
                break
            self._apply(st, seq, f[2])
        req.close(0)
        self.poll()

    def _apply(self, st, seq, payload):
        if seq < st["next"]:
            return  # seen in the replay already
        assert seq == st["next"], f"gap: sequence {seq}, want {st['next']}"
        st["next"] = seq + 1
        st["batches"] += 1
        idx = st["index"]
        for ev in decode_batch(payload)["events"]:
            if ev["type"] == "AllBlocksCleared":
                idx.clear()
            elif ev["type"] == "BlockStored":
                for h in ev["block_hashes"]:
                    idx.setdefault(h, set()).add(ev["medium"])
            else:
                for h in ev["block_hashes"]:
                    m = idx.get(h, set())
                    m.discard(ev["medium"])
                    if not m:
                        idx.pop(h, None)

    def poll(self, settle=0.3):
        """Applies whatever arrived until nothing came for settle s."""
        last = time.monotonic()
        while time.monotonic() - last < settle:
            got = False
            for st in self.nodes.values():
                while st["sub"].poll(0):
                    topic, seqb, payload = st["sub"].recv_multipart()
                    assert topic == b"" and len(seqb) == 8
                    self._apply(st, int.from_bytes(seqb, "big"), payload)
                    got = True
            if got:
                last = time.monotonic()
            else:
                time.sleep(0.02)

    def index(self, node):
        return self.nodes[node]["index"]
