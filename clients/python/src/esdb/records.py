"""What the client sends and receives, as typed records.

Parsing is tolerant: fields the server adds later are ignored (kept in ``raw`` where a record
has one), so a newer server works with this client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Union

#: A JSON value as :func:`json.loads` returns it.
JsonValue = Any
#: A JSON object.
JsonObject = Dict[str, Any]

#: ``expected`` of an append or delete: one of the names, or a version ``n >= 0``.
ExpectedVersion = Union[int, Literal["any", "no_stream", "exists"]]
#: The append succeeds whatever the stream's version.
ANY: Literal["any"] = "any"
#: The append succeeds only if the stream has no visible events.
NO_STREAM: Literal["no_stream"] = "no_stream"
#: The append succeeds only if the stream has visible events.
STREAM_EXISTS: Literal["exists"] = "exists"

#: Where a subscription starts: the first event, only new events, or a position in ``$all``.
StartFrom = Union[int, Literal["origin", "end"]]
ORIGIN: Literal["origin"] = "origin"
END: Literal["end"] = "end"

#: The four subscription selector types.
SelectorType = Literal["stream", "event_type", "event_pattern", "event_payload"]
#: The stream id that selects every stream.
ALL_STREAMS = "$all"


def _int(obj: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = obj.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(obj: Mapping[str, Any], key: str, default: str = "") -> str:
    value = obj.get(key, default)
    return value if isinstance(value, str) else default


def _optional_int(obj: Mapping[str, Any], key: str) -> Optional[int]:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(obj: Mapping[str, Any], key: str) -> JsonObject:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def loads_object(body: bytes, what: str) -> JsonObject:
    """Parses a reply body that must be a JSON object."""
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True)
class NewEvent:
    """An event to append. Without an ``event_id`` the client assigns one (a UUID v7), so that
    retrying the append after a lost connection is recognised by the server and not doubled."""

    event_type: str
    data: JsonValue
    metadata: Optional[JsonObject] = None
    event_id: Optional[str] = None
    #: Tags, indexed by the server for ``READTAGS`` and append conditions (at most 16).
    tags: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the store returns it."""

    event_id: str
    event_type: str
    stream_id: str
    version: int
    position: int
    epoch_us: int
    data: JsonValue
    metadata: JsonObject
    #: Only in :meth:`~esdb.Client.parked_events`: why the server parked the event when it was
    #: not for failed deliveries (``"unreadable: …"``: its record breaks the JSON rules, so it
    #: is shown as stored), else ``None``.
    parked_reason: Optional[str] = None
    #: The event's tags, ``()`` when it has none.
    tags: Tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "RecordedEvent":
        reason = obj.get("parked_reason")
        tags = obj.get("tags")
        return cls(
            event_id=_str(obj, "event_id"),
            event_type=_str(obj, "event_type"),
            stream_id=_str(obj, "stream_id"),
            version=_int(obj, "version"),
            position=_int(obj, "position"),
            epoch_us=_int(obj, "epoch_us"),
            data=obj.get("data"),
            metadata=_object(obj, "metadata"),
            parked_reason=reason if isinstance(reason, str) else None,
            tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        )


@dataclass(frozen=True)
class AppendPart:
    """One stream's share of an ``APPENDMULTI``."""

    stream: str
    events: Tuple[NewEvent, ...]
    expected: ExpectedVersion = ANY


@dataclass(frozen=True)
class PartResult:
    """Where one part of an ``APPENDMULTI`` went."""

    stream: str
    first_version: int
    last_version: int
    first_position: int
    last_position: int


@dataclass(frozen=True)
class AppendResult:
    """``APPENDED``: where the last event of the append landed."""

    stream: str
    last_version: int
    last_position: int
    #: The ids of the appended events, in order (given or assigned by the client).
    event_ids: Tuple[str, ...] = ()

    @property
    def first_version(self) -> int:
        return self.last_version - max(len(self.event_ids), 1) + 1


@dataclass(frozen=True)
class Snapshot:
    """A saved state of a stream at a version."""

    stream_id: str
    version: int
    data: JsonValue
    metadata: JsonObject
    epoch_us: int

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Snapshot":
        return cls(
            stream_id=_str(obj, "stream_id"),
            version=_int(obj, "version"),
            data=obj.get("data"),
            metadata=_object(obj, "metadata"),
            epoch_us=_int(obj, "epoch_us"),
        )


