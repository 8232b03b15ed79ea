"""A second fuzzing pass over the edges (after issue 10), against the real gunicorn over real sockets.

Each table row is an input a hostile client or a fuzzer sends, with the answer it must get:

- ``Upgrade: websocket`` on any route was a plain-text ``500`` and a traceback (uvicorn handed the upgrade to
  Django, which refuses websocket scopes): Beacon serves no WebSocket, the request is plain HTTP.
- A query parameter whose percent-decoding is not UTF-8 (``%ff``, ``%C0%AF``, ``%ED%A0%80``) was decoded to
  U+FFFD: ``?recipient=%ff`` listed the notifications of recipient ``"\\ufffd"``. Now ``422 invalid_field``.
- An HTTP/1.0 request got ``Transfer-Encoding: chunked`` (uvicorn's httptools protocol): the client read
  chunk sizes as body (``d\\r\\n{"unread": 0}...`` is not JSON). Now close-delimited.
- More than 1000 query parameters (Django's ``TooManyFieldsSent``) on ``GET /v1/notifications`` and
  ``/v1/inbox`` was a ``500``; now ``400 bad_request`` on every ``/v1`` route.
- The demo routes: a NUL in ``/demo/publish``'s text was a ``500``; a missing CSRF token and a multipart
  body without a boundary were Django's HTML pages. Now the error shape.
- A stream whose client closed the connection while a pipelined request waited behind it: every later write
  raised uvloop's ``RuntimeError`` (uvicorn never marked the stream's cycle disconnected), a traceback per
  heartbeat. Now the stream ends as a client disconnect.
- The stream parsed cookies and repeated headers its own way: a quoted ``beacon_token`` cookie, spaces around
  ``=`` or two ``beacon_token`` cookies gave ``200`` on the inbox and ``401`` on the stream (or the
  reverse); two ``Last-Event-ID`` headers took the last one. Now the stream reads them as Django does.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from typing import Any

import httpx
import pytest

from tests.support import Api, Server, unique, wait_until

WS_HEADERS = (
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def _exchange(url: str, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (ending in ``Connection: close``), read until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (part := sock.recv(65536)):
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0].split()[1]), headers, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        out, body = out + body[:length], body[length + 2 :]
    return out


def _error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body)
    document = json.loads(body)
    assert set(document) == {"error"} and document["error"]["message"], document
    return dict(document["error"])


# --- WebSocket upgrades ---------------------------------------------------------------------------------------
# path -> the status the route gives a plain GET without credentials
UPGRADED = {
    "/v1/stream": 401,
    "/healthz": 200,
    "/readyz": 200,
    "/v1/docs": 200,
    "/v1/inbox": 401,
    "/nope": 404,
}


@pytest.mark.parametrize("path", list(UPGRADED))
def test_a_websocket_upgrade_is_answered_as_plain_http(server: Server, path: str):
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + WS_HEADERS
        + b"Connection: Upgrade, close\r\n\r\n"
    )
    status, headers, body = _exchange(server.url, request)
    assert status == UPGRADED[path], (status, body)
    if status >= 400:
        assert _error(status, headers, body)["code"] in {"unauthenticated", "not_found"}


def test_a_websocket_upgrade_with_a_token_gets_the_event_stream(server: Server, acme: Api):
    token = acme.token(unique())
    request = (
        f"GET /v1/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + WS_HEADERS
        + b"Connection: Upgrade\r\n\r\n"
    )
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"beacon.unread" not in data and (part := sock.recv(65536)):
            data += part
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert b"content-type: text/event-stream" in data.lower()


# --- Query parameters that are not UTF-8 ----------------------------------------------------------------------
NOT_UTF8 = ["%ff", "%C0%AF", "%ED%A0%80", "a%E9b", "%F4%90%80%80", "%E2%82"]


def _routes(acme: Api) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (path with a ``{}`` where the query goes, headers)."""
    token = acme.token(unique())
    subscriber = {"Authorization": f"Bearer {token}"}
    return {
        "notifications recipient": ("/v1/notifications?recipient={}", acme.headers()),
        "notifications topic": ("/v1/notifications?recipient=a&topic={}", acme.headers()),
        "inbox before": ("/v1/inbox?before={}", subscriber),
        "unread-count": ("/v1/inbox/unread-count?x={}", subscriber),
        "stream last_event_id": ("/v1/stream?last_event_id={}", subscriber),
        "stream other": ("/v1/stream?x={}", subscriber),
        "docs": ("/v1/docs?x={}", {}),
        "openapi": ("/v1/openapi.json?x={}", {}),
        "beacon.js": ("/v1/beacon.js?x={}", {}),
    }


