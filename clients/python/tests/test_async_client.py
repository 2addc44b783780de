"""The asyncio client against a real server: the same operations as the sync client, concurrent
coroutines pipelined on one connection, subscriptions as ``async for``, and reconnects."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, List, Set, TypeVar

import pytest

import esdb
from esdb import NewEvent, Selector
from esdb.aio import AsyncClient, connect
from esdb_server import EsdbServer
from conftest import FAST_RETRY, ServerFactory

T = TypeVar("T")
EVENT_TIMEOUT_S = 20.0


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout=120)

    return asyncio.run(bounded())


def test_every_stream_operation(server_factory: ServerFactory) -> None:
    server = server_factory(["--store", "default", "--store", "audit"])

    async def main() -> None:
        client = await connect(server.address, name="async-tests")
        try:
            appended = await client.append("user-1", NewEvent("UserCreated", {"name": "Ada"}), expected=esdb.NO_STREAM)
            assert (appended.last_version, appended.last_position) == (0, 0)
            with pytest.raises(esdb.WrongExpectedVersion):
                await client.append("user-1", NewEvent("X", 1), expected=esdb.NO_STREAM)
            await client.append("user-1", [NewEvent("T", i) for i in range(20)], expected=0)
            assert [e.version async for e in client.iter_stream("user-1", page_size=6)] == list(range(21))
            assert [e.version async for e in client.iter_stream("user-1", "end", backward=True, page_size=4)] == list(range(20, -1, -1))
            assert [e.position async for e in client.iter_all(page_size=5)] == list(range(21))
            assert [e.position async for e in client.iter_types(["UserCreated"])] == [0]
            assert [s async for s in client.iter_streams(page_size=1)] == ["user-1"]
            assert await client.version("user-1") == 20 and await client.exists("user-1")
            assert len(await client.read_all(0, 5)) == 5
            assert [e.version for e in await client.read_stream("user-1", 19)] == [19, 20]
            assert await client.list_streams() == ["user-1"]
            await client.save_snapshot("user-1", 3, {"name": "Ada"}, keep=2)
            snapshot = await client.load_snapshot("user-1")
            assert snapshot is not None and snapshot.version == 3
            assert await client.load_snapshot_at("user-1", 2) is None
            assert [s.version for s in await client.list_snapshots("user-1")] == [3]
            assert await client.snapshot_exists("user-1", 3)
            await client.delete_snapshots("user-1")
            assert not await client.snapshot_exists("user-1")
            agg = await client.aggregate("user-1", order="foldr", raw=True)
            assert agg.version == 20 and agg.state == {"name": "Ada"}
            await client.delete("user-1")
            with pytest.raises(esdb.StreamDeleted):
                await client.read_stream("user-1")
            await client.use("audit")
            assert (await client.stats()).stores["audit"].events == 0
            with pytest.raises(esdb.StoreNotFound):
                await client.use("missing")
            assert (await client.help()).startswith("esdb commands")
            await client.ping()
            assert client.info.stores == ("default", "audit") and client.store == "audit"
        finally:
            await client.close()
        with pytest.raises(esdb.ClientClosed):
            await client.ping()

    run(main)


def test_concurrent_coroutines_share_one_connection(server: EsdbServer) -> None:
    async def main() -> None:
        async with AsyncClient(server.address) as client:
            async def chain(number: int) -> List[int]:
                versions = []
                for i in range(25):
                    result = await client.append(f"c-{number}", NewEvent("T", i), expected=i - 1 if i else esdb.NO_STREAM)
                    versions.append(result.last_version)
                return versions

            results = await asyncio.gather(*(chain(n) for n in range(10)))
            assert all(r == list(range(25)) for r in results)
            versions = await asyncio.gather(*(client.version(f"c-{n}") for n in range(10)))
            assert versions == [24] * 10
            assert client.connections_made == 1

    run(main)


def test_persistent_subscription_with_ack_and_nack(server: EsdbServer) -> None:
    async def main() -> None:
        async with AsyncClient(server.address) as client:
            await client.append("jobs", [NewEvent("Job", i) for i in range(10)])
            sub = await client.subscribe_persistent("workers", Selector.event_type("Job"), max_retries=1, max_in_flight=4)
            seen: List[int] = []
            async for event in sub:
                seen.append(event.position)
                if event.position == 3 and seen.count(3) == 1:
                    await sub.nack("retry", event)  # delivered again
                else:
                    await sub.ack(event)
                if len(set(seen)) == 10:
                    break
            assert seen.count(3) == 2 and set(seen) == set(range(10))
            info = await client.get_persistent_subscription("workers")
            assert info.options.max_in_flight == 4
            assert [s.name for s in await client.list_persistent_subscriptions()] == ["workers"]
            assert await client.persistent_subscription_exists("workers")
            assert await client.parked_events("workers") == []
            await client.replay_parked("workers")
            sub.unsubscribe()
            await client.delete_persistent_subscription("workers")
            assert not await client.persistent_subscription_exists("workers")

    run(main)


def test_reconnects_fail_over_and_resume_subscriptions(server_factory: ServerFactory) -> None:
    first = server_factory()

    async def main() -> None:
        async with AsyncClient(first.address, retry=FAST_RETRY) as client:
            await client.append("a", [NewEvent("T", i) for i in range(30)])
            catch_up = await client.subscribe(Selector.all_streams())
            persistent = await client.subscribe_persistent("p", Selector.all_streams())
            for _ in range(30):
                event = await persistent.next_event(EVENT_TIMEOUT_S)
                assert event is not None
                await persistent.ack(event)
            positions = []
            for _ in range(10):
                event = await catch_up.next_event(EVENT_TIMEOUT_S)
                assert event is not None
                positions.append(event.position)
            first.kill9()
            first.restart()
            await client.append("a", [NewEvent("T", 30 + i) for i in range(10)])
            while len(positions) < 40:
                event = await catch_up.next_event(EVENT_TIMEOUT_S)
                assert event is not None, f"stalled after {positions[-1]}"
                positions.append(event.position)
            assert positions == list(range(40))
            resumed: Set[int] = set()
            while not resumed >= set(range(30, 40)):
                event = await persistent.next_event(EVENT_TIMEOUT_S)
                assert event is not None
                resumed.add(event.position)
                await persistent.ack(event)
            assert client.connections_made == 2

    run(main)


def test_failover_between_two_servers(server_factory: ServerFactory) -> None:
    first, second = server_factory(), server_factory()

    async def main() -> None:
        async with AsyncClient(f"{first.address},{second.address}", retry=FAST_RETRY) as client:
            await client.append("x", NewEvent("T", "first"))
            first.stop()
            await client.append("x", NewEvent("T", "second"))
            assert client.address == ("127.0.0.1", second.port)
        first_down = esdb.RetryPolicy(base_delay_s=0.01, max_retries=2)
        with pytest.raises(esdb.ConnectionFailed):
            await AsyncClient.connect(first.address, retry=first_down)

    run(main)