@dataclass(frozen=True)
class Aggregate:
    """``AGG``: a stream's folded state and the version it reflects."""

    stream: str
    version: int
    state: JsonObject


@dataclass(frozen=True)
class RaftStatus:
    """A store's Raft group as one node sees it (``raft`` in ``INFO`` and ``STATS``). Every
    write goes through this log before it is applied; a single server is a one-member group."""

    node_id: int
    #: ``leader``, ``follower``, ``candidate`` or ``learner`` (kept as sent, whatever it is).
    state: str
    term: int
    #: The node leading the group now, ``None`` during an election.
    leader_id: Optional[int]
    last_log_index: int
    #: The last entry applied to the store: reads see everything up to it.
    applied_index: int
    #: The last entry the store has durably checkpointed, ``None`` before the first.
    checkpoint_index: Optional[int]
    raw: JsonObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "RaftStatus":
        return cls(
            node_id=_int(obj, "node_id"),
            state=_str(obj, "state"),
            term=_int(obj, "term"),
            leader_id=_optional_int(obj, "leader_id"),
            last_log_index=_int(obj, "last_log_index"),
            applied_index=_int(obj, "applied_index"),
            checkpoint_index=_optional_int(obj, "checkpoint_index"),
            raw=dict(obj),
        )


def _raft_by_store(value: Any) -> Dict[str, RaftStatus]:
    if not isinstance(value, dict):
        return {}
    return {
        name: RaftStatus.from_json(status)
        for name, status in value.items()
        if isinstance(status, dict)
    }


@dataclass(frozen=True)
class ServerInfo:
    """The server's ``INFO`` greeting. Unknown fields are kept in ``raw``."""

    server_id: str
    server_name: str
    version: str
    proto: int
    max_payload: int
    max_control_line: int
    max_events_per_append: int
    max_read_count: int
    stores: Tuple[str, ...]
    store: str
    auth_required: bool
    ping_interval_ms: int
    #: Each store's Raft group when the connection opened (empty from a server without it).
    raft: Dict[str, RaftStatus] = field(default_factory=dict)
    #: A cluster node's ``cluster.client_urls``: every member's client address, by node id
    #: (empty from a single node). The clients fail over to them.
    client_urls: Tuple[str, ...] = ()
    raw: JsonObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "ServerInfo":
        stores = obj.get("stores")
        store_names = tuple(s for s in stores if isinstance(s, str)) if isinstance(stores, list) else ()
        return cls(
            server_id=_str(obj, "server_id"),
            server_name=_str(obj, "server_name"),
            version=_str(obj, "version"),
            proto=_int(obj, "proto"),
            max_payload=_int(obj, "max_payload", 1024 * 1024),
            max_control_line=_int(obj, "max_control_line", 4096),
            max_events_per_append=_int(obj, "max_events_per_append", 10_000),
            max_read_count=_int(obj, "max_read_count", 10_000),
            stores=store_names,
            store=_str(obj, "store", store_names[0] if store_names else "default"),
            auth_required=obj.get("auth_required") is True,
            ping_interval_ms=_int(obj, "ping_interval_ms", 120_000),
            raft=_raft_by_store(obj.get("raft")),
            client_urls=_client_urls(obj.get("cluster")),
            raw=dict(obj),
        )


def _client_urls(cluster: Any) -> Tuple[str, ...]:
    """``cluster.client_urls`` (``{"<node id>": "host:port"}``) in node-id order."""
    if not isinstance(cluster, dict):
        return ()
    urls = cluster.get("client_urls")
    if not isinstance(urls, dict):
        return ()

    def node_order(item: Tuple[Any, Any]) -> Tuple[int, str]:
        key = str(item[0])
        return (int(key), key) if key.isdigit() else (1 << 64, key)

    return tuple(url for _, url in sorted(urls.items(), key=node_order) if isinstance(url, str))


