"""Typed errors, and the one table of wire error codes.

Every error the server sends is ``-ERR <code> '<message>'``. :data:`ERROR_TABLE` lists each code
with whether the server closes the connection after it and whether sending the same request again
may succeed; it mirrors the error table of PROTOCOL.md (a test parses that table and compares).
Each code has its own exception class, so callers can ``except esdb.WrongExpectedVersion``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Type


@dataclass(frozen=True)
class ErrorSpec:
    """What PROTOCOL.md says about one error code."""

    code: str
    closes_connection: bool
    retryable: bool


def _spec(code: str, closes: bool, retryable: bool) -> ErrorSpec:
    return ErrorSpec(code, closes, retryable)


#: Every wire error code, in PROTOCOL.md's order.
ERROR_TABLE: Mapping[str, ErrorSpec] = {
    spec.code: spec
    for spec in [
        _spec("wrong_expected_version", False, False),
        _spec("stream_not_found", False, False),
        _spec("stream_deleted", False, False),
        _spec("invalid_argument", False, False),
        _spec("invalid_json", False, False),
        _spec("unknown_command", False, False),
        _spec("payload_too_large", True, False),
        _spec("line_too_long", True, False),
        _spec("bad_frame", True, False),
        _spec("store_not_found", False, False),
        _spec("duplicate_event_id", False, False),
        _spec("condition_failed", False, False),
        _spec("unknown_selector_type", False, False),
        _spec("invalid_selector", False, False),
        _spec("subscription_not_found", False, False),
        _spec("subscription_conflict", False, False),
        _spec("snapshot_not_found", False, False),
        _spec("read_only", False, False),
        _spec("too_many_connections", True, True),
        _spec("stale_connection", True, False),
        _spec("shutting_down", True, True),
        _spec("storage_error", False, True),
        _spec("store_full", False, True),
        _spec("quota_exceeded", False, False),
        _spec("rate_limited", False, True),
        _spec("unavailable", False, True),
        _spec("unreadable_event", False, False),
        _spec("corrupt", False, False),
        _spec("auth_required", False, False),
        _spec("auth_failed", True, False),
        _spec("permission_denied", False, False),
        _spec("tls_required", True, False),
        _spec("internal", False, False),
    ]
}


class EsdbError(Exception):
    """Base of every error this library raises."""

    #: The wire code, or a client-side code (``connection_lost``, ``timeout``, …).
    code: str = "esdb_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        return False


class ServerError(EsdbError):
    """An ``-ERR`` reply from the server: ``code`` is its wire code."""

    code = "unknown"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def retryable(self) -> bool:
        spec = ERROR_TABLE.get(self.code)
        return spec is not None and spec.retryable

    @property
    def closes_connection(self) -> bool:
        spec = ERROR_TABLE.get(self.code)
        return spec is not None and spec.closes_connection

    def __str__(self) -> str:
        return f"{self.code} '{self.message}'"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class WrongExpectedVersion(ServerError):
    """The stream's current version is not the expected one."""


class StreamNotFound(ServerError):
    """The stream was never written."""


class StreamDeleted(ServerError):
    """The stream was deleted and not recreated."""


class InvalidArgument(ServerError):
    """An argument is missing, malformed or out of range."""


class InvalidJson(ServerError):
    """A JSON payload does not parse or has the wrong shape."""


class UnknownCommand(ServerError):
    """The operation name is not known to the server."""


class PayloadTooLarge(ServerError):
    """A payload exceeds ``max_payload``; the server closed the connection."""


class LineTooLong(ServerError):
    """A control line exceeds ``max_control_line``; the server closed the connection."""


class BadFrame(ServerError):
    """A payload's byte count was wrong; the server closed the connection."""


class StoreNotFound(ServerError):
    """The server does not serve that store."""


class DuplicateEventId(ServerError):
    """An ``event_id`` is already stored elsewhere."""


class ConditionFailed(ServerError):
    """An ``APPENDMULTI`` condition found a matching event after its position; the message
    starts with the first such position."""


class UnknownSelectorType(ServerError):
    """A subscription type other than the four."""


class InvalidSelector(ServerError):
    """A subscription selector is malformed."""


class SubscriptionNotFound(ServerError):
    """No such persistent subscription (or no such sid on this connection)."""


class SubscriptionConflict(ServerError):
    """A persistent subscription of that name exists with another selector, or the sid is used."""


class SnapshotNotFound(ServerError):
    """The stream has no snapshot (at that version)."""


class ReadOnly(ServerError):
    """The connection is read-only (a WebSocket opened with ``?readonly=1``) and the request
    would change the store."""


class AuthRequired(ServerError):
    """The server requires authentication: pass ``user`` and ``password``, or ``token``."""


class AuthFailed(ServerError):
    """Wrong or revoked credentials; the server closed the connection."""


class PermissionDenied(ServerError):
    """The user lacks the permission the request needs (the message names it)."""


class TlsRequired(ServerError):
    """The server's port speaks only TLS: pass ``tls=ssl.create_default_context(…)``."""


