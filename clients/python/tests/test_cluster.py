"""Against three real esdb processes forming a cluster on loopback: a client given one node's
address learns the others from its INFO (``cluster.client_urls``) and keeps appending, with
exact expected versions, after that node is killed with SIGKILL."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Dict, List

from conftest import FAST_RETRY, ServerFactory
from esdb import Client, NewEvent
from esdb.retry import MAX_LEARNED_ADDRESSES, ConnectPlan, RetryPolicy
from esdb_server import EsdbServer

SECRET = "a python test cluster secret, 32b"
#: How long a new cluster or a leaderless one may take to elect (generous: 2 busy cores).
LEADER_WAIT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cluster(server_factory: ServerFactory, size: int) -> Dict[int, EsdbServer]:
    raft = {node: free_port() for node in range(1, size + 1)}
    peers = ",".join(f"{node}=127.0.0.1:{port}" for node, port in raft.items())
    return {
        node: server_factory(
            [
                "--node-id",
                str(node),
                "--raft",
                f"127.0.0.1:{port}",
                "--peers",
                peers,
                "--cluster-secret",
                SECRET,
                "--log-level",
                "warn,openraft=error",
            ]
        )
        for node, port in raft.items()
    }


def wait_for_named_members(server: EsdbServer, size: int) -> int:
    """Waits until ``server`` is a leader's member whose greeting names all ``size`` client
    addresses; returns the leader's id."""
    deadline = time.monotonic() + LEADER_WAIT_S
    last = None
    while time.monotonic() < deadline:
        with Client(server.address, retry=FAST_RETRY) as probe:
            info = probe.info
            last = info
            raft = info.raft.get("default")
            if raft is not None and raft.leader_id is not None and len(info.client_urls) == size:
                return raft.leader_id
        time.sleep(0.1)
    raise AssertionError(f"no leader with {size} client addresses within {LEADER_WAIT_S} s: {last}")


def test_a_client_given_one_node_fails_over_to_the_members_its_info_names(
    server_factory: ServerFactory,
) -> None:
    nodes = start_cluster(server_factory, 3)
    leader = wait_for_named_members(nodes[1], 3)
    wait_for_named_members(nodes[leader], 3)
    only = nodes[leader]
    sent: List[str] = []
    with Client(only.address, retry=FAST_RETRY) as client:
        assert len(client.info.client_urls) == 3
        assert only.address in client.info.client_urls
        for n in range(30):
            if n == 10:
                only.kill9()
            event_id = str(uuid.uuid4())
            sent.append(event_id)
            event = NewEvent("Counted", {"n": n}, event_id=event_id)
            # Retried by the client after the kill (same event id, exact version): applied once.
            result = client.append("counter", event, expected="no_stream" if n == 0 else n - 1)
            assert result.last_version == n
        assert client.address is not None
        assert f"{client.address[0]}:{client.address[1]}" != only.address, "moved off the killed node"
    survivor = next(server for node, server in nodes.items() if node != leader)
    with Client(survivor.address, retry=FAST_RETRY) as reader:
        stored = [event.event_id for event in reader.read_stream("counter", 0, 100)]
    assert stored == sent, "every append once, in order"


def test_learned_addresses_are_bounded_and_keep_the_given_ones_first(tmp_path: Path) -> None:
    plan = ConnectPlan([("10.0.0.1", 4350)], RetryPolicy())
    plan.learn(["10.0.0.1:4350", "10.0.0.2:4350", "not a port:x", "10.0.0.2:4350"])
    assert plan.addresses == [("10.0.0.1", 4350), ("10.0.0.2", 4350)]
    plan.learn([f"10.1.{n // 256}.{n % 256}:4350" for n in range(MAX_LEARNED_ADDRESSES * 2)])
    assert len(plan.addresses) == 1 + MAX_LEARNED_ADDRESSES
    assert plan.addresses[0] == ("10.0.0.1", 4350)
