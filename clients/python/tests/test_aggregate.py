"""The client's fold: the cases of the server's own fold tests (protocol/src/aggregate.rs), and
randomised streams folded by both the real server (AGG) and the client (as in
tests/snapshots.rs: with and without snapshots, raw, foldr)."""

from __future__ import annotations

import random
from typing import Any, Dict, List

import esdb
from esdb.aggregate import aggregate_events, apply_data, finalize, fold, foldl, foldr, initial_state
from esdb_server import EsdbServer

I64_MIN = -(2**63)
U64_MAX = 2**64 - 1
F64_MAX = 1.7976931348623157e308


def test_sums_of_1_5_minus_2_finalize_to_4() -> None:
    raw = foldl([{"n": {"$sum": 1}}, {"n": {"$sum": 5}}, {"n": {"$sum": -2}}])
    assert raw == {"n": {"$sum": 4}}
    assert finalize(raw) == {"n": 4}


def test_a_plain_initial_number_is_summed_onto() -> None:
    raw = foldl([{"n": {"$sum": 10}}], {"n": 5})
    assert raw == {"n": {"$sum": 15}}
    assert finalize(raw) == {"n": 15}


def test_a_sum_over_a_non_number_starts_from_zero() -> None:
    assert foldl([{"n": {"$sum": 2}}], {"n": "five"}) == {"n": {"$sum": 2}}


def test_overwrite_stores_the_value_unwrapped() -> None:
    assert foldl([{"n": {"$sum": 3}}, {"n": {"$overwrite": {"a": 1}}}]) == {"n": {"a": 1}}
    assert finalize(foldl([{"n": {"$overwrite": 7}}, {"n": {"$sum": 1}}])) == {"n": 8}


def test_plain_values_and_nested_objects_replace_without_merging() -> None:
    raw = foldl([{"user": {"name": "Ada", "age": 36}, "tags": [1]}, {"user": {"name": "Bob", "n": {"$sum": 1}}}])
    expected = {"user": {"name": "Bob", "n": {"$sum": 1}}, "tags": [1]}
    assert raw == expected
    assert finalize(raw) == expected


def test_objects_with_more_than_the_tag_are_plain_values() -> None:
    assert finalize(foldl([{"n": {"$sum": 2, "x": 0}}], {"n": 1})) == {"n": {"$sum": 2, "x": 0}}


def test_a_sum_of_a_non_number_replaces_and_finalizes_to_its_inner_value() -> None:
    raw = foldl([{"n": {"$sum": "x"}}], {"n": 1})
    assert raw == {"n": {"$sum": "x"}}
    assert finalize(raw) == {"n": "x"}


def test_foldr_goes_newest_to_oldest() -> None:
    events = [{"a": 1, "b": 1}, {"a": 2}]
    assert foldl(events) == {"a": 2, "b": 1}
    assert foldr(events) == {"a": 1, "b": 1}
    assert finalize(fold("foldr", [{"s": {"$sum": 1}}, {"s": {"$sum": 2}}])) == {"s": 3}


def test_non_object_data_is_skipped() -> None:
    assert foldl([{"a": 1}, 5, None, [{"a": 2}], "a", True]) == {"a": 1}


def test_initial_state_is_the_snapshot_data_when_an_object() -> None:
    assert initial_state({"a": 1}) == {"a": 1}
    assert initial_state([1]) == {}
    assert initial_state(None) == {}


def test_integers_add_exactly_and_overflow_to_floats() -> None:
    assert finalize(foldl([{"n": {"$sum": 1}}], {"n": U64_MAX - 1})) == {"n": U64_MAX}
    assert finalize(foldl([{"n": {"$sum": -1}}], {"n": I64_MIN}))["n"] == float(I64_MIN) - 1.0
    assert finalize(foldl([{"n": {"$sum": 0.5}}], {"n": 1})) == {"n": 1.5}
    assert finalize(foldl([{"n": {"$sum": F64_MAX}}], {"n": F64_MAX})) == {"n": None}
    # A null left by an overflow counts as 0 for the next sum.
    assert finalize(foldl([{"n": {"$sum": F64_MAX}}, {"n": {"$sum": 2}}], {"n": F64_MAX})) == {"n": 2}