class TooManyConnections(ServerError):
    """The server is at its connection limit."""


class StaleConnection(ServerError):
    """The client did not answer the server's PINGs."""


class ShuttingDown(ServerError):
    """The server is shutting down."""


class StorageError(ServerError):
    """The server's storage engine failed; nothing was written."""


class Corrupt(ServerError):
    """A stored record failed its checksum: the server refused to serve it (not retryable)."""


class StoreFull(ServerError):
    """The store has no room (its map is full, or the disk is); nothing was written. Retryable
    once space is freed."""


class QuotaExceeded(ServerError):
    """The store is at one of its quotas (bytes, streams, connections, subscriptions; the message
    names it); nothing was done. Not retryable as is."""


class RateLimited(ServerError):
    """The store is at its write rate; nothing was written. Retryable after the wait the message
    names (``retry in <n> ms``)."""


class Unavailable(ServerError):
    """A cluster node had no leader within its wait, or the leader changed while a write was
    in flight (its outcome is unknown). Retryable (with the same event ids)."""


class UnreadableEvent(ServerError):
    """A stored record breaks the protocol's JSON rules (written by an older server, or damaged
    on disk), so the server cannot parse it.

    Raised by :meth:`~esdb.Client.aggregate` (``-ERR unreadable_event``: the message names the
    position) and by a catch-up ``event_payload`` subscription that received an ``UNREADABLE``
    frame in place of an event: then ``stream``, ``version`` and ``position`` say which event,
    ``reason`` why, and the subscription goes on: iterate it again for the events after it.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        stream: Optional[str] = None,
        version: Optional[int] = None,
        position: Optional[int] = None,
    ) -> None:
        super().__init__(code, message)
        #: The event's stream, version and position (``None`` for ``AGG``'s error).
        self.stream = stream
        self.version = version
        self.position = position

    @property
    def reason(self) -> str:
        """Why the record cannot be read (the server's words)."""
        return self.message

    @classmethod
    def from_frame(cls, stream: str, version: int, position: int, reason: str) -> "UnreadableEvent":
        """The error for an ``UNREADABLE <sid> <stream> <version> <position> '<reason>'`` push."""
        return cls("unreadable_event", reason, stream=stream, version=version, position=position)

    def __repr__(self) -> str:
        return (
            f"UnreadableEvent(stream={self.stream!r}, version={self.version!r}, "
            f"position={self.position!r}, reason={self.message!r})"
        )


class InternalError(ServerError):
    """A server bug."""


_CLASS_BY_CODE: Dict[str, Type[ServerError]] = {
    "wrong_expected_version": WrongExpectedVersion,
    "stream_not_found": StreamNotFound,
    "stream_deleted": StreamDeleted,
    "invalid_argument": InvalidArgument,
    "invalid_json": InvalidJson,
    "unknown_command": UnknownCommand,
    "payload_too_large": PayloadTooLarge,
    "line_too_long": LineTooLong,
    "bad_frame": BadFrame,
    "store_not_found": StoreNotFound,
    "duplicate_event_id": DuplicateEventId,
    "condition_failed": ConditionFailed,
    "unknown_selector_type": UnknownSelectorType,
    "invalid_selector": InvalidSelector,
    "subscription_not_found": SubscriptionNotFound,
    "subscription_conflict": SubscriptionConflict,
    "snapshot_not_found": SnapshotNotFound,
    "read_only": ReadOnly,
    "too_many_connections": TooManyConnections,
    "stale_connection": StaleConnection,
    "shutting_down": ShuttingDown,
    "storage_error": StorageError,
    "store_full": StoreFull,
    "quota_exceeded": QuotaExceeded,
    "rate_limited": RateLimited,
    "corrupt": Corrupt,
    "unavailable": Unavailable,
    "unreadable_event": UnreadableEvent,
    "auth_required": AuthRequired,
    "auth_failed": AuthFailed,
    "permission_denied": PermissionDenied,
    "tls_required": TlsRequired,
    "internal": InternalError,
}


def server_error(code: str, message: str) -> ServerError:
    """The typed exception for a wire code (a plain :class:`ServerError` for unknown codes)."""
    return _CLASS_BY_CODE.get(code, ServerError)(code, message)


class ClientError(EsdbError):
    """An error detected by the client, not sent by the server."""

    code = "client_error"


class ConnectionLost(ClientError):
    """The connection broke while a request was in flight: it may or may not have taken effect."""

    code = "connection_lost"

    @property
    def retryable(self) -> bool:
        return True


class ConnectionFailed(ClientError):
    """No server could be reached within the retry budget."""

    code = "connection_failed"

    def __init__(self, message: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.__cause__ = cause


class RequestTimeout(ClientError):
    """No reply arrived within the request timeout."""

    code = "timeout"


class ProtocolViolation(ClientError):
    """The server sent bytes this client cannot decode."""

    code = "protocol_violation"


class ClientClosed(ClientError):
    """The client (or the subscription) was closed."""

    code = "closed"
