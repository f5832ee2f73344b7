"""The AMI framing: banner, ``Key: Value`` lines, empty-line ends, reads split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhook.sources.ami.protocol import (
    MAX_MESSAGE,
    AmiMessage,
    AmiParser,
    AmiProtocolError,
    encode,
    encode_action,
)
from callhook.sources.link import LinkError

TRANSCRIPT = (
    b"Asterisk Call Manager/5.0.1\r\n"
    b"Response: Success\r\nActionID: callhook-1\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/210-0000002a\r\n"
    b"CallerIDName: Ren\xc3\xa9e\r\nUniqueid: 1796041200.84\r\nLinkedid: 1796041200.84\r\n\r\n"
    b"Event: Hangup\r\nChannel: PJSIP/210-0000002a\r\nUniqueid: 1796041200.84\r\n"
    b"Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n"
)


def parse_all(data: bytes, chunks: list[int] | None = None) -> tuple[str | None, list[AmiMessage]]:
    parser = AmiParser()
    messages: list[AmiMessage] = []
    start = 0
    for end in [*(chunks or []), len(data)]:
        messages += parser.feed(data[start:end])
        start = end
    return parser.banner, messages


def test_banner_and_messages() -> None:
    banner, messages = parse_all(TRANSCRIPT)
    assert banner == "Asterisk Call Manager/5.0.1"
    assert [m.response or m.event for m in messages] == ["Success", "Newchannel", "Hangup"]
    assert messages[1]["CallerIDName"] == "Renée"
    assert messages[2]["Cause-txt"] == "Normal Clearing"
    assert messages[0].fields[1] == ("ActionID", "callhook-1")


def test_split_at_every_byte_boundary() -> None:
    whole = parse_all(TRANSCRIPT)
    for cut in range(1, len(TRANSCRIPT)):
        assert parse_all(TRANSCRIPT, [cut]) == whole, cut


def test_one_byte_at_a_time() -> None:
    assert parse_all(TRANSCRIPT, list(range(1, len(TRANSCRIPT)))) == parse_all(TRANSCRIPT)


def test_bare_lf_and_mixed_line_ends() -> None:
    lf = TRANSCRIPT.replace(b"\r\n", b"\n")
    assert parse_all(lf) == parse_all(TRANSCRIPT)
    mixed = TRANSCRIPT.replace(b"\r\n\r\n", b"\r\n\n", 1).replace(b"Cause: 16\r\n", b"Cause: 16\n")
    assert parse_all(mixed) == parse_all(TRANSCRIPT)


def test_stray_empty_lines_between_messages_are_ignored() -> None:
    _, messages = parse_all(TRANSCRIPT.replace(b"\r\n\r\nEvent", b"\r\n\r\n\r\n\nEvent"))
    assert len(messages) == 3


def test_keys_are_looked_up_without_regard_to_case() -> None:
    message = AmiMessage([("Event", "Hangup"), ("UniqueID", "1.2"), ("cause-TXT", "x")])
    assert message["Uniqueid"] == message["UNIQUEID"] == "1.2"
    assert message.get("Cause-txt") == "x"
    assert "uniqueid" in message
    number: object = 3
    assert number not in message  # not a string: simply not there
    assert message.get("Linkedid") is None
    assert list(message) == ["Event", "UniqueID", "cause-TXT"]
    assert len(message) == 3


def test_repeated_keys_keep_every_value_and_show_the_last() -> None:
    data = (
        b"Asterisk Call Manager/5.0.1\r\n"
        b"Event: Newchannel\r\nChanVariable: A=1\r\nchanvariable: B=2\r\n\r\n"
    )
    _, (message,) = parse_all(data)
    assert message["ChanVariable"] == "B=2"
    assert message.all("CHANVARIABLE") == ["A=1", "B=2"]
    assert len(message) == 2


def test_a_line_without_a_colon_is_output() -> None:
    data = (
        b"Asterisk Call Manager/1.1\r\n"
        b"Response: Follows\r\nPrivilege: Command\r\nName      Status\r\n--END COMMAND--\r\n\r\n"
    )
    _, (message,) = parse_all(data)
    assert message.all("Output") == ["Name      Status", "--END COMMAND--"]


def test_values_keep_their_inner_colons_and_spaces() -> None:
    data = b"Asterisk Call Manager/5.0.1\r\nEvent: X\r\nDialString: telco/sip:+1555@h:5060\r\n\r\n"
    _, (message,) = parse_all(data)
    assert message["DialString"] == "telco/sip:+1555@h:5060"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    data = b"Asterisk Call Manager/5.0.1\r\nEvent: X\r\nCallerIDName: Ren\xe9e\r\n\r\n"
    _, (message,) = parse_all(data)
    assert message["CallerIDName"] == "Ren\ufffde"


def test_a_peer_that_is_not_ami_is_named_as_such() -> None:
    parser = AmiParser()
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    assert str(caught.value) == (
        "the peer is not an Asterisk manager interface: it greeted with "
        "'SSH-2.0-OpenSSH_9.2p1 Debian-2' instead of 'Asterisk Call Manager/<version>' "
        "(check the host and port, usually 5038)"
    )
    assert isinstance(caught.value, LinkError)


def test_no_banner_line_within_the_limit() -> None:
    with pytest.raises(AmiProtocolError, match="no AMI banner line within 1024 bytes"):
        AmiParser().feed(b"\x16\x03\x01" + b"\x00" * 2000)  # a TLS client hello, say


def test_an_endless_message_is_refused() -> None:
    parser = AmiParser()
    parser.feed(b"Asterisk Call Manager/5.0.1\r\nEvent: Flood\r\n")
    lines = b"Key: 0123456789abc\r\n" * (MAX_MESSAGE // 20 + 2)
    with pytest.raises(AmiProtocolError, match=f"longer than {MAX_MESSAGE} bytes"):
        parser.feed(lines)


def test_an_endless_line_is_refused() -> None:
    parser = AmiParser()
    parser.feed(b"Asterisk Call Manager/5.0.1\r\nEvent: Flood\r\nKey: ")
    with pytest.raises(AmiProtocolError, match="without its end"):
        parser.feed(b"x" * MAX_MESSAGE)


def test_a_message_just_under_the_limit_is_fine() -> None:
    value = "x" * (MAX_MESSAGE - 200)
    _, (message,) = parse_all(
        b"Asterisk Call Manager/5.0.1\r\n" + encode([("Event", "Big"), ("Data", value)])
    )
    assert message["Data"] == value


def test_the_server_side_parses_actions_without_a_banner() -> None:
    parser = AmiParser(expect_banner=False)
    (action,) = parser.feed(encode_action("Ping", action_id="7"))
    assert action.fields == (("Action", "Ping"), ("ActionID", "7"))


# --- encoding -------------------------------------------------------------------------------


def test_encode_action() -> None:
    login = encode_action(
        "Login", {"Username": "callhook", "Secret": "s3cret", "Events": "call,agent"}, action_id="1"
    )
    assert login == (
        b"Action: Login\r\nActionID: 1\r\nUsername: callhook\r\nSecret: s3cret\r\n"
        b"Events: call,agent\r\n\r\n"
    )
    assert encode_action("CoreShowChannels") == b"Action: CoreShowChannels\r\n\r\n"
    repeated = encode_action("Originate", [("Variable", "A=1"), ("Variable", "B=2")])
    assert repeated.count(b"Variable: ") == 2


@pytest.mark.parametrize("value", ["s3cret\r\nAction: Logoff", "a\nb", "a\rb"])
def test_a_line_break_in_a_value_is_refused_without_showing_it(value: str) -> None:
    with pytest.raises(ValueError, match="AMI value of Secret contains a line break") as caught:
        encode_action("Login", {"Username": "u", "Secret": value})
    assert value not in str(caught.value)


@pytest.mark.parametrize("key", ["", "Two words", "Colon:", "Line\nbreak", "Ünïcode"])
def test_a_bad_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="AMI key"):
        encode([(key, "v")])


def test_an_empty_message_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        encode([])


KEYS = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
VALUES = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=40
).map(lambda v: v.lstrip(" "))


@given(
    st.lists(st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=8), min_size=1, max_size=5),
    st.data(),
)
def test_encoded_messages_parse_back_however_they_are_split(
    messages: list[list[tuple[str, str]]], data: st.DataObject
) -> None:
    wire = b"Asterisk Call Manager/5.0.1\r\n" + b"".join(encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    _, parsed = parse_all(wire, cuts)
    assert [m.fields for m in parsed] == [tuple(m) for m in messages]
