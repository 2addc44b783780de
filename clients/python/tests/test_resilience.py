"""Failures against real servers: failover between addresses, giving up, never retrying the
store's own answers, and subscriptions resuming after the client or the server is killed."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Set

import pytest

import esdb
from esdb import NewEvent, RetryPolicy, Selector
from esdb_server import EsdbServer
from conftest import FAST_RETRY, ServerFactory
from waiting import eventually

EVENT_TIMEOUT_S = 20.0


def error_count(server: EsdbServer, code: str) -> float:
    match = re.search(rf'^esdb_error_sent_total{{code="{code}"}} (\S+)$', server.metrics(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_failover_to_the_next_address_when_one_server_stops(server_factory: ServerFactory) -> None:
    first, second = server_factory(), server_factory()
    with esdb.Client([first.address, second.address], retry=FAST_RETRY) as client:
        assert client.address == ("127.0.0.1", first.port)
        client.append("where", NewEvent("Written", "first"))
        first.stop()
        # The next call fails over: it is sent again on a connection to the second server.
        client.append("where", NewEvent("Written", "second"))
        assert client.address == ("127.0.0.1", second.port)
        assert client.connections_made == 2
    with esdb.Client(second.address) as direct:
        assert [e.data for e in direct.read_stream("where")] == ["second"]
    # A client given a dead address first connects to the live one.
    with esdb.Client([first.address, second.address], retry=FAST_RETRY) as client:
        assert client.address == ("127.0.0.1", second.port)
        assert client.version("where") == 0


def test_connecting_gives_up_after_the_retry_budget(server_factory: ServerFactory) -> None:
    dead = server_factory()
    dead.stop()
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, max_retries=3)
    with pytest.raises(esdb.ConnectionFailed) as failed:
        esdb.Client(dead.address, retry=policy)
    assert dead.address in str(failed.value)


def test_answers_from_the_store_are_never_retried(server: EsdbServer) -> None:
    with esdb.Client(server.address, retry=FAST_RETRY) as client:
        client.append("s", NewEvent("T", 1))
        with pytest.raises(esdb.WrongExpectedVersion):
            client.append("s", NewEvent("T", 2), expected=esdb.NO_STREAM)
        with pytest.raises(esdb.StreamNotFound):
            client.read_stream("nobody")
        client.ping()
    assert error_count(server, "wrong_expected_version") == 1
    assert error_count(server, "stream_not_found") == 1


def test_appends_in_flight_across_a_server_kill_are_written_once(server: EsdbServer) -> None:
    threads_count, appends_each = 4, 100
    errors: List[BaseException] = []
    ids: List[str] = []
    with esdb.Client(server.address, retry=FAST_RETRY) as client:
        started = threading.Barrier(threads_count + 1)

        def work(number: int) -> None:
            try:
                started.wait()
                for i in range(appends_each):
                    ids.extend(client.append(f"w-{number}", NewEvent("T", i)).event_ids)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads_count)]
        for worker in workers:
            worker.start()
        started.wait()
        time.sleep(0.05)  # let appends be in flight: this is when the server dies
        server.kill9()
        server.restart()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors, errors
        assert client.connections_made >= 2
        stored = [e.event_id for e in client.iter_all()]
    assert sorted(stored) == sorted(ids)
    assert len(set(stored)) == threads_count * appends_each


def test_catch_up_resumes_after_a_server_kill_without_gap_or_duplicate(server: EsdbServer) -> None:
    with esdb.Client(server.address, retry=FAST_RETRY) as client:
        client.append("a", [NewEvent("T", i) for i in range(100)])
        sub = client.subscribe(Selector.all_streams())
        positions = [sub.next_event(EVENT_TIMEOUT_S) for _ in range(50)]
        server.kill9()
        server.restart()
        with esdb.Client(server.address) as writing:
            writing.append("b", [NewEvent("T", i) for i in range(50)])
        while len(positions) < 150:
            event = sub.next_event(EVENT_TIMEOUT_S)
            assert event is not None, f"stalled after {len(positions)} events"
            positions.append(event)
        assert sub.next_event(0.3) is None
        assert [e.position for e in positions if e] == list(range(150))
        assert client.connections_made == 2


def test_persistent_resumes_from_its_checkpoint_after_a_server_kill(server: EsdbServer) -> None:
    with esdb.Client(server.address, retry=FAST_RETRY) as client:
        client.append("jobs", [NewEvent("Job", i) for i in range(100)])
        sub = client.subscribe_persistent("billing", Selector.stream("jobs"))
        for _ in range(50):
            event = sub.next_event(EVENT_TIMEOUT_S)
            assert event is not None
            sub.ack(event)
        saved = eventually(
            lambda: client.get_persistent_subscription("billing").checkpoint, lambda c: c == 50, "checkpoint"
        )
        server.kill9()
        server.restart()
        with esdb.Client(server.address) as writing:
            writing.append("jobs", [NewEvent("Job", 100 + i) for i in range(50)])
        after: Set[int] = set()
        while after != set(range(saved, 150)):
            event = sub.next_event(EVENT_TIMEOUT_S)
            assert event is not None, f"missing {sorted(set(range(saved, 150)) - after)[:5]}…"
            # Events acknowledged before the checkpoint was saved are never delivered again.
            assert event.position >= saved
            after.add(event.position)
            sub.ack(event)
        assert client.connections_made == 2


CHILD = """
import sys, esdb
client = esdb.Client(sys.argv[1])
sub = client.subscribe_persistent("billing", esdb.Selector.event_type("Invoice"))
for event in sub:
    sub.ack(event)
    print(event.position, flush=True)
