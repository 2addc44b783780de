"""The synchronous client: blocking calls, safe to share between threads.

Calls from many threads are pipelined on one connection. A reader thread decodes what the
server sends and completes the waiting calls in order; a writer thread per connection sends
what the calls queue, so a caller never blocks the reading of replies. When the connection
breaks, the reader thread reconnects (round-robin over the addresses, backoff with jitter) and
the session sends the subscriptions and the waiting requests again.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Iterator, List, Literal, Optional, Sequence, TypeVar, Union

from . import commands
from .commands import NackAction, PositionItem, Request
from .errors import (
    ClientClosed,
    ConnectionFailed,
    EsdbError,
    PayloadTooLarge,
    ProtocolViolation,
    RequestTimeout,
    ServerError,
    StoreNotFound,
    UnreadableEvent,
)
from .paging import next_position, next_version, page_count
from .records import (
    ANY,
    ORIGIN,
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
    ServerInfo,
    Snapshot,
    StartFrom,
    Stats,
    SubscriptionInfo,
)
from .retry import Address, AddressesLike, ConnectPlan, RetryPolicy, parse_addresses
from .session import DEFAULT_HIGH_WATER_EVENTS, Call, Session, SubscriptionCore
from .version import __version__

T = TypeVar("T")

#: Bytes asked of the socket per read.
READ_CHUNK_BYTES = 256 * 1024
#: Default page size of the read iterators.
DEFAULT_PAGE_SIZE = 1000


def connect_options(
    name: Optional[str],
    user: Optional[str] = None,
    password: Optional[str] = None,
    token: Optional[str] = None,
) -> JsonObject:
    """CONNECT's fields; ``user`` and ``password``, or ``token``, when the server requires
    authentication (INFO ``auth_required``)."""
    options: JsonObject = {"lang": "python", "version": __version__}
    if name is not None:
        options["name"] = name
    if (user is None) != (password is None):
        raise ValueError("user and password go together")
    if user is not None and token is not None:
        raise ValueError("give user and password, or token, not both")
    if user is not None:
        options["user"] = user
        options["pass"] = password
    if token is not None:
        options["token"] = token
    return options


def check_payload(request: Request[Any], info: Optional[ServerInfo]) -> None:
    """Refuses locally what the server would refuse by closing the connection."""
    if info is None:
        return
    first_line_end = request.data.find(b"\n") + 1
    payload_bytes = len(request.data) - first_line_end - 2
    if payload_bytes > info.max_payload:
        raise PayloadTooLarge(
            "payload_too_large",
            f"payload of {payload_bytes} bytes exceeds max_payload {info.max_payload}",
        )


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outgoing: "queue.SimpleQueue[Optional[bytes]]" = queue.SimpleQueue()

    def write_loop(self) -> None:
        while True:
            data = self.outgoing.get()
            if data is None:
                return
            chunks = [data]
            stop = False
            while True:
                try:
                    more = self.outgoing.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                chunks.append(more)
            try:
                self.sock.sendall(b"".join(chunks))
            except OSError:
                self.abort()
                return
            if stop:
                return

    def abort(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Client:
    """A connection to an esdb server (or to the first reachable of several).

    ``Client("127.0.0.1:4350")`` connects at once (raising :class:`ConnectionFailed` if no
    server answers within the retry budget). Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        addresses: AddressesLike = "127.0.0.1:4350",
        *,
        name: Optional[str] = None,
        store: Optional[str] = None,
        retry: RetryPolicy = RetryPolicy(),
        connect_timeout_s: float = 5.0,
        request_timeout_s: Optional[float] = 30.0,
        subscription_buffer_events: int = DEFAULT_HIGH_WATER_EVENTS,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        tls: Optional[ssl.SSLContext] = None,
        tls_server_hostname: Optional[str] = None,
    ) -> None:
        #: TLS to a server started with --tls-cert (e.g. ``ssl.create_default_context(cafile=…)``).
        self._tls = tls
        self._tls_server_hostname = tls_server_hostname
        self._addresses: List[Address] = parse_addresses(addresses)
        self._retry = retry
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._buffer_events = subscription_buffer_events
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._session = Session(connect_options(name, user, password, token), store)
        self._plan = ConnectPlan(self._addresses, retry)
        self._connection: Optional[_Connection] = None
        self._closed = False
        self._gave_up: Optional[BaseException] = None
        self._connections_made = 0
        self._address: Optional[Address] = None
        self._thread = threading.Thread(target=self._run, name="esdb-client", daemon=True)
        self._thread.start()
        try:
            self._wait_established()
        except BaseException:
            self.close()  # no thread left waiting for a client nobody holds
            raise

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection; waiting calls and subscriptions end with :class:`ClientClosed`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._session.fail_all(ClientClosed("the client was closed"))
            connection = self._connection
            self._changed.notify_all()
        if connection is not None:
            connection.abort()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    @property
    def info(self) -> ServerInfo:
        """The ``INFO`` of the server this client is connected to (or was, last)."""
        with self._lock:
            assert self._session.info is not None, "connected clients have INFO"
            return self._session.info

    @property
    def address(self) -> Optional[Address]:
        """The address of the current (or last) connection."""
        return self._address

    @property
    def store(self) -> Optional[str]:
        """The store requests go to."""
        return self._session.store

    @property
    def connections_made(self) -> int:
        """How many connections were established (1 + reconnects)."""
        return self._connections_made

    def _wait_established(self) -> None:
        with self._lock:
            while not self._session.established:
                if self._gave_up is not None:
                    raise self._gave_up
                if self._closed:
                    raise ClientClosed("the client was closed")
                self._changed.wait()

    # --- the connection thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._gave_up is not None and not self._closed:
                    self._changed.wait()  # until a call wants the connection back
                if self._closed:
                    return
            attempt = self._plan.next_attempt()
            if attempt is None:
                self._give_up()
                continue
            address, delay_s = attempt
            if delay_s > 0:
                with self._lock:
                    self._changed.wait_for(lambda: self._closed, timeout=delay_s)
                    if self._closed:
                        return
            try:
                sock = socket.create_connection(address, timeout=self._connect_timeout_s)
                if self._tls is not None:
                    hostname = self._tls_server_hostname or address[0]
                    sock = self._tls.wrap_socket(sock, server_hostname=hostname)
            except OSError as error:
                self._plan.failed(error)
                continue
            self._address = address
            self._serve(sock)

    def _give_up(self) -> None:
        error = ConnectionFailed(
            f"no esdb server reachable at {self._describe_addresses()} "
            f"after {self._retry.max_retries} retries: {self._plan.last_error}",
            self._plan.last_error,
        )
        with self._lock:
            self._gave_up = error
            self._session.fail_all(error)
            self._changed.notify_all()

    def _describe_addresses(self) -> str:
        return ", ".join(f"{host}:{port}" for host, port in self._plan.addresses)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A server host that vanishes without a reset is noticed eventually, not never.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        connection = _Connection(sock)
        writer = threading.Thread(target=connection.write_loop, name="esdb-writer", daemon=True)
        writer.start()
        established = False
        reason = "the server closed the connection"
        with self._lock:
            self._session.connection_made()
            self._connection = connection
            if self._closed:
                connection.abort()
        try:
            while True:
                data = sock.recv(READ_CHUNK_BYTES)
                if not data:
                    break
                with self._lock:
                    out = self._session.receive(data)
                    if out:
                        connection.outgoing.put(out)
                    if self._session.established and not established:
                        established = True
                        self._connections_made += 1
                        self._plan.succeeded()
                        if self._session.info is not None:
                            # A cluster node names every member: fail over to them too.
                            self._plan.learn(self._session.info.client_urls)
                        self._changed.notify_all()
                    if self._session.must_close is not None:
                        reason = str(self._session.must_close)
                        break
        except (OSError, ProtocolViolation) as error:
            reason = str(error) or type(error).__name__
        finally:
            with self._lock:
                self._connection = None
                self._session.connection_lost(reason)
                self._changed.notify_all()
            connection.outgoing.put(None)
            connection.abort()
            sock.close()
            writer.join(timeout=5)
        if not established:
            self._plan.failed(ConnectionError(reason))

    # --- calls -------------------------------------------------------------------------------

    def _send_locked(self, data: bytes) -> None:
        if data and self._connection is not None:
            self._connection.outgoing.put(data)

    def _submit_locked(self, call: Call) -> None:
        if self._closed:
            raise ClientClosed("the client was closed")
        if self._gave_up is not None:
            self._gave_up = None  # try to connect again
            self._plan.reset()
            self._changed.notify_all()
        check_payload(call.request, self._session.info)
        self._send_locked(self._session.submit(call))

    def _call(self, request: Request[T]) -> T:
        retries = 0
        while True:
            future: "Future[T]" = Future()

            def on_done(value: Any, error: Optional[BaseException], future: "Future[T]" = future) -> None:
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)

            call = Call(request, on_done)
            with self._lock:
                self._submit_locked(call)
            try:
                return future.result(timeout=self._request_timeout_s)
            except FutureTimeout:
                with self._lock:
                    self._session.cancel(call)
                raise RequestTimeout(f"no reply within {self._request_timeout_s} s") from None
            except EsdbError as error:
                if not (error.retryable and request.retry_safe) or retries >= self._retry.max_retries:
                    raise
                retries += 1
                if isinstance(error, ServerError):
                    time.sleep(self._retry.delay_s(retries))

    # --- session -----------------------------------------------------------------------------

    def ping(self) -> None:
        """A round trip: returns once every earlier request of this client was answered."""
        self._call(commands.ping())

    def use(self, store: str) -> None:
        """Sends later requests (and subscriptions made later) to ``store``."""
        info = self._session.info
        if info is not None and info.stores and store not in info.stores:
            raise StoreNotFound("store_not_found", f"no store named {store} on this server")
        self._call(commands.use(store))

    def help(self) -> str:
        """The server's short command summary."""
        return self._call(commands.help_text())

    def stats(self) -> Stats:
        """Per-store counts."""
        return self._call(commands.stats())

    # --- streams -----------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Union[NewEvent, Sequence[NewEvent]],
        expected: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Appends one event or a batch atomically. ``expected`` is ``"any"``, ``"no_stream"``,
        ``"exists"`` or the stream's current version; a mismatch raises
        :class:`WrongExpectedVersion` (never retried)."""
        batch = [events] if isinstance(events, NewEvent) else list(events)
        return self._call(commands.append(stream, batch, expected))

    def read_stream(
        self,
        stream: str,
        from_version: Union[int, Literal["end"]] = 0,
        count: int = DEFAULT_PAGE_SIZE,
        backward: bool = False,
    ) -> List[RecordedEvent]:
        """One page of a stream's events by version (``"end"``: from the newest)."""
        return self._call(commands.read_stream(stream, from_version, count, backward))

    def iter_stream(
        self,
        stream: str,
        from_version: Union[int, Literal["end"]] = 0,
        backward: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[RecordedEvent]:
        """Every event of a stream from ``from_version`` on, page by page."""
        count = page_count(page_size, self.info.max_read_count)
        start: Optional[Union[int, Literal["end"]]] = from_version
        while start is not None:
            page = self.read_stream(stream, start, count, backward)
            yield from page
            start = next_version(page, backward)

    def read_all(
        self,
        from_position: Union[int, Literal["end"]] = 0,
        count: int = DEFAULT_PAGE_SIZE,
        backward: bool = False,
    ) -> List[RecordedEvent]:
        """One page of ``$all``: every stream's events in commit order."""
        return self._call(commands.read_all(from_position, count, backward))

    def iter_all(
        self,
        from_position: Union[int, Literal["end"]] = 0,
        backward: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[RecordedEvent]:
        """Every event of ``$all`` from ``from_position`` on, page by page."""
        count = page_count(page_size, self.info.max_read_count)
        start: Optional[Union[int, Literal["end"]]] = from_position
        while start is not None:
            page = self.read_all(start, count, backward)
            yield from page
            start = next_position(page, backward)

    def append_multi(
        self, parts: Sequence[AppendPart], condition: Optional[JsonObject] = None
    ) -> List[PartResult]:
        """Appends to several streams atomically (every part or none), optionally only if
        ``condition`` holds (a failing one raises :class:`ConditionFailed`, whose message starts
        with the first matching position)."""
        return self._call(commands.append_multi(parts, condition))

    def read_tags(
        self, tags: Sequence[str], from_position: int = 0, count: int = DEFAULT_PAGE_SIZE
    ) -> List[RecordedEvent]:
        """One page of the events carrying any of these tags, in commit order."""
        return self._call(commands.read_tags(tags, from_position, count))

    def read_types(
        self, event_types: Sequence[str], from_position: int = 0, count: int = DEFAULT_PAGE_SIZE
    ) -> List[RecordedEvent]:
        """One page of the events of these types, in commit order."""
        return self._call(commands.read_types(event_types, from_position, count))

    def iter_types(
        self, event_types: Sequence[str], from_position: int = 0, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[RecordedEvent]:
        """Every event of these types from ``from_position`` on, page by page."""
        count = page_count(page_size, self.info.max_read_count)
        start: Optional[int] = from_position
        while start is not None:
            page = self.read_types(event_types, start, count)
            yield from page
            start = next_position(page, False)

    def version(self, stream: str) -> int:
        """The stream's current version, -1 when it has no visible events."""
        return self._call(commands.version(stream))

    def exists(self, stream: str) -> bool:
        """Whether the stream has visible events."""
        return self._call(commands.exists(stream))

    def list_streams(self, after: Optional[str] = None, count: Optional[int] = None) -> List[str]:
        """One page of stream ids in byte order, after ``after``."""
        return self._call(commands.streams(after, count))

    def iter_streams(self, page_size: int = 10_000) -> Iterator[str]:
        """Every stream id with visible events, in byte order."""
        after: Optional[str] = None
        while True:
            page = self.list_streams(after, page_size)
            yield from page
            if not page:
                return
            after = page[-1]

    def delete(self, stream: str, expected: ExpectedVersion = ANY) -> None:
        """Soft-deletes a stream (and its snapshots)."""
        self._call(commands.delete(stream, expected))

    # --- snapshots ---------------------------------------------------------------------------

    def save_snapshot(
        self,
        stream: str,
        version: int,
        data: JsonValue,
        metadata: Optional[JsonObject] = None,
        keep: Optional[int] = None,
    ) -> None:
        """Saves a snapshot of ``stream`` at ``version``; ``keep``: prune all but the newest N."""
        self._call(commands.snapshot_save(stream, version, data, metadata, keep))

    def load_snapshot(self, stream: str) -> Optional[Snapshot]:
        """The stream's newest snapshot, or ``None``."""
        return self._call(commands.snapshot_load(stream, None))

    def load_snapshot_at(self, stream: str, version: int) -> Optional[Snapshot]:
        """The snapshot at ``version``, or ``None``."""
        return self._call(commands.snapshot_load(stream, version))

    def list_snapshots(
        self, stream: str, from_version: int = 0, count: Optional[int] = None
    ) -> List[Snapshot]:
        """The stream's snapshots in ascending version order (one page)."""
        return self._call(commands.snapshot_list(stream, from_version, count))

    def delete_snapshots(self, stream: str, version: Optional[int] = None) -> None:
        """Deletes the snapshot at ``version``, or every snapshot of the stream."""
        self._call(commands.snapshot_delete(stream, version))

    def snapshot_exists(self, stream: str, version: Optional[int] = None) -> bool:
        """Whether the stream has a snapshot (at ``version``)."""
        return self._call(commands.snapshot_exists(stream, version))

    def aggregate(
        self,
        stream: str,
        from_snapshot: bool = False,
        order: Literal["foldl", "foldr"] = "foldl",
        raw: bool = False,
    ) -> Aggregate:
        """The stream's state folded on the server (``AGG``)."""
        return self._call(commands.aggregate(stream, from_snapshot, order, raw))

    # --- subscriptions -----------------------------------------------------------------------

    def subscribe(self, selector: Selector, start: StartFrom = ORIGIN) -> "Subscription":
        """A catch-up subscription: history from ``start`` (``"origin"``, ``"end"`` or a
        position), then live events. Iterate it; it survives reconnects without gap or
        duplicate."""
        if start == "end":
            # Pinned to a position, so a resubscribe after a reconnect misses nothing.
            last = self.read_all("end", 1, backward=True)
            start = last[0].position + 1 if last else 0
        core = self._new_core(selector, start, None)
        return Subscription(self, core, self._start(core))

    def subscribe_persistent(
        self,
        name: str,
        selector: Selector,
        start: StartFrom = ORIGIN,
        max_in_flight: Optional[int] = None,
        ack_timeout_ms: Optional[int] = None,
        max_retries: Optional[int] = None,
    ) -> "PersistentSubscription":
        """Joins (creating it the first time) the persistent subscription ``name``: delivery
        resumes after its last acknowledged events; acknowledge with ``ack``."""
        core = self._new_core(selector, start, name, max_in_flight, ack_timeout_ms, max_retries)
        return PersistentSubscription(self, core, self._start(core))

    def _new_core(
        self,
        selector: Selector,
        start: StartFrom,
        name: Optional[str],
        max_in_flight: Optional[int] = None,
        ack_timeout_ms: Optional[int] = None,
        max_retries: Optional[int] = None,
    ) -> SubscriptionCore:
        with self._lock:
            sid = self._session.new_sid()
        core = SubscriptionCore(
            sid, selector, start, name, max_in_flight, ack_timeout_ms, max_retries, self._buffer_events
        )
        core.request()  # validates the arguments before anything is sent
        return core

    def _start(self, core: SubscriptionCore) -> threading.Condition:
        condition = threading.Condition(self._lock)
        core.wake = condition.notify_all
        deadline = None if self._request_timeout_s is None else time.monotonic() + self._request_timeout_s
        with self._lock:
            if self._closed:
                raise ClientClosed("the client was closed")
            if self._gave_up is not None:
                self._gave_up = None
                self._plan.reset()
                self._changed.notify_all()
            self._send_locked(self._session.add_subscription(core))
            while not core.confirmed and not core.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._send_locked(self._session.remove_subscription(core))
                    raise RequestTimeout(f"SUB not answered within {self._request_timeout_s} s")
                condition.wait(remaining)
            if core.error is not None:
                self._session.subscriptions.pop(core.sid, None)
                raise core.error
        return condition

    def _next_event(
        self, core: SubscriptionCore, condition: threading.Condition, timeout_s: Optional[float]
    ) -> Optional[RecordedEvent]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while True:
                event, resume = core.take()
                if resume:
                    self._send_locked(self._session.resume(core))
                if isinstance(event, UnreadableEvent):
                    raise event
                if event is not None:
                    return event
                if core.closed:
                    if core.error is not None:
                        raise core.error
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                condition.wait(remaining)

    def _is_live(self, core: SubscriptionCore) -> bool:
        with self._lock:
            return core.poll_live()

    def _unsubscribe(self, core: SubscriptionCore) -> None:
        with self._lock:
            self._send_locked(self._session.remove_subscription(core))

    def _calls(self, requests: List[Request[None]]) -> None:
        for request in requests:
            self._call(request)

    # --- persistent subscription management -------------------------------------------------

    def list_persistent_subscriptions(self) -> List[SubscriptionInfo]:
        """Every persistent subscription of the current store."""
        return self._call(commands.psub_list())

    def get_persistent_subscription(self, name: str) -> SubscriptionInfo:
        """One persistent subscription (raises :class:`SubscriptionNotFound`)."""
        return self._call(commands.psub_get(name))

    def persistent_subscription_exists(self, name: str) -> bool:
        return self._call(commands.psub_exists(name))

    def delete_persistent_subscription(self, name: str, selector_type: Optional[str] = None) -> None:
        """Removes it with its checkpoint and parked events (only if of ``selector_type``)."""
        self._call(commands.psub_delete(name, selector_type))

    def parked_events(
        self, name: str, from_position: int = 0, count: Optional[int] = None
    ) -> List[RecordedEvent]:
        """Parked events of a persistent subscription, in position order (one page)."""
        return self._call(commands.psub_parked(name, from_position, count))

    def replay_parked(self, name: str) -> None:
        """Delivers every parked event again."""
        self._call(commands.psub_replay(name))


class Subscription:
    """A catch-up subscription: iterate it for events (blocking), or call :meth:`next_event`
    with a timeout. Ends (``StopIteration``) once unsubscribed; raises if it failed.

    A stored record the server cannot parse raises :class:`~esdb.UnreadableEvent` (with its
    ``stream``, ``version``, ``position`` and ``reason``) where its event would have come; it
    does not end the subscription: catch it and iterate again to go on after it."""

    def __init__(self, client: Client, core: SubscriptionCore, condition: threading.Condition) -> None:
        self._client = client
        self._core = core
        self._condition = condition

    @property
    def sid(self) -> str:
        return self._core.sid

    @property
    def is_live(self) -> bool:
        """Whether every event before the server's ``LIVE`` has been consumed."""
        return self._client._is_live(self._core)

    @property
    def last_position(self) -> Optional[int]:
        """Position of the last event (or unreadable event) received from the server."""
        return self._core.last_position

    @property
    def pauses(self) -> int:
        """How many times it paused because its consumer fell behind."""
        return self._core.pauses

    def next_event(self, timeout_s: Optional[float] = None) -> Optional[RecordedEvent]:
        """The next event, or ``None`` after ``timeout_s`` (or once unsubscribed).

        Raises :class:`~esdb.UnreadableEvent` in place of an event the server could not parse
        (``UNREADABLE``, only for ``event_payload`` selectors); the subscription goes on, and
        the next call returns the event after it."""
        return self._client._next_event(self._core, self._condition, timeout_s)

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self

    def __next__(self) -> RecordedEvent:
        event = self.next_event(None)
        if event is None:
            raise StopIteration
        return event

    def unsubscribe(self) -> None:
        """Ends the subscription; events not consumed yet are dropped."""
        self._client._unsubscribe(self._core)

    close = unsubscribe

    def __enter__(self: "S") -> "S":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.unsubscribe()


S = TypeVar("S", bound=Subscription)


def _positions(items: Sequence[Union[RecordedEvent, PositionItem]]) -> List[PositionItem]:
    return [item.position if isinstance(item, RecordedEvent) else item for item in items]


class PersistentSubscription(Subscription):
    """A consumer of a persistent subscription: acknowledge what you processed."""

    @property
    def name(self) -> str:
        assert self._core.name is not None
        return self._core.name

    def ack(self, *events: Union[RecordedEvent, PositionItem]) -> None:
        """Acknowledges events (or positions, or ``(first, last)`` ranges)."""
        self._client._calls(commands.ack(self.sid, _positions(events)))

    def ack_up_to(self, position: int) -> None:
        """Acknowledges every event delivered to this consumer up to ``position``."""
        self._client._calls([commands.ack_up_to(self.sid, position)])

    def nack(self, action: NackAction, *events: Union[RecordedEvent, PositionItem]) -> None:
        """``"retry"`` (deliver again), ``"skip"`` (drop) or ``"park"`` events."""
        self._client._calls(commands.nack(self.sid, action, _positions(events)))

