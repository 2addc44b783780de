"""Bounded waiting for state the server saves asynchronously (checkpoints every 100 ms)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

#: Longest a test waits for an eventually-true condition.
EVENTUALLY_TIMEOUT_S = 15.0


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], what: str) -> T:
    """Calls ``probe`` until ``accept`` holds for its value; fails after the timeout."""
    deadline = time.monotonic() + EVENTUALLY_TIMEOUT_S
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {EVENTUALLY_TIMEOUT_S} s")
        time.sleep(0.05)