"""


def read_positions(child: "subprocess.Popen[bytes]", count: int) -> List[int]:
    """The first ``count`` positions the child printed, waiting at most EVENT_TIMEOUT_S."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    output = b""
    while (printed := output.count(b"\n")) < count:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        assert ready, f"the child printed only {printed} positions"
        chunk = os.read(fd, 4096)
        assert chunk, f"the child exited after {printed} positions"
        output += chunk
    return [int(line) for line in output.split(b"\n")[:count]]


def test_persistent_resumes_after_the_client_is_killed(server: EsdbServer, tmp_path: Path) -> None:
    with esdb.Client(server.address) as client:
        client.append("invoices", [NewEvent("Invoice", i) for i in range(200)])
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        child = subprocess.Popen([sys.executable, str(script), server.address], stdout=subprocess.PIPE, env=env)
        try:
            acked = read_positions(child, 60)
        finally:
            child.kill()
            child.wait(timeout=10)
            assert child.stdout is not None
            child.stdout.close()
        assert acked == list(range(60))
        # The server saves the group's checkpoint when its last consumer is gone. (The child may
        # have acknowledged one more event than it printed.)
        checkpoint = eventually(
            lambda: client.get_persistent_subscription("billing").checkpoint, lambda c: c >= 60, "checkpoint"
        )
        assert checkpoint <= 61
        seen: Set[int] = set()
        with client.subscribe_persistent("billing", Selector.event_type("Invoice")) as sub:
            while not seen >= set(range(checkpoint, 200)):
                event = sub.next_event(EVENT_TIMEOUT_S)
                assert event is not None, f"stalled with {len(seen)} events after the kill"
                # Resumed from the checkpoint: what the killed client acknowledged is done.
                assert event.position >= checkpoint
                seen.add(event.position)
                sub.ack(event)
        assert seen == set(range(checkpoint, 200))


def test_a_subscription_resumes_in_its_own_store_after_use_and_a_reconnect(server_factory: ServerFactory) -> None:
    server = server_factory(["--store", "default", "--store", "audit"])
    with esdb.Client(server.address, retry=FAST_RETRY) as client:
        client.use("audit")
        client.append("a", NewEvent("InAudit", 0))
        sub = client.subscribe(Selector.all_streams())
        first = sub.next_event(EVENT_TIMEOUT_S)
        assert first is not None and first.event_type == "InAudit"
        client.use("default")
        client.append("d", NewEvent("InDefault", 0))
        server.kill9()
        server.restart()
        # After the reconnect, requests go to the store last selected, the subscription to its own.
        client.append("d", NewEvent("InDefault", 1))
        with esdb.Client(server.address, store="audit") as other:
            other.append("a", NewEvent("InAudit", 1))
        resumed = sub.next_event(EVENT_TIMEOUT_S)
        assert resumed is not None and (resumed.event_type, resumed.data) == ("InAudit", 1)
        assert sub.next_event(0.3) is None
        assert client.store == "default"
        assert [e.event_type for e in client.read_all()] == ["InDefault", "InDefault"]
        assert client.connections_made == 2


def test_a_full_server_is_retried_until_it_has_room(server_factory: ServerFactory) -> None:
    server = server_factory(["--max-connections", "1"])
    first = esdb.Client(server.address)
    connected: List[esdb.Client] = []
    errors: List[BaseException] = []

    def second() -> None:
        try:
            connected.append(esdb.Client(server.address, retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_retries=40)))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    # too_many_connections is retryable: the second client keeps trying while the first holds
    # the only connection, and gets in once it is closed.
    eventually(lambda: error_count(server, "too_many_connections"), lambda n: n >= 1, "refusals")
    first.close()
    thread.join(timeout=30)
    assert not errors, errors
    with connected[0] as client:
        client.ping()
