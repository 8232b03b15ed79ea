"""Property-based tests (hypothesis) on the pure parts, in-process: SSE framing, body parsing and validation,
number and host parsing."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service import hosts, jsonbody
from service.api import from_validation
from service.numbers import ascii_int
from service.streaming import sse
from tests.whatwg_sse import parse

# All of Unicode that UTF-8 can carry (surrogates cannot be written to a stream at all), with the line
# and paragraph separators, NEL, CR, LF and NUL made frequent.
TRICKY = st.sampled_from(["\u2028", "\u2029", "\u0085", "\r", "\n", "\r\n", "\x00", "\x0b", "\x0c", "\x1c"])
CHARS = st.characters(blacklist_categories=("Cs",))
TEXT = st.lists(st.one_of(CHARS.map(str), TRICKY), max_size=40).map("".join)
EVENT_NAMES = st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
IDS = st.integers(min_value=0, max_value=2**63 - 1)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _as_read(text: str) -> str:
    """What an EventSource reads back: CR and CRLF in a value arrive as LF."""
    return re.sub(r"\r\n|\r", "\n", text)


@FAST
@given(data=TEXT, event_id=st.none() | IDS, name=st.none() | EVENT_NAMES)
def test_any_text_is_framed_so_a_whatwg_parser_reads_it_back(
    data: str, event_id: int | None, name: str | None
):
    frame = sse.event(data, id=event_id, name=name)
    parsed = parse(frame)
    assert len(parsed.events) == 1, frame
    (event,) = parsed.events
    assert event.data == _as_read(data)
    assert event.type == (name or "message")
    assert event.last_event_id == ("" if event_id is None else str(event_id))
    assert parse(frame + frame).events == [event, event]  # frames end cleanly: nothing leaks into the next


@FAST
@given(value=JSON_VALUES, event_id=IDS, name=st.none() | EVENT_NAMES, recipient=TEXT)
def test_notification_frames_carry_exact_json(value: Any, event_id: int, name: str | None, recipient: str):
    data_json = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    frame = sse.notification(event_id, name, data_json, recipient, None, "2026-11-30T00:00:00.000000Z")
    (event,) = parse(frame).events
    assert frame.count(b"\ndata: ") + frame.startswith(b"data: ") == 1  # one data line, whatever the text
    body = json.loads(event.data)
    assert body["data"] == value and body["recipient"] == recipient and body["id"] == str(event_id)
    assert event.last_event_id == str(event_id) and event.type == (name or "message")


@FAST
@given(text=TEXT)
def test_comments_never_become_events(text: str):
    assert parse(sse.comment(text)).events == []


def test_separators_that_are_not_sse_line_ends_stay_in_one_data_line():
    frame = sse.event('{"t":"a\u2028b\u2029c\u0085d\x1ce\x0cf"}', id=1)
    assert frame == 'id: 1\ndata: {"t":"a\u2028b\u2029c\u0085d\x1ce\x0cf"}\n\n'.encode()


def _body_status(raw: bytes, route: str = "single") -> int:
    """The status the ingestion pipeline's pure part gives ``raw``: parse, then validate the schema."""
    from service.api import ApiError
    from service.notifications.schemas import BatchIn, PublishIn

    try:
        value = jsonbody.parse(raw)
    except jsonbody.InvalidJson:
        return 400
    try:
        if route == "batch":
            items = BatchIn.model_validate(value).notifications
        else:
            items = [PublishIn.model_validate(value)]
    except ValidationError as exc:
        error = from_validation(exc.errors())
        assert isinstance(error, ApiError)
        json.dumps(error.body())  # the error itself can always be written
        return error.status
    for item in items:  # what is stored: must encode as UTF-8 JSON that jsonb accepts
        stored = json.dumps(item.data, separators=(",", ":"), ensure_ascii=False)
        stored.encode()
        assert "\\u0000" not in stored and "Infinity" not in stored and "NaN" not in stored
    return 201


BODY_VALUES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "recipient": st.one_of(TEXT, JSON_SCALARS),
            "recipients": st.lists(TEXT, max_size=3) | JSON_SCALARS,
            "topic": TEXT,
            "broadcast": st.booleans() | JSON_SCALARS,
            "event": st.one_of(EVENT_NAMES, TEXT),
            "data": JSON_VALUES,
            "ttl": st.integers(min_value=-(2**65), max_value=2**65) | JSON_SCALARS,
        },
    ),
)
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF).map(str)  # a lone one


@FAST
@given(value=BODY_VALUES, batch=st.booleans())
def test_any_json_body_is_accepted_or_refused_with_a_documented_4xx(value: Any, batch: bool):
    raw = json.dumps({"notifications": [value]} if batch else value).encode()
    assert _body_status(raw, "batch" if batch else "single") in {201, 400, 413, 422}


@FAST
@given(prefix=TEXT, bad=st.one_of(st.just("\x00"), SURROGATES), as_key=st.booleans(), depth=st.integers(0, 5))
def test_values_jsonb_cannot_store_are_422(prefix: str, bad: str, as_key: bool, depth: int):
    inner: Any = {prefix + bad: 1} if as_key else prefix + bad
    for _ in range(depth):
        inner = [inner]
    raw = json.dumps({"recipient": "u1", "data": {"t": inner}}).encode()  # ASCII escapes: \u0000, \ud800
    assert _body_status(raw) == 422


