"""Every request of the protocol as a sans-IO :class:`Request`: its bytes, and how to turn the
reply frame into a result (raising the typed error for ``-ERR``). Both clients send these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Generic, List, Literal, Optional, Sequence, Tuple, TypeVar, Union

from .errors import ProtocolViolation, SnapshotNotFound, server_error
from .ids import uuid7
from .protocol import Frame, check_word, encode_line, encode_sized
from .records import (
    ALL_STREAMS,
    Aggregate,
    AppendPart,
    AppendResult,
    ExpectedVersion,
    JsonObject,
    JsonValue,
    NewEvent,
    PartResult,
    RecordedEvent,
    Selector,
    Snapshot,
    StartFrom,
    Stats,
    SubscriptionInfo,
    events_from_body,
    loads_object,
)

T = TypeVar("T")

#: How a persistent subscriber gives up on events: deliver again, drop, or park.
NackAction = Literal["retry", "skip", "park"]
#: ACK/NACK items: a position, or an inclusive range (first, last).
PositionItem = Union[int, Tuple[int, int]]
#: Most items in one ACK or NACK line (a larger batch is sent as several lines).
MAX_ACK_ITEMS = 1000


@dataclass(frozen=True)
class Request(Generic[T]):
    """An encoded request and the parser of its reply."""

    data: bytes
    parse: Callable[[Frame], T]
    #: Whether sending it again after a lost connection cannot do harm (it may have been applied).
    retry_safe: bool = True
    #: For ``USE``: the store later requests run in once this one is sent.
    sets_store: Optional[str] = None


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_error(frame: Frame) -> None:
    if frame.name == "-ERR":
        raise server_error(frame.error_code, frame.error_message)


def _expect(frame: Frame, name: str) -> Frame:
    _check_error(frame)
    if frame.name != name:
        raise ProtocolViolation(f"expected {name}, got {frame.line[:120]!r}")
    return frame


def _body(frame: Frame) -> bytes:
    if frame.body is None:
        raise ProtocolViolation(f"{frame.name} without a body")
    return frame.body


def _int_arg(frame: Frame, index: int) -> int:
    try:
        return int(frame.args[index])
    except (IndexError, ValueError) as error:
        raise ProtocolViolation(f"bad {frame.name} reply: {frame.line[:120]!r}") from error


def _flag_arg(frame: Frame, index: int) -> bool:
    flag = frame.args[index] if len(frame.args) > index else ""
    if flag not in ("0", "1"):
        raise ProtocolViolation(f"bad {frame.name} flag: {frame.line[:120]!r}")
    return flag == "1"


def parse_ok(frame: Frame) -> None:
    _expect(frame, "+OK")


def parse_events(frame: Frame) -> List[RecordedEvent]:
    return events_from_body(_body(_expect(frame, "EVENTS")))


def expected_word(expected: ExpectedVersion) -> str:
    if isinstance(expected, bool):
        raise ValueError("expected version must be any, no_stream, exists or a version >= 0")
    if isinstance(expected, int):
        if expected < 0:
            raise ValueError(f"expected version must be >= 0, got {expected}")
        return str(expected)
    if expected in ("any", "no_stream", "exists"):
        return expected
    raise ValueError(f"expected version must be any, no_stream, exists or a version >= 0, got {expected!r}")


def stream_word(stream: str) -> str:
    return check_word(stream, "stream id")


# --- session ---------------------------------------------------------------------------------


def connect(options: JsonObject) -> Request[None]:
    return Request(encode_line(["CONNECT", _compact(options).decode("utf-8")]), parse_ok)


def _parse_pong(frame: Frame) -> None:
    _expect(frame, "PONG")


def ping() -> Request[None]:
    return Request(encode_line(["PING"]), _parse_pong)


def pong() -> bytes:
    return encode_line(["PONG"])


def use(store: str) -> Request[None]:
    return Request(encode_line(["USE", check_word(store, "store name")]), parse_ok, sets_store=store)


def help_text() -> Request[str]:
    return Request(encode_line(["HELP"]), lambda f: _body(_expect(f, "HELP")).decode("utf-8"))


def stats() -> Request[Stats]:
    return Request(
        encode_line(["STATS"]),
        lambda f: Stats.from_json(loads_object(_body(_expect(f, "STATS")), "STATS")),
    )


# --- streams ---------------------------------------------------------------------------------


def _event_object(event: NewEvent) -> Tuple[JsonObject, str]:
    event_id = event.event_id or uuid7()
    obj: JsonObject = {"event_type": event.event_type, "data": event.data}
    if event.metadata is not None:
        obj["metadata"] = event.metadata
    obj["event_id"] = event_id
    if event.tags:
        obj["tags"] = list(event.tags)
    return obj, event_id


def append(stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> Request[AppendResult]:
    if not events:
        raise ValueError("append needs at least one event")
    objects, ids = zip(*(_event_object(event) for event in events))
    payload = _compact(list(objects))
    event_ids = tuple(ids)

    def parse(frame: Frame) -> AppendResult:
        _expect(frame, "APPENDED")
        return AppendResult(frame.args[0], _int_arg(frame, 1), _int_arg(frame, 2), event_ids)

    words = ["APPEND", stream_word(stream), expected_word(expected)]
    return Request(encode_sized(words, payload), parse)


def append_multi(parts: Sequence[AppendPart], condition: Optional[JsonObject]) -> Request[List[PartResult]]:
    """``APPENDMULTI``: every part or none; ``condition`` is the wire's object
    (``{"query": [{"types": [..], "tags": [..], "payload": {..}}], "after": <position>}``)."""
    if not parts:
        raise ValueError("append_multi needs at least one part")
    wire_parts = []
    for part in parts:
        if not part.events:
            raise ValueError(f"part for {part.stream!r} needs at least one event")
        objects = [_event_object(event)[0] for event in part.events]
        wire_parts.append(
            {"stream": stream_word(part.stream), "expected": expected_word(part.expected), "events": objects}
        )
    body: JsonObject = {"parts": wire_parts}
    if condition is not None:
        body["condition"] = condition

    def parse(frame: Frame) -> List[PartResult]:
        results = json.loads(_body(_expect(frame, "APPENDEDMULTI")))
        return [
            PartResult(
                str(r["stream"]),
                int(r["first_version"]),
                int(r["last_version"]),
                int(r["first_position"]),
                int(r["last_position"]),
            )
            for r in results
        ]

    # Every event carries an id, so resending after a lost connection is a retry.
    return Request(encode_sized(["APPENDMULTI"], _compact(body)), parse)


def read_tags(tags: Sequence[str], from_position: int, count: int) -> Request[List[RecordedEvent]]:
    if isinstance(tags, str):
        tags = [tags]
    if not tags:
        raise ValueError("at least one tag is needed")
    for tag in tags:
        check_word(tag, "tag")
        if "," in tag:
            raise ValueError(f"a tag must not contain a comma: {tag!r}")
    words = ["READTAGS", ",".join(tags), _from_word(from_position, "from_position")]
    return Request(encode_line([*words, _count_word(count)]), parse_events)


def _direction(backward: bool) -> str:
    return "backward" if backward else "forward"


def _from_word(start: Union[int, Literal["end"]], what: str) -> str:
    if start == "end":
        return "end"
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"{what} must be a non-negative integer or 'end', got {start!r}")
    return str(start)


def _count_word(count: int) -> str:
    if isinstance(count, bool) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    return str(count)


def read_stream(
    stream: str, from_version: Union[int, Literal["end"]], count: int, backward: bool
) -> Request[List[RecordedEvent]]:
    words = ["READ", stream_word(stream), _from_word(from_version, "from_version"), _count_word(count)]
    return Request(encode_line([*words, _direction(backward)]), parse_events)


def read_all(
    from_position: Union[int, Literal["end"]], count: int, backward: bool
) -> Request[List[RecordedEvent]]:
    words = ["READALL", _from_word(from_position, "from_position"), _count_word(count)]
    return Request(encode_line([*words, _direction(backward)]), parse_events)


def types_word(event_types: Sequence[str]) -> str:
    if isinstance(event_types, str):
        event_types = [event_types]
    if not event_types:
        raise ValueError("at least one event type is needed")
    for event_type in event_types:
        check_word(event_type, "event type")
        if "," in event_type:
            raise ValueError(f"an event type must not contain a comma: {event_type!r}")
    return ",".join(event_types)


def read_types(event_types: Sequence[str], from_position: int, count: int) -> Request[List[RecordedEvent]]:
    words = ["READTYPES", types_word(event_types), _from_word(from_position, "from_position")]
    return Request(encode_line([*words, _count_word(count)]), parse_events)


def version(stream: str) -> Request[int]:
    return Request(
        encode_line(["VERSION", stream_word(stream)]), lambda f: _int_arg(_expect(f, "VERSION"), 1)
    )


def exists(stream: str) -> Request[bool]:
    return Request(
        encode_line(["EXISTS", stream_word(stream)]), lambda f: _flag_arg(_expect(f, "EXISTS"), 1)
    )


def streams(after: Optional[str], count: Optional[int]) -> Request[List[str]]:
    words = ["STREAMS", stream_word(after) if after is not None else "-"]
    if count is not None:
        words.append(_count_word(count))

    def parse(frame: Frame) -> List[str]:
        value = json.loads(_body(_expect(frame, "STREAMS")))
        return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

    return Request(encode_line(words), parse)


def delete(stream: str, expected: ExpectedVersion) -> Request[None]:
    # Deleting again with `any` or `no_stream` is a no-op that succeeds; with a version it fails.
    retry_safe = not isinstance(expected, int)
    words = ["DELETE", stream_word(stream), expected_word(expected)]
    return Request(encode_line(words), parse_ok, retry_safe=retry_safe)


# --- snapshots -------------------------------------------------------------------------------


def snapshot_save(
    stream: str, version: int, data: JsonValue, metadata: Optional[JsonObject], keep: Optional[int]
) -> Request[None]:
    payload: JsonObject = {"data": data}
    if metadata is not None:
        payload["metadata"] = metadata
    if keep is not None:
        payload["keep"] = keep
    words = ["SNAP", "SAVE", stream_word(stream), _count_word(version)]
    return Request(encode_sized(words, _compact(payload)), parse_ok)


def _parse_snapshot(frame: Frame) -> Snapshot:
    return Snapshot.from_json(loads_object(_body(_expect(frame, "SNAPSHOT")), "SNAPSHOT"))


def snapshot_load(stream: str, version: Optional[int]) -> Request[Optional[Snapshot]]:
    words = ["SNAP", "LOAD", stream_word(stream)]
    if version is not None:
        words.append(_count_word(version))

    def parse(frame: Frame) -> Optional[Snapshot]:
        try:
            return _parse_snapshot(frame)
        except SnapshotNotFound:
            return None

    return Request(encode_line(words), parse)


def snapshot_list(stream: str, from_version: int, count: Optional[int]) -> Request[List[Snapshot]]:
    words = ["SNAP", "LIST", stream_word(stream), _count_word(from_version)]
    if count is not None:
        words.append(_count_word(count))

    def parse(frame: Frame) -> List[Snapshot]:
        value = json.loads(_body(_expect(frame, "SNAPSHOTS")))
        items = value if isinstance(value, list) else []
        return [Snapshot.from_json(item) for item in items if isinstance(item, dict)]

    return Request(encode_line(words), parse)


def snapshot_delete(stream: str, version: Optional[int]) -> Request[None]:
    words = ["SNAP", "DELETE", stream_word(stream)]
    if version is not None:
        words.append(_count_word(version))
    return Request(encode_line(words), parse_ok)


def snapshot_exists(stream: str, version: Optional[int]) -> Request[bool]:
    words = ["SNAP", "EXISTS", stream_word(stream)]
    if version is not None:
        words.append(_count_word(version))
    return Request(encode_line(words), lambda f: _flag_arg(_expect(f, "EXISTS"), 1))


def aggregate(stream: str, from_snapshot: bool, order: Literal["foldl", "foldr"], raw: bool) -> Request[Aggregate]:
    if order not in ("foldl", "foldr"):
        raise ValueError(f"order must be foldl or foldr, got {order!r}")
    words = ["AGG", stream_word(stream), order]
    if from_snapshot:
        words.append("from_snapshot")
    if raw:
        words.append("raw")

    def parse(frame: Frame) -> Aggregate:
        _expect(frame, "AGG")
        return Aggregate(frame.args[0], _int_arg(frame, 1), loads_object(_body(frame), "AGG state"))

    return Request(encode_line(words), parse)


# --- subscriptions ---------------------------------------------------------------------------


def subscribe(
    sid: str,
    selector: Selector,
    start: StartFrom,
    name: Optional[str] = None,
    max_in_flight: Optional[int] = None,
    ack_timeout_ms: Optional[int] = None,
    max_retries: Optional[int] = None,
) -> Request[None]:
    if selector.type == "stream" and selector.value != ALL_STREAMS and isinstance(selector.value, str):
        stream_word(selector.value)
    options: JsonObject = selector.to_json()
    if name is not None:
        options["name"] = check_word(name, "subscription name")
    options["start"] = start
    for key, value in (
        ("max_in_flight", max_in_flight),
        ("ack_timeout_ms", ack_timeout_ms),
        ("max_retries", max_retries),
    ):
        if value is not None:
            options[key] = value
    return Request(encode_sized(["SUB", check_word(sid, "sid")], _compact(options)), parse_ok)


def unsubscribe(sid: str) -> Request[None]:
    return Request(encode_line(["UNSUB", check_word(sid, "sid")]), parse_ok)


def position_items(positions: Sequence[PositionItem]) -> List[str]:
    """ACK/NACK items: consecutive positions merged into ranges."""
    singles = sorted({p for p in positions if isinstance(p, int)})
    items: List[str] = []
    run_start: Optional[int] = None
    previous = -2
    for position in singles + [-1]:
        if run_start is not None and position != previous + 1:
            items.append(str(run_start) if run_start == previous else f"{run_start}-{previous}")
            run_start = None
        if position >= 0 and run_start is None:
            run_start = position
        previous = position
    for item in positions:
        if isinstance(item, tuple):
            first, last = item
            items.append(f"{first}-{last}")
    return items


def _chunks(items: List[str]) -> List[str]:
    return [",".join(items[i : i + MAX_ACK_ITEMS]) for i in range(0, len(items), MAX_ACK_ITEMS)]


def ack(sid: str, positions: Sequence[PositionItem]) -> List[Request[None]]:
    return [
        Request(encode_line(["ACK", check_word(sid, "sid"), chunk]), parse_ok)
        for chunk in _chunks(position_items(positions))
    ]


def ack_up_to(sid: str, position: int) -> Request[None]:
    return Request(encode_line(["ACK", check_word(sid, "sid"), f"..{_count_word(position)}"]), parse_ok)


def nack(sid: str, action: NackAction, positions: Sequence[PositionItem]) -> List[Request[None]]:
    if action not in ("retry", "skip", "park"):
        raise ValueError(f"nack action must be retry, skip or park, got {action!r}")
    return [
        Request(encode_line(["NACK", check_word(sid, "sid"), action, chunk]), parse_ok)
        for chunk in _chunks(position_items(positions))
    ]


def psub_list() -> Request[List[SubscriptionInfo]]:
    def parse(frame: Frame) -> List[SubscriptionInfo]:
        value = json.loads(_body(_expect(frame, "SUBS")))
        items = value if isinstance(value, list) else []
        return [SubscriptionInfo.from_json(item) for item in items if isinstance(item, dict)]

    return Request(encode_line(["PSUB", "LIST"]), parse)


def psub_get(name: str) -> Request[SubscriptionInfo]:
    return Request(
        encode_line(["PSUB", "GET", check_word(name, "subscription name")]),
        lambda f: SubscriptionInfo.from_json(loads_object(_body(_expect(f, "SUBINFO")), "SUBINFO")),
    )


def psub_exists(name: str) -> Request[bool]:
    return Request(
        encode_line(["PSUB", "EXISTS", check_word(name, "subscription name")]),
        lambda f: _flag_arg(_expect(f, "SUBEXISTS"), 1),
    )


def psub_delete(name: str, selector_type: Optional[str]) -> Request[None]:
    words = ["PSUB", "DELETE", check_word(name, "subscription name")]
    if selector_type is not None:
        words.append(check_word(selector_type, "selector type"))
    # A retry of a delete that succeeded would answer subscription_not_found.
    return Request(encode_line(words), parse_ok, retry_safe=False)


def psub_parked(name: str, from_position: int, count: Optional[int]) -> Request[List[RecordedEvent]]:
    words = ["PSUB", "PARKED", check_word(name, "subscription name"), _count_word(from_position)]
    if count is not None:
        words.append(_count_word(count))
    return Request(encode_line(words), parse_events)


def psub_replay(name: str) -> Request[None]:
    return Request(encode_line(["PSUB", "REPLAY", check_word(name, "subscription name")]), parse_ok)
