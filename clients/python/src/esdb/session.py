"""The state of a client's connection, sans-IO, shared by the sync and the asyncio client.

It owns the decoder, the requests in flight and the subscriptions. Replies come back in request
order, so each reply completes the oldest request in flight; ``EVENT``, ``UNREADABLE`` and
``LIVE`` pushes are routed to their subscription by sid. An ``UNREADABLE`` push (a stored record
an ``event_payload`` subscription could not parse) takes an event's place in the buffer: the
consumer gets it as a raised :class:`~esdb.errors.UnreadableEvent`, and a resubscribe starts
after it as after an event. Across reconnects it keeps what must survive: requests not
sent yet, the selected store, and every subscription (sent again on the new connection: a
persistent one resumes from its checkpoint on the server, a catch-up one from the position after
the last event it received).

A catch-up subscription whose consumer falls behind (``high_water`` events buffered) is paused:
the session sends ``UNSUB`` and, once the consumer has worked the buffer down to ``low_water``,
subscribes again from the next position. The connection keeps being read at full speed, so a
slow consumer slows only its own subscription. A persistent subscription needs no pause: the
server never has more than ``max_in_flight`` unacknowledged events out to it.

The drivers call every method under one lock (sync client) or from the event loop (asyncio).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple, Union

from . import commands
from .commands import Request
from .errors import (
    ConnectionLost,
    EsdbError,
    ProtocolViolation,
    ServerError,
    UnreadableEvent,
    server_error,
)
from .protocol import Decoder, Frame, unreadable_fields
from .records import JsonObject, RecordedEvent, Selector, ServerInfo, StartFrom

#: How a call learns its outcome: ``(result, None)`` or ``(None, error)``.
OnDone = Callable[[Any, Optional[BaseException]], None]

#: Errors after which the server closes the connection because the request just sent broke the
#: framing; they answer that request. Other closing errors concern the connection itself.
_FRAMING_ERRORS = ("bad_frame", "payload_too_large", "line_too_long")

#: Default events a catch-up subscription buffers before it pauses (the server's live queue).
DEFAULT_HIGH_WATER_EVENTS = 1024


def _ignore(_value: Any, _error: Optional[BaseException]) -> None:
    """Outcome of an internal request nobody waits for."""


class Call:
    """One request and whoever waits for its reply."""

    __slots__ = ("request", "on_done", "cancelled")

    def __init__(self, request: Request[Any], on_done: OnDone) -> None:
        self.request = request
        self.on_done = on_done
        self.cancelled = False

    def finish(self, frame: Frame) -> None:
        try:
            value = self.request.parse(frame)
        except (EsdbError, ValueError) as error:
            self.on_done(None, error)
        except RecursionError:
            # JSON nested deeper than Python's stack (a stored record that breaks the rules):
            # this call fails, the connection goes on.
            self.on_done(None, ProtocolViolation(f"{frame.name} reply nests too deeply to parse"))
        else:
            self.on_done(value, None)


class _Live:
    """The marker a ``LIVE`` push leaves in a subscription's buffer."""


_LIVE = _Live()


