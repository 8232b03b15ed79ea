"""Issue 10's table, row by row and by kind, against a real server: framing, bodies, numbers, hosts, token
claims, query parameters, error shapes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import strategies as st

from service.numbers import ascii_int_pattern
from tests.support import Api, read_stream, unique
from tests.whatwg_sse import parse

SEPARATORS = "a\u2028b\u2029c\u0085d\x1ce\x1df\x1eg\x0bh\x0ci"


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return dict(body["error"])


# Row 1: U+2028 and every other separator that is not an SSE line end, live and replayed.
def test_separators_in_data_arrive_in_one_data_line_live_and_replayed(acme: Api, server):
    user = unique()
    token = acme.token(user)
    data = {"t": SEPARATORS, SEPARATORS: [SEPARATORS]}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", server.url + "/v1/stream", headers={"Authorization": f"Bearer {token}"}) as live,
    ):
        assert live.status_code == 200
        raw = live.iter_raw()
        first = next(raw)  # headers and retry are out: the stream is registered
        (stored,) = acme.publish_ok({"recipient": user, "data": data})
        got = first
        while b'"created_at"' not in got:
            got += next(raw)
    replayed = read_stream(server.url, token, b'"created_at"', last_event_id=str(int(stored["id"]) - 1))
    for stream in (got, replayed):
        events = [e for e in parse(stream).events if e.last_event_id == stored["id"] and e.type == "message"]
        assert len(events) == 1, stream
        assert "\n" not in events[0].data  # one data line
        assert json.loads(events[0].data)["data"] == data


# Rows 2 and 3: values jsonb cannot store (422 with the field), and what is not JSON (400).
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"recipient":"u1","data":{"t":"a\\u0000b"}}', "data"),
        ('{"recipient":"u1","data":{"a\\u0000b":1}}', "data"),
        ('{"recipient":"u1","data":["x",["\\u0000"]]}', "data"),
        ('{"recipient":"u1","data":"\\ud800"}', "data"),
        ('{"recipient":"u1","data":{"\\udfff":1}}', "data"),
        ('{"recipient":"u1","data":1e400}', "data"),
        (
            '{"notifications":[{"recipient":"u1"},{"recipient":"u1","data":"\\u0000"}]}',
            "notifications[1].data",
        ),
        ('{"recipient":"a\\u0000b"}', "recipient"),
        ('{"recipient":"\\ud800"}', "recipient"),
        ('{"topic":"t\\u0000"}', "topic"),
        ('{"recipients":["ok","\\u0000"]}', "recipients[1]"),
        ('{"recipient":"u","event":"a\\u0000"}', "event"),
    ],
)
def test_values_postgres_cannot_store_are_422_with_the_field(acme: Api, body: str, field: str):
    path = "/v1/notifications/batch" if body.startswith('{"notifications"') else "/v1/notifications"
    response = acme.client.post(
        path, content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    assert error_of(response, 422, "invalid_field")["field"] == field


def test_token_claims_postgres_cannot_store_are_422(acme: Api):
    for body, field in [
        ('{"recipient":"a\\u0000"}', "recipient"),
        ('{"recipient":"a","topics":["\\ud800"]}', "topics"),
    ]:
        response = acme.client.post(
            "/v1/tokens", content=body, headers=acme.headers(**{"Content-Type": "application/json"})
        )
        assert error_of(response, 422, "invalid_field")["field"].startswith(field)


@pytest.mark.parametrize(
    "data",
    ["NaN", "-NaN", "Infinity", "-Infinity", "[1,NaN]", '{"a":Infinity}', "nan", "undefined", "'x'", "0x10"],
)
def test_what_is_not_json_is_400_invalid_json(acme: Api, data: str):
    body = '{"recipient":"u1","data":' + data + "}"
    response = acme.client.post(
        "/v1/notifications", content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    error_of(response, 400, "invalid_json")


# Row 15: deep nesting is a documented code, on every JSON route.
@pytest.mark.parametrize("path", ["/v1/notifications", "/v1/notifications/batch", "/v1/tokens"])
@pytest.mark.parametrize("levels", [65, 5000, 100_000])
def test_deep_nesting_is_400_invalid_json(acme: Api, path: str, levels: int):
    body = '{"recipient":"u1","data":' + "[" * levels + "]" * levels + "}"
    response = acme.client.post(
        path, content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    assert "64" in error_of(response, 400, "invalid_json")["message"]


# Row 4: body limits on every route, with and without Content-Length, without reading the body.
def _raw_request(server_url: str, head: str, body_chunks: Iterable[bytes] = ()) -> tuple[int, dict[str, Any]]:
    host, port = server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent: that is the point
        data = b""
        while part := sock.recv(65536):  # the refusal says Connection: close
            data += part
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body) if body else {"error": {"code": None}}  # HEAD: no body


# Routes that take no body read one too, within the same limit: GET /v1/stream with 2 MB was served 200.
NO_BODY_ROUTES = [("GET", "/v1/stream"), ("HEAD", "/v1/stream"), ("GET", "/healthz"), ("GET", "/readyz")]
NO_BODY_ROUTES += [("GET", "/"), ("GET", "/v1/inbox"), ("GET", "/v1/docs")]
# Only /v1/notifications/batch takes 16 MiB: other paths ending in /batch waited for 16 MiB.
NO_BODY_ROUTES += [("POST", "/v1/tokens/batch"), ("GET", "/healthz/batch"), ("POST", "/batch")]


@pytest.mark.parametrize(
    ("method", "path", "size"),
    [
        ("POST", "/v1/notifications/batch", 20 * 1024 * 1024),
        ("POST", "/v1/notifications", 1024 * 1024 + 1),
        ("POST", "/v1/tokens", 2 * 1024 * 1024),
        ("POST", "/v1/inbox/read-all", 2 * 1024 * 1024),
        ("POST", "/v1/inbox/1/read", 2 * 1024 * 1024),
        ("POST", "/demo/publish", 1024 * 1024 + 1),
        *((method, path, 1024 * 1024 + 1) for method, path in NO_BODY_ROUTES),
    ],
)
def test_oversized_body_with_content_length_is_413_before_it_is_sent(
    acme: Api, server, method: str, path: str, size: int
):
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {acme.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    status, body = _raw_request(server.url, head)  # not one byte of the body is sent
    assert (status, body["error"]["code"]) == (413, None if method == "HEAD" else "payload_too_large")


@pytest.mark.parametrize(
    ("method", "path", "size"),
    [
        ("POST", "/v1/notifications/batch", 16 * 1024 * 1024 + 1),
        ("POST", "/v1/notifications", 1024 * 1024 + 1),
        *((method, path, 1024 * 1024 + 1) for method, path in NO_BODY_ROUTES),
    ],
)
def test_oversized_chunked_body_is_413(acme: Api, server, method: str, path: str, size: int):
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {acme.key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"[" * 65536

    def chunks() -> Iterator[bytes]:
        # Just past the limit, then wait: a server that closes with unread bytes would reset the connection.
        for _ in range(size // len(piece)):
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
        yield b"%x\r\n%s\r\n" % (size % len(piece), b"[" * (size % len(piece)))

    status, body = _raw_request(server.url, head, chunks())
    assert (status, body["error"]["code"]) == (413, None if method == "HEAD" else "payload_too_large")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_stream_with_a_body_within_the_limit_is_served(acme: Api, chunked: bool):
    user = unique()
    content: Any = iter([b"x" * 100, b"y" * 100]) if chunked else b"z" * 1000
    with acme.client.stream(
        "GET", "/v1/stream", content=content, headers={"Authorization": f"Bearer {acme.token(user)}"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")


def test_chunked_body_within_the_limit_is_published(acme: Api):
    user = unique()
    body = json.dumps({"recipient": user, "data": "x" * 5000}).encode()
    response = acme.client.post(
        "/v1/notifications",
        content=iter([body[:100], body[100:]]),  # an iterator: httpx sends it chunked
        headers=acme.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 201, response.text


def test_batch_body_between_one_and_sixteen_mib_is_accepted(acme: Api):
    user = unique()
    body = {"notifications": [{"recipient": user, "data": "y" * 60_000} for _ in range(60)]}  # ~3.6 MB
    assert acme.publish(body, batch=True).status_code == 201


# Rows 5 and 6: every number parsed from a header, query or path takes ASCII digits only.
@pytest.mark.parametrize("raw", ["²", "١٢", "+5", "1_0", "5.0", "0x5", "-1", "9" * 20, "\u0665", "1 2"])
def test_last_event_id_takes_ascii_digits_only(acme: Api, server, raw: str):
    token = acme.token(unique())
    response = httpx.get(
        server.url + "/v1/stream", params={"last_event_id": raw}, headers={"Authorization": f"Bearer {token}"}
    )
    error_of(response, 400, "invalid_last_event_id")
    if raw.isascii():
        response = httpx.get(
            server.url + "/v1/stream", headers={"Authorization": f"Bearer {token}", "Last-Event-ID": raw}
        )
        error_of(response, 400, "invalid_last_event_id")


@pytest.mark.parametrize("query", ["last_event_id=+5", "last_event_id=%205", "last_event_id=5%20"])
def test_last_event_id_query_takes_no_white_space_like_every_query_number(acme: Api, server, query: str):
    """A ``+`` in a query is a space: ``?last_event_id=+5`` is refused, as ``?before=+5`` is on the inbox (the
    header alone may carry white space around the digits, RFC 9110 section 5.5)."""
    bearer = {"Authorization": f"Bearer {acme.token(unique())}"}
    error_of(httpx.get(f"{server.url}/v1/stream?{query}", headers=bearer), 400, "invalid_last_event_id")
    inbox = httpx.get(f"{server.url}/v1/inbox?{query.replace('last_event_id', 'before')}", headers=bearer)
    assert inbox.status_code == 422, inbox.text


def test_last_event_id_header_of_other_scripts_is_400(acme: Api, server):
    token = acme.token(unique())
    for raw in ("²".encode("latin-1"), "\xb9".encode("latin-1")):  # ² and ¹ are latin-1 bytes
        response = httpx.get(
            server.url + "/v1/stream",
            headers=[(b"Authorization", f"Bearer {token}".encode()), (b"Last-Event-ID", raw)],
        )
        error_of(response, 400, "invalid_last_event_id")


@pytest.mark.parametrize("raw", ["١٢", "+5", " 5", "1_0", "5.0", "²", "0", "101"])
def test_limit_and_before_take_ascii_digits_only(acme: Api, raw: str):
    token = acme.token(unique())
    for path, headers, extra in [
        ("/v1/inbox", {"Authorization": f"Bearer {token}"}, {}),
        ("/v1/notifications", acme.headers(), {"recipient": "u1"}),
    ]:
        response = acme.client.get(path, params={**extra, "limit": raw}, headers=headers)
        assert error_of(response, 422, "invalid_field")["field"] == "limit"
        if raw not in {"0", "101"}:
            response = acme.client.get(path, params={**extra, "before": raw}, headers=headers)
            assert error_of(response, 422, "invalid_field")["field"] == "before"


@pytest.mark.parametrize("raw", ["١٢", "²", "+5", "1_0", "9" * 20])
def test_notification_ids_in_paths_take_ascii_digits_only(acme: Api, raw: str):
    token = acme.token(unique())
    response = acme.client.post(f"/v1/inbox/{raw}/read", headers={"Authorization": f"Bearer {token}"})
    error_of(response, 404, "not_found")


# Rows 7 and 8: host normalisation in one place, for every route.
HOST_FORMS = [
    "acme.localhost.",
    "ACME.localhost",
    "acme.LOCALHOST.:80",
    "acme.localhost.:443",
    "Acme.Localhost:8000",
]


@pytest.mark.parametrize("host", HOST_FORMS)
def test_another_tenants_domain_in_any_form_is_403_everywhere(acme: Api, globex: Api, server, host: str):
    headers = globex.headers(Host=host)
    error_of(
        globex.client.post("/v1/notifications", json={"recipient": "u1"}, headers=headers),
        403,
        "tenant_mismatch",
    )
    error_of(
        globex.client.post(
            "/v1/notifications/batch", json={"notifications": [{"recipient": "u1"}]}, headers=headers
        ),
        403,
        "tenant_mismatch",
    )
    error_of(
        globex.client.post("/v1/tokens", json={"recipient": "u1"}, headers=headers), 403, "tenant_mismatch"
    )
    error_of(
        globex.client.get("/v1/notifications", params={"recipient": "u1"}, headers=headers),
        403,
        "tenant_mismatch",
    )
    token = {"Authorization": f"Bearer {globex.token(unique())}", "Host": host}
    error_of(globex.client.get("/v1/inbox", headers=token), 403, "tenant_mismatch")
    error_of(globex.client.get("/v1/inbox/unread-count", headers=token), 403, "tenant_mismatch")
    error_of(globex.client.post("/v1/inbox/read-all", headers=token), 403, "tenant_mismatch")
    error_of(httpx.get(server.url + "/v1/stream", headers=token), 403, "tenant_mismatch")
    # The owner of the domain is welcome in every form.
    assert (
        acme.client.post(
            "/v1/notifications", json={"recipient": "u1"}, headers=acme.headers(Host=host)
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    "host", ["acme.localhost:x", "acme.localhost:99999", "a b", "acme..localhost", "[zz]"]
)
def test_malformed_host_is_400_invalid_host(acme: Api, server, host: str):
    error_of(
        acme.client.post("/v1/notifications", json={"recipient": "u1"}, headers=acme.headers(Host=host)),
        400,
        "invalid_host",
    )
    token = {"Authorization": f"Bearer {acme.token(unique())}", "Host": host}
    error_of(httpx.get(server.url + "/v1/stream", headers=token), 400, "invalid_host")


# Row 9: token claims out of range are 401 invalid_token, before any stream byte.
def _signed(payload: str, secret: str) -> str:
    """A HS256 JWT around a raw JSON payload (PyJWT cannot write 1e400 or 10**400 as we want them)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(payload.encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


@pytest.mark.parametrize(
    "claims",
    [
        '"exp":' + str(10**400),
        '"exp":1e400',
        '"exp":-1e400',
        '"exp":' + str(2**64),
        '"exp":{soon}.5',
        '"exp":"{soon}"',
        '"exp":true',
        '"exp":null',
        '"exp":NaN',
        '"exp":Infinity',
        '"exp":{soon},"nbf":1e400',
        '"exp":{soon},"nbf":' + str(10**400),
        '"exp":{soon},"nbf":1.5',
        '"exp":{soon},"iat":1e400',
        '"exp":{soon},"iat":' + str(10**400),
        '"exp":{soon},"iat":1.5',
        '"exp":{soon},"iat":"x"',
        '"exp":{soon},"nbf":{later}',
        '"exp":' + "9" * 5000,
    ],
)
def test_token_claims_out_of_range_are_invalid_token(acme: Api, server, tenant_pair, claims: str):
    soon = int(time.time()) + 600
    claims = claims.replace("{soon}", str(soon)).replace("{later}", str(soon - 60 + 3600))
    token = _signed('{"sub":"u1","tid":"acme",' + claims + "}", tenant_pair[0][0].signing_secret)
    error_of(
        httpx.get(server.url + "/v1/stream", headers={"Authorization": f"Bearer {token}"}),
        401,
        "invalid_token",
    )
    error_of(acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_token")


def test_well_formed_time_claims_still_work(acme: Api, server, tenant_pair):
    now = int(time.time())
    secret = tenant_pair[0][0].signing_secret
    token = jwt.encode(
        {"sub": "u1", "tid": "acme", "exp": now + 600, "iat": now, "nbf": now - 5}, secret, "HS256"
    )
    assert acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    expired = jwt.encode({"sub": "u1", "tid": "acme", "exp": now - 1}, secret, "HS256")
    error_of(
        acme.client.get("/v1/inbox", headers={"Authorization": f"Bearer {expired}"}), 401, "token_expired"
    )


# Row 10: the documented topic query of GET /v1/notifications.
def test_recipient_listing_includes_the_topics_asked_for(server, make_tenant):
    api = Api(server.url, make_tenant()[1])
    user, news, other = unique(), unique("news"), unique("other")
    (own,) = api.publish_ok({"recipient": user})
    (topic_row,) = api.publish_ok({"topic": news})
    api.publish_ok({"topic": other})
    listed = api.client.get(
        "/v1/notifications", params={"recipient": user, "topic": news}, headers=api.headers()
    )
    assert listed.status_code == 200, listed.text
    assert [n["id"] for n in listed.json()["notifications"]] == [topic_row["id"], own["id"]]
    both = api.client.get(
        "/v1/notifications",
        params=[("recipient", user), ("topic", news), ("topic", other)],
        headers=api.headers(),
    )
    assert len(both.json()["notifications"]) == 3
    without = api.client.get("/v1/notifications", params={"recipient": user}, headers=api.headers())
    assert [n["id"] for n in without.json()["notifications"]] == [own["id"]]


# Row 11: control characters in every query parameter of every route.
@pytest.mark.parametrize("value", ["a\x00b", "a\x1fb\x7f", "a\u0085b"])  # C0, DEL, C1
def test_control_characters_in_any_query_parameter_are_422(acme: Api, server, value: str):
    token = acme.token(unique())
    bearer = {"Authorization": f"Bearer {token}"}
    for method, path, params, headers in [
        ("GET", "/v1/notifications", {"recipient": value}, acme.headers()),
        ("GET", "/v1/notifications", {"recipient": "u1", "topic": value}, acme.headers()),
        ("GET", "/v1/notifications", {"recipient": "u1", "before": value}, acme.headers()),
        ("GET", "/v1/notifications", {"recipient": "u1", "unknown": value}, acme.headers()),
        ("POST", "/v1/notifications", {"x": value}, acme.headers()),
        ("POST", "/v1/tokens", {"x": value}, acme.headers()),
        ("GET", "/v1/inbox", {"limit": value}, bearer),
        ("GET", "/v1/inbox", {"token": value}, {}),
        ("GET", "/v1/inbox/unread-count", {"x": value}, bearer),
        ("POST", "/v1/inbox/read-all", {"x": value}, bearer),
        ("GET", "/v1/stream", {"last_event_id": value}, bearer),
        ("GET", "/v1/stream", {"token": value}, {}),
    ]:
        response = httpx.request(
            method, server.url + path, params=params, headers=headers, json={"recipient": "u1"}
        )
        error = error_of(response, 422, "invalid_field")
        assert error["field"] in params, (path, params, error)


def test_recipient_query_is_checked_like_a_recipient_id(acme: Api):
    for value in ["", "a\u2028b", "x" * 257]:
        response = acme.client.get("/v1/notifications", params={"recipient": value}, headers=acme.headers())
        assert error_of(response, 422, "invalid_field")["field"] == "recipient"


# Row 12: statuses Django or ninja answer on their own are in the error shape too.
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/tokens", "POST"),
        ("DELETE", "/v1/notifications", "GET, HEAD, POST"),
        ("PUT", "/v1/notifications/batch", "POST"),
        ("DELETE", "/v1/inbox", "GET, HEAD"),
        ("GET", "/v1/inbox/read-all", "POST"),
        ("GET", "/v1/inbox/1/read", "POST"),
        ("POST", "/v1/inbox/unread-count", "GET, HEAD"),
        ("POST", "/v1/stream", "GET, HEAD"),
        ("DELETE", "/v1/stream", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_in_the_error_shape_with_allow(acme: Api, method: str, path: str, allow: str):
    response = acme.client.request(method, path, headers=acme.headers())
    error_of(response, 405, "method_not_allowed")
    assert sorted(response.headers["allow"].replace(" ", "").split(",")) == sorted(
        allow.replace(" ", "").split(",")
    )


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/notifications/", "/v1/", "/v1/tokens/x"])
def test_unknown_routes_are_404_in_the_error_shape(acme: Api, path: str):
    error_of(acme.client.get(path, headers=acme.headers()), 404, "not_found")


# Row 13: a topic row the token can see has no read state.
def test_marking_a_visible_topic_or_broadcast_row_read_is_409(server, make_tenant):
    api = Api(server.url, make_tenant()[1])
    user, news = unique(), unique("news")
    (topic_row,) = api.publish_ok({"topic": news})
    (broadcast,) = api.publish_ok({"broadcast": True})
    token = {"Authorization": f"Bearer {api.token(user, topics=[news])}"}
    for row in (topic_row, broadcast):
        error_of(api.client.post(f"/v1/inbox/{row['id']}/read", headers=token), 409, "no_read_state")
    other = {"Authorization": f"Bearer {api.token(user)}"}  # a token without the topic cannot see the row
    error_of(api.client.post(f"/v1/inbox/{topic_row['id']}/read", headers=other), 404, "not_found")


# Row 16: the OpenAPI document says what the server accepts.
def test_openapi_states_the_limits_the_server_enforces(acme: Api):
    doc = acme.client.get("/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    publish = schemas["PublishIn"]["properties"]

    def strings(prop: dict[str, Any]) -> dict[str, Any]:
        found = [
            schemas[s["$ref"].rsplit("/", 1)[1]] if "$ref" in s else s for s in prop.get("anyOf", [prop])
        ]
        return next(s for s in found if s.get("type") in {"string", "array"})

    assert (
        strings(publish["recipient"])["minLength"] == 1 and strings(publish["recipient"])["maxLength"] == 256
    )
    assert (
        strings(publish["recipients"])["minItems"] == 1 and strings(publish["recipients"])["maxItems"] == 1000
    )
    assert strings(strings(publish["recipients"])["items"])["minLength"] == 1
    assert strings(publish["event"])["pattern"]
    assert schemas["BatchIn"]["properties"]["notifications"]["minItems"] == 1
    assert strings(schemas["TokenIn"]["properties"]["recipient"])["minLength"] == 1
    params = {p["name"]: p for p in doc["paths"]["/v1/notifications"]["get"]["parameters"]}
    assert strings(params["before"]["schema"])["pattern"] == ascii_int_pattern()  # exact: test_openapi_rules
    assert strings(publish["recipient"])["pattern"] == strings(params["recipient"]["schema"])["pattern"]
    assert params["limit"]["schema"]["minimum"] == 1 and params["limit"]["schema"]["maximum"] == 100
    assert strings(params["topic"]["schema"])["type"] == "array"
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            assert "503" in operation["responses"], (method, path)


# The ingestion property, end to end: any JSON body, through the real server and PostgreSQL.
@pytest.fixture(scope="module")
def fuzz_api(server, make_tenant) -> Api:
    return Api(server.url, make_tenant(publish_rate_per_second=10_000)[1])


def test_any_json_body_is_201_or_a_documented_4xx_on_a_real_server(fuzz_api: Api):
    from hypothesis import HealthCheck, given, settings

    from tests.test_properties import BODY_VALUES, JSON_VALUES

    bodies = st.one_of(
        BODY_VALUES, st.fixed_dictionaries({"recipient": st.just("fuzz"), "data": JSON_VALUES})
    )

    documented = {201: None, 400: {"invalid_json"}, 413: {"payload_too_large"}}
    documented |= {422: {"invalid_field", "unknown_field"}}

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(value=bodies, batch=st.booleans())
    def post(value: Any, batch: bool) -> None:
        body = json.dumps({"notifications": [value]} if batch else value)  # ASCII: surrogates escaped
        path = "/v1/notifications/batch" if batch else "/v1/notifications"
        response = fuzz_api.client.post(
            path, content=body, headers=fuzz_api.headers(**{"Content-Type": "application/json"})
        )
        assert response.status_code in documented, (response.status_code, response.text, body)
        if response.status_code != 201:
            assert response.json()["error"]["code"] in documented[response.status_code], response.text

    post()


@pytest.mark.parametrize("tid", ["\\u0000", "demo\\u0000", "\\ud800", "Acme", "a b", ""])
def test_a_tid_that_names_no_tenant_is_invalid_token_before_any_lookup(acme: Api, server, tid: str):
    """Found by a fuzzer: NUL or a lone surrogate in ``tid`` reached the tenant query (500, stream 503)."""
    token = _signed('{"sub":"u1","tid":"' + tid + '","exp":' + str(int(time.time()) + 600) + "}", "x" * 32)
    error_of(
        httpx.get(server.url + "/v1/stream", headers={"Authorization": f"Bearer {token}"}),
        401,
        "invalid_token",
    )
    for method, path in [
        ("GET", "/v1/inbox"),
        ("GET", "/v1/inbox/unread-count"),
        ("POST", "/v1/inbox/read-all"),
    ]:
        response = acme.client.request(method, path, headers={"Authorization": f"Bearer {token}"})
        error_of(response, 401, "invalid_token")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/notifications", '{"recipient":"a","recipient":"b"}'),
        ("/v1/notifications", '{"recipient":"a","data":{"k":1,"k":2}}'),
        ("/v1/notifications", '{"recipient":"a","data":[{"x":{"y":1,"y":1}}]}'),
        (
            "/v1/notifications/batch",
            '{"notifications":[{"recipient":"a"},{"recipient":"a","topic":"t","topic":"u"}]}',
        ),
        ("/v1/tokens", '{"recipient":"a","recipient":"b"}'),
    ],
)
def test_a_member_name_twice_in_one_object_is_refused(acme: Api, path: str, body: str):
    """Which of two values a reader takes is up to it (RFC 8259 section 4): the publish went to the last
    recipient. Refused like a token's duplicate claims, on every route, at any depth; nothing stored."""
    user = body.split('"recipient":"')[1].split('"')[0]
    before = acme.client.get("/v1/notifications", params={"recipient": user}, headers=acme.headers()).json()
    response = acme.client.post(
        path, content=body, headers=acme.headers(**{"Content-Type": "application/json"})
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert "appears twice" in response.json()["error"]["message"]
    after = acme.client.get("/v1/notifications", params={"recipient": user}, headers=acme.headers()).json()
    assert after == before
