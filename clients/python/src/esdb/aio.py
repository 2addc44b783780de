"""The asyncio client: the same API as :class:`esdb.Client`, with coroutines, and subscriptions
as ``async for``.

Concurrent coroutines share the connection: each call writes its request and awaits its reply,
replies being matched in request order by the shared :class:`esdb.session.Session`. A
supervisor task keeps the connection up (round-robin, backoff with jitter) and the session
resubscribes and resends what was waiting.
"""

from __future__ import annotations

import asyncio
import ssl
import socket
from typing import Any, AsyncIterator, List, Literal, Optional, Sequence, TypeVar, Union

from . import commands
from .client import DEFAULT_PAGE_SIZE, check_payload, connect_options
from .commands import NackAction, PositionItem, Request
from .errors import (
    ClientClosed,
    ConnectionFailed,
    EsdbError,
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

T = TypeVar("T")


class _Protocol(asyncio.Protocol):
    """One TCP connection: hands received bytes to the client, tracks write flow control."""

    def __init__(self, client: "AsyncClient") -> None:
        self._client = client
        self.transport: Optional[asyncio.Transport] = None
        self.closed: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # Before any data_received: the greeting may already be waiting.
        self._client._on_connection_made(self)

    def data_received(self, data: bytes) -> None:
        self._client._on_data(self, data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else "the server closed the connection")

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        await self._can_write.wait()

    def close(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.closed.done():
            self.closed.set_result(reason)


class AsyncClient:
    """An asyncio connection to an esdb server (or the first reachable of several).

    ``client = await AsyncClient.connect("127.0.0.1:4350")``, or
    ``async with AsyncClient("127.0.0.1:4350") as client:``.
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
        self._session = Session(connect_options(name, user, password, token), store)
        self._plan = ConnectPlan(self._addresses, retry)
        self._protocol: Optional[_Protocol] = None
        self._closed = False
        self._gave_up: Optional[BaseException] = None
        self._supervisor: Optional["asyncio.Task[None]"] = None
        self._changed: Optional[asyncio.Event] = None
        self._wanted: Optional[asyncio.Event] = None
        self._connections_made = 0
        self._address: Optional[Address] = None

    @classmethod
    async def connect(cls, addresses: AddressesLike = "127.0.0.1:4350", **options: Any) -> "AsyncClient":
        client = cls(addresses, **options)
        await client.start()
        return client

    async def start(self) -> None:
        """Connects (waits until the first connection is established)."""
        if self._supervisor is None:
            self._changed = asyncio.Event()
            self._wanted = asyncio.Event()
            self._supervisor = asyncio.get_running_loop().create_task(self._run())
        while not self._session.established:
            if self._gave_up is not None:
                error = self._gave_up
                await self.close()  # no task left waiting for a client nobody holds
                raise error
            if self._closed:
                raise ClientClosed("the client was closed")
            await self._wait_changed()

    async def _wait_changed(self) -> None:
        assert self._changed is not None
        self._changed.clear()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def __aenter__(self) -> "AsyncClient":
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; waiting calls and subscriptions end with :class:`ClientClosed`."""
        if self._closed:
            return
        self._closed = True
        self._session.fail_all(ClientClosed("the client was closed"))
        if self._protocol is not None:
            self._protocol.close("the client was closed")
        if self._wanted is not None:
            self._wanted.set()
        self._notify()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(self._supervisor, timeout=5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass

    @property
    def info(self) -> ServerInfo:
        assert self._session.info is not None, "connected clients have INFO"
        return self._session.info

    @property
    def address(self) -> Optional[Address]:
        return self._address

    @property
    def store(self) -> Optional[str]:
        return self._session.store

    @property
    def connections_made(self) -> int:
        return self._connections_made

    # --- the supervisor ----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wanted is not None
        while not self._closed:
            if self._gave_up is not None:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            attempt = self._plan.next_attempt()
            if attempt is None:
                self._give_up()
                continue
            (host, port), delay_s = attempt
            if delay_s > 0:
                self._wanted.clear()
                try:
                    await asyncio.wait_for(self._wanted.wait(), timeout=delay_s)
                except asyncio.TimeoutError:
                    pass
                if self._closed:
                    return
            protocol = _Protocol(self)
            established_before = self._connections_made
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: protocol,
                        host,
                        port,
                        ssl=self._tls,
                        server_hostname=(self._tls_server_hostname or host) if self._tls else None,
                    ),
                    timeout=self._connect_timeout_s,
                )
            except (OSError, asyncio.TimeoutError) as error:
                protocol.close(str(error))
                if self._protocol is protocol:
                    self._protocol = None
                    self._session.connection_lost(str(error))
                self._plan.failed(error)
                continue
            self._address = (host, port)
            if self._closed:
                protocol.close("the client was closed")
            reason = await protocol.closed
            self._protocol = None
            self._session.connection_lost(reason)
            self._notify()
            if self._connections_made == established_before:
                self._plan.failed(ConnectionError(reason))

    def _give_up(self) -> None:
        described = ", ".join(f"{host}:{port}" for host, port in self._plan.addresses)
        error = ConnectionFailed(
            f"no esdb server reachable at {described} after {self._retry.max_retries} retries: "
            f"{self._plan.last_error}",
            self._plan.last_error,
        )
        self._gave_up = error
        self._session.fail_all(error)
        self._notify()

    def _on_connection_made(self, protocol: _Protocol) -> None:
        self._session.connection_made()
        self._protocol = protocol

    def _on_data(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        was_established = self._session.established
        try:
            out = self._session.receive(data)
        except ProtocolViolation as error:
            protocol.close(str(error))
            return
        protocol.write(out)
        if self._session.established and not was_established:
            self._connections_made += 1
            self._plan.succeeded()
            if self._session.info is not None:
                # A cluster node names every member: fail over to them too.
                self._plan.learn(self._session.info.client_urls)
            self._notify()
        if self._session.must_close is not None:
            protocol.close(str(self._session.must_close))

    # --- calls -------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if data and self._protocol is not None:
            self._protocol.write(data)

    def _want_connection(self) -> None:
        if self._closed:
            raise ClientClosed("the client was closed")
        if self._supervisor is None:
            raise ClientClosed("the client is not started: await client.start() first")
        if self._gave_up is not None:
            self._gave_up = None
            self._plan.reset()
            assert self._wanted is not None
            self._wanted.set()

    async def _call(self, request: Request[T]) -> T:
        retries = 0
        loop = asyncio.get_running_loop()
        while True:
            future: "asyncio.Future[T]" = loop.create_future()

            def on_done(value: Any, error: Optional[BaseException], future: "asyncio.Future[T]" = future) -> None:
                if future.done():
                    return
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)

            call = Call(request, on_done)
            self._want_connection()
            check_payload(request, self._session.info)
            self._send(self._session.submit(call))
            if self._protocol is not None:
                await self._protocol.drain()
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout=self._request_timeout_s)
            except asyncio.TimeoutError:
                self._session.cancel(call)
                raise RequestTimeout(f"no reply within {self._request_timeout_s} s") from None
            except EsdbError as error:
                if not (error.retryable and request.retry_safe) or retries >= self._retry.max_retries:
                    raise
                retries += 1
                if isinstance(error, ServerError):
                    await asyncio.sleep(self._retry.delay_s(retries))

    # --- session -----------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._call(commands.ping())

    async def use(self, store: str) -> None:
        info = self._session.info
        if info is not None and info.stores and store not in info.stores:
            raise StoreNotFound("store_not_found", f"no store named {store} on this server")
        await self._call(commands.use(store))

    async def help(self) -> str:
        return await self._call(commands.help_text())

    async def stats(self) -> Stats:
        return await self._call(commands.stats())

    # --- streams -----------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Union[NewEvent, Sequence[NewEvent]],
        expected: ExpectedVersion = ANY,
    ) -> AppendResult:
        batch = [events] if isinstance(events, NewEvent) else list(events)
        return await self._call(commands.append(stream, batch, expected))

    async def read_stream(
        self,
        stream: str,
        from_version: Union[int, Literal["end"]] = 0,
        count: int = DEFAULT_PAGE_SIZE,
        backward: bool = False,
    ) -> List[RecordedEvent]:
        return await self._call(commands.read_stream(stream, from_version, count, backward))

    async def iter_stream(
        self,
        stream: str,
        from_version: Union[int, Literal["end"]] = 0,
        backward: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        count = page_count(page_size, self.info.max_read_count)
        start: Optional[Union[int, Literal["end"]]] = from_version
        while start is not None:
            page = await self.read_stream(stream, start, count, backward)
            for event in page:
                yield event
            start = next_version(page, backward)

    async def read_all(
        self,
        from_position: Union[int, Literal["end"]] = 0,
        count: int = DEFAULT_PAGE_SIZE,
        backward: bool = False,
    ) -> List[RecordedEvent]:
        return await self._call(commands.read_all(from_position, count, backward))

    async def iter_all(
        self,
        from_position: Union[int, Literal["end"]] = 0,
        backward: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        count = page_count(page_size, self.info.max_read_count)
        start: Optional[Union[int, Literal["end"]]] = from_position
        while start is not None:
            page = await self.read_all(start, count, backward)
            for event in page:
                yield event
            start = next_position(page, backward)

    async def append_multi(
        self, parts: Sequence[AppendPart], condition: Optional[JsonObject] = None
    ) -> List[PartResult]:
        return await self._call(commands.append_multi(parts, condition))

    async def read_tags(
        self, tags: Sequence[str], from_position: int = 0, count: int = DEFAULT_PAGE_SIZE
    ) -> List[RecordedEvent]:
        return await self._call(commands.read_tags(tags, from_position, count))

    async def read_types(
        self, event_types: Sequence[str], from_position: int = 0, count: int = DEFAULT_PAGE_SIZE
    ) -> List[RecordedEvent]:
        return await self._call(commands.read_types(event_types, from_position, count))

    async def iter_types(
        self, event_types: Sequence[str], from_position: int = 0, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[RecordedEvent]:
        count = page_count(page_size, self.info.max_read_count)
        start: Optional[int] = from_position
        while start is not None:
            page = await self.read_types(event_types, start, count)
            for event in page:
                yield event
            start = next_position(page, False)

    async def version(self, stream: str) -> int:
        return await self._call(commands.version(stream))

    async def exists(self, stream: str) -> bool:
        return await self._call(commands.exists(stream))

    async def list_streams(self, after: Optional[str] = None, count: Optional[int] = None) -> List[str]:
        return await self._call(commands.streams(after, count))

    async def iter_streams(self, page_size: int = 10_000) -> AsyncIterator[str]:
        after: Optional[str] = None
        while True:
            page = await self.list_streams(after, page_size)
            for stream in page:
                yield stream
            if not page:
                return
            after = page[-1]

    async def delete(self, stream: str, expected: ExpectedVersion = ANY) -> None:
        await self._call(commands.delete(stream, expected))

    # --- snapshots ---------------------------------------------------------------------------

    async def save_snapshot(
        self,
        stream: str,
        version: int,
        data: JsonValue,
        metadata: Optional[JsonObject] = None,
        keep: Optional[int] = None,
    ) -> None:
        await self._call(commands.snapshot_save(stream, version, data, metadata, keep))

    async def load_snapshot(self, stream: str) -> Optional[Snapshot]:
        return await self._call(commands.snapshot_load(stream, None))

    async def load_snapshot_at(self, stream: str, version: int) -> Optional[Snapshot]:
        return await self._call(commands.snapshot_load(stream, version))

    async def list_snapshots(
        self, stream: str, from_version: int = 0, count: Optional[int] = None
    ) -> List[Snapshot]:
        return await self._call(commands.snapshot_list(stream, from_version, count))

    async def delete_snapshots(self, stream: str, version: Optional[int] = None) -> None:
        await self._call(commands.snapshot_delete(stream, version))

    async def snapshot_exists(self, stream: str, version: Optional[int] = None) -> bool:
        return await self._call(commands.snapshot_exists(stream, version))

    async def aggregate(
        self,
        stream: str,
        from_snapshot: bool = False,
        order: Literal["foldl", "foldr"] = "foldl",
        raw: bool = False,
    ) -> Aggregate:
        return await self._call(commands.aggregate(stream, from_snapshot, order, raw))

    # --- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, selector: Selector, start: StartFrom = ORIGIN) -> "AsyncSubscription":
        """A catch-up subscription; ``async for event in subscription``."""
        if start == "end":
            last = await self.read_all("end", 1, backward=True)
            start = last[0].position + 1 if last else 0
        core = self._new_core(selector, start, None)
        return AsyncSubscription(self, core, await self._start(core))

    async def subscribe_persistent(
        self,
        name: str,
        selector: Selector,
        start: StartFrom = ORIGIN,
        max_in_flight: Optional[int] = None,
        ack_timeout_ms: Optional[int] = None,
        max_retries: Optional[int] = None,
    ) -> "AsyncPersistentSubscription":
        core = self._new_core(selector, start, name, max_in_flight, ack_timeout_ms, max_retries)
        return AsyncPersistentSubscription(self, core, await self._start(core))

    def _new_core(
        self,
        selector: Selector,
        start: StartFrom,
        name: Optional[str],
        max_in_flight: Optional[int] = None,
        ack_timeout_ms: Optional[int] = None,
        max_retries: Optional[int] = None,
    ) -> SubscriptionCore:
        core = SubscriptionCore(
            self._session.new_sid(),
            selector,
            start,
            name,
            max_in_flight,
            ack_timeout_ms,
            max_retries,
            self._buffer_events,
        )
        core.request()  # validates the arguments before anything is sent
        return core

    async def _start(self, core: SubscriptionCore) -> asyncio.Event:
        event = asyncio.Event()
        core.wake = event.set
        self._want_connection()
        self._send(self._session.add_subscription(core))

        async def confirmed() -> None:
            while not core.confirmed and not core.closed:
                event.clear()
                await event.wait()

        try:
            await asyncio.wait_for(confirmed(), timeout=self._request_timeout_s)
        except asyncio.TimeoutError:
            self._send(self._session.remove_subscription(core))
            raise RequestTimeout(f"SUB not answered within {self._request_timeout_s} s") from None
        if core.error is not None:
            self._session.subscriptions.pop(core.sid, None)
            raise core.error
        return event

    async def _next_event(
        self, core: SubscriptionCore, event: asyncio.Event, timeout_s: Optional[float]
    ) -> Optional[RecordedEvent]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            taken, resume = core.take()
            if resume:
                self._send(self._session.resume(core))
            if isinstance(taken, UnreadableEvent):
                raise taken
            if taken is not None:
                return taken
            if core.closed:
                if core.error is not None:
                    raise core.error
                return None
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                return None

    def _unsubscribe(self, core: SubscriptionCore) -> None:
        self._send(self._session.remove_subscription(core))

    async def _calls(self, requests: List[Request[None]]) -> None:
        for request in requests:
            await self._call(request)

    # --- persistent subscription management -------------------------------------------------

    async def list_persistent_subscriptions(self) -> List[SubscriptionInfo]:
        return await self._call(commands.psub_list())

    async def get_persistent_subscription(self, name: str) -> SubscriptionInfo:
        return await self._call(commands.psub_get(name))

    async def persistent_subscription_exists(self, name: str) -> bool:
        return await self._call(commands.psub_exists(name))

    async def delete_persistent_subscription(self, name: str, selector_type: Optional[str] = None) -> None:
        await self._call(commands.psub_delete(name, selector_type))

    async def parked_events(
        self, name: str, from_position: int = 0, count: Optional[int] = None
    ) -> List[RecordedEvent]:
        return await self._call(commands.psub_parked(name, from_position, count))

    async def replay_parked(self, name: str) -> None:
        await self._call(commands.psub_replay(name))


async def connect(addresses: AddressesLike = "127.0.0.1:4350", **options: Any) -> AsyncClient:
    """Connects an :class:`AsyncClient`."""
    return await AsyncClient.connect(addresses, **options)


class AsyncSubscription:
    """A catch-up subscription: ``async for event in subscription``, or :meth:`next_event`."""

    def __init__(self, client: AsyncClient, core: SubscriptionCore, event: asyncio.Event) -> None:
        self._client = client
        self._core = core
        self._event = event

    @property
    def sid(self) -> str:
        return self._core.sid

    @property
    def is_live(self) -> bool:
        return self._core.poll_live()

    @property
    def last_position(self) -> Optional[int]:
        return self._core.last_position

    @property
    def pauses(self) -> int:
        return self._core.pauses

    async def next_event(self, timeout_s: Optional[float] = None) -> Optional[RecordedEvent]:
        """The next event, or ``None`` after ``timeout_s`` (or once unsubscribed). Raises
        :class:`~esdb.UnreadableEvent` in place of an event the server could not parse; the
        subscription goes on after it (see :class:`esdb.Subscription`)."""
        return await self._client._next_event(self._core, self._event, timeout_s)

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> RecordedEvent:
        event = await self.next_event(None)
        if event is None:
            raise StopAsyncIteration
        return event

    def unsubscribe(self) -> None:
        self._client._unsubscribe(self._core)

    close = unsubscribe

    async def __aenter__(self: "AS") -> "AS":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.unsubscribe()


AS = TypeVar("AS", bound=AsyncSubscription)


def _positions(items: Sequence[Union[RecordedEvent, PositionItem]]) -> List[PositionItem]:
    return [item.position if isinstance(item, RecordedEvent) else item for item in items]


class AsyncPersistentSubscription(AsyncSubscription):
    """A consumer of a persistent subscription: acknowledge what you processed."""

    @property
    def name(self) -> str:
        assert self._core.name is not None
        return self._core.name

    async def ack(self, *events: Union[RecordedEvent, PositionItem]) -> None:
        await self._client._calls(commands.ack(self.sid, _positions(events)))

    async def ack_up_to(self, position: int) -> None:
        await self._client._calls([commands.ack_up_to(self.sid, position)])

    async def nack(self, action: NackAction, *events: Union[RecordedEvent, PositionItem]) -> None:
        await self._client._calls(commands.nack(self.sid, action, _positions(events)))
