"""Event ids the client assigns: UUID v7 (time-ordered), as the server assigns them."""

from __future__ import annotations

import os
import time
import uuid

_UNIX_MS_BITS = 48


def uuid7() -> str:
    """A UUID v7 (RFC 9562): 48 bits of Unix milliseconds, then random bits."""
    unix_ms = time.time_ns() // 1_000_000 & ((1 << _UNIX_MS_BITS) - 1)
    random_bits = int.from_bytes(os.urandom(10), "big")
    rand_a = random_bits >> 68  # 12 bits
    rand_b = random_bits & ((1 << 62) - 1)
    value = unix_ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))
