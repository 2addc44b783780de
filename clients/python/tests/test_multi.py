"""APPENDMULTI (several streams, conditions) and READTAGS against the real server."""

from __future__ import annotations

import pytest

import esdb
from esdb_server import EsdbServer


def test_append_multi_tags_and_conditions(server: EsdbServer) -> None:
    with esdb.Client(server.address) as client:
        parts = [
            esdb.AppendPart(
                "course-c1", (esdb.NewEvent("CourseDefined", {"capacity": 1}, tags=("course:c1",)),), "no_stream"
            ),
            esdb.AppendPart(
                "student-s1", (esdb.NewEvent("StudentRegistered", {}, tags=("student:s1",)),), "no_stream"
            ),
        ]
        results = client.append_multi(parts)
        assert [r.stream for r in results] == ["course-c1", "student-s1"]
        assert (results[1].first_position, results[1].last_position) == (1, 1)
        boundary = client.read_tags(["course:c1"])
        assert [e.tags for e in boundary] == [("course:c1",)]
        condition = {"query": [{"types": ["StudentSubscribed"], "tags": ["course:c1"]}], "after": boundary[-1].position}

        def subscribe(student: str) -> list[esdb.AppendPart]:
            event = esdb.NewEvent("StudentSubscribed", {"student": student}, tags=("course:c1",))
            return [esdb.AppendPart("course-c1", (event,))]

        won = client.append_multi(subscribe("s1"), condition)
        assert won[0].first_position == 2
        with pytest.raises(esdb.ConditionFailed) as raised:
            client.append_multi(subscribe("s2"), condition)
        assert str(raised.value).find("position 2 ") >= 0
