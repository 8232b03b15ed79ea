"""Live and replayed ``data`` carry the same numbers, written as PostgreSQL ``numeric`` prints them.

A live frame carries the text Python wrote at ingestion; a replay reads ``data::text`` from ``jsonb``, whose
numbers print positionally and without negative zero. ``1e300`` was ``1e+300`` live and 1 followed by 300
zeros replayed; ``-0.0`` was ``0.0`` replayed; ``1.5e-7`` was ``0.00000015``. Checked in process against the
real PostgreSQL (any float), and end to end: live, replayed from the database and from the replay window.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service import jsonbody
from tests.support import Api, read_stream, unique
from tests.whatwg_sse import parse

EXTREMES = [
    "1e300", "-1e300", "1E+2", "1e16", "1e15", "1.5e-7", "-0.0", "-0", "-0e5", "0.0e-3", "1.50e2", "1e20",
    "5e-324", "-5e-324", "2.2250738585072014e-308", "1.7976931348623157e308", "-1.7976931348623157e+308",
    "0.1", "100.0", "123456789012345678", "1e-5", "0.0001", "9007199254740993.0", "1.0000000000000002",
]  # fmt: skip


def _text(number_text: str) -> str:
    """What ingestion stores and streams live for the JSON number ``number_text``."""
    return jsonbody.dumps(jsonbody.parse(number_text.encode()))


def _postgres_texts(texts: list[str]) -> list[str]:
    with psycopg.connect(os.environ["BEACON_TEST_DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT t::jsonb::text FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i) ORDER BY i", [texts]
        ).fetchall()
    return [row[0] for row in rows]


def test_extreme_numbers_are_written_as_postgresql_prints_them():
    texts = [_text(raw) for raw in EXTREMES]
    assert _postgres_texts(texts) == texts
    assert _text("1e300") == "1" + "0" * 300
    assert (_text("-0.0"), _text("1.5e-7"), _text("1e16")) == ("0.0", "0.00000015", "10000000000000000")
    assert (_text("0.1"), _text("100.0"), _text("1e15")) == ("0.1", "100.0", "1000000000000000.0")


def _any_float() -> st.SearchStrategy[float]:
    bits = st.integers(min_value=0, max_value=2**64 - 1).map(
        lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0]
    )
    return st.one_of(st.floats(allow_nan=False, allow_infinity=False), bits.filter(math.isfinite))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_any_float(), min_size=1, max_size=40))
@example([-0.0, 1e300, 1.5e-7, 1e16, 5e-324, 1e22, 1e-7])
def test_any_float_is_written_as_postgresql_prints_it(values: list[float]):
    """Whatever spelling a client used (``repr``, ``%.17g``, upper-case ``E``), ingestion writes the number
    exactly as PostgreSQL's ``jsonb::text`` prints it back, so live and replayed events agree."""
    spellings = [s for v in values for s in (repr(v), f"{v:.17g}", f"{v:E}") if "e" in s.lower() or "." in s]
    texts = [_text(s) for s in spellings]
    assert _postgres_texts(texts) == texts
    for spelling, text in zip(spellings, texts, strict=True):
        assert float(text) == float(spelling) or float(text) == float(repr(float(spelling)))  # same double


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | _any_float() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_dumps_of_a_parsed_body_is_the_same_json_value(value: Any):
    body = json.dumps(value).encode()
    parsed = jsonbody.parse(body)
    written = jsonbody.dumps(parsed)
    # The same doubles (-0.0 == 0.0): 1e16 is written 10000000000000000, which a client reads as that double.
    assert json.loads(written, parse_int=float) == json.loads(body, parse_int=float)
    assert "e" not in "".join(jsonbody.dumps(n) for n in _numbers(parsed)).lower()


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return (
        [value]
        if (isinstance(value, (int, float)) and not isinstance(value, bool))
        or type(value).__name__ == "Decimal"
        else []
    )


