"""Every example session in README.md and PROTOCOL.md is in a golden transcript, line for line,
so the examples cannot drift from what the server says (the transcripts are replayed against
the real server by tests/transcripts.rs and by test_transcripts.py).

An example is a fenced block without a language holding protocol lines. It must appear in some
transcript as a contiguous run of its C:/S: lines, where a ``…`` line in the example stands for
any number of lines (and the ``INFO`` greeting may be followed by anything: the README runs its
subscription walk-through in a second terminal). Lines match when the transcript's pattern
(``<any>``, ``<uuid>``, ``<int>``) matches the example's text, or when the example's text, with
each ``…`` standing for anything, matches the transcript's. ``<#>`` in a transcript is the byte
length of its next line, as when it is replayed.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from esdb_server import repo_root

ELLIPSIS = "…"
DOCS = ["README.md", "protocol/PROTOCOL.md"]
#: First words of lines that make a fenced block an example session.
PROTOCOL_WORDS = {
    "INFO", "CONNECT", "PING", "PONG", "USE", "APPEND", "APPENDED", "READ", "READALL", "READTYPES",
    "EVENTS", "VERSION", "EXISTS", "STREAMS", "DELETE", "SNAP", "SNAPSHOT", "SNAPSHOTS", "AGG",
    "HELP", "SUB", "EVENT", "LIVE", "UNSUB", "ACK", "NACK", "PSUB", "SUBS", "SUBINFO", "SUBEXISTS",
    "STATS", "SCAVENGE", "+OK", "-ERR",
}
Example = Tuple[str, int, List[str]]


def doc_examples() -> List[Example]:
    """(doc, line number, lines) of every example session block."""
    examples: List[Example] = []
    for doc in DOCS:
        lines = (repo_root() / doc).read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            fence = lines[index].strip()
            if not fence.startswith("```"):
                index += 1
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
            block = lines[index + 1 : end]
            # Blocks with a language (sh, json, js) are not sessions, nor are syntax blocks,
            # which show framing (␍␊).
            if fence == "```" and not any("␍␊" in line for line in block) and any(
                line.split(" ", 1)[0] in PROTOCOL_WORDS for line in block
            ):
                examples.append((doc, index + 2, [line for line in block if not line.startswith("$ ")]))
            index = end + 1
    return examples


def transcript_lines(path: Path) -> List[str]:
    sent_and_received: List[Tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("C: ") or line.startswith("S: "):
            sent_and_received.append((line[:1], line[3:]))
    out = []
    for index, (side, text) in enumerate(sent_and_received):
        if side == "C" and "<#>" in text:
            following = sent_and_received[index + 1][1]
            text = text.replace("<#>", str(len(following.encode("utf-8"))))
        out.append(text)
    return out


_TOKEN = re.compile(r"<any>|<uuid>|<int>|.", re.DOTALL)
#: What each transcript placeholder may stand for, character by character (the example side).
_PLACEHOLDER_CHARS = {"<any>": None, "<uuid>": set("0123456789abcdef-"), "<int>": set("-0123456789")}


def lines_match(example: str, transcript: str) -> bool:
    """Both sides have wildcards: ``…`` in the example stands for any run of the transcript's
    text and placeholders; a placeholder stands for a run of the example's characters it allows
    (``<any>`` any, ``<int>`` digits, ``<uuid>`` hex and hyphens)."""
    if transcript == "<any>" and example != ELLIPSIS:
        return False  # a line that is only <any> says nothing an example could be checked by
    tokens = _TOKEN.findall(transcript)

    @functools.lru_cache(maxsize=None)
    def match(e: int, t: int) -> bool:
        if e == len(example) and t == len(tokens):
            return True
        if e < len(example) and example[e] == ELLIPSIS:
            return match(e + 1, t) or (t < len(tokens) and match(e, t + 1))
        if t < len(tokens) and tokens[t] in _PLACEHOLDER_CHARS:
            allowed = _PLACEHOLDER_CHARS[tokens[t]]
            if tokens[t] == "<any>" and match(e, t + 1):
                return True
            index = e
            while index < len(example) and example[index] != ELLIPSIS and (allowed is None or example[index] in allowed):
                index += 1
                if match(index, t + 1):
                    return True
            return False
        return e < len(example) and t < len(tokens) and example[e] == tokens[t] and match(e + 1, t + 1)

    return match(0, 0)


def matches_at(example: List[str], transcript: List[str], e: int, t: int) -> bool:
    if e == len(example):
        return True
    if example[e] == ELLIPSIS:
        return any(matches_at(example, transcript, e + 1, k) for k in range(t, len(transcript) + 1))
    return t < len(transcript) and lines_match(example[e], transcript[t]) and matches_at(example, transcript, e + 1, t + 1)


def find(example: List[str]) -> Optional[str]:
    """The transcript holding the example, if any."""
    if example and example[0].startswith("INFO"):
        example = [example[0], ELLIPSIS, *example[1:]]
    for path in sorted((repo_root() / "protocol" / "transcripts").glob("*.txt")):
        lines = transcript_lines(path)
        if any(matches_at(example, lines, 0, start) for start in range(len(lines))):
            return path.name
    return None


EXAMPLES = doc_examples()


def test_the_docs_have_example_sessions() -> None:
    assert sum(1 for doc, _, _ in EXAMPLES if doc == "README.md") >= 2
    assert sum(1 for doc, _, _ in EXAMPLES if doc.endswith("PROTOCOL.md")) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{doc}:{line}" for doc, line, _ in EXAMPLES])
def test_every_doc_example_is_in_a_transcript(example: Example) -> None:
    doc, line, lines = example
    found = find(lines)
    assert found is not None, f"{doc}, line {line}: this example is in no transcript:\n" + "\n".join(lines)


def test_the_matcher_is_not_lenient() -> None:
    assert lines_match("EVENTS 1 190", "EVENTS 1 <int>")
    assert lines_match("[…]", '[{"a":1}]')
    assert not lines_match("EVENTS 1 190", "EVENTS 1 188")
    assert not lines_match("STATS 84", "STATS 83")
    assert not lines_match("SUB s1 stream x", "<any>")
    assert lines_match('{"a":…,"v":"0.1.0"}', '{"a":1,"b":2,"v":"<any>"}')
    assert lines_match('{"id":"1b4e28ba-2fa1","n":5}', '{"id":"<uuid>","n":<int>}')
    assert not lines_match('{"n":x}', '{"n":<int>}')
    assert matches_at(["A", ELLIPSIS, "D"], ["A", "B", "C", "D"], 0, 0)
    assert not matches_at(["A", "D"], ["A", "B", "D"], 0, 0)