class SubscriptionCore:
    """One subscription: how to (re)subscribe, and the events received but not yet consumed."""

    def __init__(
        self,
        sid: str,
        selector: Selector,
        start: StartFrom,
        name: Optional[str] = None,
        max_in_flight: Optional[int] = None,
        ack_timeout_ms: Optional[int] = None,
        max_retries: Optional[int] = None,
        high_water: int = DEFAULT_HIGH_WATER_EVENTS,
    ) -> None:
        self.sid = sid
        self.selector = selector
        self.start = start
        self.name = name
        self.max_in_flight = max_in_flight
        self.ack_timeout_ms = ack_timeout_ms
        self.max_retries = max_retries
        self.high_water = max(high_water, 2)
        self.low_water = self.high_water // 4
        #: The store it subscribes in, fixed when it is first sent.
        self.store: Optional[str] = None
        self.buffer: Deque[Any] = deque()
        #: Position of the last event (or unreadable event) received (catch-up: it resumes
        #: after it).
        self.last_position: Optional[int] = None
        self.paused = False
        self.live = False
        self._live_seen = False
        self.confirmed = False
        self.closed = False
        self.error: Optional[BaseException] = None
        #: Called whenever something arrives or the state changes (the driver wakes its consumer).
        self.wake: Callable[[], None] = lambda: None
        self.pauses = 0

    @property
    def persistent(self) -> bool:
        return self.name is not None

    def request(self) -> Request[None]:
        start = self.start
        if not self.persistent and self.last_position is not None:
            start = self.last_position + 1
        return commands.subscribe(
            self.sid,
            self.selector,
            start,
            self.name,
            self.max_in_flight,
            self.ack_timeout_ms,
            self.max_retries,
        )

    def on_subscribed(self, _value: Any, error: Optional[BaseException]) -> None:
        if error is None:
            self.confirmed = True
        elif isinstance(error, ConnectionLost):
            return  # sent again on the next connection
        else:
            self.fail(error)
        self.wake()

    def fail(self, error: Optional[BaseException]) -> None:
        if not self.closed:
            self.closed = True
            self.error = error
        self.wake()

    def on_event(self, frame: Frame) -> bool:
        """Buffers a pushed event (``EVENT`` or ``UNREADABLE``: both have the position as their
        fourth argument); returns whether the subscription must pause now."""
        try:
            position = int(frame.args[3])
        except (IndexError, ValueError) as error:
            raise ProtocolViolation(f"bad {frame.name} line: {frame.line[:120]!r}") from error
        if not self.persistent:
            if self.last_position is not None and position <= self.last_position:
                return False  # already received before a resubscribe
            self.last_position = position
        self.buffer.append(frame)
        self.wake()
        if self.persistent or self.paused or len(self.buffer) < self.high_water:
            return False
        self.paused = True
        self.pauses += 1
        return True

    def on_live(self) -> None:
        # A resubscribe (after a pause or a reconnect) catches up and says LIVE again.
        if not self._live_seen:
            self._live_seen = True
            self.buffer.append(_LIVE)
            self.wake()

    def poll_live(self) -> bool:
        """Consumes a LIVE marker at the head of the buffer; whether the consumer is live."""
        while self.buffer and self.buffer[0] is _LIVE:
            self.buffer.popleft()
            self.live = True
        return self.live

    def take(self) -> Tuple[Optional[Union[RecordedEvent, UnreadableEvent]], bool]:
        """The next event (or the error of an unreadable one), if one is buffered, and whether
        the subscription should resume."""
        self.poll_live()
        item: Optional[Union[RecordedEvent, UnreadableEvent]] = None
        if self.buffer:
            frame: Frame = self.buffer.popleft()
            if frame.name == "UNREADABLE":
                item = UnreadableEvent.from_frame(*unreadable_fields(frame)[1:])
            else:
                assert frame.body is not None
                item = RecordedEvent.from_json(json.loads(frame.body))
            self.poll_live()
        return item, self.paused and not self.closed and len(self.buffer) <= self.low_water


