"""The sync client against a real server: every operation, typed errors, pipelining."""

from __future__ import annotations

import threading
from typing import Dict, List

import pytest

import esdb
from esdb import NewEvent, Selector
from esdb_server import EsdbServer
from conftest import ServerFactory
from waiting import eventually


def test_append_read_and_conflict(server: EsdbServer) -> None:
    with esdb.Client(server.address, name="tests") as client:
        first = client.append("user-1", NewEvent("UserCreated", {"name": "Ada"}), expected=esdb.NO_STREAM)
        assert (first.stream, first.last_version, first.last_position) == ("user-1", 0, 0)
        batch = client.append(
            "user-1",
            [NewEvent("UserRenamed", {"name": "Ada L."}, metadata={"by": "admin"}), NewEvent("UserVerified", True)],
            expected=0,
        )
        assert (batch.last_version, batch.last_position, batch.first_version) == (2, 2, 1)
        with pytest.raises(esdb.WrongExpectedVersion) as conflict:
            client.append("user-1", NewEvent("UserRenamed", {"name": "Bob"}), expected=0)
        assert conflict.value.code == "wrong_expected_version"
        assert conflict.value.message == "stream user-1: expected version 0, actual 2"
        with pytest.raises(esdb.WrongExpectedVersion):
            client.append("user-1", NewEvent("X", 1), expected=esdb.NO_STREAM)
        with pytest.raises(esdb.WrongExpectedVersion):
            client.append("nobody", NewEvent("X", 1), expected=esdb.STREAM_EXISTS)
        assert client.append("user-1", NewEvent("X", 1), expected=esdb.STREAM_EXISTS).last_version == 3

        events = client.read_stream("user-1")
        assert [e.version for e in events] == [0, 1, 2, 3]
        assert [e.event_type for e in events] == ["UserCreated", "UserRenamed", "UserVerified", "X"]
        assert events[1].data == {"name": "Ada L."} and events[1].metadata == {"by": "admin"}
        assert events[2].data is True and events[2].metadata == {}
        assert [e.event_id for e in events[1:3]] == list(batch.event_ids)
        assert events[1].epoch_us == events[2].epoch_us > 1_600_000_000_000_000
        backward = client.read_stream("user-1", "end", 2, backward=True)
        assert [e.version for e in backward] == [3, 2]
        assert client.read_stream("user-1", 9) == []
        with pytest.raises(esdb.StreamNotFound):
            client.read_stream("nobody")
        assert client.version("user-1") == 3 and client.version("nobody") == -1
        assert client.exists("user-1") and not client.exists("nobody")


