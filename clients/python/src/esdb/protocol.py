"""The sans-IO wire protocol: an encoder for requests and an incremental decoder of server output.

Nothing here does I/O. The sync and the asyncio clients feed received bytes to a
:class:`Decoder` and write what the ``encode_*`` functions return. PROTOCOL.md is the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Mapping, Optional, Tuple

from .errors import ProtocolViolation

CRLF = b"\r\n"

#: Longest control line the server accepts, CRLF included (``max_control_line`` in INFO).
MAX_CONTROL_LINE_BYTES = 4096
#: Largest request payload the server accepts (``max_payload`` in INFO).
MAX_PAYLOAD_BYTES = 1024 * 1024
#: Largest reply body the server sends: a 16 MiB read reply plus the one event that may pass it.
MAX_REPLY_BODY_BYTES = 16 * 1024 * 1024 + MAX_PAYLOAD_BYTES
#: Longest reply line this decoder buffers before giving up. Replies are short, but INFO grows
#: with the server's facts, so this is far above the request limit.
MAX_REPLY_LINE_BYTES = 64 * 1024

#: For each sized reply: the index, among the arguments after its name, of its ``#bytes``.
SIZED_REPLIES: Mapping[str, int] = {
    "EVENTS": 1,
    "APPENDEDMULTI": 1,
    "STREAMS": 1,
    "SNAPSHOTS": 1,
    "SUBS": 1,
    "SNAPSHOT": 2,
    "AGG": 2,
    "EVENT": 4,
    "HELP": 0,
    "STATS": 0,
    "SUBINFO": 0,
    "CLUSTER": 0,
}

_SEPARATORS = " \t"


@dataclass(frozen=True)
class Frame:
    """One unit of server output: a control line and, for sized replies, its body."""

    #: The control line, without its line ending.
    line: str
    #: The reply's name (``+OK``, ``EVENTS``, ``EVENT``, ``-ERR``, ``INFO``, …).
    name: str
    #: The words after the name.
    args: Tuple[str, ...]
    #: The body of a sized reply, else ``None``.
    body: Optional[bytes] = None

    @property
    def rest(self) -> str:
        """The line after the name and its separator (INFO's JSON, -ERR's code and message)."""
        stripped = self.line.lstrip(_SEPARATORS)
        return stripped[len(self.name) :].lstrip(_SEPARATORS)

    @property
    def error_code(self) -> str:
        """``-ERR``'s code."""
        return self.args[0] if self.args else ""

    @property
    def error_message(self) -> str:
        """``-ERR``'s message: from the first ``'`` to the last ``'`` of the line."""
        start, end = self.line.find("'"), self.line.rfind("'")
        if start == -1 or end <= start:
            return self.rest[len(self.error_code) :].strip()
        return self.line[start + 1 : end]

    def body_lines(self) -> List[str]:
        """The body split on line breaks, as transcripts show it."""
        if self.body is None:
            return []
        text = self.body.decode("utf-8")
        return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _split(line: str) -> List[str]:
    return line.replace("\t", " ").split()


def _is_number(word: str) -> bool:
    return word.isascii() and word.isdigit()


def unreadable_fields(frame: Frame) -> Tuple[str, str, int, int, str]:
    """``UNREADABLE <sid> <stream> <version> <position> '<reason>'``: its sid, stream, version,
    position and reason. The reason is everything after the position, its quotes taken off (a
    stream id may itself hold a ``'``, so the quotes are looked for only after it)."""
    parts = frame.line.replace("\t", " ").split(None, 5)
    if len(parts) < 5 or not all(_is_number(word) for word in parts[3:5]):
        raise ProtocolViolation(f"bad UNREADABLE line: {frame.line[:120]!r}")
    reason = parts[5].strip(" ") if len(parts) > 5 else ""
    if len(reason) >= 2 and reason.startswith("'") and reason.endswith("'"):
        reason = reason[1:-1]
    return parts[1], parts[2], int(parts[3]), int(parts[4]), reason


class Decoder:
    """Incremental decoder of server output: feed bytes in any split, take whole frames out.

    Lines end in CRLF (a bare LF is accepted too). A sized reply's body is read by its byte
    count, whatever it contains, and must be followed by a line ending.
    """

    def __init__(
        self,
        max_line_bytes: int = MAX_REPLY_LINE_BYTES,
        max_body_bytes: int = MAX_REPLY_BODY_BYTES,
    ) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no LF
        self._head: Optional[Tuple[str, str, Tuple[str, ...], int]] = None
        self._max_line_bytes = max_line_bytes
        self._max_body_bytes = max_body_bytes

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def frames(self, data: bytes = b"") -> List[Frame]:
        """Feeds ``data`` and returns every frame now complete."""
        if data:
            self.feed(data)
        out: List[Frame] = []
        while True:
            frame = self.next_frame()
            if frame is None:
                return out
            out.append(frame)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            yield frame

    def next_frame(self) -> Optional[Frame]:
        """The next complete frame, or ``None`` until more bytes arrive."""
        while True:
            if self._head is not None:
                return self._take_body()
            newline = self._buffer.find(b"\n", self._scanned)
            if newline == -1:
                if len(self._buffer) > self._max_line_bytes:
                    raise ProtocolViolation(
                        f"reply line longer than {self._max_line_bytes} bytes"
                    )
                self._scanned = len(self._buffer)
                return None
            raw = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            self._scanned = 0
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ProtocolViolation(f"reply line is not UTF-8: {raw[:80]!r}") from error
            words = _split(line)
            if not words:
                continue  # an empty line carries nothing
            name, args = words[0].upper(), tuple(words[1:])
            size_index = SIZED_REPLIES.get(name)
            if size_index is None:
                return Frame(line, name, args)
            self._head = (line, name, args, self._body_size(line, args, size_index))

    def _body_size(self, line: str, args: Tuple[str, ...], index: int) -> int:
        if len(args) <= index or not args[index].isdigit():
            raise ProtocolViolation(f"sized reply without a byte count: {line[:120]!r}")
        size = int(args[index])
        if size > self._max_body_bytes:
            raise ProtocolViolation(f"reply body of {size} bytes exceeds {self._max_body_bytes}")
        return size

    def _take_body(self) -> Optional[Frame]:
        assert self._head is not None
        line, name, args, size = self._head
        if len(self._buffer) < size + 1:
            return None
        end = self._buffer[size : size + 2]
        if end == b"\r\n":
            consumed = size + 2
        elif end[:1] == b"\n":
            consumed = size + 1
        elif end == b"\r":
            return None  # the LF is still on its way
        else:
            raise ProtocolViolation(f"reply body of {size} bytes is not followed by CRLF")
        body = bytes(self._buffer[:size])
        del self._buffer[:consumed]
        self._head = None
        return Frame(line, name, args, body)


# ---------------------------------------------------------------------------------------------
# Encoding


def check_word(word: str, what: str) -> str:
    """A request argument must be one word: no separator or control character could split it."""
    if not word:
        raise ValueError(f"{what} must not be empty")
    for char in word:
        if char in _SEPARATORS or ord(char) < 0x20 or ord(char) == 0x7F:
            raise ValueError(f"{what} must not contain whitespace or control characters: {word!r}")
    return word


def encode_line(words: Iterable[str]) -> bytes:
    """A control line: the words separated by one space, then CRLF."""
    return " ".join(words).encode("utf-8") + CRLF


def encode_sized(words: Iterable[str], payload: bytes) -> bytes:
    """A control line announcing ``payload``'s size, then the payload, then CRLF."""
    return " ".join([*words, str(len(payload))]).encode("utf-8") + CRLF + payload + CRLF
