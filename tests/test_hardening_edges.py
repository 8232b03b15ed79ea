"""Issue 10's remaining fuzzer finds, against the real server: each fixed with its whole kind.

- A subscriber token spelled another way (``=`` padding, ``+``/``/``, a BOM or UTF-16 claims) or with a
  claim of the wrong JSON type (``topics: false``) verified: ``401 invalid_token`` on every way of sending a
  token (stream and inbox; header, query and cookie). The spellings themselves: tests/test_token_decoding.py.
- A single-value query parameter given twice (``?recipient=a&recipient=b``) took the last value: ``422
  invalid_field`` naming it, on every route that reads the query; ``topic`` still repeats.
- A CORS preflight on an unknown path under ``/v1/inbox/`` answered ``204``: ``404 not_found``.
- ``HEAD`` on ninja's GET routes was ``405``: every route that takes GET takes HEAD (same headers, no body),
  the stream included (its refusals, then 200 with its headers and nothing else).
- Found by fuzzing the previous fixes: white space around ``Idempotency-Key`` was part of the key under
  httptools (not under h11), and an invalid ``last_event_id`` query was ignored when ``Last-Event-ID`` was
  sent too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from tests.support import Api, raw_exchange, unique

ORIGIN = "https://app.acme.test"  # in acme's allowed origins (tests/conftest.py)


def _seg(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: str, payload: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_seg(mac)}"


def _bad_tokens(secret: str) -> dict[str, str]:
    """Tokens signed with acme's secret, each wrong in one way only."""
    header = _seg(b'{"alg":"HS256","typ":"JWT"}')
    exp = int(time.time()) + 3600

    def claims(**extra: Any) -> bytes:
        return json.dumps({"sub": "u1", "tid": "acme", "exp": exp, **extra}).encode()

    padded = next(p for i in range(3) if len(p := _seg(claims(x="a" * i))) % 4)
    return {
        "padding": _signed(header, padded + "=" * (-len(padded) % 4), secret),
        "standard alphabet": _signed(
            header,
            next(p for i in range(500) if "-" in (p := _seg(claims(x=">" * i)))).replace("-", "+"),
            secret,
        ),
        "BOM": _signed(header, _seg(b"\xef\xbb\xbf" + claims()), secret),
        "UTF-16": _signed(header, _seg(claims().decode().encode("utf-16")), secret),
        "topics false": _signed(header, _seg(claims(topics=False)), secret),
        # a number no 64-bit float holds, in a claim Beacon does not read: 1e400 was accepted, 6,000 digits not
        "unknown claim 1e400": _signed(header, _seg(claims()[:-1] + b',"x":1e400}'), secret),
        "unknown claim 6000 digits": _signed(
            header, _seg(claims()[:-1] + b',"x":' + b"9" * 6000 + b"}"), secret
        ),
        "unknown claim 2e308 as digits": _signed(
            header, _seg(claims()[:-1] + b',"x":2' + b"0" * 308 + b"}"), secret
        ),
    }


def _token_routes(base: str, token: str) -> dict[str, tuple[str, dict[str, str]]]:
    bearer = {"Authorization": f"Bearer {token}"}
    cookie = {"Cookie": f"beacon_token={token}", "Origin": ORIGIN}
    return {
        "stream header": ("/v1/stream", bearer),
        "stream query": (f"/v1/stream?token={token}", {}),
        "stream cookie": ("/v1/stream", cookie),
        "inbox header": ("/v1/inbox", bearer),
        "inbox query": (f"/v1/inbox?token={token}", {}),
        "inbox cookie": ("/v1/inbox", cookie),
        "unread-count header": ("/v1/inbox/unread-count", bearer),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "padding",
        "standard alphabet",
        "BOM",
        "UTF-16",
        "topics false",
        "unknown claim 1e400",
        "unknown claim 6000 digits",
        "unknown claim 2e308 as digits",
    ],
)
def test_a_token_of_another_spelling_or_claim_type_is_invalid_token_everywhere(acme: Api, tenant_pair, kind):
    token = _bad_tokens(tenant_pair[0][0].signing_secret)[kind]
    for name, (path, headers) in _token_routes(acme.client.base_url, token).items():
        response = acme.client.get(path, headers=headers)
        assert response.status_code == 401, (kind, name, response.text)
        assert response.json()["error"]["code"] == "invalid_token", (kind, name, response.text)
    good = acme.token(unique())  # the same routes take a well-spelled token
    assert acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {good}"}).status_code == 200


