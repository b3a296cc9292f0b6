# SPDX-License-Identifier: Apache-2.0
"""Freezing a daemon for the adapters' harnesses (test code): SIGSTOP, and
wait until every thread of it has stopped, so that no reply can leave it
after freeze() returns."""
import os
import signal
import time


def _stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return True
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state not in ("T", "t"):
            return False
    return True


def freeze(daemon, timeout_s: float = 10.0) -> None:
    """SIGSTOPs daemon's process and waits until all its threads stopped."""
    daemon.proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + timeout_s
    while not _stopped(daemon.proc.pid):
        assert time.monotonic() < deadline, "the daemon did not stop"
        time.sleep(0.001)


def thaw(daemon) -> None:
    daemon.proc.send_signal(signal.SIGCONT)
