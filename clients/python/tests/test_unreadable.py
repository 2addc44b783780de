"""Stored records that break the protocol's JSON rules (as an older server or a damaged disk
may have left them), seeded with the server crate's test tool while no server runs: an
``event_payload`` catch-up subscription raises :class:`esdb.UnreadableEvent` in their place and
goes on (also across a reconnect), a persistent one parks them with ``parked_reason``, ``AGG``
answers ``unreadable_event``, and plain reads return them as stored."""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path
from typing import List, Union

import pytest

import esdb
from esdb import NewEvent, RecordedEvent, Selector
from esdb.aio import AsyncClient
from conftest import FAST_RETRY, ServerFactory
from esdb_server import seed_unreadable, seed_unreadable_binary
from waiting import eventually

pytestmark = pytest.mark.skipif(
    seed_unreadable_binary() is None,
    reason="target/debug/examples/seed_unreadable is not built "
    "(cargo build --example seed_unreadable; run-tests.sh and scripts/test.sh build it)",
)

#: Longest wait for one event in these tests.
EVENT_TIMEOUT_S = 15.0

#: Stream `acct`, positions 0 to 4: readable, out-of-range number, lone surrogate, readable,
#: nesting past the limit. The last one is unreadable, so resuming after it is tested.
SEEDED = [
    '{"x":1,"n":0}',
    '{"x":1,"n":1e400}',
    '{"x":1,"s":"\\ud800"}',
    '{"x":1,"n":3}',
    '{"x":1,"d":' + "[" * 200 + "]" * 200 + "}",
]
READABLE = [0, 3]
UNREADABLE = [1, 2, 4]
PAYLOAD = Selector.event_payload({"data": {"x": 1}})


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "seeded"
    seed_unreadable(directory, "acct", SEEDED)
    return directory


Item = Union[RecordedEvent, esdb.UnreadableEvent]


def next_item(sub: esdb.Subscription) -> Item:
    """The next event, or the UnreadableEvent raised in its place."""
    try:
        event = sub.next_event(EVENT_TIMEOUT_S)
    except esdb.UnreadableEvent as unreadable:
        return unreadable
    assert event is not None, "no event arrived"
    return event


def describe(item: Item) -> str:
    if isinstance(item, esdb.UnreadableEvent):
        return f"unreadable {item.position}"
    return f"event {item.position}"


def check_unreadable(item: Item, position: int) -> None:
    assert isinstance(item, esdb.UnreadableEvent), item
    assert item.code == "unreadable_event" and not item.retryable
    assert (item.stream, item.version, item.position) == ("acct", position, position)
    assert f"position {position}" in item.reason, item.reason
    assert item.reason == item.message


def test_a_catch_up_subscription_raises_each_unreadable_event_and_goes_on(
    server_factory: ServerFactory, data_dir: Path
) -> None:
    server = server_factory(data_dir=data_dir)
    with esdb.Client(server.address, retry=FAST_RETRY) as client, client.subscribe(PAYLOAD) as sub:
        items = take_with_for(sub, len(SEEDED))
        assert [describe(item) for item in items] == [
            "event 0",
            "unreadable 1",
            "unreadable 2",
            "event 3",
            "unreadable 4",
        ]
        for position in UNREADABLE:
            check_unreadable(items[position], position)
        assert sub.last_position == 4, "the resume position is past the unreadable event"

        # The resume position survives a reconnect: after kill -9 and a restart the
        # subscription subscribes again from 5, so event 4 is not raised again.
        server.kill9()
        server.restart()
        client.append("acct", NewEvent("T", {"x": 1, "n": 5}))
        event = sub.next_event(EVENT_TIMEOUT_S)
        assert event is not None and event.position == 5 and event.data == {"x": 1, "n": 5}


def take_with_for(sub: esdb.Subscription, count: int) -> List[Item]:
    """``count`` items the way the README shows: a ``for`` loop ends with the error, and
    iterating the subscription again goes on after it."""
    items: List[Item] = []
    # A `for` loop waits without a timeout: unsubscribing ends it, should events not come.
    watchdog = threading.Timer(EVENT_TIMEOUT_S, sub.unsubscribe)
    watchdog.start()
    try:
        while len(items) < count:
            try:
                for event in sub:
                    items.append(event)
                    if len(items) == count:
                        break
                else:
                    raise AssertionError(f"only {len(items)} of {count} items arrived")
            except esdb.UnreadableEvent as unreadable:
                items.append(unreadable)
    finally:
        watchdog.cancel()
    return items


def test_the_async_client_raises_unreadable_events_too(
    server_factory: ServerFactory, data_dir: Path
) -> None:
    server = server_factory(data_dir=data_dir)

    async def run() -> List[str]:
        seen: List[str] = []
        async with AsyncClient(server.address) as client:
            sub = await client.subscribe(PAYLOAD)
            while len(seen) < len(SEEDED):
                try:
                    event = await sub.next_event(EVENT_TIMEOUT_S)
                    assert event is not None, "no event arrived"
                    seen.append(f"event {event.position}")
                except esdb.UnreadableEvent as unreadable:
                    assert unreadable.stream == "acct"
                    seen.append(f"unreadable {unreadable.position}")
            sub.unsubscribe()
        return seen

    assert asyncio.run(run()) == ["event 0", "unreadable 1", "unreadable 2", "event 3", "unreadable 4"]


def test_a_persistent_subscription_parks_them_with_the_reason(
    server_factory: ServerFactory, data_dir: Path
) -> None:
    server = server_factory(data_dir=data_dir)
    with esdb.Client(server.address) as client:
        with client.subscribe_persistent("worker", PAYLOAD) as sub:
            delivered = [sub.next_event(EVENT_TIMEOUT_S) for _ in READABLE]
            assert [event.position for event in delivered if event is not None] == READABLE
            sub.ack(*[event for event in delivered if event is not None])
        parked = eventually(
            lambda: client.parked_events("worker"),
            lambda events: len(events) == len(UNREADABLE),
            "parked events",
        )
        assert [event.position for event in parked] == UNREADABLE
        for event in parked:
            assert event.parked_reason is not None
            assert event.parked_reason.startswith(f"unreadable: record at position {event.position}")
            assert event.stream_id == "acct" and event.event_type == "Seeded"
        assert client.get_persistent_subscription("worker").parked == len(UNREADABLE)


def test_aggregate_raises_unreadable_event_and_plain_reads_return_records_as_stored(
    server_factory: ServerFactory, data_dir: Path
) -> None:
    server = server_factory(data_dir=data_dir)
    with esdb.Client(server.address) as client:
        with pytest.raises(esdb.UnreadableEvent) as raised:
            client.aggregate("acct")
        assert raised.value.code == "unreadable_event"
        assert "position 1" in raised.value.message
        assert raised.value.position is None, "AGG's error names the position in its message only"

        events = client.read_stream("acct")
        assert [event.version for event in events] == [0, 1, 2, 3, 4]
        assert math.isinf(events[1].data["n"]), "Python reads 1e400 as infinity"
        assert events[2].data["s"] == "\ud800"
        assert all(event.parked_reason is None for event in events)