# --- A single-value query parameter given twice -----------------------------------------------------------
def _repeat_cases(acme: Api) -> list[tuple[str, str, dict[str, str]]]:
    token = acme.token(unique())
    bearer = {"Authorization": f"Bearer {token}"}
    return [
        ("/v1/notifications?recipient=a&recipient=b", "recipient", acme.headers()),
        ("/v1/notifications?recipient=a&limit=1&limit=2", "limit", acme.headers()),
        ("/v1/notifications?recipient=a&limit=1&limit=1", "limit", acme.headers()),
        ("/v1/notifications?recipient=a&before=5&before=6", "before", acme.headers()),
        ("/v1/notifications?recipient=a&unread=true&unread=false", "unread", acme.headers()),
        ("/v1/notifications?recipient=&recipient=a", "recipient", acme.headers()),
        ("/v1/inbox?limit=1&limit=2", "limit", bearer),
        ("/v1/inbox?before=1&before=2", "before", bearer),
        ("/v1/inbox?unread=1&unread=0", "unread", bearer),
        (f"/v1/inbox?token={token}&token={token}", "token", {}),
        (f"/v1/inbox/unread-count?token={token}&token=x", "token", {}),
        (f"/v1/stream?token={token}&token={token}", "token", {}),
        ("/v1/stream?last_event_id=1&last_event_id=2", "last_event_id", bearer),
        ("/v1/stream?last_event_id=1&last%5Fevent%5Fid=1", "last_event_id", bearer),
    ]


def test_a_single_value_query_parameter_given_twice_is_422_naming_it(acme: Api):
    for path, field, headers in _repeat_cases(acme):
        response = acme.client.get(path, headers=headers)
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_field" and error["field"] == field, (path, error)


def test_topic_still_repeats(acme: Api):
    response = acme.client.get(
        "/v1/notifications?recipient=a&topic=x&topic=y&topic=x", headers=acme.headers()
    )
    assert response.status_code == 200, response.text


def test_query_problem_refuses_repeats_by_decoded_name():
    from service.http import query_problem

    assert query_problem(b"topic=a&topic=b&recipient=a") is None
    for raw, field in [
        (b"recipient=a&recipient=b", "recipient"),
        (b"x+y=1&x%20y=2", "x y"),
        (b"limit=1&&limit=1", "limit"),
        (b"token&token=", "token"),
    ]:
        problem = query_problem(raw)
        assert problem is not None and problem.code == "invalid_field" and problem.field == field, raw


# --- CORS preflights on unknown paths ------------------------------------------------------------------------
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}


@pytest.mark.parametrize(
    "path", ["/v1/inbox/nope", "/v1/inbox/1/nope", "/v1/inbox/unread-count/x", "/v1/inbox/"]
)
def test_a_preflight_on_an_unknown_path_is_404_with_cors_headers(acme: Api, path: str):
    response = acme.client.options(path, headers=PREFLIGHT)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["access-control-allow-origin"] == ORIGIN  # the page can read why


@pytest.mark.parametrize("path", ["/v1/stream", "/v1/inbox", "/v1/inbox/7/read", "/v1/inbox/read-all"])
def test_a_preflight_on_a_route_is_still_204(acme: Api, path: str):
    response = acme.client.options(path, headers=PREFLIGHT)
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN


