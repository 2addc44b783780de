"""Where the next page of a read starts (shared by both clients' iterators)."""

from __future__ import annotations

from typing import List, Optional

from .records import RecordedEvent


def next_version(page: List[RecordedEvent], backward: bool) -> Optional[int]:
    """After a ``READ`` page: the next ``from_version``, or ``None`` when the stream is done.
    An empty page means there is nothing more in that direction."""
    if not page:
        return None
    last = page[-1].version
    if backward:
        return last - 1 if last > 0 else None
    return last + 1


def next_position(page: List[RecordedEvent], backward: bool) -> Optional[int]:
    """After a ``READALL``/``READTYPES``/``PSUB PARKED`` page: the next position, or ``None``."""
    if not page:
        return None
    last = page[-1].position
    if backward:
        return last - 1 if last > 0 else None
    return last + 1


def page_count(requested: int, max_read_count: int) -> int:
    """Pages larger than the server's ``max_read_count`` are clamped by it anyway."""
    if requested < 1:
        raise ValueError(f"page size must be at least 1, got {requested}")
    return min(requested, max_read_count)
