cases = []
def case(name, why, send, expect, closes, message=None):
    cases.append((name, why, send, expect, closes, message))
E = '{"event_type":"A","data":1}'
CR = "\\r\\n"
def sized(header, *parts):
    return [f"sized {header}"] + list(parts) + ["end-sized"]
case("count-short-append", "the byte count is shorter than the payload: framing is lost", [f"APPEND s any 5{CR}{E}{CR}"], ["bad_frame"], "yes")
case("count-long-append", "the byte count covers the payload and more: the bytes after it are not CRLF", ["APPEND s any 20" + CR + "x"*20 + "yy" + CR], ["bad_frame"], "yes")
case("count-short-snap-save", "SNAP SAVE with a byte count shorter than its payload", ['SNAP SAVE s 0 3' + CR + '{"data":1}' + CR], ["bad_frame"], "yes")
case("count-short-sub", "SUB's full form with a byte count shorter than its options", ['SUB x 2' + CR + '{"type":"stream","selector":"s"}' + CR], ["bad_frame"], "yes")
case("count-zero-append", "a zero byte count: an empty payload is not JSON", ["APPEND s any 0" + CR + CR], ["invalid_json"], "no")
case("negative-read-from", "READ from a negative version other than -1", ["READ s -5 10" + CR], ["invalid_argument"], "no")
case("negative-read-count", "READ with a negative count", ["READ s 0 -1" + CR], ["invalid_argument"], "no")
case("negative-readall-from", "READALL from -2", ["READALL -2 10" + CR], ["invalid_argument"], "no")
case("negative-expected-version", "APPEND expecting version -3", [f"APPEND s -3 {E}" + CR], ["invalid_argument"], "no")
case("negative-byte-count", "APPEND with -10 where the byte count goes: not a count, so inline JSON, which -10 is not", ["APPEND s any -10" + CR], ["invalid_json"], "no")
case("negative-delete-expected", "DELETE expecting version -7", ["DELETE s -7" + CR], ["invalid_argument"], "no")
case("negative-snap-version", "SNAP SAVE at version -1", ['SNAP SAVE s -1 {"data":1}' + CR], ["invalid_argument"], "no")
case("negative-ack", "ACK of position -1", ["ACK x -1" + CR], ["invalid_argument"], "no")
case("negative-streams-count", "STREAMS with a negative count", ["STREAMS - -4" + CR], ["invalid_argument"], "no")
case("overflow-read-from", "a version of 2^64", ["READ s 18446744073709551616 10" + CR], ["invalid_argument"], "no", "18446744073709551616")
case("overflow-read-count", "a count of 2^64", ["READ s 0 18446744073709551616" + CR], ["invalid_argument"], "no", "18446744073709551616")
case("overflow-readall", "a position of 2^64", ["READALL 18446744073709551616 1" + CR], ["invalid_argument"], "no")
case("overflow-expected-version", "an expected version of 2^64", [f"APPEND s 18446744073709551616 {E}" + CR], ["invalid_argument"], "no")
case("overflow-byte-count", "a byte count of 2^64: refused before reading, named as sent", ["APPEND s any 18446744073709551616" + CR], ["payload_too_large"], "yes", "18446744073709551616 bytes")
case("overflow-byte-count-1e23", "a byte count of 10^23, named as sent (not as u64::MAX)", ["APPEND s any 100000000000000000000000" + CR], ["payload_too_large"], "yes", "100000000000000000000000 bytes")
case("overflow-snap-version", "SNAP LOAD at version 2^64", ["SNAP LOAD s 18446744073709551616" + CR], ["invalid_argument"], "no")
case("overflow-streams-count", "STREAMS count of 2^64", ["STREAMS - 18446744073709551616" + CR], ["invalid_argument"], "no")
case("overflow-ack", "ACK of position 2^64", ["ACK x 18446744073709551616" + CR], ["invalid_argument"], "no")
case("payload-one-over", "a byte count one over max_payload", ["APPEND s any 1048577" + CR], ["payload_too_large"], "yes", "1048577 bytes")
case("overflow-sub-count", "SUB's full form with a byte count of 2^64", ["SUB x 18446744073709551616" + CR], ["payload_too_large"], "yes", "18446744073709551616 bytes")
case("non-utf8-stream-append", "a stream id that is not UTF-8", [f"APPEND s\\xff any {E}" + CR], ["invalid_argument"], "no")
case("nul-stream-append", "a NUL byte in a stream id", [f"APPEND s\\x00x any {E}" + CR], ["invalid_argument"], "no")
case("non-utf8-stream-read", "READ of a stream id with an invalid UTF-8 sequence", ["READ \\xc3\\x28 0 1" + CR], ["invalid_argument"], "no")
case("nul-stream-version", "VERSION of a stream id ending in NUL", ["VERSION a\\x00" + CR], ["invalid_argument"], "no")
case("non-utf8-readtypes", "READTYPES of a type that is not UTF-8", ["READTYPES T\\xff 0 1" + CR], ["invalid_argument"], "no")
case("non-utf8-sub-selector", "SUB to a stream id that is not UTF-8", ["SUB x stream s\\xfe" + CR], ["invalid_argument"], "no")
case("non-utf8-use", "USE of a store name that is not UTF-8", ["USE \\xff" + CR], ["invalid_argument"], "no")
case("nul-event-type", "an event type holding NUL (escaped in JSON)", ['APPEND s any {"event_type":"A\\\\u0000","data":1}' + CR], ["invalid_argument"], "no")
case("non-utf8-payload", "an event payload that is not UTF-8", ['APPEND s any {"event_type":"A","data":"\\xff"}' + CR], ["invalid_json"], "no")
case("nul-command", "NUL bytes where a command goes", ["\\x00\\x00" + CR], ["unknown_command"], "no")
case("bidi-override-stream", "a stream id with U+202E (right-to-left override)", [f"APPEND a\\u{{202E}}b any {E}" + CR], ["invalid_argument"], "no", "U+202E")
case("zero-width-stream", "a stream id with U+200B (zero-width space)", [f"APPEND a\\u{{200B}}b any {E}" + CR], ["invalid_argument"], "no", "U+200B")
case("bom-stream-read", "READ of a stream id starting with U+FEFF", ["READ \\u{FEFF}s 0 1" + CR], ["invalid_argument"], "no")
case("nel-stream", "a stream id with U+0085 (a C1 control)", ["VERSION a\\u{85}b" + CR], ["invalid_argument"], "no")
case("isolate-event-type", "an event type with U+2066 (left-to-right isolate)", ['APPEND s any {"event_type":"A\\u{2066}B","data":1}' + CR], ["invalid_argument"], "no")
case("zero-width-readtypes", "READTYPES of a type with U+200D (zero-width joiner)", ["READTYPES A\\u{200D}B 0 1" + CR], ["invalid_argument"], "no")
case("bidi-pattern", "an event_pattern with U+202D", ["SUB x event_pattern a\\u{202D}*" + CR], ["invalid_selector"], "no")
case("line-no-newline", "5000 bytes without a newline: refused before the newline", ["repeat 5000 A"], ["line_too_long"], "yes")
case("line-too-long", "a control line of 5000 bytes", ["READ ", "repeat 4993 s", CR], ["line_too_long"], "yes")
case("line-at-limit", "a control line of exactly 4096 bytes (CRLF included) is read: its stream id is too long", ["READ ", "repeat 4085 s", " 0 1" + CR], ["invalid_argument"], "no")
case("line-one-over", "a control line of 4097 bytes", ["READ ", "repeat 4086 s", " 0 1" + CR], ["line_too_long"], "yes")
case("stream-id-too-long", "a stream id of 256 bytes", ["VERSION ", "repeat 256 s", CR], ["invalid_argument"], "no")
case("payload-at-limit-garbage", "a payload of exactly max_payload bytes that is not JSON", sized("APPEND s any {#}", "repeat 1048576 x"), ["invalid_json"], "no")
case("event-type-too-long", "an event type of 256 bytes", ['APPEND s any {"event_type":"', "repeat 256 T", '","data":1}' + CR], ["invalid_argument"], "no")
D = 100000
case("deep-data-array", "event data nested 100 000 arrays deep", sized("APPEND s any {#}", '{"event_type":"A","data":', f"repeat {D} [", f"repeat {D} ]", "}"), ["invalid_json"], "no")
case("deep-metadata-object", "metadata nested 100 000 objects deep", sized("APPEND s any {#}", '{"event_type":"A","data":1,"metadata":', f'repeat {D} {{"a":', "1", f"repeat {D} }}", "}"), ["invalid_json"], "no")
case("deep-snapshot", "a snapshot nested 100 000 arrays deep", sized("SNAP SAVE s 0 {#}", '{"data":', f"repeat {D} [", f"repeat {D} ]", "}"), ["invalid_json"], "no")
case("deep-sub-options", "SUB options nested 100 000 arrays deep", sized("SUB x {#}", f"repeat {D} [", f"repeat {D} ]"), ["invalid_json"], "no")
case("deep-connect", "CONNECT with 2000 nested arrays (on its line)", ["CONNECT ", "repeat 2000 [", "repeat 2000 ]", CR], ["invalid_json"], "no")
case("deep-payload-selector", "an event_payload selector nested 600 objects deep (on its line)", ["SUB x event_payload ", 'repeat 600 {"a":', "1", "repeat 600 }", CR], ["invalid_selector"], "no")
case("duplicate-event-type", "an event with event_type twice", ['APPEND s any {"event_type":"A","event_type":"B","data":1}' + CR], ["invalid_json"], "no")
case("duplicate-data", "an event with data twice", ['APPEND s any {"event_type":"A","data":1,"data":2}' + CR], ["invalid_json"], "no")
case("unknown-event-field", "an event with a field the protocol does not define", ['APPEND s any {"event_type":"A","data":1,"bogus":2}' + CR], ["invalid_json"], "no")
case("unknown-snapshot-field", "a snapshot with a field the protocol does not define", ['SNAP SAVE s 0 {"data":1,"bogus":2}' + CR], ["invalid_json"], "no")
case("missing-event-type", "an event without event_type", ['APPEND s any {"data":1}' + CR], ["invalid_json"], "no")
case("wrong-type-event-type", "an event whose event_type is a number", ['APPEND s any {"event_type":7,"data":1}' + CR], ["invalid_json"], "no")
case("bad-event-id", "an event_id that is not a UUID", ['APPEND s any {"event_type":"A","data":1,"event_id":"nope"}' + CR], ["invalid_argument"], "no")
case("number-out-of-range", "a number outside the finite doubles", ['APPEND s any {"event_type":"A","data":1e400}' + CR], ["invalid_json"], "no")
case("lone-surrogate", "a string holding a lone surrogate", ['APPEND s any {"event_type":"A","data":"\\\\ud800"}' + CR], ["invalid_json"], "no")
case("trailing-garbage-json", "a payload with bytes after its JSON", [f"APPEND s any {E}x" + CR], ["invalid_json"], "no")
case("too-many-events", "an APPEND of 10 001 events", sized("APPEND s any {#}", "[", f"repeat 10000 {E},", E, "]"), ["invalid_argument"], "no")
case("empty-event-array", "an APPEND of no events", ["APPEND s any []" + CR], ["invalid_argument"], "no")
case("too-many-readtypes", "READTYPES of 33 types", ["READTYPES " + ",".join(f"T{i}" for i in range(33)) + " 0 1" + CR], ["invalid_argument"], "no")
case("too-many-ack-items", "ACK of 1001 positions", ["ACK x " + ",".join(str(i) for i in range(1001)) + CR], ["invalid_argument"], "no")
few_many = [
 ("append-too-few", "APPEND s", "invalid_argument"),
 ("append-nothing", "APPEND", "invalid_argument"),
 ("read-too-few", "READ s", "invalid_argument"),
 ("read-too-many", "READ s 0 1 forward extra", "invalid_argument"),
 ("read-bad-direction", "READ s 0 1 sideways", "invalid_argument"),
 ("readall-too-few", "READALL", "invalid_argument"),
 ("readall-too-many", "READALL 0 1 forward extra", "invalid_argument"),
 ("readtypes-too-few", "READTYPES A", "invalid_argument"),
 ("readtypes-too-many", "READTYPES A 0 1 extra", "invalid_argument"),
 ("version-too-few", "VERSION", "invalid_argument"),
 ("version-too-many", "VERSION s t", "invalid_argument"),
 ("exists-too-few", "EXISTS", "invalid_argument"),
 ("exists-too-many", "EXISTS s t", "invalid_argument"),
 ("streams-too-many", "STREAMS - 1 extra", "invalid_argument"),
 ("delete-too-few", "DELETE", "invalid_argument"),
 ("delete-too-many", "DELETE s any extra", "invalid_argument"),
 ("sub-too-few", "SUB x", "invalid_argument"),
 ("sub-unknown-type", "SUB x sideways s", "unknown_selector_type"),
 ("unsub-too-few", "UNSUB", "invalid_argument"),
 ("unsub-too-many", "UNSUB x y", "invalid_argument"),
 ("ack-too-few", "ACK x", "invalid_argument"),
 ("nack-too-few", "NACK x retry", "invalid_argument"),
 ("nack-bad-action", "NACK x explode 1", "invalid_argument"),
 ("psub-too-few", "PSUB", "invalid_argument"),
 ("psub-too-many", "PSUB LIST extra", "invalid_argument"),
 ("psub-get-too-few", "PSUB GET", "invalid_argument"),
 ("snap-too-few", "SNAP", "invalid_argument"),
 ("snap-load-too-few", "SNAP LOAD", "invalid_argument"),
 ("snap-load-too-many", "SNAP LOAD s 1 extra", "invalid_argument"),
 ("snap-save-too-few", "SNAP SAVE s", "invalid_argument"),
 ("agg-too-few", "AGG", "invalid_argument"),
 ("agg-unknown-option", "AGG s sideways", "invalid_argument"),
 ("use-too-few", "USE", "invalid_argument"),
 ("use-too-many", "USE default other", "invalid_argument"),
 ("use-unknown-store", "USE nowhere", "store_not_found"),
 ("ping-too-many", "PING extra", "invalid_argument"),
 ("pong-too-many", "PONG extra", "invalid_argument"),
 ("help-too-many", "HELP extra", "invalid_argument"),
 ("stats-too-many", "STATS extra", "invalid_argument"),
 ("connect-not-json", "CONNECT hello", "invalid_json"),
 ("connect-bad-store", 'CONNECT {"store":"../etc"}', "invalid_argument"),
 ("unknown-command", "FROBNICATE s", "unknown_command"),
 ("reserved-stream", f"APPEND $all any {E}", "invalid_argument"),
]
for name, line, code in few_many:
    case(name, f"{line.split()[0]} with the wrong arguments: {line}", [line + CR], [code], "no")
case("random-100mb", "100 MB of pseudo-random bytes (seeded): any errors, maybe a close; the server survives and writes nothing", ["random 104857600 16"], ["*"], "any")
import os, glob
for f in glob.glob("*.case"): os.remove(f)
for name, why, send, expect, closes, message in cases:
    lines = [f"# {why}"]
    for part in send:
        if part.split(" ")[0] in ("repeat", "random", "sized", "end-sized"):
            lines.append(part)
        else:
            lines.append(f"send {part}")
    for code in expect:
        lines.append(f"expect {code}")
    lines.append(f"closes {closes}")
    if message:
        lines.append(f"message {message}")
    open(f"{name}.case", "w").write("\n".join(lines) + "\n")
print(len(cases))