class Session:
    """A client's protocol state across connections (see the module doc)."""

    def __init__(self, connect_options: JsonObject, store: Optional[str] = None) -> None:
        self._connect_options = dict(connect_options)
        #: The store requests emitted so far run in (``None`` until known).
        self.store = store
        self.info: Optional[ServerInfo] = None
        #: CONNECT was answered on this connection: requests may be sent.
        self.established = False
        #: The connection must be closed (set when the server answered CONNECT with an error).
        self.must_close: Optional[BaseException] = None
        self._decoder = Decoder()
        self._pending: Deque[Call] = deque()
        self._outbox: Deque[Call] = deque()
        self._fatal: Optional[ServerError] = None
        self._greeted = False
        self.subscriptions: Dict[str, SubscriptionCore] = {}
        self._sids = itertools.count(1)

    # --- connections -------------------------------------------------------------------------

    def connection_made(self) -> None:
        self._decoder = Decoder()
        self._greeted = False
        self.established = False
        self.must_close = None
        self._fatal = None

    def connection_lost(self, reason: str) -> None:
        """Fails the requests in flight: they may or may not have taken effect."""
        self.established = False
        calls = list(self._pending)
        self._pending.clear()
        fatal, connect_error = self._fatal, self.must_close
        for index, call in enumerate(calls):
            error: BaseException
            if index == 0 and fatal is not None and fatal.code in _FRAMING_ERRORS:
                error = fatal
            elif connect_error is not None:
                error = connect_error
            else:
                detail = f" ({fatal})" if fatal is not None else ""
                error = ConnectionLost(f"connection lost before the reply: {reason}{detail}")
            if not call.cancelled:
                call.on_done(None, error)

    def fail_all(self, error: BaseException) -> None:
        """Gives up: fails every request not sent yet and ends every subscription."""
        calls = list(self._outbox)
        self._outbox.clear()
        for call in calls:
            if not call.cancelled:
                call.on_done(None, error)
        for sub in list(self.subscriptions.values()):
            sub.fail(error)
        self.subscriptions.clear()

    # --- requests ----------------------------------------------------------------------------

    def submit(self, call: Call) -> bytes:
        """Bytes to write now, or ``b""`` when the call waits for the next connection."""
        if self.established:
            return self._emit(call)
        self._outbox.append(call)
        return b""

    def cancel(self, call: Call) -> None:
        call.cancelled = True
        try:
            self._outbox.remove(call)
        except ValueError:
            pass  # already sent: its reply will be dropped

    def _emit(self, call: Call) -> bytes:
        self._pending.append(call)
        if call.request.sets_store is not None:
            self.store = call.request.sets_store
        return call.request.data

    def _internal(self, request: Request[Any], on_done: OnDone = _ignore) -> bytes:
        return self._emit(Call(request, on_done))

    # --- subscriptions -----------------------------------------------------------------------

    def new_sid(self) -> str:
        return f"s{next(self._sids)}"

    def add_subscription(self, sub: SubscriptionCore) -> bytes:
        self.subscriptions[sub.sid] = sub
        return self._subscribe_bytes(sub) if self.established else b""

    def _subscribe_bytes(self, sub: SubscriptionCore) -> bytes:
        if sub.store is None:
            sub.store = self.store
        current = self.store
        if sub.store is None or sub.store == current or current is None:
            return self._internal(sub.request(), sub.on_subscribed)
        # Subscribe in the subscription's own store, then come back: requests take effect in
        # order, so nothing else runs in between.
        out = self._internal(commands.use(sub.store))
        out += self._internal(sub.request(), sub.on_subscribed)
        return out + self._internal(commands.use(current))

    def remove_subscription(self, sub: SubscriptionCore) -> bytes:
        self.subscriptions.pop(sub.sid, None)
        was_subscribed = not sub.paused
        sub.buffer.clear()
        sub.fail(None)
        if self.established and was_subscribed:
            return self._internal(commands.unsubscribe(sub.sid))
        return b""

    def resume(self, sub: SubscriptionCore) -> bytes:
        """Subscribes a paused catch-up subscription again, after its last received event."""
        if not sub.paused or sub.closed:
            return b""
        sub.paused = False
        return self._subscribe_bytes(sub) if self.established else b""

    # --- receiving ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Consumes received bytes; returns bytes to write (PONGs, handshake, pauses)."""
        out = bytearray()
        for frame in self._decoder.frames(data):
            out += self._on_frame(frame)
        return bytes(out)

    def _on_frame(self, frame: Frame) -> bytes:
        name = frame.name
        if name == "EVENT" or name == "UNREADABLE":
            if name == "UNREADABLE":
                unreadable_fields(frame)  # a malformed line fails here, not in the consumer
            sub = self.subscriptions.get(frame.args[0] if frame.args else "")
            if sub is not None and sub.on_event(frame):
                return self._internal(commands.unsubscribe(sub.sid))
            return b""
        if name == "LIVE":
            sub = self.subscriptions.get(frame.args[0] if frame.args else "")
            if sub is not None:
                sub.on_live()
            return b""
        if name == "PING":
            return commands.pong()
        if name == "INFO" and not self._greeted:
            return self._on_info(frame)
        if name == "-ERR":
            error = server_error(frame.error_code, frame.error_message)
            if error.closes_connection and not (error.code == "auth_failed" and not self.established):
                # Not a reply: the server says why it is about to close the connection (but a
                # failed CONNECT's auth_failed is its reply, so the caller learns why).
                self._fatal = error
                return b""
        if not self._pending:
            raise ProtocolViolation(f"reply without a request: {frame.line[:120]!r}")
        call = self._pending.popleft()
        was_established = self.established
        if not call.cancelled:
            call.finish(frame)
        if self.established and not was_established:
            return self._after_established()
        return b""

    def _on_info(self, frame: Frame) -> bytes:
        try:
            info = json.loads(frame.rest)
        except ValueError as error:
            raise ProtocolViolation("INFO is not JSON") from error
        if not isinstance(info, dict):
            raise ProtocolViolation("INFO is not a JSON object")
        self.info = ServerInfo.from_json(info)
        self._greeted = True
        options = dict(self._connect_options)
        if self.store is not None:
            options["store"] = self.store
        # Nothing else is sent before CONNECT is answered: if it fails (the store is not served
        # here), no request may run in another store than the one it was meant for.
        return self._internal(commands.connect(options), self._on_connected)

    def _on_connected(self, _value: Any, error: Optional[BaseException]) -> None:
        if error is not None:
            if not isinstance(error, ConnectionLost):
                self.must_close = error
            return
        assert self.info is not None
        if self.store is None:
            self.store = self.info.store
        self.established = True

    def _after_established(self) -> bytes:
        """Once CONNECT is answered: the subscriptions, then the requests that waited."""
        out = bytearray()
        for sub in list(self.subscriptions.values()):
            if not sub.paused and not sub.closed:
                out += self._subscribe_bytes(sub)
        while self._outbox:
            call = self._outbox.popleft()
            if not call.cancelled:
                out += self._emit(call)
        return bytes(out)

    def pending_count(self) -> int:
        return len(self._pending)

    def outbox_count(self) -> int:
        return len(self._outbox)
