#!/usr/bin/env python3
"""Seeds the fuzz corpora from the golden transcripts (protocol/transcripts/*.txt).

request_decoder: each transcript's client bytes (`C:` lines, `<#>` replaced by the next
line's length); reply_decoder: its server bytes (`S:` lines, `<any>` as `{}`); event_json:
every payload line that is JSON. The first 8 bytes of a decoder seed choose split points.
"""
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent
transcripts = sorted((root.parent / "protocol" / "transcripts").glob("*.txt"))
corpus = root / "corpus"
SPLITS = bytes([3, 7, 0, 16, 1, 5, 2, 9])


def stream(lines, prefix):
    picked = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    out = []
    for index, line in enumerate(picked):
        if line.endswith("<#>") and index + 1 < len(picked):
            line = line[:-3] + str(len(picked[index + 1].encode()))
        out.append(line.replace("<any>", "{}"))
    return "".join(line + "\r\n" for line in out).encode()


for target in ("request_decoder", "reply_decoder", "event_json"):
    (corpus / target).mkdir(parents=True, exist_ok=True)
for path in transcripts:
    lines = path.read_text().splitlines()
    (corpus / "request_decoder" / path.stem).write_bytes(SPLITS + stream(lines, "C: "))
    (corpus / "reply_decoder" / path.stem).write_bytes(SPLITS + stream(lines, "S: "))
    for index, line in enumerate(lines):
        payload = line[3:] if line.startswith("C: ") else ""
        if payload[:1] in ("{", "["):
            (corpus / "event_json" / f"{path.stem}-{index}").write_bytes(payload.encode())
print(f"seeded from {len(transcripts)} transcripts", file=sys.stderr)
