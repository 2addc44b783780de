"""The client's error table agrees with PROTOCOL.md's, parsed from the markdown."""

from __future__ import annotations

import re
from typing import Dict, Tuple

import esdb
from esdb.errors import ERROR_TABLE, ServerError, server_error
from esdb_server import repo_root


def protocol_error_table() -> Dict[str, Tuple[bool, bool]]:
    """code -> (closes, retryable), from the table under '## Errors' in PROTOCOL.md."""
    text = (repo_root() / "protocol" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = text.split("\n## Errors", 1)[1].split("\n## ", 1)[0]
    rows: Dict[str, Tuple[bool, bool]] = {}
    header_seen = False
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:3] == ["code", "closes", "retryable"]:
            header_seen = True
            continue
        if not header_seen or set(cells[0]) <= {"-", ":"}:
            continue
        code = re.fullmatch(r"`([a-z_]+)`", cells[0])
        assert code, f"unexpected code cell {cells[0]!r}"
        flags = {"yes": True, "no": False}
        rows[code.group(1)] = (flags[cells[1]], flags[cells[2]])
    assert header_seen, "no | code | closes | retryable | table under ## Errors"
    return rows


def test_the_client_table_is_the_protocol_table() -> None:
    documented = protocol_error_table()
    assert len(documented) >= 20
    ours = {code: (spec.closes_connection, spec.retryable) for code, spec in ERROR_TABLE.items()}
    assert ours == documented
    # Same order too, so the two read alike.
    assert list(ERROR_TABLE) == list(documented)


def test_every_code_has_its_own_exception_class() -> None:
    classes = set()
    for code, spec in ERROR_TABLE.items():
        error = server_error(code, "message")
        assert type(error) is not ServerError, code
        assert error.code == code and error.message == "message"
        assert error.retryable == spec.retryable
        assert error.closes_connection == spec.closes_connection
        assert isinstance(error, esdb.EsdbError)
        classes.add(type(error))
    assert len(classes) == len(ERROR_TABLE)


def test_an_unknown_code_is_a_plain_server_error() -> None:
    error = server_error("from_the_future", "new")
    assert type(error) is ServerError
    assert error.code == "from_the_future" and not error.retryable
    assert str(error) == "from_the_future 'new'"
