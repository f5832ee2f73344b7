"""ESL framing (sources/esl/protocol.py): frames from bytes however they are split, event
bodies (plain URL-encoded, with their own body; JSON), the limits, and the commands."""

from __future__ import annotations

import json

import pytest

from callhook.sources.esl import protocol
from callhook.sources.esl.protocol import EslProtocolError, Frame, Parser, decode_event
from tests.replay.esl_server import SCRIPTS, encode_event, load_script

PLAIN_EVENT = (
    b"Event-Name: CHANNEL_CREATE\n"
    b"Unique-ID: df67a07e-1f69-4ccb-b7cd-e4e8036a5c8b\n"
    b"Channel-Name: sofia/internal/1000%40pbx.example.com\n"
    b"Event-Date-GMT: Fri,%2027%20Nov%202026%2018%3A16%3A12%20GMT\n"
    b"Caller-Caller-ID-Name: Ren%C3%A9e%20%2B%20Co\n"
    b"variable_DP_MATCH: ARRAY%3A%3A1001%7C%3A1001\n"
    b"\n"
)
MESSAGE_EVENT = (
    b"Event-Name: MESSAGE\nfrom: 1000%40pbx.example.com\nContent-Length: 12\n\nhello\n\nthere"
)
JSON_EVENT = json.dumps(
    {
        "Event-Name": "CHANNEL_ANSWER",
        "Unique-ID": "303920ad-16cb-4f11-93da-1370015bcac0",
        "Caller-Caller-ID-Name": "Renée + Co",
        "variable_originated_legs": ["a;Outbound Call;1001", "b;Outbound Call;1002"],
        "Event-Sequence": 48213,
        "_body": "x",
    }
).encode()


def outer(content_type: str, body: bytes = b"", **extra: str) -> bytes:
    head = f"Content-Type: {content_type}\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in extra.items())
    if body:
        head += f"Content-Length: {len(body)}\n"
    return head.encode() + b"\n" + body


def event_frame(kind: str, body: bytes) -> bytes:
    return f"Content-Length: {len(body)}\nContent-Type: {kind}\n\n".encode() + body


GOODBYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
STREAM = b"".join(
    [
        outer("auth/request"),
        outer("command/reply", Reply_Text="+OK accepted"),
        outer("command/reply", Reply_Text="+OK event listener enabled plain"),
        event_frame("text/event-plain", PLAIN_EVENT),
        outer("api/response", b'{"row_count":0}'),
        event_frame("text/event-plain", MESSAGE_EVENT),
        event_frame("text/event-json", JSON_EVENT),
        outer("command/reply", Reply_Text="+OK bye"),
        outer("text/disconnect-notice", GOODBYE),
    ]
)
KINDS = [
    "auth/request",
    "command/reply",
    "command/reply",
    "text/event-plain",
    "api/response",
    "text/event-plain",
    "text/event-json",
    "command/reply",
    "text/disconnect-notice",
]


def frames_of(chunks: list[bytes], parser: Parser | None = None) -> list[Frame]:
    parser = parser or Parser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    assert parser.buffered == 0
    return frames


# --- framing ----------------------------------------------------------------------------------


def test_a_whole_conversation_in_one_read() -> None:
    frames = frames_of([STREAM])
    assert [f.content_type for f in frames] == KINDS
    assert frames[1].reply_text == "+OK accepted"
    assert frames[4].body == b'{"row_count":0}'
    assert frames[8].text == GOODBYE.decode()


def test_split_at_every_byte_boundary_gives_the_same_frames() -> None:
    whole = frames_of([STREAM])
    for cut in range(1, len(STREAM)):
        assert frames_of([STREAM[:cut], STREAM[cut:]]) == whole, f"split at {cut}"


def test_one_byte_at_a_time() -> None:
    assert frames_of([STREAM[i : i + 1] for i in range(len(STREAM))]) == frames_of([STREAM])


