"""The aggregator fold of PROTOCOL.md ("Aggregation"), the same as the server's ``AGG``, for
events an application read itself.

Each event's ``data`` (skipped unless it is a JSON object) is applied field by field:
``{"$sum": n}`` adds ``n`` to the field, ``{"$overwrite": v}`` sets it to ``v``, any other value
replaces it. :func:`finalize` unwraps the top-level tagged values. Numbers follow the server:
integers add exactly while the sum fits in 64 bits (signed or unsigned), else as doubles, and a
sum too large for a double becomes ``None`` (JSON ``null``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Union

from .records import JsonObject, JsonValue, RecordedEvent, Snapshot

#: The key of a summing tagged value: ``{"$sum": n}``.
SUM_TAG = "$sum"
#: The key of an overwriting tagged value: ``{"$overwrite": v}``.
OVERWRITE_TAG = "$overwrite"

FoldOrder = Literal["foldl", "foldr"]

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1

#: What a fold takes: recorded events (their ``data`` is folded) or ``data`` values themselves.
Foldable = Union[RecordedEvent, JsonValue]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tag(value: Any) -> Optional[str]:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in (SUM_TAG, OVERWRITE_TAG):
            return str(key)
    return None


def _sum_operand(value: Any) -> Optional[Union[int, float]]:
    """The number a ``$sum`` adds to: a plain number, or the number inside a previous sum."""
    if _is_number(value):
        return value  # type: ignore[no-any-return]
    if _tag(value) == SUM_TAG and _is_number(value[SUM_TAG]):
        return value[SUM_TAG]  # type: ignore[no-any-return]
    return None


def _as_integer(value: Union[int, float]) -> Optional[int]:
    # The server holds integers beyond 64 bits as doubles, so they do not add exactly there.
    if isinstance(value, int) and _I64_MIN <= value <= _U64_MAX:
        return value
    return None


def _as_float(value: Union[int, float]) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _add(current: Optional[Union[int, float]], n: Union[int, float]) -> JsonValue:
    if current is None:
        return n if isinstance(n, float) or _as_integer(n) is not None else _as_float(n)
    a, b = _as_integer(current), _as_integer(n)
    if a is not None and b is not None and _I64_MIN <= a + b <= _U64_MAX:
        return a + b
    total = _as_float(current) + _as_float(n)
    return None if math.isinf(total) or math.isnan(total) else total


def initial_state(snapshot_data: Optional[JsonValue] = None) -> JsonObject:
    """The state a fold starts from: a snapshot's ``data`` when it is an object, else ``{}``."""
    return dict(snapshot_data) if isinstance(snapshot_data, dict) else {}


def apply_data(state: JsonObject, data: JsonValue) -> None:
    """Applies one event's ``data`` to ``state`` in place (skipped unless it is an object)."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        tag = _tag(value)
        if tag == SUM_TAG and _is_number(value[SUM_TAG]):
            state[key] = {SUM_TAG: _add(_sum_operand(state.get(key)), value[SUM_TAG])}
        elif tag == OVERWRITE_TAG:
            state[key] = value[OVERWRITE_TAG]
        else:
            # `{"$sum": <not a number>}` and every plain value replace the field.
            state[key] = value


def _data(item: Foldable) -> JsonValue:
    return item.data if isinstance(item, RecordedEvent) else item


def foldl(events: Iterable[Foldable], state: Optional[Mapping[str, Any]] = None) -> JsonObject:
    """Folds oldest to newest (newer events win), starting from a copy of ``state``."""
    result: JsonObject = dict(state) if state is not None else {}
    for item in events:
        apply_data(result, _data(item))
    return result


def foldr(events: Iterable[Foldable], state: Optional[Mapping[str, Any]] = None) -> JsonObject:
    """Folds newest to oldest (older events win); ``events`` are given oldest first."""
    return foldl(list(events)[::-1], state)


def fold(order: FoldOrder, events: Iterable[Foldable], state: Optional[Mapping[str, Any]] = None) -> JsonObject:
    """Folds in the given order (``"foldl"`` or ``"foldr"``)."""
    if order == "foldl":
        return foldl(events, state)
    if order == "foldr":
        return foldr(events, state)
    raise ValueError(f"order must be foldl or foldr, got {order!r}")


def finalize(state: Mapping[str, Any]) -> JsonObject:
    """Replaces each top-level tagged value by the value inside it."""
    result: Dict[str, Any] = {}
    for key, value in state.items():
        tag = _tag(value)
        result[key] = value[tag] if tag is not None else value
    return result


def aggregate_events(
    events: Iterable[Foldable],
    snapshot: Optional[Snapshot] = None,
    order: FoldOrder = "foldl",
    raw: bool = False,
) -> JsonObject:
    """What ``AGG`` answers for these events: folded from the snapshot's ``data`` (the events
    given must then be those after it), finalized unless ``raw``."""
    events_list: List[Foldable] = list(events)
    state = fold(order, events_list, initial_state(snapshot.data if snapshot else None))
    return state if raw else finalize(state)