@dataclass(frozen=True)
class StoreStats:
    """One store's counts in ``STATS``."""

    events: int
    last_position: int
    streams: int
    subscriptions: int
    #: The store's Raft group as this node sees it (``None`` from a server without it).
    raft: Optional[RaftStatus] = None
    raw: JsonObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "StoreStats":
        raft = obj.get("raft")
        return cls(
            events=_int(obj, "events"),
            last_position=_int(obj, "last_position", -1),
            streams=_int(obj, "streams"),
            subscriptions=_int(obj, "subscriptions"),
            raft=RaftStatus.from_json(raft) if isinstance(raft, dict) else None,
            raw=dict(obj),
        )


@dataclass(frozen=True)
class Stats:
    """``STATS``: counts per store."""

    stores: Dict[str, StoreStats]
    raw: JsonObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Stats":
        stores = _object(obj, "stores")
        return cls(
            stores={
                name: StoreStats.from_json(value)
                for name, value in stores.items()
                if isinstance(value, dict)
            },
            raw=dict(obj),
        )


@dataclass(frozen=True)
class Selector:
    """What a subscription matches. Build one with the class methods."""

    type: SelectorType
    #: A string, or a JSON object for ``event_payload``.
    value: Union[str, JsonObject]

    @classmethod
    def stream(cls, stream_id: str) -> "Selector":
        """The events of one stream (``$all``: every event)."""
        return cls("stream", stream_id)

    @classmethod
    def all_streams(cls) -> "Selector":
        """Every event of the store."""
        return cls("stream", ALL_STREAMS)

    @classmethod
    def event_type(cls, *event_types: str) -> "Selector":
        """Events of any of these types (1 to 32)."""
        if not event_types:
            raise ValueError("an event_type selector needs at least one type")
        return cls("event_type", ",".join(event_types))

    @classmethod
    def event_pattern(cls, pattern: str) -> "Selector":
        """Events whose stream id matches the pattern; ``*`` matches any run of characters."""
        return cls("event_pattern", pattern)

    @classmethod
    def event_payload(cls, partial_record: JsonObject) -> "Selector":
        """Events whose record matches this object partially (``{"data": {"country": "NL"}}``)."""
        return cls("event_payload", partial_record)

    def to_json(self) -> JsonObject:
        return {"type": self.type, "selector": self.value}

    @classmethod
    def from_json(cls, type_name: str, value: Any) -> "Selector":
        if type_name not in ("stream", "event_type", "event_pattern", "event_payload"):
            raise ValueError(f"unknown selector type {type_name}")
        kind: SelectorType = type_name  # type: ignore[assignment]
        return cls(kind, value if isinstance(value, (str, dict)) else str(value))


@dataclass(frozen=True)
class SubscriptionOptions:
    """A persistent subscription's options (fixed when it is first created)."""

    start: StartFrom = ORIGIN
    max_in_flight: int = 100
    ack_timeout_ms: int = 30_000
    max_retries: int = 5


@dataclass(frozen=True)
class SubscriptionInfo:
    """A persistent subscription as ``PSUB GET``/``PSUB LIST`` describe it."""

    name: str
    selector: Selector
    options: SubscriptionOptions
    created_epoch_us: int
    #: The position delivery resumes from.
    checkpoint: int
    #: How many events are parked.
    parked: int
    raw: JsonObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "SubscriptionInfo":
        options = _object(obj, "options")
        start = options.get("start", ORIGIN)
        if not (start in (ORIGIN, END) or (isinstance(start, int) and not isinstance(start, bool))):
            start = ORIGIN
        return cls(
            name=_str(obj, "name"),
            selector=Selector.from_json(_str(obj, "type", "stream"), obj.get("selector", "")),
            options=SubscriptionOptions(
                start=start,
                max_in_flight=_int(options, "max_in_flight", 100),
                ack_timeout_ms=_int(options, "ack_timeout_ms", 30_000),
                max_retries=_int(options, "max_retries", 5),
            ),
            created_epoch_us=_int(obj, "created_epoch_us"),
            checkpoint=_int(obj, "checkpoint"),
            parked=_int(obj, "parked"),
            raw=dict(obj),
        )


def events_from_body(body: bytes) -> List[RecordedEvent]:
    """An ``EVENTS`` body: a JSON array of event records."""
    value = json.loads(body)
    if not isinstance(value, list):
        raise ValueError("EVENTS body is not a JSON array")
    return [RecordedEvent.from_json(item) for item in value if isinstance(item, dict)]
