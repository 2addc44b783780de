"""Replays every golden transcript in protocol/transcripts/ against a fresh real server, decoding
the server's output with the client's sans-IO decoder: once with each step written whole and
the output fed to the decoder as it comes, once written and fed a byte at a time.

The format is protocol/transcripts/README.md's."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, List, Optional

import pytest
from collections import deque

from esdb.protocol import Decoder
from esdb_server import repo_root
from conftest import ServerFactory

TRANSCRIPTS = sorted((repo_root() / "protocol" / "transcripts").glob("*.txt"))
#: How long the server has to answer one step.
READ_TIMEOUT_S = 20.0

_PLACEHOLDERS = {
    "<any>": ".*",
    "<uuid>": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "<int>": "-?[0-9]+",
}


@dataclass
class Step:
    send: List[str] = field(default_factory=list)
    expect: List[str] = field(default_factory=list)


@dataclass
class Transcript:
    server_args: List[str]
    steps: List[Step]


def parse_transcript(text: str) -> Transcript:
    server_args: List[str] = []
    steps: List[Step] = []
    current = Step()
    for line in text.splitlines():
        if line.startswith("#! server-args:"):
            server_args.extend(line[len("#! server-args:") :].split())
        elif line.startswith("C: "):
            if current.expect:
                steps.append(current)
                current = Step()
            current.send.append(line[3:])
        elif line.startswith("S: "):
            current.expect.append(line[3:])
        else:
            assert line == "" or line.startswith("#"), f"transcript line must start with C: , S: or #: {line!r}"
    if current.send or current.expect:
        steps.append(current)
    return Transcript(server_args, steps)


def step_bytes(step: Step) -> bytes:
    """Each line plus CRLF, ``<#>`` replaced by the byte length of the next line."""
    out = bytearray()
    for index, line in enumerate(step.send):
        if "<#>" in line:
            assert index + 1 < len(step.send), "<#> needs a following C: line"
            line = line.replace("<#>", str(len(step.send[index + 1].encode("utf-8"))))
        out += line.encode("utf-8") + b"\r\n"
    return bytes(out)


def pattern(expected: str) -> "re.Pattern[str]":
    parts = re.split("(<any>|<uuid>|<int>)", expected)
    return re.compile("".join(_PLACEHOLDERS.get(part, re.escape(part)) for part in parts) + r"\Z")


class LineReader:
    """Server output as transcript lines, through the client's decoder: each frame's control
    line, then its body (sized replies) split on line breaks."""

    def __init__(self, sock: socket.socket, byte_at_a_time: bool) -> None:
        self.sock = sock
        self.decoder = Decoder()
        self.lines: Deque[str] = deque()
        self.byte_at_a_time = byte_at_a_time
        self.closed = False

    def next_line(self) -> Optional[str]:
        while not self.lines:
            frame = self.decoder.next_frame()
            if frame is not None:
                self.lines.append(frame.line)
                self.lines.extend(frame.body_lines())
                continue
            if self.closed:
                return None
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                assert self.decoder.buffered_bytes == 0, "partial frame at close"
                continue
            if self.byte_at_a_time:
                for byte in data:
                    self.decoder.feed(bytes([byte]))
            else:
                self.decoder.feed(data)
        return self.lines.popleft()


def replay(path: Path, server_factory: ServerFactory, byte_at_a_time: bool) -> None:
    transcript = parse_transcript(path.read_text(encoding="utf-8"))
    # `{transcripts}` in a flag is the transcripts directory (a config file shipped beside them).
    directory = str(repo_root() / "protocol" / "transcripts")
    server = server_factory([arg.replace("{transcripts}", directory) for arg in transcript.server_args])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = LineReader(sock, byte_at_a_time)
    try:
        for step in transcript.steps:
            data = step_bytes(step)
            try:
                if byte_at_a_time:
                    for byte in data:
                        sock.sendall(bytes([byte]))
                else:
                    sock.sendall(data)
            except OSError:
                # A server that closes on a fatal error may do so before the step is all sent.
                assert "<closed>" in step.expect
            for expected in step.expect:
                actual = reader.next_line()
                if expected == "<closed>":
                    assert actual is None, f"{path.name}: expected the server to close, got {actual!r}"
                    continue
                assert actual is not None, f"{path.name}: closed; expected {expected!r} after {step.send}"
                assert pattern(expected).match(actual), (
                    f"{path.name}: after sending {step.send}\n expected: {expected}\n   actual: {actual}"
                )
    finally:
        sock.close()


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 14


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.name for p in TRANSCRIPTS])
def test_transcript_replays_whole(path: Path, server_factory: ServerFactory) -> None:
    replay(path, server_factory, byte_at_a_time=False)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.name for p in TRANSCRIPTS])
def test_transcript_replays_byte_at_a_time(path: Path, server_factory: ServerFactory) -> None:
    replay(path, server_factory, byte_at_a_time=True)


def test_patterns_match_only_what_they_say() -> None:
    assert pattern("APPENDED s <int> 0").match("APPENDED s 12 0")
    assert not pattern("APPENDED s <int> 0").match("APPENDED s x 0")
    assert pattern("a.b").match("a.b")
    assert not pattern("a.b").match("axb")
    assert not pattern("PONG").match("PONGX")
    assert pattern('[{"id":"<uuid>"}]').match('[{"id":"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d"}]')
