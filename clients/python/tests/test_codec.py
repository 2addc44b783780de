"""The sans-IO layer without a server: decoder, encoders, ids, retry timing, addresses."""

from __future__ import annotations

import ast
import json
import random
import re
from pathlib import Path
from typing import List

import pytest

import esdb
from esdb import commands
from esdb.errors import ProtocolViolation
from esdb.ids import uuid7
from esdb.protocol import Decoder, Frame, check_word, encode_sized, unreadable_fields
from esdb.retry import ConnectPlan, RetryPolicy, parse_address, parse_addresses
from esdb.session import SubscriptionCore

SAMPLE = (
    b"INFO {\"proto\":1,\"stores\":[\"default\"],\"raft\":{\"term\":3}}\r\n"
    b"+OK\r\n"
    b"-ERR wrong_expected_version 'stream s: expected version 0, actual 1'\r\n"
    b"APPENDED s 1 7\r\n"
    b"EVENTS 1 8\r\n[\"a\r\nb\"]\r\n"
    b"EVENT s1 user-1 0 0 4\r\n{}\n}\r\n"
    b"LIVE s1\r\n"
    b"HELP 5\nab\ncd\n"
    b"PING\r\n"
    b"SNAPSHOTS 0 2\r\n[]\r\n"
    b"AGG s 3 2\r\n{}\r\n"
)


def decode_all(data: bytes, split: int) -> List[Frame]:
    decoder = Decoder()
    frames: List[Frame] = []
    for start in range(0, len(data), split):
        frames.extend(decoder.frames(data[start : start + split]))
    assert decoder.buffered_bytes == 0
    return frames


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64, 10_000])
def test_the_decoder_gives_the_same_frames_whatever_the_split(split: int) -> None:
    frames = decode_all(SAMPLE, split)
    assert [f.name for f in frames] == [
        "INFO", "+OK", "-ERR", "APPENDED", "EVENTS", "EVENT", "LIVE", "HELP", "PING", "SNAPSHOTS", "AGG",
    ]
    info, _, error, appended, events, event, live, help_frame, _, snapshots, agg = frames
    assert json.loads(info.rest)["raft"] == {"term": 3}
    assert error.error_code == "wrong_expected_version"
    assert error.error_message == "stream s: expected version 0, actual 1"
    assert appended.args == ("s", "1", "7")
    # A body is taken by its byte count, whatever it holds.
    assert events.body == b'["a\r\nb"]'
    assert event.args == ("s1", "user-1", "0", "0", "4") and event.body == b"{}\n}"
    assert live.args == ("s1",)
    assert help_frame.body == b"ab\ncd" and help_frame.body_lines() == ["ab", "cd"]
    assert snapshots.body == b"[]" and agg.body == b"{}"


def test_a_body_not_followed_by_a_line_end_is_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        Decoder().frames(b"EVENTS 1 2\r\n[]]\r\n")


def test_a_sized_reply_without_a_count_is_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        Decoder().frames(b"EVENTS 1\r\n")


def test_an_endless_line_is_refused_before_it_grows_without_bound() -> None:
    decoder = Decoder(max_line_bytes=100)
    decoder.frames(b"x" * 100)
    with pytest.raises(ProtocolViolation):
        decoder.frames(b"x")


def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    with pytest.raises(ProtocolViolation):
        Decoder(max_body_bytes=10).frames(b"HELP 11\r\n")


def test_an_error_message_runs_from_the_first_to_the_last_quote() -> None:
    [frame] = Decoder().frames(b"-ERR invalid_json 'bad 'quoted' json'\r\n")
    assert frame.error_message == "bad 'quoted' json"


def test_requests_are_framed_with_their_byte_count() -> None:
    request = commands.append("s", [esdb.NewEvent("T", {"n": "é"}, event_id="0b9d2f4e-3c1a-4d5b-8e6f-7a8b9c0d1e2f")], "any")
    head, payload, tail = request.data.split(b"\r\n")
    assert head == b"APPEND s any " + str(len(payload)).encode()
    assert json.loads(payload) == [{"event_type": "T", "data": {"n": "é"}, "event_id": "0b9d2f4e-3c1a-4d5b-8e6f-7a8b9c0d1e2f"}]
    assert tail == b""
    assert encode_sized(["SUB", "x"], b"{}") == b"SUB x 2\r\n{}\r\n"


@pytest.mark.parametrize("word", ["", "a b", "a\tb", "a\r\nPING", "nul\x00"])
def test_arguments_that_would_break_the_line_are_refused(word: str) -> None:
    with pytest.raises(ValueError):
        check_word(word, "stream id")
    with pytest.raises(ValueError):
        commands.version(word)


def test_expected_versions_are_the_protocol_words() -> None:
    assert commands.expected_word("any") == "any"
    assert commands.expected_word("no_stream") == "no_stream"
    assert commands.expected_word("exists") == "exists"
    assert commands.expected_word(7) == "7"
    for bad in (-1, "latest", True):
        with pytest.raises(ValueError):
            commands.expected_word(bad)  # type: ignore[arg-type]


def test_ack_positions_are_merged_into_ranges_and_split_into_lines() -> None:
    assert commands.position_items([5, 1, 2, 3, 9, 10, (20, 25)]) == ["1-3", "5", "9-10", "20-25"]
    lines = commands.ack("w", list(range(0, 4000, 2)))
    assert len(lines) == 2
    assert lines[0].data.startswith(b"ACK w 0,2,4,")
    assert lines[0].data.count(b",") == commands.MAX_ACK_ITEMS - 1