# --- HEAD wherever GET -----------------------------------------------------------------------------------------
def _head_and_get(
    client: httpx.Client, path: str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    return client.head(path, headers=headers), client.get(path, headers=headers)


def test_head_is_get_without_the_body_on_every_get_route(acme: Api):
    token = acme.token(unique())
    bearer = {"Authorization": f"Bearer {token}"}
    routes = {
        "/v1/notifications?recipient=a": acme.headers(),
        "/v1/inbox": bearer,
        "/v1/inbox/unread-count": bearer,
        "/v1/beacon.js": {},
        "/v1/openapi.json": {},
        "/v1/docs": {},
        "/healthz": {},
        "/readyz": {},
    }
    for path, headers in routes.items():
        head, get = _head_and_get(acme.client, path, headers)
        assert head.status_code == get.status_code == 200, (path, head.status_code, get.text)
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        if "content-length" in get.headers:
            assert head.headers["content-length"] == get.headers["content-length"], path
    # and its refusals are GET's (in the error shape's headers; no body)
    refused = acme.client.head("/v1/notifications?recipient=a&limit=0", headers=acme.headers())
    assert refused.status_code == 422 and refused.content == b"", refused.headers
    assert acme.client.head("/v1/inbox").status_code == 401


def test_head_on_the_stream_is_its_headers_without_a_stream(acme: Api):
    token = acme.token(unique())
    with acme.client.stream(
        "HEAD", "/v1/stream", headers={"Authorization": f"Bearer {token}", "Origin": ORIGIN}
    ) as head:
        assert head.status_code == 200
        assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert head.headers["access-control-allow-origin"] == ORIGIN
        assert head.read() == b""  # the answer ends: no stream stays open
    assert acme.client.head("/v1/stream").status_code == 401
    assert (
        acme.client.head(
            "/v1/stream?last_event_id=x", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 400
    )


def test_405_allow_lists_head_with_get(acme: Api):
    response = acme.client.delete("/v1/inbox", headers={"Origin": ORIGIN})
    assert response.status_code == 405
    assert [m.strip() for m in response.headers["allow"].split(",")] == ["GET", "HEAD"]
    response = acme.client.put("/v1/notifications")
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


# --- Found by this pass's fuzzing ----------------------------------------------------------------------------
def _raw_post(url: str, key: str, extra: bytes, body: bytes, *, after: bytes = b"") -> bytes:
    """``POST /v1/notifications`` on a raw socket with ``extra`` header lines, ``body`` and then ``after``
    (bytes pipelined behind it; without them the request asks for ``Connection: close``): all the server sent
    until it closed the connection."""
    port = url.rsplit(":", 1)[1]
    request = (
        b"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + (b"" if after else b"Connection: close\r\n")
        + b"\r\n"
        + body
        + after
    )
    return raw_exchange(int(port), request)


@pytest.mark.parametrize("padding", [b" ", b"\t", b" \t "])
def test_white_space_around_an_idempotency_key_is_not_part_of_it(acme: Api, server, padding: bytes):
    """RFC 9110 section 5.5: h11 strips it, httptools kept the trailing part (``k\\t`` was a 422, ``k `` a
    key other than ``k``)."""
    key = unique("key")
    body = json.dumps({"recipient": unique(), "data": 1}).encode()
    first = _raw_post(server.url, acme.key, b"Idempotency-Key: " + key.encode() + padding + b"\r\n", body)
    assert first.startswith(b"HTTP/1.1 201 "), first
    again = acme.client.post(
        "/v1/notifications",
        content=body,
        headers=acme.headers(**{"Idempotency-Key": key, "Content-Type": "application/json"}),
    )
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true", again.text


def test_an_invalid_last_event_id_query_is_refused_even_when_the_header_wins(acme: Api):
    bearer = {"Authorization": f"Bearer {acme.token(unique())}"}
    for query in ("x", "-1", "+5", "1e3", "١٢"):
        response = acme.client.get(
            "/v1/stream", params={"last_event_id": query}, headers={**bearer, "Last-Event-ID": "5"}
        )
        assert response.status_code == 400, (query, response.text)
        assert response.json()["error"]["code"] == "invalid_last_event_id"


def test_an_empty_last_event_id_header_does_not_cancel_the_querys_resume(acme: Api):
    """An empty header is no position (browsers send none then: WHATWG HTML, EventSource); the query's
    position still holds. It used to win, and the stream started live, skipping what it should replay."""
    user = unique()
    first, second = (acme.publish_ok({"recipient": user, "data": n})[0]["id"] for n in (1, 2))
    with httpx.stream(
        "GET",
        f"{acme.base_url}/v1/stream?last_event_id={first}",
        headers={"Authorization": f"Bearer {acme.token(user)}", "Last-Event-ID": ""},
        timeout=10,
    ) as response:
        assert response.status_code == 200, response.read()
        ids = []
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])
                break
    assert ids == [second]