def test_an_append_with_the_same_event_ids_is_answered_once(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        events = [NewEvent("Charged", {"cents": 100}), NewEvent("Settled", {})]
        first = client.append("pay-1", events, expected=esdb.NO_STREAM)
        again = client.append(
            "pay-1", [NewEvent(e.event_type, e.data, event_id=i) for e, i in zip(events, first.event_ids)], expected=esdb.NO_STREAM
        )
        assert (again.last_version, again.last_position) == (first.last_version, first.last_position)
        assert len(client.read_stream("pay-1")) == 2
        with pytest.raises(esdb.DuplicateEventId):
            client.append("pay-2", NewEvent("Charged", {}, event_id=first.event_ids[0]))


def test_paging_iterators_walk_every_event_both_ways(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        for chunk in range(5):
            client.append("long", [NewEvent("Tick", chunk * 10 + i) for i in range(10)])
            client.append(f"other-{chunk}", NewEvent("Tock", chunk))
        assert [e.data for e in client.iter_stream("long", page_size=7)] == list(range(50))
        assert [e.data for e in client.iter_stream("long", "end", backward=True, page_size=3)] == list(range(49, -1, -1))
        assert [e.data for e in client.iter_stream("long", 45)] == list(range(45, 50))
        every = list(client.iter_all(page_size=4))
        assert [e.position for e in every] == list(range(55))
        assert [e.position for e in client.iter_all("end", backward=True, page_size=6)] == list(range(54, -1, -1))
        tocks = list(client.iter_types(["Tock"], page_size=2))
        assert [e.data for e in tocks] == [0, 1, 2, 3, 4]
        assert [e.event_type for e in client.read_types(["Tick", "Tock"], 50, 100)] == ["Tick", "Tick", "Tick", "Tick", "Tock"]
        assert client.list_streams() == ["long", "other-0", "other-1", "other-2", "other-3", "other-4"]
        assert client.list_streams("other-2", 2) == ["other-3", "other-4"]
        assert list(client.iter_streams(page_size=2)) == client.list_streams()


def test_delete_hides_a_stream_and_recreating_continues_its_versions(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        client.append("cart-7", [NewEvent("ItemAdded", 1), NewEvent("ItemAdded", 2)])
        with pytest.raises(esdb.WrongExpectedVersion):
            client.delete("cart-7", expected=0)
        client.delete("cart-7", expected=1)
        with pytest.raises(esdb.StreamDeleted):
            client.read_stream("cart-7")
        assert client.version("cart-7") == -1 and not client.exists("cart-7")
        client.delete("cart-7")  # again: a no-op
        assert client.append("cart-7", NewEvent("ItemAdded", 3), expected=esdb.NO_STREAM).last_version == 2
        assert [e.version for e in client.read_stream("cart-7")] == [2]
        assert len(client.read_all()) == 3


def test_snapshots_and_server_side_aggregation(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        client.append(
            "acct-1",
            [NewEvent("Opened", {"owner": "Ada", "balance": {"$sum": 10}}), NewEvent("Deposited", {"balance": {"$sum": 5}})],
        )
        assert client.load_snapshot("acct-1") is None
        assert not client.snapshot_exists("acct-1") and client.list_snapshots("acct-1") == []
        state = client.aggregate("acct-1", raw=True)
        assert (state.stream, state.version, state.state) == ("acct-1", 1, {"balance": {"$sum": 15}, "owner": "Ada"})
        client.save_snapshot("acct-1", 0, {"owner": "Ada"})
        client.save_snapshot("acct-1", state.version, state.state, metadata={"by": "test"})
        latest = client.load_snapshot("acct-1")
        assert latest is not None and latest.version == 1 and latest.metadata == {"by": "test"}
        assert latest.data == state.state and latest.stream_id == "acct-1"
        at_zero = client.load_snapshot_at("acct-1", 0)
        assert at_zero is not None and at_zero.data == {"owner": "Ada"}
        assert client.load_snapshot_at("acct-1", 5) is None
        assert [s.version for s in client.list_snapshots("acct-1")] == [0, 1]
        assert [s.version for s in client.list_snapshots("acct-1", 1, 10)] == [1]
        assert client.snapshot_exists("acct-1", 0) and not client.snapshot_exists("acct-1", 2)
        client.append("acct-1", NewEvent("Withdrawn", {"balance": {"$sum": -3}}))
        assert client.aggregate("acct-1", from_snapshot=True).state == {"balance": 12, "owner": "Ada"}
        assert client.aggregate("acct-1", order="foldr").state == {"balance": 12, "owner": "Ada"}
        with pytest.raises(esdb.InvalidArgument):
            client.save_snapshot("acct-1", 9, {})
        with pytest.raises(esdb.StreamNotFound):
            client.save_snapshot("nobody", 0, {})
        client.save_snapshot("acct-1", 2, {"balance": 12}, keep=1)
        assert [s.version for s in client.list_snapshots("acct-1")] == [2]
        client.delete_snapshots("acct-1", 2)
        assert not client.snapshot_exists("acct-1")
        client.save_snapshot("acct-1", 2, {"balance": 12})
        client.delete_snapshots("acct-1")
        assert client.list_snapshots("acct-1") == []
        with pytest.raises(esdb.StreamNotFound):
            client.aggregate("nobody")


def test_stores_stats_help_and_ping(server_factory: ServerFactory) -> None:
    server = server_factory(["--store", "default", "--store", "audit"])
    with esdb.Client(server.address) as client:
        assert client.info.stores == ("default", "audit") and client.info.proto == 1
        assert client.store == "default"
        client.append("s", NewEvent("InDefault", 1))
        client.use("audit")
        assert client.store == "audit"
        assert client.version("s") == -1
        client.append("s", NewEvent("InAudit", 2))
        with pytest.raises(esdb.StoreNotFound):
            client.use("missing")
        stats = client.stats()
        assert stats.stores["audit"].events == 1 and stats.stores["default"].last_position == 0
        assert stats.stores["default"].streams == 1
        # Every write goes through the store's Raft log; a single server leads its own group.
        raft = stats.stores["default"].raft
        assert raft is not None and raft.state == "leader" and raft.leader_id == raft.node_id
        assert raft.applied_index >= 1 and raft.last_log_index >= raft.applied_index
        assert set(client.info.raft) == {"default", "audit"}
        assert client.info.raft["audit"].state == "leader"
        client.use("default")
        assert [e.event_type for e in client.read_stream("s")] == ["InDefault"]
        assert client.help().startswith("esdb commands")
        client.ping()
    with esdb.Client(server.address, store="audit") as client:
        assert [e.event_type for e in client.read_stream("s")] == ["InAudit"]


def test_a_payload_over_max_payload_is_refused_without_losing_the_connection(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        with pytest.raises(esdb.PayloadTooLarge):
            client.append("big", NewEvent("Blob", "x" * (client.info.max_payload + 1)))
        client.append("big", NewEvent("Small", 1))
        assert client.connections_made == 1


def test_bad_arguments_are_refused_before_sending(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        with pytest.raises(ValueError):
            client.append("has space", NewEvent("T", 1))
        with pytest.raises(ValueError):
            client.append("s", [])
        with pytest.raises(esdb.InvalidArgument):
            client.append("$all", NewEvent("T", 1))
        with pytest.raises(esdb.InvalidArgument):
            client.read_types(["a" * 300])
        client.ping()


def test_threads_share_one_pipelined_connection(server: EsdbServer) -> None:
    threads_count, appends_each = 8, 40
    results: Dict[int, List[int]] = {}
    errors: List[BaseException] = []
    with esdb.Client(server.address) as client:

        def work(number: int) -> None:
            try:
                versions = []
                for i in range(appends_each):
                    versions.append(client.append(f"t-{number}", NewEvent("T", i), expected=i - 1 if i else esdb.NO_STREAM).last_version)
                    assert client.version(f"t-{number}") == i
                results[number] = versions
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads_count)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors, errors
        assert all(results[n] == list(range(appends_each)) for n in range(threads_count))
        assert client.connections_made == 1
        assert client.stats().stores["default"].events == threads_count * appends_each


def test_persistent_subscription_management(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        client.append("job-1", [NewEvent("Job", i) for i in range(3)])
        with client.subscribe_persistent("workers", Selector.stream("job-1"), max_retries=0) as sub:
            first, second, third = (sub.next_event(10) for _ in range(3))
            assert first and second and third
            sub.ack(first)
            sub.nack("park", second)
            sub.nack("skip", third)
            info = client.get_persistent_subscription("workers")
            assert info.name == "workers" and info.selector == Selector.stream("job-1")
            assert info.options.max_retries == 0 and info.options.max_in_flight == 100
            info = eventually(
                lambda: client.get_persistent_subscription("workers"), lambda i: i.parked == 1, "parked count"
            )
            assert [s.name for s in client.list_persistent_subscriptions()] == ["workers"]
            assert client.persistent_subscription_exists("workers")
            assert [e.position for e in client.parked_events("workers")] == [second.position]
            client.replay_parked("workers")
            replayed = sub.next_event(10)
            assert replayed is not None and replayed.position == second.position
            sub.ack_up_to(replayed.position)
        with pytest.raises(esdb.SubscriptionConflict):
            client.subscribe_persistent("workers", Selector.stream("other"))
        with pytest.raises(esdb.SubscriptionNotFound):
            client.delete_persistent_subscription("workers", "event_type")
        client.delete_persistent_subscription("workers")
        assert not client.persistent_subscription_exists("workers")
        with pytest.raises(esdb.SubscriptionNotFound):
            client.get_persistent_subscription("workers")


def test_selector_errors_are_typed(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        with pytest.raises(esdb.InvalidSelector):
            client.subscribe(Selector.stream("$nope"))
        with pytest.raises(esdb.InvalidSelector):
            client.subscribe(Selector.event_pattern("a b"))
        with pytest.raises(esdb.UnknownSelectorType):
            client.subscribe(Selector("bogus", "x"))  # type: ignore[arg-type]
        client.ping()