def test_client_event_ids_are_uuid_v7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(50)]
    for value in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)
    assert len(set(ids)) == len(ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_backoff_grows_to_its_maximum_with_jitter() -> None:
    policy = RetryPolicy()
    assert (policy.base_delay_s, policy.max_delay_s, policy.max_retries) == (0.1, 30.0, 10)
    rng = random.Random(7)
    for retry in range(1, 30):
        ceiling = min(30.0, 0.1 * 2 ** (retry - 1))
        delays = {policy.delay_s(retry, rng) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_connect_plan_goes_round_robin_and_backs_off_after_each_round() -> None:
    plan = ConnectPlan([("a", 1), ("b", 2)], RetryPolicy(max_retries=4))
    seen = []
    while (attempt := plan.next_attempt()) is not None:
        seen.append((attempt[0][0], attempt[1] > 0))
        plan.failed(OSError("refused"))
    assert seen == [("a", False), ("b", False), ("a", True), ("b", False), ("a", True)]
    plan.succeeded()
    assert plan.next_attempt() is not None


def test_addresses_parse_in_every_form() -> None:
    assert parse_address("h:1") == ("h", 1)
    assert parse_address("h") == ("h", 4350)
    assert parse_address("[::1]:9") == ("::1", 9)
    assert parse_address(("h", 2)) == ("h", 2)
    assert parse_addresses("a:1, b:2") == [("a", 1), ("b", 2)]
    assert parse_addresses(("a", 1)) == [("a", 1)]
    assert parse_addresses(["a:1", ("b", 2)]) == [("a", 1), ("b", 2)]
    with pytest.raises(ValueError):
        parse_addresses("")


def test_server_info_keeps_fields_it_does_not_know() -> None:
    info = esdb.ServerInfo.from_json({"proto": 1, "stores": ["a", "b"], "raft": {"leader": "x"}})
    assert info.stores == ("a", "b") and info.store == "a" and info.max_read_count == 10_000
    assert info.raw["raft"] == {"leader": "x"}


def test_the_sources_parse_as_python_3_9() -> None:
    sources = Path(esdb.__file__).parent.glob("*.py")
    for source in sources:
        ast.parse(source.read_text(encoding="utf-8"), str(source), feature_version=(3, 9))


def test_unreadable_frames_decode_with_their_reason() -> None:
    line = "UNREADABLE s1 o'neil 3 17 'record at position 17: number out of range at line 1 column 9'"
    frames = Decoder().frames(line.encode() + b"\r\nLIVE s1\r\n")
    assert [frame.name for frame in frames] == ["UNREADABLE", "LIVE"]
    assert frames[0].body is None
    assert unreadable_fields(frames[0]) == (
        "s1",
        "o'neil",
        3,
        17,
        "record at position 17: number out of range at line 1 column 9",
    )
    for bad in ["UNREADABLE s1 user-1 3", "UNREADABLE s1 user-1 x 17 'r'", "UNREADABLE s1 u 3 ² 'r'"]:
        with pytest.raises(ProtocolViolation):
            unreadable_fields(Decoder().frames(bad.encode() + b"\r\n")[0])


def test_an_unreadable_push_takes_an_events_place_and_moves_the_resume_position() -> None:
    core = SubscriptionCore("s1", esdb.Selector.event_payload({"data": {"x": 1}}), "origin")
    pushes = (
        b"EVENT s1 acct 0 0 2\r\n{}\r\n"
        b"UNREADABLE s1 acct 1 1 'record at position 1: lone surrogate'\r\n"
    )
    for frame in Decoder().frames(pushes):
        core.on_event(frame)
    first, _ = core.take()
    assert isinstance(first, esdb.RecordedEvent)
    second, _ = core.take()
    assert isinstance(second, esdb.UnreadableEvent)
    assert (second.stream, second.version, second.position) == ("acct", 1, 1)
    assert second.reason == "record at position 1: lone surrogate"
    assert core.last_position == 1
    assert b'"start":2' in core.request().data, "a resubscribe starts after the unreadable event"
    assert core.take() == (None, False)


def test_raft_status_is_parsed_tolerantly_from_info_and_stats() -> None:
    raft = {
        "applied_index": 3,
        "checkpoint_index": None,
        "last_log_index": 4,
        "leader_id": 1,
        "node_id": 1,
        "state": "leader",
        "term": 2,
        "from_the_future": True,
    }
    info = esdb.ServerInfo.from_json({"stores": ["default"], "raft": {"default": raft, "odd": 7}})
    assert list(info.raft) == ["default"]
    status = info.raft["default"]
    assert (status.node_id, status.state, status.term, status.leader_id) == (1, "leader", 2, 1)
    assert (status.last_log_index, status.applied_index, status.checkpoint_index) == (4, 3, None)
    assert status.raw["from_the_future"] is True
    electing = esdb.RaftStatus.from_json({"state": "candidate", "leader_id": None, "term": "x"})
    assert electing.leader_id is None and electing.term == 0 and electing.state == "candidate"
    stats = esdb.Stats.from_json({"stores": {"default": {"events": 1, "raft": raft}, "old": {}}})
    assert stats.stores["default"].raft == status
    assert stats.stores["old"].raft is None
    assert esdb.ServerInfo.from_json({"stores": ["a"]}).raft == {}