@pytest.mark.parametrize("value", NOT_UTF8)
def test_a_query_value_that_is_not_utf8_is_422_on_every_route(acme: Api, value: str):
    for name, (path, headers) in _routes(acme).items():
        response = acme.client.get(path.format(value), headers=headers)
        assert response.status_code == 422, (name, value, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_field", (name, error)
        expected = path.split("?")[1].split("&")[-1].split("=")[0]
        assert error["field"] == expected, (name, error)


def test_a_query_name_that_is_not_utf8_is_422(acme: Api):
    response = acme.client.get("/v1/notifications?recipient=a&%ff=1", headers=acme.headers())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_field"


def test_utf8_query_values_still_work(server, make_tenant):
    # A tenant of its own: other tests' broadcasts in the shared tenants are in every recipient's list.
    acme = Api(server.url, make_tenant()[1])
    recipient = unique("é-😀")
    acme.publish_ok({"recipient": recipient, "data": 1})
    response = acme.client.get("/v1/notifications", params={"recipient": recipient}, headers=acme.headers())
    assert response.status_code == 200, response.text
    assert [n["recipient"] for n in response.json()["notifications"]] == [recipient]
    # "+" is a space and "%2B" a plus, as ever
    plus = acme.client.get("/v1/notifications?recipient=a+b%2Bc", headers=acme.headers())
    assert plus.status_code == 200, plus.text


# --- HTTP/1.0: no chunked responses (RFC 9112 section 6.1) ------------------------------------------------
def _read_http10(url: str, request: bytes, until: bytes | None = None) -> tuple[bytes, bytes, bool]:
    """(head, body, closed): read until the server closes, or until ``until`` appears (a stream)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data, closed = b"", False
        while until is None or until not in data:
            part = sock.recv(65536)
            if not part:
                closed = True
                break
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    return head.lower(), body, closed


@pytest.mark.parametrize("keep_alive", [b"", b"Connection: keep-alive\r\n"], ids=["plain", "keep-alive"])
def test_http10_responses_are_close_delimited_not_chunked(server: Server, acme: Api, keep_alive: bytes):
    token = acme.token(unique()).encode()
    auth = b"Authorization: Bearer " + token + b"\r\n"
    for path, expected in [
        (b"/v1/inbox/unread-count", {"unread": 0}),
        (b"/v1/nope", None),
        (b"/healthz", None),
    ]:
        request = b"GET " + path + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n" + auth + keep_alive + b"\r\n"
        head, body, closed = _read_http10(server.url, request)
        assert b"transfer-encoding" not in head, (path, head)
        assert closed, path
        document = json.loads(body)  # the exact JSON, no chunk sizes around it
        if expected is not None:
            assert document == expected, (path, body)
    stream = b"GET /v1/stream HTTP/1.0\r\nHost: 127.0.0.1\r\n" + auth + keep_alive + b"\r\n"
    head, body, _ = _read_http10(server.url, stream, until=b"beacon.unread")
    assert head.startswith(b"http/1.1 200") and b"transfer-encoding" not in head, head
    assert body.startswith(b"retry: "), body[:80]
    # an HTTP/1.1 client still gets chunked answers (keep-alive needs them)
    head11, _, _ = _read_http10(
        server.url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert b"transfer-encoding: chunked" in head11


# --- More query parameters than Django reads -------------------------------------------------------------
def test_more_than_1000_query_parameters_is_400_on_every_route(acme: Api):
    """Django raises ``TooManyFieldsSent`` past ``DATA_UPLOAD_MAX_NUMBER_FIELDS``: it was a ``500``."""
    for name, (path, headers) in _routes(acme).items():
        at_limit = path.format("1") + "".join(f"&p{i}=1" for i in range(1000 - path.count("&") - 1))
        too_many = at_limit + "&one=more"
        response = acme.client.get(too_many, headers=headers)
        assert response.status_code == 400, (name, response.text[:200])
        assert response.json()["error"]["code"] == "bad_request", name
        if name.startswith("stream"):
            continue  # a 200 stream would not end
        assert acme.client.get(at_limit, headers=headers).status_code != 400, name


def test_a_suspicious_operation_inside_a_route_is_400_not_500():
    from django.core.exceptions import TooManyFieldsSent
    from django.test import RequestFactory

    from service.api import api

    response = api.on_exception(RequestFactory().get("/v1/inbox"), TooManyFieldsSent("too many"))
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["code"] == "bad_request"


# --- The demo routes ------------------------------------------------------------------------------------------
@pytest.fixture
def demo_page(server: Server, make_tenant: Any) -> httpx.Client:
    from tenants.models import Tenant

    if not Tenant.objects.filter(slug="demo").exists():
        make_tenant("demo", allowed_origins=[server.url])
    client = httpx.Client(base_url=server.url, timeout=10)
    assert client.get("/").status_code == 200
    return client


def test_demo_publish_refusals_are_in_the_error_shape(demo_page: httpx.Client):
    csrf = {"X-CSRFToken": demo_page.cookies["csrftoken"]}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("NUL in the text", {"data": {"text": "a\x00b"}, "headers": csrf}, 422, "invalid_field"),
        ("no CSRF token", {"data": {"text": "hi"}}, 403, "forbidden"),
        (
            "multipart without a boundary",
            {"content": b"x", "headers": {**csrf, "Content-Type": "multipart/form-data"}},
            400,
            "bad_request",
        ),
    ]
    for name, kwargs, status, code in cases:
        response = demo_page.post("/demo/publish", **kwargs)
        assert response.status_code == status, (name, response.text[:200])
        assert _error(response.status_code, dict(response.headers), response.content)["code"] == code, name
    ok = demo_page.post("/demo/publish", data={"text": "hello"}, headers=csrf)
    assert ok.status_code == 201, ok.text


def test_the_admin_keeps_its_html_csrf_page(server: Server):
    response = httpx.post(server.url + "/admin/login/", data={"username": "a", "password": "b"}, timeout=10)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")


# --- A stream whose client goes away behind a pipelined request -----------------------------------------------
def test_a_stream_reset_by_its_client_behind_a_pipelined_request_ends_cleanly(
    start_server: Any, make_tenant: Any
):
    """With a request pipelined behind the stream, uvicorn never marks the stream's cycle disconnected (the
    connection's current cycle is the pipelined one), so each write after the client's reset raised uvloop's
    ``RuntimeError`` (a traceback per heartbeat; the autouse log check fails the test on it)."""
    server = start_server(workers=1)  # one worker: /readyz counts every open stream
    _, key = make_tenant()
    api = Api(server.url, key)
    recipient = unique()
    token = api.token(recipient)
    host, port = server.url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(3):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(
            f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
            + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        data = b""
        while b"beacon.unread" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 "), data[:200]
        sockets.append(sock)
    assert _open_streams(server) == 3
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    for _ in range(5):  # writes after the reset: live events, then heartbeats (HEARTBEAT_SECONDS=1)
        api.publish_ok({"recipient": recipient, "data": "x" * 1000})
    wait_until(lambda: _open_streams(server) == 0, timeout=15, message="the reset streams to end")


def _open_streams(server: Server) -> int:
    return int(httpx.get(server.url + "/readyz", timeout=5).json()["checks"]["streams"])


# --- One request, one answer: the stream reads headers and cookies as Django does for the inbox ---------------
def _status(url: str, path: str, headers: list[bytes]) -> int:
    """The status of ``GET path`` with raw header lines (the stream's is read from its first line)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
            + b"".join(h + b"\r\n" for h in headers)
            + b"Connection: close\r\n\r\n"
        )
        data = b""
        while b"\r\n" not in data and (part := sock.recv(4096)):
            data += part
    return int(data.split(b" ")[1])


def test_the_stream_and_the_inbox_read_cookies_and_repeated_headers_alike(server: Server, acme: Api):
    token = acme.token(unique()).encode()
    cases: dict[str, list[bytes]] = {
        "plain cookie": [b"Cookie: beacon_token=" + token],
        "quoted cookie": [b'Cookie: beacon_token="' + token + b'"'],
        "spaces around =": [b"Cookie: beacon_token = " + token],
        "bad, then good": [b"Cookie: beacon_token=bad; beacon_token=" + token],
        "good, then bad": [b"Cookie: beacon_token=" + token + b"; beacon_token=bad"],
        "other cookies": [b"Cookie: a=1;beacon_token=" + token + b";"],
        "name in upper case": [b"Cookie: BEACON_TOKEN=" + token],
        "two Authorization headers": [b"Authorization: Bearer " + token] * 2,
        "bad, then good Authorization": [b"Authorization: Bearer bad", b"Authorization: Bearer " + token],
    }
    for name, headers in cases.items():
        inbox = _status(server.url, "/v1/inbox/unread-count", headers)
        stream = _status(server.url, "/v1/stream", headers)
        assert inbox in {200, 401} and stream == inbox, (name, inbox, stream)


def test_a_repeated_last_event_id_is_refused_not_the_last_one_taken(server: Server, acme: Api):
    auth = b"Authorization: Bearer " + acme.token(unique()).encode()
    assert _status(server.url, "/v1/stream", [auth, b"Last-Event-ID: x", b"Last-Event-ID: 5"]) == 400
    assert _status(server.url, "/v1/stream", [auth, b"Last-Event-ID: 0"]) == 200


def test_query_problem_names_the_field_as_parse_qsl_splits_it():
    from service.http import query_problem

    assert query_problem(b"a=1&b=%C3%A9&c=+%2B") is None
    for raw, field in [(b"a=1&b=%ff", "b"), (b"x+y=%C0%AF", "x y"), (b"%ff=1", "\ufffd"), (b"a=%00", "a")]:
        problem = query_problem(raw)
        assert problem is not None and problem.status == 422 and problem.field == field, (raw, problem)
    assert re.fullmatch(r"b: .*UTF-8", query_problem(b"b=%ff").message)  # type: ignore[union-attr]
