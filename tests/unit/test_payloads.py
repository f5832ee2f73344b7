from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl, quote_plus, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from callhook.domain.payloads import (
    PARAM_ORDER,
    Timeouts,
    build_request,
    encode_params,
    new_secret,
    sign,
    sign_all,
    sign_with,
    signing_key,
    split_url,
)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_params_in_voipnow_order_and_unknown_values_omitted() -> None:
    params = {
        "CallFlow": "IN",
        "CallID": "abc-1",
        "CallerIDName": "",
        "CallAPIID": None,
        "CalledExtension": "0003*210",
        "CallerIDNum": "+40 721 000",
        "CallStatus": "CALLING",
    }
    assert encode_params(params) == (
        "CallID=abc-1&CallerIDNum=%2B40+721+000&CalledExtension=0003%2A210"
        "&CallStatus=CALLING&CallFlow=IN"
    )


def test_every_parameter_round_trips() -> None:
    params = {name: f"{name} é&=?/#" for name in PARAM_ORDER}
    encoded = encode_params(params)
    assert parse_qsl(encoded, strict_parsing=True) == list(params.items())
    assert encode_params({}) == ""


def test_unknown_parameter_names_are_refused() -> None:
    with pytest.raises(ValueError, match="callid"):
        encode_params({"CallID": "1", "callid": "2"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/p", Timeouts()),
        ("https://h/p#", Timeouts()),
        ("https://h/p#ct=2000&rt=5000&rc=3", Timeouts(2.0, 5.0, 4)),
        ("https://h/p#rc=0", Timeouts(max_attempts=1)),
        ("https://h/p#ct=1&rt=999999&rc=1000", Timeouts(0.1, 60.0, 101)),
        ("https://h/p#ct=50000", Timeouts(connect=10.0)),
        ("https://h/p#ct=abc&rt=-5&rc=1.5&x=1&tt=100&ct", Timeouts()),
        ("https://h/p#section-2", Timeouts()),
        ("https://h/p#rt=250&rt=750", Timeouts(total=0.75)),
    ],
)
def test_fragment_options_override_timeouts(url: str, expected: Timeouts) -> None:
    assert split_url(url, Timeouts()) == ("https://h/p", expected)


def test_fragment_is_stripped_and_defaults_kept() -> None:
    default = Timeouts(connect=1.0, total=2.0, max_attempts=7)
    assert split_url("http://h/a?b=c#rt=3000", default) == (
        "http://h/a?b=c",
        Timeouts(connect=1.0, total=3.0, max_attempts=7),
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/p", "https://h/p?CallID=1&CallFlow=IN"),
        ("https://h/p?a=1", "https://h/p?a=1&CallID=1&CallFlow=IN"),
        ("https://h/p?", "https://h/p?CallID=1&CallFlow=IN"),
        ("https://h/p?a=1&", "https://h/p?a=1&CallID=1&CallFlow=IN"),
        ("https://h/?x=%20y", "https://h/?x=%20y&CallID=1&CallFlow=IN"),
    ],
)
def test_get_appends_the_payload_to_any_query(url: str, expected: str) -> None:
    request = build_request(
        0,
        url,
        "CallID=1&CallFlow=IN",
        webhook_id="m",
        timestamp=1,
        signatures="s",
        seq=1,
        user_agent="u",
    )
    assert request.method == "GET"
    assert request.url == expected
    assert request.body is None
    assert "Content-Type" not in dict(request.headers)


def test_get_with_no_parameters_leaves_the_url_alone() -> None:
    request = build_request(
        0, "https://h/p?a=1", "", webhook_id="m", timestamp=1, signatures="s", seq=1, user_agent="u"
    )
    assert request.url == "https://h/p?a=1"


def test_post_sends_a_form_body_and_signature_headers() -> None:
    request = build_request(
        1,
        "https://h/p?a=1",
        "CallID=1&CallFlow=IN",
        webhook_id="msg_1",
        timestamp=1700000000,
        signatures="v1,abc v1,def",
        seq=3,
        user_agent="callhook/0.1.0",
    )
    assert request.method == "POST"
    assert request.url == "https://h/p?a=1"
    assert request.body == b"CallID=1&CallFlow=IN"
    assert dict(request.headers) == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1,abc v1,def",
        "X-Callhook-Seq": "3",
        "User-Agent": "callhook/0.1.0",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_other_methods_are_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(GET\\) or 1 \\(POST\\)"):
        build_request(
            2, "https://h/", "", webhook_id="m", timestamp=1, signatures="s", seq=1, user_agent="u"
        )


def _headers(webhook_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    now = int(time.time())
    payload = "CallID=abc&CalledExtension=0003%2A210&CallFlow=IN"
    signature = sign(SECRET, "msg_2x", now, payload)
    assert signature.startswith("v1,")
    Webhook(SECRET).verify(payload, _headers("msg_2x", now, signature), json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(payload + "&x", _headers("msg_2x", now, signature), json_parse=False)


def test_known_signature() -> None:
    # the example of the Standard Webhooks specification
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    payload = '{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, payload) == expected


def test_rotation_signs_with_every_secret() -> None:
    now = int(time.time())
    old, new = new_secret(), new_secret()
    signatures = sign_all([old, new], "msg_r", now, "CallID=1")
    assert signatures.count("v1,") == 2
    for secret in (old, new):
        Webhook(secret).verify("CallID=1", _headers("msg_r", now, signatures), json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(
            "CallID=1", _headers("msg_r", now, signatures), json_parse=False
        )


def test_keys_decoded_once_sign_as_their_secrets() -> None:
    # the worker decodes an app's secrets once and signs each delivery with the keys
    now = int(time.time())
    secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", new_secret()]
    keys = [signing_key(secret) for secret in secrets]
    assert keys[0] == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signatures = sign_with(keys, "msg_k", now, "CallID=1&CallFlow=out")
    assert signatures == sign_all(secrets, "msg_k", now, "CallID=1&CallFlow=out")
    assert signatures.split(" ")[1] == sign(secrets[1], "msg_k", now, "CallID=1&CallFlow=out")
    Webhook(secrets[1]).verify(
        "CallID=1&CallFlow=out", _headers("msg_k", now, signatures), json_parse=False
    )


def test_new_secrets_are_whsec_base64_of_24_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert new_secret() != secret


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        sign(secret, "m", 1, "p")


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.dictionaries(
        st.sampled_from(PARAM_ORDER),
        st.none()
        | st.text(max_size=12)
        | st.from_regex(r"[A-Za-z0-9*+ _.~-]{0,12}", fullmatch=True),
    )
)
def test_encode_params_is_byte_for_byte_urlencode(params: dict[str, str | None]) -> None:
    """The fast path (values that need no quoting) changes nothing in the bytes sent."""
    pairs = [(name, value) for name in PARAM_ORDER if (value := params.get(name))]
    assert encode_params(params) == urlencode(pairs, quote_via=quote_plus)