@FAST
@given(raw=st.binary(max_size=200))
def test_any_bytes_parse_or_are_invalid_json(raw: bytes):
    with contextlib.suppress(jsonbody.InvalidJson):  # and nothing else
        jsonbody.parse(raw)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_invalid_json(constant: str):
    assert _body_status(f'{{"recipient":"u1","data":{constant}}}'.encode()) == 400


def test_only_utf8_json_is_json():
    body = '{"recipient":"u1"}'
    assert _body_status(body.encode()) == 201
    for encoding in ("utf-16", "utf-32", "utf-16-le"):
        assert _body_status(body.encode(encoding)) == 400
    assert _body_status(b"\xef\xbb\xbf" + body.encode()) == 400  # a BOM is not JSON text (RFC 8259 8.1)
    assert _body_status(b'{"recipient":"u\xff"}') == 400


def test_deep_nesting_is_invalid_json_at_any_depth():
    for levels in (65, 1000, 100_000):
        assert _body_status(b'{"recipient":"u1","data":' + b"[" * levels + b"]" * levels + b"}") == 400
    assert _body_status(b'{"recipient":"u1","data":' + b"[" * 63 + b"]" * 63 + b"}") == 201


def test_numbers_beyond_a_double_are_422():
    assert _body_status(b'{"recipient":"u1","data":1e400}') == 422
    # integers too: 309 digits and more are beyond a double (JSON.parse: Infinity), 5000 past Python's int limit
    for digits in (b"9" * 309, b"-" + b"1" * 400, b"9" * 5000):
        assert _body_status(b'{"recipient":"u1","data":' + digits + b"}") == 422
    assert _body_status(b'{"recipient":"u1","data":' + b"9" * 308 + b"}") == 201
    # the limit is the largest double, not a digit count (docs/errors.md): 309 digits on both sides of it
    largest = int(sys.float_info.max)
    for value, status in (
        (10**308, 201),
        (largest, 201),
        (-largest, 201),
        (largest + 1, 422),
        (2 * 10**308, 422),
    ):
        assert _body_status(b'{"recipient":"u1","data":%d}' % value) == status, (str(value)[:5], status)


@FAST
@given(raw=st.text(max_size=25))
def test_ascii_int_takes_ascii_digits_only(raw: str):
    value = ascii_int(raw)
    if re.fullmatch(r"[0-9]{1,19}", raw) and int(raw) <= 2**63 - 1:
        assert value == int(raw)
    else:
        assert value is None


@pytest.mark.parametrize(
    "raw", ["²", "١٢", "+5", " 5", "5 ", "1_0", "0x5", "5.0", "", "-1", "9" * 20, "\u0665"]
)
def test_ascii_int_refuses_what_int_accepts(raw: str):
    assert ascii_int(raw) is None


LABELS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda label: not label.startswith("-") and not label.endswith("-")
)
HOST_NAMES = st.lists(LABELS, min_size=1, max_size=4).map(".".join)


@FAST
@given(name=HOST_NAMES, port=st.none() | st.integers(0, 65535), dot=st.booleans(), upper=st.booleans())
def test_host_forms_normalise_to_one_name(name: str, port: int | None, dot: bool, upper: bool):
    raw = (name.upper() if upper else name) + ("." if dot else "")
    assert hosts.normalize(raw) == name
    assert hosts.normalize(raw + ":") is None  # an empty port is refused (docs/decisions.md)
    if port is not None:
        assert hosts.normalize(f"{raw}:{port}") == name


@pytest.mark.parametrize(
    "raw",
    [
        "acme.localhost:x",
        "acme.localhost:99999",
        "acme..localhost",
        "a b",
        "acme.localhost:1:2",
        "é.x",
        ":80",
    ],
)
def test_malformed_hosts_are_refused(raw: str):
    assert hosts.normalize(raw) is None


@FAST
@given(name=st.text(min_size=1, max_size=8), value=TEXT)
def test_query_parameters_with_control_characters_are_refused(name: str, value: str):
    from urllib.parse import urlencode

    from service.http import query_problem

    problem = query_problem(urlencode({name: value}).encode())
    has_control = any(unicodedata.category(c) == "Cc" for c in name + value)
    assert (problem is not None) == has_control
    if problem is not None:
        assert problem.status == 422 and problem.code == "invalid_field"


@FAST
@given(field=st.text(max_size=2000), tail=st.text(max_size=3000))
def test_an_error_quotes_at_most_128_characters_of_a_field_and_1024_of_a_message(field: str, tail: str):
    from service.errors import MAX_MESSAGE, MAX_SHOWN_FIELD, ApiError

    error = ApiError(422, "unknown_field", f"{field}: {tail}", field=field)
    assert error.field is not None and len(error.field) <= MAX_SHOWN_FIELD + 1
    assert len(error.message) <= MAX_MESSAGE
    if len(field) <= MAX_SHOWN_FIELD:
        assert error.field == field
    else:
        assert error.field == field[:MAX_SHOWN_FIELD] + "…" and error.message.startswith(error.field)