def test_crlf_line_ends_and_stray_blank_lines_between_frames() -> None:
    data = b"\r\n\nContent-Type: command/reply\r\nReply-Text: +OK\r\n\r\n\n" + outer("auth/request")
    frames = frames_of([data])
    assert [f.content_type for f in frames] == ["command/reply", "auth/request"]
    assert frames[0].reply_text == "+OK"


def test_header_names_are_found_whatever_their_case() -> None:
    (frame,) = frames_of([b"content-type: api/response\ncontent-length: 2\n\nok"])
    assert frame.content_type == "api/response"
    assert frame.body == b"ok"


def test_a_frame_waits_for_its_whole_body() -> None:
    parser = Parser()
    data = outer("api/response", b"+OK 12345")
    assert parser.feed(data[:-3]) == []
    assert parser.buffered > 0
    (frame,) = parser.feed(data[-3:])
    assert frame.body == b"+OK 12345"


# --- event bodies -----------------------------------------------------------------------------


def test_plain_event_values_are_url_decoded() -> None:
    (frame,) = frames_of([event_frame("text/event-plain", PLAIN_EVENT)])
    event = decode_event(frame)
    assert event["Channel-Name"] == "sofia/internal/1000@pbx.example.com"
    assert event["Event-Date-GMT"] == "Fri, 27 Nov 2026 18:16:12 GMT"
    assert event["Caller-Caller-ID-Name"] == "Renée + Co"
    assert event["variable_DP_MATCH"] == "ARRAY::1001|:1001"
    assert "_body" not in event


def test_plain_event_with_its_own_body() -> None:
    event = protocol.parse_plain_event(MESSAGE_EVENT)
    assert event == {
        "Event-Name": "MESSAGE",
        "from": "1000@pbx.example.com",
        "_body": "hello\n\nthere",
    }


def test_plain_event_body_shorter_than_announced() -> None:
    with pytest.raises(EslProtocolError, match="announces a body of 40 bytes and carries 5"):
        protocol.parse_plain_event(b"Event-Name: MESSAGE\nContent-Length: 40\n\nhello")


def test_json_event_has_the_same_shape() -> None:
    (frame,) = frames_of([event_frame("text/event-json", JSON_EVENT)])
    assert decode_event(frame) == {
        "Event-Name": "CHANNEL_ANSWER",
        "Unique-ID": "303920ad-16cb-4f11-93da-1370015bcac0",
        "Caller-Caller-ID-Name": "Renée + Co",
        "variable_originated_legs": "ARRAY::a;Outbound Call;1001|:b;Outbound Call;1002",
        "Event-Sequence": "48213",
        "_body": "x",
    }


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"{not json", "is not JSON"), (b"[1, 2]", "is not a JSON object"), (b"\xff\xfe", "JSON")],
)
def test_broken_json_events(body: bytes, problem: str) -> None:
    with pytest.raises(EslProtocolError, match=problem):
        protocol.parse_json_event(body)


def test_only_events_decode_as_events() -> None:
    with pytest.raises(EslProtocolError, match="api/response frame is not an event"):
        decode_event(Frame({"Content-Type": "api/response"}, b"+OK"))


@pytest.mark.parametrize("script", sorted(p.stem for p in SCRIPTS.glob("*.esl")))
@pytest.mark.parametrize("event_format", ["plain", "json"])
def test_every_replayed_event_survives_the_wire(script: str, event_format: str) -> None:
    events = load_script(script).events
    wire = b"".join(encode_event(event, event_format) for event in events)
    assert [decode_event(f) for f in frames_of([wire])] == events


# --- limits against a broken peer --------------------------------------------------------------


def test_a_header_block_that_never_ends() -> None:
    parser = Parser(max_header_bytes=1024)
    for _ in range(10):
        assert parser.feed(b"X-Filler: " + b"y" * 90 + b"\n") == []
    with pytest.raises(EslProtocolError, match="longer than 1024 bytes without the empty line"):
        parser.feed(b"X-Filler: " + b"y" * 90 + b"\n")


