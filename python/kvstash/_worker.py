# SPDX-License-Identifier: Apache-2.0
"""A thread that runs blocking libkvstash calls for an engine adapter.

The engines' hooks must not block (vLLM's scheduler, LMCache's submit
calls), while every kvstash.Client call waits for the daemon's reply. So an
adapter hands each call to a Worker: submit() queues a function of the
worker's Client and returns a job id at once; the worker thread runs the
jobs in order and queues (job id, ok, value, error) completions, which the
adapter drains without blocking. With eventfd=True every completion also
writes the worker's eventfd, so a host can poll it (LMCache's event_fd);
drain() reads it back to zero before taking the completions.

kvstashd down: connecting fails with KvsError, the job completes with
ok=False and the error's text; the next connection attempt waits at least
reconnect_ms (jobs in between fail at once, without a round trip), so a
dead daemon costs the engine a miss per job, never a hang. A call that
fails with KVS_EPEER (the daemon went away mid-call) drops the client; the
next job reconnects. Calls time out after the client's timeout_ms.

Ownership and locking: the Client belongs to the worker thread alone (the
C client is not thread-safe). _lock guards the queue, the completions and
the in-flight count; _cv (on _lock) wakes the thread and wait_idle().
"""
from __future__ import annotations

import collections
import errno
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, List, NamedTuple, Optional, Tuple

from ._reconnect import Connection
from .client import Client
from .errors import KvsError, Status

log = logging.getLogger("kvstash")


class Completion(NamedTuple):
    """One finished job."""
    job_id: int
    ok: bool
    value: Any         #: what the job's function returned (None on failure)
    error: str         #: "" on success


class Worker:
    """Runs fn(client) jobs on one thread with one Client of its own.

    Args:
        connect: makes the Client (called on the worker thread).
        name: the thread's name.
        eventfd: signal an eventfd per completion (see fileno()).
        reconnect_ms: least time between two connection attempts.
    """

    def __init__(self, connect: Callable[[], Client], name: str = "kvstash",
                 *, eventfd: bool = False, reconnect_ms: int = 1000):
        self._conn = Connection(connect, reconnect_ms)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._jobs: Deque[Tuple[int, Callable[[Client], Any]]] = \
            collections.deque()
        self._done: List[Completion] = []
        self._inflight = 0
        self._next_id = 1
        self._stop = False
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) \
            if eventfd else -1
        self._thread = threading.Thread(target=self._run, name=name,
                                        daemon=True)
        self._thread.start()

    # ---- the host's side ----------------------------------------------

    def submit(self, fn: Callable[[Client], Any],
               job_id: Optional[int] = None) -> int:
        """Queues fn(client); returns its job id (job_id if given) at once.
        After close() the job completes at once with ok=False."""
        with self._lock:
            if job_id is None:
                job_id = self._next_id
                self._next_id += 1
            if self._stop:
                self._complete(Completion(job_id, False, None,
                                          "the adapter is closed"))
                return job_id
            self._jobs.append((job_id, fn))
            self._inflight += 1
            self._cv.notify_all()
        return job_id

    def drain(self) -> List[Completion]:
        """The completions since the last drain (never blocks)."""
        if self._efd >= 0:
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass
        with self._lock:
            out, self._done = self._done, []
        return out

    def fileno(self) -> int:
        """The eventfd (readable while completions wait), or -1."""
        return self._efd

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return self._inflight

    def wait_idle(self, timeout_s: Optional[float] = None) -> bool:
        """Blocks until no job is queued or running; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while self._inflight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Runs what is queued, stops the thread, closes the client and the
        eventfd. Idempotent."""
        with self._lock:
            if self._stop and not self._thread.is_alive():
                return
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout_s)
        if self._efd >= 0 and not self._thread.is_alive():
            os.close(self._efd)
            self._efd = -1

    # ---- the worker thread --------------------------------------------

    def _complete(self, c: Completion) -> None:
        """Under _lock: queues c and signals the eventfd."""
        self._done.append(c)
        if self._efd >= 0:
            os.eventfd_write(self._efd, 1)

    def _run_one(self, fn: Callable[[Client], Any]) -> Tuple[bool, Any, str]:
        client = self._conn.get()
        if client is None:
            return False, None, self._conn.last_error
        try:
            return True, fn(client), ""
        except KvsError as e:
            if e.status in (Status.EPEER, -errno.ETIMEDOUT):
                self._conn.lost(e)
            return False, None, str(e)
        except Exception as e:  # an adapter's bug must not kill the thread
            log.exception("kvstash: job failed")
            return False, None, f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._stop:
                    self._cv.wait()
                if not self._jobs:
                    break
                job_id, fn = self._jobs.popleft()
            ok, value, err = self._run_one(fn)
            with self._lock:
                self._complete(Completion(job_id, ok, value, err))
                self._inflight -= 1
                self._cv.notify_all()
        self._conn.close()