def test_infinity_from_a_huge_exponent_stays_a_422(acme: Api):
    # Integers beyond a 64-bit float too (a browser's JSON.parse reads them as Infinity, as 1e400): 400
    # digits were stored and delivered, 5000 were 400 invalid_json with Python's int-limit message.
    huge = ("1" + "0" * 400, "-" + "9" * 5000, str(int(1.7976931348623157e308) + 1))
    for raw in ("1e400", "-1e400", "[1,2e999]", *huge):
        body = '{"recipient":"u1","data":' + raw + "}"
        response = acme.client.post(
            "/v1/notifications", content=body, headers=acme.headers(**{"Content-Type": "application/json"})
        )
        assert response.status_code == 422 and response.json()["error"]["field"] == "data", response.text
    largest = str(int(1.7976931348623157e308))  # the largest double, as an integer: still a number
    body = '{"recipient":"u1","data":' + largest + "}"
    response = acme.client.post(
        "/v1/notifications", content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 201, response.text


def test_numbers_spelled_differently_are_the_same_idempotent_request(acme: Api):
    key = unique("idem")
    first, second = (
        acme.client.post(
            "/v1/notifications",
            content='{"recipient":"u1","data":' + data + "}",
            headers=acme.headers(**{"Content-Type": "application/json", "Idempotency-Key": key}),
        )
        for data in ("[1e300, -0.0, 1.5e-7]", "[1E+300, 0.0, 0.00000015]")
    )
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    assert second.headers.get("idempotent-replayed") == "true"


# --- End to end: the live frame and its replays -------------------------------------------------------------
DATA = '{"n": 1e300, "z": -0.0, "s": 1.5e-7, "b": 1e16, "a": [1E+2, -0e5, 0.0e-3, 2.5, 7]}'


def _numbers_as_written(event_data: str) -> Any:
    """The event's ``data`` with every number kept as its text: equal values and equal number texts."""
    return json.loads(event_data, parse_float=lambda s: ("float", s), parse_int=lambda s: ("int", s))["data"]


def _live_and_replayed(url: str, api: Api) -> tuple[Any, Any]:
    user = unique()
    token = api.token(user)
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url + "/v1/stream", headers={"Authorization": f"Bearer {token}"}) as live,
    ):
        assert live.status_code == 200
        raw = live.iter_raw()
        got = next(raw)  # the stream is registered
        response = api.client.post(
            "/v1/notifications",
            content='{"recipient":"' + user + '","data":' + DATA + "}",
            headers=api.headers(**{"Content-Type": "application/json"}),
        )
        assert response.status_code == 201, response.text
        stored_id = response.json()["notifications"][0]["id"]
        while b'"created_at"' not in got:
            got += next(raw)
    replayed = read_stream(url, token, b'"created_at"', last_event_id=str(int(stored_id) - 1))
    events = []
    for stream in (got, replayed):
        (event,) = [e for e in parse(stream).events if e.last_event_id == stored_id and e.type == "message"]
        events.append(_numbers_as_written(event.data))
    return events[0], events[1]


def test_live_and_replayed_from_the_window_carry_the_same_numbers(acme: Api, server):
    live, replayed = _live_and_replayed(server.url, acme)
    assert live == replayed
    assert live["n"] == ("int", "1" + "0" * 300) and live["z"] == ("float", "0.0")
    assert live["s"] == ("float", "0.00000015") and live["b"] == ("int", "10000000000000000")


def test_live_and_replayed_from_the_database_carry_the_same_numbers(start_server, make_tenant):
    srv = start_server(workers=1, REPLAY_WINDOW_EVENTS="0")  # no window: the replay reads jsonb
    live, replayed = _live_and_replayed(srv.url, Api(srv.url, make_tenant()[1]))
    assert live == replayed
    assert live["a"] == [
        ("float", "100.0"),
        ("float", "0.0"),
        ("float", "0.0"),
        ("float", "2.5"),
        ("int", "7"),
    ]


def test_the_inbox_carries_the_same_numbers(server, make_tenant):
    # A tenant of its own: other tests' broadcasts in the shared tenants are in every recipient's inbox.
    acme = Api(server.url, make_tenant()[1])
    user = unique()
    response = acme.client.post(
        "/v1/notifications",
        content='{"recipient":"' + user + '","data":' + DATA + "}",
        headers=acme.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 201, response.text
    inbox = acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {acme.token(user)}"})
    (row,) = json.loads(inbox.text, parse_float=lambda s: ("float", s), parse_int=lambda s: ("int", s))[
        "notifications"
    ]
    assert row["data"]["n"] == ("int", "1" + "0" * 300) and row["data"]["s"] == ("float", "0.00000015")
    assert row["data"]["z"] == ("float", "0.0") and row["data"]["b"] == ("int", "10000000000000000")


@pytest.mark.parametrize(
    ("payload", "data_text"),
    [
        ("[1e300, -0.0, 1.5e-7]", "[1" + "0" * 300 + ",0.0,0.00000015]"),
        ('{"a": 1e16}', '{"a":10000000000000000}'),
    ],
)
def test_the_admin_send_form_parses_like_the_api(payload: str, data_text: str):
    from service import jsonbody
    from service.notifications.admin import SendForm

    form = SendForm(data={"recipient": "u1", "payload": payload})
    assert form.is_valid(), form.errors
    assert jsonbody.dumps(form.to_publish().data) == data_text
    nan = SendForm(data={"recipient": "u1", "payload": "[NaN]"})
    assert nan.is_valid()
    with pytest.raises(jsonbody.InvalidJson):
        nan.to_publish()


@pytest.mark.parametrize(
    ("ttl", "taken"),
    [
        ("1e3", True),
        ("60.0", True),
        ("3600.000", True),
        ("1E+300", False),
        ("-0.0", False),
        ("1.5e-7", False),
    ],
)
def test_number_fields_other_than_data_take_whole_numbers_in_any_spelling(acme: Api, ttl: str, taken: bool):
    """Exponent floats are Decimals after parsing: the integer fields take the whole ones (JSON Schema's
    ``integer``, as the OpenAPI document says) and refuse the rest by value (no 500)."""
    for path in ("/v1/notifications", "/v1/tokens"):
        response = acme.client.post(
            path,
            content='{"recipient":"u1","ttl":' + ttl + "}",
            headers=acme.headers(**{"Content-Type": "application/json"}),
        )
        if taken:
            assert response.status_code == 201, response.text
        else:
            assert response.status_code == 422 and response.json()["error"]["field"] == "ttl", response.text
