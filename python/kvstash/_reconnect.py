# SPDX-License-Identifier: Apache-2.0
"""A Client made on demand and remade after the daemon went away, for the
engine adapters.

get() returns the connection, making it if there is none; a failed attempt
makes get() return None without trying again for reconnect_ms, so while
kvstashd is down each adapter call fails at once (a miss for the engine)
instead of waiting on a connect per call. lost() drops a connection that
failed mid-call (KVS_EPEER); the next get() reconnects.

Not thread-safe: the owner serialises its calls (one thread, or its own
lock).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from .client import Client
from .errors import KvsError

log = logging.getLogger("kvstash")


class Connection:
    """A lazily made, remade-when-lost Client; see the module's docstring."""

    def __init__(self, connect: Callable[[], Client],
                 reconnect_ms: int = 1000):
        self._connect = connect
        self._reconnect_s = reconnect_ms / 1000.0
        self._client: Optional[Client] = None
        self._last_fail = -1e9
        self.last_error = ""

    def get(self) -> Optional[Client]:
        """The client, or None while the daemon is unreachable."""
        if self._client is not None and not self._client.closed:
            return self._client
        if time.monotonic() - self._last_fail < self._reconnect_s:
            return None
        try:
            self._client = self._connect()
            return self._client
        except (KvsError, OSError) as e:
            self._last_fail = time.monotonic()
            self.last_error = f"kvstashd unreachable: {e}"
            log.warning("kvstash: %s", self.last_error)
            return None

    def lost(self, why: object = "") -> None:
        """Drops the client after a failure; the next get() reconnects
        (not sooner than reconnect_ms)."""
        if self._client is not None:
            self._client.close()
        self._client = None
        self._last_fail = time.monotonic()
        self.last_error = f"kvstashd went away: {why}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
