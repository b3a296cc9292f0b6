# SPDX-License-Identifier: Apache-2.0
"""kvstash's error space in Python: one exception type carrying the status
code and kvs_strerror()'s text.

A status is an int: 0 is success, -1..-4095 are negative errno values
(-EINVAL, -ENOMEM ...), and values at or below KVS_EBASE (-5000) are
kvstash's own (include/kvstash/status.h). The same int travels in the wire
reply, so the exception names exactly what the daemon saw.
"""
from __future__ import annotations

import errno as _errno
from enum import IntEnum
from typing import Optional, Sequence

from . import _lib

EBASE = -5000


class Status(IntEnum):
    """kvstash's own codes (enum kvs_status)."""
    OK = 0
    ENOTFOUND = EBASE - 1
    ECORRUPT = EBASE - 2
    EFULL = EBASE - 3
    EPROTO = EBASE - 4
    EPROTO_VERSION = EBASE - 5
    EAUTH = EBASE - 6
    EPINNED_FULL = EBASE - 7
    ETOOBIG = EBASE - 8
    EURING = EBASE - 9
    EINDEX = EBASE - 10
    ECODEC = EBASE - 11
    EPEER = EBASE - 12
    ECONFIG = EBASE - 13
    EBUSY = EBASE - 14
    ELAYOUT = EBASE - 15
    EINCOMPLETE = EBASE - 16
    EEXPIRED = EBASE - 17
    ETOOSMALL = EBASE - 18


def strerror(status: int) -> str:
    """kvs_strerror(status): the library's text for any status value."""
    return _lib.lib().kvs_strerror(int(status)).decode("utf-8", "replace")


def status_name(status: int) -> str:
    """A symbolic name: KVS_ENOTFOUND, ENOBUFS, ... or the number."""
    try:
        return "KVS_" + Status(status).name
    except ValueError:
        pass
    if -4095 <= status < 0 and -status in _errno.errorcode:
        return _errno.errorcode[-status]
    return str(status)


class KvsError(Exception):
    """A libkvstash call failed.

    Attributes:
        status: the negative status code the library returned.
        message: kvs_strerror(status).
        op: the call that failed ("put", "get", ...).
        statuses: for batch calls, each item's status (else None).
    """

    def __init__(self, status: int, op: str = "",
                 statuses: Optional[Sequence[int]] = None):
        self.status = int(status)
        self.message = strerror(self.status)
        self.op = op
        self.statuses = list(statuses) if statuses is not None else None
        where = f"{op}: " if op else ""
        super().__init__(f"{where}{self.message} "
                         f"({status_name(self.status)}, {self.status})")


class NotFoundError(KvsError, KeyError):
    """KVS_ENOTFOUND: no such block (or not visible yet)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


def error(status: int, op: str = "",
          statuses: Optional[Sequence[int]] = None) -> KvsError:
    """The exception for status: NotFoundError for KVS_ENOTFOUND."""
    cls = NotFoundError if status == Status.ENOTFOUND else KvsError
    return cls(status, op, statuses)


def check(status: int, op: str) -> int:
    """Raises error(status, op) when status is negative, else returns it."""
    if status < 0:
        raise error(status, op)
    return status