def test_a_header_block_over_the_limit_with_its_end() -> None:
    with pytest.raises(EslProtocolError, match=r"a header block of \d+ bytes \(the limit is 64\)"):
        Parser(max_header_bytes=64).feed(b"Content-Type: api/response\nX: " + b"z" * 80 + b"\n\n")


def test_a_body_over_the_limit() -> None:
    with pytest.raises(EslProtocolError, match="Content-Length 2000000 is over the limit of 1000"):
        Parser(max_body_bytes=1000).feed(b"Content-Type: api/response\nContent-Length: 2000000\n\n")


@pytest.mark.parametrize("length", ["-5", "12abc", "", "1e6"])
def test_a_content_length_that_is_not_a_number(length: str) -> None:
    with pytest.raises(EslProtocolError, match="is not a number of bytes"):
        Parser().feed(f"Content-Type: api/response\nContent-Length: {length}\n\n".encode())


def test_a_peer_that_is_not_esl() -> None:
    with pytest.raises(EslProtocolError, match="not a 'Name: value' header line"):
        Parser().feed(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n")


# --- show channels ----------------------------------------------------------------------------


def test_show_channels_rows() -> None:
    body = json.dumps(
        {
            "row_count": 2,
            "rows": [
                {"uuid": "a", "call_uuid": "a", "direction": "inbound", "created_epoch": 17},
                {"uuid": "b", "call_uuid": "a", "direction": "outbound", "secure": None},
            ],
        }
    ).encode()
    assert protocol.parse_channels(body) == [
        {"uuid": "a", "call_uuid": "a", "direction": "inbound", "created_epoch": "17"},
        {"uuid": "b", "call_uuid": "a", "direction": "outbound", "secure": ""},
    ]


def test_show_channels_when_there_are_none() -> None:
    assert protocol.parse_channels(b'{"row_count":0}\n') == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"-ERR show Command not found!\n", "show channels failed: -ERR show"),
        (b"uuid,direction,created\n\n0 total.\n", "did not answer JSON"),
        (b'{"row_count": 1, "rows": "x"}', "without a list of rows"),
    ],
)
def test_show_channels_answers_that_are_not_rows(body: bytes, problem: str) -> None:
    with pytest.raises(EslProtocolError, match=problem):
        protocol.parse_channels(body)


# --- commands ---------------------------------------------------------------------------------


def test_commands_on_the_wire() -> None:
    assert protocol.auth("ClueCon") == b"auth ClueCon\n\n"
    assert protocol.subscribe("plain", ["CHANNEL_CREATE", "CHANNEL_ANSWER"]) == (
        b"event plain CHANNEL_CREATE CHANNEL_ANSWER\n\n"
    )
    assert protocol.subscribe("json", ["ALL"]) == b"event json ALL\n\n"
    assert protocol.api("show channels as json") == b"api show channels as json\n\n"
    assert protocol.EXIT == b"exit\n\n"


@pytest.mark.parametrize("line", ["status\napi hupall", "status\r", "x\n\nexit"])
def test_a_line_break_cannot_smuggle_a_second_command(line: str) -> None:
    with pytest.raises(ValueError, match="must be one line"):
        protocol.api(line)


def test_a_password_with_a_line_break_is_refused_without_being_repeated() -> None:
    with pytest.raises(ValueError, match="password must not contain a line break") as caught:
        protocol.auth("Secret\nevent plain ALL")
    assert "Secret" not in str(caught.value)


def test_subscribe_checks_format_and_names() -> None:
    with pytest.raises(ValueError, match="use plain or json"):
        protocol.subscribe("xml", ["ALL"])
    with pytest.raises(ValueError, match="at least one event"):
        protocol.subscribe("plain", [])
    with pytest.raises(ValueError, match="is not an event name"):
        protocol.subscribe("plain", ["CHANNEL_CREATE ALL"])