def test_booleans_are_not_numbers() -> None:
    assert foldl([{"n": {"$sum": True}}], {"n": 1}) == {"n": {"$sum": True}}
    assert foldl([{"n": {"$sum": 1}}], {"n": True}) == {"n": {"$sum": 1}}


def test_the_state_is_not_modified_in_place() -> None:
    start = {"n": {"$sum": 1}}
    foldl([{"n": {"$sum": 1}}], start)
    assert start == {"n": {"$sum": 1}}
    state: Dict[str, Any] = {}
    apply_data(state, {"k": {"$overwrite": 1}})
    assert state == {"k": 1}


def test_folding_recorded_events_uses_their_data() -> None:
    events = [
        esdb.RecordedEvent("id", "T", "s", v, v, 0, {"n": {"$sum": v + 1}}, {}) for v in range(3)
    ]
    assert aggregate_events(events) == {"n": 6}
    snapshot = esdb.Snapshot("s", 0, {"n": {"$sum": 100}}, {}, 0)
    assert aggregate_events(events[1:], snapshot=snapshot, raw=True) == {"n": {"$sum": 105}}


# --- against the server ----------------------------------------------------------------------


def plain(rng: random.Random) -> Any:
    roll = rng.randrange(5)
    if roll == 0:
        return rng.randrange(-1000, 1000)
    if roll == 1:
        return rng.randrange(-400, 400) / 4.0
    if roll == 2:
        return "".join(rng.choice("abc") for _ in range(rng.randrange(4)))
    if roll == 3:
        return None
    return {"nested": rng.randrange(-9, 9), "t": {"$sum": rng.randrange(-9, 9)}}


def field_value(rng: random.Random) -> Any:
    roll = rng.randrange(8)
    if roll < 3:
        return {"$sum": rng.randrange(-1000, 1000)}
    if roll == 3:
        return {"$sum": rng.randrange(-400, 400) / 4.0}
    if roll < 6:
        return plain(rng)
    if roll == 6:
        return {"$overwrite": plain(rng)}
    return {"$sum": "not a number"}


def event_data(rng: random.Random) -> Any:
    if rng.randrange(10) == 0:
        return plain(rng)
    return {rng.choice("abcd"): field_value(rng) for _ in range(rng.randrange(4))}


CASES = 40


def test_the_client_fold_equals_the_servers_agg(server: EsdbServer) -> None:
    rng = random.Random(20261128)
    with esdb.Client(server.address) as client:
        for case in range(CASES):
            stream = f"prop-{case}"
            data: List[Any] = [event_data(rng) for _ in range(rng.randrange(1, 30))]
            split = rng.randrange(len(data)) + 1
            prefix, suffix = data[:split], data[split:]
            at = client.append(stream, [esdb.NewEvent("E", d) for d in prefix]).last_version
            # A snapshot of the server's own state (raw or finalized) at the split.
            snapshot_state = client.aggregate(stream, raw=rng.random() < 0.5)
            assert snapshot_state.version == at
            client.save_snapshot(stream, at, snapshot_state.state)
            if suffix:
                client.append(stream, [esdb.NewEvent("E", d) for d in suffix])

            events = list(client.iter_stream(stream))
            assert [e.data for e in events] == data
            assert client.aggregate(stream).state == aggregate_events(events)
            assert client.aggregate(stream, raw=True).state == aggregate_events(events, raw=True)
            assert client.aggregate(stream, order="foldr").state == aggregate_events(events, order="foldr")
            snapshot = client.load_snapshot(stream)
            assert snapshot is not None and snapshot.version == at
            after = [e for e in events if e.version > snapshot.version]
            expected = aggregate_events(after, snapshot=snapshot)
            assert client.aggregate(stream, from_snapshot=True).state == expected
            assert expected == aggregate_events(events)
