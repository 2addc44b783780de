"""Subscriptions against a real server: every selector type, catch-up then live under a
concurrent writer (no gap, no duplicate), and a slow consumer slowing only itself."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Dict, List, Optional, Sequence

import pytest

import esdb
from esdb import NewEvent, RecordedEvent, Selector
from esdb.aio import AsyncClient
from esdb_server import EsdbServer

#: Longest wait for one event in these tests.
EVENT_TIMEOUT_S = 15.0

HISTORY = [
    ("user-1", "UserCreated", {"country": "NL"}),
    ("order-1", "OrderPlaced", {"country": "DE", "total": 5}),
    ("user-2", "UserCreated", {"country": "DE"}),
    ("user-1", "UserRenamed", {"name": "Ada"}),
    ("order-2", "OrderPlaced", {"country": "NL", "total": 7.0}),
    ("invoice-eu-1", "InvoiceSent", {"country": "NL"}),
]

SELECTORS = {
    "all": (Selector.all_streams(), [0, 1, 2, 3, 4, 5]),
    "stream": (Selector.stream("user-1"), [0, 3]),
    "event_type": (Selector.event_type("OrderPlaced", "InvoiceSent"), [1, 4, 5]),
    "event_pattern": (Selector.event_pattern("*-eu-*"), [5]),
    "event_pattern_prefix": (Selector.event_pattern("user-*"), [0, 2, 3]),
    "event_payload": (Selector.event_payload({"data": {"country": "NL"}}), [0, 4, 5]),
    "event_payload_number": (Selector.event_payload({"event_type": "OrderPlaced", "data": {"total": 7}}), [4]),
}


def write_history(client: esdb.Client) -> None:
    for stream, event_type, data in HISTORY:
        client.append(stream, NewEvent(event_type, data))


def take(sub: esdb.Subscription, count: int) -> List[RecordedEvent]:
    events: List[RecordedEvent] = []
    for _ in range(count):
        event = sub.next_event(EVENT_TIMEOUT_S)
        assert event is not None, f"only {len(events)} of {count} events arrived"
        events.append(event)
    return events


@pytest.mark.parametrize("kind", sorted(SELECTORS))
def test_every_selector_type_catch_up_and_persistent(server: EsdbServer, kind: str) -> None:
    selector, positions = SELECTORS[kind]
    with esdb.Client(server.address) as client:
        write_history(client)
        with client.subscribe(selector) as sub:
            assert [e.position for e in take(sub, len(positions))] == positions
            assert sub.next_event(0.2) is None
            assert sub.is_live
        with client.subscribe_persistent(f"p-{kind}", selector) as persistent:
            events = take(persistent, len(positions))
            assert [e.position for e in events] == positions
            persistent.ack(*events)
        # Live delivery of a new matching event, to both kinds.
        with client.subscribe(selector, start=esdb.END) as live, client.subscribe_persistent(f"p-{kind}", selector) as persistent:
            stream, event_type, data = HISTORY[positions[0]]
            appended = client.append(stream, NewEvent(event_type, data))
            assert [e.position for e in take(live, 1)] == [appended.last_position]
            assert [e.position for e in take(persistent, 1)] == [appended.last_position]


def writer(client: esdb.Client, streams: Sequence[str], total: int, seed: int) -> None:
    rng = random.Random(seed)
    written = 0
    while written < total:
        size = min(rng.randrange(1, 20), total - written)
        stream = rng.choice(streams)
        client.append(stream, [NewEvent("Tick", {"n": written + i}) for i in range(size)])
        written += size


def test_catch_up_then_live_with_a_concurrent_writer(server: EsdbServer) -> None:
    history, live = 300, 700
    with esdb.Client(server.address) as client, esdb.Client(server.address) as writing:
        writer(writing, ["a", "b", "c"], history, seed=1)
        thread = threading.Thread(target=writer, args=(writing, ["a", "b", "c"], live, 2), daemon=True)
        with client.subscribe(Selector.all_streams()) as sub:
            thread.start()
            events = take(sub, history + live)
            thread.join(timeout=60)
            assert sub.next_event(0.3) is None  # nothing more: no duplicate at the end
            assert sub.is_live
        assert [e.position for e in events] == list(range(history + live))
        assert [e.data["n"] for e in events] == list(range(history)) + list(range(live))


def test_asyncio_catch_up_then_live_with_a_concurrent_writer(server: EsdbServer) -> None:
    history, live = 200, 500

    async def main() -> List[int]:
        async with AsyncClient(server.address) as client, AsyncClient(server.address) as writing:
            for i in range(history):
                await writing.append(f"s-{i % 3}", NewEvent("Tick", i))

            async def write_live() -> None:
                # Pipelined: many appends in flight on one connection at once.
                await asyncio.gather(*(writing.append(f"s-{i % 3}", NewEvent("Tick", history + i)) for i in range(live)))

            sub = await client.subscribe(Selector.event_type("Tick"))
            task = asyncio.ensure_future(write_live())
            positions: List[int] = []
            async for event in sub:
                positions.append(event.position)
                if len(positions) == history + live:
                    break
            await task
            assert await sub.next_event(0.3) is None
            assert sub.is_live
            sub.unsubscribe()
            assert await sub.next_event(1) is None
            return positions

    assert asyncio.run(main()) == list(range(history + live))


def test_a_slow_consumer_slows_only_its_own_subscription(server: EsdbServer) -> None:
    total = 600
    with esdb.Client(server.address, subscription_buffer_events=16) as client, esdb.Client(server.address) as writing:
        slow = client.subscribe(Selector.all_streams())
        fast = client.subscribe(Selector.all_streams())
        thread = threading.Thread(target=writer, args=(writing, ["x", "y"], total, 3), daemon=True)
        thread.start()
        # The fast one gets everything while the slow one is not read at all, and calls on the
        # shared connection keep being answered.
        fast_positions = [e.position for e in take(fast, total)]
        thread.join(timeout=60)
        assert client.version("x") >= 0
        assert fast_positions == list(range(total))
        assert slow.pauses >= 1
        # The slow one, read at last, has lost and doubled nothing.
        assert [e.position for e in take(slow, total)] == list(range(total))
        assert slow.next_event(0.3) is None
        assert client.connections_made == 1
        slow.unsubscribe()
        fast.unsubscribe()


def test_unsubscribe_ends_iteration(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        client.append("s", NewEvent("T", 1))
        sub = client.subscribe(Selector.stream("s"))
        assert take(sub, 1)[0].data == 1
        received: Dict[str, Optional[List[RecordedEvent]]] = {"events": None}

        def consume() -> None:
            received["events"] = list(sub)

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        sub.unsubscribe()
        thread.join(timeout=10)
        assert received["events"] == []
        client.append("s", NewEvent("T", 2))
        client.ping()
