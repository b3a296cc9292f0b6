# SPDX-License-Identifier: Apache-2.0
"""Value types of include/kvstash/types.h: tiers and retention classes.
Their numbers are part of the wire and disk formats."""
from __future__ import annotations

from enum import IntEnum


class Tier(IntEnum):
    """Where a block lives (enum kvs_tier)."""
    NONE = 0  #: not present
    DRAM = 1  #: in DRAM (maybe also on NVMe)
    NVME = 2  #: on NVMe only


class Class(IntEnum):
    """Retention class of a block (enum kvs_class)."""
    SCRATCH = 0  #: ordinary prefix cache: evicted first
    USER = 1     #: conversation memory: kept until its TTL
    PINNED = 2   #: system prompts: never evicted