@pytest.mark.parametrize("garbage", [b"GARBAGE\r\n\r\n", b"\x01\r\n\r\n"])
def test_bad_bytes_pipelined_behind_a_publish_get_their_400_after_its_201(acme: Api, server, garbage: bytes):
    """The publish before the bad bytes is answered (and stored once); the 400 that follows is about them.
    It used to be written at once in the publish's place: "not processed" for a stored notification."""
    recipient = unique()
    body = json.dumps({"recipient": recipient}).encode()
    answer = _raw_post(server.url, acme.key, b"", body, after=garbage)
    first, _, rest = answer.partition(b"\r\n")
    assert first.startswith(b"HTTP/1.1 201 "), answer
    assert b"HTTP/1.1 400 " in rest and b'"bad_request"' in rest, answer
    stored = acme.client.get("/v1/notifications", params={"recipient": recipient}, headers=acme.headers())
    assert len(stored.json()["notifications"]) == 1, stored.text


def test_a_token_with_large_numbers_a_double_holds_in_an_unknown_claim_is_taken(acme: Api, tenant_pair):
    """The other side of the number rule: ``1`` and 308 zeros and ``1e308`` are 64-bit floats."""
    header = _seg(b'{"alg":"HS256","typ":"JWT"}')
    claims = json.dumps({"sub": "u1", "tid": "acme", "exp": int(time.time()) + 3600}).encode()
    payload = claims[:-1] + b',"x":1' + b"0" * 308 + b',"y":1e308,"z":-1.5e-300}'
    token = _signed(header, _seg(payload), tenant_pair[0][0].signing_secret)
    assert acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# --- HEAD on the stream at a connection limit (issue 10 breaker, stop 20) ------------------------------------
def test_head_on_the_stream_is_429_where_its_get_would_be(server, make_tenant):
    _, key = make_tenant(max_connections_per_recipient=1)
    api = Api(server.url, key)
    user = unique()
    token = {"Authorization": f"Bearer {api.token(user)}"}
    assert api.client.head("/v1/stream", headers=token).status_code == 200  # it gives its slot back at once
    assert api.client.head("/v1/stream", headers=token).status_code == 200
    with api.client.stream("GET", "/v1/stream", headers=token) as held:
        assert held.status_code == 200
        head = api.client.head("/v1/stream", headers=token)
        get = api.client.get("/v1/stream", headers=token)
        assert (head.status_code, get.status_code) == (429, 429), (head.headers, get.text)
        assert head.headers["retry-after"] == get.headers["retry-after"]
        other = {"Authorization": f"Bearer {api.token(unique())}"}  # another recipient has room
        assert api.client.head("/v1/stream", headers=other).status_code == 200


def test_a_get_right_after_a_head_finds_the_slot_the_head_gave_back(server, make_tenant):
    """HEAD gives its slot back before it answers: the GET that follows, on whichever worker accepts it,
    finds it free (given back in a later batch, a GET on another worker was 429 in 2 of 3 tries)."""
    _, key = make_tenant(max_connections_per_recipient=2)
    api = Api(server.url, key)
    for _ in range(6):  # recipients of their own: the kernel spreads the connects over the workers
        token = {"Authorization": f"Bearer {api.token(unique())}"}
        with api.client.stream("GET", "/v1/stream", headers=token) as held:
            assert held.status_code == 200
            # new connections each: kept alive, the HEAD and the GET would reach the same worker
            assert httpx.head(server.url + "/v1/stream", headers=token).status_code == 200
            with httpx.stream("GET", server.url + "/v1/stream", headers=token) as second:
                assert second.status_code == 200, second.read()


