"""The OpenAPI document says exactly what the server accepts (issue 10, row 16): each pattern it states is
compared, in-process, with the rule the server applies. Patterns are read with Python's ``re``, as
schemathesis and Python's JSON Schema validators read them."""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.api import api, validated_payload
from service.errors import ApiError
from service.notifications.schemas import PublishBody
from service.notifications.validation import event_problem, valid_target_id
from service.numbers import INT64_MAX, ascii_int

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Any code point, surrogates included (a JSON body can hold "\ud800"), with the ones the breaker found
# made frequent: no-break and ideographic spaces, zero-width and format characters, private use, tags,
# unassigned code points and noncharacters.
FOUND = "\u00a0\u200b\ufeff\u00ad\u3000\ue000\U000e0001\u0378\uffff\u2028\u0085\x7f"
ANY_TEXT = st.text(st.one_of(st.characters(), st.sampled_from(FOUND)), min_size=0, max_size=260)


@cache
def document() -> dict[str, Any]:
    return json.loads(json.dumps(api.get_openapi_schema(path_prefix="/v1")))  # as a client reads it


def schema_of(name: str) -> dict[str, Any]:
    return document()["components"]["schemas"][name]


def parameter(path: str, name: str) -> dict[str, Any]:
    found = next(p for p in document()["paths"][path]["get"]["parameters"] if p["name"] == name)
    schema = found["schema"]
    return next(s for s in schema.get("anyOf", [schema]) if s.get("type") != "null")


def allowed_by(schema: dict[str, Any], value: str) -> bool:
    """What a JSON Schema validator says of the string ``value`` against ``schema``'s string keywords."""
    return (
        schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", sys.maxsize)
        and re.fullmatch(schema["pattern"], value) is not None
    )


def published_recipient(value: str) -> bool:
    """Whether the server's publish validation takes ``value`` as ``recipient``."""
    body = json.dumps({"recipient": value}).encode()  # ASCII: a lone surrogate travels as \\ud800
    try:
        validated_payload(PublishBody, "application/json", "/v1/notifications", body)
    except ApiError as error:
        assert (error.status, error.code, error.field) == (422, "invalid_field", "recipient"), error.body()
        return False
    return True


def test_target_id_pattern_is_the_printable_rule_for_every_code_point():
    """Exhaustive: the character class of ``TargetId`` matches a code point exactly when
    ``str.isprintable`` (the server's rule) holds for it, for all 1,114,112 of them."""
    pattern = schema_of("TargetId")["pattern"]
    assert pattern.startswith("^[") and pattern.endswith("]+$")
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    matched = "".join(re.findall(pattern[1:-2], every))
    assert matched == "".join(c for c in every if c.isprintable())


@FAST
@given(value=ANY_TEXT)
@example(value="")
@example(value="x" * 256)
@example(value="x" * 257)
@example(value="\ud800")
@example(value="u1\u00a0")
def test_target_id_schema_allows_exactly_what_publish_accepts(value: str):
    schema = schema_of("TargetId")
    assert allowed_by(schema, value) == published_recipient(value) == valid_target_id(value)
    assert parameter("/v1/notifications", "recipient")["pattern"] == schema["pattern"]
    assert parameter("/v1/notifications", "topic")["items"]["pattern"] == schema["pattern"]


BOUNDARY = str(INT64_MAX)


@FAST
@given(raw=st.one_of(st.text(max_size=22), st.integers(min_value=0, max_value=10**20).map(str)))
@example(raw=BOUNDARY)
@example(raw=str(INT64_MAX + 1))
@example(raw="9" * 19)
@example(raw="0" * 19)
@example(raw="0" * 20)
@example(raw="0" + BOUNDARY[:-1])
@example(raw="")
@example(raw="١٢")
@example(raw="12\n")
def test_before_pattern_is_exactly_ascii_int(raw: str):
    for path in ("/v1/notifications", "/v1/inbox"):
        assert (re.fullmatch(parameter(path, "before")["pattern"], raw) is not None) == (
            ascii_int(raw) is not None
        ), raw


@pytest.mark.parametrize("length", range(1, 20))
def test_before_pattern_at_every_length_boundary(length: int):
    """Every 19-digit prefix of the limit, one above and one below, at each length."""
    pattern = parameter("/v1/inbox", "before")["pattern"]
    for value in (int(BOUNDARY[:length]) - 1, int(BOUNDARY[:length]), int(BOUNDARY[:length]) + 1):
        for raw in (str(value), str(value).zfill(19)):
            assert (re.fullmatch(pattern, raw) is not None) == (ascii_int(raw) is not None), raw


@FAST
@given(name=st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:-]{0,66}\Z"), st.text(max_size=70)))
@example(name="beacon.x")
@example(name="beacon.")
@example(name="beacon")
@example(name="beaconx")
@example(name="Beacon.x")
@example(name="abc\n")
def test_event_pattern_is_exactly_the_event_rule(name: str):
    publish = schema_of("PublishIn")["properties"]["event"]
    schema = next(s for s in publish["anyOf"] if s.get("type") == "string")
    assert allowed_by(schema, name) == (event_problem(name) is None), name


@FAST
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "recipient": st.sampled_from([None, "u1"]),
            "recipients": st.sampled_from([None, ["u1"], ["u1", "u2"]]),
            "topic": st.sampled_from([None, "news"]),
            "broadcast": st.sampled_from([None, True, False]),
            "ttl": st.sampled_from([60, 60.0, 6e1, 3600.0, 60.5, 59, True]),
        },
    )
)
@example(body={})
@example(body={"broadcast": False, "recipient": "u1"})
@example(body={"recipient": None, "topic": "news"})
def test_publish_schema_allows_exactly_the_bodies_publish_accepts(body: dict[str, Any]):
    """The target rule (exactly one of recipient, recipients, topic or broadcast: true, not null) and ``ttl``
    (JSON Schema's ``integer`` takes ``60.0``): the document's verdict is the server's."""
    import jsonschema

    schema = {**schema_of("PublishIn"), "components": document()["components"]}  # its $refs resolve here
    allowed = jsonschema.Draft202012Validator(schema).is_valid(body)
    try:
        validated_payload(PublishBody, "application/json", "/v1/notifications", json.dumps(body).encode())
        accepted = True
    except ApiError as error:
        assert error.status in {400, 422}, error.body()
        accepted = False
    assert allowed == accepted, (body, allowed, accepted)


def test_the_read_route_documents_its_id_as_before():
    found = document()["paths"]["/v1/inbox/{notification_id}/read"]["post"]["parameters"]
    (param,) = [p for p in found if p["name"] == "notification_id"]
    assert param["schema"]["pattern"] == parameter("/v1/inbox", "before")["pattern"]
