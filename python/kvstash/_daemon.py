# SPDX-License-Identifier: Apache-2.0
"""A kvstashd of one's own on 127.0.0.1, for the tests and the benchmark.

Started as tests/e2e/e2e.c starts it: an ephemeral port written to a port
file, a data directory of its own, its output in <dir>/kvstashd.log, small
sizes unless told otherwise. stop() is SIGTERM and waits for the orderly
shutdown (every block flushed to disk), so a restarted daemon on the same
directory serves the blocks from NVMe. A daemon still running when the
object is collected, or the interpreter exits, is killed.

The binary is, in order: the environment variable KVSTASHD, the source
tree's build/tools/kvstashd, kvstashd on PATH.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import List, Optional, Sequence

_running: "weakref.WeakSet[Daemon]" = weakref.WeakSet()


def _kill_all() -> None:
    for d in list(_running):
        d.kill()


atexit.register(_kill_all)


def repo_root() -> Optional[Path]:
    """The source tree this package sits in, or None when installed."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "include" / "kvstash" / "kvstash.h").is_file():
        return root
    return None


def find_daemon() -> Optional[str]:
    """The kvstashd binary to start, or None when there is none."""
    env = os.environ.get("KVSTASHD")
    if env:
        return env
    root = repo_root()
    if root is not None and (root / "build" / "tools" / "kvstashd").is_file():
        return str(root / "build" / "tools" / "kvstashd")
    return shutil.which("kvstashd")


def default_dir(name: str) -> Path:
    """A data directory for a test or benchmark called name: under
    KVS_TEST_DIR (what CTest sets: <build>/testdata), else ./var."""
    base = os.environ.get("KVS_TEST_DIR")
    root = Path(base) if base else Path("var") / "python"
    return root / name


class Daemon:
    """One kvstashd process on 127.0.0.1 and its data directory.

    Args:
        directory: where its data, port file and log go (made if absent;
            data survives stop() and start(), wiped by wipe()).
        dram_mib, nvme_mib: its tiers' sizes.
        extra: more flags, e.g. ["--set=store.max_blocks=4096"].
        binary: the kvstashd to run (default: find_daemon()).
    """

    def __init__(self, directory: Path, *, dram_mib: int = 64,
                 nvme_mib: int = 128, extra: Sequence[str] = (),
                 binary: Optional[str] = None):
        b = binary or find_daemon()
        if not b:
            raise FileNotFoundError("no kvstashd: build it (make build) or "
                                    "set KVSTASHD to its path")
        self.binary = b
        self.dir = Path(directory)
        self.dram_mib = dram_mib
        self.nvme_mib = nvme_mib
        self.extra: List[str] = list(extra)
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    @property
    def log(self) -> Path:
        return self.dir / "kvstashd.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the daemon's log, for an error message."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError as e:
            return f"(log unreadable: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def wipe(self) -> None:
        """Removes the data directory's contents (daemon stopped)."""
        if self.proc is not None:
            raise RuntimeError("stop the daemon before wiping its data")
        shutil.rmtree(self.dir / "data", ignore_errors=True)

    def start(self, timeout_s: float = 30.0) -> int:
        """Starts the daemon; returns its port once it listens."""
        if self.proc is not None:
            raise RuntimeError("already running")
        self.dir.mkdir(parents=True, exist_ok=True)
        port_file = self.dir / "port"
        if port_file.exists():
            port_file.unlink()
        argv = [self.binary, "--port=0", "--port-file", str(port_file),
                "--dir", str(self.dir / "data"),
                f"--dram-mib={self.dram_mib}", f"--nvme-mib={self.nvme_mib}",
                "--set=store.region_mib=8", "--set=store.max_block_mib=4",
                "--set=daemon.busy_poll_us=0", *self.extra]
        with open(self.log, "a") as log:
            log.write(f"# {' '.join(argv)}\n")
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        _running.add(self)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port_file.exists():
                text = port_file.read_text().strip()
                if text.isdigit() and int(text) > 0:
                    self.port = int(text)
                    return self.port
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"kvstashd exited ({code}) at start; "
                                   f"{self.log} ends:\n{self.log_tail()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"kvstashd did not listen within {timeout_s} s; "
                           f"{self.log} ends:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM and wait: connections closed, blocks flushed to disk,
        store closed. Raises when it does not exit 0."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"kvstashd did not stop in {timeout_s} s; "
                               f"see {self.log}")
        self.proc = None
        _running.discard(self)
        if code != 0:
            raise RuntimeError(f"kvstashd did not stop cleanly ({code}); see "
                               f"{self.log}")

    def restart(self) -> int:
        """stop() then start(): the store reopens from its disk."""
        self.stop()
        return self.start()

    def kill(self) -> None:
        """SIGKILL, for cleanup after a failure."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        _running.discard(self)

    def __enter__(self) -> "Daemon":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.stop()
        else:
            self.kill()

    def __del__(self) -> None:
        self.kill()