# --- Names a client wrote, echoed in errors (issue 10 breaker, stop 20) --------------------------------------
@pytest.mark.parametrize(
    ("path", "wrap"),
    [
        ("/v1/notifications", lambda item: item),
        ("/v1/notifications/batch", lambda item: {"notifications": [item]}),
        ("/v1/tokens", lambda item: item),
    ],
)
def test_an_unknown_field_named_by_a_lone_surrogate_is_unknown_field_by_its_escape(
    acme: Api, path: str, wrap
):
    body = json.dumps(
        wrap({"recipient": unique(), "\ud800": 1, "ok\udfffx": 2})
    )  # ASCII JSON: \ud800 escapes
    response = acme.client.post(
        path, content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_field", error
    assert error["field"].endswith("\\ud800"), error
    assert "\\ud800: unknown field" in error["message"], error


def test_long_names_are_cut_in_errors(acme: Api):
    long = "n" * 200_000
    body = json.dumps({"recipient": unique(), long: 1})
    response = acme.client.post(
        "/v1/notifications", content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (422, "unknown_field")
    assert error["field"] == "n" * 128 + "…" and len(response.content) < 2000, len(response.content)
    token = {"Authorization": f"Bearer {acme.token(unique())}"}
    name = "q" * 20_000  # the request head stays under 64 KiB
    for query in (f"{name}%01=1", f"{name}=1&{name}=2", f"{name}%ff=1"):  # control, repeated, not UTF-8
        for path in ("/v1/inbox", "/v1/stream"):
            response = acme.client.get(f"{path}?{query}", headers=token)
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (422, "invalid_field"), (path, query[-10:])
            assert len(error["field"]) == 129 and len(response.content) < 2000, (path, len(response.content))


@pytest.mark.parametrize("name", ["abc\n", "abc\r\n", "x\n"])
def test_an_event_name_ending_in_a_newline_is_422_on_both_publish_routes(acme: Api, name: str):
    """Stored, it broke every resume that replayed it and the listener's dispatch (breaker, stop 21)."""
    item = {"recipient": unique(), "event": name, "data": 1}
    for path, body in (("/v1/notifications", item), ("/v1/notifications/batch", {"notifications": [item]})):
        response = acme.client.post(path, json=body, headers=acme.headers())
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["field"].endswith("event"), response.text


# --- HTTP's white space around a header value is SP and HTAB only (breaker, stop 21) -------------------------
@pytest.mark.parametrize(
    ("auth", "content_type", "status"),
    [
        ("Bearer {key}\x85", "application/json", 401),  # str.strip() took U+0085 and U+00A0 away
        ("Bearer \xa0{key}", "application/json", 401),
        ("Bearer {key}\xa0", "application/json", 401),
        ("Bearer {key}", "application/json\x85", 415),
        ("Bearer {key}", "\xa0application/json", 415),
        ("Bearer {key}\t ", "application/json \t", 201),  # HTTP's own white space is not part of a value
    ],
)
def test_only_http_white_space_is_trimmed_from_header_values(
    acme: Api, server, auth: str, content_type: str, status: int
):
    body = json.dumps({"recipient": unique()}).encode()
    for path in ("/v1/notifications", "/v1/tokens"):  # the lean publish route and a ninja route
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Authorization: {auth.format(key=acme.key)}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        answer = raw_exchange(server.port, head + body)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (path, answer[:300])


def test_an_origin_with_white_space_after_it_is_the_origin(acme: Api, server):
    token = acme.token(unique())
    request = (
        "GET /v1/inbox/unread-count HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: Bearer {token}\r\nOrigin: {ORIGIN}\t\r\n\r\n"
    ).encode()
    answer = raw_exchange(server.port, request)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert f"access-control-allow-origin: {ORIGIN}\r\n".encode() in answer.lower(), answer[:600]
