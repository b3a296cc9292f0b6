# SPDX-License-Identifier: Apache-2.0
"""Engine keys as kvstash keys (1 to 64 bytes).

The engines name blocks with strings that can be longer than kvstash's 64
bytes: LMCache's "<model>@<rank>@<group>@<chunk hash hex>[@salt]", SGLang's
64-hex-digit page hashes with a rank suffix. A key of at most 64 bytes is
used as it is; a longer one becomes "#" and the first 32 bytes of its
SHA-256 (33 bytes), so it stays one-to-one in practice and the same in
every process.
"""
from __future__ import annotations

import hashlib
from typing import Union

from ._lib import KEY_MAX


def store_key(key: Union[str, bytes]) -> bytes:
    """The kvstash key for an engine's key."""
    b = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if 0 < len(b) <= KEY_MAX:
        return b
    return b"#" + hashlib.sha256(b).digest()
